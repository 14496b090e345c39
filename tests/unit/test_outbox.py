"""The outbox as an operator sees it: every committed effect is sent once, in order, by whoever holds
its lease; a failing or hanging channel costs a retry with a growing back-off, never the other
entries; an effect past its deadline is logged as lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import services.turns.outbox as outbox_module
from services.turns.outbox import (
    LEASE_SECONDS,
    OPERATION,
    OUTBOX_PROPERTY,
    REPLY,
    Delivery,
    Outbox,
    add_entry,
    claim_due,
    entries,
    last_deadline,
    next_attempt_at,
    reply_activity,
)
from tests.support.clock import FakeClock

REFERENCE = {
    "serviceUrl": "https://directline.example/",
    "channelId": "directline",
    "conversation": {"id": "c-1"},
    "bot": {"id": "bot", "name": "Bot"},
    "user": {"id": "u-1", "name": "User"},
}


class Channel:
    """Records what is sent; a payload whose text is in `failing` raises, one in `hanging` never returns."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.failing: set[str] = set()
        self.hanging: set[str] = set()

    async def __call__(self, payload: dict[str, Any]) -> None:
        if payload.get("text") in self.failing:
            raise ConnectionError("the channel is not answering")
        if payload.get("text") in self.hanging:
            await asyncio.Event().wait()
        self.sent.append(payload)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def channel() -> Channel:
    return Channel()


@pytest.fixture
def queue() -> Channel:
    return Channel()


@pytest.fixture
def outbox(queue: Channel, clock: FakeClock) -> Outbox:
    return Outbox(queue, clock)


def reply(text: str) -> dict[str, Any]:
    return reply_activity(REFERENCE, text)


async def send_all(outbox: Outbox, state: dict[str, Any], ids: list[str], channel: Channel) -> Delivery:
    delivery = Delivery()
    await outbox.deliver(state, ids, channel, "c-1", delivery)
    delivery.apply(state)
    return delivery


@pytest.fixture
def uniform_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Pins the back-off's jitter to one end of its range: ["low"] or ["high"]."""
    end = ["high"]
    monkeypatch.setattr(outbox_module.random, "uniform", lambda a, b: a if end[0] == "low" else b)
    yield end


def test_a_durable_reply_is_a_message_to_the_stored_conversation() -> None:
    payload = reply("Your report is ready.")
    assert payload["type"] == "message"
    assert payload["text"] == "Your report is ready."
    assert payload["conversation"]["id"] == "c-1"
    assert payload["recipient"]["id"] == "u-1"
    assert payload["from"]["id"] == "bot"
    assert payload["serviceUrl"] == REFERENCE["serviceUrl"]


def test_each_entry_has_its_own_id_and_is_leased_to_whoever_commits_it(clock: FakeClock) -> None:
    state: dict[str, Any] = {}
    ids = [add_entry(state, REPLY, reply(f"r{n}"), clock.now, clock.now + 600) for n in range(3)]
    assert len(set(ids)) == 3
    assert [entry["id"] for entry in entries(state)] == ids
    assert [entry["attempts"] for entry in entries(state)] == [0, 0, 0]
    # The committer sends them now; nobody else may claim them before the lease ends.
    assert claim_due(state, clock.now) == []
    assert claim_due(state, clock.now + LEASE_SECONDS - 1) == []
    assert next_attempt_at(state) == clock.now + LEASE_SECONDS
    assert claim_due(state, clock.now + LEASE_SECONDS) == ids


def test_a_claimed_entry_is_leased_again_so_a_second_sender_leaves_it_alone(clock: FakeClock) -> None:
    state: dict[str, Any] = {}
    entry_id = add_entry(state, REPLY, reply("once"), clock.now, clock.now + 3600)
    later = clock.now + LEASE_SECONDS + 10
    assert claim_due(state, later) == [entry_id]  # the sweeper, say
    assert claim_due(state, later) == []  # another instance at the same moment
    assert claim_due(state, later + LEASE_SECONDS - 1) == []
    assert claim_due(state, later + LEASE_SECONDS) == [entry_id]


def test_no_entries_means_nothing_due_and_no_deadline_to_keep() -> None:
    assert next_attempt_at({}) is None
    assert last_deadline({}) is None
    assert claim_due({}, 0.0) == []


def test_storage_keeps_the_conversation_until_the_last_deadline_and_wakes_for_the_first_due(clock: FakeClock) -> None:
    state: dict[str, Any] = {}
    add_entry(state, REPLY, reply("a"), clock.now, clock.now + 900)
    add_entry(state, REPLY, reply("b"), clock.now + 50, clock.now + 300)
    assert last_deadline(state) == clock.now + 900
    assert next_attempt_at(state) == clock.now + LEASE_SECONDS


async def test_every_entry_is_sent_in_order_and_removed(outbox: Outbox, channel: Channel, clock: FakeClock) -> None:
    state: dict[str, Any] = {"other": 1}
    ids = [add_entry(state, REPLY, reply(text), clock.now, clock.now + 600) for text in ("one", "two", "three")]
    delivery = await send_all(outbox, state, ids, channel)
    assert [payload["text"] for payload in channel.sent] == ["one", "two", "three"]
    assert delivery.delivered == set(ids) and delivery.changed
    assert state == {"other": 1}


async def test_one_failing_entry_does_not_hold_back_the_others(
    outbox: Outbox, channel: Channel, clock: FakeClock, uniform_at: list[str]
) -> None:
    state: dict[str, Any] = {}
    ids = [add_entry(state, REPLY, reply(text), clock.now, clock.now + 600) for text in ("one", "two", "three")]
    channel.failing.add("one")
    delivery = await send_all(outbox, state, ids, channel)
    assert [payload["text"] for payload in channel.sent] == ["two", "three"]
    [kept] = entries(state)
    assert kept["id"] == ids[0]
    assert kept["attempts"] == 1
    assert kept["nextAttemptAt"] == clock.now + 5.0
    assert delivery.delivered == {ids[1], ids[2]}


async def test_operation_requests_go_to_the_queue_and_replies_to_the_channel(
    outbox: Outbox, channel: Channel, queue: Channel, clock: FakeClock
) -> None:
    state: dict[str, Any] = {}
    request = {"operationId": "op-1", "text": "request"}
    ids = [
        add_entry(state, OPERATION, request, clock.now, clock.now + 600),
        add_entry(state, REPLY, reply("started"), clock.now, clock.now + 600),
    ]
    await send_all(outbox, state, ids, channel)
    assert queue.sent == [request]
    assert [payload["text"] for payload in channel.sent] == ["started"]


async def test_entries_already_handled_this_round_or_unknown_are_not_sent_again(
    outbox: Outbox, channel: Channel, clock: FakeClock
) -> None:
    state: dict[str, Any] = {}
    entry_id = add_entry(state, REPLY, reply("once"), clock.now, clock.now + 600)
    delivery = Delivery()
    await outbox.deliver(state, [entry_id, "no-such-entry"], channel, "c-1", delivery)
    await outbox.deliver(state, [entry_id], channel, "c-1", delivery)
    assert [payload["text"] for payload in channel.sent] == ["once"]


async def test_a_hanging_channel_counts_as_a_failed_attempt(
    outbox: Outbox, channel: Channel, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "SEND_TIMEOUT_SECONDS", 0.01)
    state: dict[str, Any] = {}
    ids = [add_entry(state, REPLY, reply(text), clock.now, clock.now + 600) for text in ("stuck", "next")]
    channel.hanging.add("stuck")
    # The outer bound only turns a hang (no send timeout at all) into a failure of this test.
    delivery = await asyncio.wait_for(send_all(outbox, state, ids, channel), 10)
    assert [payload["text"] for payload in channel.sent] == ["next"]
    assert delivery.retries[ids[0]][0] == 1


async def test_the_back_off_doubles_from_five_seconds_with_jitter_down_to_half_and_caps_at_five_minutes(
    outbox: Outbox, channel: Channel, clock: FakeClock, uniform_at: list[str]
) -> None:
    deadline = clock.now + 100_000
    expected = [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]
    for end, factor in (("high", 1.0), ("low", 0.5)):
        uniform_at[0] = end
        state: dict[str, Any] = {}
        entry_id = add_entry(state, REPLY, reply("down"), clock.now, deadline)
        channel.failing.add("down")
        waits = []
        for _ in expected:
            delivery = await send_all(outbox, state, [entry_id], channel)
            attempts, next_attempt = delivery.retries[entry_id]
            waits.append(next_attempt - clock.now)
        assert attempts == len(expected)
        assert waits == [wait * factor for wait in expected]
        assert entries(state)[0]["attempts"] == len(expected)


async def test_a_retry_is_never_scheduled_past_the_deadline(
    outbox: Outbox, channel: Channel, clock: FakeClock, uniform_at: list[str]
) -> None:
    state: dict[str, Any] = {}
    entry_id = add_entry(state, REPLY, reply("late"), clock.now, clock.now + 3)
    channel.failing.add("late")
    delivery = await send_all(outbox, state, [entry_id], channel)
    assert delivery.retries[entry_id] == (1, clock.now + 3)


async def test_the_failure_reply_is_told_once_after_the_first_failed_attempt(
    outbox: Outbox, channel: Channel, queue: Channel, clock: FakeClock
) -> None:
    state: dict[str, Any] = {}
    sorry = reply("We could not start your operation yet; we keep trying.")
    entry_id = add_entry(state, OPERATION, {"text": "request"}, clock.now, clock.now + 600, failure_reply=sorry)
    queue.failing.add("request")
    first = await send_all(outbox, state, [entry_id], channel)
    second = await send_all(outbox, state, [entry_id], channel)
    assert first.failure_replies == [sorry]
    assert second.failure_replies == []


async def test_an_entry_past_its_deadline_is_logged_as_lost_and_dropped_unsent(
    outbox: Outbox, channel: Channel, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    state: dict[str, Any] = {}
    entry_id = add_entry(state, REPLY, reply("too late"), clock.now, clock.now + 60)
    clock.now += 60
    with caplog.at_level(logging.ERROR, logger="services.turns.outbox"):
        delivery = await send_all(outbox, state, [entry_id], channel)
    assert channel.sent == []
    assert delivery.lost == {entry_id}
    assert OUTBOX_PROPERTY not in state
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "LOST reply of conversation c-1 after 0 attempts" in record.getMessage()


def test_a_delivery_applies_to_a_fresher_state_and_keeps_what_was_added_meanwhile(clock: FakeClock) -> None:
    state: dict[str, Any] = {}
    sent = add_entry(state, REPLY, reply("sent"), clock.now, clock.now + 600)
    failed = add_entry(state, REPLY, reply("failed"), clock.now, clock.now + 600)
    fresher = {OUTBOX_PROPERTY: [dict(entry) for entry in entries(state)]}
    added = add_entry(fresher, REPLY, reply("added meanwhile"), clock.now, clock.now + 600)
    Delivery(delivered={sent}, retries={failed: (2, clock.now + 10)}).apply(fresher)
    assert [(entry["id"], entry["attempts"]) for entry in entries(fresher)] == [(failed, 2), (added, 0)]
    assert entries(fresher)[0]["nextAttemptAt"] == clock.now + 10
    assert not Delivery().changed


def test_a_delivery_applies_to_a_state_whose_outbox_another_sender_already_emptied(clock: FakeClock) -> None:
    state: dict[str, Any] = {}
    sent = add_entry(state, REPLY, reply("sent"), clock.now, clock.now + 600)
    emptied_meanwhile: dict[str, Any] = {"other": 1}
    Delivery(delivered={sent}).apply(emptied_meanwhile)
    assert emptied_meanwhile == {"other": 1}


async def test_the_logs_tell_an_operator_what_failed_where_and_what_was_lost(
    outbox: Outbox, channel: Channel, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    state: dict[str, Any] = {}
    failing = add_entry(state, REPLY, reply("down"), clock.now, clock.now + 600)
    channel.failing.add("down")
    with caplog.at_level(logging.WARNING, logger="services.turns.outbox"):
        await send_all(outbox, state, [failing], channel)
        assert "reply of conversation c-1 not delivered (attempt 1; " in caplog.text
        assert "the channel is not answering" in caplog.text
        lost = add_entry(state, OPERATION, {"operationId": "op-9"}, clock.now, clock.now)
        await send_all(outbox, state, [lost], channel)
    assert f"LOST operation of conversation c-1 after 0 attempts (deadline passed): entry {lost}, operation op-9" in (
        caplog.text
    )


async def test_an_error_without_a_message_is_logged_by_its_kind(
    outbox: Outbox,
    channel: Channel,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox_module, "SEND_TIMEOUT_SECONDS", 0.01)
    state: dict[str, Any] = {}
    entry_id = add_entry(state, REPLY, reply("stuck"), clock.now, clock.now + 600)
    channel.hanging.add("stuck")
    with caplog.at_level(logging.WARNING, logger="services.turns.outbox"):
        await asyncio.wait_for(send_all(outbox, state, [entry_id], channel), 10)
    assert caplog.text.rstrip().endswith("TimeoutError")
