"""The baseline bot: the app's own dialog and greeting (bot_logic.bot.LongOperationBot with
bot_logic.dialogs.main_dialog.MainDialog), hosted the way the Bot Framework's Python samples host a
bot: botbuilder-integration-aiohttp's CloudAdapter, an aiohttp web app whose POST /api/messages calls
`adapter.process(request, bot)`, MemoryStorage behind ConversationState and UserState, and the
state saved at the end of the bot's on_turn (the samples' DialogBot). No app id: no authentication,
and replies go to the activity's serviceUrl with no token, as the app's do locally.

What it leaves out, compared with the app: durable state (Cosmos DB), transcripts, the outbox,
one-turn-at-a-time per conversation, redelivery checks across processes (the record still keeps
recent activity ids, in memory), and the request validation of handlers/messages.py.

A start turn: the dialog asks for the operation (DurableEffects.request_operation); here that is
kept for the turn and, once the state is saved, sent straight to an Azure Storage queue (Azurite,
with the app's own StorageQueue client; nothing consumes that queue). There is no outbox: a crash
between the save and the send loses the request, and a failing queue is reported to the user once,
never retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from botbuilder.core import ConversationState, MemoryStorage, TurnContext, UserState
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
    aiohttp_error_middleware,
)
from botbuilder.schema import Activity, ActivityTypes

from bench.baseline import TURN_ERROR_LOG
from bot_logic.bot import LongOperationBot
from bot_logic.clock import Clock, system_clock
from bot_logic.operation_quota import OperationQuota
from services.queues.storage_queue import StorageQueue
from services.settings import Settings, load_settings

logger = logging.getLogger("bench.baseline")

ERROR_TEXT = "The bot encountered an error or bug."  # the samples' on_turn_error reply
_EFFECTS_KEY = "bench.baseline.effects"  # where a turn's requested effects wait, in turn_state


@dataclass(frozen=True)
class SdkConfig:
    """The samples' DefaultConfig: what ConfigurationBotFrameworkAuthentication reads."""

    APP_ID: str
    APP_PASSWORD: str
    APP_TYPE: str
    APP_TENANTID: str


@dataclass
class _TurnEffects:
    replies: list[str]
    requests: list[tuple[dict[str, Any], str]]  # (operation request, reply if it cannot be sent)


class AfterSaveEffects:
    """DurableEffects without durability: what a turn asks for is done after its state is saved."""

    def __init__(self, queue: StorageQueue) -> None:
        self._queue = queue

    @staticmethod
    def _of(context: TurnContext) -> _TurnEffects:
        effects = context.turn_state.get(_EFFECTS_KEY)
        if effects is None:
            effects = context.turn_state[_EFFECTS_KEY] = _TurnEffects([], [])
        return effects

    def reply_durably(self, context: TurnContext, text: str) -> None:
        self._of(context).replies.append(text)

    def request_operation(
        self, context: TurnContext, request: dict[str, Any], deadline: float, failure_reply: str
    ) -> None:
        self._of(context).requests.append((request, failure_reply))

    async def run(self, context: TurnContext) -> None:
        effects = context.turn_state.get(_EFFECTS_KEY)
        if effects is None:
            return
        for text in effects.replies:
            await context.send_activity(text)
        for request, failure_reply in effects.requests:
            try:
                await self._queue.send(request)
            except Exception:
                logger.warning("operation request %s not sent", request.get("operationId"), exc_info=True)
                await context.send_activity(failure_reply)


class InMemorySubscriptions:
    """NotificationSubscriptions in a dict (the app keeps them in Cosmos DB)."""

    def __init__(self) -> None:
        self.references: dict[str, dict[str, Any]] = {}  # user id -> latest conversation reference
        self.topics: dict[str, set[str]] = {}  # user id -> topics

    async def remember(self, reference: dict[str, Any]) -> None:
        self.references[reference["user"]["id"]] = reference

    async def subscribe(self, reference: dict[str, Any], topic: str) -> list[str]:
        await self.remember(reference)
        topics = self.topics.setdefault(reference["user"]["id"], set())
        topics.add(topic)
        return sorted(topics)

    async def stop_notifications(self, reference: dict[str, Any]) -> list[str]:
        return sorted(self.topics.pop(reference["user"]["id"], set()))

    async def start_notifications(self, reference: dict[str, Any]) -> bool:
        return False


class NoTranscripts:
    """TranscriptSource of a bot that records none: a handoff gets only the current activity."""

    async def transcript(self, channel_id: str, conversation_id: str) -> list[dict[str, Any]]:
        return []


class BaselineBot(LongOperationBot):
    """The app's bot, saving its state at the end of on_turn as the samples' DialogBot does."""

    def __init__(
        self,
        conversation_state: ConversationState,
        user_state: UserState,
        effects: AfterSaveEffects,
        settings: Settings,
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(
            conversation_state,
            user_state,
            effects=effects,
            clock=clock,
            operation_timeout_seconds=settings.operation_timeout_seconds,
            expire_after_seconds=settings.expire_after_seconds,
            subscriptions=InMemorySubscriptions(),
            transcripts=NoTranscripts(),
            handoff_timeout_seconds=settings.handoff_timeout_seconds,
            handoff_after_misunderstandings=settings.handoff_after_misunderstandings,
            operation_quota=OperationQuota(
                settings.max_running_operations_per_user, settings.operation_starts_per_user_per_hour
            ),
            progress_messages_per_operation=settings.progress_messages_per_operation,
            progress_interval_seconds=settings.progress_interval_seconds,
            handoff_signing_key=settings.handoff_signing_key,
        )
        self.conversation_state = conversation_state
        self.user_state = user_state
        self.effects = effects

    async def on_turn(self, turn_context: TurnContext) -> None:
        await super().on_turn(turn_context)
        await self.conversation_state.save_changes(turn_context, False)
        await self.user_state.save_changes(turn_context, False)
        await self.effects.run(turn_context)  # only once the state holds the pending operation


async def on_turn_error(context: TurnContext, error: Exception) -> None:
    """The samples' handler: log it, tell the user (the request still answers 2xx)."""
    logger.error("%s in conversation %s", TURN_ERROR_LOG, context.activity.conversation.id, exc_info=error)
    await context.send_activity(ERROR_TEXT)


def create_app(environ: Mapping[str, str] | None = None) -> web.Application:
    """The baseline's web app, configured from the app's own settings (same names, same defaults),
    so expiry, timeouts and HandoffAfterMisunderstandings match the app being compared."""
    settings = load_settings(environ)
    config = SdkConfig(
        settings.microsoft_app_id,
        settings.microsoft_app_password,
        settings.microsoft_app_type,
        settings.microsoft_app_tenant_id,
    )
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(config))
    adapter.on_turn_error = on_turn_error
    memory = MemoryStorage()
    queue = StorageQueue(settings.storage, settings.operations_queue_name)
    bot = BaselineBot(ConversationState(memory), UserState(memory), AfterSaveEffects(queue), settings)

    async def messages(request: web.Request) -> web.Response:
        response = await adapter.process(request, bot)
        return response if response is not None else web.Response(status=201)

    async def close_queue(_: web.Application) -> None:
        await queue.close()

    app = web.Application(middlewares=[aiohttp_error_middleware])
    app.router.add_post("/api/messages", messages)
    app.on_cleanup.append(close_queue)
    return app


async def per_turn_clients_cpu_ms(service_url: str, repeats: int = 20) -> float:
    """CPU ms that CloudAdapterBase.process_activity spends on every turn building a new ConnectorClient
    and a new UserTokenClient (the app keeps both: services/turns/authentication.py), measured in this process
    the way it builds them, without sending anything. Each holds an msrest configuration whose retry
    policy builds its status list by scanning a 500-element list 999 times."""
    authentication = ConfigurationBotFrameworkAuthentication(SdkConfig("", "", "MultiTenant", ""))
    activity = Activity(type=ActivityTypes.message, channel_id="directline", service_url=service_url)
    request = await authentication.authenticate_request(activity, "")  # no app id: anonymous, as the baseline
    started = time.process_time()
    for _ in range(repeats):
        await request.connector_factory.create(service_url, request.audience)
        await authentication.create_user_token_client(request.claims_identity)
    return round((time.process_time() - started) * 1000 / repeats, 2)
