"""The shapes exchanged between the bot and the worker: the queue message that asks for an
operation, and the signed events (progress, result) the worker posts back over Direct Line."""

from __future__ import annotations

import json
from typing import Any

# The worker's Direct Line identity; the bot keeps no state for the worker's own conversations.
WORKER_ID = "operations-worker"

RESULT_EVENT = "LongOperationResponse"
PROGRESS_EVENT = "LongOperationProgress"

SUCCEEDED = "succeeded"
FAILED = "failed"


def operation_request(pending: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """The queue message for a pending operation."""
    return {
        "operationId": pending["id"],
        "operation": pending["name"],
        "parameters": pending.get("parameters", {}),
        "conversation": reference,
        "deadline": pending["deadline"],
    }


def _signed_fields(event: str, request: dict[str, Any]) -> dict[str, Any]:
    """What every event the worker posts carries, and the signature covers."""
    return {
        "event": event,
        "operationId": request["operationId"],
        "operation": request["operation"],
        "conversation": request["conversation"],
        "expiresAt": request["deadline"],
    }


def result_payload(request: dict[str, Any], outcome: str, text: str) -> dict[str, Any]:
    return {**_signed_fields(RESULT_EVENT, request), "outcome": outcome, "text": text}


def progress_payload(request: dict[str, Any], percent: int) -> dict[str, Any]:
    return {**_signed_fields(PROGRESS_EVENT, request), "percent": percent}


class MalformedRequest(ValueError):
    """A queue message that is not an operation request; the reason is in the message."""


def parse_operation_request(raw: bytes) -> dict[str, Any]:
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
    return request
