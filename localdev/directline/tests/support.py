"""A tiny echo bot and the local Direct Line, both running in a background thread, for tests.

The bot answers on POST /api/messages and replies through the Connector API at the incoming
activity's serviceUrl while the Direct Line's POST is still open, like a real bot:
- message "fail" -> 500; "typing" -> a typing activity, then the echo; anything -> "echo: <text>"
- event -> "event <name> <json value>"
- conversationUpdate -> "welcome <id>" for each member added that is not the bot
Tests wait on `bot.wait_for(...)` (a condition with a deadline), never on sleeps.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import requests
from aiohttp import web

from localdev.directline import DirectLineServer

Activity = dict[str, Any]
SECRET = "test-secret"
HANDOFF_SIGNING_KEY = "test-handoff-signing-key-0123456789abcdef"  # what the agent console signs with
T = TypeVar("T")


class BackgroundLoop:
    """An asyncio loop in a daemon thread, so servers keep serving while a synchronous test blocks."""

    def __init__(self, name: str = "directline-test") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class EchoBot:
    def __init__(self) -> None:
        self.received: list[Activity] = []  # what the channel POSTed, in order
        self.sent: list[tuple[Activity, str]] = []  # replies the Connector API accepted, with their ids
        self._changed = threading.Condition()
        self._session: aiohttp.ClientSession | None = None

    def wait_for(self, predicate: Callable[[EchoBot], bool], timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(f"bot condition not met in {timeout}s; received {self.received}")

    def received_in(self, conversation_id: str) -> list[Activity]:
        with self._changed:
            return [a for a in self.received if a["conversation"]["id"] == conversation_id]

    def sent_in(self, conversation_id: str) -> list[Activity]:
        with self._changed:
            return [a for a, _ in self.sent if a["conversation"]["id"] == conversation_id]

    def _record(self, target: list[Any], item: Any) -> None:
        with self._changed:
            target.append(item)
            self._changed.notify_all()

    async def handle(self, request: web.Request) -> web.Response:
        activity = await request.json()
        self._record(self.received, activity)
        kind = activity.get("type")
        if kind == "message":
            text = activity.get("text") or ""
            if text == "fail":
                return web.Response(status=500, text="boom")
            if text == "typing":
                await self.reply(activity, {"type": "typing"})
            await self.reply(activity, {"type": "message", "text": f"echo: {text}"})
        elif kind == "event":
            await self.reply(activity, {"type": "message", "text": f"event {activity.get('name')} "
                                        f"{json.dumps(activity.get('value'), sort_keys=True)}"})  # fmt: skip
        elif kind == "conversationUpdate":
            for member in activity.get("membersAdded") or []:
                if member["id"] != activity["recipient"]["id"]:
                    await self.reply(activity, {"type": "message", "text": f"welcome {member['id']}"})
        return web.Response(status=200)

    async def reply(self, incoming: Activity, activity: Activity) -> str:
        assert self._session is not None
        conversation_id = incoming["conversation"]["id"]
        url = (
            f"{incoming['serviceUrl']}v3/conversations/{quote(conversation_id, safe='')}"
            f"/activities/{quote(incoming['id'], safe='')}"
        )
        body = {
            **activity,
            "from": incoming["recipient"],
            "recipient": incoming["from"],
            "conversation": incoming["conversation"],
            "replyToId": incoming["id"],
        }
        async with self._session.post(url, json=body) as response:
            assert response.status in (200, 201), await response.text()
            activity_id = (await response.json())["id"]
        self._record(self.sent, ({**body, "id": activity_id}, activity_id))
        return activity_id

    async def start(self) -> tuple[web.AppRunner, int]:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/api/messages", self.handle)
        return await serve(app)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """Run an aiohttp app on a free loopback port (bound first, so there is no race)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner, int(sock.getsockname()[1])


@dataclass
class Stack:
    loop: BackgroundLoop
    bot: EchoBot
    server: DirectLineServer
    bot_endpoint: str

    @property
    def domain(self) -> str:
        return self.server.domain

    @property
    def url(self) -> str:
        return self.server.url


@contextmanager
def running_stack(
    bot: EchoBot | None = None,
    bot_app: Callable[[], Awaitable[tuple[web.AppRunner, int]]] | None = None,
    **options: Any,
) -> Iterator[Stack]:
    """An echo bot (or `bot_app`) and a DirectLineServer (extra create_app options) in one background loop."""
    loop = BackgroundLoop("directline-test")
    bot = bot or EchoBot()
    runner, port = loop.run((bot_app or bot.start)())
    endpoint = f"http://127.0.0.1:{port}/api/messages"
    server = DirectLineServer(endpoint, SECRET, **{"handoff_signing_key": HANDOFF_SIGNING_KEY, **options})
    loop.run(server.start())
    try:
        yield Stack(loop, bot, server, endpoint)
    finally:
        loop.run(server.stop())
        loop.run(runner.cleanup())
        loop.run(bot.close())
        loop.close()


def user_token(stack: Stack, user_id: str) -> dict[str, Any]:
    """What a token server (the app's /api/directline/token) does: the secret exchanged for a token
    bound to a new conversation and `user_id`. {conversationId, token, expires_in}."""
    generated = requests.post(
        f"{stack.domain}/tokens/generate",
        headers={"Authorization": f"Bearer {SECRET}"},
        json={"user": {"id": user_id}},
        timeout=10,
    )
    generated.raise_for_status()
    return dict(generated.json())


class FakeClock:
    """Seconds since the epoch that only move when a test says so (token and idle expiry)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
