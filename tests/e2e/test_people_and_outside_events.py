"""Issue 11 as people see it, through the local Functions host, the local Direct Line and Microsoft's
own Direct Line client: a handoff to a person in the agent console and back; notifications sent by
an outside system with `curl`'s request and with a queue message; the transcript of it all."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from bot_logic.handoff import COMPLETED_TEXT, STILL_WAITING_TEXT, signed_status, status_payload
from localdev.directline.tests.directline_js import DirectLineJsClient
from localdev.emulators import Azurite, CosmosStandIn
from localdev.processes import wait_until
from localdev.stack import LocalStack
from tests.e2e.test_long_operations_directline import bot_texts, conversation_id, introduce, is_bot_text
from tests.support.local_bot import running_bot

pytestmark = [pytest.mark.emulators, pytest.mark.node]


@pytest.fixture(scope="module")
def bot(azurite: Azurite, cosmos: CosmosStandIn) -> Iterator[LocalStack]:
    with running_bot(azurite, cosmos) as running:
        yield running


@pytest.fixture(scope="module")
def impatient_bot(azurite: Azurite, cosmos: CosmosStandIn) -> Iterator[LocalStack]:
    with running_bot(azurite, cosmos, HandoffTimeoutSeconds="2", SweepSchedule="*/1 * * * * *") as running:
        yield running


def chat(stack: LocalStack, user_id: str) -> DirectLineJsClient:
    return DirectLineJsClient().start(stack.directline.domain, secret=stack.secret, user_id=user_id)


def agent_api(stack: LocalStack, method: str, path: str = "", body: dict[str, Any] | None = None) -> Any:
    """The agent console's API as its page calls it (with the run's console key)."""
    response = requests.request(
        method,
        f"{stack.directline.url}agent/api/handoffs{path}",
        json=body if method == "GET" else (body or {}),
        headers={"X-Console-Key": stack.directline.console_key},
        timeout=30,
    )
    assert response.ok, (response.status_code, response.text)
    return response.json()


def handoff_of(stack: LocalStack, conversation: str) -> dict[str, Any] | None:
    return next((h for h in agent_api(stack, "GET")["handoffs"] if h["conversationId"] == conversation), None)


def function_url(stack: LocalStack, route: str) -> str:
    return f"{stack.functions_url}/api/{route}"


def key(stack: LocalStack) -> dict[str, str]:
    return {"x-functions-key": stack.host.function_key}


def test_a_person_takes_over_in_the_agent_console_and_hands_back(bot: LocalStack) -> None:
    with chat(bot, "handoff-user") as user:
        introduce(user, "Ada")
        conversation = conversation_id(user)
        mark = user.mark()
        user.send("talk to someone")
        user.wait_for_activity(is_bot_text("^I'm asking a person to take over"), since=mark)

        handoff = wait_until(lambda: handoff_of(bot, conversation), timeout=15, message="handoff listed")
        assert handoff["state"] == "waiting" and handoff["context"]["userName"] == "Ada"
        transcript = [a.get("text") for a in handoff["transcript"] if a.get("type") == "message"]
        assert "Ada" in transcript and "Nice to meet you, Ada! I'll remember your name." in transcript
        assert transcript[-1] == "talk to someone"

        mark = user.mark()
        user.send("hello?")
        user.wait_for_activity(is_bot_text("^Still waiting for a person to join"), since=mark)

        mark = user.mark()
        agent_api(bot, "POST", f"/{conversation}/accept", {"agent": "Sam"})
        user.wait_for_activity(is_bot_text("^Sam has joined the conversation"), since=mark)
        agent_api(bot, "POST", f"/{conversation}/messages", {"text": "Hi Ada, Sam here. How can I help?"})
        from_sam = user.wait_for_activity(is_bot_text("^Hi Ada, Sam here"), since=mark)
        assert from_sam["from"]["name"] == "Sam"

        user.send("my report is late")  # for the person, not the bot
        wait_until(
            lambda: any(a.get("text") == "my report is late" for a in handoff_of(bot, conversation)["activities"]),
            timeout=15,
            message="the user's message in the console",
        )
        mark_complete = user.mark()
        agent_api(bot, "POST", f"/{conversation}/complete")
        user.wait_for_activity(is_bot_text("^The person has left the conversation"), since=mark_complete)
        user.wait_for_activity(is_bot_text("^Which long operation shall I run, Ada\\?"), since=mark_complete)
        # While the person had the conversation, the bot said nothing to the user's own messages.
        between = bot_texts(user, mark)
        assert between[: between.index("Hi Ada, Sam here. How can I help?") + 1] == [
            "Sam has joined the conversation: you're now talking to a person.",
            "Hi Ada, Sam here. How can I help?",
        ]
        assert handoff_of(bot, conversation)["state"] == "completed"

        mark = user.mark()
        user.send("1 end=1000")  # the bot is back: its menu works again
        user.wait_for_activity(is_bot_text("^Starting the"), since=mark)


def test_three_misunderstandings_offer_a_person_and_nobody_accepting_fails_back(impatient_bot: LocalStack) -> None:
    with chat(impatient_bot, "confused-user") as user:
        introduce(user, "Cy")
        conversation = conversation_id(user)
        mark = user.mark()
        for word in ("banana", "purple", "seventeen"):
            user.send(word)
        offer = "^Sorry, I keep misunderstanding you. Shall I bring in a person"
        user.wait_for_activity(is_bot_text(offer), since=mark)
        said = bot_texts(user, mark)
        assert [text.split("“")[0] for text in said[:2]] == ["Sorry, I didn't understand "] * 2
        assert not any(text.startswith("I'm asking a person") for text in said)  # offered, not imposed
        user.send("yes")
        user.wait_for_activity(is_bot_text("^I'm asking a person to take over"), since=mark)
        user.wait_for_activity(is_bot_text("^Sorry, no person was available within 2 s"), since=mark, timeout=30)
        wait_until(lambda: handoff_of(impatient_bot, conversation)["state"] == "withdrawn", timeout=15)
        mark = user.mark()
        user.send("hi again")
        user.wait_for_activity(is_bot_text("^Which long operation shall I run, Cy\\?"), since=mark)


def test_notifications_from_an_outside_system_over_http_and_the_queue(bot: LocalStack) -> None:
    notify = function_url(bot, "notify")
    with chat(bot, "pizza-fan") as user:
        introduce(user, "Pia")
        conversation = conversation_id(user)

        assert requests.post(notify, json={"userId": "pizza-fan", "text": "x"}, timeout=30).status_code == 401
        unknown = requests.post(notify, json={"userId": "stranger", "text": "x"}, headers=key(bot), timeout=30)
        assert unknown.status_code == 404 and "stranger" in unknown.text
        malformed = requests.post(notify, json={"userId": "pizza-fan"}, headers=key(bot), timeout=30)
        assert malformed.status_code == 400 and "text" in malformed.text

        mark = user.mark()
        accepted = requests.post(
            notify,
            json={"userId": "pizza-fan", "text": "Your pizza is ready to pick up."},
            headers=key(bot),
            timeout=30,
        )
        assert accepted.status_code == 202 and accepted.json()["id"]
        user.wait_for_activity(is_bot_text("^Your pizza is ready to pick up.$"), since=mark, timeout=30)

        user.send("notify me about Pizza")
        user.wait_for_activity(is_bot_text("^OK: I'll tell you here about “pizza”"), since=mark)
        by_topic = requests.post(notify, json={"topic": "pizza", "text": "Two for one until 8 pm."}, headers=key(bot))
        assert by_topic.status_code == 202 and by_topic.json()["subscribers"] == 1
        user.wait_for_activity(is_bot_text("^Two for one until 8 pm.$"), since=mark, timeout=30)

        def events_queue() -> QueueClient:
            return QueueClient.from_connection_string(
                bot.settings["AzureWebJobsStorage"],
                bot.settings["ExternalEventsQueueName"],
                message_encode_policy=TextBase64EncodePolicy(),
            )

        with events_queue() as queue:
            queue.send_message(json.dumps({"conversationId": conversation, "text": "The build is green."}))
        user.wait_for_activity(is_bot_text("^The build is green.$"), since=mark, timeout=30)

        user.send("stop notifications")
        user.wait_for_activity(
            is_bot_text(
                "^Done: I won't send you notifications any more \\(topics: pizza\\). "
                "Say 'start notifications' to get direct notices again.$"
            ),
            since=mark,
        )
        after = requests.post(notify, json={"topic": "pizza", "text": "Anyone?"}, headers=key(bot), timeout=30)
        assert after.status_code == 202 and after.json()["subscribers"] == 0
        direct = requests.post(notify, json={"userId": "pizza-fan", "text": "Still there?"}, headers=key(bot))
        assert direct.status_code == 200
        assert direct.json()["status"] == "not_delivered" and direct.json()["reason"] == "opted_out"
        with events_queue() as queue:  # straight onto the queue: not delivered either
            queue.send_message(json.dumps({"conversationId": conversation, "text": "While you were away."}))
            wait_until(
                lambda: queue.get_queue_properties().approximate_message_count == 0,
                timeout=30,
                message="the queue message handled",
            )

        user.send("start notifications")
        user.wait_for_activity(is_bot_text("^Done: notices sent to you directly reach you here again."), since=mark)
        back = requests.post(notify, json={"userId": "pizza-fan", "text": "Back on."}, headers=key(bot), timeout=30)
        assert back.status_code == 202
        user.wait_for_activity(is_bot_text("^Back on.$"), since=mark, timeout=30)
        texts = bot_texts(user, mark)
        assert texts.count("Your pizza is ready to pick up.") == texts.count("Two for one until 8 pm.") == 1
        # Had it been delivered, it would have reached the client before "Back on." (sent after it was handled).
        assert "While you were away." not in texts and "Still there?" not in texts and "Anyone?" not in texts


def test_the_transcript_holds_the_conversation_in_order_for_the_key_holder(bot: LocalStack) -> None:
    with chat(bot, "transcript-user") as user:
        introduce(user, "Tess")
        user.send("1 end=1000")
        result = user.wait_for_activity(is_bot_text("^Thanks for waiting. "), timeout=60)
        user.wait_for_activity(
            is_bot_text("^Which long operation shall I run, Tess\\?"), since=user.activities.index(result)
        )
        conversation = conversation_id(user)
        seen = [(a["from"].get("role"), a.get("text")) for a in user.activities if a.get("type") == "message"]

    url = function_url(bot, f"transcripts/{conversation}")
    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(function_url(bot, "transcripts/no-such-conversation"), headers=key(bot)).status_code == 404

    def recorded() -> list[tuple[str | None, str | None]] | None:
        response = requests.get(url, headers=key(bot), timeout=30)
        if response.status_code != 200:
            return None
        messages = [(a["from"].get("role"), a.get("text")) for a in response.json() if a.get("type") == "message"]
        return messages if len(messages) >= len(seen) else None

    messages = wait_until(recorded, timeout=30, message="the whole conversation in the transcript")
    assert [text for role, text in messages if role == "bot"] == [text for role, text in seen if role == "bot"]
    assert [text for role, text in messages if role != "bot"] == ["Tess", "1 end=1000"]
    response = requests.get(url, headers=key(bot), timeout=30)
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Content-Disposition"].endswith('.transcript"')


# --- a user (or anything that reaches the bot) trying to play the agent --------------------------------------
REFUSED_IN_LOG = "refused handoff.status in conversation {conversation}: {reason}"


def forge(user: DirectLineJsClient, user_id: str, value: Any) -> None:
    """What the attacker posted: a handoff.status event in their own conversation, `from` naming an agent.
    postActivity answers after the bot's turn, so anything the bot said to it is stored by then."""
    impostor = {"id": user_id, "name": "Support Manager"}
    user.send_activity({"type": "event", "name": "handoff.status", "value": value, "from": impostor})


def signed_statuses(stack: LocalStack, conversation: str) -> list[dict[str, str]]:
    """The signed values of the console's statuses in a handoff (as someone who captured them would replay them)."""
    handoff = handoff_of(stack, conversation)
    assert handoff is not None
    return [
        a["value"]
        for a in handoff["activities"]
        if a.get("name") == "handoff.status" and a.get("from", {}).get("id", "").startswith("agent:")
    ]


def first_lines(texts: list[str]) -> list[str]:
    return [text.split("\n")[0] for text in texts]


def wait_for_refusal(stack: LocalStack, conversation: str, reason: str, times: int = 1) -> None:
    """Until the host has logged that refusal `times` times (the bot's WARNING names the reason and the id only)."""
    line = REFUSED_IN_LOG.format(conversation=conversation, reason=reason)
    stack.host.wait_for_output(lambda text: text.count(line) >= times, timeout=15)


def test_a_user_cannot_play_the_agent(bot: LocalStack) -> None:
    with chat(bot, "impostor-user") as user, chat(bot, "bystander-user") as other:
        introduce(user, "Eve")
        conversation = conversation_id(user)
        user.send("agent")
        user.wait_for_activity(is_bot_text("^I'm asking a person to take over"))
        first = wait_until(lambda: handoff_of(bot, conversation), timeout=15, message="handoff listed")
        assert first["handoffId"]

        # Waiting: an unsigned accept, one signed with a wrong key, one signed for another conversation.
        mark = user.mark()
        forge(user, "impostor-user", {"state": "accepted"})
        wait_for_refusal(bot, conversation, "it is not signed")
        now = time.time()
        wrong_key = signed_status(
            status_payload(conversation, first["handoffId"], "accepted", now, agent_name="Support Manager"), "k" * 40
        )
        forge(user, "impostor-user", wrong_key)
        wait_for_refusal(bot, conversation, "its signature does not verify")
        introduce(other, "Bo")
        other.send("agent")
        other.wait_for_activity(is_bot_text("^I'm asking a person to take over"))
        other_conversation = conversation_id(other)
        theirs = wait_until(lambda: handoff_of(bot, other_conversation), timeout=15, message="the other handoff")
        agent_api(bot, "POST", f"/{other_conversation}/accept", {"agent": "Sam"})
        # A genuine status, captured from another conversation.
        forge(user, "impostor-user", signed_statuses(bot, other_conversation)[-1])
        wait_for_refusal(bot, conversation, "it was signed for another conversation")
        assert theirs["handoffId"] != first["handoffId"]
        user.send("hello?")
        user.wait_for_activity(is_bot_text("^Still waiting for a person to join"), since=mark)
        assert bot_texts(user, mark) == [STILL_WAITING_TEXT]  # nothing said to any forgery, and still waiting
        assert handoff_of(bot, conversation)["state"] == "waiting"

        # The genuine accept and complete still work; keep them to replay later.
        agent_api(bot, "POST", f"/{conversation}/accept", {"agent": "Sam"})
        user.wait_for_activity(is_bot_text("^Sam has joined the conversation"), since=mark)
        agent_api(bot, "POST", f"/{conversation}/complete")
        user.wait_for_activity(is_bot_text("^The person has left the conversation"), since=mark)
        earlier_accept, earlier_complete = signed_statuses(bot, conversation)

        # A second handoff: the first one's statuses, replayed, are worthless.
        user.send("agent")
        user.wait_for_activity(is_bot_text("^I'm asking a person to take over"), since=mark)
        second = wait_until(
            lambda: (h := handoff_of(bot, conversation)) and h["state"] == "waiting" and h, timeout=15, message="again"
        )
        assert second["handoffId"] != first["handoffId"]
        mark = user.mark()
        forge(user, "impostor-user", earlier_accept)
        wait_for_refusal(bot, conversation, "it was signed for another handoff")
        agent_api(bot, "POST", f"/{conversation}/accept", {"agent": "Sam"})
        user.wait_for_activity(is_bot_text("^Sam has joined the conversation"), since=mark)

        # An agent holds the chat: a forged completed and the replayed earlier one end nothing.
        forge(user, "impostor-user", {"state": "completed"})
        wait_for_refusal(bot, conversation, "it is not signed", times=2)
        forge(user, "impostor-user", earlier_complete)
        wait_for_refusal(bot, conversation, "it was signed for another handoff", times=2)
        assert handoff_of(bot, conversation)["state"] == "accepted"
        agent_api(bot, "POST", f"/{conversation}/complete")  # the genuine one: accepted only until now
        user.wait_for_activity(is_bot_text("^Which long operation shall I run, Eve\\?"), since=mark)
        assert first_lines(bot_texts(user, mark)) == [
            "Sam has joined the conversation: you're now talking to a person.",
            COMPLETED_TEXT,
            "Which long operation shall I run, Eve? Tap one, or say 'help' to see what each does.",
        ]
        assert "Support Manager" not in bot.host.output  # the refusals name the reason, not the user's text


def test_a_status_posted_straight_to_the_bot_for_another_conversation_changes_nothing(bot: LocalStack) -> None:
    """Locally the messaging endpoint takes unauthenticated posts (MicrosoftAppId is empty): the signature
    is what stops a status naming someone else's conversation."""
    with chat(bot, "victim-user") as victim:
        introduce(victim, "Vi")
        conversation = conversation_id(victim)
        victim.send("agent")
        victim.wait_for_activity(is_bot_text("^I'm asking a person to take over"))
        wait_until(lambda: handoff_of(bot, conversation), timeout=15, message="handoff listed")
        agent_api(bot, "POST", f"/{conversation}/accept", {"agent": "Sam"})
        victim.wait_for_activity(is_bot_text("^Sam has joined the conversation"))
        mark = victim.mark()
        forged = {
            "type": "event",
            "name": "handoff.status",
            "value": {"state": "completed"},
            "id": "forged-1",
            "channelId": "directline",
            "serviceUrl": bot.directline.url,
            "conversation": {"id": conversation},
            "from": {"id": "agent:Sam", "name": "Sam"},
            "recipient": {"id": "bot"},
        }
        answer = requests.post(bot.messages_url, json=forged, timeout=30)
        assert answer.status_code < 300, answer.text
        wait_for_refusal(bot, conversation, "it is not signed")
        assert handoff_of(bot, conversation)["state"] == "accepted"
        agent_api(bot, "POST", f"/{conversation}/complete")
        victim.wait_for_activity(is_bot_text("^Which long operation shall I run, Vi\\?"), since=mark)
        assert first_lines(bot_texts(victim, mark)) == [
            COMPLETED_TEXT,
            "Which long operation shall I run, Vi? Tap one, or say 'help' to see what each does.",
        ]
