"""The operation a conversation waits for: what the user is told of it, when, and whether its work goes on."""

from __future__ import annotations

from typing import Any

import pytest

from bot_logic.pending_operation import (
    describe_duration,
    progress_message_due,
    progress_text,
    result_reply,
    start_pending,
    still_waiting,
    timeout_notice_once,
)

REFERENCE = {"serviceUrl": "https://dl.example/", "channelId": "directline", "conversation": {"id": "c1"}}


def pending(**changes: Any) -> Any:
    return {**start_pending("prime report", {"end": 10}, 100.0, 600, REFERENCE), **changes}


def test_a_pending_operation_keeps_its_own_copy_of_the_reference() -> None:
    started = start_pending("prime report", {"end": 10}, 100.0, 600, REFERENCE)
    assert (started["startedAt"], started["deadline"], started["parameters"]) == (100.0, 700.0, {"end": 10})
    assert started["reference"] == REFERENCE and started["reference"] is not REFERENCE
    assert started["id"] != start_pending("prime report", {}, 100.0, 600, REFERENCE)["id"]


@pytest.mark.parametrize(
    ("seconds", "said"), [(-3, "0 s"), (0, "0 s"), (59.9, "59 s"), (60, "1 min"), (90, "1 min 30 s"), (600, "10 min")]
)
def test_durations_in_words(seconds: float, said: str) -> None:
    assert describe_duration(seconds) == said


def test_a_timeout_is_told_once() -> None:
    waiting = pending()
    assert timeout_notice_once(waiting) == "Sorry, the prime report timed out: no result came within 10 min."
    assert timeout_notice_once(waiting) is None
    assert waiting["timeoutNotified"] is True


def test_progress_messages_come_now_and_then_up_to_a_limit() -> None:
    waiting = pending()
    assert not progress_message_due(waiting, 114.0, limit=2, gap_seconds=15)  # too soon after the start
    assert progress_message_due(waiting, 115.0, limit=2, gap_seconds=15)
    assert not progress_message_due(waiting, 129.0, limit=2, gap_seconds=15)  # too soon after the last
    assert progress_message_due(waiting, 130.0, limit=2, gap_seconds=15)
    assert not progress_message_due(waiting, 500.0, limit=2, gap_seconds=15)  # the limit reached
    assert not progress_message_due(pending(), 500.0, limit=0, gap_seconds=15)  # 0: typing only


@pytest.mark.parametrize(("percent", "done"), [(40, 40), (0, 0), (100, 100), (101, 0), (-1, 0), ("40", 0), (None, 0)])
def test_progress_text(percent: object, done: int) -> None:
    assert progress_text(pending(), percent) == f"Still working on the prime report: {done}% done."


def test_what_the_user_is_told_of_a_result() -> None:
    succeeded = {"outcome": "succeeded", "text": "42 primes"}
    assert result_reply("prime report", succeeded) == "Thanks for waiting. 42 primes"
    assert result_reply("prime report", {"outcome": "failed", "text": "No."}) == "Sorry, the prime report failed. No."
    assert result_reply("prime report", {"outcome": "failed"}) == "Sorry, the prime report failed."


def test_the_work_goes_on_only_while_the_conversation_waits_for_it() -> None:
    state = {"ConversationRecord": {"pendingOperation": {"id": "op-1"}}}
    assert still_waiting(state, "op-1")
    assert not still_waiting(state, "op-2")  # a new start replaced it
    assert not still_waiting({"ConversationRecord": {"pendingOperation": None}}, "op-1")  # cancelled, expired
    assert not still_waiting(None, "op-1")  # the conversation is gone
    assert not still_waiting({"ConversationRecord": "damaged"}, "op-1")
