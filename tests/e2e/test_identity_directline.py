"""Who a user is, end to end: pages get their Direct Line tokens from the app's /api/directline/token,
and Microsoft's Direct Line client chats through the local Direct Line with them. A second user who
writes under the first one's id is re-attributed to their own id by the channel, so they neither
learn the first user's name nor take over where `/api/notify` reaches the first user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from localdev.directline.tests.directline_js import DirectLineJsClient
from localdev.emulators import Azurite, CosmosStandIn
from localdev.stack import LocalStack
from tests.e2e.test_long_operations_directline import bot_texts, introduce, is_bot_text
from tests.support.local_bot import running_bot

pytestmark = [pytest.mark.emulators, pytest.mark.node]


@pytest.fixture(scope="module")
def bot(azurite: Azurite, cosmos: CosmosStandIn) -> Iterator[LocalStack]:
    with running_bot(azurite, cosmos) as running:
        yield running


def page_token(stack: LocalStack, returning: dict[str, str] | None = None) -> dict[str, Any]:
    """What the Web Chat page does: ask the app for a token (with its stored user, if any)."""
    answer = requests.post(f"{stack.functions_url}/api/directline/token", json=returning or {}, timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def notify(stack: LocalStack, user_id: str, text: str) -> None:
    headers = {"x-functions-key": stack.host.function_key}
    answer = requests.post(
        f"{stack.functions_url}/api/notify", json={"userId": user_id, "text": text}, headers=headers, timeout=30
    )
    assert answer.status_code == 202, answer.text


def test_a_returning_user_is_known_by_name_in_a_new_conversation(bot: LocalStack) -> None:
    first = page_token(bot)
    with DirectLineJsClient().start(bot.directline.domain, token=first["token"], user_id=first["userId"]) as visit:
        introduce(visit, "Ada")
    stored = {"userId": first["userId"], "userProof": first["userProof"]}
    again = page_token(bot, stored)
    assert again["userId"] == first["userId"] and again["conversationId"] != first["conversationId"]
    with DirectLineJsClient().start(bot.directline.domain, token=again["token"], user_id=again["userId"]) as visit:
        visit.wait_for_activity(is_bot_text("^Welcome back, Ada!"), timeout=30)


def test_writing_under_another_users_id_is_re_attributed_and_notifications_still_reach_that_user(
    bot: LocalStack,
) -> None:
    victim_token, attacker_token = page_token(bot), page_token(bot)
    victim_id, attacker_id = victim_token["userId"], attacker_token["userId"]
    domain = bot.directline.domain
    with DirectLineJsClient().start(domain, token=victim_token["token"], user_id=victim_id) as victim:
        introduce(victim, "Vera")
        # The attacker's client claims the victim's id and name on everything it posts, and writes last.
        with DirectLineJsClient().start(
            domain, token=attacker_token["token"], user_id=victim_id, user_name="Vera"
        ) as attacker:
            attacker.wait_for_activity(is_bot_text("^What's your name\\?"), timeout=30)
            mark = attacker.mark()
            attacker.send_activity({"type": "message", "text": "hi", "from": {"id": victim_id, "name": "Vera"}})
            attacker.wait_for_activity(is_bot_text("^Hello to you too! What name shall I call you\\?"), since=mark)
            own = [a for a in attacker.activities if a.get("type") == "message" and a["from"].get("role") == "user"]
            assert {a["from"]["id"] for a in own} == {attacker_id}
            assert not any("Vera" in text for text in bot_texts(attacker)), bot_texts(attacker)

            mark = victim.mark()
            notify(bot, victim_id, "Your pizza is ready, Vera.")
            victim.wait_for_activity(is_bot_text("^Your pizza is ready, Vera.$"), since=mark, timeout=30)
            notify(bot, attacker_id, "A note for the second user.")
            attacker.wait_for_activity(is_bot_text("^A note for the second user.$"), timeout=30)
            assert "Your pizza is ready, Vera." not in bot_texts(attacker)
