"""The round-robin balancer in front of several instances: requests forwarded whole, answers back
whole, turns taken in order, a dead instance skipped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from localdev.functions_host.balancer import RoundRobinProxy
from localdev.processes import free_port


class Instance:
    """A stand-in for one instance of the app: records each request and answers with its own name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "body": await request.read(),
            }
        )
        response = web.Response(status=201, body=f"from {self.name}".encode(), content_type="text/plain")
        response.headers["X-Instance"] = self.name
        response.headers.add("Set-Cookie", "a=1")
        response.headers.add("Set-Cookie", "b=2")
        return response

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def instances() -> AsyncIterator[list[Instance]]:
    started = [Instance("one"), Instance("two")]
    for instance in started:
        await instance.start()
    yield started
    for instance in started:
        await instance.stop()


async def serve(backends: list[str]) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(RoundRobinProxy(backends).application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_requests_alternate_and_go_through_whole(instances: list[Instance]) -> None:
    runner, url = await serve([instance.url for instance in instances])
    try:
        async with aiohttp.ClientSession() as session:
            answers = []
            for n in range(4):
                async with session.put(
                    f"{url}/api/messages/x%2Fy?code=k%20e&n={n}",
                    data=b"\x00body",
                    headers={"X-Custom": "kept", "Content-Type": "application/json"},
                ) as response:
                    answers.append((response.status, await response.text(), response.headers.getall("Set-Cookie")))
        assert [text for _, text, _ in answers] == ["from one", "from two", "from one", "from two"]
        assert all(status == 201 and cookies == ["a=1", "b=2"] for status, _, cookies in answers)
        first = instances[0].requests[0]
        assert first["method"] == "PUT"
        assert first["raw_path"] == "/api/messages/x%2Fy?code=k%20e&n=0"  # not re-encoded
        assert first["body"] == b"\x00body"
        assert first["headers"]["X-Custom"] == "kept"
        assert first["headers"]["Content-Type"] == "application/json"
        assert first["headers"]["Host"] == url.removeprefix("http://")  # the URL the client used
        assert first["headers"]["X-Forwarded-For"] == "127.0.0.1"
    finally:
        await runner.cleanup()


async def test_a_dead_instance_is_skipped_and_none_at_all_is_a_502(instances: list[Instance]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    runner, url = await serve([dead, instances[0].url])
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.post(f"{url}/api/messages", json={"n": 1}) as response:
                    assert (response.status, await response.text()) == (201, "from one")
    finally:
        await runner.cleanup()
    runner, url = await serve([dead])
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/") as response:
            assert response.status == 502
    finally:
        await runner.cleanup()
