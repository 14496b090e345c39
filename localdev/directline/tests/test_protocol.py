"""The local Direct Line against the protocol as docs/direct-line-and-connector.md describes it, over plain HTTP/WS."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import requests

from localdev.directline import DirectLineServer
from localdev.directline.tests.support import SECRET, BackgroundLoop, FakeClock, Stack, running_stack, user_token
from localdev.processes import free_port

Json = dict[str, Any]


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def stack(clock: FakeClock) -> Iterator[Stack]:
    with running_stack(clock=clock, max_activities=50) as running:
        yield running


def call(stack: Stack, method: str, path: str, auth: str | None = SECRET, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {auth}"} if auth else {}
    return requests.request(method, f"{stack.domain}{path}", headers=headers, timeout=10, **kwargs)


def start(stack: Stack, user_id: str | None = "alice", auth: str = SECRET) -> Json:
    response = call(stack, "POST", "/conversations", auth, json={"user": {"id": user_id}} if user_id else None)
    assert response.status_code == 201, response.text
    return response.json()


def poll(stack: Stack, conversation_id: str, watermark: str = "", auth: str = SECRET) -> Json:
    response = call(stack, "GET", f"/conversations/{conversation_id}/activities?watermark={watermark}", auth)
    assert response.status_code == 200, response.text
    return response.json()


def send(stack: Stack, conversation_id: str, activity: Json, auth: str = SECRET) -> requests.Response:
    return call(stack, "POST", f"/conversations/{conversation_id}/activities", auth, json=activity)


def message(text: str, user: str = "alice", **extra: Any) -> Json:
    return {"type": "message", "text": text, "from": {"id": user}, **extra}


def texts(activities: list[Json]) -> list[str]:
    return [a.get("text", "") for a in activities]


# --- starting, tokens, auth -----------------------------------------------------------------------
def test_start_conversation_tells_the_bot_like_the_real_channel(stack: Stack) -> None:
    answer = start(stack, "alice")
    conversation_id = answer["conversationId"]
    assert answer["expires_in"] == 1800 and answer["token"]
    assert re.fullmatch(rf"ws://127\.0\.0\.1:\d+/v3/directline/conversations/{conversation_id}/stream\?.*t=.+",
                        answer["streamUrl"])  # fmt: skip
    stack.bot.wait_for(lambda bot: len(bot.sent_in(conversation_id)) == 1)  # the welcome

    updates = stack.bot.received_in(conversation_id)
    assert [u["membersAdded"][0]["id"] for u in updates] == ["bot", "alice"]
    for update in updates:
        assert update["type"] == "conversationUpdate"
        assert update["serviceUrl"] == stack.url
        assert update["channelId"] == "directline"
        assert update["recipient"] == {"id": "bot", "name": "Bot", "role": "bot"}
        assert update["from"]["id"] == "alice" and update["id"] and update["timestamp"]
    # conversationUpdate is never delivered to clients; the bot's welcome is.
    assert texts(poll(stack, conversation_id)["activities"]) == ["welcome alice"]


def test_user_joins_just_before_their_first_activity_when_unknown_at_start(stack: Stack) -> None:
    conversation_id = start(stack, user_id=None)["conversationId"]
    assert send(stack, conversation_id, message("hi", user="bob")).status_code == 200
    kinds = [(a["type"], a.get("membersAdded", [{}])[0].get("id")) for a in stack.bot.received_in(conversation_id)]
    assert kinds == [("conversationUpdate", "bot"), ("conversationUpdate", "bob"), ("message", None)]


def test_generate_refresh_and_use_tokens(stack: Stack) -> None:
    generated = call(stack, "POST", "/tokens/generate", json={"user": {"id": "dl_carol"}})
    assert generated.status_code == 200
    token, conversation_id = generated.json()["token"], generated.json()["conversationId"]
    assert generated.json()["expires_in"] == 1800
    assert stack.bot.received_in(conversation_id) == []  # generating does not contact the bot

    first = call(stack, "POST", "/conversations", token)
    assert first.status_code == 201 and first.json()["conversationId"] == conversation_id
    again = call(stack, "POST", "/conversations", token)
    assert again.status_code == 200 and again.json()["conversationId"] == conversation_id
    stack.bot.wait_for(lambda bot: len(bot.sent_in(conversation_id)) == 1)
    assert texts(poll(stack, conversation_id, auth=token)["activities"]) == ["welcome dl_carol"]

    refreshed = call(stack, "POST", "/tokens/refresh", token)
    assert refreshed.status_code == 200 and refreshed.json()["conversationId"] == conversation_id
    # The token is bound to its user: a forged `from` is replaced.
    assert send(stack, conversation_id, message("me", user="mallory"), auth=refreshed.json()["token"]).ok
    assert stack.bot.received_in(conversation_id)[-1]["from"]["id"] == "dl_carol"

    assert call(stack, "POST", "/tokens/refresh", SECRET).status_code == 403  # refresh needs a token
    assert call(stack, "POST", "/tokens/generate", token).status_code == 403  # generate needs the secret


def test_expired_token_is_403(clock: FakeClock) -> None:
    with running_stack(clock=clock, token_ttl=60) as short:
        token = call(short, "POST", "/tokens/generate").json()["token"]
        conversation_id = call(short, "POST", "/conversations", token).json()["conversationId"]
        clock.advance(61)
        expired = call(short, "GET", f"/conversations/{conversation_id}/activities", token)
        assert expired.status_code == 403 and expired.json()["error"]["code"] == "TokenExpired"
        assert call(short, "POST", "/tokens/refresh", token).status_code == 403


def test_token_for_one_conversation_cannot_touch_another(stack: Stack) -> None:
    token_a = start(stack)["token"]
    conversation_b = start(stack)["conversationId"]
    assert call(stack, "GET", f"/conversations/{conversation_b}/activities", token_a).status_code == 403
    assert send(stack, conversation_b, message("x"), auth=token_a).status_code == 403
    assert call(stack, "GET", f"/conversations/{conversation_b}", token_a).status_code == 403


def test_bad_authorization(stack: Stack) -> None:
    missing = call(stack, "POST", "/conversations", auth=None)
    assert missing.status_code == 401 and set(missing.json()["error"]) == {"code", "message"}
    assert call(stack, "POST", "/conversations", auth="wrong-secret").status_code == 403
    assert call(stack, "POST", "/conversations", auth="a.b.c").status_code == 403


# --- activities ---------------------------------------------------------------------------------------
def test_send_echo_and_poll_with_watermark(stack: Stack) -> None:
    conversation_id = start(stack)["conversationId"]
    stack.bot.wait_for(lambda bot: len(bot.sent_in(conversation_id)) == 1)
    first = poll(stack, conversation_id)
    watermark = first["watermark"]

    sent = send(stack, conversation_id, message("hello", channelData={"clientActivityID": "web-1"}))
    assert sent.status_code == 200
    activity_id = sent.json()["id"]
    assert re.fullmatch(rf"{conversation_id}\|\d{{7}}", activity_id)

    new = poll(stack, conversation_id, watermark)
    mine, reply = new["activities"]
    assert mine["id"] == activity_id and mine["channelData"] == {"clientActivityID": "web-1"}
    assert mine["from"] == {"id": "alice", "role": "user"} and mine["timestamp"].endswith("Z")
    assert mine["conversation"] == {"id": conversation_id} and mine["channelId"] == "directline"
    assert reply["text"] == "echo: hello" and reply["from"]["role"] == "bot" and reply["replyToId"] == activity_id
    assert reply["serviceUrl"] == stack.url and reply["timestamp"] >= mine["timestamp"]

    # The bot saw what the real channel sends.
    forwarded = stack.bot.received_in(conversation_id)[-1]
    assert forwarded["id"] == activity_id and forwarded["serviceUrl"] == stack.url
    assert forwarded["recipient"]["id"] == "bot" and forwarded["from"]["role"] == "user"

    caught_up = poll(stack, conversation_id, new["watermark"])
    assert caught_up == {"activities": [], "watermark": new["watermark"]}


def test_bot_failure_is_502_and_the_activity_is_still_stored(stack: Stack) -> None:
    conversation_id = start(stack, user_id=None)["conversationId"]
    failed = send(stack, conversation_id, message("fail"))
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "BotError"
    assert "Traceback" not in failed.text
    assert texts(poll(stack, conversation_id)["activities"])[0] == "fail"  # then the welcome of its sender


def test_unreachable_bot_is_502() -> None:
    loop = BackgroundLoop("unreachable-bot")
    server = DirectLineServer(f"http://127.0.0.1:{free_port()}/api/messages", SECRET)  # nothing listens there
    loop.run(server.start())
    try:
        headers = {"Authorization": f"Bearer {SECRET}"}
        started = requests.post(f"{server.domain}/conversations", headers=headers, timeout=10)
        assert started.status_code == 201  # the bot is told asynchronously
        sent = requests.post(
            f"{server.domain}/conversations/{started.json()['conversationId']}/activities",
            json=message("anyone?"), headers=headers, timeout=10,
        )  # fmt: skip
        assert sent.status_code == 502 and sent.json()["error"]["code"] == "BotError"
    finally:
        loop.run(server.stop())
        loop.close()


def test_events_from_a_worker_reach_the_bot_intact(stack: Stack) -> None:
    conversation_id = start(stack, user_id=None)["conversationId"]
    event = {"type": "event", "name": "LongOperationResponse", "value": {"operationId": "op-1", "result": [1, 2]},
             "from": {"id": "worker", "name": "Operations worker"}}  # fmt: skip
    assert send(stack, conversation_id, event).status_code == 200
    forwarded = stack.bot.received_in(conversation_id)[-1]
    assert forwarded["type"] == "event" and forwarded["name"] == "LongOperationResponse"
    assert forwarded["value"] == {"operationId": "op-1", "result": [1, 2]}
    assert forwarded["from"] == {"id": "worker", "name": "Operations worker", "role": "user"}
    assert forwarded["conversation"]["id"] == conversation_id


def test_malformed_requests_get_json_errors(stack: Stack) -> None:
    conversation_id = start(stack, user_id=None)["conversationId"]
    bad_json = requests.post(
        f"{stack.domain}/conversations/{conversation_id}/activities",
        data=b"{nope",
        headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "BadSyntax"
    assert send(stack, conversation_id, {"type": "message", "text": "no from"}).status_code == 400
    missing = call(stack, "GET", "/conversations/nope/activities")
    assert missing.status_code == 404 and "error" in missing.json()
    assert call(stack, "GET", f"/conversations/{conversation_id}/activities?watermark=abc").status_code == 400


def test_upload_stores_files_as_attachments(stack: Stack) -> None:
    conversation_id = start(stack, user_id=None)["conversationId"]
    files = {
        "activity": (None, '{"type":"message","text":"see file"}', "application/vnd.microsoft.activity"),
        "file": ("note.txt", b"hello file", "text/plain"),
    }  # fmt: skip
    uploaded = call(stack, "POST", f"/conversations/{conversation_id}/upload?userId=alice", files=files)
    assert uploaded.status_code == 200, uploaded.text
    forwarded = stack.bot.received_in(conversation_id)[-1]
    assert forwarded["id"] == uploaded.json()["id"] and forwarded["text"] == "see file"
    (attachment,) = forwarded["attachments"]
    assert attachment["name"] == "note.txt" and attachment["contentType"] == "text/plain"
    assert requests.get(attachment["contentUrl"], timeout=10).content == b"hello file"


# --- WebSocket ------------------------------------------------------------------------------------------
async def receive_frame(socket: aiohttp.ClientWebSocketResponse, within: float = 5.0) -> Json:
    while True:
        message = await asyncio.wait_for(socket.receive(), within)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        if message.data:
            return message.json()


async def test_websocket_stream_delivers_typing_and_echoes(stack: Stack) -> None:
    answer = start(stack)
    conversation_id = answer["conversationId"]
    async with aiohttp.ClientSession() as session, session.ws_connect(answer["streamUrl"]) as socket:
        welcome = await receive_frame(socket)  # sent before we connected: replayed from the watermark
        assert texts(welcome["activities"]) == ["welcome alice"] and welcome["watermark"]
        await socket.send_str("")  # the client's keep-alive is an empty frame
        await asyncio.to_thread(send, stack, conversation_id, message("typing", channelData={"clientActivityID": "c"}))
        frames = [await receive_frame(socket) for _ in range(3)]
        kinds = [(f["activities"][0]["type"], f["activities"][0].get("text")) for f in frames]
        assert kinds == [("message", "typing"), ("typing", None), ("message", "echo: typing")]
        assert frames[0]["activities"][0]["channelData"] == {"clientActivityID": "c"}
        assert all(isinstance(f["watermark"], str) for f in frames)
    # Polling never shows typing.
    assert "typing" not in [a["type"] for a in poll(stack, conversation_id)["activities"]]


async def test_reconnect_gives_a_fresh_stream_from_the_watermark(stack: Stack) -> None:
    answer = start(stack)
    conversation_id = answer["conversationId"]
    stack.bot.wait_for(lambda bot: len(bot.sent_in(conversation_id)) == 1)
    watermark = poll(stack, conversation_id, auth=answer["token"])["watermark"]
    await asyncio.to_thread(send, stack, conversation_id, message("later"))
    again = call(stack, "GET", f"/conversations/{conversation_id}?watermark={watermark}", answer["token"])
    assert again.status_code == 200 and again.json()["token"] and f"watermark={watermark}" in again.json()["streamUrl"]
    async with aiohttp.ClientSession() as session, session.ws_connect(again.json()["streamUrl"]) as socket:
        assert texts((await receive_frame(socket))["activities"]) == ["later"]
        assert texts((await receive_frame(socket))["activities"]) == ["echo: later"]


async def closing_frame(socket: aiohttp.ClientWebSocketResponse, within: float = 5.0) -> tuple[int, str]:
    """(close code, reason) of the close frame the server sends next; content frames before it are skipped."""
    while True:
        message = await asyncio.wait_for(socket.receive(), within)
        if message.type == aiohttp.WSMsgType.CLOSE:
            return message.data, message.extra
        assert message.type == aiohttp.WSMsgType.TEXT, message


async def test_a_newer_stream_displaces_the_open_one_which_resumes_from_its_watermark(stack: Stack) -> None:
    """One WebSocket per conversation, as in Azure: a second tab's stream closes the first with "collision";
    the first reconnects with its watermark, gets what it missed exactly once, and displaces the second."""
    answer = start(stack)
    conversation_id, token = answer["conversationId"], answer["token"]
    stack.bot.wait_for(lambda bot: len(bot.sent_in(conversation_id)) == 1)

    def reconnect(watermark: str) -> str:
        response = call(stack, "GET", f"/conversations/{conversation_id}?watermark={watermark}", token)
        assert response.status_code == 200, response.text
        return str(response.json()["streamUrl"])

    async with aiohttp.ClientSession() as session:
        first = await session.ws_connect(answer["streamUrl"])
        welcome = await receive_frame(first)
        assert texts(welcome["activities"]) == ["welcome alice"]
        # A handshake that fails (a forged stream credential) displaces nothing.
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(answer["streamUrl"].split("&t=")[0] + "&t=forged")

        second = await session.ws_connect(reconnect(""))
        assert await closing_frame(first) == (1008, "collision")
        assert texts((await receive_frame(second))["activities"]) == ["welcome alice"]
        await asyncio.to_thread(send, stack, conversation_id, message("while the first was away"))
        assert texts((await receive_frame(second))["activities"]) == ["while the first was away"]
        assert texts((await receive_frame(second))["activities"]) == ["echo: while the first was away"]

        resumed = await session.ws_connect(reconnect(welcome["watermark"]))
        assert await closing_frame(second) == (1008, "collision")
        missed = [texts((await receive_frame(resumed))["activities"]) for _ in range(2)]
        assert missed == [["while the first was away"], ["echo: while the first was away"]]
        await asyncio.to_thread(send, stack, conversation_id, message("live again"))
        assert texts((await receive_frame(resumed))["activities"]) == ["live again"]
        for socket in (first, second, resumed):
            await socket.close()


async def test_stream_needs_a_valid_stream_credential(stack: Stack) -> None:
    answer = start(stack)
    conversation_id = answer["conversationId"]
    base = answer["streamUrl"].split("?")[0]
    async with aiohttp.ClientSession() as session:
        for url in (f"{base}?t=forged", f"{base}?t={answer['token']}", base):  # a REST token is not a stream token
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await session.ws_connect(url)
            assert caught.value.status in (401, 403), url
        other = start(stack)["streamUrl"].split("t=")[1]
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(f"{base}?t={other}")
    assert conversation_id


# --- Connector API ----------------------------------------------------------------------------------
def connector(stack: Stack, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{stack.url}v3/conversations{path}", timeout=10, **kwargs)


def test_connector_api_routes_answer_like_the_real_service(stack: Stack) -> None:
    conversation_id = start(stack)["conversationId"]
    stack.bot.wait_for(lambda bot: len(bot.sent_in(conversation_id)) == 1)
    bot = {"id": "bot", "name": "Bot"}
    proactive = connector(
        stack, "POST", f"/{conversation_id}/activities", json={"type": "message", "text": "p", "from": bot}
    )
    assert proactive.status_code == 200 and proactive.json()["id"].startswith(f"{conversation_id}|")
    reply = connector(stack, "POST", f"/{conversation_id}/activities/{proactive.json()['id']}",
                      json={"type": "message", "text": "r"}, headers={"Authorization": "Bearer whatever"})  # fmt: skip
    assert reply.status_code == 200 and reply.json()["id"]
    updated = connector(stack, "PUT", f"/{conversation_id}/activities/{reply.json()['id']}",
                        json={"type": "message", "text": "r2"})  # fmt: skip
    assert updated.status_code == 200 and updated.json() == {"id": reply.json()["id"]}
    assert connector(stack, "DELETE", f"/{conversation_id}/activities/{proactive.json()['id']}").status_code == 200

    visible = poll(stack, conversation_id)["activities"]
    assert texts(visible) == ["welcome alice", "r2"]
    assert visible[1]["id"] == reply.json()["id"] and visible[1]["replyToId"] == proactive.json()["id"]
    assert visible[1]["from"]["role"] == "bot"

    members = connector(stack, "GET", f"/{conversation_id}/members")
    assert members.status_code == 200 and {m["id"] for m in members.json()} == {"bot", "alice"}
    activity_members = connector(stack, "GET", f"/{conversation_id}/activities/{reply.json()['id']}/members")
    assert activity_members.status_code == 200 and len(activity_members.json()) == 2

    history = connector(stack, "POST", f"/{conversation_id}/activities/history",
                        json={"activities": [{"type": "message", "text": "old", "id": "h1"}]})  # fmt: skip
    assert history.status_code == 200 and history.json() == {"id": "h1"}

    created = connector(stack, "POST", "", json={"bot": bot, "members": [{"id": "dave"}],
                                                 "activity": {"type": "message", "text": "hi dave"}})  # fmt: skip
    assert created.status_code == 201
    new_id = created.json()["id"]
    assert created.json()["activityId"].startswith(f"{new_id}|") and created.json()["serviceUrl"] == stack.url
    assert texts(poll(stack, new_id)["activities"]) == ["hi dave"]

    assert connector(stack, "POST", "/nope/activities", json={"type": "message"}).status_code == 404
    assert connector(stack, "PUT", f"/{conversation_id}/activities/nope", json={"type": "message"}).status_code == 404


def test_activities_kept_per_conversation_are_capped(stack: Stack) -> None:
    conversation_id = start(stack, user_id=None)["conversationId"]
    for index in range(60):
        connector(stack, "POST", f"/{conversation_id}/activities", json={"type": "message", "text": str(index)})
    kept = poll(stack, conversation_id)
    assert len(kept["activities"]) == 50 and kept["activities"][-1]["text"] == "59"


def test_cors_preflight_allows_the_client_headers(stack: Stack) -> None:
    preflight = requests.options(
        f"{stack.domain}/conversations",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-ms-bot-agent",
        },
        timeout=10,
    )
    assert preflight.status_code == 200
    assert "x-ms-bot-agent" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    actual = requests.post(
        f"{stack.domain}/conversations",
        headers={"Authorization": f"Bearer {SECRET}", "Origin": "http://localhost:3000"},
        timeout=10,
    )
    assert actual.status_code == 201 and actual.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


# --- Web Chat page --------------------------------------------------------------------------------------
def test_webchat_page_gets_its_token_from_the_token_endpoint(stack: Stack) -> None:
    page = requests.get(stack.url, timeout=10)
    assert page.status_code == 200 and '<script src="/webchat.js">' in page.text
    assert stack.domain in page.text and SECRET not in page.text
    assert '<link rel="icon" href="data:,">' in page.text  # the browser does not ask for /favicon.ico (a 404)
    assert "const tokenEndpoint = null;" in page.text and "--token-endpoint" in page.text  # says what is missing
    script = requests.get(f"{stack.url}webchat.js", timeout=10)
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
    assert len(script.content) > 1_000_000
    # The server hands out no tokens of its own to pages: a token server holding the secret does.
    assert requests.post(f"{stack.url}local/token", timeout=10).status_code in (404, 405)

    endpoint = "http://127.0.0.1:7071/api/directline/token?x=</script>"
    with running_stack(token_endpoint=endpoint) as configured:
        page = requests.get(configured.url, timeout=10).text
        assert 'const tokenEndpoint = "http://127.0.0.1:7071/api/directline/token?x=<\\/script>";' in page


def test_a_user_bound_token_speaks_only_as_its_user_in_uploads_too(stack: Stack) -> None:
    token = user_token(stack, "dl_dora")
    conversation_id = token["conversationId"]
    assert call(stack, "POST", "/conversations", token["token"]).status_code == 201
    files = {
        "activity": (None, '{"type":"message","text":"a file","from":{"id":"mallory"}}', "application/json"),
        "file": ("note.txt", b"hello", "text/plain"),
    }
    path = f"/conversations/{conversation_id}/upload?userId=mallory"
    assert call(stack, "POST", path, token["token"], files=files).status_code == 200
    assert stack.bot.received_in(conversation_id)[-1]["from"]["id"] == "dl_dora"


def test_every_conversation_a_client_may_use_is_kept_however_many_there_are(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The service keeps conversations for its retention period: many short ones (a worker's, say) never
    push out a user's conversation that is merely unpolled for a while."""
    with running_stack(clock=clock, idle_ttl=3600) as stack:
        user = start(stack, user_id=None)["conversationId"]
        clock.advance(1800)  # half an hour without polling
        for _ in range(250):  # more than any fixed count would allow
            start(stack, user_id=None)
        assert call(stack, "GET", f"/conversations/{user}/activities").status_code == 200
        assert len(stack.server.channel.store) == 251
        assert not any("dropped" in record.getMessage() for record in caplog.records)


def test_idle_conversations_go_after_their_time_and_every_drop_is_logged(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="localdev.directline")
    with running_stack(clock=clock, idle_ttl=100) as small:
        first = start(small, user_id=None)["conversationId"]
        clock.advance(101)
        start(small, user_id=None)  # creating sweeps: the first has been idle too long
        assert call(small, "GET", f"/conversations/{first}/activities").status_code == 404  # "conversation ended"
        assert f"conversation {first} dropped: idle for 2 min" in caplog.text


def test_memory_is_bounded_by_activities_and_the_least_recently_used_go_first(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with running_stack(clock=clock, idle_ttl=3600, max_stored_activities=4) as small:
        conversations = []
        for _ in range(6):
            conversations.append(start(small, user_id=None)["conversationId"])
            clock.advance(1)
        assert len(small.server.channel.store) < 6  # checked as conversations are made: a bound, not a count
        assert call(small, "GET", f"/conversations/{conversations[-1]}/activities").status_code == 200
        assert call(small, "GET", f"/conversations/{conversations[0]}/activities").status_code == 404
        assert f"conversation {conversations[0]} dropped early" in caplog.text
