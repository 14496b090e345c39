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


def test_the_default_closing_notice_names_the_idle_time_in_words() -> None:
    from services.settings import load_settings
    from tests.unit.test_settings import VALID

    default_text = load_settings(VALID).expiry_notice_text
    assert ExpiryPolicy(1800, True, default_text).notice() == (
        "This conversation was closed after 30 min without activity. Send anything to start again."
    )
    assert ExpiryPolicy(90, True, default_text).notice() == (
        "This conversation was closed after 1 min 30 s without activity. Send anything to start again."
    )


def test_the_notice_in_minutes_rounds_and_never_says_zero() -> None:
    minutes = "Closed after {minutes} minutes ({duration})."
    assert ExpiryPolicy(20, True, minutes).notice() == "Closed after 1 minutes (20 s)."
    assert ExpiryPolicy(150, True, minutes).notice() == "Closed after 2 minutes (2 min 30 s)."
    assert ExpiryPolicy(3600, True, minutes).notice() == "Closed after 60 minutes (60 min)."
    assert ExpiryPolicy(3600, False, minutes).notice() is None


def test_a_timeout_the_sweeper_told_is_not_told_again_by_the_next_turn() -> None:
    import json

    from bot_logic.pending_operation import timeout_notice_once

    record = {"lastAccessAt": NOW - 10, "pendingOperation": pending(NOW), "expiredAt": None}
    state = {RECORD_PROPERTY: record}
    decision = sweep(state, NOW, replace(POLICY, expire_after_seconds=3600))
    assert decision is not None and len(decision.texts) == 1
    stored = json.loads(json.dumps(state))  # as the next turn reads it back from storage
    assert timeout_notice_once(stored[RECORD_PROPERTY]["pendingOperation"]) is None


def test_a_conversation_expiring_in_the_sweep_that_fails_back_its_handoff_withdraws_it_too() -> None:
    from bot_logic.handoff import start_handoff, timed_out_text

    record = {"lastAccessAt": NOW - 7200, "pendingOperation": None, "expiredAt": None}
    start_handoff(record, "asked for a person", NOW - 200, timeout_seconds=120)
    state = {RECORD_PROPERTY: record}
    decision = sweep(state, NOW, POLICY)
    assert decision is not None and decision.expired
    assert decision.withdraw_handoff
    assert decision.texts == [timed_out_text(POLICY.handoff_timeout_seconds), "Closed after 5 minutes."]
