"""What the bot and the worker exchange, and why the bot can trust it.

  * The queue message that asks for an operation (`operation_request`, `parse_operation_request`).
  * The events the worker posts back over Direct Line (progress, result), signed.
  * The trace context both carry beside their data (`with_traceparent`, `carried_traceparent`).

Signing: any Direct Line client can post an event named LongOperationResponse; only the
worker knows OperationSigningKey. The worker signs the exact JSON text of the payload
(bot_logic/signing.py: the scheme the agent hub's handoff statuses use too).

    value = {"payload": "<JSON text>", "signature": "<hex HMAC-SHA256 of that text>", "traceparent": "..."}

Trace context: the queue message and the event value may carry a W3C "traceparent" (see
services/telemetry.py), deliberately outside what is signed. It only groups telemetry and
decides nothing; each hop sets its own (the span that enqueues, the span that posts) after the
request was committed and the payload signed; and one that is missing, malformed or forged can
at worst put spans in the wrong trace, never change what the bot does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

from bot_logic.signing import sign as sign  # re-exported: the worker signs through this module
from bot_logic.signing import verified_payload

if TYPE_CHECKING:
    from bot_logic.conversation_record import PendingOperation, Reference


class OperationRequest(TypedDict):
    """The queue message that asks the worker for an operation."""

    operationId: str
    operation: str  # its name (operations/registry.py)
    parameters: dict[str, Any]
    conversation: Reference  # where the result goes (checked against the stored one on arrival)
    deadline: float  # seconds since the epoch
    traceparent: NotRequired[str]


class OperationEvent(TypedDict):
    """What every event the worker posts carries, and the signature covers."""

    event: str  # RESULT_EVENT or PROGRESS_EVENT
    operationId: str
    operation: str
    conversation: Reference
    expiresAt: float  # the request's deadline: an event is refused after it


class ResultPayload(OperationEvent):
    outcome: str  # SUCCEEDED or FAILED
    text: str  # what the user is told


class ProgressPayload(OperationEvent):
    percent: int


# The worker's Direct Line identity; the bot keeps no state for the worker's own conversations.
WORKER_ID = "operations-worker"

RESULT_EVENT = "LongOperationResponse"
PROGRESS_EVENT = "LongOperationProgress"
OPERATION_EVENTS = (RESULT_EVENT, PROGRESS_EVENT)

SUCCEEDED = "succeeded"
FAILED = "failed"


# --- the queue message -------------------------------------------------------------------


def operation_request(pending: PendingOperation) -> OperationRequest:
    """The queue message for a pending operation. It carries the conversation's reference so the
    result event can name the conversation, but the bot tells the result only where the reference
    stored with the pending operation points (see `reply_address_matches`)."""
    return {
        "operationId": pending["id"],
        "operation": pending["name"],
        "parameters": pending.get("parameters", {}),
        "conversation": pending["reference"],
        "deadline": pending["deadline"],
    }


def _address(reference: Mapping[str, Any]) -> tuple[object, ...]:
    conversation = reference.get("conversation")
    bot = reference.get("bot")
    return (
        reference.get("serviceUrl"),
        reference.get("channelId"),
        conversation.get("id") if isinstance(conversation, Mapping) else None,
        bot.get("id") if isinstance(bot, Mapping) else None,
    )


def reply_address_matches(carried: object, stored: object) -> bool:
    """Whether the conversation reference an event carries (from the queue message, through the worker)
    points where the one stored with the pending operation does: the same service URL, channel,
    conversation and bot. Whoever can write to the queue must not redirect a result, nor the bot's
    outbound token that goes with every reply, to an address of their choosing."""
    if not isinstance(carried, Mapping) or not isinstance(stored, Mapping):
        return False
    return _address(carried) == _address(stored)


class MalformedRequest(ValueError):
    """A queue message that is not an operation request; the reason is in the message."""


def parse_operation_request(raw: bytes) -> OperationRequest:
    try:
        request = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedRequest(f"not JSON ({error})") from None
    if not isinstance(request, dict):
        raise MalformedRequest("not a JSON object")
    for field, kind in (("operationId", str), ("operation", str), ("conversation", dict), ("deadline", (int, float))):
        if not isinstance(request.get(field), kind):
            raise MalformedRequest(f"field {field!r} is missing or of the wrong type")
    conversation = request["conversation"]
    if not isinstance(conversation.get("conversation"), dict) or not conversation.get("serviceUrl"):
        raise MalformedRequest("field 'conversation' is not a conversation reference")
    if not isinstance(request.get("parameters", {}), dict):
        raise MalformedRequest("field 'parameters' is not an object")
    return cast(OperationRequest, request)


# --- trace context ------------------------------------------------------------------------

TRACEPARENT = "traceparent"


def with_traceparent(message: dict[str, Any], traceparent: str | None) -> dict[str, Any]:
    """A queue request or event value carrying `traceparent` (unchanged without one)."""
    return {**message, TRACEPARENT: traceparent} if traceparent else message


def carried_traceparent(message: object) -> str | None:
    """The traceparent a queue request or event value carries, if any (telemetry checks its form)."""
    value = message.get(TRACEPARENT) if isinstance(message, Mapping) else None
    return value if isinstance(value, str) else None


def trace_attributes(request: Mapping[str, Any]) -> dict[str, str]:
    """What a span may tell of an operation request: ids and its name, never its parameters (user input)."""
    reference = request.get("conversation")
    conversation = reference.get("conversation") if isinstance(reference, Mapping) else None
    conversation_id = conversation.get("id") if isinstance(conversation, Mapping) else None
    attributes = {"bot.operation.name": request.get("operation"), "bot.operation.id": request.get("operationId")}
    if isinstance(conversation_id, str):
        attributes["bot.conversation.id"] = conversation_id
    return {key: value for key, value in attributes.items() if isinstance(value, str)}


# --- the events back -----------------------------------------------------------------------


def _signed_fields(event: str, request: OperationRequest) -> OperationEvent:
    """What every event the worker posts carries, and the signature covers."""
    return {
        "event": event,
        "operationId": request["operationId"],
        "operation": request["operation"],
        "conversation": request["conversation"],
        "expiresAt": request["deadline"],
    }


def result_payload(request: OperationRequest, outcome: str, text: str) -> ResultPayload:
    return {**_signed_fields(RESULT_EVENT, request), "outcome": outcome, "text": text}


def progress_payload(request: OperationRequest, percent: int) -> ProgressPayload:
    return {**_signed_fields(PROGRESS_EVENT, request), "percent": percent}


def trusted_payload(
    event_name: str | None, value: object, signing_key: str, now: float
) -> tuple[dict[str, Any] | None, str | None]:
    """(payload, None) for a trustworthy event, else (None, why it is refused)."""
    payload = verified_payload(value, signing_key)
    if payload is None:
        return None, "its signature does not verify"
    if payload.get("event") != event_name:
        return None, "it was signed for another event"
    expires_at = payload.get("expiresAt")
    if not isinstance(expires_at, (int, float)) or now >= expires_at:
        return None, "it has expired"
    reference = payload.get("conversation")
    if not isinstance(reference, dict) or not isinstance(reference.get("conversation"), dict):
        return None, "it names no conversation"
    return payload, None
