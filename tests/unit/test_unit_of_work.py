"""The unit of work: a lost commit race re-runs the turn, replies and effects leave once, after the
commit; user-state merges after a conflict keep what other conversations wrote."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botbuilder.core import ConversationState, TurnContext, UserState
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount

from services.unit_of_work import (
    HoldsRepliesUntilCommit,
    StateScopes,
    TurnConflictError,
    UnitOfWork,
    _apply,
    _changes,
)
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


@pytest.fixture
def storage() -> ConflictingMemoryStorage:
    return ConflictingMemoryStorage()


@pytest.fixture
def unit_of_work(storage: ConflictingMemoryStorage) -> UnitOfWork:
    return UnitOfWork(StateScopes(ConversationState(storage), UserState(storage), storage), max_attempts=3)


class HoldingTestAdapter(HoldsRepliesUntilCommit, TestAdapter):
    """The SDK's test adapter (it records what is sent), holding replies as the bot's adapter does."""


def new_turn(text: str = "hello") -> tuple[TestAdapter, TurnContext]:
    adapter = HoldingTestAdapter()
    activity = Activity(
        type="message",
        text=text,
        channel_id="test",
        conversation=ConversationAccount(id="c-1"),
        from_property=ChannelAccount(id="u-1"),
        recipient=ChannelAccount(id="bot"),
        service_url="http://127.0.0.1:1/",
    )
    return adapter, TurnContext(adapter, activity)


def rival_adds(item: str) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        state.setdefault("Log", []).append(item)

    return change


class CountingTurn:
    """Appends to a list in conversation state and replies; asks for an effect after the commit."""

    def __init__(self, unit_of_work: UnitOfWork, effect_fails: bool = False) -> None:
        self.unit_of_work = unit_of_work
        self.attempts = 0
        self.effects: list[list[str]] = []  # the committed log each effect saw
        self._effect_fails = effect_fails

    async def __call__(self, context: TurnContext) -> None:
        self.attempts += 1
        state = self.unit_of_work.scopes.conversation.get(context)
        state.setdefault("Log", []).append("turn")
        await context.send_activity(f"attempt {self.attempts}")

        async def effect() -> None:
            if self._effect_fails:
                raise ConnectionError("queue unreachable")
            self.effects.append(list(state["Log"]))

        self.unit_of_work.after_commit(context, effect, failure_reply="Sorry, that could not start.")


async def test_a_lost_commit_race_reruns_the_turn_on_fresh_state_and_the_user_sees_one_reply(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage
) -> None:
    storage.commit_first(CONVERSATION_KEY, rival_adds("other turn"))
    adapter, context = new_turn()
    turn = CountingTurn(unit_of_work)
    await unit_of_work.run(context, turn)

    assert turn.attempts == 2
    assert storage.documents[CONVERSATION_KEY]["Log"] == ["other turn", "turn"]  # nothing overwritten
    assert [a.text for a in adapter.activity_buffer] == ["attempt 2"]  # the losing attempt's reply is gone
    assert turn.effects == [["other turn", "turn"]]  # once, after the commit that won


async def test_a_turn_that_loses_every_race_sends_nothing_and_says_so(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage
) -> None:
    storage.commit_first(CONVERSATION_KEY, *(rival_adds(f"rival {n}") for n in range(3)))
    adapter, context = new_turn()
    turn = CountingTurn(unit_of_work)
    with pytest.raises(TurnConflictError):
        await unit_of_work.run(context, turn)
    assert turn.attempts == 3
    assert adapter.activity_buffer == [] and turn.effects == []
    assert "turn" not in storage.documents[CONVERSATION_KEY]["Log"]


async def test_an_effect_that_fails_after_the_commit_is_told_to_the_user(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage
) -> None:
    adapter, context = new_turn()
    await unit_of_work.run(context, CountingTurn(unit_of_work, effect_fails=True))
    assert [a.text for a in adapter.activity_buffer] == ["attempt 1", "Sorry, that could not start."]
    assert storage.documents[CONVERSATION_KEY]["Log"] == ["turn"]  # the state stays committed


async def test_user_state_written_meanwhile_by_another_conversation_is_merged_not_lost(
    unit_of_work: UnitOfWork, storage: ConflictingMemoryStorage
) -> None:
    storage.documents[USER_KEY] = {"UserProfile": {"name": "Ada"}, "e_tag": "0"}

    def other_conversation(state: dict[str, Any]) -> None:
        state["UserProfile"]["colour"] = "blue"

    storage.commit_first(USER_KEY, other_conversation)

    async def rename(context: TurnContext) -> None:
        state = unit_of_work.scopes.user.get(context)
        state["UserProfile"]["name"] = "Grace"
        unit_of_work.scopes.conversation.get(context)["Seen"] = True

    _, context = new_turn()
    await unit_of_work.run(context, rename)
    profile = storage.documents[USER_KEY]["UserProfile"]
    assert profile == {"name": "Grace", "colour": "blue"}
