"""Privacy in logs: a whole conversation through the local stack, with Microsoft's Direct Line client
(name, operation, misunderstanding, bad parameter, notifications by topic and by user id, opt-out,
handoff to a person and back, a transcript read), and not one user id, name or piece of user text
in the app's log at INFO or above (the local host prints exactly those levels)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from localdev.emulators import Azurite, CosmosStandIn
from localdev.processes import wait_until
from localdev.stack import LocalStack
from tests.e2e.test_long_operations_directline import conversation_id, introduce, is_bot_text
from tests.e2e.test_people_and_outside_events import agent_api, chat, function_url, handoff_of, key
from tests.support.local_bot import running_bot

pytestmark = [pytest.mark.emulators, pytest.mark.node]

USER_ID = "dl_privacycanary7f3a9c"
NAME = "Zephyrinecanary"
TOPIC = "quasarcanarytopic"
SECRET_TEXT = "canarytext-lemonmeringue"
NOTICE = "canarynotice-dumpling"


@pytest.fixture(scope="module")
def bot(azurite: Azurite, cosmos: CosmosStandIn) -> Iterator[LocalStack]:
    with running_bot(azurite, cosmos) as running:
        yield running


def test_no_user_id_name_or_text_reaches_the_apps_log(bot: LocalStack) -> None:
    with chat(bot, USER_ID) as user:
        introduce(user, NAME)
        conversation = conversation_id(user)
        for text, reply in (
            (f"please {SECRET_TEXT}", "^Sorry, I didn't understand"),
            (f"1 end={SECRET_TEXT}", "^I can't run the prime report like that"),
            (f"notify me about {TOPIC}", "^OK: I'll tell you here about"),
            ("1 end=1000", "^Thanks for waiting."),
        ):
            mark = user.mark()
            user.send(text)
            user.wait_for_activity(is_bot_text(reply), since=mark, timeout=60)

        notify = function_url(bot, "notify")
        for target in ({"topic": TOPIC}, {"userId": USER_ID}, {"conversationId": conversation}):
            mark = user.mark()
            answer = requests.post(notify, json={**target, "text": NOTICE}, headers=key(bot), timeout=30)
            assert answer.status_code == 202, answer.text
            user.wait_for_activity(is_bot_text(NOTICE), since=mark, timeout=60)
        refused = requests.post(notify, json={"userId": USER_ID, "text": NOTICE, "viaTopic": TOPIC}, headers=key(bot))
        assert refused.status_code == 400

        mark = user.mark()
        user.send("talk to a person")
        user.wait_for_activity(is_bot_text("^I'm asking a person to take over"), since=mark)
        wait_until(lambda: handoff_of(bot, conversation), timeout=15, message="handoff listed")
        agent_api(bot, "POST", f"/{conversation}/accept", {"agent": "Sam"})
        user.wait_for_activity(is_bot_text("^Sam has joined"), since=mark)
        user.send(f"for the person: {SECRET_TEXT}")
        agent_api(bot, "POST", f"/{conversation}/complete")
        user.wait_for_activity(is_bot_text("^The person has left"), since=mark)

        mark = user.mark()
        user.send("stop notifications")
        user.wait_for_activity(is_bot_text("^Done: I won't send you notifications"), since=mark)
        opted_out = requests.post(notify, json={"userId": USER_ID, "text": NOTICE}, headers=key(bot), timeout=30)
        assert opted_out.ok

    transcript = requests.get(function_url(bot, f"transcripts/{conversation}"), headers=key(bot), timeout=30)
    assert transcript.ok and SECRET_TEXT in transcript.text  # recorded where it belongs: the transcript

    log = bot.host.output
    assert "Executed 'Functions.notify'" in log and "Executed 'Functions.messages'" in log  # the log was read
    leaked = [canary for canary in (USER_ID, NAME, TOPIC, SECRET_TEXT, NOTICE) if canary in log]
    lines = [line for line in log.splitlines() if any(canary in line for canary in leaked)]
    assert not leaked, "\n".join(lines[:20])
