"""Proactive notifications triggered by outside events ("the pizza is ready to pick up").

Two handlers:

* `handle_notify_request` serves `POST /api/notify`: it checks the notification, checks that its
  target is known, and puts it on the external-events queue (202). It never sends anything itself,
  so the caller gets an answer in milliseconds however many users a topic reaches.
* `handle_external_event` serves that queue (outside systems may also put messages on it directly):
  a topic notification fans out into one delivery message per subscriber on the same queue; a
  delivery message is sent to its user's latest conversation (or to the conversation it names),
  at the configured rate, and recorded per conversation so that a redelivered message has effect once.

Message format (HTTP body and queue message alike), exactly one target and no other field; the rules
(schema, topics, whether and when a delivery goes) are bot_logic/notification_rules.py, this module
does the reading, queueing and sending:

    {"id"?: "<idempotency key>", "text": "...", "userId" | "conversationId" | "topic": "..."}

A queue message without "id" takes the queue message's id. What the app itself puts back on the
queue (a topic's delivery to one subscriber, with id `<notification id>/u-<digest of the user id>`
and the topic it came from; a deferred send, with its count of failures) travels in a signed
envelope no caller can make: a redelivered topic message queues the same ids again and they are
skipped at delivery, and a user who stopped following the topic meanwhile is skipped too.

A user who said "stop notifications" gets nothing: their topics are gone, and notices sent to them
by user id or conversation id are not delivered (POST /api/notify answers so at once; on the queue
they are counted as OPTED_OUT and logged) until they say "start notifications".

What is guaranteed: nothing accepted is lost while the queue keeps it (a host that stops midway
leaves the rest on the queue); a delivery is sent once unless the host stops between the send and
its record (then the queue's redelivery sends it again: at least once). The send rate is per process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bot_logic.notification_rules import (
    CONVERSATION,
    TOPIC,
    USER,
    InvalidNotification,
    Notification,
    ParsedMessage,
    SealedEnvelope,
    after_failed_send,
    caller_notification,
    delivery_id,
    in_flight_delay,
    queue_message,
    refusal_for_user,
    seal,
    topic_delivery,
    waits_on_queue,
)
from handlers.http_types import BadJson, HttpRequestData, HttpResponseData, error, parse_json
from services.channel.channel_errors import is_permanent, retry_after_of
from services.channel.rate_limiter import RateLimiter
from services.notifications.conversation_references import DEFAULT_CLAIM_SECONDS, DeliveryClaim, UserReach

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
STORE_RETRY_AFTER_SECONDS = 5

# What handle_external_event did with a message.
POISONED = "poisoned"  # malformed, or a forged envelope: moved to the poison queue
FANNED_OUT = "fanned-out"  # a topic notification: one delivery message per subscriber queued
DELIVERED = "delivered"
DUPLICATE = "duplicate"  # delivered to that conversation before: skipped
DROPPED = "dropped"  # nobody to send it to (unknown user or conversation, or no longer following): logged
OPTED_OUT = "opted-out"  # its user said "stop notifications": not delivered, logged
DEFERRED = "deferred"  # queued again, hidden until the channel's Retry-After (or another sender's claim) passes

OPTED_OUT_MESSAGE = (
    "The user has turned notifications off (they said 'stop notifications'), so nothing was queued. "
    "They can turn them back on by saying 'start notifications'."
)


class EventQueue(Protocol):
    """The external-events queue (services.queues.storage_queue.StorageQueue)."""

    async def send_raw(self, text: str, visibility_timeout: float | None = None) -> None: ...


class NotificationTargets(Protocol):
    """What the HTTP handler looks up (services.notifications.conversation_references.ConversationReferences)."""

    async def user_reach(self, user_id: str) -> UserReach | None: ...

    async def conversation_reach(self, conversation_id: str) -> UserReach | None: ...

    async def count_subscribers(self, topic: str) -> int: ...


class DeliveryStore(Protocol):
    """What delivery needs (services.notifications.conversation_references.ConversationReferences)."""

    async def user_reach(self, user_id: str) -> UserReach | None: ...

    async def direct_notices_off(self, user_id: str) -> bool: ...

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
    envelope_key: bytes  # notification_rules.envelope_key(OperationSigningKey): seals the app's own messages
    clock: Callable[[], float] = time.time  # wall clock: claims' leases, HTTP-date Retry-After
    max_in_process_wait: float = 10.0  # a Retry-After up to this is waited out in process
    max_send_attempts: int = 3  # sends of one message in process (each after a short 429)
    claim_seconds: float = DEFAULT_CLAIM_SECONDS  # how long a claim keeps other processes off
    fan_out_concurrency: int = 16  # delivery messages queued at once by a fan-out


class DeliveryFailed(Exception):
    """A send failed (not a 429): raised so the queue delivers the message again, then poisons it."""


# --- the queue ---------------------------------------------------------------------------------


def parse_body(body: bytes) -> Any:
    try:
        return parse_json(body)
    except BadJson as problem:
        raise InvalidNotification(f"the body is not valid JSON: {problem}") from None


def parse_queue_message(body: bytes, key: bytes) -> ParsedMessage:
    """A message from the external-events queue: a caller's notification or the app's sealed envelope."""
    return queue_message(parse_body(body), key)


async def _enqueue(
    events: EventQueue, message: Mapping[str, Any] | SealedEnvelope, visibility_timeout: float | None = None
) -> None:
    # Not ASCII-escaped: 4000 characters of emoji stay within a queue message's 64 KB after base64.
    await events.send_raw(json.dumps(message, ensure_ascii=False), visibility_timeout)


# --- POST /api/notify --------------------------------------------------------------------------


async def handle_notify_request(request: HttpRequestData, deps: NotifyDependencies) -> HttpResponseData:
    """202 {"id", "status": "accepted"} (a topic's answer adds "subscribers": how many follow it now;
    0 is accepted too); 200 {"id", "status": "not_delivered", "reason": "opted_out", "message"} for a
    user (or their conversation) who said "stop notifications"; 400 naming the problem and the
    offending fields; 404 for an unknown user or conversation; 503 when the conversation store or
    the queue is unavailable (nothing was accepted: try again)."""
    if request.method.upper() != "POST":
        return error(405, "MethodNotAllowed", "Use POST.", {"Allow": "POST"})
    if len(request.body) > MAX_BODY_BYTES:
        return error(413, "PayloadTooLarge", f"The body is {len(request.body)} bytes; at most {MAX_BODY_BYTES}.")
    try:
        notification = caller_notification(parse_body(request.body))
    except InvalidNotification as problem:
        refused = error(400, "InvalidNotification", f"Invalid notification: {problem}.")
        if problem.fields:
            refused.body["error"]["fields"] = list(problem.fields)
        return refused
    notification_id = notification.id or deps.new_id()
    accepted: dict[str, Any] = {"id": notification_id, "status": "accepted"}
    try:
        if notification.target == USER:
            reach = await deps.references.user_reach(notification.value)
            if reach is None:
                return error(
                    404,
                    "UnknownUser",
                    f"No conversation is known for user {notification.value!r}: they have not talked to the bot yet.",
                )
        elif notification.target == CONVERSATION:
            reach = await deps.references.conversation_reach(notification.value)
            if reach is None:
                return error(
                    404,
                    "UnknownConversation",
                    f"No conversation {notification.value!r} is known: the bot has not talked in it, "
                    "or it has been idle too long.",
                )
        else:
            reach = None
            accepted["subscribers"] = await deps.references.count_subscribers(notification.value)
    except Exception:
        logger.warning("notify %s: the conversation store could not be read", notification_id, exc_info=True)
        return error(
            503,
            "StoreUnavailable",
            "The bot cannot look up its conversations right now, so the notification was not accepted. "
            "Try again shortly.",
            {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
        )
    if reach is not None and reach.direct_notices_off:
        logger.info("notify %s not queued: its user has turned notifications off", notification_id)
        body = {"id": notification_id, "status": "not_delivered", "reason": "opted_out", "message": OPTED_OUT_MESSAGE}
        return HttpResponseData(200, body)
    try:
        await _enqueue(deps.events, notification.caller_fields(notification_id))
    except Exception:
        logger.warning("notify %s: the external-events queue is unavailable", notification_id, exc_info=True)
        return error(
            503,
            "QueueUnavailable",
            "The notification queue is unavailable right now, so the notification was not accepted. Try again shortly.",
            {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
        )
    logger.info("notify %s accepted for a %s", notification_id, notification.target)  # never the id (privacy)
    return HttpResponseData(202, accepted)


# --- the external-events queue -----------------------------------------------------------------


async def handle_external_event(message: QueueMessage, deps: ExternalEventDependencies) -> str:
    """What happened to the message (POISONED, FANNED_OUT, DELIVERED, DUPLICATE, DROPPED, DEFERRED).
    Raises (DeliveryFailed, or the store's or queue's error) to have the queue deliver it again."""
    try:
        notification = parse_queue_message(message.body, deps.envelope_key).notification
        notification_id = notification.id or message.id
        if not notification_id:
            raise InvalidNotification("it has no 'id' and the queue message has none either")
    except InvalidNotification as problem:
        # The problem names fields, types and lengths, never their values: no user text in the log.
        logger.warning("external event %s moved to the poison queue: %s", message.id, problem)
        await deps.send_to_poison(message.body)
        return POISONED
    handle = _fan_out if notification.target == TOPIC else _deliver  # the kinds: a topic, or one recipient
    return await handle(notification, notification_id, deps)


async def _fan_out(notification: Notification, notification_id: str, deps: ExternalEventDependencies) -> str:
    """One delivery message per subscriber, queued before this message completes: if the host stops
    midway, this message comes back and queues them all again (the copies are skipped at delivery)."""
    queued = 0
    batch: list[str] = []

    async def queue_batch() -> None:
        nonlocal queued
        messages = [
            seal(topic_delivery(notification, user_id), delivery_id(notification_id, user_id), deps.envelope_key)
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
    logger.info("notification %s on a topic: %d deliveries queued", notification_id, queued)
    return FANNED_OUT


async def _deliver(notification: Notification, notification_id: str, deps: ExternalEventDependencies) -> str:
    reference: dict[str, Any] | None = None
    if notification.target == USER:
        reach = await deps.references.user_reach(notification.value)
        refusal = refusal_for_user(notification, reach)
        if refusal == "unknown user":
            # Retrying cannot help (they may never talk to the bot): log it and let the message go.
            logger.warning("notification %s dropped: no conversation is known for its user", notification_id)
            return DROPPED
        if refusal == "no longer follows the topic":
            logger.info("notification %s dropped: its user no longer follows its topic", notification_id)
            return DROPPED
        if refusal == "opted out":
            return _opted_out(notification_id)
        assert reach is not None
        reference = reach.reference
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
        busy_for = in_flight_delay(claim.busy_until, deps.clock())
        return await _defer(notification, notification_id, deps, busy_for, "another process is sending it")

    assert claim.reference is not None
    if notification.target == CONVERSATION and await _user_opted_out(claim.reference, deps):
        await _release(claim, deps)
        return _opted_out(notification_id)
    for attempt in range(1, deps.max_send_attempts + 1):
        try:
            await deps.send(claim.reference, notification.text)
            break
        except Exception as failure:
            retry_after = retry_after_of(failure, deps.clock)
            if retry_after is None:
                await _release(claim, deps)
                after = after_failed_send(notification, is_permanent(failure))
                if after.notification is None:
                    raise DeliveryFailed(
                        f"notification {notification_id} to conversation {conversation_id}: {failure}"
                    ) from failure
                why = f"the send failed ({failure})"
                return await _defer(after.notification, notification_id, deps, after.delay, why)
            deps.limiter.pause(retry_after)  # every send of this process waits, not only this one
            if waits_on_queue(retry_after, attempt, deps.max_send_attempts, deps.max_in_process_wait):
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


def _opted_out(notification_id: str) -> str:
    logger.info("notification %s not delivered: its user has turned notifications off", notification_id)
    return OPTED_OUT


async def _user_opted_out(reference: dict[str, Any], deps: ExternalEventDependencies) -> bool:
    """Whether the user of a conversation (its reference's user) said "stop notifications"."""
    user = reference.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    return isinstance(user_id, str) and bool(user_id) and await deps.references.direct_notices_off(user_id)


async def _defer(
    notification: Notification, notification_id: str, deps: ExternalEventDependencies, delay: float, reason: str
) -> str:
    """Queue the notification again, hidden for `delay` seconds; this message then completes.
    If the queue fails, the error propagates and the queue delivers this message again instead."""
    # Sealed: the queued copy carries the app's bookkeeping (the topic it came from, failures so far).
    await _enqueue(deps.events, seal(notification, notification_id, deps.envelope_key), max(1.0, delay))
    logger.info("notification %s deferred by %.0f s: %s", notification_id, delay, reason)
    return DEFERRED


async def _release(claim: DeliveryClaim, deps: ExternalEventDependencies) -> None:
    try:
        await deps.references.release_delivery(claim)
    except Exception:
        # The claim lapses by itself; until then another attempt defers.
        logger.warning("notification %s: claim not released", claim.notification_id, exc_info=True)
