"""End to end over real HTTP: the app served by the local Functions host, replies recorded by a
local Connector endpoint, state in the Cosmos DB stand-in; the name survives a host restart."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest

from localdev.app_settings import app_settings
from localdev.functions_host import HostProcess, spawn_host
from localdev.processes import PROJECT_ROOT
from tests.support.activities import activity, joined
from tests.support.connector import RecordingConnector

pytestmark = pytest.mark.emulators


async def start_host(settings: dict[str, str]) -> HostProcess:
    # spawn_host blocks until the child listens; keep the event loop (and the recorder) serving meanwhile.
    return await asyncio.to_thread(spawn_host, PROJECT_ROOT, settings=settings)


async def post(host: HostProcess, body: Any, **headers: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{host.base_url}/api/messages", json=body, headers=headers) as response,
    ):
        return response.status


async def test_greeting_name_prompt_and_name_surviving_a_restart(
    azurite: Any, cosmos: Any, connector: RecordingConnector
) -> None:
    settings = app_settings(azurite, cosmos)
    url = connector.service_url
    first, second = f"c-{uuid.uuid4()}", f"c-{uuid.uuid4()}"
    host = await start_host(settings)
    try:
        assert await post(host, joined(first, url)) == 200
        assert connector.messages(first) == [
            "Hello and welcome! I run long operations for you and tell you here when they are done.",
            "What's your name?",
        ]
        assert await post(host, activity(first, url, text="Margaret")) == 200
        assert connector.messages(first)[-2] == "Nice to meet you, Margaret! I'll remember your name."
    finally:
        await asyncio.to_thread(host.stop)

    host = await start_host(settings)
    try:
        update = joined(second, url)
        update["from"]["id"] = update["membersAdded"][1]["id"] = f"user-of-{first}"
        assert await post(host, update) == 200
        assert connector.messages(second)[0] == "Welcome back, Margaret!"
    finally:
        await asyncio.to_thread(host.stop)


async def test_bad_requests_over_http(azurite: Any, cosmos: Any) -> None:
    host = await start_host(app_settings(azurite, cosmos))
    try:
        async with aiohttp.ClientSession() as session:
            base = f"{host.base_url}/api/messages"
            async with session.post(base, data=b"hi", headers={"Content-Type": "text/plain"}) as response:
                assert response.status == 415
            async with session.post(base, data=b"{", headers={"Content-Type": "application/json"}) as response:
                assert response.status == 400
                assert "not valid JSON" in (await response.json())["error"]["message"]
            async with session.get(base) as response:
                assert response.status == 404  # the route is POST only; the Functions host answers 404
    finally:
        await asyncio.to_thread(host.stop)
