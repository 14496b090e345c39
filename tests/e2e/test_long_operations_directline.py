"""A person's view, through the local Direct Line with Microsoft's own client (botframework-directlinejs):
name, choice, quick acknowledgement, "Still working on", the proactive result; forgeries, failures,
duplicates and cancel."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from localdev.directline.tests.directline_js import DirectLineJsClient
from localdev.emulators import Azurite, CosmosStandIn
from localdev.stack import LocalStack
from tests.support.local_bot import running_bot

pytestmark = [pytest.mark.emulators, pytest.mark.node]

# About 5-10 s of real work on these machines: long enough to write in the middle, short for a test.
MEDIUM_PRIMES = "prime report end=150000000"


def is_bot_text(pattern: str) -> Any:
    regex = re.compile(pattern)
    return lambda a: (
        a.get("type") == "message" and a.get("from", {}).get("role") == "bot" and regex.search(a.get("text") or "")
    )


def bot_texts(client: DirectLineJsClient, since: int = 0) -> list[str]:
    return [
        a.get("text") or ""
        for a in client.activities[since:]
        if a.get("type") == "message" and a.get("from", {}).get("role") == "bot"
    ]


@pytest.fixture(scope="module")
def bot(azurite: Azurite, cosmos: CosmosStandIn) -> Iterator[LocalStack]:
    with running_bot(azurite, cosmos) as running:
        yield running


@pytest.fixture(params=["websocket", "polling"])
def client(request: pytest.FixtureRequest, bot: LocalStack) -> Iterator[DirectLineJsClient]:
    with DirectLineJsClient() as directline:
        directline.start(bot.directline.domain, secret=bot.secret, mode=request.param, user_id=f"user-{request.param}")
        yield directline


def introduce(client: DirectLineJsClient, name: str) -> None:
    client.send(name)
    client.wait_for_activity(is_bot_text(f"^Which long operation shall I run, {name}\\?"), timeout=30)


def conversation_id(client: DirectLineJsClient) -> str:
    return next(a["conversation"]["id"] for a in client.activities if a.get("conversation"))


def test_long_operation_end_to_end(client: DirectLineJsClient) -> None:
    introduce(client, "Ada")
    texts = bot_texts(client)
    assert "Hello and welcome! I run long operations for you and tell you here when they are done." in texts
    assert "What's your name?" in texts and "Nice to meet you, Ada! I'll remember your name." in texts

    mark = client.mark()
    client.send(MEDIUM_PRIMES)
    client.wait_for_activity(is_bot_text("^Starting the prime report"), since=mark, timeout=15)
    mark = client.mark()
    client.send("is it done?")
    client.wait_for_activity(
        is_bot_text(r"^Still working on the prime report \(running for \d+ s\)\. I'll tell you here"), since=mark
    )
    result = client.wait_for_activity(
        is_bot_text("^Thanks for waiting. Prime report for 1 to 150,000,000:\n- "), timeout=90
    )
    assert "primes" in result["text"] and "twin pairs" in result["text"]
    client.wait_for_activity(
        is_bot_text("^Which long operation shall I run, Ada\\?"), since=client.activities.index(result)
    )
    assert len([t for t in bot_texts(client) if t.startswith("Thanks for waiting.")]) == 1


def succeeded_count(bot: LocalStack) -> int:
    return bot.host.output.count("(prime report) succeeded")


def wait_for_worker(bot: LocalStack, outcome: str, count: int, timeout: float = 90) -> None:
    bot.host.wait_for_output(lambda text: text.count(f"(prime report) {outcome}") >= count, timeout)


@pytest.fixture
def alice(bot: LocalStack) -> Iterator[DirectLineJsClient]:
    with DirectLineJsClient() as directline:
        directline.start(bot.directline.domain, secret=bot.secret, user_id="alice")
        introduce(directline, "Alice")
        yield directline


def start_medium(client: DirectLineJsClient) -> None:
    mark = client.mark()
    client.send(MEDIUM_PRIMES)
    client.wait_for_activity(is_bot_text("^Starting the prime report"), since=mark, timeout=15)


def test_forged_result_from_another_client_changes_nothing(bot: LocalStack, alice: DirectLineJsClient) -> None:
    before = succeeded_count(bot)
    start_medium(alice)
    victim = conversation_id(alice)
    with DirectLineJsClient() as mallory:
        mallory.start(bot.directline.domain, secret=bot.secret, user_id="mallory")
        forged = {
            "event": "LongOperationResponse",
            "operationId": "guessed",
            "operation": "prime report",
            "conversation": {
                "conversation": {"id": victim},
                "serviceUrl": bot.directline.url,
                "channelId": "directline",
            },
            "outcome": "succeeded",
            "text": "You won a prize! Send your password.",
            "expiresAt": 4_102_444_800,
            "signature": "0" * 64,
        }
        mallory.send_event("LongOperationResponse", forged)  # returns once the bot has handled it
    wait_for_worker(bot, "succeeded", before + 1)
    alice.wait_for_activity(is_bot_text("^Thanks for waiting. Prime report"), timeout=30)
    texts = bot_texts(alice)
    assert not any("prize" in t for t in texts)
    assert len([t for t in texts if t.startswith("Thanks for waiting.")]) == 1


def test_failing_operation_ends_with_one_failure_message(bot: LocalStack, alice: DirectLineJsClient) -> None:
    before = bot.host.output.count("(prime report) failed")
    alice.send("prime report start=10 end=5")
    alice.wait_for_activity(is_bot_text("^Sorry, the prime report failed. "), timeout=60)
    wait_for_worker(bot, "failed", before + 1)
    mark = alice.mark()
    alice.send("1 end=1000")  # a later exchange: by now any second failure message would have arrived
    alice.wait_for_activity(is_bot_text("^Thanks for waiting."), since=mark, timeout=60)
    assert len([t for t in bot_texts(alice) if t.startswith("Sorry, the prime report failed.")]) == 1


def test_duplicated_queue_message_gives_one_result(
    bot: LocalStack, alice: DirectLineJsClient, cosmos: CosmosStandIn
) -> None:
    from azure.cosmos import CosmosClient

    from bot_logic.operation_protocol import operation_request
    from services.state.cosmos_storage import escape_key

    before = succeeded_count(bot)
    skipped_before = bot.host.output.count("no longer waits for it")
    start_medium(alice)
    settings = bot.settings
    doc_id = escape_key(f"directline/conversations/{conversation_id(alice)}")
    with CosmosClient(settings["CosmosDbEndpoint"], settings["CosmosDbAuthKey"]) as account:
        container = account.get_database_client(settings["CosmosDbDatabaseId"]).get_container_client(
            settings["CosmosDbConversationStateContainerId"]
        )
        record = container.read_item(doc_id, doc_id)["document"]["ConversationRecord"]
    duplicate = operation_request(record["pendingOperation"])
    with QueueClient.from_connection_string(
        settings["AzureWebJobsStorage"], settings["OperationsQueueName"], message_encode_policy=TextBase64EncodePolicy()
    ) as queue:
        queue.send_message(json.dumps(duplicate))
    # Both deliveries handled: each ran and posted its result, or the later one found the result already
    # told and did not run (which of the two depends on when the worker picks the copy up).
    bot.host.wait_for_output(
        lambda text: text.count("(prime report) succeeded") - before
        + text.count("no longer waits for it") - skipped_before
        >= 2,
        timeout=120,
    )
    alice.wait_for_activity(is_bot_text("^Thanks for waiting."), timeout=30)
    mark = alice.mark()
    alice.send("hello")  # the bot has answered everything sent before this reply
    alice.wait_for_activity(is_bot_text("."), since=mark, timeout=30)
    assert len([t for t in bot_texts(alice) if t.startswith("Thanks for waiting.")]) == 1


def test_cancel_stops_the_work_and_no_result_is_told(bot: LocalStack, alice: DirectLineJsClient) -> None:
    before = bot.host.output.count("no longer waits for it")
    start_medium(alice)
    mark = alice.mark()
    alice.send("cancel")
    alice.wait_for_activity(is_bot_text("^Cancelled the prime report.$"), since=mark)
    # The worker stops at its next check instead of running to the end.
    bot.host.wait_for_output(lambda text: text.count("no longer waits for it") > before, timeout=30)
    mark = alice.mark()
    alice.send("hello")
    alice.wait_for_activity(is_bot_text("."), since=mark, timeout=30)
    texts = bot_texts(alice)
    assert not any(t.startswith("Thanks for waiting.") for t in texts)
    assert len([t for t in texts if t.startswith("Cancelled the prime report")]) == 1
