"""The state codec writes what jsonpickle writes (exactly, or with msrest models in a compact form that
jsonpickle restores to the same objects) and restores what jsonpickle restores: for the SDK objects bot
state holds, for anything else (where it hands the state to jsonpickle), and for the documents the app
stored before the codec existed (conversations outlive a deploy in Cosmos DB)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from botbuilder.dialogs import DialogInstance, DialogState
from botbuilder.dialogs.choices import Choice, ListStyle
from botbuilder.dialogs.prompts import PromptOptions
from botbuilder.schema import (
    ActionTypes,
    Activity,
    ActivityTypes,
    Attachment,
    CardAction,
    ChannelAccount,
    InputHints,
    SuggestedActions,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonpickle import Pickler, Unpickler

from services.state import state_codec

STORED_BEFORE_CODEC = json.loads(
    (Path(__file__).parents[1] / "support" / "stored_states_before_codec.json").read_text(encoding="utf-8")
)
OLD_DOCUMENTS = {name: doc for name, doc in STORED_BEFORE_CODEC.items() if not name.startswith("_")}


class WithOwnState:
    """A class with its own pickling hook: jsonpickle writes it as py/state."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __getstate__(self) -> dict[str, int]:
        return {"value": self.value}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.value = state["value"]


def jsonpickle_form(value: Any) -> Any:
    """A canonical form to compare restored objects by (most SDK classes have no __eq__); a set's
    members in a fixed order (a restored set may iterate in another order than the one stored)."""
    return _sets_ordered(Pickler().flatten(value))


def _sets_ordered(flat: Any) -> Any:
    if isinstance(flat, dict):
        ordered = {key: _sets_ordered(item) for key, item in flat.items()}
        if isinstance(ordered.get("py/set"), list):
            ordered["py/set"] = sorted(ordered["py/set"], key=repr)
        return ordered
    if isinstance(flat, list):
        return [_sets_ordered(item) for item in flat]
    return flat


texts = st.text(max_size=12)
primitives = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts
json_values = st.recursive(
    primitives, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=8
)
accounts = st.builds(ChannelAccount, id=texts, name=st.none() | texts)
card_actions = st.builds(
    CardAction, type=st.sampled_from(ActionTypes), title=texts, value=json_values, text=st.none() | texts
)
activities = st.builds(
    Activity,
    type=st.none() | st.sampled_from(ActivityTypes),
    text=st.none() | texts,
    input_hint=st.none() | st.sampled_from(InputHints),
    from_property=st.none() | accounts,
    value=json_values,
    suggested_actions=st.none() | st.builds(SuggestedActions, actions=st.lists(card_actions, max_size=3)),
    attachments=st.none() | st.lists(st.builds(Attachment, content_type=texts, content=json_values), max_size=2),
)
choices = st.builds(
    Choice, value=texts, action=st.none() | card_actions, synonyms=st.none() | st.lists(texts, max_size=3)
)
prompt_options = st.builds(
    PromptOptions,
    prompt=st.none() | activities,
    retry_prompt=st.none() | activities,
    choices=st.none() | st.lists(choices, max_size=4),
    style=st.none() | st.sampled_from(ListStyle),
    validations=json_values,
    number_of_attempts=st.integers(0, 5),
)
# Values jsonpickle writes in forms of its own: the codec must hand the state to jsonpickle.
others = (
    st.tuples(primitives, primitives)
    | st.frozensets(st.integers(), max_size=3).map(set)
    | st.datetimes().map(lambda moment: moment.replace(tzinfo=datetime.UTC))
    | st.binary(max_size=4)
    | st.dictionaries(st.integers(), primitives, min_size=1, max_size=2)
    | st.integers().map(WithOwnState)
    | st.just({"py/object": "not.a.Class", "x": 1})
)


def states(with_others: bool) -> st.SearchStrategy[dict[str, Any]]:
    leaves = primitives | activities | prompt_options | choices | (others if with_others else st.nothing())

    def extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        instances = st.builds(DialogInstance, id=texts, state=st.dictionaries(texts, inner, max_size=3))
        return (
            st.lists(inner, max_size=3)
            | st.dictionaries(texts, inner, max_size=3)
            | instances
            | st.builds(DialogState, stack=st.lists(instances, max_size=2))
        )

    return st.recursive(leaves, extend, max_leaves=12).flatmap(with_shared_references)


def with_shared_references(value: Any) -> st.SearchStrategy[dict[str, Any]]:
    """The value, and again some of the objects in it: jsonpickle writes a repeat as {"py/id": n}."""
    found: list[Any] = []

    def collect(item: Any) -> None:
        if isinstance(item, (list, dict)) or hasattr(item, "__dict__"):
            found.append(item)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            collect(child)

    collect(value)
    picks = st.lists(st.sampled_from(found), max_size=3) if found else st.just([])
    return picks.map(lambda repeats: {"state": value, "again": repeats})


def as_stored(document: Any) -> Any:
    return json.loads(json.dumps(document))  # as Cosmos DB hands it back


def check_like_jsonpickle(state: dict[str, Any], compact_models: bool) -> None:
    by_jsonpickle = Pickler().flatten(state)
    document = state_codec.flatten(state, compact_models)
    if not compact_models:
        assert document == by_jsonpickle
    by_jsonpickle = _sets_ordered(by_jsonpickle)
    assert jsonpickle_form(Unpickler().restore(as_stored(document))) == by_jsonpickle  # an earlier release reads it
    restored = state_codec.restore(as_stored(document))
    assert jsonpickle_form(restored) == by_jsonpickle
    again = state_codec.flatten(restored, compact_models)
    if compact_models:  # jsonpickle may have taken the first (a key it drops), the codec the second
        assert jsonpickle_form(state_codec.restore(as_stored(again))) == by_jsonpickle
    else:
        assert _sets_ordered(again) == _sets_ordered(document)
    assert jsonpickle_form(state_codec.restore(as_stored(by_jsonpickle))) == by_jsonpickle


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states(with_others=False), st.booleans())
def test_states_of_sdk_objects_are_written_and_restored_as_jsonpickle_does(
    state: dict[str, Any], compact_models: bool
) -> None:
    check_like_jsonpickle(state, compact_models)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states(with_others=True), st.booleans())
def test_states_holding_anything_else_are_written_and_restored_as_jsonpickle_does(
    state: dict[str, Any], compact_models: bool
) -> None:
    check_like_jsonpickle(state, compact_models)


def test_an_activity_is_stored_without_its_unset_attributes_and_restored_whole() -> None:
    prompt = Activity(type=ActivityTypes.message, text="Which one?", input_hint=InputHints.accepting_input)
    document = state_codec.flatten({"prompt": prompt}, compact_models=True)
    assert len(json.dumps(document)) < len(json.dumps(Pickler().flatten({"prompt": prompt}))) / 2
    for restored in (state_codec.restore(as_stored(document)), Unpickler().restore(as_stored(document))):
        assert restored["prompt"] == prompt  # msrest models compare every attribute
        assert restored["prompt"].attachments is None and restored["prompt"].additional_properties == {}


def test_a_repeated_enum_member_and_activity_are_written_once_and_restored_as_the_same_objects() -> None:
    prompt = Activity(type=ActivityTypes.message, text="Which one?", input_hint=InputHints.accepting_input)
    retry = Activity(type=ActivityTypes.message, text="Sorry?", input_hint=InputHints.accepting_input)
    state = {"options": PromptOptions(prompt=prompt, retry_prompt=retry), "last": prompt}
    document = state_codec.flatten(state, compact_models=False)
    assert document == Pickler().flatten(state)
    assert document["last"] == {"py/id": 2}  # the prompt, written once
    assert document["options"]["retry_prompt"]["type"] == {"py/id": 4}  # ActivityTypes.message
    restored = state_codec.restore(json.loads(json.dumps(document)))
    assert restored["last"] is restored["options"].prompt
    assert restored["options"].retry_prompt.type is ActivityTypes.message
    assert restored["options"].retry_prompt.input_hint is InputHints.accepting_input


@pytest.mark.parametrize("name", sorted(OLD_DOCUMENTS))
def test_documents_stored_before_the_codec_restore_as_jsonpickle_restores_them(name: str) -> None:
    document = OLD_DOCUMENTS[name]
    restored = state_codec.restore(as_stored(document))
    assert jsonpickle_form(restored) == jsonpickle_form(Unpickler().restore(as_stored(document)))
    assert state_codec.flatten(restored, compact_models=False) == document
    [main] = restored["DialogState"].dialog_stack
    prompt_instance = main.state["dialogs"].dialog_stack[0]
    options = prompt_instance.state["options"]
    assert isinstance(options, PromptOptions)
    assert options.prompt.type is ActivityTypes.message
    assert options.retry_prompt.text


def test_the_sdk_objects_in_stored_states_do_not_need_jsonpickle(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fast path covers what the bot stores: jsonpickle is only a fallback (and slower by ~10x).
    def refused(*_: Any, **__: Any) -> Any:
        raise AssertionError("fell back to jsonpickle")

    monkeypatch.setattr(state_codec, "Pickler", refused)
    monkeypatch.setattr(state_codec, "Unpickler", refused)
    for document in OLD_DOCUMENTS.values():
        compact = state_codec.flatten(state_codec.restore(document), compact_models=True)
        assert state_codec.flatten(state_codec.restore(compact), compact_models=False) == document


def test_a_document_the_codec_cannot_read_itself_is_restored_by_jsonpickle() -> None:
    document = {"when": {"py/tuple": [1, 2]}, "stack": [{"py/id": 0}], "data": {"py/b64": "AQ=="}}
    assert jsonpickle_form(state_codec.restore(document)) == jsonpickle_form(Unpickler().restore(document))
    restored = state_codec.restore(document)
    assert restored["when"] == (1, 2) and restored["data"] == b"\x01"
