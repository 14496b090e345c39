"""POST /api/messages: parse the activity, authenticate the request, run the turn, answer a status."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.schema import Activity

from handlers.http_types import HttpRequestData, HttpResponseData, error
from services.unit_of_work import TurnConflictError

logger = logging.getLogger(__name__)

# The Bot Framework caps an activity at about 256 KB; anything larger is not a channel's.
MAX_BODY_BYTES = 256 * 1024


def _parse_activity(request: HttpRequestData) -> Activity | HttpResponseData:
    content_type = request.header("content-type").split(";")[0].strip().lower()
    if content_type != "application/json":
        return error(415, "UnsupportedMediaType", "Content-Type must be application/json.")
    if len(request.body) > MAX_BODY_BYTES:
        return error(413, "PayloadTooLarge", f"An activity may be at most {MAX_BODY_BYTES} bytes.")
    try:
        body: Any = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return error(400, "BadRequest", "The body is not valid JSON.")
    if not isinstance(body, dict) or not isinstance(body.get("type"), str) or not body["type"]:
        return error(400, "BadRequest", "The body is not an activity: it needs a string 'type'.")
    try:
        activity = Activity().deserialize(body)
    except Exception:  # msrest raises several types for shape errors
        return error(400, "BadRequest", "The body is not a well-formed activity.")
    missing = [
        name
        for name, value in (
            ("conversation.id", activity.conversation and activity.conversation.id),
            ("serviceUrl", activity.service_url),
            ("channelId", activity.channel_id),
            ("recipient.id", activity.recipient and activity.recipient.id),
            ("from.id", activity.from_property and activity.from_property.id),
        )
        if not value
    ]
    if missing:
        return error(400, "BadRequest", f"The activity lacks {', '.join(missing)}.")
    return activity


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
        # Authenticate apart from the turn: a token problem is the caller's (401), while an error
        # inside the turn, even a PermissionError getting the bot's own outbound token, is ours (500).
        authentication = await deps.adapter.bot_framework_authentication.authenticate_request(
            activity, request.header("authorization")
        )
    except Exception as failure:  # the SDK raises PermissionError, PyJWTError, IndexError, Exception...
        logger.warning("conversation %s: request refused: %s", conversation_id, failure or type(failure).__name__)
        return error(401, "Unauthorized", "The request does not carry a valid Bot Framework token.")
    try:
        invoke_response = await deps.adapter.process_activity(authentication, activity, deps.turn)
    except TurnConflictError:
        logger.warning("conversation %s: turn gave up after repeated commit conflicts", conversation_id)
        return error(503, "Conflict", "The conversation is busy; try again.", {"Retry-After": "1"})
    except Exception:
        logger.exception("conversation %s: turn failed", conversation_id)
        return error(500, "InternalError", "The bot failed to process this activity.")
    if invoke_response is not None:
        return HttpResponseData(int(invoke_response.status), invoke_response.body)
    return HttpResponseData(200)
