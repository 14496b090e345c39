"""Expiry as a person sees it: an idle conversation gets the sweeper's notice, and the next message
starts over with "Welcome back!" while the user's name is still known."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localdev.directline.tests.directline_js import DirectLineJsClient
from localdev.emulators import Azurite, CosmosStandIn
from localdev.stack import LocalStack
from tests.e2e.test_long_operations_directline import bot_texts, introduce, is_bot_text
from tests.support.local_bot import running_bot

pytestmark = [pytest.mark.emulators, pytest.mark.node]


@pytest.fixture(scope="module")
def quick_expiry_bot(azurite: Azurite, cosmos: CosmosStandIn) -> Iterator[LocalStack]:
    with running_bot(
        azurite,
        cosmos,
        ExpireAfterSeconds="2",
        SweepSchedule="*/1 * * * * *",
        ExpiryNoticeText="Closed after {duration} without activity. Send anything to start again.",
    ) as running:
        yield running


def test_idle_conversation_is_closed_with_a_notice_and_restarts_with_welcome_back(
    quick_expiry_bot: LocalStack,
) -> None:
    with DirectLineJsClient() as client:
        client.start(quick_expiry_bot.directline.domain, secret=quick_expiry_bot.secret, user_id="idle-user")
        introduce(client, "Grace")
        mark = client.mark()
        notice = client.wait_for_activity(is_bot_text("^Closed after 2 s without activity."), since=mark, timeout=30)
        assert len([t for t in bot_texts(client) if t.startswith("Closed after")]) == 1

        mark = client.mark()
        client.send("hello again")
        client.wait_for_activity(is_bot_text("^Welcome back! Let's start over from the beginning.$"), since=mark)
        client.wait_for_activity(is_bot_text("^Which long operation shall I run, Grace\\?"), since=mark)
        assert client.activities.index(notice) < mark
