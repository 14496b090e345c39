"""Conversation and user state over Cosmos DB flatten once per save: a turn that changed nothing
writes nothing, a changed state is written once and reads back the same, and the write stays
conditional on the etag."""

from __future__ import annotations

import pytest
from botbuilder.core import TurnContext
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount

from bootstrap import Composition
from services.state.state_storage import StateConflictError

pytestmark = pytest.mark.emulators


def turn(conversation: str) -> TurnContext:
    activity = Activity(
        type="message",
        text="hi",
        channel_id="test",
        conversation=ConversationAccount(id=conversation),
        from_property=ChannelAccount(id="u-1"),
        recipient=ChannelAccount(id="bot"),
    )
    return TurnContext(TestAdapter(), activity)


async def test_unchanged_state_is_not_written_and_a_change_is_written_once(app: Composition) -> None:
    state = app.unit_of_work.scopes.conversation
    counters = app.counters
    first = turn("c-states")
    await state.load(first, force=True)
    state.get(first)["Log"] = ["one"]
    writes = counters.writes
    await state.save_changes(first)
    assert counters.writes == writes + 1
    await state.save_changes(first)  # nothing changed since
    assert counters.writes == writes + 1

    second = turn("c-states")
    await state.load(second, force=True)
    assert state.get(second)["Log"] == ["one"]
    await state.save_changes(second)  # loaded, untouched: not written
    assert counters.writes == writes + 1
    state.get(second)["Log"].append("two")
    await state.save_changes(second)
    assert counters.writes == writes + 2

    stale = turn("c-states")
    await state.load(stale, force=True)
    state.get(stale)["Log"].append("three")
    other = turn("c-states")
    await state.load(other, force=True)
    state.get(other)["Log"].append("rival")
    await state.save_changes(other)
    with pytest.raises(StateConflictError):  # still conditional on the etag it was read with
        await state.save_changes(stale)


async def test_user_state_is_read_only_by_a_turn_that_uses_it_and_a_lost_race_is_merged(app: Composition) -> None:
    unit_of_work = app.unit_of_work
    user, storage = unit_of_work.scopes.user, unit_of_work.scopes.user_storage
    profiles = user.create_property("UserProfile")
    key = "test/users/u-1"
    await storage.write({key: {"UserProfile": {"name": "Ada"}}})

    async def ignores_the_user(context: TurnContext) -> None:
        unit_of_work.scopes.conversation.get(context)["Log"] = ["plain turn"]

    reads = app.counters.reads
    await unit_of_work.run(turn("c-lazy"), ignores_the_user)
    assert app.counters.reads == reads + 1  # the conversation only

    async def picks_a_colour_while_another_conversation_counts_a_visit(context: TurnContext) -> None:
        profile = await profiles.get(context, dict)  # loaded here, on first use
        profile["colour"] = "blue"
        fresh = (await storage.read([key]))[key]
        fresh["UserProfile"]["visits"] = 2
        await storage.write({key: fresh})  # the other conversation's turn commits first

    await unit_of_work.run(turn("c-lazy"), picks_a_colour_while_another_conversation_counts_a_visit)
    assert (await storage.read([key]))[key]["UserProfile"] == {"name": "Ada", "visits": 2, "colour": "blue"}


class Reply:
    """An object of the kind dialog state holds (jsonpickle stores its class)."""

    def __init__(self, text: str) -> None:
        self.text = text


async def test_one_property_reads_back_as_the_whole_state_restores_it_even_when_it_shares_objects(
    app: Composition,
) -> None:
    storage = app.conversations
    shared = {"id": "op-1", "name": "prime report"}
    for key, state in {
        "test/conversations/plain": {"Dialog": [Reply("menu")], "Record": {"pending": {"id": "op-1"}, "n": (1, 2)}},
        # The record's pending operation is the very object the dialog state holds: stored as a reference.
        "test/conversations/shared": {"Dialog": {"options": shared}, "Record": {"pending": shared}},
    }.items():
        await storage.write({key: state})
        whole = (await storage.read([key]))[key]
        assert await storage.read_properties(key, ["Record", "Missing"]) == {"Record": whole["Record"]}
    assert (await storage.read_properties("test/conversations/shared", ["Record"]))["Record"]["pending"] == shared
    assert await storage.read_properties("test/conversations/never-written", ["Record"]) is None


async def test_a_property_that_shares_nothing_is_read_without_restoring_the_rest(
    app: Composition, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = app.conversations
    key = "test/conversations/record-only"
    await storage.write({key: {"Dialog": [Reply("menu")], "Record": {"pending": {"id": "op-1"}}}})

    def whole_state(_doc: object) -> object:
        raise AssertionError("the whole state was restored for one property")

    monkeypatch.setattr("services.state.cosmos_storage._state_of", whole_state)
    assert await storage.read_properties(key, ["Record"]) == {"Record": {"pending": {"id": "op-1"}}}
