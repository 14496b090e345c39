"""The one rule for a hub's handoff.status (bot_logic/handoff.verified_status): each refusal, and acceptance.

Any Direct Line client can post an event named handoff.status; these are the forgeries and replays
it could try, each refused for its own reason, and the genuine statuses that get through."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot_logic.handoff import (
    ACCEPTED,
    COMPLETED,
    FAILED,
    HANDOFF_KEY,
    HandoffStatus,
    signed_status,
    start_handoff,
    status_payload,
    verified_status,
)
from bot_logic.signing import digest

KEY = "hub-key-" + "k" * 32
NOW = 1_800_000_000.0
CONVERSATION = "conv-1"


def record_with_handoff(state: str = "waiting") -> dict[str, Any]:
    record: dict[str, Any] = {}
    start_handoff(record, "the user asked for a person", NOW - 10, 300)
    record[HANDOFF_KEY]["state"] = state
    return record


def handoff_id(record: dict[str, Any]) -> str:
    handoff_id: str = record[HANDOFF_KEY]["id"]
    return handoff_id


def signed(record: dict[str, Any], state: str = ACCEPTED, key: str = KEY, **changes: Any) -> dict[str, str]:
    payload = status_payload(CONVERSATION, handoff_id(record), state, NOW, agent_name="Ada", message="hi")
    payload.update(changes)
    return signed_status(payload, key)


def reason(value: object, record: dict[str, Any], now: float = NOW, conversation: str = CONVERSATION) -> str | None:
    status, why = verified_status(value, conversation, record, KEY, now)
    assert (status is None) == (why is not None)
    return why


def test_a_genuine_accept_is_acted_on_with_the_hubs_agent_name() -> None:
    record = record_with_handoff()
    status, why = verified_status(signed(record), CONVERSATION, record, KEY, NOW)
    assert why is None
    assert status == HandoffStatus(state=ACCEPTED, message="hi", agent_name="Ada")


@pytest.mark.parametrize(
    ("current", "state"), [("waiting", ACCEPTED), ("waiting", FAILED), ("accepted", COMPLETED), ("accepted", FAILED)]
)
def test_every_legal_step_is_acted_on(current: str, state: str) -> None:
    record = record_with_handoff(current)
    assert reason(signed(record, state), record) is None


def test_an_unsigned_status_is_refused() -> None:
    record = record_with_handoff()
    # What an attacker posted in the attack: a plain value, and a `from` that names an agent.
    assert reason({"state": "accepted"}, record) == "it is not signed"
    assert reason(None, record) == "it is not signed"
    assert reason("accepted", record) == "it is not signed"
    assert reason({"payload": {"state": "accepted"}, "signature": "00"}, record) == "it is not signed"


def test_a_bad_signature_is_refused() -> None:
    record = record_with_handoff()
    assert reason(signed(record, key="another-key-" + "x" * 32), record) == "its signature does not verify"
    genuine = signed(record)
    forged = json.loads(genuine["payload"]) | {"agentName": "Mallory"}
    assert reason({"payload": json.dumps(forged), "signature": genuine["signature"]}, record) == (
        "its signature does not verify"
    )
    # Signed text that is not a JSON object.
    assert reason({"payload": "[1]", "signature": digest("[1]", KEY)}, record) == "its signature does not verify"


def test_an_expired_or_too_long_lived_status_is_refused() -> None:
    record = record_with_handoff()
    assert reason(signed(record), record, now=NOW + 300) == "it has expired"
    assert reason(signed(record, expiresAt=NOW + 3600), record) == "it would live longer than 600 s"
    assert reason(signed(record, expiresAt=None), record) == "it has no issuedAt and expiresAt times"
    assert reason(signed(record, issuedAt="now"), record) == "it has no issuedAt and expiresAt times"


def test_a_status_for_another_conversation_is_refused() -> None:
    record = record_with_handoff()
    assert reason(signed(record), record, conversation="conv-2") == "it was signed for another conversation"


def test_a_status_of_another_or_an_earlier_handoff_is_refused() -> None:
    earlier = record_with_handoff()
    replayed = signed(earlier)
    later = record_with_handoff()  # the same conversation handed off again: a fresh id
    assert handoff_id(later) != handoff_id(earlier)
    assert reason(replayed, later) == "it was signed for another handoff"
    assert reason(signed(later, handoffId=None), later) == "it was signed for another handoff"
    assert reason(replayed, {}) == "no handoff is active in this conversation"
    assert reason(replayed, {HANDOFF_KEY: None}) == "no handoff is active in this conversation"


@pytest.mark.parametrize(
    ("current", "state"),
    [("waiting", COMPLETED), ("accepted", ACCEPTED), ("waiting", "waiting"), ("accepted", "joined")],
)
def test_a_step_the_handoff_cannot_take_is_refused(current: str, state: str) -> None:
    record = record_with_handoff(current)
    assert reason(signed(record, state), record) == f"{state!r} is not a step a {current} handoff can take"


def test_names_and_messages_are_bounded_and_optional() -> None:
    record = record_with_handoff()
    status, _ = verified_status(signed(record, agentName="A" * 500, message=7), CONVERSATION, record, KEY, NOW)
    assert status is not None and status.agent_name == "A" * 64 and status.message is None
    status, _ = verified_status(signed(record, agentName="   "), CONVERSATION, record, KEY, NOW)
    assert status is not None and status.agent_name is None
