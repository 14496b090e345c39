"""Conversation and user state over Cosmos DB flatten once per save: a turn that changed nothing
writes nothing, a changed state is written once and reads back the same, and the write stays
conditional on the etag."""

from __future__ import annotations

import pytest
from botbuilder.core import TurnContext
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount

from bootstrap import Composition
from services.state_storage import StateConflictError

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
