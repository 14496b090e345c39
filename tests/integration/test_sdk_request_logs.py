"""In Azure the Functions Python worker sets the root logger to INFO and forwards every record to the host.
The Azure SDKs' request logs would name users there (a state document's id is its key), so a user's turns,
against the emulators, must leave no user id in any record at INFO or above."""

from __future__ import annotations

import logging
import uuid

import pytest

from bootstrap import Composition
from tests.support.activities import activity, joined
from tests.support.app import send
from tests.support.connector import RecordingConnector

pytestmark = pytest.mark.emulators


async def test_a_users_turns_leave_no_user_id_in_the_log_at_info(
    app: Composition, connector: RecordingConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the root logger's level under the Functions Python worker
    user_id = f"canary{uuid.uuid4().hex}"
    conversation = f"c-{uuid.uuid4()}"
    url = connector.service_url
    update = joined(conversation, url)
    update["from"]["id"] = update["membersAdded"][1]["id"] = user_id
    await send(app, update)
    for text in ("Ada", "what?"):
        message = activity(conversation, url, text=text)
        message["from"]["id"] = user_id
        assert (await send(app, message)).status == 200
    assert connector.messages(conversation)[-1].startswith("Sorry, I didn't understand")  # the turns ran

    leaked = [r.name for r in caplog.records if r.levelno >= logging.INFO and user_id in r.getMessage()]
    assert leaked == []
