"""A small local Connector endpoint that records what the bot sends (protocol: docs/direct-line-and-connector.md)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.support.local_server import LocalServer


class RecordingConnector(LocalServer):
    """Serves the Connector API routes the bot calls and records every activity it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.activities: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v3/conversations/{conversation}/activities", self._record)
        app.router.add_post("/v3/conversations/{conversation}/activities/{reply_to}", self._record)

    async def _record(self, request: web.Request) -> web.Response:
        activity = await request.json()
        activity["_conversation"] = request.match_info["conversation"]
        activity["_reply_to"] = request.match_info.get("reply_to")
        activity["_authorization"] = request.headers.get("Authorization")
        async with self._changed:
            self.activities.append(activity)
            self._changed.notify_all()
        return web.json_response({"id": f"reply-{next(self._ids)}"}, status=200)

    def messages(self, conversation_id: str | None = None) -> list[str]:
        return [
            a.get("text", "")
            for a in self.activities
            if a.get("type") == "message" and (conversation_id is None or a["_conversation"] == conversation_id)
        ]

    async def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self.activities))
