"""The agent console: a person takes over conversations the bot hands off (handoff.py tracks them).

    GET  /agent?key=<console key>                         the page (agent_console.html; no external assets)
    GET  /agent/api/handoffs                              {"handoffs": [...]}, newest first
    GET  /agent/api/handoffs/{conversationId}             one handoff
    POST /agent/api/handoffs/{conversationId}/accept      {"agent": "Ada", "message"?}: handoff.status accepted
    POST /agent/api/handoffs/{conversationId}/messages    {"text": "..."}: a message to the user, not to the bot
    POST /agent/api/handoffs/{conversationId}/complete    {"message"?}: handoff.status completed
    POST /agent/api/handoffs/{conversationId}/fail        {"message"?, "agent"?}: handoff.status failed (or /reject)

The status events go to the bot like any channel activity, in the user's conversation, from
`{"id": "agent:<name>", "name": "<name>"}`; they are stored there privately (the console lists
them, the user's clients never get them). A failing bot answers 502/504 as on the client API,
and the handoff keeps its state so the agent can try again. Each status is signed here, server
side, with HandoffSigningKey (bot_logic/handoff.py: the payload names the conversation, the
handoffId of the bot's handoff.initiate, the state, the agent), as a production agent hub signs.

Who may use it (a page the developer opens elsewhere must not read transcripts or act as an agent):
  * loopback peers only, whatever address the server listens on;
  * a per-run console key: the page only with `?key=<key>` (make run prints that address; the page
    gets the key injected), every API call with the header `X-Console-Key` (403 without it);
  * no CORS headers (errors.py): another origin can neither read an answer nor send the key header;
  * writes only as `Content-Type: application/json` (415), so a plain HTML form post, which needs no
    CORS preflight, is refused even before its missing key is.
"""

from __future__ import annotations

import copy
import functools
import hmac
import html
import ipaddress
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bot_logic.handoff import signed_status, status_payload
from localdev.directline.activities import Activity
from localdev.directline.channel import Channel
from localdev.directline.client_api import CHANNEL
from localdev.directline.errors import ApiError, Handler, bad_argument, read_json_object
from localdev.directline.handoff import (
    ACCEPT,
    COMPLETE,
    FAIL,
    HANDOFFS,
    STATUS_EVENT,
    Handoff,
    State,
    Transition,
    conflict,
)

BASE = "/agent"
API = f"{BASE}/api/handoffs"
PAGE_FILE = Path(__file__).with_name("agent_console.html")
MAX_NAME = 64
MAX_TEXT = 10_000  # generous for a chat line, far below the bot's 256 KB per activity
MAX_MESSAGE = 1_000
# Who rejects a handoff nobody has accepted, when the console does not say.
DEFAULT_AGENT = "Agent console"
KEY_HEADER = "X-Console-Key"


@dataclass(frozen=True)
class ConsoleSettings:
    key: str  # the per-run console key (page: ?key=, API: X-Console-Key)
    handoff_signing_key: str | None  # HandoffSigningKey, shared with the bot; None: statuses cannot be sent
    clock: Callable[[], float]  # seconds since the epoch: the signed statuses' issuedAt

    @classmethod
    def create(
        cls, key: str | None, handoff_signing_key: str | None, clock: Callable[[], float]
    ) -> ConsoleSettings:
        return cls(key or secrets.token_urlsafe(24), handoff_signing_key or None, clock)


CONSOLE = web.AppKey("agent_console", ConsoleSettings)


def _is_loopback(peer: str | None) -> bool:
    try:
        return peer is not None and ipaddress.ip_address(peer.split("%")[0]).is_loopback
    except ValueError:
        return False


def _forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def _key_matches(given: str | None, settings: ConsoleSettings) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), settings.key.encode())


@web.middleware
async def console_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Loopback peers, the console key, JSON writes: for the console's routes only (see the module)."""
    path = request.path
    if path != BASE and not path.startswith(f"{BASE}/"):
        return await handler(request)
    settings = request.app[CONSOLE]
    if not _is_loopback(request.remote):
        raise _forbidden("The agent console answers only on this machine (loopback)")
    if path.startswith(f"{BASE}/api") and request.method != "OPTIONS":
        if not _key_matches(request.headers.get(KEY_HEADER), settings):
            raise _forbidden(f"The agent console's API needs the {KEY_HEADER} header of this run's console key")
        if request.method == "POST":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                raise ApiError(415, "UnsupportedMediaType", "Content-Type must be application/json")
    return await handler(request)


def agent_account(name: str, role: str | None = None) -> dict[str, Any]:
    """The agent as the bot and the user see it: its id is prefixed so it never collides with a user's."""
    return {"id": f"agent:{name}", "name": name, **({"role": role} if role else {})}


def _channel(request: web.Request) -> Channel:
    return request.app[CHANNEL]


def _handoff(request: web.Request) -> Handoff:
    conversation_id = request.match_info["conversation_id"]
    handoff = request.app[HANDOFFS].get(conversation_id)
    if handoff is None:
        raise ApiError(404, "NotFound", f"No handoff in conversation {conversation_id}")
    _channel(request).store.get(conversation_id)  # an agent at work counts as use: keep the conversation alive
    return handoff


async def _body(request: web.Request) -> dict[str, Any]:
    """A JSON object; an empty body counts as {} (every field of these calls but one is optional)."""
    return await read_json_object(request, optional=True)


def _text_field(body: dict[str, Any], name: str, limit: int, required: bool) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_argument(f"'{name}' must be a non-empty string" + ("" if required else " when given"))
    if len(value) > limit:
        raise bad_argument(f"'{name}' is longer than {limit} characters")
    return value


def _agent_name(body: dict[str, Any], required: bool) -> str | None:
    name = _text_field(body, "agent", MAX_NAME, required)
    if name is None:
        return None
    if any(ord(character) < 0x20 or ord(character) == 0x7F for character in name):
        raise bad_argument("'agent' must not contain control characters")
    return name.strip()


# --- the API -------------------------------------------------------------------------------------------
async def list_handoffs(request: web.Request) -> web.Response:
    return web.json_response({"handoffs": [handoff.to_json() for handoff in request.app[HANDOFFS].all()]})


async def get_handoff(request: web.Request) -> web.Response:
    return web.json_response(_handoff(request).to_json())


async def accept(request: web.Request) -> web.Response:
    handoff = _handoff(request)
    body = await _body(request)
    name = _agent_name(body, required=True)
    assert name is not None
    await _send_status(request, handoff, ACCEPT, name, _text_field(body, "message", MAX_MESSAGE, required=False))
    return web.json_response(handoff.to_json())


async def complete(request: web.Request) -> web.Response:
    handoff = _handoff(request)
    body = await _body(request)
    name = handoff.agent or DEFAULT_AGENT
    await _send_status(request, handoff, COMPLETE, name, _text_field(body, "message", MAX_MESSAGE, required=False))
    return web.json_response(handoff.to_json())


async def fail(request: web.Request) -> web.Response:
    handoff = _handoff(request)
    body = await _body(request)
    name = handoff.agent or _agent_name(body, required=False) or DEFAULT_AGENT
    await _send_status(request, handoff, FAIL, name, _text_field(body, "message", MAX_MESSAGE, required=False))
    return web.json_response(handoff.to_json())


async def post_message(request: web.Request) -> web.Response:
    """The agent's message goes to the user's clients (stream and polling) and NOT to the bot."""
    handoff = _handoff(request)
    text = _text_field(await _body(request), "text", MAX_TEXT, required=True)
    handoff.require_state(State.ACCEPTED, "send a message")
    assert handoff.agent is not None
    activity: Activity = {"type": "message", "text": text, "from": agent_account(handoff.agent, role="bot")}
    if handoff.user is not None:
        activity["recipient"] = dict(handoff.user)
    stored = handoff.conversation.append(activity, _channel(request).settings.public_url)
    return web.json_response({"id": stored["id"]})


async def _send_status(
    request: web.Request, handoff: Handoff, transition: Transition, agent: str, message: str | None
) -> None:
    """Forward handoff.status to the bot as the channel forwards a client's activity; change state once it took it."""
    channel = _channel(request)
    settings = request.app[CONSOLE]
    if settings.handoff_signing_key is None:
        raise ApiError(
            503,
            "ServiceUnavailable",
            "This Direct Line was started without --handoff-signing-key: it cannot sign handoff.status",
        )
    if handoff.handoff_id is None:
        raise conflict(
            f"The bot's handoff.initiate in conversation {handoff.conversation_id} carried no handoffId: "
            "no status can be signed for it"
        )
    handoff.claim(transition)
    try:
        payload = status_payload(
            handoff.conversation_id, handoff.handoff_id, transition.status, settings.clock(), message, agent
        )
        value = signed_status(payload, settings.handoff_signing_key)
        event: Activity = {
            "type": "event",
            "name": STATUS_EVENT,
            "value": value,
            "from": agent_account(agent),
            "recipient": channel.settings.bot_account,
        }
        # Stored (id, timestamp, channelId, conversation, serviceUrl filled in) but private: for the bot only.
        stored = handoff.conversation.append(event, channel.settings.public_url, private=True)
        await channel.post_to_bot(copy.deepcopy(stored))
    finally:
        handoff.release()
    handoff.settle(transition, agent, message)


# --- the page ----------------------------------------------------------------------------------------
@functools.cache
def _page_template() -> str:
    return PAGE_FILE.read_text(encoding="utf-8")


_NO_KEY_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Agent console: key needed</title></head>
<body><p>The agent console needs this run's console key: open the <b>Agent console</b> address that
<code>make run</code> (or <code>python -m localdev.directline</code>) printed, ending in <code>?key=...</code>.</p>
</body></html>
"""
# The page may be shown only by this server's own pages, never framed by another origin's.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the page's address carries the key
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
}


async def page(request: web.Request) -> web.Response:
    settings = request.app[CONSOLE]
    if not _key_matches(request.query.get("key"), settings):
        return web.Response(status=403, text=_NO_KEY_PAGE, content_type="text/html", headers=_PAGE_HEADERS)
    title = html.escape(_channel(request).settings.bot_name)
    key = json.dumps(settings.key).replace("</", "<\\/")
    body = _page_template().replace("__TITLE__", title).replace("__CONSOLE_KEY__", key)
    return web.Response(text=body, content_type="text/html", headers=_PAGE_HEADERS)


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE, page)
    app.router.add_get(f"{BASE}/", page)
    app.router.add_get(API, list_handoffs)
    conversation = f"{API}/{{conversation_id}}"
    app.router.add_get(conversation, get_handoff)
    app.router.add_post(f"{conversation}/accept", accept)
    app.router.add_post(f"{conversation}/messages", post_message)
    app.router.add_post(f"{conversation}/complete", complete)
    app.router.add_post(f"{conversation}/fail", fail)
    app.router.add_post(f"{conversation}/reject", fail)
