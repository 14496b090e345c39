"""The fast JSON form of Bot Framework activities is msrest's own, byte for byte, for what the bot sends
and receives: prompts with suggested actions, cards, entities, channel data, enums, timestamps; and
anything it does not handle itself (a dict where a model is declared) still comes out as msrest's.
The way back (from_json) gives msrest's model for what channels post, and msrest's conversion or error
for what it would convert or refuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from botbuilder.core import CardFactory, MessageFactory, TurnContext
from botbuilder.dialogs.choices import Choice, ChoiceFactory
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    CardAction,
    ChannelAccount,
    ConversationAccount,
    ConversationReference,
    Entity,
    HeroCard,
    Mention,
    SuggestedActions,
)
from botframework.connector import models
from msrest.exceptions import DeserializationError
from msrest.serialization import Model, Serializer

from services.channel.activity_json import PlainBodySerializer, from_json, to_json

INBOUND = {
    "type": "message",
    "id": "abc",
    "timestamp": "2026-12-07T10:11:12.345678Z",
    "localTimestamp": "2026-12-07T11:11:12.3+01:00",
    "channelId": "directline",
    "serviceUrl": "https://directline.example/",
    "from": {"id": "user-1", "name": "Ada", "role": "user"},
    "conversation": {"id": "conv-1", "isGroup": False},
    "recipient": {"id": "bot", "name": "Bot"},
    "text": "1 end=1000",
    "entities": [{"type": "ClientCapabilities", "requiresBotState": True, "supportsListening": 1}],
    "channelData": {"clientActivityID": "x1", "nested": [1, 2.5, None, {"a": "b"}]},
    "value": {"choice": "prime report", "list": ["a", None]},
}


def _reply_to(activity: Activity, outgoing: Activity) -> Activity:
    return TurnContext.apply_conversation_reference(outgoing, TurnContext.get_conversation_reference(activity))


def _activities() -> list[Activity]:
    inbound = Activity().deserialize(INBOUND)
    choices = [Choice(name) for name in ("prime report", "sales report", "risk simulation")]
    hero = HeroCard(title="Menu", buttons=[CardAction(type="imBack", title="1", value="prime report")])
    mention = Mention(mentioned=ChannelAccount(id="bot", name="Bot"), text="<at>Bot</at>", type="mention")
    return [
        inbound,
        _reply_to(inbound, ChoiceFactory.for_channel("directline", choices, "Which one?")),
        _reply_to(inbound, MessageFactory.text("Thanks for waiting", input_hint="ignoringInput")),
        _reply_to(inbound, MessageFactory.attachment(CardFactory.hero_card(hero))),
        Activity(
            type=ActivityTypes.event,
            name="operation.result",
            value={"ok": True, "rows": [[1, 2], [3, 4]], "ratio": 0.5},
            timestamp=datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC),
            local_timestamp=datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))),
            conversation=ConversationAccount(id="c", conversation_type="personal"),
            entities=[mention, Entity(type="geo")],
            suggested_actions=SuggestedActions(to=["user-1"], actions=[CardAction(type="imBack", value=None)]),
            channel_data={"model": ChannelAccount(id="nested")},
        ),
        Activity(type="typing", attachments=[], entities=[None]),  # type: ignore[list-item]
    ]


@pytest.mark.parametrize("index", range(6))
def test_same_json_as_msrest(index: int) -> None:
    activity = _activities()[index]
    expected = activity.serialize()

    assert json.dumps(to_json(activity), sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert to_json(activity) == expected


@pytest.mark.parametrize("index", range(6))
def test_request_body_same_as_the_connector_clients(index: int) -> None:
    client_models = {name: value for name, value in models.__dict__.items() if isinstance(value, type)}
    expected = Serializer(client_models).body(_activities()[index], "Activity")

    assert PlainBodySerializer(client_models).body(_activities()[index], "Activity") == expected


def test_values_msrest_converts_come_out_as_msrest_makes_them() -> None:
    # A dict where a model is declared, a float field given an int: msrest's own path, same result.
    activity = Activity(type="message", text="hi", from_property={"id": "u"})  # type: ignore[arg-type]
    client_models = {name: value for name, value in models.__dict__.items() if isinstance(value, type)}

    assert to_json(Activity(type="message", recipient=ChannelAccount(id="b"), text="x")) == {
        "type": "message",
        "recipient": {"id": "b"},
        "text": "x",
    }
    assert PlainBodySerializer(client_models).body(activity, "Activity") == Serializer(client_models).body(
        Activity(type="message", text="hi", from_property={"id": "u"}),
        "Activity",  # type: ignore[arg-type]
    )


def test_a_dict_body_is_msrests_business() -> None:
    client_models = {name: value for name, value in models.__dict__.items() if isinstance(value, type)}
    body: dict[str, Any] = {"type": "message", "text": "hi", "from": {"id": "u"}}

    assert PlainBodySerializer(client_models).body(dict(body), "Activity") == Serializer(client_models).body(
        dict(body), "Activity"
    )


def _fields(value: Any) -> Any:
    """A model's attributes, recursively, with each value's type: what two deserialized models must share."""
    if isinstance(value, Model):
        return (type(value), {name: _fields(item) for name, item in vars(value).items()})
    if isinstance(value, dict):
        return {key: _fields(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fields(item) for item in value]
    return (type(value), value)


POSTED: list[dict[str, Any]] = [
    INBOUND,
    {**INBOUND, "timestamp": "2026-12-07T10:11:12.1234567Z", "unknownField": {"kept": [1]}, "locale": None},
    {
        "type": "message",
        "text": "hi <at>Bot</at>",
        "entities": [{"type": "mention", "mentioned": {"id": "bot", "name": "Bot"}, "text": "<at>Bot</at>"}, None],
        "attachments": [{"contentType": "application/vnd.microsoft.card.hero", "content": {"title": "x"}}],
        "suggestedActions": {"to": ["u"], "actions": [{"type": "imBack", "title": "a", "value": {"v": 1}}]},
        "membersAdded": [{"id": "bot"}, {"id": "u", "aadObjectId": "o"}],
        "relatesTo": {"activityId": "a1", "conversation": {"id": "c"}, "channelId": "directline"},
        "listenFor": ["yes", "no"],
    },
    # What msrest converts: a number where a str is declared, an int where a bool is.
    {"type": "message", "text": 5, "conversation": {"id": 7, "isGroup": 1}},
    {"type": "event", "name": "x", "value": "plain", "channelData": [1, "two"]},
]


@pytest.mark.parametrize("index", range(len(POSTED)))
def test_from_json_gives_msrests_model(index: int) -> None:
    posted = json.loads(json.dumps(POSTED[index]))

    assert _fields(from_json(Activity, posted)) == _fields(Activity().deserialize(posted))
    assert posted == json.loads(json.dumps(POSTED[index]))  # the posted JSON is left as it was


def test_a_conversation_reference_both_ways() -> None:
    model = TurnContext.get_conversation_reference(Activity().deserialize(INBOUND))
    reference = to_json(model)  # what the bot keeps for proactive messages

    assert reference == model.serialize()
    assert _fields(from_json(ConversationReference, reference)) == _fields(ConversationReference.deserialize(reference))


@pytest.mark.parametrize(
    "posted",
    [
        {"type": "message", "from": "not an account"},
        {"type": "message", "entities": {"not": "a list"}},
        {"type": "message", "timestamp": "yesterday"},
    ],
)
def test_from_json_refuses_what_msrest_refuses(posted: dict[str, Any]) -> None:
    with pytest.raises(DeserializationError):
        Activity().deserialize(posted)
    with pytest.raises(DeserializationError):
        from_json(Activity, posted)


def test_plain_activities_never_reach_msrests_generic_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast paths are taken for what the bot really sends and receives (the tests above would still
    pass with them switched off: msrest's output is the same, only slower)."""
    from msrest.serialization import Deserializer

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("handed to msrest")

    inbound, prompt, text = _activities()[:3]
    client_models = {name: value for name, value in models.__dict__.items() if isinstance(value, type)}
    expected = [to_json(a) for a in (inbound, prompt, text)]
    monkeypatch.setattr(Serializer, "_serialize", refuse)
    monkeypatch.setattr(Serializer, "body", refuse)
    monkeypatch.setattr(Deserializer, "__call__", refuse)
    monkeypatch.setattr(Deserializer, "_deserialize", refuse)

    assert [to_json(a) for a in (inbound, prompt, text)] == expected
    assert PlainBodySerializer(client_models).body(prompt, "Activity") == expected[1]
    assert from_json(Activity, json.loads(json.dumps(INBOUND))).text == INBOUND["text"]
