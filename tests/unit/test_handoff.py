"""Human handoff without a channel: what counts as asking for a person, the SDK's event shapes,
and a handoff nobody accepts, failed back by the sweeper."""

from __future__ import annotations

import pytest
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount

from bot_logic.conversation_record import DIALOG_STATE_PROPERTY, RECORD_PROPERTY
from bot_logic.expiry import ExpiryPolicy, is_expired, sweep, sweep_times
from bot_logic.handoff import (
    FAILED,
    INITIATE_EVENT,
    STATUS_EVENT,
    TRANSCRIPT_CONTENT_TYPE,
    asks_for_a_person,
    initiation_event,
    note_misunderstanding,
    note_understood,
    start_handoff,
    status_event,
    withdrawal_payload,
)

NOW = 1_800_000_000.0
POLICY = ExpiryPolicy(1800, notice_enabled=True, notice_text="Closed.", handoff_timeout_seconds=120)


@pytest.mark.parametrize(
    "text",
    ["agent", "Human", "talk to someone", "I want to speak with a person", "Can I talk to a real person?", "operator"],
)
def test_asking_for_a_person(text: str) -> None:
    assert asks_for_a_person(text)


@pytest.mark.parametrize(
    "text", ["prime report", "hi", "", None, "agent of change report", "the person who wrote this is great"]
)
def test_other_messages_are_not_a_request(text: str | None) -> None:
    assert not asks_for_a_person(text)


def test_three_misunderstandings_in_a_row_hand_off_and_an_understood_one_resets_the_count() -> None:
    record: dict[str, object] = {}
    assert not note_misunderstanding(record, 3) and not note_misunderstanding(record, 3)
    note_understood(record)
    assert not note_misunderstanding(record, 3) and not note_misunderstanding(record, 3)
    assert note_misunderstanding(record, 3)
    assert not any(note_misunderstanding(record, 0) for _ in range(5))  # 0: never


def user_message() -> Activity:
    return Activity(
        type="message",
        id="m-7",
        text="agent",
        channel_id="directline",
        service_url="http://127.0.0.1:7072/",
        conversation=ConversationAccount(id="conv-1"),
        from_property=ChannelAccount(id="user-1", name="Ada", role="user"),
        recipient=ChannelAccount(id="bot", role="bot"),
    )


def test_initiation_event_has_the_sdk_event_factory_shape() -> None:
    transcript = [{"type": "message", "text": "hello"}]
    event = initiation_event(user_message(), {"reason": "asked"}, transcript).serialize()
    assert event["type"] == "event" and event["name"] == INITIATE_EVENT == "handoff.initiate"
    assert event["value"] == {"reason": "asked"}
    assert event["conversation"]["id"] == "conv-1" and event["replyToId"] == "m-7"
    assert event["relatesTo"]["conversation"]["id"] == "conv-1"
    assert event["attachments"] == [{"contentType": TRANSCRIPT_CONTENT_TYPE, "content": {"activities": transcript}}]
    assert event["id"] and event["timestamp"]


def test_status_event_shape() -> None:
    event = status_event(ConversationAccount(id="c"), FAILED, "timed out").serialize()
    assert (event["name"], event["value"]) == (STATUS_EVENT, {"state": "failed", "message": "timed out"})


def test_a_handoff_nobody_accepts_is_failed_back_by_the_sweeper_and_withdrawn_from_the_channel() -> None:
    record = {"lastAccessAt": NOW, "pendingOperation": None, "expiredAt": None, "reference": {}}
    start_handoff(record, "asked", NOW, POLICY.handoff_timeout_seconds)
    state = {RECORD_PROPERTY: record, DIALOG_STATE_PROPERTY: {"stack": ["prompt"]}}
    assert sweep_times(state, POLICY.expire_after_seconds).sweep_at == NOW + 120  # before the expiry
    assert sweep(state, NOW + 119, POLICY) is None
    decision = sweep(state, NOW + 120, POLICY)
    assert decision is not None and not decision.expired and decision.withdraw_handoff
    assert decision.texts == [
        "Sorry, no person was available within 2 min. You're back with the bot: send anything to go on."
    ]
    assert state[RECORD_PROPERTY]["handoff"] is None
    assert DIALOG_STATE_PROPERTY not in state  # the next message starts the dialog afresh
    assert sweep_times(state, POLICY.expire_after_seconds).sweep_at == NOW + 1800


def test_an_accepted_handoff_is_not_failed_back() -> None:
    record = {"lastAccessAt": NOW, "pendingOperation": None, "expiredAt": None}
    start_handoff(record, "asked", NOW, 120)
    record["handoff"]["state"] = "accepted"
    assert sweep_times({RECORD_PROPERTY: record}, 1800).sweep_at is None  # until the person hands back


def test_the_withdrawal_is_addressed_to_the_stored_conversation() -> None:
    from botbuilder.core import TurnContext

    reference = TurnContext.get_conversation_reference(user_message()).serialize()
    payload = withdrawal_payload(reference)
    assert payload["name"] == STATUS_EVENT and payload["value"]["state"] == FAILED
    assert payload["conversation"]["id"] == "conv-1" and payload["recipient"]["id"] == "user-1"
    assert payload["from"]["id"] == "bot" and payload["serviceUrl"] == "http://127.0.0.1:7072/"


def test_failing_back_keeps_the_dialog_that_waits_for_a_running_operation() -> None:
    operation = {"id": "op-1", "name": "prime report", "startedAt": NOW, "deadline": NOW + 600}
    record = {"lastAccessAt": NOW, "pendingOperation": operation, "expiredAt": None, "reference": {}}
    start_handoff(record, "asked", NOW, POLICY.handoff_timeout_seconds)
    state = {RECORD_PROPERTY: record, DIALOG_STATE_PROPERTY: {"stack": ["wait for the operation"]}}
    decision = sweep(state, NOW + 120, POLICY)
    assert decision is not None and decision.withdraw_handoff
    assert state[DIALOG_STATE_PROPERTY] == {"stack": ["wait for the operation"]}  # its result is still told
    assert state[RECORD_PROPERTY]["pendingOperation"] == operation


def test_a_quiet_user_talking_to_a_person_is_not_expired() -> None:
    record = {"lastAccessAt": NOW, "pendingOperation": None, "expiredAt": None}
    start_handoff(record, "asked", NOW, 120)
    record["handoff"]["state"] = "accepted"
    assert not is_expired(record, 1800, NOW + 10 * 1800)
    assert sweep({RECORD_PROPERTY: record}, NOW + 10 * 1800, POLICY) is None


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_the_handoff_is_offered_at_exactly_the_limit_and_counted_afresh_after_a_handoff(limit: int) -> None:
    from bot_logic.handoff import end_handoff

    record: dict[str, object] = {}
    told = [note_misunderstanding(record, limit) for _ in range(limit)]
    assert told == [False] * (limit - 1) + [True]
    start_handoff(record, "misunderstood", 0.0, 120)
    assert [note_misunderstanding(record, limit) for _ in range(limit)][-1]
    end_handoff(record)
    assert [note_misunderstanding(record, limit) for _ in range(limit)] == [False] * (limit - 1) + [True]


def test_a_declined_offer_starts_the_count_again_and_no_answer_lets_the_offer_lapse() -> None:
    from bot_logic.handoff import answer_offer, offer_handoff

    record: dict[str, object] = {}
    assert answer_offer(record, True) is None  # nothing was offered
    for _ in range(3):
        note_misunderstanding(record, 3)
    offer_handoff(record)
    assert answer_offer(record, False) is False
    assert not note_misunderstanding(record, 3)  # counted from one again
    offer_handoff(record)
    assert answer_offer(record, None) is None
    assert answer_offer(record, True) is None  # lapsed: a later "yes" is an ordinary message
    offer_handoff(record)
    assert answer_offer(record, True) is True
