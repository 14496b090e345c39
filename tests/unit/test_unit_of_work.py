"""The unit of work: turns of a conversation one at a time; a lost commit race re-runs the turn;
replies and effects leave once, after the commit; durable effects survive a failing channel or
queue; user-state merges after a conflict keep what other conversations wrote."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from botbuilder.core import ConversationState, TurnContext, UserState
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount, ResourceResponse

from services.state.bot_states import DurableConversationState, DurableUserState
from services.state.cosmos_storage import StoredState, flatten
from services.state.state_storage import StateUnavailableError
from services.turns.outbox import Outbox
from services.turns.unit_of_work import (
    ConversationLocks,
    HoldsRepliesUntilCommit,
    StateScopes,
    TurnConflictError,
    UnitOfWork,
    _apply,
    _changes,
    update_state,
)
from tests.support.clock import FakeClock
from tests.support.memory_storage import ConflictingMemoryStorage


def test_a_default_created_empty_profile_is_no_change() -> None:
    assert _changes({}, {"UserProfile": {}}) == []


def test_merge_applies_only_the_properties_this_turn_changed() -> None:
    before = {"UserProfile": {"name": "Alice", "visits": 1}, "e_tag": "1"}
    after = {"UserProfile": {"name": "Alice", "visits": 2}, "e_tag": "1"}
    fresh = {"UserProfile": {"name": "Alice", "colour": "blue", "visits": 1}, "e_tag": "2"}
    _apply(fresh, _changes(before, after))
    assert fresh == {"UserProfile": {"name": "Alice", "colour": "blue", "visits": 2}, "e_tag": "2"}


def test_a_greeting_turn_does_not_erase_a_name_saved_meanwhile() -> None:
    # Tab 2 loaded an empty user state and only created an empty profile; tab 1 saved the name meanwhile.
    fresh = {"UserProfile": {"name": "Alice"}, "e_tag": "2"}
    _apply(fresh, _changes({}, {"UserProfile": {}}))
    assert fresh["UserProfile"] == {"name": "Alice"}


def test_removed_properties_are_removed() -> None:
    fresh = {"UserProfile": {"name": "Alice", "nickname": "Al"}, "Other": 1}
    _apply(fresh, _changes({"UserProfile": {"nickname": "Al"}, "Other": 1}, {"UserProfile": {}, "Other": 1}))
    assert fresh == {"UserProfile": {"name": "Alice"}, "Other": 1}


# --- whole turns over an in-memory storage that loses races on demand ---------------------------

CONVERSATION_KEY = "test/conversations/c-1"
USER_KEY = "test/users/u-1"


class FlakyTestAdapter(TestAdapter):
    """The SDK's test adapter (it records what is sent); sending a text in `failing` raises."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()

    async def send_activities(self, context: TurnContext, activities: list[Activity]) -> list[ResourceResponse]:
        if any(activity.text in self.failing for activity in activities):
            raise ConnectionError("the channel is not answering")
        return await super().send_activities(context, activities)


class HoldingTestAdapter(HoldsRepliesUntilCommit, FlakyTestAdapter):
    """Holds replies until the commit, as the bot's own adapter does."""


class Queue:
    """The worker's queue: records what is sent, or fails while `down`."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.down = False

    async def send(self, message: dict[str, Any]) -> None:
        if self.down:
            raise ConnectionError("queue unreachable")
        self.sent.append(message)


@pytest.fixture
def storage() -> ConflictingMemoryStorage:
    return ConflictingMemoryStorage()


@pytest.fixture
def queue() -> Queue:
    return Queue()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def unit_of_work(storage: ConflictingMemoryStorage, queue: Queue, clock: FakeClock) -> UnitOfWork:
    scopes = StateScopes(ConversationState(storage), UserState(storage), storage, storage)
    return UnitOfWork(scopes, Outbox(queue.send, clock), clock, busy_text="Busy, resend: {text}", max_attempts=3)


def short_busy_bound(storage: ConflictingMemoryStorage, queue: Queue, clock: FakeClock) -> UnitOfWork:
    """A unit of work whose turns give up waiting for their conversation after 0.05 s."""
    scopes = StateScopes(ConversationState(storage), UserState(storage), storage, storage)
    return UnitOfWork(
        scopes, Outbox(queue.send, clock), clock, busy_text="Busy, resend: {text}", locks=ConversationLocks(0.05)
    )


@pytest.fixture
def adapter() -> HoldingTestAdapter:
    return HoldingTestAdapter()


def new_turn(adapter: TestAdapter, text: str = "hello", kind: str = "message") -> TurnContext:
    activity = Activity(
        type=kind,
        text=text,
        channel_id="test",
        conversation=ConversationAccount(id="c-1"),
        from_property=ChannelAccount(id="u-1"),
        recipient=ChannelAccount(id="bot"),
        service_url="http://127.0.0.1:1/",
    )
    return TurnContext(adapter, activity)


def texts(adapter: TestAdapter) -> list[str]:
    return [activity.text for activity in adapter.activity_buffer]


def rival_adds(item: str) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        state.setdefault("Log", []).append(item)

    return change


class StartingTurn:
    """Appends to a list in conversation state, replies, and asks for an operation (a durable effect)."""

    def __init__(self, unit_of_work: UnitOfWork) -> None:
        self.unit_of_work = unit_of_work
        self.attempts = 0

    async def __call__(self, context: TurnContext) -> None:
        self.attempts += 1
        state = self.unit_of_work.scopes.conversation.get(context)
        state.setdefault("Log", []).append("turn")
        await context.send_activity(f"attempt {self.attempts}")
        self.unit_of_work.request_operation(
            context, {"log": list(state["Log"])}, deadline=self.unit_of_work.clock() + 600, failure_reply="Not yet."
        )


async def test_a_lost_commit_race_reruns_the_turn_on_fresh_state_and_effects_leave_once(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, queue: Queue, adapter: HoldingTestAdapter
) -> None:
    storage.commit_first(CONVERSATION_KEY, rival_adds("other turn"))
    turn = StartingTurn(unit_of_work)
    await unit_of_work.run(new_turn(adapter), turn)

    assert turn.attempts == 2
    assert storage.documents[CONVERSATION_KEY]["Log"] == ["other turn", "turn"]  # nothing overwritten
    assert texts(adapter) == ["attempt 2"]  # the losing attempt's reply is gone
    assert queue.sent == [{"log": ["other turn", "turn"]}]  # once, as committed
    await unit_of_work.record_deliveries_now()
    assert "Outbox" not in storage.documents[CONVERSATION_KEY]  # delivered, so removed


def quiet(unit_of_work: UnitOfWork) -> Callable[[TurnContext], Awaitable[None]]:
    """A turn that changes a little state and asks for nothing durable."""

    async def turn(context: TurnContext) -> None:
        state = unit_of_work.scopes.conversation.get(context)
        state["Seen"] = state.get("Seen", 0) + 1

    return turn


async def test_a_start_costs_one_write_and_the_next_turn_records_the_sent_request_in_its_own_commit(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, queue: Queue, adapter: HoldingTestAdapter,
    clock: FakeClock,
) -> None:  # fmt: skip
    await unit_of_work.run(new_turn(adapter), StartingTurn(unit_of_work))
    assert queue.sent == [{"log": ["turn"]}] and storage.writes == 1
    [entry] = storage.documents[CONVERSATION_KEY]["Outbox"]  # sent, its delivery not yet written
    assert entry["nextAttemptAt"] > clock.now  # under its lease: nobody sends it again meanwhile

    await unit_of_work.run(new_turn(adapter, "and now?"), quiet(unit_of_work))
    assert storage.writes == 2  # the next turn's own commit, nothing more
    assert "Outbox" not in storage.documents[CONVERSATION_KEY] and storage.documents[CONVERSATION_KEY]["Seen"] == 1
    await unit_of_work.record_deliveries_now()
    assert storage.writes == 2 and queue.sent == [{"log": ["turn"]}]


async def test_a_sent_request_no_turn_follows_is_recorded_by_a_write_of_its_own(
    storage: ConflictingMemoryStorage, queue: Queue, clock: FakeClock, adapter: HoldingTestAdapter
) -> None:
    scopes = StateScopes(ConversationState(storage), UserState(storage), storage, storage)
    written = asyncio.Event()
    unit_of_work = UnitOfWork(scopes, Outbox(queue.send, clock), clock, "{text}", record_operations_after=0.0)
    original_write = storage.write

    async def write(changes: dict[str, Any]) -> None:
        await original_write(changes)
        written.set()

    storage.write = write  # type: ignore[method-assign]
    await unit_of_work.run(new_turn(adapter), StartingTurn(unit_of_work))
    written.clear()
    await asyncio.wait_for(written.wait(), 5)
    assert "Outbox" not in storage.documents[CONVERSATION_KEY] and storage.writes == 2
    assert queue.sent == [{"log": ["turn"]}]


async def test_a_sent_request_whose_record_a_process_took_with_it_is_sent_again_after_its_lease(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, queue: Queue, adapter: HoldingTestAdapter,
    clock: FakeClock,
) -> None:  # fmt: skip
    await unit_of_work.run(new_turn(adapter), StartingTurn(unit_of_work))
    [entry] = storage.documents[CONVERSATION_KEY]["Outbox"]
    # The process dies here: another one, over the same storage, knows nothing of the send.
    scopes = StateScopes(ConversationState(storage), UserState(storage), storage, storage)
    for dead in unit_of_work._unrecorded.values():  # its record, pending for later, dies with it
        assert dead.task is not None
        dead.task.cancel()
    unit_of_work._unrecorded.clear()
    survivor = UnitOfWork(scopes, Outbox(queue.send, clock), clock, "{text}")
    await survivor.run(new_turn(adapter, "before the lease ends"), quiet(survivor))
    assert queue.sent == [{"log": ["turn"]}]  # still leased: not sent twice meanwhile
    clock.now = entry["nextAttemptAt"]
    await survivor.run(new_turn(adapter, "after it"), quiet(survivor))
    assert queue.sent == [{"log": ["turn"]}] * 2  # at least once; the worker and the bot dedupe by operation id
    await survivor.record_deliveries_now()
    assert "Outbox" not in storage.documents[CONVERSATION_KEY]


async def test_a_message_that_loses_every_race_is_answered_with_a_request_to_resend(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, queue: Queue, adapter: HoldingTestAdapter
) -> None:
    storage.commit_first(CONVERSATION_KEY, *(rival_adds(f"rival {n}") for n in range(3)))
    turn = StartingTurn(unit_of_work)
    await unit_of_work.run(new_turn(adapter, "are we there yet?"), turn)
    assert turn.attempts == 3
    assert texts(adapter) == ["Busy, resend: are we there yet?"]
    assert queue.sent == [] and "turn" not in storage.documents[CONVERSATION_KEY]["Log"]


async def test_an_event_that_loses_every_race_fails_so_that_its_sender_retries(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, adapter: HoldingTestAdapter
) -> None:
    storage.commit_first(CONVERSATION_KEY, *(rival_adds(f"rival {n}") for n in range(3)))
    with pytest.raises(TurnConflictError):
        await unit_of_work.run(new_turn(adapter, kind="event"), StartingTurn(unit_of_work))
    assert adapter.activity_buffer == []


async def test_an_operation_request_that_cannot_be_sent_is_told_kept_and_sent_by_a_later_turn(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, queue: Queue, adapter: HoldingTestAdapter,
    clock: FakeClock,
) -> None:  # fmt: skip
    queue.down = True
    await unit_of_work.run(new_turn(adapter), StartingTurn(unit_of_work))
    assert texts(adapter) == ["attempt 1", "Not yet."]
    [entry] = storage.documents[CONVERSATION_KEY]["Outbox"]
    assert entry["attempts"] == 1 and entry["nextAttemptAt"] > clock.now  # committed, retried with backoff

    queue.down = False
    clock.now = entry["nextAttemptAt"]

    async def quiet(context: TurnContext) -> None:
        unit_of_work.scopes.conversation.get(context)["Seen"] = True

    await unit_of_work.run(new_turn(adapter, "anything"), quiet)
    assert queue.sent == [{"log": ["turn"]}]
    await unit_of_work.record_deliveries_now()
    assert "Outbox" not in storage.documents[CONVERSATION_KEY]
    assert texts(adapter).count("Not yet.") == 1  # told once, not at every attempt


async def test_a_durable_reply_that_fails_is_delivered_once_by_the_next_turn_or_logged_lost_at_its_deadline(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, adapter: HoldingTestAdapter, clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    async def result(context: TurnContext) -> None:
        unit_of_work.scopes.conversation.get(context)["Done"] = True
        unit_of_work.reply_durably(context, "Thanks for waiting. 42.")
        await context.send_activity("What next?")

    adapter.failing = {"Thanks for waiting. 42."}
    await unit_of_work.run(new_turn(adapter, kind="event"), result)
    assert texts(adapter) == ["What next?"]  # best effort goes on; the result waits in the outbox
    assert len(storage.documents[CONVERSATION_KEY]["Outbox"]) == 1

    adapter.failing = set()
    clock.now += 3600
    await unit_of_work.run(new_turn(adapter, "hi"), lambda context: _noop())
    assert texts(adapter) == ["What next?", "Thanks for waiting. 42."]
    assert "Outbox" not in storage.documents[CONVERSATION_KEY]

    adapter.failing = {"Thanks for waiting. 42."}
    await unit_of_work.run(new_turn(adapter, kind="event"), result)
    adapter.failing = set()
    clock.now += 2 * 24 * 3600  # past the reply's deadline
    await unit_of_work.run(new_turn(adapter, "hi"), lambda context: _noop())
    assert texts(adapter).count("Thanks for waiting. 42.") == 1
    assert "LOST reply of conversation c-1" in caplog.text
    assert "Outbox" not in storage.documents[CONVERSATION_KEY]


async def _noop() -> None:
    return None


async def test_turns_of_one_conversation_run_one_at_a_time_in_a_process(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, adapter: HoldingTestAdapter
) -> None:
    in_turn = 0
    most = 0

    async def overlapping(context: TurnContext) -> None:
        nonlocal in_turn, most
        in_turn += 1
        most = max(most, in_turn)
        await asyncio.sleep(0)  # let every other turn try to start meanwhile
        unit_of_work.scopes.conversation.get(context).setdefault("Log", []).append(context.activity.text)
        in_turn -= 1

    writes_before = storage.writes
    await asyncio.gather(*(unit_of_work.run(new_turn(adapter, f"m{n}"), overlapping) for n in range(16)))
    assert most == 1
    assert sorted(storage.documents[CONVERSATION_KEY]["Log"]) == sorted(f"m{n}" for n in range(16))
    assert storage.writes - writes_before == 16  # no commit race, so no re-run


async def test_a_conversation_busy_past_the_bound_asks_the_user_to_resend(
    storage: ConflictingMemoryStorage, queue: Queue, clock: FakeClock, adapter: HoldingTestAdapter
) -> None:
    unit_of_work = short_busy_bound(storage, queue, clock)
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(context: TurnContext) -> None:
        started.set()
        await release.wait()

    first = asyncio.create_task(unit_of_work.run(new_turn(adapter, "first"), slow))
    await started.wait()
    async with asyncio.timeout(5):  # a broken bound would hang here
        await unit_of_work.run(new_turn(adapter, "second"), slow)  # waits 0.05 s, then gives up
    assert texts(adapter) == ["Busy, resend: second"]
    release.set()
    await first


async def test_user_state_written_meanwhile_by_another_conversation_is_merged_not_lost(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, adapter: HoldingTestAdapter
) -> None:
    storage.documents[USER_KEY] = {"UserProfile": {"name": "Ada"}, "e_tag": "0"}

    def other_conversation(state: dict[str, Any]) -> None:
        state["UserProfile"]["colour"] = "blue"

    storage.commit_first(USER_KEY, other_conversation)

    async def rename(context: TurnContext) -> None:
        state = unit_of_work.scopes.user.get(context)
        state["UserProfile"]["name"] = "Grace"
        unit_of_work.scopes.conversation.get(context)["Seen"] = True

    await unit_of_work.run(new_turn(adapter), rename)
    profile = storage.documents[USER_KEY]["UserProfile"]
    assert profile == {"name": "Grace", "colour": "blue"}


async def test_a_rerun_turn_answers_even_where_the_sdk_answers_only_once_per_turn(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, adapter: HoldingTestAdapter
) -> None:
    """A prompt re-asks only while the turn has not responded; the losing attempt's reply is gone."""
    storage.commit_first(CONVERSATION_KEY, rival_adds("other turn"))

    async def prompt_like(context: TurnContext) -> None:
        unit_of_work.scopes.conversation.get(context).setdefault("Log", []).append("turn")
        if not context.responded:
            await context.send_activity("Which one?")

    await unit_of_work.run(new_turn(adapter), prompt_like)
    assert texts(adapter) == ["Which one?"]


@pytest.mark.parametrize("refusals", [2, 100])
async def test_a_store_unavailable_after_the_commit_never_fails_an_answered_turn(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, adapter: HoldingTestAdapter, refusals: int
) -> None:
    storage.unavailable[USER_KEY] = refusals  # the user-state write, after the conversation committed

    async def rename(context: TurnContext) -> None:
        unit_of_work.scopes.user.get(context)["UserProfile"] = {"name": "Grace"}
        unit_of_work.scopes.conversation.get(context)["Seen"] = True
        await context.send_activity("Nice to meet you, Grace!")

    await unit_of_work.run(new_turn(adapter), rename)
    assert texts(adapter) == ["Nice to meet you, Grace!"]
    saved = storage.documents.get(USER_KEY, {}).get("UserProfile")
    assert saved == ({"name": "Grace"} if refusals == 2 else None)  # waited for briefly, else logged


# --- two conversations, the production user state, giving up ---------------------------------------


def turn_in(adapter: TestAdapter, conversation: str, text: str) -> TurnContext:
    context = new_turn(adapter, text)
    context.activity.conversation = ConversationAccount(id=conversation)
    return context


async def test_a_busy_conversation_does_not_hold_up_another_in_the_same_process(
    storage: ConflictingMemoryStorage, queue: Queue, clock: FakeClock, adapter: HoldingTestAdapter
) -> None:
    # A short busy bound: were both conversations one lock, the second would be told to resend.
    unit_of_work = short_busy_bound(storage, queue, clock)
    started, release = asyncio.Event(), asyncio.Event()

    async def answer(context: TurnContext) -> None:
        if context.activity.text == "slow":
            started.set()
            await release.wait()
        unit_of_work.scopes.conversation.get(context)["Seen"] = context.activity.text
        await context.send_activity(f"answered {context.activity.text}")

    slow = asyncio.create_task(unit_of_work.run(turn_in(adapter, "c-1", "slow"), answer))
    await started.wait()
    async with asyncio.timeout(5):
        await unit_of_work.run(turn_in(adapter, "c-2", "quick"), answer)
    assert texts(adapter) == ["answered quick"]
    release.set()
    await slow
    assert texts(adapter) == ["answered quick", "answered slow"]


class FlattenedMemoryStorage(ConflictingMemoryStorage):
    """The in-memory storage with the two calls the production state classes make (as CosmosStorage)."""

    async def read_stored(self, keys: list[str]) -> dict[str, StoredState]:
        return {key: StoredState(state, flatten(state)) for key, state in (await self.read(keys)).items()}

    async def write_flattened(self, key: str, value: dict[str, Any], document: dict[str, Any]) -> None:
        await self.write({key: value})


async def test_the_production_user_state_keeps_what_another_conversation_wrote_meanwhile(
    queue: Queue, clock: FakeClock, adapter: HoldingTestAdapter
) -> None:
    storage = FlattenedMemoryStorage()
    scopes = StateScopes(DurableConversationState(storage), DurableUserState(storage), storage, storage)
    unit_of_work = UnitOfWork(scopes, Outbox(queue.send, clock), clock, busy_text="Busy: {text}")
    storage.documents[USER_KEY] = {"UserProfile": {"name": "Ada", "visits": 3}, "e_tag": "0"}

    def other_conversation(state: dict[str, Any]) -> None:
        state["UserProfile"]["colour"] = "blue"

    storage.commit_first(USER_KEY, other_conversation)
    profile = scopes.user.create_property("UserProfile")

    async def rename(context: TurnContext) -> None:
        (await profile.get(context, dict))["name"] = "Grace"
        unit_of_work.scopes.conversation.get(context)["Seen"] = True

    await unit_of_work.run(new_turn(adapter), rename)
    assert storage.documents[USER_KEY]["UserProfile"] == {"name": "Grace", "visits": 3, "colour": "blue"}


async def test_a_user_state_that_keeps_conflicting_is_given_up_and_logged_without_its_values(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, adapter: HoldingTestAdapter,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    storage.documents[USER_KEY] = {"UserProfile": {"name": "Ada"}, "e_tag": "0"}
    storage.commit_first(USER_KEY, *(rival_adds(f"rival {n}") for n in range(50)))

    async def rename(context: TurnContext) -> None:
        unit_of_work.scopes.user.get(context)["UserProfile"]["name"] = "Grace"
        unit_of_work.scopes.conversation.get(context)["Seen"] = True
        await context.send_activity("Nice to meet you.")

    await unit_of_work.run(new_turn(adapter), rename)
    assert texts(adapter) == ["Nice to meet you."]  # the committed turn is answered all the same
    assert storage.documents[USER_KEY]["UserProfile"] == {"name": "Ada"}
    assert "user state not saved: ['UserProfile.name'] changed" in caplog.text
    assert "Grace" not in caplog.text
    assert storage.writes < 50  # bounded: it gave up, it did not outlast the rivals


async def test_a_message_that_cannot_be_taken_in_nor_apologised_for_fails_so_the_channel_retries(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, adapter: HoldingTestAdapter
) -> None:
    storage.commit_first(CONVERSATION_KEY, *(rival_adds(f"rival {n}") for n in range(3)))
    adapter.failing = {"Busy, resend: hello"}
    with pytest.raises(TurnConflictError):
        await unit_of_work.run(new_turn(adapter, "hello"), StartingTurn(unit_of_work))
    assert texts(adapter) == []


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("word  " * 30, " ".join(("word  " * 30).split())[:57] + "..."),
        ("x" * 60, "x" * 60),
        ("x" * 61, "x" * 57 + "..."),
        (None, ""),
    ],
    ids=["long", "60-kept", "61-shortened", "no-text"],
)
async def test_a_message_is_quoted_at_most_sixty_characters_long_in_the_request_to_resend(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, adapter: HoldingTestAdapter,
    text: str | None, quoted: str,
) -> None:  # fmt: skip
    storage.commit_first(CONVERSATION_KEY, *(rival_adds(f"rival {n}") for n in range(3)))
    context = new_turn(adapter)
    context.activity.text = text
    await unit_of_work.run(context, StartingTurn(unit_of_work))
    assert texts(adapter) == [f"Busy, resend: {quoted}"]


async def test_a_durable_reply_is_sent_in_its_own_turn_in_the_order_the_turn_made_it(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, adapter: HoldingTestAdapter
) -> None:
    async def result(context: TurnContext) -> None:
        unit_of_work.scopes.conversation.get(context)["Done"] = True
        await context.send_activity("Here it is:")
        unit_of_work.reply_durably(context, "Thanks for waiting. 42.")
        await context.send_activity("What next?")

    await unit_of_work.run(new_turn(adapter, kind="event"), result)
    assert texts(adapter) == ["Here it is:", "Thanks for waiting. 42.", "What next?"]
    assert [activity.type for activity in adapter.activity_buffer] == ["message"] * 3
    assert "Outbox" not in storage.documents[CONVERSATION_KEY]


def test_durable_effects_outside_a_unit_of_work_turn_are_refused(
    unit_of_work: UnitOfWork, adapter: HoldingTestAdapter
) -> None:
    with pytest.raises(RuntimeError, match="inside a unit-of-work turn"):
        unit_of_work.reply_durably(new_turn(adapter), "lost")


# --- merging a user's state, and the bounded conditional update --------------------------------------


def test_every_kind_of_change_is_merged_into_a_fresher_state() -> None:
    before = {"Count": 1, "Same": 0, "Gone": "x", "UserProfile": {"name": "Ada", "nickname": "Al"}, "e_tag": "1"}
    after = {"Count": 2, "Same": 0, "Added": 7, "UserProfile": {"name": "Ada", "nickname": None}, "e_tag": "1"}
    fresh = {"Count": 1, "Same": 0, "UserProfile": {"name": "Ada", "nickname": "Al", "colour": "blue"}, "e_tag": "2"}
    _apply(fresh, _changes(before, after))  # "Gone" was removed meanwhile too: removing it again is harmless
    assert fresh == {
        "Count": 2,
        "Same": 0,
        "Added": 7,
        "UserProfile": {"name": "Ada", "nickname": None, "colour": "blue"},  # set to None, not removed
        "e_tag": "2",
    }


def test_a_property_that_becomes_an_object_replaces_what_was_there() -> None:
    fresh = {"Settings": "old", "e_tag": "2"}
    _apply(fresh, _changes({"Settings": "old"}, {"Settings": {"theme": "dark"}}))
    assert fresh == {"Settings": {"theme": "dark"}, "e_tag": "2"}


@pytest.fixture
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's unavailability is waited out in (0, 0, 0, 0) s: the same number of tries, no sleep."""
    import services.turns.unit_of_work as unit_of_work_module

    monkeypatch.setattr(unit_of_work_module, "UNAVAILABLE_BACKOFF_SECONDS", (0.0, 0.0, 0.0, 0.0))


async def test_a_conditional_update_outlasts_four_conflicts_and_gives_up_at_the_fifth(
    storage: ConflictingMemoryStorage, caplog: pytest.LogCaptureFixture
) -> None:
    storage.documents["k"] = {"Log": [], "e_tag": "0"}
    storage.commit_first("k", *(rival_adds(f"rival {n}") for n in range(4)))
    assert await update_state(storage, "k", rival_adds("mine"))
    assert storage.documents["k"]["Log"] == ["rival 0", "rival 1", "rival 2", "rival 3", "mine"]

    storage.commit_first("k", *(rival_adds(f"late {n}") for n in range(5)))
    assert not await update_state(storage, "k", rival_adds("given up"))
    assert "given up" not in storage.documents["k"]["Log"]
    assert "state k not updated after 5 conflicting writes" in caplog.text


async def test_a_conditional_update_of_a_missing_state_creates_it_only_when_asked(
    storage: ConflictingMemoryStorage, caplog: pytest.LogCaptureFixture
) -> None:
    assert not await update_state(storage, "gone", rival_adds("x"))
    assert "gone" not in storage.documents
    assert "state gone not updated: it is gone" in caplog.text
    assert await update_state(storage, "new", rival_adds("x"), create=True)
    assert storage.documents["new"]["Log"] == ["x"]


async def test_a_conditional_update_waits_out_a_store_briefly_unavailable_but_not_for_ever(
    storage: ConflictingMemoryStorage, caplog: pytest.LogCaptureFixture, no_waiting: None
) -> None:
    def set_value(value: str) -> Callable[[dict[str, Any]], None]:
        return lambda state: state.update(Value=value)  # safe to apply again, as update_state asks

    storage.documents["k"] = {"Value": "", "e_tag": "0"}
    storage.unavailable["k"] = 4
    assert await update_state(storage, "k", set_value("after four refusals"))
    storage.unavailable["k"] = 5
    assert not await update_state(storage, "k", set_value("after five"))
    assert storage.documents["k"]["Value"] == "after four refusals"
    assert "state k not updated: the store stayed unavailable (state 'k': HTTP 503)" in caplog.text

def fail_writes_after_the_first(storage: ConflictingMemoryStorage) -> None:
    """The next write commits; every one after it fails as Cosmos DB's 503 would."""
    commit, writes = storage.write, 0

    async def commit_then_unavailable(changes: dict[str, Any]) -> None:
        nonlocal writes
        writes += 1
        if writes > 1:
            raise StateUnavailableError("HTTP 503")
        await commit(changes)

    storage.write = commit_then_unavailable  # type: ignore[method-assign]


async def test_a_delivered_effect_whose_record_cannot_be_written_is_logged_and_the_turn_still_answered(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, queue: Queue, adapter: HoldingTestAdapter,
    caplog: pytest.LogCaptureFixture, no_waiting: None,
) -> None:  # fmt: skip
    await unit_of_work.run(new_turn(adapter), StartingTurn(unit_of_work))
    assert "not recorded" not in caplog.text  # recorded: nothing to say
    fail_writes_after_the_first(storage)
    await unit_of_work.run(new_turn(adapter, "again"), StartingTurn(unit_of_work))
    assert texts(adapter)[-1] == "attempt 1"
    assert len(queue.sent) == 2
    await unit_of_work.record_deliveries_now()  # the sent request's record waits for a write
    assert any(
        re.fullmatch(r"conversation c-1: delivery of \['[^']+'\] not recorded", r.getMessage()) for r in caplog.records
    )


async def test_a_property_another_conversation_changed_meanwhile_is_not_reverted_by_the_merge(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, adapter: HoldingTestAdapter
) -> None:
    storage.documents[USER_KEY] = {"UserProfile": {"name": "Ada", "visits": 3}, "e_tag": "0"}

    def other_conversation(state: dict[str, Any]) -> None:
        state["UserProfile"]["visits"] = 4

    storage.commit_first(USER_KEY, other_conversation)

    async def rename(context: TurnContext) -> None:
        unit_of_work.scopes.user.get(context)["UserProfile"]["name"] = "Grace"
        unit_of_work.scopes.conversation.get(context)["Seen"] = True

    await unit_of_work.run(new_turn(adapter), rename)
    assert storage.documents[USER_KEY]["UserProfile"] == {"name": "Grace", "visits": 4}


# --- what a start, a quiet turn and a stopping host cost in writes; re-runs and the user's state -------


async def test_a_turn_that_changes_nothing_writes_nothing_and_leaves_the_sent_request_to_its_own_record(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, queue: Queue, adapter: HoldingTestAdapter
) -> None:
    await unit_of_work.run(new_turn(adapter), StartingTurn(unit_of_work))
    await unit_of_work.run(new_turn(adapter, kind="event"), lambda context: _noop())  # an event the bot ignores
    assert storage.writes == 1  # not made to write for the sent request
    assert len(storage.documents[CONVERSATION_KEY]["Outbox"]) == 1
    await unit_of_work.record_deliveries_now()  # the host stops: the record is written, not dropped
    assert storage.writes == 2 and "Outbox" not in storage.documents[CONVERSATION_KEY]
    assert queue.sent == [{"log": ["turn"]}]


async def test_a_sent_durable_reply_whose_record_cannot_be_written_is_logged_for_the_operator(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, adapter: HoldingTestAdapter,
    caplog: pytest.LogCaptureFixture, no_waiting: None,
) -> None:  # fmt: skip
    fail_writes_after_the_first(storage)

    async def result(context: TurnContext) -> None:
        unit_of_work.scopes.conversation.get(context)["Done"] = True
        unit_of_work.reply_durably(context, "Thanks for waiting. 42.")

    await unit_of_work.run(new_turn(adapter, kind="event"), result)
    assert texts(adapter) == ["Thanks for waiting. 42."]
    [entry] = storage.documents[CONVERSATION_KEY]["Outbox"]  # left behind: sent again after its lease
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"conversation c-1: delivery of ['{entry['id']}'] not recorded" in warnings


async def test_a_record_that_finds_its_conversation_busy_does_not_race_the_turn_holding_it(
    storage: ConflictingMemoryStorage, queue: Queue, clock: FakeClock, adapter: HoldingTestAdapter,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    unit_of_work = short_busy_bound(storage, queue, clock)
    await unit_of_work.run(new_turn(adapter), StartingTurn(unit_of_work))
    attempts = 0

    async def host_stops_meanwhile(context: TurnContext) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await unit_of_work.record_deliveries_now()  # gives up waiting for this turn's conversation
        unit_of_work.scopes.conversation.get(context)["Seen"] = True

    await unit_of_work.run(new_turn(adapter, "meanwhile"), host_stops_meanwhile)
    assert attempts == 1 and storage.writes == 2  # no write of its own under the turn: no lost race, no re-run
    assert "Outbox" not in storage.documents[CONVERSATION_KEY]  # the turn's commit recorded it
    assert "conversation c-1: delivery of [" in caplog.text  # its own write was not made
    assert queue.sent == [{"log": ["turn"]}]


async def test_a_turn_run_again_after_a_lost_race_changes_the_users_state_once(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage, adapter: HoldingTestAdapter
) -> None:
    storage.documents[USER_KEY] = {"UserProfile": {"visits": 3}, "e_tag": "0"}
    storage.commit_first(CONVERSATION_KEY, rival_adds("other turn"))

    async def visit(context: TurnContext) -> None:
        unit_of_work.scopes.user.get(context)["UserProfile"]["visits"] += 1
        unit_of_work.scopes.conversation.get(context).setdefault("Log", []).append("turn")

    await unit_of_work.run(new_turn(adapter), visit)
    assert storage.documents[USER_KEY]["UserProfile"]["visits"] == 4  # counted once, not once per attempt


def test_a_property_set_to_none_or_one_holding_none_removed_is_merged_as_such() -> None:
    fresh = {"UserProfile": {"nickname": None, "colour": "blue"}, "e_tag": "2"}
    _apply(fresh, _changes({"UserProfile": {"nickname": None}}, {"UserProfile": {"colour": None}}))
    assert fresh == {"UserProfile": {"colour": None}, "e_tag": "2"}


def test_a_change_among_many_unchanged_properties_is_merged() -> None:
    unchanged = {f"Setting{n}": n for n in range(30)}
    fresh = {**unchanged, "Visits": 1, "e_tag": "2"}
    _apply(fresh, _changes({**unchanged, "Visits": 1}, {**unchanged, "Visits": 2}))
    assert fresh == {**unchanged, "Visits": 2, "e_tag": "2"}
