"""The bot's side of a long operation, through the messages handler: the queue message after the
commit, progress and results resumed in the user's conversation, cancel, timeout, forgeries."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import TextBase64DecodePolicy
from azure.storage.queue.aio import QueueClient

from bot_logic.operation_messages import PROGRESS_EVENT, RESULT_EVENT, WORKER_ID, progress_payload, result_payload
from handlers.messages import handle_messages
from localdev.app_settings import app_settings
from services.cosmos_storage import escape_key
from services.runtime import BotRuntime, build_runtime
from services.settings import load_settings
from services.signing import sign
from tests.support.clock import FakeClock
from tests.support.connector import RecordingConnector
from tests.test_messages_handler import activity, joined, post

pytestmark = pytest.mark.emulators


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def runtime(azurite: Any, cosmos: Any, clock: FakeClock) -> AsyncIterator[BotRuntime]:
    built = build_runtime(load_settings(app_settings(azurite, cosmos)), clock)
    yield built
    await built.close()


async def queued_requests(runtime: BotRuntime) -> list[dict[str, Any]]:
    settings = runtime.settings
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


async def start_operation(runtime: BotRuntime, connector: RecordingConnector) -> tuple[str, dict[str, Any]]:
    conversation = f"c-{uuid.uuid4()}"
    url = connector.service_url
    await handle_messages(post(joined(conversation, url)), runtime)
    await handle_messages(post(activity(conversation, url, text="Alan")), runtime)
    assert await queued_requests(runtime) == []  # nothing queued before the choice
    await handle_messages(post(activity(conversation, url, text="prime report")), runtime)
    [request] = [r for r in await queued_requests(runtime) if r["conversation"]["conversation"]["id"] == conversation]
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


def signed_result(runtime: BotRuntime, request: dict[str, Any], outcome: str, text: str) -> dict[str, Any]:
    return sign(result_payload(request, outcome, text), runtime.settings.operation_signing_key)


async def conversation_doc(runtime: BotRuntime, conversation: str) -> dict[str, Any]:
    container = await runtime.cosmos.conversation_container()
    doc_id = escape_key(f"directline/conversations/{conversation}")
    return await container.read_item(doc_id, doc_id)


async def test_result_resumes_the_dialog_once_with_thanks_and_the_menu(
    runtime: BotRuntime, connector: RecordingConnector
) -> None:
    conversation, request = await start_operation(runtime, connector)
    await handle_messages(post(activity(conversation, connector.service_url, text="done?")), runtime)
    assert connector.messages(conversation)[-1].startswith("Still performing the long operation: prime report")
    assert any(a["type"] == "typing" for a in connector.activities if a["_conversation"] == conversation)

    progress = sign(progress_payload(request, 40), runtime.settings.operation_signing_key)
    assert (await handle_messages(post(worker_event(connector, PROGRESS_EVENT, progress)), runtime)).status == 200
    assert connector.messages(conversation)[-1] == "prime report: 40% done."

    result = worker_event(connector, RESULT_EVENT, signed_result(runtime, request, "succeeded", "42 primes."))
    assert (await handle_messages(post(result), runtime)).status == 200
    assert connector.messages(conversation)[-2] == "Thanks for waiting. 42 primes."
    assert connector.messages(conversation)[-1].startswith("Which long operation shall I run, Alan?")

    # The same result delivered again (a duplicated queue message) changes nothing.
    count = len(connector.activities)
    duplicate = worker_event(connector, RESULT_EVENT, signed_result(runtime, request, "succeeded", "42 primes."))
    await handle_messages(post(duplicate), runtime)
    assert len(connector.activities) == count


async def test_failure_is_told_in_plain_words(runtime: BotRuntime, connector: RecordingConnector) -> None:
    conversation, request = await start_operation(runtime, connector)
    failure = signed_result(runtime, request, "failed", "It failed 3 times (RuntimeError: disk on fire).")
    await handle_messages(post(worker_event(connector, RESULT_EVENT, failure)), runtime)
    assert connector.messages(conversation)[-2] == (
        "Sorry, the prime report failed. It failed 3 times (RuntimeError: disk on fire)."
    )


async def test_forged_results_change_nothing(runtime: BotRuntime, connector: RecordingConnector) -> None:
    conversation, request = await start_operation(runtime, connector)
    before = await conversation_doc(runtime, conversation)
    count = len(connector.activities)
    forged = [
        result_payload(request, "succeeded", "you won"),  # unsigned
        {**signed_result(runtime, request, "succeeded", "ok"), "payload": json.dumps({"text": "you won"})},
        sign(result_payload({**request, "operationId": "other"}, "succeeded", "x"), "wrong-key" * 5),
        sign(
            result_payload({**request, "operationId": "other"}, "succeeded", "x"),
            runtime.settings.operation_signing_key,
        ),
        "not even an object",
    ]
    for value in forged:
        assert (
            await handle_messages(post(worker_event(connector, RESULT_EVENT, value, "mallory")), runtime)
        ).status == 200
    assert len(connector.activities) == count
    assert (await conversation_doc(runtime, conversation))["_etag"] == before["_etag"]


async def test_cancel_drops_the_late_result(runtime: BotRuntime, connector: RecordingConnector) -> None:
    conversation, request = await start_operation(runtime, connector)
    await handle_messages(post(activity(conversation, connector.service_url, text="cancel")), runtime)
    assert (
        connector.messages(conversation)[-2]
        == "Cancelled the prime report. If its result still arrives, I'll ignore it."
    )
    count = len(connector.activities)
    late = worker_event(connector, RESULT_EVENT, signed_result(runtime, request, "succeeded", "late"))
    await handle_messages(post(late), runtime)
    assert len(connector.activities) == count


async def test_no_result_by_the_deadline_is_told_on_the_next_message(
    runtime: BotRuntime, connector: RecordingConnector, clock: FakeClock
) -> None:
    conversation, request = await start_operation(runtime, connector)
    clock.now = request["deadline"] - 100  # the user wrote recently, so the conversation is not idle
    await handle_messages(post(activity(conversation, connector.service_url, text="hello?")), runtime)
    clock.now = request["deadline"] + 1
    await handle_messages(post(activity(conversation, connector.service_url, text="hello?")), runtime)
    assert connector.messages(conversation)[-2] == "Sorry, the prime report timed out: no result came within 10 min."
    late = worker_event(connector, RESULT_EVENT, signed_result(runtime, request, "succeeded", "late"))
    count = len(connector.activities)
    await handle_messages(post(late), runtime)  # expired: refused
    assert len(connector.activities) == count


async def test_the_worker_conversation_keeps_no_state(runtime: BotRuntime, connector: RecordingConnector) -> None:
    event = worker_event(connector, "conversationUpdate", None)
    event.update(type="conversationUpdate", membersAdded=[{"id": WORKER_ID}])
    reads = runtime.counters.reads
    await handle_messages(post(event), runtime)
    assert connector.activities == []
    assert runtime.counters.reads == reads  # not even loaded
    container = await runtime.cosmos.conversation_container()
    assert [d async for d in container.query_items("SELECT * FROM c")] == []


async def test_idle_past_the_deadline_tells_the_timeout_then_starts_over(
    runtime: BotRuntime, connector: RecordingConnector, clock: FakeClock
) -> None:
    conversation, request = await start_operation(runtime, connector)
    clock.now = request["deadline"] + 1
    await handle_messages(post(activity(conversation, connector.service_url, text="hello?")), runtime)
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
    runtime: BotRuntime, connector: RecordingConnector, answer: str, parameters: dict[str, int]
) -> None:
    conversation = f"c-{uuid.uuid4()}"
    url = connector.service_url
    await handle_messages(post(joined(conversation, url)), runtime)
    await handle_messages(post(activity(conversation, url, text="Kay")), runtime)
    await handle_messages(post(activity(conversation, url, text=answer)), runtime)
    [request] = [r for r in await queued_requests(runtime) if r["conversation"]["conversation"]["id"] == conversation]
    assert request["parameters"] == parameters


async def test_bad_parameters_are_explained_and_the_menu_offered_again(
    runtime: BotRuntime, connector: RecordingConnector
) -> None:
    conversation = f"c-{uuid.uuid4()}"
    url = connector.service_url
    await handle_messages(post(joined(conversation, url)), runtime)
    await handle_messages(post(activity(conversation, url, text="Kay")), runtime)
    await handle_messages(post(activity(conversation, url, text="route report size=999999")), runtime)
    assert connector.messages(conversation)[-2].startswith("I can't run the route report like that: size must be")
    assert connector.messages(conversation)[-1].startswith("Which long operation shall I run, Kay?")
