"""Human handoff through the local Direct Line: the agent console's API and page, against tests/handoff_bot.py."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from bot_logic.signing import verified_payload
from localdev.directline.tests.agent_console_page import AgentConsolePage
from localdev.directline.tests.directline_js import DirectLineJsClient
from localdev.directline.tests.handoff_bot import REASON, WITHDRAWN_MESSAGE, HandoffBot
from localdev.directline.tests.support import HANDOFF_SIGNING_KEY, SECRET, FakeClock, Stack, running_stack
from localdev.processes import NODE_MODULES

Json = dict[str, Any]
BOT = {"id": "bot", "name": "Bot", "role": "bot"}

NO_NODE_CLIENT = shutil.which("node") is None or not (NODE_MODULES / "botframework-directlinejs").is_dir()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack(bot=HandoffBot()) as running:
        yield running


def handoff_bot(stack: Stack) -> HandoffBot:
    assert isinstance(stack.bot, HandoffBot)
    return stack.bot


# --- talking to the server --------------------------------------------------------------------------------
def directline(stack: Stack, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {SECRET}", **kwargs.pop("headers", {})}
    return requests.request(method, f"{stack.domain}{path}", headers=headers, timeout=10, **kwargs)


def start(stack: Stack, user_id: str, name: str | None = None) -> str:
    user = {"id": user_id, **({"name": name} if name else {})}
    answer = directline(stack, "POST", "/conversations", json={"user": user})
    assert answer.status_code == 201, answer.text
    conversation_id: str = answer.json()["conversationId"]
    handoff_bot(stack).wait_for(
        lambda bot: any(a.get("text") == f"welcome {user_id}" for a in bot.sent_in(conversation_id))
    )
    return conversation_id


def say(stack: Stack, conversation_id: str, text: str, user_id: str, name: str | None = None) -> None:
    """A user's message; the answer comes after the bot's turn, so its replies are stored by then."""
    message = {"type": "message", "text": text, "from": {"id": user_id, **({"name": name} if name else {})}}
    sent = directline(stack, "POST", f"/conversations/{conversation_id}/activities", json=message)
    assert sent.status_code == 200, sent.text


def user_sees(stack: Stack, conversation_id: str) -> list[Json]:
    polled = directline(stack, "GET", f"/conversations/{conversation_id}/activities?watermark=")
    assert polled.status_code == 200, polled.text
    activities: list[Json] = polled.json()["activities"]
    return activities


def agent(stack: Stack, method: str, path: str = "", **kwargs: Any) -> requests.Response:
    """The console's API as its page calls it: with the run's console key, writes as JSON."""
    headers = {"X-Console-Key": stack.server.console_key, **kwargs.pop("headers", {})}
    if method == "POST":
        headers.setdefault("Content-Type", "application/json")
    return requests.request(method, f"{stack.url}agent/api/handoffs{path}", headers=headers, timeout=10, **kwargs)


def said(status: Json) -> Json:
    """What a handoff.status the console sent says: its signed payload (the signature is checked)."""
    payload = verified_payload(status["value"], HANDOFF_SIGNING_KEY)
    assert payload is not None, status["value"]
    return payload


def said_briefly(status: Json) -> Json:
    """The signed payload's state, message and agent name, the parts a test compares."""
    return {key: value for key, value in said(status).items() if key in ("state", "message", "agentName")}


def handoff(stack: Stack, conversation_id: str) -> Json:
    answer = agent(stack, "GET", f"/{conversation_id}")
    assert answer.status_code == 200, answer.text
    found: Json = answer.json()
    return found


def handed_off(stack: Stack, user_id: str, name: str | None = None) -> str:
    """A conversation in which the user said hello, then asked for a person."""
    conversation_id = start(stack, user_id, name)
    say(stack, conversation_id, "hello", user_id, name)
    say(stack, conversation_id, "agent", user_id, name)
    return conversation_id


def texts(activities: list[Json]) -> list[str]:
    return [a["text"] for a in activities if a.get("type") == "message"]


def error_of(response: requests.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and "Traceback" not in response.text
    message: str = error["message"]
    return message


# --- tracking ------------------------------------------------------------------------------------------------
def test_the_handoff_is_listed_with_its_context_and_transcript(stack: Stack) -> None:
    first = handed_off(stack, "grace", "Grace")
    second = handed_off(stack, "linus")

    listed = agent(stack, "GET")
    assert listed.status_code == 200
    handoffs = [h for h in listed.json()["handoffs"] if h["conversationId"] in (first, second)]
    assert [h["conversationId"] for h in handoffs] == [second, first]  # newest first

    grace = handoffs[1]
    assert grace["state"] == "waiting" and grace["agent"] is None and grace["pending"] is None
    assert grace["context"] == {"reason": REASON, "userName": "Grace", "handoffId": grace["handoffId"]}
    assert grace["handoffId"] == handoff_bot(stack).handoff_ids[first]
    assert grace["user"] == {"id": "grace", "name": "Grace", "role": "user"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", grace["initiatedAt"])
    assert texts(grace["transcript"]) == ["welcome grace", "hello", "echo: hello", "agent", "asking a person"]
    assert grace["activities"] == []  # nothing has happened since the bot asked
    assert handoff(stack, first) == grace

    # The bot asking again while its handoff waits changes nothing.
    say(stack, first, "agent", "grace")
    assert handoff(stack, first)["initiatedAt"] == grace["initiatedAt"]


def test_accept_chat_and_complete(stack: Stack) -> None:
    bot = handoff_bot(stack)
    conversation_id = handed_off(stack, "ada-user", "Ada Lovelace")

    accepted = agent(stack, "POST", f"/{conversation_id}/accept", json={"agent": "Ada"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["state"] == "accepted" and accepted.json()["agent"] == "Ada"
    assert accepted.json()["acceptedAt"]

    # The bot got handoff.status accepted like any channel activity, in the user's conversation, from the agent.
    (status,) = bot.statuses(conversation_id)
    assert status["type"] == "event" and said_briefly(status) == {"state": "accepted", "agentName": "Ada"}
    # Signed for this conversation and this handoff, for a short while.
    payload = said(status)
    assert payload["conversationId"] == conversation_id and payload["handoffId"] == bot.handoff_ids[conversation_id]
    assert 0 < payload["expiresAt"] - payload["issuedAt"] <= 600
    assert status["from"] == {"id": "agent:Ada", "name": "Ada"} and status["recipient"] == BOT
    assert status["conversation"] == {"id": conversation_id} and status["channelId"] == "directline"
    assert status["serviceUrl"] == stack.url and status["id"].startswith(f"{conversation_id}|")
    assert status["timestamp"].endswith("Z")

    sent = agent(stack, "POST", f"/{conversation_id}/messages", json={"text": "Hi, I'm Ada. How can I help?"})
    assert sent.status_code == 200, sent.text
    say(stack, conversation_id, "my order is late", "ada-user")

    # The user sees the bot's answer and the agent's message, never the status event meant for the bot.
    seen = user_sees(stack, conversation_id)
    assert texts(seen)[-3:] == ["handoff accepted by Ada", "Hi, I'm Ada. How can I help?", "my order is late"]
    from_agent = next(a for a in seen if a.get("text") == "Hi, I'm Ada. How can I help?")
    assert from_agent["id"] == sent.json()["id"]
    assert from_agent["from"] == {"id": "agent:Ada", "name": "Ada", "role": "bot"}
    assert from_agent["recipient"]["id"] == "ada-user" and from_agent["conversation"]["id"] == conversation_id
    assert not [a for a in seen if a.get("name") == "handoff.status"]
    # The agent's message did not go to the bot; the user's reply still did (the bot stays silent).
    received = texts(bot.received_in(conversation_id))
    assert "Hi, I'm Ada. How can I help?" not in received and received[-1] == "my order is late"

    during = handoff(stack, conversation_id)["activities"]
    assert [(a["type"], a.get("text") or said(a)["state"]) for a in during] == [
        ("event", "accepted"),
        ("message", "handoff accepted by Ada"),
        ("message", "Hi, I'm Ada. How can I help?"),
        ("message", "my order is late"),
    ]

    completed = agent(stack, "POST", f"/{conversation_id}/complete", json={"message": "solved"})
    assert completed.status_code == 200, completed.text
    assert completed.json()["state"] == "completed" and completed.json()["endedAt"]
    last = said_briefly(bot.statuses(conversation_id)[-1])
    assert last == {"state": "completed", "message": "solved", "agentName": "Ada"}
    assert bot.statuses(conversation_id)[-1]["from"] == {"id": "agent:Ada", "name": "Ada"}
    assert texts(user_sees(stack, conversation_id))[-1] == "handoff completed by Ada"

    # Ended: the bot answers again, and a later message is no longer part of the handoff.
    say(stack, conversation_id, "thanks", "ada-user")
    assert texts(user_sees(stack, conversation_id))[-1] == "echo: thanks"
    assert texts(handoff(stack, conversation_id)["activities"])[-1] == "handoff completed by Ada"

    # A new request in the same conversation starts a new handoff.
    say(stack, conversation_id, "agent", "ada-user")
    again = handoff(stack, conversation_id)
    assert again["state"] == "waiting" and again["agent"] is None and again["activities"] == []
    assert "thanks" in texts(again["transcript"])
    assert [h["conversationId"] for h in agent(stack, "GET").json()["handoffs"]].count(conversation_id) == 1


def test_bot_withdrawal_marks_the_handoff_withdrawn(stack: Stack) -> None:
    conversation_id = handed_off(stack, "withdrawn-user")
    say(stack, conversation_id, "withdraw", "withdrawn-user")
    withdrawn = handoff(stack, conversation_id)
    assert withdrawn["state"] == "withdrawn" and withdrawn["message"] == WITHDRAWN_MESSAGE and withdrawn["endedAt"]
    assert "withdrawn" in error_of(agent(stack, "POST", f"/{conversation_id}/accept", json={"agent": "Ada"}), 409)
    assert handoff_bot(stack).statuses(conversation_id) == []

    # Withdrawn after an agent accepted (the bot gave up on its side) ends it too.
    say(stack, conversation_id, "agent", "withdrawn-user")
    assert agent(stack, "POST", f"/{conversation_id}/accept", json={"agent": "Ada"}).status_code == 200
    say(stack, conversation_id, "withdraw", "withdrawn-user")
    assert handoff(stack, conversation_id)["state"] == "withdrawn"
    assert "withdrawn" in error_of(agent(stack, "POST", f"/{conversation_id}/messages", json={"text": "x"}), 409)


def test_reject_sends_failed_to_the_bot(stack: Stack) -> None:
    conversation_id = handed_off(stack, "rejected-user")
    rejected = agent(stack, "POST", f"/{conversation_id}/reject", json={"agent": "Bob", "message": "no agents now"})
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["state"] == "failed" and rejected.json()["message"] == "no agents now"
    (status,) = handoff_bot(stack).statuses(conversation_id)
    assert said_briefly(status) == {"state": "failed", "message": "no agents now", "agentName": "Bob"}
    assert status["from"] == {"id": "agent:Bob", "name": "Bob"}
    assert "failed" in error_of(agent(stack, "POST", f"/{conversation_id}/fail", json={}), 409)

    # After accepting, "fail" is the agent's to send, with the agent's name.
    say(stack, conversation_id, "agent", "rejected-user")
    agent(stack, "POST", f"/{conversation_id}/accept", json={"agent": "Cy"})
    assert agent(stack, "POST", f"/{conversation_id}/fail").json()["state"] == "failed"  # no body at all
    last = handoff_bot(stack).statuses(conversation_id)[-1]
    assert said_briefly(last) == {"state": "failed", "agentName": "Cy"}
    assert last["from"] == {"id": "agent:Cy", "name": "Cy"}


def test_a_failing_bot_is_502_and_the_handoff_keeps_waiting(stack: Stack) -> None:
    conversation_id = handed_off(stack, "broken-user")
    say(stack, conversation_id, "break", "broken-user")
    failed = agent(stack, "POST", f"/{conversation_id}/accept", json={"agent": "Ada"})
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "BotError"
    after = handoff(stack, conversation_id)
    assert after["state"] == "waiting" and after["pending"] is None and after["agent"] is None
    assert agent(stack, "POST", f"/{conversation_id}/accept", json={"agent": "Ada"}).status_code == 200


def test_one_action_at_a_time_while_the_bot_handles_a_status(stack: Stack) -> None:
    bot = handoff_bot(stack)
    conversation_id = handed_off(stack, "held-user")
    say(stack, conversation_id, "hold", "held-user")
    bot.release.clear()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(agent, stack, "POST", f"/{conversation_id}/accept", json={"agent": "Ada"})
        bot.wait_for(lambda _: len(bot.statuses(conversation_id)) == 1)  # with the bot now
        assert handoff(stack, conversation_id)["pending"] == "accept"
        second = agent(stack, "POST", f"/{conversation_id}/accept", json={"agent": "Bob"})
        assert "'accept' still in progress" in error_of(second, 409)
        assert "in progress" in error_of(agent(stack, "POST", f"/{conversation_id}/fail"), 409)
        bot.release.set()
        assert first.result(timeout=10).status_code == 200
    settled = handoff(stack, conversation_id)
    assert settled["state"] == "accepted" and settled["agent"] == "Ada" and settled["pending"] is None
    assert len(bot.statuses(conversation_id)) == 1


def test_a_bot_that_refuses_the_accept_withdraws_the_handoff(stack: Stack) -> None:
    conversation_id = handed_off(stack, "late-user")
    say(stack, conversation_id, "too late", "late-user")
    refused = agent(stack, "POST", f"/{conversation_id}/accept", json={"agent": "Ada"})
    assert "became withdrawn meanwhile" in error_of(refused, 409)
    after = handoff(stack, conversation_id)
    assert after["state"] == "withdrawn" and after["agent"] is None
    assert after["message"] == "the bot is no longer waiting"


# --- errors ---------------------------------------------------------------------------------------------------
def test_unknown_conversations_and_handoffs_are_404(stack: Stack) -> None:
    for method, path in [("GET", "/nope"), ("POST", "/nope/accept"), ("POST", "/nope/messages"),
                         ("POST", "/nope/complete"), ("POST", "/nope/fail")]:  # fmt: skip
        assert "nope" in error_of(agent(stack, method, path, json={"agent": "Ada", "text": "x"}), 404)
    no_handoff = start(stack, "never-handed-off")
    assert error_of(agent(stack, "POST", f"/{no_handoff}/accept", json={"agent": "Ada"}), 404).startswith("No handoff")


def test_bad_bodies_are_400(stack: Stack) -> None:
    conversation_id = handed_off(stack, "bad-bodies")
    accept = f"/{conversation_id}/accept"
    assert "'agent'" in error_of(agent(stack, "POST", accept), 400)
    for body in ({"agent": ""}, {"agent": "   "}, {"agent": 7}, {"agent": "x" * 65}, {"agent": "a\nb"}):
        assert "'agent'" in error_of(agent(stack, "POST", accept, json=body), 400), body
    assert "'message'" in error_of(agent(stack, "POST", accept, json={"agent": "Ada", "message": 3}), 400)
    bad_json = agent(stack, "POST", accept, data=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "BadSyntax"
    assert "JSON object" in error_of(agent(stack, "POST", accept, json=["Ada"]), 400)
    assert handoff(stack, conversation_id)["state"] == "waiting"  # nothing happened
    assert handoff_bot(stack).statuses(conversation_id) == []

    assert agent(stack, "POST", accept, json={"agent": "Ada"}).status_code == 200
    messages = f"/{conversation_id}/messages"
    for body in ({}, {"text": ""}, {"text": None}, {"text": ["hi"]}, {"text": "x" * 10_001}):
        assert "'text'" in error_of(agent(stack, "POST", messages, json=body), 400), body
    assert error_of(agent(stack, "GET", f"/{conversation_id}/accept"), 405)


def test_actions_out_of_order_are_409_naming_the_state(stack: Stack) -> None:
    conversation_id = handed_off(stack, "impatient")
    waiting = "is waiting, not accepted"
    assert waiting in error_of(agent(stack, "POST", f"/{conversation_id}/messages", json={"text": "hi"}), 409)
    assert waiting in error_of(agent(stack, "POST", f"/{conversation_id}/complete"), 409)
    assert agent(stack, "POST", f"/{conversation_id}/accept", json={"agent": "Ada"}).status_code == 200
    twice = error_of(agent(stack, "POST", f"/{conversation_id}/accept", json={"agent": "Bob"}), 409)
    assert "is accepted, not waiting" in twice
    assert handoff(stack, conversation_id)["agent"] == "Ada"
    assert [said(s)["state"] for s in handoff_bot(stack).statuses(conversation_id)] == ["accepted"]


def test_handoffs_go_with_their_conversation() -> None:
    clock = FakeClock()
    with running_stack(bot=HandoffBot(), clock=clock, idle_ttl=100) as small:
        conversation_id = handed_off(small, "forgotten")
        assert [h["conversationId"] for h in agent(small, "GET").json()["handoffs"]] == [conversation_id]
        clock.advance(101)
        start(small, "newcomer")  # creating a conversation sweeps idle ones
        assert agent(small, "GET").json()["handoffs"] == []
        assert agent(small, "GET", f"/{conversation_id}").status_code == 404


# --- Microsoft's Direct Line client on the user's side ------------------------------------------------------
@pytest.mark.node
@pytest.mark.skipif(NO_NODE_CLIENT, reason="needs node and `npm ci`")
@pytest.mark.parametrize("mode", ["websocket", "polling"])
def test_agent_messages_reach_microsofts_client(stack: Stack, mode: str) -> None:
    user_id = f"js-handoff-{mode}"
    with DirectLineJsClient().start(stack.domain, secret=SECRET, mode=mode, user_id=user_id) as client:
        conversation_id = client.wait_for_text(f"welcome {user_id}")["conversation"]["id"]
        client.send("agent")
        client.wait_for_text("asking a person")
        assert agent(stack, "POST", f"/{conversation_id}/accept", json={"agent": "Ada"}).status_code == 200
        client.wait_for_text("handoff accepted by Ada")

        mark = client.mark()
        sent = agent(stack, "POST", f"/{conversation_id}/messages", json={"text": f"Ada here ({mode})"})
        assert sent.status_code == 200, sent.text
        message = client.wait_for_text(f"Ada here ({mode})", since=mark)
        assert message["id"] == sent.json()["id"]
        assert message["from"] == {"id": "agent:Ada", "name": "Ada", "role": "bot"}
        assert f"Ada here ({mode})" not in texts(handoff_bot(stack).received_in(conversation_id))

        client.send("thank you, Ada")
        assert texts(handoff(stack, conversation_id)["activities"])[-1] == "thank you, Ada"
        assert texts(handoff_bot(stack).received_in(conversation_id))[-1] == "thank you, Ada"
        assert not [a for a in client.activities if a.get("name") == "handoff.status"]  # the agent's are private
        assert client.errors == []


# --- the page --------------------------------------------------------------------------------------------------
def console_page(stack: Stack, path: str = "agent") -> requests.Response:
    return requests.get(f"{stack.url}{path}", params={"key": stack.server.console_key}, timeout=10)


def console_script(stack: Stack) -> str:
    page = console_page(stack)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    scripts = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert len(scripts) == 1
    return scripts[0]


def test_the_console_page_and_its_links(stack: Stack) -> None:
    page = console_page(stack)
    assert page.status_code == 200 and "<title>Bot – agent console</title>" in page.text
    assert "/agent/api/handoffs" in console_script(stack)
    assert json.dumps(stack.server.console_key) in console_script(stack)  # the page's calls carry it
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # nothing from outside: works offline
    assert console_page(stack, "agent/").text == page.text
    assert stack.server.agent_console_url == f"{stack.url}agent?key={stack.server.console_key}"
    webchat = requests.get(stack.url, timeout=10).text
    assert '<a href="/agent"' in webchat and "Agent console" in webchat


@pytest.mark.node
@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_the_console_script_is_valid_javascript(stack: Stack, tmp_path: Any) -> None:
    script = tmp_path / "agent_console.js"
    script.write_text(console_script(stack), encoding="utf-8")
    checked = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.node
@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_an_agent_takes_over_through_the_console_page(stack: Stack) -> None:
    bot = handoff_bot(stack)
    with AgentConsolePage().start(stack.url, stack.server.console_key) as page:
        conversation_id = handed_off(stack, "page-user", "Pat")
        page.wait_for(lambda p: conversation_id in [h["conversationId"] for h in p["lists"]["waiting"]])
        page.select(conversation_id)
        page.wait_for(lambda p: p["elements"]["heading"]["text"] == "Patwaiting")
        assert REASON in page.element("facts")["text"] and "hello" in page.element("log")["text"]
        assert not page.element("accept")["disabled"] and page.element("send")["disabled"]

        page.set("agent-name", "")
        page.click("accept")  # the user will see the agent's name: there must be one
        page.wait_for(lambda p: "Type your name first" in p["elements"]["notice"]["text"])
        page.set("agent-name", "Ada")
        page.click("accept")
        page.wait_for(lambda p: "handoff accepted by Ada" in p["elements"]["log"]["text"])
        assert page.element("heading")["text"] == "Pataccepted" and not page.element("send")["disabled"]
        assert bot.statuses(conversation_id)[-1]["from"] == {"id": "agent:Ada", "name": "Ada"}

        page.set("text", "Hello Pat, Ada here")
        page.submit("compose")
        page.wait_for(
            lambda p: "Hello Pat, Ada here" in p["elements"]["log"]["text"] and not p["elements"]["text"]["value"]
        )
        from_agent = [a for a in user_sees(stack, conversation_id) if a.get("text") == "Hello Pat, Ada here"]
        assert [a["from"]["id"] for a in from_agent] == ["agent:Ada"]
        say(stack, conversation_id, "is my order late?", "page-user", "Pat")
        page.wait_for(lambda p: "is my order late?" in p["elements"]["log"]["text"])

        page.click("complete")
        page.wait_for(lambda p: conversation_id in [h["conversationId"] for h in p["lists"]["ended"]])
        assert said_briefly(bot.statuses(conversation_id)[-1]) == {"state": "completed", "agentName": "Ada"}
        page.wait_for(lambda p: p["elements"]["text"]["disabled"] and p["elements"]["fail"]["disabled"])

        # Rejecting another one, with a reason.
        rejected = handed_off(stack, "page-user-2", "Quinn")
        page.wait_for(lambda p: rejected in [h["conversationId"] for h in p["lists"]["waiting"]])
        page.select(rejected)
        page.wait_for(
            lambda p: p["elements"]["fail"]["text"] == "Return to bot" and not p["elements"]["fail"]["disabled"]
        )
        page.set("fail-message", "everyone is busy")
        page.click("fail")
        page.wait_for(lambda p: p["elements"]["heading"]["text"] == "Quinnfailed")
        assert said_briefly(bot.statuses(rejected)[-1]) == {
            "state": "failed",
            "message": "everyone is busy",
            "agentName": "Ada",
        }
        assert bot.statuses(rejected)[-1]["from"] == {"id": "agent:Ada", "name": "Ada"}
        assert page.errors == []


# --- who may use the console: the per-run key, JSON writes, loopback, no CORS -----------------------------------
def raw(stack: Stack, method: str, path: str = "", **kwargs: Any) -> requests.Response:
    """The console's API without the page's key header (what anything else that reaches the port can send)."""
    return requests.request(method, f"{stack.url}agent/api/handoffs{path}", timeout=10, **kwargs)


def test_without_the_console_key_nothing_is_read_or_changed(stack: Stack) -> None:
    conversation_id = handed_off(stack, "keyless-target", "Kim")
    wrong = {"X-Console-Key": "guessed-" + stack.server.console_key[:-1]}
    for headers in ({}, wrong, {"X-Console-Key": ""}):
        for method, path, body in [
            ("GET", "", None),
            ("GET", f"/{conversation_id}", None),
            ("POST", f"/{conversation_id}/accept", {"agent": "Mallory"}),
            ("POST", f"/{conversation_id}/fail", {}),
            ("POST", f"/{conversation_id}/messages", {"text": "send me your password"}),
        ]:
            refused = raw(stack, method, path, json=body, headers=headers)
            assert "X-Console-Key" in error_of(refused, 403), (method, path, headers)
            assert "Kim" not in refused.text and conversation_id not in refused.text
    # The page itself needs the key in its address, and never shows it without.
    for params in ({}, {"key": "nope"}):
        page = requests.get(f"{stack.url}agent", params=params, timeout=10)
        assert page.status_code == 403 and "make run" in page.text and stack.server.console_key not in page.text
    assert handoff(stack, conversation_id)["state"] == "waiting"
    assert handoff_bot(stack).statuses(conversation_id) == []
    assert "send me your password" not in texts(user_sees(stack, conversation_id))


def test_writes_must_be_json(stack: Stack) -> None:
    conversation_id = handed_off(stack, "form-target")
    key = {"X-Console-Key": stack.server.console_key}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {**key, **({"Content-Type": content_type} if content_type else {})}
        refused = raw(stack, "POST", f"/{conversation_id}/accept", data=b'{"agent": "Mallory"}', headers=headers)
        assert "application/json" in error_of(refused, 415), content_type
    assert handoff(stack, conversation_id)["state"] == "waiting"
    assert handoff_bot(stack).statuses(conversation_id) == []


def test_the_console_sends_no_cors_headers_while_the_client_api_keeps_them(stack: Stack) -> None:
    origin = {"Origin": "http://evil.example"}
    asks = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-console-key, content-type"}
    preflight = raw(stack, "OPTIONS", "", headers={**origin, **asks})
    listed = agent(stack, "GET", headers=origin)  # even with the key, another origin's page may not read it
    page = requests.get(f"{stack.url}agent", params={"key": stack.server.console_key}, headers=origin, timeout=10)
    for response in (preflight, listed, page):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")], response.headers
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Referrer-Policy"] == "no-referrer"
    # Microsoft's client on another origin still works against the client API (Bearer auth).
    started = directline(stack, "POST", "/conversations", headers=origin)
    assert started.headers.get("Access-Control-Allow-Origin") == "http://evil.example"


def test_without_a_signing_key_the_console_sends_no_status() -> None:
    with running_stack(bot=HandoffBot(), handoff_signing_key=None) as unsigned:
        conversation_id = handed_off(unsigned, "unsigned-user")
        refused = agent(unsigned, "POST", f"/{conversation_id}/accept", json={"agent": "Ada"})
        assert "--handoff-signing-key" in error_of(refused, 503)
        assert handoff(unsigned, conversation_id)["state"] == "waiting"
        assert handoff_bot(unsigned).statuses(conversation_id) == []


def _outside_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address: str = probe.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


@pytest.mark.skipif(_outside_address() is None, reason="this machine has no non-loopback address")
def test_the_console_answers_loopback_peers_only() -> None:
    address = _outside_address()
    with running_stack(bot=HandoffBot(), host="0.0.0.0") as everywhere:
        key = {"X-Console-Key": everywhere.server.console_key}
        outside = f"http://{address}:{everywhere.server.port}/agent/api/handoffs"
        assert "loopback" in error_of(requests.get(outside, headers=key, timeout=10), 403)
        page_url = f"http://{address}:{everywhere.server.port}/agent"
        page = requests.get(page_url, params={"key": key["X-Console-Key"]}, timeout=10)
        assert page.status_code == 403 and key["X-Console-Key"] not in page.text
        assert agent(everywhere, "GET").status_code == 200  # the same call over loopback
