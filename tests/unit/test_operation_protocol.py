"""The messages between the bot and the worker: the signature check and the decision to trust an event."""

from __future__ import annotations

import json

from botbuilder.schema import Activity

from bot_logic.operation_protocol import (
    PROGRESS_EVENT,
    RESULT_EVENT,
    progress_payload,
    result_payload,
    sign,
    trusted_payload,
    verified_payload,
)

KEY = "k" * 40
REQUEST = {
    "operationId": "op-1",
    "operation": "prime report",
    "conversation": {"conversation": {"id": "conv-1"}, "serviceUrl": "http://127.0.0.1:1/", "user": {"properties": {}}},
    "deadline": 1000.0,
}


def event(value: object, name: str = RESULT_EVENT) -> Activity:
    return Activity(type="event", name=name, value=value)


def tampered(value: dict[str, str], **changes: object) -> dict[str, str]:
    payload = json.loads(value["payload"])
    payload.update(changes)
    return {"payload": json.dumps(payload), "signature": value["signature"]}


def test_signed_payload_verifies_and_any_change_breaks_it() -> None:
    payload = result_payload(REQUEST, "succeeded", "42 primes — ünïcode ✓")
    signed = sign(payload, KEY)
    assert verified_payload(signed, KEY) == payload
    assert verified_payload(signed, "x" * 40) is None
    for field, forged in [
        ("text", "43 primes"),
        ("outcome", "failed"),
        ("operationId", "op-2"),
        ("expiresAt", 99999.0),
        ("conversation", {"conversation": {"id": "someone-else"}, "serviceUrl": "http://127.0.0.1:1/"}),
    ]:
        assert verified_payload(tampered(signed, **{field: forged}), KEY) is None, field
    assert verified_payload({"payload": signed["payload"]}, KEY) is None
    assert verified_payload(payload, KEY) is None  # an object, not signed text


def test_survives_a_channel_that_reserialises_objects() -> None:
    # Direct Line may drop empty objects or reformat numbers inside event values; the signed text is untouched.
    signed = sign(result_payload(REQUEST, "succeeded", "ok"), KEY)
    travelled = json.loads(json.dumps(signed, indent=2))
    assert verified_payload(travelled, KEY) is not None


def test_trusted_event_is_accepted() -> None:
    trusted = event(sign(result_payload(REQUEST, "succeeded", "ok"), KEY))
    payload, reason = trusted_payload(trusted.name, trusted.value, KEY, now=999.0)
    assert reason is None and payload is not None and payload["text"] == "ok"


def test_refusals_name_their_reason() -> None:
    signed = sign(result_payload(REQUEST, "succeeded", "ok"), KEY)

    def reason(activity: Activity, now: float = 0) -> str | None:
        return trusted_payload(activity.name, activity.value, KEY, now)[1]

    assert reason(event("text")) == "its signature does not verify"
    assert reason(event(tampered(signed, text="forged"))) == "its signature does not verify"
    assert reason(event(signed), now=1000.0) == "it has expired"
    # A genuine result replayed as a progress event is refused.
    assert reason(event(signed, PROGRESS_EVENT)) == "it was signed for another event"
    assert reason(event(result_payload(REQUEST, "succeeded", "you won"))) == "its signature does not verify"


def test_a_reply_address_matches_only_the_stored_conversation() -> None:
    from bot_logic.operation_protocol import reply_address_matches

    stored = {
        "serviceUrl": "https://directline.botframework.com/",
        "channelId": "directline",
        "conversation": {"id": "c1"},
        "bot": {"id": "bot"},
        "user": {"id": "dl_1"},
    }
    assert reply_address_matches({**stored, "user": {"id": "dl_1", "name": "Ada"}, "locale": "en"}, stored)
    for changed in (
        {"serviceUrl": "https://evil.example/"},
        {"channelId": "webchat"},
        {"conversation": {"id": "c2"}},
        {"bot": {"id": "other-bot"}},
    ):
        assert not reply_address_matches({**stored, **changed}, stored), changed
    assert not reply_address_matches(None, stored)
    assert not reply_address_matches(stored, None)


def test_an_operation_event_is_told_only_in_the_conversation_waiting_for_it_at_its_stored_address() -> None:
    from bot_logic.pending_operation import operation_event_refusal

    reference = {"serviceUrl": "https://dl.example/", "channelId": "directline", "conversation": {"id": "c1"}}
    record = {"pendingOperation": {"id": "op-1", "reference": reference}, "reference": reference}
    assert operation_event_refusal({"operationId": "op-1", "conversation": reference}, record) is None
    assert operation_event_refusal({"operationId": "op-2", "conversation": reference}, record) == (
        "the conversation is not waiting for it"
    )
    assert operation_event_refusal({"operationId": "op-1", "conversation": reference}, {"pendingOperation": None})
    elsewhere = {**reference, "serviceUrl": "https://evil.example/"}
    assert operation_event_refusal({"operationId": "op-1", "conversation": elsewhere}, record) == (
        "the reply address it carries is not the conversation's"
    )


def test_the_signed_fields_the_worker_sends_are_the_ones_the_bot_reads() -> None:
    """The worker and the bot may run different versions for a moment: the fields are a contract."""
    from bot_logic.pending_operation import progress_text, result_reply

    common = {
        "operationId": "op-1",
        "operation": "prime report",
        "conversation": REQUEST["conversation"],
        "expiresAt": 1000.0,
    }
    progress = progress_payload(REQUEST, 40)
    result = result_payload(REQUEST, "succeeded", "42 primes")
    assert progress == {**common, "event": PROGRESS_EVENT, "percent": 40}
    assert result == {**common, "event": RESULT_EVENT, "outcome": "succeeded", "text": "42 primes"}

    pending = {"id": "op-1", "name": "prime report"}
    read_progress, _ = trusted_payload(PROGRESS_EVENT, sign(progress, KEY), KEY, now=999.0)
    read_result, _ = trusted_payload(RESULT_EVENT, sign(result, KEY), KEY, now=999.0)
    assert read_progress is not None and read_result is not None
    assert read_progress["operationId"] == read_result["operationId"] == pending["id"]
    assert progress_text(pending, read_progress["percent"]) == "Still working on the prime report: 40% done."
    assert result_reply(pending["name"], read_result) == "Thanks for waiting. 42 primes"
    failed = result_payload(REQUEST, "failed", "The store is closed.")
    assert result_reply("prime report", failed) == "Sorry, the prime report failed. The store is closed."


def test_the_queue_message_of_a_pending_operation_is_what_the_worker_reads() -> None:
    from bot_logic.operation_protocol import operation_request, parse_operation_request
    from bot_logic.pending_operation import start_pending

    reference = {"serviceUrl": "https://dl.example/", "channelId": "directline", "conversation": {"id": "c1"}}
    pending = start_pending("prime report", {"end": 1000}, 100.0, 600, reference)
    message = operation_request(pending)
    assert message == {
        "operationId": pending["id"],
        "operation": "prime report",
        "parameters": {"end": 1000},
        "conversation": reference,
        "deadline": 700.0,
    }
    assert parse_operation_request(json.dumps(message).encode()) == message
    assert operation_request({**pending, "parameters": {}})["parameters"] == {}
