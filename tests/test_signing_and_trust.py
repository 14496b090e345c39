"""The signature check and the bot's decision to trust an operation event."""

from __future__ import annotations

from botbuilder.schema import Activity

from bot_logic.operation_events import refusal_reason
from bot_logic.operation_messages import PROGRESS_EVENT, RESULT_EVENT, result_payload
from services.signing import sign, signature_valid

KEY = "k" * 40
REQUEST = {
    "operationId": "op-1",
    "operation": "prime report",
    "conversation": {"conversation": {"id": "conv-1"}, "serviceUrl": "http://127.0.0.1:1/"},
    "deadline": 1000.0,
}


def event(value: object, name: str = RESULT_EVENT) -> Activity:
    return Activity(type="event", name=name, value=value)


def test_signed_payload_verifies_and_any_change_breaks_it() -> None:
    signed = sign(result_payload(REQUEST, "succeeded", "42 primes"), KEY)
    assert signature_valid(signed, KEY)
    assert not signature_valid(signed, "x" * 40)
    for field, forged in [
        ("text", "43 primes"),
        ("outcome", "failed"),
        ("operationId", "op-2"),
        ("expiresAt", 99999.0),
        ("conversation", {"conversation": {"id": "someone-else"}, "serviceUrl": "http://127.0.0.1:1/"}),
    ]:
        assert not signature_valid({**signed, field: forged}, KEY), field
    assert not signature_valid({k: v for k, v in signed.items() if k != "signature"}, KEY)


def test_trusted_event_has_no_refusal_reason() -> None:
    signed = sign(result_payload(REQUEST, "succeeded", "ok"), KEY)
    assert refusal_reason(event(signed), KEY, now=999.0) is None


def test_refusals_name_their_reason() -> None:
    signed = sign(result_payload(REQUEST, "succeeded", "ok"), KEY)
    assert refusal_reason(event("text"), KEY, 0) == "its value is not an object"
    assert refusal_reason(event({**signed, "text": "forged"}), KEY, 0) == "its signature does not verify"
    assert refusal_reason(event(signed), KEY, now=1000.0) == "it has expired"
    # A genuine result replayed as a progress event, or vice versa, is refused.
    assert refusal_reason(event(signed, PROGRESS_EVENT), KEY, 0) == "it was signed for another event"
    unsigned_forgery = result_payload(REQUEST, "succeeded", "you won")
    assert refusal_reason(event(unsigned_forgery), KEY, 0) == "its signature does not verify"
