"""Proactive notifications triggered by outside events ("the pizza is ready to pick up").

Two handlers:

* `handle_notify_request` serves `POST /api/notify`: it checks the notification, checks that its
  target is known, and puts it on the external-events queue (202). It never sends anything itself,
  so the caller gets an answer in milliseconds however many users a topic reaches.
* `handle_external_event` serves that queue (outside systems may also put messages on it directly):
  a topic notification fans out into one delivery message per subscriber on the same queue; a
  delivery message is sent to its user's latest conversation (or to the conversation it names),
  at the configured rate, and recorded per conversation so that a redelivered message has effect once.

Message format (HTTP body and queue message alike), exactly one target:

    {"id"?: "<idempotency key>", "text": "...", "userId" | "conversationId" | "topic": "..."}

A queue message without "id" takes the queue message's id. A topic's delivery messages are
`{"id": "<notification id>/u-<digest of the user id>", "userId": ..., "text": ..., "viaTopic": topic}`:
a redelivered topic message queues the same ids again and they are skipped at delivery, and a user
who stopped following the topic meanwhile is skipped too.

What is guaranteed: nothing accepted is lost while the queue keeps it (a host that stops midway
leaves the rest on the queue); a delivery is sent once unless the host stops between the send and
its record (then the queue's redelivery sends it again: at least once). The send rate is per process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from handlers.http_types import BadJson, HttpRequestData, HttpResponseData, error, parse_json
from services.channel_errors import is_permanent, retry_after_of
from services.conversation_references import (
    DEFAULT_CLAIM_SECONDS,
    DeliveryClaim,
    InvalidTopic,
    normalise_topic,
)
from services.rate_limiter import RateLimiter

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_TEXT_LENGTH = 4000  # characters: a chat message, not a document; a queue message stays far below 64 KB
MAX_ID_LENGTH = 128  # a caller's idempotency key
MAX_TARGET_LENGTH = 1024  # a user or conversation id (channels' ids are far shorter)
_DERIVED_ID_DIGEST = 24  # hex characters of the user id's digest in a delivery message's id
# A send that fails for a passing reason is queued again, backing off 5 s, 10 s, ... up to 15 min:
# 16 tries cover about three hours of a channel outage; then the queue's retries and its poison queue.
MAX_TRANSIENT_FAILURES = 16
FIRST_FAILURE_BACKOFF_SECONDS = 5.0
MAX_FAILURE_BACKOFF_SECONDS = 900.0
MAX_QUEUED_ID_LENGTH = MAX_ID_LENGTH + len("/u-") + _DERIVED_ID_DIGEST
TARGETS: Final = ("userId", "conversationId", "topic")
STORE_RETRY_AFTER_SECONDS = 5

# What handle_external_event did with a message.
POISONED = "poisoned"  # malformed: moved to the poison queue
FANNED_OUT = "fanned-out"  # a topic notification: one delivery message per subscriber queued
DELIVERED = "delivered"
DUPLICATE = "duplicate"  # delivered to that conversation before: skipped
DROPPED = "dropped"  # nobody to send it to (unknown user or conversation): logged
DEFERRED = "deferred"  # queued again, hidden until the channel's Retry-After (or another sender's claim) passes


class InvalidNotification(ValueError):
    """The message says what is wrong, for the caller (HTTP 400) or the log (poison queue)."""


@dataclass(frozen=True)
class Notification:
    text: str
    target: str  # one of TARGETS
    value: str  # the user id, conversation id, or normalised topic
    id: str | None = None
    via_topic: str | None = None  # with a userId: deliver only while the user still follows this topic
    failures: int = 0  # sends that failed for a passing reason (5xx, timeouts) so far

    def message(self, notification_id: str) -> dict[str, Any]:
        """The queue message for it, with its id spelled out (a re-queued copy gets a new queue message id)."""
        message = {"id": notification_id, self.target: self.value, "text": self.text}
        if self.via_topic is not None:
            message["viaTopic"] = self.via_topic
        if self.failures:
            message["failures"] = self.failures
        return message


class EventQueue(Protocol):
    """The external-events queue (services.operation_queue.OperationQueue)."""

    async def send_raw(self, text: str, visibility_timeout: float | None = None) -> None: ...


class NotificationTargets(Protocol):
    """What the HTTP handler looks up (services.conversation_references.ConversationReferences)."""

    async def user_reference(self, user_id: str) -> dict[str, Any] | None: ...

    async def conversation_reference(self, conversation_id: str) -> dict[str, Any] | None: ...

    async def count_subscribers(self, topic: str) -> int: ...


class DeliveryStore(Protocol):
    """What delivery needs (services.conversation_references.ConversationReferences)."""

    async def user_reference_and_topics(self, user_id: str) -> tuple[dict[str, Any], list[str]] | None: ...

    def subscribers(self, topic: str) -> AsyncIterator[tuple[str, dict[str, Any]]]: ...

    async def claim_delivery(
        self,
        conversation_id: str,
        notification_id: str,
        lease_seconds: float = ...,
        reference: dict[str, Any] | None = None,
    ) -> DeliveryClaim: ...

    async def record_delivery(self, claim: DeliveryClaim) -> None: ...

    async def release_delivery(self, claim: DeliveryClaim) -> None: ...


class QueueMessage(Protocol):
    """A queue message as plain data (handlers.operations_worker.QueueMessageData fits)."""

    @property
    def id(self) -> str: ...

    @property
    def body(self) -> bytes: ...

    @property
    def dequeue_count(self) -> int: ...


@dataclass
class NotifyDependencies:
    references: NotificationTargets
    events: EventQueue
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex


@dataclass
class ExternalEventDependencies:
    references: DeliveryStore
    events: EventQueue  # the same queue: fan-out and deferred deliveries go back onto it
    send: Callable[[dict[str, Any], str], Awaitable[None]]  # (reference, text): the proactive send
    send_to_poison: Callable[[bytes], Awaitable[None]]
    limiter: RateLimiter  # one per process: shared by every delivery of this process
    clock: Callable[[], float] = time.time  # wall clock: claims' leases, HTTP-date Retry-After
    max_in_process_wait: float = 10.0  # a Retry-After up to this is waited out in process
    max_send_attempts: int = 3  # sends of one message in process (each after a short 429)
    claim_seconds: float = DEFAULT_CLAIM_SECONDS  # how long a claim keeps other processes off
    fan_out_concurrency: int = 16  # delivery messages queued at once by a fan-out


class DeliveryFailed(Exception):
    """A send failed (not a 429): raised so the queue delivers the message again, then poisons it."""


# --- the message -------------------------------------------------------------------------------


def parse_notification(body: bytes, max_id_length: int = MAX_ID_LENGTH) -> Notification:
    """The notification in a JSON body; raises InvalidNotification naming the problem."""
    try:
        data = parse_json(body)
    except BadJson as problem:
        raise InvalidNotification(f"the body is not valid JSON: {problem}") from None
    if not isinstance(data, dict):
        raise InvalidNotification("the body must be a JSON object")
    targets = [name for name in TARGETS if name in data]
    if not targets:
        raise InvalidNotification("name exactly one target: 'userId', 'conversationId' or 'topic'")
    if len(targets) > 1:
        raise InvalidNotification(f"name exactly one target, not {' and '.join(repr(t) for t in targets)}")
    target = targets[0]
    value = _text_field(data, target, MAX_TARGET_LENGTH)
    if target == "topic":
        try:
            value = normalise_topic(value)
        except InvalidTopic as problem:
            raise InvalidNotification(f"'topic': {problem}") from None
    if "text" not in data:
        raise InvalidNotification("'text' is required: the message to send")
    text = _text_field(data, "text", MAX_TEXT_LENGTH)
    notification_id = _text_field(data, "id", max_id_length) if "id" in data else None
    via_topic = None
    if "viaTopic" in data:
        if target != "userId":
            raise InvalidNotification("'viaTopic' goes only with 'userId'")
        try:
            via_topic = normalise_topic(_text_field(data, "viaTopic", MAX_TARGET_LENGTH))
        except InvalidTopic as problem:
            raise InvalidNotification(f"'viaTopic': {problem}") from None
    failures = data.get("failures", 0)
    if not isinstance(failures, int) or isinstance(failures, bool) or not 0 <= failures <= MAX_TRANSIENT_FAILURES:
        raise InvalidNotification(f"'failures' must be a whole number from 0 to {MAX_TRANSIENT_FAILURES}")
    return Notification(
        text=text, target=target, value=value, id=notification_id, via_topic=via_topic, failures=failures
    )


def _text_field(data: dict[str, Any], name: str, max_length: int) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise InvalidNotification(f"'{name}' must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidNotification(f"'{name}' must not be empty")
    if len(value) > max_length:
        raise InvalidNotification(f"'{name}' is {len(value)} characters long; at most {max_length} are allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidNotification(f"'{name}' holds an unpaired surrogate (\\ud800-\\udfff)") from None
    return value


def delivery_id(notification_id: str, user_id: str) -> str:
    """The id of a topic notification's delivery to one user: the same on every fan-out of it."""
    digest = hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:_DERIVED_ID_DIGEST]
    return f"{notification_id}/u-{digest}"


async def _enqueue(events: EventQueue, message: dict[str, Any], visibility_timeout: float | None = None) -> None:
    # Not ASCII-escaped: 4000 characters of emoji stay within a queue message's 64 KB after base64.
    await events.send_raw(json.dumps(message, ensure_ascii=False), visibility_timeout)


# --- POST /api/notify --------------------------------------------------------------------------


async def handle_notify_request(request: HttpRequestData, deps: NotifyDependencies) -> HttpResponseData:
    """202 {"id", "status": "accepted"} (a topic's answer adds "subscribers": how many follow it now;
    0 is accepted too); 400 naming the problem; 404 for an unknown user or conversation; 503 when
    the conversation store or the queue is unavailable (nothing was accepted: try again)."""
    if request.method.upper() != "POST":
        return error(405, "method_not_allowed", "Use POST.", {"Allow": "POST"})
    if len(request.body) > MAX_BODY_BYTES:
        return error(413, "body_too_large", f"The body is {len(request.body)} bytes; at most {MAX_BODY_BYTES}.")
    try:
        notification = parse_notification(request.body)
    except InvalidNotification as problem:
        return error(400, "invalid_notification", f"Invalid notification: {problem}.")
    notification_id = notification.id or deps.new_id()
    accepted: dict[str, Any] = {"id": notification_id, "status": "accepted"}
    try:
        if notification.target == "userId":
            if await deps.references.user_reference(notification.value) is None:
                return error(
                    404,
                    "unknown_user",
                    f"No conversation is known for user {notification.value!r}: they have not talked to the bot yet.",
                )
        elif notification.target == "conversationId":
            if await deps.references.conversation_reference(notification.value) is None:
                return error(
                    404,
                    "unknown_conversation",
                    f"No conversation {notification.value!r} is known: the bot has not talked in it, "
                    "or it has been idle too long.",
                )
        else:
            accepted["subscribers"] = await deps.references.count_subscribers(notification.value)
    except Exception:
        logger.warning("notify %s: the conversation store could not be read", notification_id, exc_info=True)
        return error(
            503,
            "store_unavailable",
            "The bot cannot look up its conversations right now, so the notification was not accepted. "
            "Try again shortly.",
            {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
        )
    try:
        await _enqueue(deps.events, notification.message(notification_id))
    except Exception:
        logger.warning("notify %s: the external-events queue is unavailable", notification_id, exc_info=True)
        return error(
            503,
            "queue_unavailable",
            "The notification queue is unavailable right now, so the notification was not accepted. Try again shortly.",
            {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
        )
    logger.info("notify %s accepted for %s %r", notification_id, notification.target, notification.value)
    return HttpResponseData(202, accepted)


# --- the external-events queue -----------------------------------------------------------------


async def handle_external_event(message: QueueMessage, deps: ExternalEventDependencies) -> str:
    """What happened to the message (POISONED, FANNED_OUT, DELIVERED, DUPLICATE, DROPPED, DEFERRED).
    Raises (DeliveryFailed, or the store's or queue's error) to have the queue deliver it again."""
    try:
        notification = parse_notification(message.body, MAX_QUEUED_ID_LENGTH)
        notification_id = notification.id or message.id
        if not notification_id:
            raise InvalidNotification("it has no 'id' and the queue message has none either")
    except InvalidNotification as problem:
        logger.error("external event %s moved to the poison queue: %s", message.id, problem)
        await deps.send_to_poison(message.body)
        return POISONED
    if notification.target == "topic":
        return await _fan_out(notification, notification_id, deps)
    return await _deliver(notification, notification_id, deps)


async def _fan_out(notification: Notification, notification_id: str, deps: ExternalEventDependencies) -> str:
    """One delivery message per subscriber, queued before this message completes: if the host stops
    midway, this message comes back and queues them all again (the copies are skipped at delivery)."""
    queued = 0
    batch: list[str] = []

    async def queue_batch() -> None:
        nonlocal queued
        messages = [
            Notification(notification.text, "userId", user_id, via_topic=notification.value).message(
                delivery_id(notification_id, user_id)
            )
            for user_id in batch
        ]
        try:
            async with asyncio.TaskGroup() as group:
                for delivery in messages:
                    group.create_task(_enqueue(deps.events, delivery))
        except BaseExceptionGroup as failures:
            raise failures.exceptions[0] from None  # the first cause, as a plain exception for the host's log
        queued += len(messages)
        batch.clear()

    async for user_id, _reference in deps.references.subscribers(notification.value):
        batch.append(user_id)
        if len(batch) >= deps.fan_out_concurrency:
            await queue_batch()
    if batch:
        await queue_batch()
    logger.info("notification %s on topic %r: %d deliveries queued", notification_id, notification.value, queued)
    return FANNED_OUT


async def _deliver(notification: Notification, notification_id: str, deps: ExternalEventDependencies) -> str:
    reference: dict[str, Any] | None = None
    if notification.target == "userId":
        found = await deps.references.user_reference_and_topics(notification.value)
        if found is None:
            # Retrying cannot help (they may never talk to the bot): log it and let the message go.
            logger.warning(
                "notification %s dropped: no conversation is known for user %r", notification_id, notification.value
            )
            return DROPPED
        reference, topics = found
        if notification.via_topic is not None and notification.via_topic not in topics:
            logger.info(
                "notification %s dropped: user %r stopped following %r",
                notification_id,
                notification.value,
                notification.via_topic,
            )
            return DROPPED
        conversation_id = reference["conversation"]["id"]
    else:
        conversation_id = notification.value

    # Before the claim, so a claim's lease is not spent waiting here.
    if not await deps.limiter.acquire(max_pause=deps.max_in_process_wait):
        # The channel asked this process to hold off for long: wait on the queue, not in the function.
        return await _defer(notification, notification_id, deps, deps.limiter.paused_for(), "sending is paused")

    claim = await deps.references.claim_delivery(conversation_id, notification_id, deps.claim_seconds, reference)
    if claim.status == "unknown":
        logger.warning("notification %s dropped: conversation %r is not known", notification_id, conversation_id)
        return DROPPED
    if claim.status == "delivered":
        logger.info("notification %s was delivered to %s before: skipped", notification_id, conversation_id)
        return DUPLICATE
    if claim.status == "in-flight":
        busy_for = (claim.busy_until or 0) - deps.clock() + 1
        return await _defer(notification, notification_id, deps, busy_for, "another process is sending it")

    assert claim.reference is not None
    for attempt in range(1, deps.max_send_attempts + 1):
        try:
            await deps.send(claim.reference, notification.text)
            break
        except Exception as failure:
            retry_after = retry_after_of(failure, deps.clock)
            if retry_after is None:
                await _release(claim, deps)
                if is_permanent(failure) or notification.failures >= MAX_TRANSIENT_FAILURES:
                    # The queue's own retries, then its poison queue, where an operator can look.
                    raise DeliveryFailed(
                        f"notification {notification_id} to conversation {conversation_id}: {failure}"
                    ) from failure
                # A channel outage: wait on the queue, backing off, rather than burn the queue's few retries.
                later = replace(notification, failures=notification.failures + 1)
                backoff = min(MAX_FAILURE_BACKOFF_SECONDS, FIRST_FAILURE_BACKOFF_SECONDS * 2**notification.failures)
                return await _defer(later, notification_id, deps, backoff, f"the send failed ({failure})")
            deps.limiter.pause(retry_after)  # every send of this process waits, not only this one
            if retry_after > deps.max_in_process_wait or attempt == deps.max_send_attempts:
                await _release(claim, deps)
                return await _defer(notification, notification_id, deps, retry_after, "the channel answered 429")
            logger.info(
                "notification %s: the channel answered 429; sending again in %.1f s", notification_id, retry_after
            )
            if not await deps.limiter.acquire(max_pause=deps.max_in_process_wait):  # another 429 made it longer
                await _release(claim, deps)
                return await _defer(notification, notification_id, deps, deps.limiter.paused_for(), "sending is paused")
    try:
        await deps.references.record_delivery(claim)
    except Exception:
        # Raising would make the queue send it again; the user has it already.
        logger.warning(
            "notification %s sent to %s but not recorded: a redelivery would send it again",
            notification_id,
            conversation_id,
            exc_info=True,
        )
    logger.info("notification %s delivered to %s", notification_id, conversation_id)
    return DELIVERED


async def _defer(
    notification: Notification, notification_id: str, deps: ExternalEventDependencies, delay: float, reason: str
) -> str:
    """Queue the notification again, hidden for `delay` seconds; this message then completes.
    If the queue fails, the error propagates and the queue delivers this message again instead."""
    await _enqueue(deps.events, notification.message(notification_id), max(1.0, delay))
    logger.info("notification %s deferred by %.0f s: %s", notification_id, delay, reason)
    return DEFERRED


async def _release(claim: DeliveryClaim, deps: ExternalEventDependencies) -> None:
    try:
        await deps.references.release_delivery(claim)
    except Exception:
        # The claim lapses by itself; until then another attempt defers.
        logger.warning("notification %s: claim not released", claim.notification_id, exc_info=True)
