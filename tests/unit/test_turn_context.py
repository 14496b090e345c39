"""The turn context's faster copy of outgoing activities keeps the SDK's behaviour: the sender's
activity (a prompt kept in dialog state) is never changed by a send, handlers and the adapter see the
addressed copy, and the copy is what copy.deepcopy would have made."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.core.adapters import TestAdapter
from botbuilder.dialogs import DialogState
from botbuilder.dialogs.prompts import PromptOptions
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    CardAction,
    ChannelAccount,
    ConversationAccount,
    ResourceResponse,
    SuggestedActions,
)

from services.turns.turn_context import CopyingTurnContext, deep_copy


def inbound() -> Activity:
    return Activity(
        type=ActivityTypes.message,
        id="in-1",
        text="what?",
        channel_id="emulator",
        service_url="https://channel.example/",
        conversation=ConversationAccount(id="conv-1"),
        from_property=ChannelAccount(id="user-1", name="User"),
        recipient=ChannelAccount(id="bot-1", name="Bot"),
    )


def menu() -> Activity:
    buttons = [CardAction(type="imBack", title=t, value=t) for t in ("prime report", "sales report")]
    return Activity(type=ActivityTypes.message, text="Pick one", suggested_actions=SuggestedActions(actions=buttons))


def same_structure(a: Any, b: Any) -> bool:
    """Equal values, and no mutable object of `a` reused in `b` (enum members are singletons)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a is not b and a.keys() == b.keys() and all(same_structure(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return a is not b and len(a) == len(b) and all(same_structure(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Enum):
        return a is b
    if hasattr(a, "__dict__") and not isinstance(a, type):
        return a is not b and same_structure(vars(a), vars(b))
    return bool(a == b)


async def test_a_sent_prompt_is_addressed_as_a_copy_and_the_original_is_unchanged() -> None:
    adapter = TestAdapter()
    seen_by_handler: list[Activity] = []

    async def handler(context: TurnContext, activities: list[Activity], next_send: Any) -> Any:
        seen_by_handler.extend(activities)
        return await next_send()

    context = CopyingTurnContext(adapter, inbound())
    context.on_send_activities(handler)
    prompt = menu()
    before = copy.deepcopy(prompt)

    response = await context.send_activity(prompt)

    assert same_structure(before, prompt)  # the kept prompt: no address, no id, nothing shared with the reply
    sent = adapter.activity_buffer[-1]
    assert sent is seen_by_handler[0] and sent is not prompt
    assert (sent.conversation.id, sent.recipient.id, sent.from_property.id) == ("conv-1", "user-1", "bot-1")
    assert sent.reply_to_id == "in-1" and sent.input_hint == "acceptingInput"
    assert sent.suggested_actions.actions[0] is not prompt.suggested_actions.actions[0]
    sent.suggested_actions.actions[0].title = "changed downstream"
    assert prompt.suggested_actions.actions[0].title == "prime report"
    assert isinstance(response, ResourceResponse) and context.responded


async def test_a_trace_alone_does_not_count_as_an_answer() -> None:
    context = CopyingTurnContext(TestAdapter(), inbound())
    await context.send_activity(Activity(type=ActivityTypes.trace, name="BotState", value={"x": 1}))
    assert not context.responded


def test_the_copy_is_what_deepcopy_makes_of_an_activity_and_dialog_state() -> None:
    state = DialogState()
    options = PromptOptions(prompt=menu(), choices=["a", "b"])
    state.dialog_stack.append({"id": "menu", "state": {"options": options, "values": {"n": 2}}})
    shared = {"same": "object"}
    trace = Activity(
        type=ActivityTypes.trace,
        timestamp=datetime(2026, 1, 2, tzinfo=UTC),
        value={"dialog": state, "this": state, "pair": (1, [2]), "a": shared, "b": shared},
        entities=[],
    )
    copied, expected = deep_copy(trace), copy.deepcopy(trace)
    assert same_structure(expected, copied) and same_structure(trace, copied)
    assert copied.value["dialog"] is copied.value["this"]  # shared stays shared, as in copy.deepcopy
    assert copied.value["a"] is copied.value["b"] is not shared
    assert copied.value["pair"] == (1, [2]) and copied.value["pair"][1] is not trace.value["pair"][1]


def test_objects_with_their_own_copy_rules_are_copied_by_them() -> None:
    class Handle:
        __slots__ = ("name",)

        def __init__(self, name: str) -> None:
            self.name = name

    class Singleton:
        def __deepcopy__(self, memo: dict[int, Any]) -> Singleton:
            return self

    cycle: list[Any] = []
    cycle.append(cycle)
    one, handle = Singleton(), Handle("h")
    copied = deep_copy({"one": one, "handle": handle, "cycle": cycle})
    assert copied["one"] is one
    assert copied["handle"] is not handle and copied["handle"].name == "h"
    assert copied["cycle"] is not cycle and copied["cycle"][0] is copied["cycle"]


def test_activities_and_dialog_state_are_copied_without_copy_deepcopy(monkeypatch: Any) -> None:
    """The fast copy is taken for what a turn sends (the tests above would still pass with it switched off)."""
    state = DialogState()
    state.dialog_stack.append({"id": "menu", "state": {"options": PromptOptions(prompt=menu()), "values": {}}})
    reply = menu()
    reply.value = {"dialog": state, "at": datetime(2026, 1, 2, tzinfo=UTC)}
    expected = copy.deepcopy(reply)

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("handed to copy.deepcopy")

    monkeypatch.setattr(copy, "deepcopy", refuse)
    assert same_structure(expected, deep_copy(reply))
