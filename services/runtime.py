"""The composition root: builds the bot and everything it needs from Settings, once per process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from botbuilder.core import ConversationState, TurnContext, UserState
from botbuilder.schema import ConversationReference

from bot_logic.bot import LongOperationBot
from bot_logic.clock import Clock, system_clock
from bot_logic.expiry import conversation_index_fields
from handlers.operations_worker import WorkerDependencies
from handlers.sweeper import SweeperDependencies
from services.bot_adapter import FunctionsBotAdapter, create_authentication
from services.cosmos import CosmosAccount
from services.cosmos_storage import CosmosStorage, StorageCounters
from services.directline_client import DirectLineClient
from services.host_config import max_dequeue_count
from services.operation_queue import OperationQueue
from services.settings import Settings, load_settings
from services.unit_of_work import StateScopes


@dataclass
class BotRuntime:
    settings: Settings
    cosmos: CosmosAccount
    adapter: FunctionsBotAdapter
    bot: LongOperationBot
    scopes: StateScopes
    conversations: CosmosStorage
    counters: StorageCounters
    operation_queue: OperationQueue
    clock: Clock

    async def close(self) -> None:
        await self.cosmos.close()
        await self.operation_queue.close()


def build_runtime(settings: Settings, clock: Clock = system_clock) -> BotRuntime:
    cosmos = CosmosAccount(settings)
    counters = StorageCounters()
    index_fields = conversation_index_fields(settings.expire_after_seconds, settings.cosmos_time_to_live, clock)
    conversation_storage = CosmosStorage(cosmos.conversation_container, index_fields, counters)
    user_storage = CosmosStorage(cosmos.user_container, counters=counters)
    conversation_state = ConversationState(conversation_storage)
    user_state = UserState(user_storage)
    operation_queue = OperationQueue(settings.storage_connection_string, settings.operations_queue_name)
    bot = LongOperationBot(
        conversation_state,
        user_state,
        enqueue=operation_queue.send,
        clock=clock,
        operation_timeout_seconds=settings.operation_timeout_seconds,
        expire_after_seconds=settings.expire_after_seconds,
    )
    return BotRuntime(
        settings=settings,
        cosmos=cosmos,
        adapter=FunctionsBotAdapter(create_authentication(settings)),
        bot=bot,
        scopes=StateScopes(conversation_state, user_state, user_storage),
        conversations=conversation_storage,
        counters=counters,
        operation_queue=operation_queue,
        clock=clock,
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


_worker: WorkerDependencies | None = None


def build_worker_dependencies(settings: Settings, clock: Clock = system_clock) -> WorkerDependencies:
    poison = OperationQueue(settings.storage_connection_string, f"{settings.operations_queue_name}-poison")

    async def send_to_poison(body: bytes) -> None:
        await poison.send_raw(body.decode("utf-8", errors="replace"))

    return WorkerDependencies(
        directline=DirectLineClient(settings.direct_line_endpoint, settings.direct_line_secret),
        signing_key=settings.operation_signing_key,
        max_dequeue_count=max_dequeue_count(),
        send_to_poison=send_to_poison,
        clock=clock,
    )


async def get_worker_dependencies() -> WorkerDependencies:
    global _worker
    if _worker is None:
        _worker = build_worker_dependencies(load_settings())
    return _worker


def build_sweeper_dependencies(runtime: BotRuntime) -> SweeperDependencies:
    settings = runtime.settings

    async def notify(reference: dict[str, Any], texts: list[str]) -> None:
        async def send(context: TurnContext) -> None:
            for text in texts:
                await context.send_activity(text)

        await runtime.adapter.continue_conversation(
            ConversationReference().deserialize(reference), send, settings.microsoft_app_id
        )

    return SweeperDependencies(
        conversations=runtime.conversations,
        notify=notify,
        clock=runtime.clock,
        expire_after_seconds=settings.expire_after_seconds,
        notice_enabled=settings.expiry_notice_enabled,
        notice_text=settings.expiry_notice_text,
    )
