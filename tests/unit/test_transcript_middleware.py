"""What the transcript middleware records: the turn as it was committed and really sent. A turn that
lost a commit race and ran again is in the transcript once; a reply the channel refused is not; the
worker's own conversation and typing indicators are not recorded at all."""

from __future__ import annotations

from typing import Any

import pytest
from botbuilder.core import ConversationState, TurnContext, UserState
from botbuilder.schema import Activity

from services.transcripts.middleware import CommittedTranscriptMiddleware, RecordsSentActivities
from services.turns.outbox import Outbox
from services.turns.unit_of_work import HoldsRepliesUntilCommit, StateScopes, UnitOfWork
from tests.support.clock import FakeClock
from tests.support.memory_storage import ConflictingMemoryStorage
from tests.unit.test_unit_of_work import CONVERSATION_KEY, FlakyTestAdapter, Queue, StartingTurn, new_turn, rival_adds


@pytest.fixture
def storage() -> ConflictingMemoryStorage:
    return ConflictingMemoryStorage()


@pytest.fixture
def unit_of_work(storage: ConflictingMemoryStorage) -> UnitOfWork:
    clock = FakeClock()
    scopes = StateScopes(ConversationState(storage), UserState(storage), storage, storage)
    return UnitOfWork(scopes, Outbox(Queue().send, clock), clock, busy_text="Busy: {text}", max_attempts=3)


class RecordingAdapter(HoldsRepliesUntilCommit, RecordsSentActivities, FlakyTestAdapter):
    """The bot's adapter's order: hold until the commit, then record what the channel accepted."""


class ListRecorder:
    def __init__(self) -> None:
        self.batches: list[tuple[str, list[dict[str, Any]]]] = []

    def record(self, conversation_id: str, activities: list[dict[str, Any]]) -> None:
        self.batches.append((conversation_id, activities))

    def texts(self) -> list[tuple[str | None, str | None]]:
        return [(a["from"]["id"], a.get("text")) for _, batch in self.batches for a in batch]


async def run_turn(adapter: RecordingAdapter, context: TurnContext, logic: object) -> None:
    await adapter.run_pipeline(context, logic)  # type: ignore[arg-type]


def recording_adapter(recorder: ListRecorder) -> RecordingAdapter:
    adapter = RecordingAdapter()
    adapter.use(CommittedTranscriptMiddleware(recorder))
    return adapter


async def test_a_turn_run_again_after_a_lost_commit_race_is_recorded_once(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage
) -> None:
    recorder = ListRecorder()
    adapter = recording_adapter(recorder)
    storage.commit_first(CONVERSATION_KEY, rival_adds("other turn"))
    turn = StartingTurn(unit_of_work)
    context = new_turn(adapter, "start it")

    await run_turn(adapter, context, lambda ctx: unit_of_work.run(ctx, turn))

    assert turn.attempts == 2
    assert recorder.texts() == [("u-1", "start it"), ("bot", "attempt 2")]  # not "attempt 1"
    [(conversation, activities)] = recorder.batches  # one batch: one table transaction
    assert conversation == "c-1"
    assert activities[1]["from"]["role"] == "bot"  # marked, though the channel did not


async def test_a_reply_the_channel_refused_is_not_in_the_transcript(unit_of_work: UnitOfWork) -> None:
    recorder = ListRecorder()
    adapter = recording_adapter(recorder)
    adapter.failing = {"attempt 1"}

    await run_turn(adapter, new_turn(adapter, "hello"), lambda ctx: unit_of_work.run(ctx, StartingTurn(unit_of_work)))

    assert recorder.texts() == [("u-1", "hello")]


async def test_what_no_unit_of_work_took_in_is_not_recorded_but_what_was_sent_is(
    unit_of_work: UnitOfWork,
) -> None:
    recorder = ListRecorder()
    adapter = recording_adapter(recorder)

    async def worker_conversation(context: TurnContext) -> None:
        return None  # routed away, as the worker's own events are: nothing taken in, nothing sent

    await run_turn(adapter, new_turn(adapter, kind="event"), worker_conversation)
    assert recorder.batches == []

    async def proactive(context: TurnContext) -> None:  # e.g. the sweeper's notice, outside any turn
        await context.send_activities([Activity(type="typing"), Activity(type="message", text="Closed.")])

    await run_turn(adapter, new_turn(adapter, kind="event"), proactive)
    assert recorder.texts() == [("bot", "Closed.")]


async def test_an_event_the_bot_refused_is_not_recorded_but_one_it_answered_is(unit_of_work: UnitOfWork) -> None:
    recorder = ListRecorder()
    adapter = recording_adapter(recorder)

    async def refuse(context: TurnContext) -> None:
        return None  # e.g. the late result of a cancelled operation: nothing said

    await run_turn(adapter, new_turn(adapter, kind="event"), lambda ctx: unit_of_work.run(ctx, refuse))
    assert recorder.batches == []

    async def answer(context: TurnContext) -> None:
        await context.send_activity(Activity(type="message", text="Thanks for waiting."))

    await run_turn(adapter, new_turn(adapter, kind="event"), lambda ctx: unit_of_work.run(ctx, answer))
    [(_, [received, sent])] = recorder.batches
    assert received["type"] == "event" and sent["text"] == "Thanks for waiting."
