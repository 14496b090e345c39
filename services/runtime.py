"""The composition root: builds the bot and everything it needs from Settings, once per process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from botbuilder.core import ConversationState, UserState

from bot_logic.bot import LongOperationBot
from bot_logic.clock import Clock, system_clock
from bot_logic.expiry import conversation_index_fields
from services.bot_adapter import FunctionsBotAdapter, create_authentication
from services.cosmos import CosmosAccount
from services.cosmos_storage import CosmosStorage, StorageCounters
from services.settings import Settings, load_settings
from services.unit_of_work import StateScopes


@dataclass
class BotRuntime:
    settings: Settings
    cosmos: CosmosAccount
    adapter: FunctionsBotAdapter
    bot: LongOperationBot
    scopes: StateScopes
    counters: StorageCounters

    async def close(self) -> None:
        await self.cosmos.close()


def build_runtime(settings: Settings, clock: Clock = system_clock) -> BotRuntime:
    cosmos = CosmosAccount(settings)
    counters = StorageCounters()
    conversation_storage = CosmosStorage(
        cosmos.conversation_container, conversation_index_fields(settings.expire_after_seconds, clock), counters
    )
    user_storage = CosmosStorage(cosmos.user_container, counters=counters)
    conversation_state = ConversationState(conversation_storage)
    user_state = UserState(user_storage)
    return BotRuntime(
        settings=settings,
        cosmos=cosmos,
        adapter=FunctionsBotAdapter(create_authentication(settings)),
        bot=LongOperationBot(conversation_state, user_state, clock=clock),
        scopes=StateScopes(conversation_state, user_state, user_storage),
        counters=counters,
    )


_runtime: BotRuntime | None = None
_lock = asyncio.Lock()


async def get_runtime() -> BotRuntime:
    """The process-wide runtime, built on first use so that importing the app stays cheap."""
    global _runtime
    if _runtime is None:
        async with _lock:
            if _runtime is None:
                _runtime = build_runtime(load_settings())
    return _runtime
