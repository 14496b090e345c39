"""Notifications' rules, as plain functions (no I/O; handlers/notifications.py does the sending and
queueing): what a message may hold (the caller's schema and the app's own signed envelope), what a
topic is, and what to do with a delivery (whether it goes out, and when a failed send is tried again).

A caller (POST /api/notify, or a message put on the external-events queue) sends exactly

    {"id"?: "<idempotency key>", "text": "...", "userId" | "conversationId" | "topic": "..."}

and nothing else: any other field is refused, naming each one (HTTP 400; the queue's poison queue).

The app's own messages on that queue (a topic's delivery to one subscriber, a send deferred after a
429 or a channel outage) carry bookkeeping a caller must never set: the topic a delivery came from
(`viaTopic`: the user must still follow it) and how many sends failed so far (`failures`: past a bound,
the message goes to the poison queue). They travel in a sealed envelope:

    {"envelope": "<JSON text of {\"internal\": {...}, \"notification\": {...}}>", "signature": "<hex>"}

where the signature is HMAC-SHA256 of that exact text under a key derived from OperationSigningKey
with its own label (`envelope_key`), so anyone who can write to the queue but does not hold the key
cannot forge one, and a signature made for something else (an operation's result) never verifies
here. Signing the text, not a re-serialised object, keeps the check free of canonicalisation rules.
A replayed envelope only repeats what the app already queued, and a delivery's id makes a repeat
to the same conversation a no-op.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, Protocol, TypedDict

MAX_TEXT_LENGTH = 4000  # characters: a chat message, not a document; a queue message stays far below 64 KB
MAX_ID_LENGTH = 128  # a caller's idempotency key
MAX_TARGET_LENGTH = 1024  # a user or conversation id (channels' ids are far shorter)
DERIVED_ID_DIGEST = 24  # hex characters of the user id's digest in a topic delivery's id
DELIVERY_ID_MARK = "/u-"  # a topic delivery's id: "<notification id>/u-<digest of the user id>"
MAX_DELIVERY_ID_LENGTH = MAX_ID_LENGTH + len(DELIVERY_ID_MARK) + DERIVED_ID_DIGEST
# A send that fails for a passing reason is queued again, backing off 5 s, 10 s, ... up to 15 min:
# 16 tries cover about three hours of a channel outage; then the queue's retries and its poison queue.
MAX_TRANSIENT_FAILURES = 16
FIRST_FAILURE_BACKOFF_SECONDS = 5.0
MAX_FAILURE_BACKOFF_SECONDS = 900.0
MAX_TOPIC_LENGTH = 100
# The kinds of notification, named by the one target field a message holds: a topic fans out to its
# subscribers; the other two are delivered to one conversation.
Target = Literal["userId", "conversationId", "topic"]
USER: Final = "userId"
CONVERSATION: Final = "conversationId"
TOPIC: Final = "topic"
TARGETS: Final[tuple[Target, ...]] = (USER, CONVERSATION, TOPIC)
CALLER_FIELDS: Final = frozenset({"id", "text", *TARGETS})
INTERNAL_FIELDS: Final = frozenset({"viaTopic", "failures"})  # what the envelope's "internal" may hold
ENVELOPE_FIELDS: Final = frozenset({"envelope", "signature"})
ENVELOPE_KEY_LABEL = b"long-operation-bot/notification-envelope/v1"  # domain separation from other uses
MAX_NAMED_FIELDS = 10  # a refusal names at most this many fields (an attacker may send thousands)
MAX_FIELD_NAME_SHOWN = 40  # characters of a refused field's name that are echoed back


class NotificationMessage(TypedDict, total=False):
    """What a caller sends (HTTP body or queue message), and the caller's part of the app's envelope:
    "text" and exactly one target, "id" optional."""

    id: str
    text: str
    userId: str
    conversationId: str
    topic: str


class InternalFields(TypedDict, total=False):
    """The app's bookkeeping, only ever inside its sealed envelope."""

    viaTopic: str
    failures: int


class SealedEnvelope(TypedDict):
    """The queue message for one of the app's own notifications."""

    envelope: str  # JSON text of {"internal": InternalFields, "notification": NotificationMessage}
    signature: str  # hex HMAC-SHA256 of that text under envelope_key(OperationSigningKey)


class InvalidTopic(ValueError):
    """A topic that is empty, too long, or one too many for the user; the message says which."""


def normalise_topic(topic: object) -> str:
    """Stripped and lower-case; raises InvalidTopic when empty or longer than MAX_TOPIC_LENGTH."""
    if not isinstance(topic, str):
        raise InvalidTopic("a topic must be text")
    normalised = topic.strip().lower()
    if not normalised:
        raise InvalidTopic("a topic must not be empty")
    if len(normalised) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(f"a topic may be at most {MAX_TOPIC_LENGTH} characters long")
    return normalised


class InvalidNotification(ValueError):
    """The message says what is wrong, for the caller (HTTP 400) or the log (poison queue); it never
    holds a field's value (user text), only field names, types and lengths. `fields` names the
    offending fields."""

    def __init__(self, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


@dataclass(frozen=True)
class Notification:
    text: str
    target: Target  # the kind: one of TARGETS
    value: str  # the user id, conversation id, or normalised topic
    id: str | None = None
    via_topic: str | None = None  # internal: with a userId, deliver only while the user still follows it
    failures: int = 0  # internal: sends that failed for a passing reason (5xx, timeouts) so far

    def caller_fields(self, notification_id: str) -> NotificationMessage:
        """The caller's part, with its id spelled out (a re-queued copy gets a new queue message id)."""
        message: NotificationMessage = {"id": notification_id}
        message[self.target] = self.value
        message["text"] = self.text
        return message

    def internal_fields(self) -> InternalFields:
        internal: InternalFields = {}
        if self.via_topic is not None:
            internal["viaTopic"] = self.via_topic
        if self.failures:
            internal["failures"] = self.failures
        return internal


@dataclass(frozen=True)
class ParsedMessage:
    notification: Notification
    sealed: bool = False  # it came in the app's own signed envelope


# --- keys and ids -------------------------------------------------------------------------------


def envelope_key(operation_signing_key: str) -> bytes:
    """The envelope's own key, derived from OperationSigningKey (HMAC with a fixed label): one secret
    to manage, and no signature made for an operation's result can pass as an envelope's."""
    return hmac.new(operation_signing_key.encode("utf-8"), ENVELOPE_KEY_LABEL, hashlib.sha256).digest()


def delivery_id(notification_id: str, user_id: str) -> str:
    """The id of a topic notification's delivery to one user: the same on every fan-out of it."""
    digest = hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:DERIVED_ID_DIGEST]
    return f"{notification_id}{DELIVERY_ID_MARK}{digest}"


# --- the caller's schema ------------------------------------------------------------------------


def caller_notification(data: Any) -> Notification:
    """A caller's notification (HTTP body or queue message, already parsed); raises InvalidNotification."""
    if not isinstance(data, dict):
        raise InvalidNotification("the body must be a JSON object")
    _refuse_unknown_fields(data, CALLER_FIELDS)
    notification = _notification(data, max_id_length=MAX_ID_LENGTH)
    if notification.id is not None and DELIVERY_ID_MARK in notification.id:
        # Such ids name a topic's deliveries: a caller's must not pre-empt one (it would count as delivered).
        raise InvalidNotification(
            f"'id' must not contain {DELIVERY_ID_MARK!r} (kept for a topic's deliveries)", ("id",)
        )
    return notification


def _refuse_unknown_fields(data: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = [name for name in data if name not in allowed]
    if not unknown:
        return
    shown = [_field_name(name) for name in unknown[:MAX_NAMED_FIELDS]]
    more = f" and {len(unknown) - MAX_NAMED_FIELDS} more" if len(unknown) > MAX_NAMED_FIELDS else ""
    internal = [name for name in unknown if name in INTERNAL_FIELDS]
    why = (
        f" ({', '.join(repr(n) for n in internal)}: kept for the app's own bookkeeping, never set by a caller)"
        if internal
        else ""
    )
    accepted = "'id', 'text' and one of 'userId', 'conversationId', 'topic'"
    raise InvalidNotification(
        f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(repr(n) for n in shown)}{more}{why}; "
        f"only {accepted} are accepted",
        tuple(shown),
    )


def _field_name(name: str) -> str:
    shown = name[:MAX_FIELD_NAME_SHOWN] + ("…" if len(name) > MAX_FIELD_NAME_SHOWN else "")
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate stays printable


def _notification(data: dict[str, Any], max_id_length: int) -> Notification:
    targets = [name for name in TARGETS if name in data]
    if not targets:
        raise InvalidNotification("name exactly one target: 'userId', 'conversationId' or 'topic'", TARGETS)
    if len(targets) > 1:
        raise InvalidNotification(
            f"name exactly one target, not {' and '.join(repr(t) for t in targets)}", tuple(targets)
        )
    target = targets[0]
    value = _text_field(data, target, MAX_TARGET_LENGTH)
    if target == TOPIC:
        value = _topic(value, "topic")
    if "text" not in data:
        raise InvalidNotification("'text' is required: the message to send", ("text",))
    text = _text_field(data, "text", MAX_TEXT_LENGTH)
    notification_id = _text_field(data, "id", max_id_length) if "id" in data else None
    return Notification(text=text, target=target, value=value, id=notification_id)


def _topic(value: str, name: str) -> str:
    try:
        return normalise_topic(value)
    except InvalidTopic as problem:
        raise InvalidNotification(f"'{name}': {problem}", (name,)) from None


def _text_field(data: dict[str, Any], name: str, max_length: int) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise InvalidNotification(f"'{name}' must be a string, not {type(value).__name__}", (name,))
    if not value.strip():
        raise InvalidNotification(f"'{name}' must not be empty", (name,))
    if len(value) > max_length:
        raise InvalidNotification(
            f"'{name}' is {len(value)} characters long; at most {max_length} are allowed", (name,)
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidNotification(f"'{name}' holds an unpaired surrogate (\\ud800-\\udfff)", (name,)) from None
    return value


# --- the app's envelope -------------------------------------------------------------------------


def seal(notification: Notification, notification_id: str, key: bytes) -> SealedEnvelope:
    """The queue message for one of the app's own notifications: its bookkeeping signed with the
    caller's fields. Not ASCII-escaped: 4000 characters of emoji stay within a queue message's 64 KB."""
    text = json.dumps(
        {"internal": notification.internal_fields(), "notification": notification.caller_fields(notification_id)},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return {"envelope": text, "signature": _signature(text, key)}


def _signature(text: str, key: bytes) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def open_envelope(data: dict[str, Any], key: bytes) -> Notification:
    """The notification in a sealed envelope; raises InvalidNotification (forged, or not the app's shape)."""
    _refuse_unknown_fields_of_envelope(data)
    text, signature = data.get("envelope"), data.get("signature")
    if not isinstance(text, str) or not isinstance(signature, str):
        raise InvalidNotification("an envelope's 'envelope' and 'signature' must be strings", ("envelope", "signature"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidNotification("the envelope holds an unpaired surrogate", ("envelope",)) from None
    if not hmac.compare_digest(signature.encode("utf-8", "replace"), _signature(text, key).encode()):
        raise InvalidNotification("the envelope's signature does not verify: not sealed by this app", ("signature",))
    # Signed by this app, so well formed unless the app itself is wrong: checked all the same.
    try:
        content = json.loads(text)
    except ValueError as problem:
        raise InvalidNotification(f"the envelope is not valid JSON: {problem}", ("envelope",)) from None
    if not isinstance(content, dict) or set(content) != {"internal", "notification"}:
        raise InvalidNotification("the envelope must hold exactly 'internal' and 'notification'", ("envelope",))
    caller, internal = content["notification"], content["internal"]
    if not isinstance(caller, dict) or not isinstance(internal, dict):
        raise InvalidNotification("the envelope's 'internal' and 'notification' must be objects", ("envelope",))
    _refuse_unknown_fields(caller, CALLER_FIELDS)
    notification = _notification(caller, max_id_length=MAX_DELIVERY_ID_LENGTH)
    if notification.id is None:
        raise InvalidNotification("the envelope's notification has no 'id'", ("id",))
    return _with_internal(notification, internal)


def _refuse_unknown_fields_of_envelope(data: dict[str, Any]) -> None:
    unknown = [_field_name(name) for name in data if name not in ENVELOPE_FIELDS][:MAX_NAMED_FIELDS]
    if unknown:
        raise InvalidNotification(
            f"an envelope holds only 'envelope' and 'signature', not {', '.join(repr(n) for n in unknown)}",
            tuple(unknown),
        )


def _with_internal(notification: Notification, internal: dict[str, Any]) -> Notification:
    unknown = [_field_name(name) for name in internal if name not in INTERNAL_FIELDS][:MAX_NAMED_FIELDS]
    if unknown:
        raise InvalidNotification(
            f"unknown internal field{'s' if len(unknown) > 1 else ''} {', '.join(repr(n) for n in unknown)}",
            tuple(unknown),
        )
    via_topic = None
    if "viaTopic" in internal:
        if notification.target != USER:
            raise InvalidNotification("'viaTopic' goes only with 'userId'", ("viaTopic",))
        via_topic = _topic(_text_field(internal, "viaTopic", MAX_TARGET_LENGTH), "viaTopic")
    failures = internal.get("failures", 0)
    if not isinstance(failures, int) or isinstance(failures, bool) or not 0 <= failures <= MAX_TRANSIENT_FAILURES:
        raise InvalidNotification(
            f"'failures' must be a whole number from 0 to {MAX_TRANSIENT_FAILURES}", ("failures",)
        )
    return Notification(
        notification.text, notification.target, notification.value, notification.id, via_topic, failures
    )


def queue_message(data: Any, key: bytes) -> ParsedMessage:
    """A message from the external-events queue (parsed): a caller's notification, or the app's sealed
    envelope (told apart by its 'signature' field, which no caller's notification may hold)."""
    if isinstance(data, dict) and "signature" in data:
        return ParsedMessage(open_envelope(data, key), sealed=True)
    return ParsedMessage(caller_notification(data))


# --- delivery decisions -------------------------------------------------------------------------


def topic_delivery(notification: Notification, user_id: str) -> Notification:
    """A topic notification's delivery to one subscriber: to the user, while they still follow it."""
    return Notification(notification.text, USER, user_id, via_topic=notification.value)


class Recipient(Protocol):
    """What a user's notification needs to know of its user (services.notifications.conversation_references.UserReach
    fits)."""

    @property
    def topics(self) -> list[str]: ...

    @property
    def direct_notices_off(self) -> bool: ...


DropReason = Literal["unknown user", "no longer follows the topic", "opted out"]


def refusal_for_user(notification: Notification, recipient: Recipient | None) -> DropReason | None:
    """Why a notification to a user is not sent (None: send it). A topic's delivery goes while its user
    still follows the topic ("stop notifications" removed it otherwise); a direct notice goes unless
    they turned notifications off."""
    if recipient is None:
        return "unknown user"  # retrying cannot help: they may never talk to the bot
    if notification.via_topic is not None:
        return None if notification.via_topic in recipient.topics else "no longer follows the topic"
    return "opted out" if recipient.direct_notices_off else None


def failure_backoff_seconds(failures: int) -> float:
    """How long a send that failed for a passing reason waits on the queue: 5 s, 10 s, ... up to 15 min."""
    return float(min(MAX_FAILURE_BACKOFF_SECONDS, FIRST_FAILURE_BACKOFF_SECONDS * 2**failures))


@dataclass(frozen=True)
class AfterFailure:
    """What to do after a send failed without a Retry-After: give up (`notification` None: the queue's
    own retries, then its poison queue, where an operator can look), or queue `notification` again,
    hidden for `delay` seconds."""

    notification: Notification | None
    delay: float = 0.0


def after_failed_send(notification: Notification, permanent: bool) -> AfterFailure:
    """A permanent failure, or one passing failure too many, gives up; a channel outage backs off on
    the queue rather than burn the queue's few retries."""
    if permanent or notification.failures >= MAX_TRANSIENT_FAILURES:
        return AfterFailure(None)
    later = replace(notification, failures=notification.failures + 1)
    return AfterFailure(later, failure_backoff_seconds(notification.failures))


def waits_on_queue(retry_after: float, attempt: int, max_attempts: int, max_in_process_wait: float) -> bool:
    """After a 429: whether to wait on the queue (too long to wait in process, or the last attempt)
    rather than send again in process."""
    return retry_after > max_in_process_wait or attempt == max_attempts


def in_flight_delay(busy_until: float | None, now: float) -> float:
    """How long to wait for another process's claim on the same delivery to end (a second to spare)."""
    return (busy_until or 0) - now + 1
