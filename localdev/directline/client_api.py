"""The Direct Line 3.0 client API under /v3/directline (what Web Chat and directlinejs call)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, WSCloseCode, WSMsgType, web

from localdev.directline.activities import Activity, account, random_id
from localdev.directline.channel import Channel
from localdev.directline.errors import ApiError, bad_argument, json_object, not_found, read_json_object
from localdev.directline.store import Conversation, StoredFile, parse_watermark
from localdev.directline.tokens import STREAM_SCOPE, TokenError

CHANNEL = web.AppKey("directline_channel", Channel)
BASE = "/v3/directline"
# The service allows one stream per conversation and closes the one a newer stream displaces with the reason
# "collision". Its close code is not documented (Microsoft's client ignores both): 1008 is RFC 6455's policy code.
COLLISION_CLOSE_CODE = WSCloseCode.POLICY_VIOLATION
COLLISION_REASON = "collision"

log = logging.getLogger("localdev.directline")


@dataclass(frozen=True)
class Caller:
    """Who is calling: the secret (any conversation) or a token bound to one conversation."""

    with_secret: bool
    conversation_id: str | None = None
    user_id: str | None = None


def _channel(request: web.Request) -> Channel:
    return request.app[CHANNEL]


def authenticate(request: web.Request, conversation_id: str | None = None) -> Caller:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise ApiError(401, "Unauthorized", "Authorization: Bearer <secret or token> is required")
    channel = _channel(request)
    if hmac.compare_digest(credential.encode(), channel.tokens_secret_bytes):
        return Caller(with_secret=True)
    try:
        claims = channel.tokens.verify(credential)
    except TokenError as exc:
        raise ApiError(403, "TokenExpired" if exc.expired else "Forbidden", str(exc)) from exc
    if conversation_id is not None and claims.conversation_id != conversation_id:
        raise ApiError(403, "Forbidden", "The token is not valid for this conversation")
    return Caller(with_secret=False, conversation_id=claims.conversation_id, user_id=claims.user_id)


def _conversation(request: web.Request, conversation_id: str) -> Conversation:
    conversation = _channel(request).store.get(conversation_id)
    if conversation is None:
        raise not_found()
    return conversation


def _watermark(request: web.Request) -> int:
    try:
        return parse_watermark(request.query.get("watermark"))
    except ValueError as exc:
        raise bad_argument(str(exc)) from exc


def _user_account(value: Any) -> dict[str, Any] | None:
    user = account(value)
    return None if user is None else {**{k: v for k, v in user.items() if k in ("id", "name")}, "role": "user"}


# --- conversations and tokens ---------------------------------------------------------------------
async def start_conversation(request: web.Request) -> web.Response:
    caller = authenticate(request)
    channel = _channel(request)
    body = await read_json_object(request, optional=True)
    user = _user_account({"id": caller.user_id} if caller.user_id else body.get("user"))
    if caller.with_secret:
        conversation = channel.store.create()
    else:
        assert caller.conversation_id is not None
        # A generated token names a conversation that may not exist yet (or was dropped): the signature vouches for it.
        conversation = channel.store.get(caller.conversation_id) or channel.store.create(caller.conversation_id)
    status = 201 if channel.start(conversation, user) else 200
    answer = channel.conversation_answer(conversation, user["id"] if user else None, conversation.watermark)
    return web.json_response(answer, status=status)


async def reconnect(request: web.Request) -> web.Response:
    conversation_id = request.match_info["conversation_id"]
    caller = authenticate(request, conversation_id)
    conversation = _conversation(request, conversation_id)
    _watermark(request)  # validate
    watermark = request.query.get("watermark") or None
    return web.json_response(_channel(request).conversation_answer(conversation, caller.user_id, watermark))


async def generate_token(request: web.Request) -> web.Response:
    if not authenticate(request).with_secret:
        raise ApiError(403, "Forbidden", "Generating a token requires the secret")
    channel = _channel(request)
    user = _user_account((await read_json_object(request, optional=True)).get("user"))
    conversation = channel.store.create()  # not started: the bot hears of it when a client starts it
    return web.json_response(channel.token_answer(conversation.id, user["id"] if user else None))


async def refresh_token(request: web.Request) -> web.Response:
    caller = authenticate(request)
    if caller.with_secret or caller.conversation_id is None:
        raise ApiError(403, "Forbidden", "Refreshing needs a token, not the secret")
    return web.json_response(_channel(request).token_answer(caller.conversation_id, caller.user_id))


async def session_id(request: web.Request) -> web.Response:
    authenticate(request)
    return web.json_response({"sessionId": random_id()})


# --- activities -----------------------------------------------------------------------------------
def _prepare_client_activity(request: web.Request, caller: Caller, activity: Activity) -> Activity:
    if not isinstance(activity.get("type"), str) or not activity["type"]:
        raise bad_argument("activity.type is required")
    sender = account(activity.get("from"))
    if caller.user_id:  # a token bound to a user speaks only as that user
        sender = {**(sender or {}), "id": caller.user_id}
    if sender is None:
        raise bad_argument("activity.from.id is required")
    activity["from"] = {**sender, "role": "user"}
    activity["recipient"] = _channel(request).settings.bot_account
    return activity


async def post_activity(request: web.Request) -> web.Response:
    conversation_id = request.match_info["conversation_id"]
    caller = authenticate(request, conversation_id)
    conversation = _conversation(request, conversation_id)
    activity = _prepare_client_activity(request, caller, await read_json_object(request))
    stored = await _channel(request).receive_from_client(conversation, activity)
    return web.json_response({"id": stored["id"]})


async def upload(request: web.Request) -> web.Response:
    """Multipart: an optional `activity` part (JSON) and `file` parts, kept in memory and served by URL."""
    conversation_id = request.match_info["conversation_id"]
    caller = authenticate(request, conversation_id)
    conversation = _conversation(request, conversation_id)
    channel = _channel(request)
    if not request.content_type.startswith("multipart/"):
        raise bad_argument("Upload must be multipart/form-data")
    activity: Activity = {"type": "message"}
    attachments: list[dict[str, Any]] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        data = await _read_capped(part, channel.settings.max_upload_bytes)
        if part.name == "activity":
            activity = json_object(data, "The activity part")
            continue
        content_type = part.headers.get("Content-Type", "application/octet-stream")
        name = part.filename or "file"
        attachment_id = conversation.add_attachment(StoredFile(content_type, name, bytes(data)))
        url = f"{channel.settings.public_url}v3/attachments/{conversation.id}/{attachment_id}"
        attachments.append({"contentType": content_type, "contentUrl": url, "name": name})
    if attachments:
        activity["attachments"] = attachments  # the template's attachments had no content
    if not account(activity.get("from")) and request.query.get("userId"):
        activity["from"] = {"id": request.query["userId"]}
    stored = await channel.receive_from_client(conversation, _prepare_client_activity(request, caller, activity))
    return web.json_response({"id": stored["id"]})


async def _read_capped(part: BodyPartReader, limit: int) -> bytearray:
    data = bytearray()
    while chunk := await part.read_chunk():
        data.extend(chunk)
        if len(data) > limit:
            raise ApiError(413, "RequestTooLarge", f"A part is larger than {limit} bytes")
    return data


async def attachment(request: web.Request) -> web.Response:
    """Uploaded files, by capability URL (unguessable id), so the bot and Web Chat can fetch them."""
    conversation = _channel(request).store.get(request.match_info["conversation_id"])
    stored = conversation.attachments.get(request.match_info["attachment_id"]) if conversation else None
    if stored is None:
        raise ApiError(404, "NotFound", "Attachment not found")
    return web.Response(body=stored.data, content_type=stored.content_type.split(";")[0])


async def poll(request: web.Request) -> web.Response:
    conversation_id = request.match_info["conversation_id"]
    authenticate(request, conversation_id)
    conversation = _conversation(request, conversation_id)
    since = _watermark(request)
    activities = [activity for _, activity in conversation.visible_after(since, websocket=False)]
    watermark = conversation.watermark or (request.query.get("watermark") or None)
    return web.json_response({"activities": activities, "watermark": watermark})


# --- the WebSocket stream -------------------------------------------------------------------------
async def stream(request: web.Request) -> web.StreamResponse:
    """Opened without an Authorization header: the credential is the `t` query parameter of streamUrl."""
    conversation_id = request.match_info["conversation_id"]
    channel = _channel(request)
    if "t" in request.query:
        try:
            claims = channel.tokens.verify(request.query["t"], STREAM_SCOPE)
        except TokenError as exc:
            raise ApiError(403, "TokenExpired" if exc.expired else "Forbidden", str(exc)) from exc
        if claims.conversation_id != conversation_id:
            raise ApiError(403, "Forbidden", "The stream token is not valid for this conversation")
    else:
        authenticate(request, conversation_id)
    conversation = _conversation(request, conversation_id)
    try:
        since = parse_watermark(request.query.get("watermark"))
    except ValueError:
        since = -1
    socket = web.WebSocketResponse(heartbeat=channel.settings.ws_heartbeat)
    await socket.prepare(request)
    # Subscribe (displacing an open stream: only a socket that opened does) and take the backlog with no await
    # in between: nothing is missed or sent twice.
    subscription = conversation.subscribe()
    backlog = conversation.visible_after(since, websocket=True)

    async def pump() -> None:
        for seq, activity in backlog:
            await socket.send_json({"activities": [activity], "watermark": str(seq)})
        while (item := await subscription.queue.get()) is not None and not subscription.overflowed:
            seq, activity = item
            await socket.send_json({"activities": [activity], "watermark": str(seq)})
        # Displaced, ended, dropped or too far behind: the client reconnects with its watermark.
        if subscription.displaced:
            log.info("conversation %s: a newer stream displaced this one (%s)", conversation_id, COLLISION_REASON)
            await socket.close(code=COLLISION_CLOSE_CODE, message=COLLISION_REASON.encode())
        else:
            await socket.close()

    pumping = asyncio.get_running_loop().create_task(pump())
    try:
        async for message in socket:  # the client's frames are keep-alives (empty text); nothing to do
            if message.type == WSMsgType.ERROR:
                break
    finally:
        conversation.unsubscribe(subscription)
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pumping
    return socket


def add_routes(app: web.Application) -> None:
    app.router.add_post(f"{BASE}/conversations", start_conversation)
    app.router.add_get(f"{BASE}/conversations/{{conversation_id}}", reconnect)
    app.router.add_post(f"{BASE}/conversations/{{conversation_id}}/activities", post_activity)
    app.router.add_get(f"{BASE}/conversations/{{conversation_id}}/activities", poll)
    app.router.add_post(f"{BASE}/conversations/{{conversation_id}}/upload", upload)
    app.router.add_get(f"{BASE}/conversations/{{conversation_id}}/stream", stream)
    app.router.add_post(f"{BASE}/tokens/generate", generate_token)
    app.router.add_post(f"{BASE}/tokens/refresh", refresh_token)
    app.router.add_get(f"{BASE}/session/getsessionid", session_id)
    app.router.add_get("/v3/attachments/{conversation_id}/{attachment_id}", attachment)
