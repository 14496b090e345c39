"""The Bot Connector API the bot calls back on serviceUrl (/v3/conversations/...).

The local bot runs with an empty app id, so it sends no Authorization header; one that is
present is ignored rather than checked.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from localdev.directline.activities import Activity, account
from localdev.directline.channel import Channel
from localdev.directline.client_api import CHANNEL
from localdev.directline.errors import ApiError, bad_argument
from localdev.directline.handoff import HANDOFFS
from localdev.directline.store import Conversation

BASE = "/v3/conversations"


def _channel(request: web.Request) -> Channel:
    return request.app[CHANNEL]


def _conversation(request: web.Request) -> Conversation:
    conversation = _channel(request).store.get(request.match_info["conversation_id"])
    if conversation is None:
        raise ApiError(404, "NotFound", "Conversation not found")
    return conversation


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError as exc:
        raise ApiError(400, "BadSyntax", "The body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise bad_argument("The body must be a JSON object")
    return body


def _store_from_bot(
    request: web.Request, conversation: Conversation, activity: Activity, keep: bool = False
) -> Activity:
    if not isinstance(activity.get("type"), str):
        raise bad_argument("activity.type is required")
    channel = _channel(request)
    # Web Chat places messages by from.role, so a bot's activity is always role "bot".
    activity["from"] = {**(account(activity.get("from")) or channel.settings.bot_account), "role": "bot"}
    stored = conversation.append(activity, channel.settings.public_url, keep_id=keep, keep_timestamp=keep)
    if not keep:  # a history upload replays the past: its handoff events are not requests now
        request.app[HANDOFFS].observe_bot_activity(conversation, stored)
    return stored


async def send_to_conversation(request: web.Request) -> web.Response:
    conversation = _conversation(request)
    stored = _store_from_bot(request, conversation, await _body(request))
    return web.json_response({"id": stored["id"]})


async def reply_to_activity(request: web.Request) -> web.Response:
    conversation = _conversation(request)
    activity = await _body(request)
    activity["replyToId"] = request.match_info["activity_id"]
    stored = _store_from_bot(request, conversation, activity)
    return web.json_response({"id": stored["id"]})


async def update_activity(request: web.Request) -> web.Response:
    conversation = _conversation(request)
    activity = await _body(request)
    activity_id = request.match_info["activity_id"]
    channel = _channel(request)
    activity["from"] = {**(account(activity.get("from")) or channel.settings.bot_account), "role": "bot"}
    updated = conversation.replace(activity_id, activity, channel.settings.public_url)
    if updated is None:
        raise ApiError(404, "NotFound", "Activity not found")
    return web.json_response({"id": updated["id"]})


async def delete_activity(request: web.Request) -> web.Response:
    if not _conversation(request).delete(request.match_info["activity_id"]):
        raise ApiError(404, "NotFound", "Activity not found")
    return web.Response(status=200)


async def conversation_members(request: web.Request) -> web.Response:
    return web.json_response(list(_conversation(request).members.values()))


async def paged_members(request: web.Request) -> web.Response:
    return web.json_response({"members": list(_conversation(request).members.values()), "continuationToken": None})


async def conversation_member(request: web.Request) -> web.Response:
    member = _conversation(request).members.get(request.match_info["member_id"])
    if member is None:
        raise ApiError(404, "NotFound", "Member not found")
    return web.json_response(member)


async def create_conversation(request: web.Request) -> web.Response:
    """CreateConversation: a new conversation holding the given members, optionally with a first activity."""
    channel = _channel(request)
    parameters = await _body(request)
    conversation = channel.store.create()
    conversation.started = True  # created by the bot: there is nobody to announce it to
    members = parameters.get("members") if isinstance(parameters.get("members"), list) else []
    for candidate in [account(parameters.get("bot")) or channel.settings.bot_account, *members]:
        if (member := account(candidate)) is not None:
            conversation.members[member["id"]] = member
    answer: dict[str, Any] = {"id": conversation.id, "serviceUrl": channel.settings.public_url}
    if isinstance(parameters.get("activity"), dict):
        answer["activityId"] = _store_from_bot(request, conversation, parameters["activity"])["id"]
    return web.json_response(answer, status=201)


async def send_conversation_history(request: web.Request) -> web.Response:
    conversation = _conversation(request)
    activities = (await _body(request)).get("activities")
    if not isinstance(activities, list) or not all(isinstance(a, dict) for a in activities):
        raise bad_argument("transcript.activities must be a list of activities")
    last_id = ""
    for activity in activities:  # a transcript keeps its own ids and timestamps
        last_id = _store_from_bot(request, conversation, activity, keep=True)["id"]
    return web.json_response({"id": last_id})


def add_routes(app: web.Application) -> None:
    conversation = f"{BASE}/{{conversation_id}}"
    activity = f"{conversation}/activities/{{activity_id}}"
    app.router.add_post(BASE, create_conversation)
    # /activities/history first: it would otherwise match /activities/{activity_id}.
    app.router.add_post(f"{conversation}/activities/history", send_conversation_history)
    app.router.add_post(f"{conversation}/activities", send_to_conversation)
    app.router.add_post(activity, reply_to_activity)
    app.router.add_put(activity, update_activity)
    app.router.add_delete(activity, delete_activity)
    app.router.add_get(f"{activity}/members", conversation_members)  # GetActivityMembers
    app.router.add_get(f"{conversation}/members", conversation_members)
    app.router.add_get(f"{conversation}/members/{{member_id}}", conversation_member)
    app.router.add_get(f"{conversation}/pagedmembers", paged_members)
