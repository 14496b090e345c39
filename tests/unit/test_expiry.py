"""The expiry rule and the sweeper's decision, without storage: plain state and a number for now."""

from __future__ import annotations

from dataclasses import replace

from bot_logic.conversation_record import DIALOG_STATE_PROPERTY, RECORD_PROPERTY
from bot_logic.expiry import ExpiryPolicy, is_expired, sweep, sweep_times

EXPIRE = 300
NOW = 1_800_000_000.0
POLICY = ExpiryPolicy(EXPIRE, notice_enabled=True, notice_text="Closed after {minutes} minutes.")


def test_expiry_decision() -> None:
    record = {"lastAccessAt": 1000.0, "pendingOperation": None, "expiredAt": None}
    assert not is_expired(record, EXPIRE, 1299.0)
    assert is_expired(record, EXPIRE, 1300.0)
    in_flight = {**record, "pendingOperation": {"deadline": 2000.0}}
    assert not is_expired(in_flight, EXPIRE, 1999.0)
    assert is_expired(in_flight, EXPIRE, 2000.0)
    assert is_expired({**record, "expiredAt": 1100.0}, EXPIRE, 1000.0)


def pending(deadline: float, **extra: object) -> dict[str, object]:
    return {"id": "op-1", "name": "prime report", "startedAt": deadline - 600, "deadline": deadline, **extra}


def test_when_the_sweeper_looks_and_how_long_a_conversation_is_kept() -> None:
    idle = {RECORD_PROPERTY: {"lastAccessAt": NOW, "pendingOperation": None}}
    assert sweep_times(idle, EXPIRE) == (NOW + EXPIRE, None)
    busy = {RECORD_PROPERTY: {"lastAccessAt": NOW, "pendingOperation": pending(NOW + 900)}}
    assert sweep_times(busy, EXPIRE) == (NOW + 900, NOW + 900)  # at the deadline, to tell a timeout
    told = {RECORD_PROPERTY: {"lastAccessAt": NOW, "pendingOperation": pending(NOW + 100, timeoutNotified=True)}}
    assert sweep_times(told, EXPIRE) == (NOW + EXPIRE, NOW + 100)
    assert sweep_times({RECORD_PROPERTY: {"lastAccessAt": NOW, "expiredAt": NOW}}, EXPIRE) == (None, None)
    assert sweep_times({}, EXPIRE) == (None, None)


def test_an_expired_conversation_is_closed_keeping_only_a_marker_and_the_etag() -> None:
    record = {"lastAccessAt": NOW - EXPIRE, "reference": {"r": 1}, "pendingOperation": None, "expiredAt": None}
    state = {RECORD_PROPERTY: record, DIALOG_STATE_PROPERTY: {"stack": ["x"]}, "e_tag": "v1"}
    decision = sweep(state, NOW, POLICY)
    assert decision is not None and decision.expired and decision.texts == ["Closed after 5 minutes."]
    assert set(state) == {RECORD_PROPERTY, "e_tag"}
    assert state[RECORD_PROPERTY]["expiredAt"] == NOW and state[RECORD_PROPERTY]["reference"] == {"r": 1}


def test_an_overdue_operation_in_an_active_conversation_is_told_once_and_nothing_else_changes() -> None:
    record = {"lastAccessAt": NOW - 10, "pendingOperation": pending(NOW), "expiredAt": None}
    state = {RECORD_PROPERTY: record, DIALOG_STATE_PROPERTY: {"stack": ["wait"]}}
    long_idle = replace(POLICY, expire_after_seconds=3600)
    first = sweep(state, NOW, long_idle)
    assert first is not None and not first.expired
    assert first.texts == ["Sorry, the prime report timed out: no result came within 10 min."]
    assert state[DIALOG_STATE_PROPERTY] == {"stack": ["wait"]}
    assert sweep(state, NOW, long_idle) is None  # told once: not due again before it expires


def test_closing_tells_an_untold_timeout_first_and_no_notice_when_disabled() -> None:
    record = {"lastAccessAt": NOW - 7200, "pendingOperation": pending(NOW - 60), "expiredAt": None}
    quiet = replace(POLICY, notice_enabled=False)
    decision = sweep({RECORD_PROPERTY: record}, NOW, quiet)
    assert decision is not None and decision.expired
    assert decision.texts == ["Sorry, the prime report timed out: no result came within 10 min."]
