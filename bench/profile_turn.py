"""Where a turn's CPU time goes: the messages handler in process, profiled (cProfile), and the
per-turn Bot Connector client measured on its own. Evidence for the fix suggestions.

Runs the handler exactly as the host calls it (handlers.messages.handle_messages with the
dependencies bootstrap.Composition builds) against the Cosmos DB stand-in and a tiny local
Connector endpoint that counts the TCP connections it is sent replies on.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import time
import uuid
from typing import Any

from aiohttp import web

from bench.client import BOT
from bench.stack import Emulators, bench_settings
from bench.stats import summary_ms
from bootstrap import Composition
from handlers.http_types import HttpRequestData
from handlers.messages import handle_messages
from services.settings import load_settings
from services.state.cosmos_storage import escape_key

# Functions whose cumulative CPU time is reported, by what they stand for.
CATEGORIES = {
    # The state codec, and jsonpickle where it falls back (or the SDK calls it): a fallback counts twice.
    "state flatten + restore (state codec, jsonpickle)": (
        "state_codec.py:flatten",
        "state_codec.py:restore",
        "jsonpickle/pickler.py:flatten",
        "jsonpickle/unpickler.py:restore",
    ),
    "Bot Connector client created per turn (ConnectorFactory.create)": ("_connector_factory_impl.py:create",),
    "replies sent (Connector API calls, client side)": ("cloud_adapter_base.py:send_activities",),
    "Cosmos DB SDK calls (read_item, replace_item)": ("_container.py:read_item", "_container.py:replace_item"),
    "Activity deserialize (from_json, msrest)": ("activity_json.py:from_json", "msrest/serialization.py:deserialize"),
    "dialog (run_dialog)": ("dialog_extensions.py:run_dialog",),
    # In the background, after the turn, but in the same process: a feature neither baseline has.
    "transcript rows written (table transactions)": ("transcripts/store.py:write",),
    "copies of each reply activity (TurnContext.send_activities)": ("turn_context.py:deep_copy", "copy.py:deepcopy"),
    "whole handler (handle_messages)": ("handlers/messages.py:handle_messages",),
}


class Connector:
    """Accepts the bot's replies; counts requests and the distinct TCP connections they came on."""

    def __init__(self) -> None:
        self.requests = 0
        self.connections: set[Any] = set()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def reply(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.transport is not None:
            self.connections.add(request.transport.get_extra_info("peername"))
        return web.json_response({"id": uuid.uuid4().hex})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v3/conversations/{conversation}/activities", self.reply)
        app.router.add_post("/v3/conversations/{conversation}/activities/{activity}", self.reply)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _request(conversation: str, service_url: str, **fields: Any) -> HttpRequestData:
    activity = {
        "type": "message",
        "id": uuid.uuid4().hex,
        "channelId": "directline",
        "serviceUrl": service_url,
        "conversation": {"id": conversation},
        "from": {"id": f"user-of-{conversation}", "name": "User", "role": "user"},
        "recipient": BOT,
        **fields,
    }
    return HttpRequestData("POST", {"content-type": "application/json"}, json.dumps(activity).encode())


def _category_times(profile: cProfile.Profile, turns: int) -> dict[str, float]:
    stats = pstats.Stats(profile)
    found: dict[str, float] = {}
    for label, suffixes in CATEGORIES.items():
        total = 0.0
        for (filename, _line, function), row in stats.stats.items():  # type: ignore[attr-defined]
            if any(f"{filename}:{function}".endswith(suffix) for suffix in suffixes):
                total += row[3]  # cumulative time
        found[label] = round(total * 1000 / turns, 3)
    return found


async def run(stack: Emulators, quick: bool) -> dict[str, Any]:
    turns = 20 if quick else 200
    connector = Connector()
    await connector.start()
    app = Composition(load_settings(bench_settings(stack, "http://127.0.0.1:9/")))
    try:
        conversation = f"profile-{uuid.uuid4().hex[:8]}"
        url = connector.url
        update = {"type": "conversationUpdate", "membersAdded": [{"id": "bot"}, {"id": f"user-of-{conversation}"}]}
        for fields in (update, {"text": "Ada"}, {"text": "what?"}):  # warm up: runtime, containers, imports
            response = await handle_messages(_request(conversation, url, **fields), app.messages)
            if response.status != 200:
                raise RuntimeError(f"warm-up turn answered {response.status}")

        connector.requests, connector.connections = 0, set()
        timings = []
        for _ in range(turns):
            started = time.perf_counter()
            await handle_messages(_request(conversation, url, text="what?"), app.messages)
            timings.append(time.perf_counter() - started)
        replies, connections = connector.requests, len(connector.connections)

        profile = cProfile.Profile()
        profile.enable()
        for _ in range(turns):
            await handle_messages(_request(conversation, url, text="what?"), app.messages)
        profile.disable()
        categories = _category_times(profile, turns)
        container = await app.cosmos.conversation_container()
        doc_id = escape_key(f"directline/conversations/{conversation}")
        stored = await container.read_item(item=doc_id, partition_key=doc_id)
        document_bytes = len(json.dumps(stored.get("document")))
    finally:
        await app.close()
        await connector.stop()
    return {
        "in_process_turn": summary_ms(timings),
        "replies_sent": replies,
        "tcp_connections_for_replies": connections,
        "conversation_state_json_bytes": document_bytes,
        "cpu_ms_per_turn_by_category": categories,
        "notes": (
            f"{turns} plain turns (menu retry prompt) in one conversation, handled in this process. CPU ms per turn "
            "from cProfile (cumulative, so categories overlap: e.g. state flatten inside the handler); the profiler "
            "inflates absolute figures, compare them with each other. tcp_connections_for_replies: distinct "
            "client ports the replies arrived on (1 = one kept-alive connection; = replies: a new one each time)."
        ),
    }
