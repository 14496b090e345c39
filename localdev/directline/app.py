"""The aiohttp application: client API, Connector API, Web Chat page and agent console on one port."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from localdev.directline import agent_console, client_api, connector_api, webchat
from localdev.directline.channel import Channel, Settings
from localdev.directline.client_api import CHANNEL
from localdev.directline.errors import cors_and_errors
from localdev.directline.handoff import HANDOFFS, HandoffDesk
from localdev.directline.store import ConversationStore
from localdev.directline.tokens import TokenService

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WEBCHAT_JS = PROJECT_ROOT / "node_modules" / "botframework-webchat" / "dist" / "webchat.js"


def create_app(
    bot_endpoint: str,
    secret: str,
    public_url: str,
    *,
    bot_id: str = "bot",
    bot_name: str = "Bot",
    token_ttl: int = 1800,
    stream_ttl: int = 120,
    bot_timeout: float = 15.0,
    max_activities: int = 1000,
    max_stored_activities: int = 200_000,
    idle_ttl: float = 7200.0,
    sweep_interval: float = 60.0,
    webchat_js: Path | None = DEFAULT_WEBCHAT_JS,
    token_endpoint: str | None = None,
    clock: Callable[[], float] = time.time,
    handoff_signing_key: str | None = None,
    console_key: str | None = None,
) -> web.Application:
    """Build the local Direct Line. `public_url` is what clients and the bot use to reach it (serviceUrl).

    `token_endpoint`: where the Web Chat page gets its token (a server holding the secret, e.g. the
    app's /api/directline/token). `clock` (seconds since the epoch) drives token expiry and idle
    expiry; tests pass a fake one.
    `handoff_signing_key` (the app's HandoffSigningKey) signs the agent console's handoff.status events;
    `console_key` guards the console (agent_console.py; a random one when not given).
    """
    if not secret:
        raise ValueError("a Direct Line secret is required")
    public_url = public_url if public_url.endswith("/") else public_url + "/"
    settings = Settings(
        bot_endpoint=bot_endpoint,
        public_url=public_url,
        bot_id=bot_id,
        bot_name=bot_name,
        token_ttl=token_ttl,
        stream_ttl=stream_ttl,
        bot_timeout=bot_timeout,
        max_activities=max_activities,
        max_stored_activities=max_stored_activities,
        idle_ttl=idle_ttl,
        webchat_js=webchat_js,
        token_endpoint=token_endpoint,
    )
    store = ConversationStore(max_activities, idle_ttl, clock, max_stored_activities)
    channel = Channel(settings, store, TokenService(secret, settings.domain, clock), secret)

    # Uploads are read part by part with their own cap; this only bounds plain JSON bodies.
    app = web.Application(
        middlewares=[cors_and_errors, agent_console.console_guard], client_max_size=settings.max_upload_bytes * 4
    )
    app[CHANNEL] = channel
    app[agent_console.CONSOLE] = agent_console.ConsoleSettings.create(console_key, handoff_signing_key, clock)
    handoffs = HandoffDesk(store, max_activities)
    app[HANDOFFS] = handoffs

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        channel.session = aiohttp.ClientSession()
        sweeper = asyncio.get_running_loop().create_task(_sweep_forever(store, handoffs, sweep_interval))
        yield
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await channel.close()

    async def close_streams(_: web.Application) -> None:
        store.close_all_streams()  # so shutdown does not wait on open WebSockets

    app.cleanup_ctx.append(lifetime)
    app.on_shutdown.append(close_streams)
    client_api.add_routes(app)
    connector_api.add_routes(app)
    webchat.add_routes(app)
    agent_console.add_routes(app)
    return app


async def _sweep_forever(store: ConversationStore, handoffs: HandoffDesk, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        store.sweep()
        handoffs.prune()  # a dropped conversation takes its handoff along
