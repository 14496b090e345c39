"""The app's composition against the test session's emulators, driven through its handlers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bootstrap import Composition
from bot_logic.clock import Clock, system_clock
from handlers.http_types import HttpResponseData
from handlers.messages import handle_messages
from localdev.app_settings import app_settings
from localdev.emulators import Azurite, CosmosStandIn
from services.settings import load_settings
from tests.support.activities import activity, joined, post


@asynccontextmanager
async def composed_app(
    azurite: Azurite, cosmos: CosmosStandIn, clock: Clock = system_clock, **overrides: str
) -> AsyncIterator[Composition]:
    """A Composition on a fresh database and queue, closed afterwards."""
    app = Composition(load_settings(app_settings(azurite, cosmos, **overrides)), clock)
    try:
        yield app
    finally:
        await app.close()


async def send(app: Composition, body: Any, **request: str) -> HttpResponseData:
    """POST an activity (or raw bytes) to the messages handler."""
    return await handle_messages(post(body, **request), app.messages)


async def open_named_conversation(app: Composition, service_url: str, name: str) -> str:
    """A new conversation in which the user has joined and given their name; its id."""
    conversation = f"c-{uuid.uuid4()}"
    await send(app, joined(conversation, service_url))
    await send(app, activity(conversation, service_url, text=name))
    return conversation
