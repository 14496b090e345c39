"""POST /api/messages: parse the activity, authenticate the request, run the turn, answer a status.

Each turn is a span: "message turn" (or "<type> turn"), in the trace of the Functions host's
request; a worker's event is the "resumed turn" (a result) or "progress turn", in the trace of
the user's request that started the operation, through the traceparent the event carries.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.schema import Activity

from bot_logic.operation_protocol import PROGRESS_EVENT, RESULT_EVENT, carried_traceparent, trace_attributes
from handlers.http_types import BadJson, HttpRequestData, HttpResponseData, error, parse_json
from services.channel.activity_json import from_json
from services.telemetry import CONVERSATION_ID, OUTCOME, Tracing
from services.turns.authentication import KeySourceUnavailable, TokenRejected
from services.turns.unit_of_work import TurnConflictError

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
        return from_json(Activity, body)  # msrest's Activity, without its per-value dispatch
    except Exception:  # msrest raises several types for shape errors
        fields = ", ".join(_malformed_fields(body)) or "some field"
        return error(400, "BadRequest", f"The activity is not well-formed: {fields} has the wrong shape.")


Turn = Callable[[TurnContext], Awaitable[None]]


@dataclass
class MessagesDependencies:
    adapter: CloudAdapterBase  # authenticates requests and runs turns
    turn: Turn  # routes and runs one inbound activity (bot_logic/turn_routing)
    tracing: Tracing = field(default_factory=Tracing)  # off unless bootstrap passes the app's
    # Set when the app must not serve messages at all (Settings.messages_refusal): every request gets 503.
    refusal: str | None = None


# Span names of the worker's events, as Application Insights' transaction view lists them.
_EVENT_SPANS = {RESULT_EVENT: "resumed turn", PROGRESS_EVENT: "progress turn"}


def _worker_event_span(activity: Activity) -> str | None:
    """The span name of a worker's event (a result or progress); None for any other activity."""
    return _EVENT_SPANS.get(activity.name or "") if activity.type == "event" else None


def _span_of(activity: Activity) -> tuple[str, str | None]:
    """The turn's span name, and the traceparent it continues: a worker's event carries the one of the
    worker's post (unsigned, beside the payload: it only places the span, and the turn verifies the
    event as always)."""
    event_span = _worker_event_span(activity)
    if event_span is not None:
        return event_span, carried_traceparent(activity.value)
    return f"{activity.type} turn", None


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    return {503: "busy", 500: "failed"}.get(status, "refused")


def traced_turn(run_turn: Turn, tracing: Tracing) -> Turn:
    """`run_turn` (a turn of a user's conversation, bot_logic/turn_routing) naming that conversation on
    the current span; for an operation event, which the router passes on only once it is verified,
    also the operation."""

    async def turn(context: TurnContext) -> None:
        activity = context.activity
        attributes = {CONVERSATION_ID: activity.conversation.id}
        if _worker_event_span(activity) is not None and isinstance(activity.value, dict):
            attributes.update({**trace_attributes(activity.value), "bot.event.verified": True})
        tracing.annotate(attributes)
        await run_turn(context)

    return turn


async def handle_messages(
    request: HttpRequestData, deps: MessagesDependencies, trace_parent: str | None = None
) -> HttpResponseData:
    """`trace_parent`: the Functions host's trace context of this request (the turn's span parent,
    unless a worker's event continues another trace; then it is linked)."""
    if deps.refusal is not None:
        # Never serve unauthenticated in Azure: refuse loudly until the operator sets the credentials.
        logger.error(deps.refusal)
        return error(
            503,
            "NotConfigured",
            "The bot is not configured to accept messages: its Bot Framework credentials are missing.",
        )
    parsed = _parse_activity(request)
    if isinstance(parsed, HttpResponseData):
        return parsed
    activity = parsed
    name, continued = _span_of(activity)
    with deps.tracing.span(
        name,
        kind="server",
        parents=(continued, trace_parent),
        links=(trace_parent,),
        attributes={CONVERSATION_ID: activity.conversation.id, "bot.channel": activity.channel_id or ""},
    ) as span:
        response = await _handle_activity(activity, request, deps)
        span.set("http.response.status_code", response.status)
        span.set(OUTCOME, _outcome(response.status))
        if response.status >= 500:
            span.fail(f"HTTP {response.status}")
        return response


async def _handle_activity(
    activity: Activity, request: HttpRequestData, deps: MessagesDependencies
) -> HttpResponseData:
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
    except Exception:  # services/turns/authentication.py turns every token problem into TokenRejected: a bug
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
