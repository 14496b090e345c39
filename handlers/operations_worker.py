"""The queue-triggered worker: run one long operation and post its result to the bot over Direct Line."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bot_logic.clock import Clock, system_clock
from bot_logic.conversation_record import state_key
from bot_logic.operation_protocol import (
    FAILED,
    PROGRESS_EVENT,
    RESULT_EVENT,
    SUCCEEDED,
    WORKER_ID,
    MalformedRequest,
    OperationRequest,
    carried_traceparent,
    parse_operation_request,
    progress_payload,
    result_payload,
    sign,
    trace_attributes,
    with_traceparent,
)
from bot_logic.pending_operation import ConversationReader, still_waiting
from handlers.queue_types import QueueMessageData
from operations import InvalidParameters, OperationFailed, UnknownOperation, get_operation, resolve_parameters
from services.channel.directline_client import DirectLineClient, DirectLineError
from services.telemetry import OUTCOME, Tracing

logger = logging.getLogger(__name__)

REPORT_MARGIN_SECONDS = 30.0  # time kept back from the deadline to post the result
# How often a running operation asks whether its conversation still waits for it: work stops at most
# this long (plus one chunk of the operation, 0.1-0.2 s) after the user cancels, on whichever instance runs it.
CANCEL_CHECK_SECONDS = 2.0

# A worker's Direct Line token is renewed once this share of its lifetime has passed (30 min in Azure:
# renewed after 15), well before it expires even when the instance sat idle in between.
TOKEN_RENEWAL_SHARE = 0.5
# What the service answers for a token it no longer honours or a conversation it no longer knows:
# the worker then opens a new conversation and posts again, once.
_STALE_CONVERSATION = {401, 403, 404}


class WorkerConversation:
    """The Direct Line conversation a worker instance posts every result and progress event into.

    One per instance, opened on first use, not one per operation run: each run would otherwise cost a
    start-conversation request (and in Azure a draw on Direct Line's rate limits) besides its posts.
    The bot keeps no state for it (bot_logic/turn_routing.py): each event names, inside its signed
    payload, the user's conversation it is for. Its token is refreshed once TOKEN_RENEWAL_SHARE of its
    lifetime has passed; a conversation the service refuses is forgotten and a new one opened.
    Called from the worker's Direct Line threads, hence the lock (a thread lock, held across the
    service call so that a burst of first posts opens one conversation, not one each)."""

    def __init__(self, client: DirectLineClient, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._conversation: tuple[str, str] | None = None  # (id, token)
        self._renew_at: float | None = None  # None: the token does not expire (the secret)

    def current(self) -> tuple[str, str]:
        """(conversation id, token) to post with, opening or refreshing as needed."""
        with self._lock:
            if self._conversation is not None and self._renew_at is not None and self._monotonic() >= self._renew_at:
                self._refresh()
            if self._conversation is None:
                opened = self._client.open_conversation()
                self._keep(str(opened.conversation_id), opened.token, opened.expires_in)
            assert self._conversation is not None
            return self._conversation

    def forget(self, conversation: tuple[str, str]) -> None:
        """The service refused `conversation`: the next post opens a new one (unless another thread did)."""
        with self._lock:
            if self._conversation == conversation:
                self._conversation = None

    def _refresh(self) -> None:
        assert self._conversation is not None
        conversation_id, token = self._conversation
        try:
            fresh = self._client.refresh_token(token)
        except DirectLineError as error:
            logger.warning("Direct Line token refresh failed (%s); opening a new worker conversation", error)
            self._conversation = None
            return
        self._keep(conversation_id, fresh.token, fresh.expires_in)

    def _keep(self, conversation_id: str, token: str, expires_in: int) -> None:
        self._conversation = (conversation_id, token)
        self._renew_at = self._monotonic() + expires_in * TOKEN_RENEWAL_SHARE if expires_in > 0 else None


@dataclass
class WorkerDependencies:
    directline: DirectLineClient
    signing_key: str
    max_dequeue_count: int
    send_to_poison: Callable[[bytes], Awaitable[None]]
    clock: Clock = system_clock
    progress_interval: float = 5.0  # seconds between progress messages, at most one per 10 %
    tracing: Tracing = field(default_factory=Tracing)  # off unless bootstrap passes the app's
    # Threads for the Direct Line client's blocking posts: never the event loop's default executor,
    # where the SDK's ConnectorClient sends the bot's replies. A post waits for the bot's turn, which
    # waits for its replies: with the posts of a full batch of invocations holding every default
    # thread, nothing would move until timeouts broke the circle.
    blocking_io: Executor = field(default_factory=lambda: ThreadPoolExecutor(thread_name_prefix="directline"))
    # Reads the conversation an operation works for; None: never checked (the work always runs to its end).
    read_conversation: ConversationReader | None = None
    cancel_check_interval: float = CANCEL_CHECK_SECONDS
    # The instance's one Direct Line conversation for results and progress (built from `directline`;
    # dataclasses.replace with another `directline` must pass conversation=None to get one on it).
    conversation: WorkerConversation | None = None

    def __post_init__(self) -> None:
        if self.conversation is None:
            self.conversation = WorkerConversation(self.directline)


class RetryOperation(Exception):
    """Raised to let the queue deliver the message again (the host retries, then poisons)."""


class OperationNoLongerWanted(Exception):
    """The conversation stopped waiting (cancel, expiry, timeout): the work stops, nothing is posted."""


async def _still_wanted(request: OperationRequest, deps: WorkerDependencies) -> bool:
    """Whether the conversation still waits for this operation. When its state cannot be read now, the
    work goes on: a passing storage problem must not cost a user the result they wait for."""
    if deps.read_conversation is None:
        return True
    try:
        state = await deps.read_conversation(state_key(request["conversation"]))
    except Exception as error:
        operation_id = request["operationId"]
        logger.warning("operation %s: cannot tell whether it is still wanted (%s); going on", operation_id, error)
        return True
    return still_waiting(state, request["operationId"])


# Span names, as Application Insights' transaction view lists them.
_POST_SPANS = {RESULT_EVENT: "post operation result", PROGRESS_EVENT: "post operation progress"}


class _ResultChannel:
    """An operation run's posts, in order, into the worker instance's shared conversation."""

    def __init__(
        self,
        client: DirectLineClient,
        conversation: WorkerConversation,
        tracing: Tracing,
        request: OperationRequest,
        threads: Executor,
    ) -> None:
        self._client = client
        self._shared = conversation
        self._threads = threads
        self._tracing = tracing
        self._attributes = trace_attributes(request)
        self._lock = asyncio.Lock()  # this run's posts in order

    async def post(self, name: str, value: dict[str, Any], best_effort: bool = False) -> None:
        with self._tracing.span(_POST_SPANS.get(name, f"post {name}"), kind="client", attributes=self._attributes):
            # The bot's turn for this event joins the trace through the traceparent beside the signed payload.
            carried = with_traceparent(value, self._tracing.traceparent())

            def post_sync() -> None:
                conversation = self._shared.current()
                try:
                    self._client.post_event(*conversation, name, carried, WORKER_ID, best_effort=best_effort)
                except DirectLineError as error:
                    if error.status not in _STALE_CONVERSATION:
                        raise
                    self._shared.forget(conversation)  # expired token or conversation gone: a new one, once
                    self._client.post_event(*self._shared.current(), name, carried, WORKER_ID, best_effort=best_effort)

            async with self._lock:
                # As asyncio.to_thread does, the thread runs in a copy of this context (log and trace context).
                context = contextvars.copy_context()
                await asyncio.get_running_loop().run_in_executor(self._threads, context.run, post_sync)


async def handle_operation_message(
    message: QueueMessageData, deps: WorkerDependencies, trace_parent: str | None = None
) -> str:
    """Returns what happened ("succeeded", "failed", "poisoned", "expired"); raises RetryOperation to retry.

    `trace_parent`: the Functions host's trace context of this invocation. The span of the run joins
    the trace of the turn that enqueued the message (its traceparent) and links the host's; a message
    without a usable traceparent (older ones) runs in the host's trace."""
    try:
        request = parse_operation_request(message.body)
    except MalformedRequest as error:
        with deps.tracing.span(
            "run operation", kind="consumer", parents=(trace_parent,), attributes={OUTCOME: "poisoned"}
        ):
            logger.error("queue message %s moved to the poison queue: %s", message.id, error)
            await deps.send_to_poison(message.body)
        return "poisoned"

    with deps.tracing.span(
        "run operation",
        kind="consumer",
        parents=(carried_traceparent(request), trace_parent),
        links=(trace_parent,),
        attributes={**trace_attributes(request), "bot.delivery": message.dequeue_count},
    ) as span:
        try:
            outcome = await _run(request, message, deps)
        except RetryOperation:
            span.set(OUTCOME, "retry")
            raise
        span.set(OUTCOME, outcome)
        return outcome


async def _run(request: OperationRequest, message: QueueMessageData, deps: WorkerDependencies) -> str:
    operation_id = request["operationId"]
    if deps.clock() >= request["deadline"]:
        # The bot has told (or will tell) the user it timed out; its result would be refused.
        logger.warning("operation %s picked up after its deadline; dropped", operation_id)
        return "expired"

    if not await _still_wanted(request, deps):
        # Cancelled (or expired) before any worker picked it up: it never runs.
        logger.info("operation %s not run: its conversation no longer waits for it", operation_id)
        return "cancelled"
    assert deps.conversation is not None  # WorkerDependencies.__post_init__
    channel = _ResultChannel(deps.directline, deps.conversation, deps.tracing, request, deps.blocking_io)

    async def report(outcome: str, text: str) -> str:
        await channel.post(RESULT_EVENT, sign(result_payload(request, outcome, text), deps.signing_key))
        logger.info("operation %s (%s) %s", operation_id, request["operation"], outcome)
        return outcome

    try:
        operation = get_operation(request["operation"])
        parameters = resolve_parameters(operation, request.get("parameters"))
    except UnknownOperation:
        return await report(FAILED, f"I don't know an operation called {request['operation']!r}.")
    except InvalidParameters as error:
        return await report(FAILED, f"Its parameters were not valid: {error}")

    progress = _ProgressRelay(channel, request, deps)
    # Stop in time to report before the deadline: after it, the bot refuses the result anyway.
    time_left = request["deadline"] - deps.clock() - REPORT_MARGIN_SECONDS
    try:
        try:
            text = await asyncio.wait_for(operation.run(parameters, progress), timeout=max(1.0, time_left))
        finally:
            await progress.settle()  # a progress post on its way must not arrive after the result
    except OperationNoLongerWanted:
        stopped_at = progress.percent
        logger.info("operation %s stopped at %d%%: its conversation no longer waits for it", operation_id, stopped_at)
        return "cancelled"
    except TimeoutError:
        return await report(FAILED, "It ran out of time and was stopped.")
    except OperationFailed as error:
        # A failure in plain words is final: running it again would fail the same way.
        return await report(FAILED, str(error))
    except Exception as error:
        if message.dequeue_count < deps.max_dequeue_count:
            logger.warning(
                "operation %s failed on delivery %d of %d; the queue will retry",
                operation_id,
                message.dequeue_count,
                deps.max_dequeue_count,
                exc_info=True,
            )
            raise RetryOperation(str(error)) from error
        logger.exception("operation %s failed on its last delivery", operation_id)
        return await report(FAILED, f"It failed {deps.max_dequeue_count} times ({type(error).__name__}: {error}).")
    return await report(SUCCEEDED, text)


class _ProgressRelay:
    """The one throttle on progress: at most one message per progress_interval and per 10 %.

    Progress never holds the operation up: it is posted in the background, one short attempt,
    and skipped while the previous post is still on its way.
    """

    def __init__(self, channel: _ResultChannel, request: OperationRequest, deps: WorkerDependencies) -> None:
        self._channel = channel
        self._request = request
        self._deps = deps
        self._last_percent = 0
        self._last_time = deps.clock()
        self._last_check = deps.clock()
        self._posting: asyncio.Task[None] | None = None
        self.percent = 0  # the latest the operation reported

    async def __call__(self, fraction: float) -> None:
        percent = int(max(0.0, min(1.0, fraction)) * 100)
        self.percent = percent
        now = self._deps.clock()
        if now - self._last_check >= self._deps.cancel_check_interval:
            # Between two chunks of the operation: the one place work can stop.
            self._last_check = now
            if not await _still_wanted(self._request, self._deps):
                raise OperationNoLongerWanted
            now = self._deps.clock()
        if percent >= 100 or percent - self._last_percent < 10 or now - self._last_time < self._deps.progress_interval:
            return
        if self._posting is not None and not self._posting.done():
            return
        self._last_percent, self._last_time = percent, now
        payload = sign(progress_payload(self._request, percent), self._deps.signing_key)
        self._posting = asyncio.create_task(self._post(payload))

    async def _post(self, payload: dict[str, Any]) -> None:
        try:
            await self._channel.post(PROGRESS_EVENT, payload, best_effort=True)
        except Exception as error:
            logger.warning("progress of operation %s not delivered: %s", self._request["operationId"], error)

    async def settle(self) -> None:
        """Wait for a progress post on its way (one short attempt, so not for long)."""
        if self._posting is not None:
            await self._posting
