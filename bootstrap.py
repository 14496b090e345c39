"""The composition root: builds what each of function_app.py's functions needs from Settings, once
per process (messages, the operations worker, the sweeper, transcripts and their cleanup, notify and
the external-events queue, the Direct Line token, health: one property per function, named after it).

function_app.py asks it for each function's dependencies; nothing below it (handlers, bot logic,
operations, services) imports it. Settings are read once; each function's dependencies are built
on its first invocation and kept, so importing the app stays cheap (cold start) and a queue-only
instance never loads the Bot Framework SDK.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import TYPE_CHECKING, Any

from bot_logic.clock import Clock, system_clock
from services.settings import Settings, load_settings, longest_sweep_gap

if TYPE_CHECKING:  # the SDKs are slow to import: built on first use, below
    from bot_logic.bot import LongOperationBot
    from handlers.directline_token import DirectLineTokenDependencies
    from handlers.health import HealthDependencies
    from handlers.messages import MessagesDependencies
    from handlers.notifications import ExternalEventDependencies, NotifyDependencies
    from handlers.operations_worker import WorkerDependencies
    from handlers.sweeper import SweeperDependencies
    from handlers.transcripts import TranscriptCleanupDependencies, TranscriptReadDependencies
    from services.notifications.conversation_references import ConversationReferences
    from services.queues.storage_queue import StorageQueue
    from services.state.cosmos import CosmosAccount
    from services.state.cosmos_storage import ConversationStorage, StorageCounters
    from services.telemetry import Tracing
    from services.transcripts.recorder import TranscriptRecorder
    from services.transcripts.store import TableTranscriptStore
    from services.turns.bot_adapter import FunctionsBotAdapter
    from services.turns.outbox import Outbox
    from services.turns.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)
# The Azure SDKs' HTTP logging policies log each request and each response at INFO: the URL (a state
# document's id is its key, which names the user), the partition key and the headers. The Functions Python
# worker sets the root logger to INFO and forwards every record to the host, so in Azure that is two
# records per Cosmos DB, Table or Queue call, formatted and sent on the turn's path (about 0.2 ms a Cosmos
# call here) and user ids at INFO. Their warnings and errors still get through.
AZURE_REQUEST_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy", "azure.cosmos._cosmos_http_logging_policy")


def quiet_azure_request_logs() -> None:
    for name in AZURE_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


# The worker's Direct Line posts at once: one per running invocation (host.json batchSize plus
# newBatchThreshold, at most 32 + 32 per instance); more only wait their turn.
DIRECT_LINE_THREADS = 32


def startup_warnings(settings: Settings) -> list[str]:
    """Settings that work but that the operator should know about."""
    warnings = []
    needed = settings.expire_after_seconds + longest_sweep_gap(settings.sweep_schedule)
    if settings.cosmos_time_to_live < needed:
        warnings.append(
            f"CosmosDbTimeToLive={settings.cosmos_time_to_live} is shorter than "
            f"ExpireAfterSeconds={settings.expire_after_seconds} plus the sweep interval of "
            f"SweepSchedule='{settings.sweep_schedule}' ({needed} s in all): Cosmos DB may delete idle "
            "conversations before the sweeper can notify their users. Raise CosmosDbTimeToLive."
        )
    if settings.messages_refusal:
        warnings.append(settings.messages_refusal)
    elif settings.local_mode:
        warnings.append("MicrosoftAppId is empty: Bot Framework authentication is off. Fine locally; never deploy so.")
    return warnings


class Composition:
    """Every part of the app, built lazily from one Settings. The Functions worker runs async
    functions on one event loop thread, so the lazy properties are never built concurrently."""

    def __init__(self, settings: Settings, clock: Clock = system_clock) -> None:
        quiet_azure_request_logs()
        self.settings = settings
        self.clock = clock
        self._closers: list[Callable[[], Awaitable[None]]] = []  # what close() releases, in reverse

    # --- what each function needs -------------------------------------------------------

    @cached_property
    def messages(self) -> MessagesDependencies:
        from bot_logic.turn_routing import TurnRouter
        from handlers.messages import MessagesDependencies, traced_turn

        bot = self.bot
        router = TurnRouter(
            run_turn=traced_turn(lambda context: self.unit_of_work.run(context, bot.on_turn), self.tracing),
            adapter=self.adapter,
            bot_app_id=self.settings.microsoft_app_id,
            signing_key=self.settings.operation_signing_key,
            clock=self.clock,
        )
        return MessagesDependencies(
            adapter=self.adapter, turn=router, tracing=self.tracing, refusal=self.settings.messages_refusal
        )

    @cached_property
    def worker(self) -> WorkerDependencies:
        from handlers.operations_worker import WorkerDependencies
        from services.channel.directline_client import DirectLineClient
        from services.host_config import max_dequeue_count

        settings = self.settings
        return WorkerDependencies(
            directline=DirectLineClient(settings.direct_line_endpoint, settings.direct_line_secret),
            signing_key=settings.operation_signing_key,
            max_dequeue_count=max_dequeue_count(settings.max_dequeue_count_override),
            send_to_poison=self._poison_sender(settings.operations_queue_name),
            clock=self.clock,
            progress_interval=settings.progress_interval_seconds,
            tracing=self.tracing,
            blocking_io=ThreadPoolExecutor(max_workers=DIRECT_LINE_THREADS, thread_name_prefix="directline"),
            read_conversation=self._read_conversation,
        )

    async def _read_conversation(self, key: str) -> dict[str, Any] | None:
        """A conversation's record only (all the worker and the quota look at): cheaper to restore."""
        from bot_logic.conversation_record import RECORD_PROPERTY

        return await self.conversations.read_properties(key, [RECORD_PROPERTY])

    @cached_property
    def directline_token(self) -> DirectLineTokenDependencies:
        import asyncio

        from handlers.directline_token import DirectLineTokenDependencies, proof_key
        from services.channel.directline_client import DirectLineClient

        settings = self.settings
        # A browser waits for this answer: a few short attempts, then the handler's 503.
        client = DirectLineClient(
            settings.direct_line_endpoint,
            settings.web_chat_direct_line_secret,
            max_attempts=3,
            base_delay=0.25,
            max_delay=2.0,
            timeout=5.0,
        )
        return DirectLineTokenDependencies(
            generate_token=lambda user_id: asyncio.to_thread(client.generate_token, user_id),
            proof_key=proof_key(settings.operation_signing_key),
        )

    @cached_property
    def sweeper(self) -> SweeperDependencies:
        from bot_logic.expiry import ExpiryPolicy
        from handlers.sweeper import SweeperDependencies

        settings = self.settings
        return SweeperDependencies(
            conversations=self.conversations,
            outbox=self.outbox,
            send_reply=self.adapter.send_stored,
            clock=self.clock,
            policy=ExpiryPolicy(
                settings.expire_after_seconds,
                settings.expiry_notice_enabled,
                settings.expiry_notice_text,
                settings.handoff_timeout_seconds,
            ),
        )

    @cached_property
    def health(self) -> HealthDependencies:
        from handlers.health import HealthDependencies

        return HealthDependencies(
            checks={
                # A point read of a key no conversation has: found or not, Cosmos DB answered.
                "cosmos": lambda: self.conversations.read(["health-check"]),
                "queue": self.operation_queue.ping,
            },
            cache_seconds=self.settings.health_cache_seconds,
        )

    @cached_property
    def transcript_reading(self) -> TranscriptReadDependencies:
        from handlers.transcripts import TranscriptReadDependencies

        settings = self.settings
        return TranscriptReadDependencies(
            self.transcript_store, settings.transcripts_enabled, settings.transcript_retention_days
        )

    @cached_property
    def transcript_cleanup(self) -> TranscriptCleanupDependencies:
        from handlers.transcripts import TranscriptCleanupDependencies

        return TranscriptCleanupDependencies(self.transcript_store, self.settings.transcript_retention_days, self.clock)

    @cached_property
    def notify(self) -> NotifyDependencies:
        from handlers.notifications import NotifyDependencies

        return NotifyDependencies(references=self.references, events=self.event_queue)

    @cached_property
    def external_events(self) -> ExternalEventDependencies:
        from bot_logic.notification_rules import envelope_key
        from handlers.notifications import ExternalEventDependencies
        from services.channel.rate_limiter import RateLimiter

        settings = self.settings
        return ExternalEventDependencies(
            references=self.references,
            events=self.event_queue,
            send=self.adapter.send_text,
            send_to_poison=self._poison_sender(settings.external_events_queue_name),
            limiter=RateLimiter(settings.notifications_per_second),
            envelope_key=envelope_key(settings.operation_signing_key),
            clock=self.clock,
        )

    # --- the parts they share -----------------------------------------------------------

    @cached_property
    def tracing(self) -> Tracing:
        from services.telemetry import Tracing

        # Decides where spans go on the first span, not here (cold start): services/telemetry.py.
        return Tracing(self.settings.application_insights_connection_string)

    def _poison_sender(self, queue_name: str) -> Callable[[bytes], Awaitable[None]]:
        """Moves a malformed message to `<queue_name>-poison` at once, instead of burning its retries."""
        poison = self._queue(f"{queue_name}-poison")

        async def send_to_poison(body: bytes) -> None:
            await poison.send_raw(body.decode("utf-8", errors="replace"))

        return send_to_poison

    @cached_property
    def cosmos(self) -> CosmosAccount:
        from services.state.cosmos import CosmosAccount

        account = CosmosAccount(self.settings)
        self._closers.append(account.close)
        return account

    @cached_property
    def counters(self) -> StorageCounters:
        from services.state.cosmos_storage import StorageCounters

        return StorageCounters()

    @cached_property
    def conversations(self) -> ConversationStorage:
        from bot_logic.expiry import sweep_times
        from services.state.cosmos_storage import ConversationStorage

        expire_after = self.settings.expire_after_seconds
        return ConversationStorage(
            self.cosmos.conversation_container,
            sweep_times=lambda state: sweep_times(state, expire_after),
            time_to_live=self.settings.cosmos_time_to_live,
            clock=self.clock,
            counters=self.counters,
        )

    @cached_property
    def adapter(self) -> FunctionsBotAdapter:
        from services.turns.authentication import create_authentication
        from services.turns.bot_adapter import FunctionsBotAdapter

        authentication = create_authentication(self.settings)
        self._closers.append(authentication.close)
        adapter = FunctionsBotAdapter(authentication, self.settings.microsoft_app_id)
        if self.transcripts is not None:
            from services.transcripts.middleware import CommittedTranscriptMiddleware

            adapter.use(CommittedTranscriptMiddleware(self.transcripts))  # type: ignore[no-untyped-call]  # the SDK's
        return adapter

    @cached_property
    def transcript_store(self) -> TableTranscriptStore:
        from services.transcripts.store import TableTranscriptStore

        store = TableTranscriptStore(self.settings.storage, self.settings.transcript_table_name)
        self._closers.append(store.close)
        return store

    @cached_property
    def transcripts(self) -> TranscriptRecorder | None:
        """Records every conversation (None when TranscriptsEnabled is false)."""
        if not self.settings.transcripts_enabled:
            return None
        from services.transcripts.recorder import TranscriptRecorder

        recorder = TranscriptRecorder(
            self.transcript_store, redact_user_text=self.settings.transcript_redact_user_text, clock=self.clock
        )
        self._closers.append(recorder.close)  # closed before the store: it flushes into it
        return recorder

    @cached_property
    def references(self) -> ConversationReferences:
        from services.notifications.conversation_references import ConversationReferences

        return ConversationReferences(
            self.cosmos.reference_container, time_to_live=self.settings.cosmos_time_to_live, clock=self.clock
        )

    @cached_property
    def event_queue(self) -> StorageQueue:
        return self._queue(self.settings.external_events_queue_name)

    @cached_property
    def operation_queue(self) -> StorageQueue:
        return self._queue(self.settings.operations_queue_name)

    def _queue(self, name: str) -> StorageQueue:
        """A sender to one of the app's storage queues, closed with the composition."""
        from services.queues.storage_queue import StorageQueue

        queue = StorageQueue(self.settings.storage, name)
        self._closers.append(queue.close)
        return queue

    @cached_property
    def outbox(self) -> Outbox:
        from bot_logic.operation_protocol import trace_attributes, with_traceparent
        from services.turns.outbox import Outbox

        # The queue message carries the enqueue span's traceparent: the worker's run joins the turn's trace.
        send = self.tracing.producer("enqueue operation", self.operation_queue.send, trace_attributes, with_traceparent)
        return Outbox(send_operation=send, clock=self.clock)

    @cached_property
    def unit_of_work(self) -> UnitOfWork:
        from bot_logic.bot import BUSY_TEXT
        from services.state.bot_states import DurableConversationState, DurableUserState
        from services.state.cosmos_storage import CosmosStorage
        from services.turns.unit_of_work import StateScopes, UnitOfWork

        user_storage = CosmosStorage(self.cosmos.user_container, counters=self.counters)
        conversations = self.conversations
        scopes = StateScopes(
            DurableConversationState(conversations), DurableUserState(user_storage), conversations, user_storage
        )
        unit_of_work = UnitOfWork(scopes, self.outbox, self.clock, busy_text=BUSY_TEXT)
        # Sent operation requests whose delivery is still unwritten: written before the Cosmos client closes.
        self._closers.append(unit_of_work.record_deliveries_now)
        return unit_of_work

    @cached_property
    def bot(self) -> LongOperationBot:
        from bot_logic.bot import LongOperationBot
        from bot_logic.operation_quota import OperationQuota
        from services.channel.activity_json import to_json
        from services.transcripts.recorder import HandoffTranscripts

        scopes = self.unit_of_work.scopes
        return LongOperationBot(
            scopes.conversation,
            scopes.user,
            effects=self.unit_of_work,
            clock=self.clock,
            operation_timeout_seconds=self.settings.operation_timeout_seconds,
            expire_after_seconds=self.settings.expire_after_seconds,
            subscriptions=self.references,
            transcripts=HandoffTranscripts(self.transcripts, self.transcript_store),
            handoff_timeout_seconds=self.settings.handoff_timeout_seconds,
            handoff_after_misunderstandings=self.settings.handoff_after_misunderstandings,
            operation_quota=OperationQuota(
                self.settings.max_running_operations_per_user,
                self.settings.operation_starts_per_user_per_hour,
                read_conversation=self._read_conversation,
            ),
            progress_messages_per_operation=self.settings.progress_messages_per_operation,
            progress_interval_seconds=self.settings.progress_interval_seconds,
            handoff_signing_key=self.settings.handoff_signing_key,
            model_json=to_json,
        )

    async def close(self) -> None:
        for close in reversed(self._closers):
            await close()


_composition: Composition | None = None
_lock = threading.Lock()


def composition() -> Composition:
    """The process's one Composition; the first call reads the settings (failing, naming the bad
    one, if any is missing or malformed) and logs the start-up warnings."""
    global _composition
    if _composition is None:
        with _lock:
            if _composition is None:
                settings = load_settings()
                for warning in startup_warnings(settings):
                    logger.warning(warning)
                _composition = Composition(settings)
    return _composition
