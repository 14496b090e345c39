"""Conversation expiry with a controlled clock: the decision, the next turn, and the sweeper."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot_logic.conversation_record import RECORD_PROPERTY
from bot_logic.expiry import check_expiry_settings, conversation_index_fields, is_expired
from handlers.messages import handle_messages
from handlers.sweeper import EXPIRED_QUERY, SweeperDependencies, SweepReport, handle_sweep, sweep_conversation
from localdev.app_settings import app_settings
from services.cosmos_storage import escape_key
from services.runtime import BotRuntime, build_runtime
from services.settings import load_settings
from tests.support.clock import FakeClock
from tests.support.connector import RecordingConnector
from tests.test_messages_handler import activity, joined, post

EXPIRE = 300


def test_expiry_decision() -> None:
    record = {"lastAccessAt": 1000.0, "pendingOperation": None, "expiredAt": None}
    assert not is_expired(record, EXPIRE, 1299.0)
    assert is_expired(record, EXPIRE, 1300.0)
    in_flight = {**record, "pendingOperation": {"deadline": 2000.0}}
    assert not is_expired(in_flight, EXPIRE, 1999.0)
    assert is_expired(in_flight, EXPIRE, 2000.0)
    assert is_expired({**record, "expiredAt": 1100.0}, EXPIRE, 1000.0)


def test_index_fields_and_per_item_ttl() -> None:
    clock = FakeClock()
    fields = conversation_index_fields(EXPIRE, 3600, clock)
    idle = {RECORD_PROPERTY: {"lastAccessAt": clock.now, "pendingOperation": None}}
    assert fields(idle) == {"expiresAt": clock.now + EXPIRE}
    busy = {RECORD_PROPERTY: {"lastAccessAt": clock.now, "pendingOperation": {"deadline": clock.now + 900}}}
    assert fields(busy) == {"expiresAt": clock.now + 900, "ttl": 3600 + 900}
    assert fields({RECORD_PROPERTY: {"lastAccessAt": clock.now, "expiredAt": clock.now}}) == {}


def test_unsafe_time_to_live_is_reported() -> None:
    assert check_expiry_settings(300, 3600, "0 */1 * * * *") is None
    warning = check_expiry_settings(300, 320, "0 */1 * * * *")
    assert warning and "CosmosDbTimeToLive=320" in warning


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def runtime(azurite: Any, cosmos: Any, clock: FakeClock) -> AsyncIterator[BotRuntime]:
    built = build_runtime(load_settings(app_settings(azurite, cosmos, ExpireAfterSeconds=str(EXPIRE))), clock)
    yield built
    await built.close()


def query_parameters(clock: FakeClock) -> list[dict[str, Any]]:
    return [{"name": "@batch", "value": 100}, {"name": "@now", "value": clock.now}]


def sweeper(runtime: BotRuntime, clock: FakeClock, notified: list[tuple[str, list[str]]]) -> SweeperDependencies:
    async def notify(reference: dict[str, Any], texts: list[str]) -> None:
        notified.append((reference["conversation"]["id"], texts))

    return SweeperDependencies(
        conversations=runtime.conversations,
        notify=notify,
        clock=clock,
        expire_after_seconds=EXPIRE,
        notice_enabled=True,
        notice_text="Closed after {minutes} minutes without activity. Send anything to start again.",
        batch_size=2,
    )


async def named_conversation(runtime: BotRuntime, connector: RecordingConnector, name: str) -> str:
    conversation = f"c-{uuid.uuid4()}"
    await handle_messages(post(joined(conversation, connector.service_url)), runtime)
    await handle_messages(post(activity(conversation, connector.service_url, text=name)), runtime)
    return conversation


async def test_next_turn_after_idle_starts_over_keeping_the_name(
    runtime: BotRuntime, connector: RecordingConnector, clock: FakeClock
) -> None:
    conversation = await named_conversation(runtime, connector, "Ada")
    clock.now += EXPIRE - 1
    await handle_messages(post(activity(conversation, connector.service_url, text="nonsense")), runtime)
    assert "Welcome back! Let's start over from the beginning." not in connector.messages(conversation)
    clock.now += EXPIRE
    await handle_messages(post(activity(conversation, connector.service_url, text="hello")), runtime)
    after = connector.messages(conversation)[-2:]
    assert after[0] == "Welcome back! Let's start over from the beginning."
    assert after[1].startswith("Which long operation shall I run, Ada?")


async def test_sweeper_expires_idle_ones_once_and_leaves_active_and_busy_ones(
    runtime: BotRuntime, connector: RecordingConnector, clock: FakeClock
) -> None:
    idle = [await named_conversation(runtime, connector, f"Idle{n}") for n in range(3)]
    clock.now += 200
    active = await named_conversation(runtime, connector, "Active")
    busy = await named_conversation(runtime, connector, "Busy")
    await handle_messages(post(activity(busy, connector.service_url, text="1")), runtime)  # starts an operation
    clock.now += EXPIRE - 100  # idle ones: 400 s idle; active and busy: 200 s
    notified: list[tuple[str, list[str]]] = []
    report = await handle_sweep(sweeper(runtime, clock, notified))

    assert report.expired == 3
    assert sorted(c for c, _ in notified) == sorted(idle)
    assert notified[0][1] == ["Closed after 5 minutes without activity. Send anything to start again."]
    again = await handle_sweep(sweeper(runtime, clock, notified))
    assert again.expired == 0 and len(notified) == 3

    # The busy conversation is past its idle time but its operation is in flight until the deadline.
    clock.now += EXPIRE
    await handle_sweep(sweeper(runtime, clock, notified))
    assert [c for c, _ in notified].count(active) == 1
    assert busy not in [c for c, _ in notified]
    clock.now += runtime.settings.operation_timeout_seconds
    await handle_sweep(sweeper(runtime, clock, notified))
    [(_, texts)] = [n for n in notified if n[0] == busy]
    assert texts[0].startswith("Sorry, the ") and "timed out" in texts[0]

    # The next message in a swept conversation starts over; the name is still known.
    await handle_messages(post(activity(idle[0], connector.service_url, text="hi")), runtime)
    assert connector.messages(idle[0])[-2] == "Welcome back! Let's start over from the beginning."
    assert connector.messages(idle[0])[-1].startswith("Which long operation shall I run, Idle0?")


async def test_conversation_touched_between_query_and_clear_survives(
    runtime: BotRuntime, connector: RecordingConnector, clock: FakeClock
) -> None:
    conversation = await named_conversation(runtime, connector, "Late")
    clock.now += EXPIRE + 1
    key = f"directline/conversations/{conversation}"
    expired = await runtime.conversations.query(EXPIRED_QUERY, query_parameters(clock))
    [(found, stale)] = [hit for hit in expired if hit[0] == key]
    # The user writes after the sweeper's query read the document...
    await handle_messages(post(activity(conversation, connector.service_url, text="still here")), runtime)
    notified: list[tuple[str, list[str]]] = []
    report = SweepReport()
    await sweep_conversation(found, stale, clock.now, sweeper(runtime, clock, notified), report)
    # ...so the sweeper's conditional clear fails and the conversation is left alone.
    assert (report.expired, report.skipped, notified) == (0, 1, [])
    fresh = (await runtime.conversations.read([key]))[key]
    assert fresh[RECORD_PROPERTY]["expiredAt"] is None


async def test_overlapping_sweeps_notify_once(
    runtime: BotRuntime, connector: RecordingConnector, clock: FakeClock
) -> None:
    conversations = [await named_conversation(runtime, connector, f"Overlap{n}") for n in range(4)]
    clock.now += EXPIRE + 1
    notified: list[tuple[str, list[str]]] = []
    reports = await asyncio.gather(*(handle_sweep(sweeper(runtime, clock, notified)) for _ in range(3)))
    assert sum(r.expired for r in reports) == len(conversations)
    assert sorted(c for c, _ in notified) == sorted(conversations)


async def test_an_operation_past_its_deadline_is_told_at_once_in_an_active_conversation(
    azurite: Any, cosmos: Any, connector: RecordingConnector, clock: FakeClock
) -> None:
    # Idle expiry far away, so only the operation's deadline matters.
    settings = load_settings(app_settings(azurite, cosmos, ExpireAfterSeconds="3600", OperationTimeoutSeconds="60"))
    runtime = build_runtime(settings, clock)
    try:
        conversation = await named_conversation(runtime, connector, "Tess")
        await handle_messages(post(activity(conversation, connector.service_url, text="1")), runtime)
        notified: list[tuple[str, list[str]]] = []
        deps = sweeper(runtime, clock, notified)
        deps.expire_after_seconds = 3600
        clock.now += 59
        assert (await handle_sweep(deps)).timed_out == 0
        clock.now += 2
        report = await handle_sweep(deps)
        assert (report.timed_out, report.expired) == (1, 0)
        assert notified == [(conversation, ["Sorry, the prime report timed out: no result came within 1 min."])]
        assert (await handle_sweep(deps)).timed_out == 0  # told once

        await handle_messages(post(activity(conversation, connector.service_url, text="and now?")), runtime)
        texts = connector.messages(conversation)
        assert texts[-1].startswith("Which long operation shall I run, Tess?")
        assert not any("timed out" in t for t in texts)  # the sweeper told it; the bot does not repeat it
    finally:
        await runtime.close()


async def test_containers_and_per_item_ttl_as_stored(
    runtime: BotRuntime, connector: RecordingConnector, clock: FakeClock
) -> None:
    """The stand-in stores TTL without enforcing it: check what Cosmos DB would enforce."""
    conversation = await named_conversation(runtime, connector, "Ttl")
    conversations = await runtime.cosmos.conversation_container()
    users = await runtime.cosmos.user_container()
    assert (await conversations.read())["defaultTtl"] == runtime.settings.cosmos_time_to_live
    assert "defaultTtl" not in await users.read()  # user state never expires

    doc_id = escape_key(f"directline/conversations/{conversation}")
    idle = await conversations.read_item(doc_id, doc_id)
    assert "ttl" not in idle  # the container's default applies
    assert idle["expiresAt"] == clock.now + EXPIRE

    await handle_messages(post(activity(conversation, connector.service_url, text="1")), runtime)
    busy = await conversations.read_item(doc_id, doc_id)
    timeout = runtime.settings.operation_timeout_seconds
    assert busy["ttl"] == runtime.settings.cosmos_time_to_live + timeout  # outlives the operation's deadline
    assert busy["expiresAt"] == clock.now + timeout  # the sweeper looks again at the deadline
