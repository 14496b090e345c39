"""The worker handler, called directly, with a Direct Line client that records what it posts."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from bot_logic.operation_protocol import PROGRESS_EVENT, RESULT_EVENT, verified_payload
from handlers.operations_worker import QueueMessageData, RetryOperation, WorkerDependencies, handle_operation_message
from operations import Operation, OperationFailed, Parameter, register
from services.channel.directline_client import GeneratedToken
from tests.support.clock import FakeClock

KEY = "s" * 40


class RecordingDirectLine:
    """Stands in for the Direct Line service, which cannot run inside a unit test."""

    def __init__(self) -> None:
        self.conversations = 0
        self.posts: list[tuple[str, dict[str, Any]]] = []

    def open_conversation(self) -> GeneratedToken:
        self.conversations += 1
        return GeneratedToken(f"token-{self.conversations}", 1800, f"worker-{self.conversations}")

    def post_event(
        self, conversation_id: str, token: str, name: str, value: Any, sender_id: str, best_effort: bool = False
    ) -> str:
        self.posts.append((name, value))
        return f"{conversation_id}|{len(self.posts)}"


def request(operation: str, deadline: float = 5000.0, **extra: Any) -> bytes:
    body = {
        "operationId": "op-1",
        "operation": operation,
        "parameters": {},
        "conversation": {"conversation": {"id": "c1"}, "serviceUrl": "http://127.0.0.1:1/", "channelId": "directline"},
        "deadline": deadline,
        **extra,
    }
    return json.dumps(body).encode()


@pytest.fixture
def directline() -> RecordingDirectLine:
    return RecordingDirectLine()


@pytest.fixture
def poisoned() -> list[bytes]:
    return []


def worker_deps(directline: RecordingDirectLine, poisoned: list[bytes], **overrides: Any) -> WorkerDependencies:
    """The worker's dependencies for a test: `directline` records posts, poisoned bodies go to `poisoned`."""

    async def to_poison(body: bytes) -> None:
        poisoned.append(body)

    return WorkerDependencies(
        directline=directline,  # type: ignore[arg-type]
        signing_key=KEY,
        max_dequeue_count=3,
        send_to_poison=to_poison,
        progress_interval=0.0,
        **{"clock": FakeClock(1000.0), **overrides},
    )


@pytest.fixture
def deps(directline: RecordingDirectLine, poisoned: list[bytes]) -> WorkerDependencies:
    return worker_deps(directline, poisoned)


def temporary(name: str, run: Any) -> Iterator[None]:
    unregister = register(Operation(name=name, description="test", parameters=(Parameter("n", "n", 1, 0, 9),), run=run))
    yield
    unregister()


@pytest.fixture
def counting_operation() -> Iterator[None]:
    async def run(parameters: Any, progress: Any) -> str:
        for step in range(1, 5):
            await progress(step / 4)
        return f"counted to {parameters['n']}"

    yield from temporary("counting test", run)


@pytest.fixture
def broken_operation() -> Iterator[None]:
    async def run(parameters: Any, progress: Any) -> str:
        raise RuntimeError("disk on fire")

    yield from temporary("broken test", run)


@pytest.fixture
def refusing_operation() -> Iterator[None]:
    async def run(parameters: Any, progress: Any) -> str:
        raise OperationFailed("The range is empty.")

    yield from temporary("refusing test", run)


async def test_success_posts_one_signed_result_after_progress(
    deps: WorkerDependencies, directline: RecordingDirectLine, counting_operation: None
) -> None:
    outcome = await handle_operation_message(QueueMessageData("m1", request("counting test"), 1), deps)
    assert outcome == "succeeded"
    names = [name for name, _ in directline.posts]
    assert names[-1] == RESULT_EVENT and names.count(RESULT_EVENT) == 1
    assert PROGRESS_EVENT in names
    result = verified_payload(directline.posts[-1][1], KEY)
    assert result is not None
    assert result["text"] == "counted to 1" and result["outcome"] == "succeeded"
    assert directline.conversations == 1  # progress and result share one Direct Line conversation


async def test_unexpected_failure_is_retried_then_reported_once(
    deps: WorkerDependencies, directline: RecordingDirectLine, broken_operation: None
) -> None:
    for delivery in (1, 2):
        with pytest.raises(RetryOperation):
            await handle_operation_message(QueueMessageData("m1", request("broken test"), delivery), deps)
    assert directline.posts == []
    assert await handle_operation_message(QueueMessageData("m1", request("broken test"), 3), deps) == "failed"
    [(name, value)] = directline.posts
    result = verified_payload(value, KEY)
    assert name == RESULT_EVENT and result is not None and result["outcome"] == "failed"
    assert "disk on fire" in result["text"]


async def test_failure_in_plain_words_is_reported_at_once(
    deps: WorkerDependencies, directline: RecordingDirectLine, refusing_operation: None
) -> None:
    assert await handle_operation_message(QueueMessageData("m1", request("refusing test"), 1), deps) == "failed"
    assert (verified_payload(directline.posts[-1][1], KEY) or {})["text"] == "The range is empty."


async def test_unknown_operation_is_reported(deps: WorkerDependencies, directline: RecordingDirectLine) -> None:
    assert await handle_operation_message(QueueMessageData("m1", request("no such thing"), 1), deps) == "failed"
    assert "no such thing" in (verified_payload(directline.posts[-1][1], KEY) or {})["text"]


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1]", json.dumps({"operationId": "x"}).encode(), request("x", deadline="soon")],  # type: ignore[arg-type]
)
async def test_undecodable_message_goes_to_poison(
    deps: WorkerDependencies, directline: RecordingDirectLine, poisoned: list[bytes], body: bytes
) -> None:
    assert await handle_operation_message(QueueMessageData("m1", body, 1), deps) == "poisoned"
    assert poisoned == [body]
    assert directline.posts == []


async def test_message_past_its_deadline_is_dropped(
    deps: WorkerDependencies, directline: RecordingDirectLine, counting_operation: None
) -> None:
    assert await handle_operation_message(QueueMessageData("m1", request("counting test", 999.0), 1), deps) == "expired"
    assert directline.posts == []


@pytest.fixture
def endless_operation() -> Iterator[None]:
    async def run(parameters: Any, progress: Any) -> str:
        await asyncio.Event().wait()  # never finishes on its own
        return "unreachable"

    yield from temporary("endless test", run)


async def test_an_operation_is_stopped_before_its_deadline_and_reported(
    deps: WorkerDependencies, directline: RecordingDirectLine, endless_operation: None
) -> None:
    clock = FakeClock(1000.0)
    deps.clock = clock
    outcome = await handle_operation_message(QueueMessageData("m1", request("endless test", deadline=1031.0), 1), deps)
    assert outcome == "failed"
    result = verified_payload(directline.posts[-1][1], KEY)
    assert result is not None and result["text"] == "It ran out of time and was stopped."


async def test_a_full_batch_of_result_posts_never_starves_the_bots_own_replies(
    deps: WorkerDependencies, counting_operation: None
) -> None:
    """In one instance, the worker's post to Direct Line waits for the bot's turn on that event, and the
    turn sends its replies on the event loop's default executor (the SDK's ConnectorClient does). Posts
    holding every default thread would stall all of them: the bench saw turns give up after 10 s."""
    loop = asyncio.get_running_loop()

    async def bot_turn() -> None:
        await loop.run_in_executor(None, lambda: None)  # a reply, as the SDK sends it

    stalled: list[str] = []  # events whose turn could not reply (progress is best effort: it would just vanish)

    class BotInTheSameProcess(RecordingDirectLine):
        def post_event(self, conversation_id: str, token: str, name: str, *args: Any, **kwargs: Any) -> str:
            try:
                asyncio.run_coroutine_threadsafe(bot_turn(), loop).result(timeout=5)
            except TimeoutError:
                stalled.append(name)
                raise
            return super().post_event(conversation_id, token, name, *args, **kwargs)

    deps.directline = BotInTheSameProcess()  # type: ignore[assignment]
    more_than_the_default_threads = min(32, (os.cpu_count() or 1) + 4) + 2
    messages = [QueueMessageData(f"m{n}", request("counting test"), 1) for n in range(more_than_the_default_threads)]
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(handle_operation_message(m, deps) for m in messages), return_exceptions=True), 60
    )
    assert outcomes == ["succeeded"] * len(messages)
    assert stalled == []


class Conversation:
    """The stored conversation an operation works for, as the worker reads it; the user can cancel."""

    def __init__(self, operation_id: str = "op-1") -> None:
        self.operation_id: str | None = operation_id
        self.reads: list[str] = []

    def cancel(self) -> None:
        self.operation_id = None

    async def read(self, key: str) -> dict[str, Any] | None:
        self.reads.append(key)
        return {"ConversationRecord": {"pendingOperation": self.operation_id and {"id": self.operation_id}}}


@pytest.fixture
def worker_clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def slow_operation(worker_clock: FakeClock) -> Iterator[list[int]]:
    """100 chunks of 0.5 s each (on the worker's clock); records the chunks it ran."""
    chunks: list[int] = []

    async def run(parameters: Any, progress: Any) -> str:
        for chunk in range(100):
            chunks.append(chunk)
            worker_clock.now += 0.5
            await progress(chunk / 100)
        return "done"

    for _ in temporary("slow test", run):
        yield chunks


async def test_cancel_stops_the_work_within_the_check_interval_and_posts_nothing(
    directline: RecordingDirectLine, poisoned: list[bytes], slow_operation: list[int], worker_clock: FakeClock
) -> None:
    conversation = Conversation()

    async def read_and_cancel_at_chunk_10(key: str) -> dict[str, Any] | None:
        if len(slow_operation) >= 10:
            conversation.cancel()
        return await conversation.read(key)

    deps = worker_deps(directline, poisoned, clock=worker_clock, read_conversation=read_and_cancel_at_chunk_10)
    outcome = await handle_operation_message(QueueMessageData("m1", request("slow test"), 1), deps)
    assert outcome == "cancelled"
    # Checked every 2 s of the clock, i.e. every 4 chunks: stopped by chunk 10 + 4, far from 100.
    assert 10 <= len(slow_operation) <= 14
    assert RESULT_EVENT not in [name for name, _ in directline.posts]
    assert set(conversation.reads) == {"directline/conversations/c1"}


async def test_a_request_cancelled_before_it_is_picked_up_never_runs(
    directline: RecordingDirectLine, poisoned: list[bytes], slow_operation: list[int]
) -> None:
    conversation = Conversation()
    conversation.cancel()
    deps = worker_deps(directline, poisoned, read_conversation=conversation.read)
    assert await handle_operation_message(QueueMessageData("m1", request("slow test"), 1), deps) == "cancelled"
    assert slow_operation == [] and directline.posts == []


async def test_a_conversation_waiting_for_another_operation_stops_this_one(
    directline: RecordingDirectLine, poisoned: list[bytes], slow_operation: list[int]
) -> None:
    conversation = Conversation(operation_id="op-2")  # the user started a new one meanwhile
    deps = worker_deps(directline, poisoned, read_conversation=conversation.read)
    assert await handle_operation_message(QueueMessageData("m1", request("slow test"), 1), deps) == "cancelled"


async def test_when_the_conversation_cannot_be_read_the_work_goes_on(
    directline: RecordingDirectLine, poisoned: list[bytes], slow_operation: list[int], worker_clock: FakeClock
) -> None:
    async def unavailable(key: str) -> dict[str, Any] | None:
        raise ConnectionError("Cosmos DB is not answering")

    deps = worker_deps(directline, poisoned, clock=worker_clock, read_conversation=unavailable)
    assert await handle_operation_message(QueueMessageData("m1", request("slow test"), 1), deps) == "succeeded"
    assert len(slow_operation) == 100
