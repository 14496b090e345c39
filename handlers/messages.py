"""POST /api/messages: parse the activity, authenticate the request, run the turn, answer a status."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.schema import Activity

from handlers.http_types import BadJson, HttpRequestData, HttpResponseData, error, parse_json
from services.authentication import KeySourceUnavailable, TokenRejected
from services.unit_of_work import TurnConflictError

logger = logging.getLogger(__name__)

# The Bot Framework caps an activity at about 256 KB; anything larger is not a channel's.
MAX_BODY_BYTES = 256 * 1024

# Fields every turn needs, each an object's "id" or a string at the top level.
_REQUIRED_IDS = ("conversation", "from", "recipient")


def _is_absolute_http_url(value: str) -> bool:
    if any(ord(character) <= 0x20 or ord(character) == 0x7F for character in value):
        return False  # urlsplit drops some of these silently; an HTTP client refuses them later
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _shape_problems(body: dict[str, Any]) -> list[str]:
    """What keeps the activity from being a turn, naming each field, in the body's own spelling."""
    problems = []
    for name in ("type", "channelId"):
        if name not in body:
            problems.append(f"{name} is missing")
        elif not _is_id(body[name]):
            problems.append(f"{name} must be a non-empty string")
    if "serviceUrl" not in body:
        problems.append("serviceUrl is missing")
    elif not isinstance(body["serviceUrl"], str) or not _is_absolute_http_url(body["serviceUrl"]):
        problems.append("serviceUrl must be an absolute http(s) URL")
    for name in _REQUIRED_IDS:
        account = body.get(name)
        if account is None:
            problems.append(f"{name}.id is missing")
        elif not isinstance(account, dict):
            problems.append(f"{name} must be an object with an id")
        elif "id" not in account:
            problems.append(f"{name}.id is missing")
        elif not _is_id(account["id"]):
            problems.append(f"{name}.id must be a non-empty string")
    return problems


def _malformed_fields(body: dict[str, Any]) -> list[str]:
    """The top-level fields the SDK's deserializer refuses (it only says that something failed)."""
    malformed = []
    for name, value in body.items():
        try:
            Activity().deserialize({name: value})
        except Exception:  # msrest raises several types for shape errors
            malformed.append(name)
    return malformed


def _parse_activity(request: HttpRequestData) -> Activity | HttpResponseData:
    content_type = request.header("content-type").split(";")[0].strip().lower()
    if content_type != "application/json":
        return error(415, "UnsupportedMediaType", "Content-Type must be application/json.")
    if len(request.body) > MAX_BODY_BYTES:
        return error(413, "PayloadTooLarge", f"An activity may be at most {MAX_BODY_BYTES} bytes.")
    try:
        body = parse_json(request.body)
    except BadJson as problem:
        return error(400, "BadRequest", f"The body is not valid JSON: {problem}.")
    if not isinstance(body, dict):
        return error(400, "BadRequest", "The body is not an activity: it must be a JSON object with a string 'type'.")
    problems = _shape_problems(body)
    if problems:
        return error(400, "BadRequest", f"The activity is not usable: {'; '.join(problems)}.")
    try:
        return Activity().deserialize(body)
    except Exception:  # msrest raises several types for shape errors
        fields = ", ".join(_malformed_fields(body)) or "some field"
        return error(400, "BadRequest", f"The activity is not well-formed: {fields} has the wrong shape.")


@dataclass
class MessagesDependencies:
    adapter: CloudAdapterBase  # authenticates requests and runs turns
    turn: Callable[[TurnContext], Awaitable[None]]  # routes and runs one inbound activity (bot_logic/turn_routing)


async def handle_messages(request: HttpRequestData, deps: MessagesDependencies) -> HttpResponseData:
    parsed = _parse_activity(request)
    if isinstance(parsed, HttpResponseData):
        return parsed
    activity = parsed
    conversation_id = activity.conversation.id
    try:
        # Authenticate apart from the turn: a token problem is the caller's (401), keys that cannot be
        # fetched are a passing problem of ours (503), and an error inside the turn, even a
        # PermissionError getting the bot's own outbound token, is ours (500).
        authentication = await deps.adapter.bot_framework_authentication.authenticate_request(
            activity, request.header("authorization")
        )
    except TokenRejected as rejection:
        logger.warning("conversation %s: request refused: %s", conversation_id, rejection)
        return error(401, "Unauthorized", "The request does not carry a valid Bot Framework token.")
    except KeySourceUnavailable as outage:
        logger.error("conversation %s: cannot authenticate: %s", conversation_id, outage)
        return error(
            503,
            "ServiceUnavailable",
            "The bot cannot check Bot Framework tokens right now; try again later.",
            {"Retry-After": str(outage.retry_after)},
        )
    except Exception:  # services/authentication.py turns every token problem into TokenRejected: a bug
        logger.exception("conversation %s: authentication failed unexpectedly", conversation_id)
        return error(500, "InternalError", "The bot failed to process this activity.")
    try:
        invoke_response = await deps.adapter.process_activity(authentication, activity, deps.turn)
    except TurnConflictError:
        logger.warning("conversation %s: turn gave up after repeated commit conflicts", conversation_id)
        return error(503, "Busy", "The conversation is busy; try again.", {"Retry-After": "1"})
    except Exception:
        logger.exception("conversation %s: turn failed", conversation_id)
        return error(500, "InternalError", "The bot failed to process this activity.")
    if invoke_response is not None:
        return HttpResponseData(int(invoke_response.status), invoke_response.body)
    return HttpResponseData(200)
