"""The bot's side of a long operation, through the messages handler: the queue message after the
commit, progress and results resumed in the user's conversation, cancel, timeout, forgeries."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import TextBase64DecodePolicy
from azure.storage.queue.aio import QueueClient

from bootstrap import Composition
from bot_logic.operation_protocol import (
    PROGRESS_EVENT,
    RESULT_EVENT,
    WORKER_ID,
    progress_payload,
    result_payload,
    sign,
)
from localdev.emulators import Azurite, CosmosStandIn
from services.state.cosmos_storage import escape_key
from tests.support.activities import activity, joined
from tests.support.app import composed_app, open_named_conversation, send
from tests.support.clock import FakeClock
from tests.support.connector import RecordingConnector

pytestmark = pytest.mark.emulators


async def queued_requests(app: Composition) -> list[dict[str, Any]]:
    settings = app.settings
    async with QueueClient.from_connection_string(
        settings.storage_connection_string,
        settings.operations_queue_name,
        message_decode_policy=TextBase64DecodePolicy(),
    ) as queue:
        try:
            messages = await queue.peek_messages(max_messages=32)
        except ResourceNotFoundError:  # the queue is created with the first message
            return []
        return [json.loads(m.content) for m in messages]


async def start_operation(app: Composition, connector: RecordingConnector) -> tuple[str, dict[str, Any]]:
    conversation = await open_named_conversation(app, connector.service_url, "Alan")
    assert await queued_requests(app) == []  # nothing queued before the choice
    await send(app, activity(conversation, connector.service_url, text="prime report"))
    [request] = [r for r in await queued_requests(app) if r["conversation"]["conversation"]["id"] == conversation]
    assert connector.messages(conversation)[-1].startswith("Starting the prime report.")
    return conversation, request


def worker_event(connector: RecordingConnector, name: str, value: Any, sender: str = WORKER_ID) -> dict[str, Any]:
    return {
        "type": "event",
        "id": str(uuid.uuid4()),
        "name": name,
        "value": value,
        "channelId": "directline",
        "serviceUrl": connector.service_url,
        "conversation": {"id": f"worker-{uuid.uuid4()}"},
        "from": {"id": sender, "role": "user"},
        "recipient": {"id": "bot", "role": "bot"},
    }


def signed_result(app: Composition, request: dict[str, Any], outcome: str, text: str) -> dict[str, Any]:
    return sign(result_payload(request, outcome, text), app.settings.operation_signing_key)


async def conversation_doc(app: Composition, conversation: str) -> dict[str, Any]:
    container = await app.cosmos.conversation_container()
    doc_id = escape_key(f"directline/conversations/{conversation}")
    return await container.read_item(doc_id, doc_id)


async def activities_after_result(
    app: Composition, connector: RecordingConnector, request: dict[str, Any], text: str
) -> list[dict[str, Any]]:
    """What the bot sends on a succeeded result for the request: nothing, where the result is stale."""
    before = len(connector.activities)
    await send(app, worker_event(connector, RESULT_EVENT, signed_result(app, request, "succeeded", text)))
    return connector.activities[before:]


async def test_result_resumes_the_dialog_once_with_thanks_and_the_menu(
    app: Composition, connector: RecordingConnector, clock: FakeClock
) -> None:
    conversation, request = await start_operation(app, connector)
    clock.now += 20  # progress is told now and then, never right after the start
    await send(app, activity(conversation, connector.service_url, text="done?"))
    assert connector.messages(conversation)[-1].startswith("Still working on the prime report (running for")
    assert any(a["type"] == "typing" for a in connector.activities if a["_conversation"] == conversation)

    progress = sign(progress_payload(request, 40), app.settings.operation_signing_key)
    assert (await send(app, worker_event(connector, PROGRESS_EVENT, progress))).status == 200
    assert connector.messages(conversation)[-1] == "Still working on the prime report: 40% done."

    result = worker_event(connector, RESULT_EVENT, signed_result(app, request, "succeeded", "42 primes."))
    assert (await send(app, result)).status == 200
    assert connector.messages(conversation)[-2] == "Thanks for waiting. 42 primes."
    assert connector.messages(conversation)[-1].startswith("Which long operation shall I run, Alan?")

    # The same result delivered again (a duplicated queue message) changes nothing.
    assert not await activities_after_result(app, connector, request, "42 primes.")


async def test_back_at_the_menu_after_a_result_the_user_is_named_without_reading_their_state(
    app: Composition, connector: RecordingConnector
) -> None:
    conversation, request = await start_operation(app, connector)
    reads = app.counters.reads
    result = worker_event(connector, RESULT_EVENT, signed_result(app, request, "succeeded", "42 primes."))
    assert (await send(app, result)).status == 200
    assert connector.messages(conversation)[-1] == "Which long operation shall I run, Alan? " + (
        "Tap one, or say 'help' to see what each does."
    )
    assert app.counters.reads - reads == 1  # the conversation's state; the name came with the dialog
    # And again after a choice the menu cannot run: still the short menu, still by name, still no user state.
    reads = app.counters.reads
    await send(app, activity(conversation, connector.service_url, text="prime report end=-5"))
    assert connector.messages(conversation)[-1].startswith("Which long operation shall I run, Alan? Tap one")
    assert app.counters.reads - reads == 1


async def test_progress_is_a_few_messages_and_typing_in_between(
    app: Composition, connector: RecordingConnector, clock: FakeClock
) -> None:
    _, request = await start_operation(app, connector)

    async def progress(percent: int) -> str:
        """What the user sees of one progress event: a message's text, or "typing"."""
        before = len(connector.activities)
        payload = sign(progress_payload(request, percent), app.settings.operation_signing_key)
        await send(app, worker_event(connector, PROGRESS_EVENT, payload))
        [shown] = connector.activities[before:]
        return shown["text"] if shown["type"] == "message" else shown["type"]

    assert await progress(10) == "typing"  # right after "Starting the prime report"
    clock.now += 16
    assert await progress(20) == "Still working on the prime report: 20% done."
    clock.now += 5
    assert await progress(30) == "typing"  # too soon after the last message
    clock.now += 16
    assert await progress(40) == "Still working on the prime report: 40% done."
    clock.now += 60
    assert await progress(90) == "typing"  # ProgressMessagesPerOperation (2) told already


async def test_failure_is_told_in_plain_words(app: Composition, connector: RecordingConnector) -> None:
    conversation, request = await start_operation(app, connector)
    failure = signed_result(app, request, "failed", "It failed 3 times (RuntimeError: disk on fire).")
    await send(app, worker_event(connector, RESULT_EVENT, failure))
    assert connector.messages(conversation)[-2] == (
        "Sorry, the prime report failed. It failed 3 times (RuntimeError: disk on fire)."
    )


async def test_forged_results_change_nothing(app: Composition, connector: RecordingConnector) -> None:
    conversation, request = await start_operation(app, connector)
    before = await conversation_doc(app, conversation)
    count = len(connector.activities)
    forged = [
        result_payload(request, "succeeded", "you won"),  # unsigned
        {**signed_result(app, request, "succeeded", "ok"), "payload": json.dumps({"text": "you won"})},
        sign(result_payload({**request, "operationId": "other"}, "succeeded", "x"), "wrong-key" * 5),
        sign(
            result_payload({**request, "operationId": "other"}, "succeeded", "x"),
            app.settings.operation_signing_key,
        ),
        "not even an object",
    ]
    for value in forged:
        assert (
            await send(app, worker_event(connector, RESULT_EVENT, value, "mallory"))
        ).status == 200
    assert len(connector.activities) == count
    assert (await conversation_doc(app, conversation))["_etag"] == before["_etag"]


async def test_cancel_drops_the_late_result(app: Composition, connector: RecordingConnector) -> None:
    conversation, request = await start_operation(app, connector)
    await send(app, activity(conversation, connector.service_url, text="cancel"))
    assert (
        connector.messages(conversation)[-2]
        == "Cancelled the prime report."
    )
    assert not await activities_after_result(app, connector, request, "late")


async def test_no_result_by_the_deadline_is_told_on_the_next_message(
    app: Composition, connector: RecordingConnector, clock: FakeClock
) -> None:
    conversation, request = await start_operation(app, connector)
    clock.now = request["deadline"] - 100  # the user wrote recently, so the conversation is not idle
    await send(app, activity(conversation, connector.service_url, text="hello?"))
    clock.now = request["deadline"] + 1
    await send(app, activity(conversation, connector.service_url, text="hello?"))
    assert connector.messages(conversation)[-2] == "Sorry, the prime report timed out: no result came within 10 min."
    late = worker_event(connector, RESULT_EVENT, signed_result(app, request, "succeeded", "late"))
    count = len(connector.activities)
    await send(app, late)  # expired: refused
    assert len(connector.activities) == count


async def test_the_worker_conversation_keeps_no_state(app: Composition, connector: RecordingConnector) -> None:
    event = worker_event(connector, "conversationUpdate", None)
    event.update(type="conversationUpdate", membersAdded=[{"id": WORKER_ID}])
    reads = app.counters.reads
    await send(app, event)
    assert connector.activities == []
    assert app.counters.reads == reads  # not even loaded
    container = await app.cosmos.conversation_container()
    assert [d async for d in container.query_items("SELECT * FROM c")] == []


async def test_idle_past_the_deadline_tells_the_timeout_then_starts_over(
    app: Composition, connector: RecordingConnector, clock: FakeClock
) -> None:
    conversation, request = await start_operation(app, connector)
    clock.now = request["deadline"] + 1
    await send(app, activity(conversation, connector.service_url, text="hello?"))
    assert connector.messages(conversation)[-3:-1] == [
        "Sorry, the prime report timed out: no result came within 10 min.",
        "Welcome back! Let's start over from the beginning.",
    ]
    assert connector.messages(conversation)[-1].startswith("Which long operation shall I run, Alan?")


@pytest.mark.parametrize(
    ("answer", "parameters"),
    [
        ("1", {"start": 1, "end": 500_000_000}),
        ("prime report end=1,000,000", {"start": 1, "end": 1_000_000}),
        ("1 end=5000", {"start": 1, "end": 5000}),
    ],
)
async def test_choice_by_number_or_name_with_parameters(
    app: Composition, connector: RecordingConnector, answer: str, parameters: dict[str, int]
) -> None:
    url = connector.service_url
    conversation = await open_named_conversation(app, url, "Kay")
    await send(app, activity(conversation, url, text=answer))
    [request] = [r for r in await queued_requests(app) if r["conversation"]["conversation"]["id"] == conversation]
    assert request["parameters"] == parameters


async def test_bad_parameters_are_explained_and_the_menu_offered_again(
    app: Composition, connector: RecordingConnector
) -> None:
    url = connector.service_url
    conversation = await open_named_conversation(app, url, "Kay")
    await send(app, activity(conversation, url, text="route report size=999999"))
    assert connector.messages(conversation)[-2].startswith("I can't run the route report like that: size must be")
    assert connector.messages(conversation)[-1].startswith("Which long operation shall I run, Kay?")


async def test_a_result_redirected_through_the_queue_is_refused_and_nothing_reaches_the_other_address(
    app: Composition, connector: RecordingConnector
) -> None:
    """Whoever can write to the queue puts the real operation's id with their own serviceUrl: the worker
    signs what the message says, but the bot tells a result only where the conversation lives."""
    conversation, request = await start_operation(app, connector)
    async with RecordingConnector() as attacker:
        redirected = {**request, "conversation": {**request["conversation"], "serviceUrl": attacker.service_url}}
        for name, payload in (
            (PROGRESS_EVENT, progress_payload(redirected, 50)),
            (RESULT_EVENT, result_payload(redirected, "succeeded", "42 primes.")),
        ):
            event = worker_event(attacker, name, sign(payload, app.settings.operation_signing_key))
            assert (await send(app, event)).status == 200
        assert attacker.activities == []  # no reply, so no bearer token either, went to the carried address
    assert not any("42 primes" in text for text in connector.messages(conversation))
    # The genuine result still reaches the user, where the conversation lives.
    await send(app, worker_event(connector, RESULT_EVENT, signed_result(app, request, "succeeded", "7 primes.")))
    assert connector.messages(conversation)[-2] == "Thanks for waiting. 7 primes."


async def new_user_conversation(app: Composition, connector: RecordingConnector, user: str) -> str:
    conversation = f"c-{uuid.uuid4()}"
    account = {"id": user, "name": "User", "role": "user"}
    await send(app, {**joined(conversation, connector.service_url), "from": account})
    await send(app, activity(conversation, connector.service_url, text="Quinn", **{"from": account}))
    return conversation


async def choose(app: Composition, connector: RecordingConnector, conversation: str, user: str, text: str) -> str:
    """The bot's first reply to `text`."""
    account = {"id": user, "name": "User", "role": "user"}
    before = len(connector.messages(conversation))
    await send(app, activity(conversation, connector.service_url, text=text, **{"from": account}))
    return connector.messages(conversation)[before]


async def test_a_user_may_run_only_so_many_operations_at_once(
    azurite: Azurite, cosmos: CosmosStandIn, clock: FakeClock, connector: RecordingConnector
) -> None:
    async with composed_app(azurite, cosmos, clock, MaxRunningOperationsPerUser="2") as app:
        user = f"dl_{uuid.uuid4().hex}"
        conversations = [await new_user_conversation(app, connector, user) for _ in range(3)]
        assert (await choose(app, connector, conversations[0], user, "1 end=1000")).startswith("Starting")
        assert (await choose(app, connector, conversations[1], user, "1 end=1000")).startswith("Starting")
        refused = await choose(app, connector, conversations[2], user, "1 end=1000")
        assert refused == (
            "You already have 2 operations running, the most one person may run at once. "
            "Wait for one of them to finish (or cancel it), then ask again."
        )
        assert len([r for r in await queued_requests(app) if r["conversation"]["user"]["id"] == user]) == 2
        # Another user is not held back by this one.
        other = f"dl_{uuid.uuid4().hex}"
        others = await new_user_conversation(app, connector, other)
        assert (await choose(app, connector, others, other, "1")).startswith("Starting")
        # One finishes (cancelled here): the user may start again.
        await send(app, activity(conversations[0], connector.service_url, text="cancel", **{"from": {"id": user}}))
        assert (await choose(app, connector, conversations[2], user, "1 end=1000")).startswith("Starting")


async def test_a_told_result_frees_its_place_and_the_result_turn_leaves_the_users_state_alone(
    azurite: Azurite, cosmos: CosmosStandIn, clock: FakeClock, connector: RecordingConnector
) -> None:
    async with composed_app(azurite, cosmos, clock, MaxRunningOperationsPerUser="1") as app:
        user = f"dl_{uuid.uuid4().hex}"
        first, second = [await new_user_conversation(app, connector, user) for _ in range(2)]
        assert (await choose(app, connector, first, user, "1 end=1000")).startswith("Starting")
        assert (await choose(app, connector, second, user, "1 end=1000")).startswith("You already have 1 operation")
        [request] = [r for r in await queued_requests(app) if r["conversation"]["user"]["id"] == user]
        users = await app.cosmos.user_container()
        doc_id = escape_key(f"directline/users/{user}")
        before = (await users.read_item(doc_id, doc_id))["_etag"]
        await send(app, worker_event(connector, RESULT_EVENT, signed_result(app, request, "succeeded", "42")))
        assert connector.messages(first)[-2].startswith("Thanks for waiting.")
        assert (await users.read_item(doc_id, doc_id))["_etag"] == before  # the end is not written there
        # The next start finds the first operation's conversation no longer waiting for it.
        assert (await choose(app, connector, second, user, "1 end=1000")).startswith("Starting")


async def test_without_limits_a_start_reads_and_writes_no_user_state(
    azurite: Azurite, cosmos: CosmosStandIn, clock: FakeClock, connector: RecordingConnector
) -> None:
    no_limits = {"MaxRunningOperationsPerUser": "0", "OperationStartsPerUserPerHour": "0"}
    async with composed_app(azurite, cosmos, clock, **no_limits) as app:
        user = f"dl_{uuid.uuid4().hex}"
        conversation = await new_user_conversation(app, connector, user)
        reads, writes = app.counters.reads, app.counters.writes
        assert (await choose(app, connector, conversation, user, "1 end=1000")).startswith("Starting")
        # The conversation's state: one read, one write (the sent request is recorded by its next commit).
        assert (app.counters.reads - reads, app.counters.writes - writes) == (1, 1)


async def test_a_user_may_start_only_so_many_operations_an_hour(
    azurite: Azurite, cosmos: CosmosStandIn, clock: FakeClock, connector: RecordingConnector
) -> None:
    # Conversations stay open across the hour, so the quota, not expiry, is what the user meets.
    hours = {"ExpireAfterSeconds": "7200", "CosmosDbTimeToLive": "86400"}
    async with composed_app(azurite, cosmos, clock, OperationStartsPerUserPerHour="2", **hours) as app:
        user = f"dl_{uuid.uuid4().hex}"
        conversation = await new_user_conversation(app, connector, user)
        for _ in range(2):
            assert (await choose(app, connector, conversation, user, "1 end=1000")).startswith("Starting")
            await send(app, activity(conversation, connector.service_url, text="cancel", **{"from": {"id": user}}))
        clock.now += 600
        refused = await choose(app, connector, conversation, user, "1 end=1000")
        assert refused.startswith("You have started 2 operations in the last hour, the most allowed.")
        assert refused.endswith("You can start the next one in 50 min.")
        clock.now += 3000  # an hour after the first start
        assert (await choose(app, connector, conversation, user, "1 end=1000")).startswith("Starting")


async def test_in_azure_without_bot_credentials_messages_are_refused_not_served_unauthenticated(
    azurite: Azurite, cosmos: CosmosStandIn, connector: RecordingConnector, caplog: pytest.LogCaptureFixture
) -> None:
    async with composed_app(azurite, cosmos, WEBSITE_SITE_NAME="contoso-bot", MicrosoftAppId="") as app:
        conversation = f"c-{uuid.uuid4()}"
        response = await send(app, activity(conversation, connector.service_url, text="hello"))
        assert response.status == 503
        assert "credentials are missing" in response.body_bytes().decode()
        assert connector.activities == []
        assert any(r.levelname == "ERROR" and "MicrosoftAppId" in r.getMessage() for r in caplog.records)
