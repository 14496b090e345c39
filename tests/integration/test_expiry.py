"""Conversation expiry against the Cosmos DB stand-in with a controlled clock: the next turn, the
sweeper, and what Cosmos DB is told to keep."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bootstrap import Composition
from bot_logic.conversation_record import RECORD_PROPERTY
from bot_logic.expiry import ExpiryPolicy
from handlers.sweeper import SweeperDependencies, SweepReport, handle_sweep, sweep_conversation
from localdev.emulators import Azurite, CosmosStandIn
from services.state.cosmos_storage import escape_key
from services.turns.outbox import LEASE_SECONDS
from tests.support.activities import activity, joined
from tests.support.app import composed_app, send
from tests.support.clock import FakeClock
from tests.support.connector import RecordingConnector

pytestmark = pytest.mark.emulators

EXPIRE = 300
NOTICE = "Closed after {minutes} minutes without activity. Send anything to start again."


@pytest.fixture
async def app(azurite: Azurite, cosmos: CosmosStandIn, clock: FakeClock) -> AsyncIterator[Composition]:
    async with composed_app(azurite, cosmos, clock, ExpireAfterSeconds=str(EXPIRE)) as composed:
        yield composed


def sweeper(app: Composition, notified: list[tuple[str, list[str]]], expire: int = EXPIRE) -> SweeperDependencies:
    """The app's sweeper, with a recorder in place of the channel: (conversation id, [text]) per notice."""

    async def send_reply(activity: dict[str, Any]) -> None:
        notified.append((activity["conversation"]["id"], [activity["text"]]))

    return SweeperDependencies(
        conversations=app.conversations,
        outbox=app.outbox,
        send_reply=send_reply,
        clock=app.clock,
        policy=ExpiryPolicy(expire, True, NOTICE),
        batch_size=2,
    )


async def named_conversation(app: Composition, connector: RecordingConnector, name: str) -> str:
    conversation = f"c-{uuid.uuid4()}"
    await send(app, joined(conversation, connector.service_url))
    await send(app, activity(conversation, connector.service_url, text=name))
    return conversation


async def test_next_turn_after_idle_starts_over_keeping_the_name(
    app: Composition, connector: RecordingConnector, clock: FakeClock
) -> None:
    conversation = await named_conversation(app, connector, "Ada")
    clock.now += EXPIRE - 1
    await send(app, activity(conversation, connector.service_url, text="nonsense"))
    assert "Welcome back! Let's start over from the beginning." not in connector.messages(conversation)
    clock.now += EXPIRE
    await send(app, activity(conversation, connector.service_url, text="hello"))
    after = connector.messages(conversation)[-2:]
    assert after[0] == "Welcome back! Let's start over from the beginning."
    assert after[1].startswith("Which long operation shall I run, Ada?")


async def test_sweeper_expires_idle_ones_once_and_leaves_active_and_busy_ones(
    app: Composition, connector: RecordingConnector, clock: FakeClock
) -> None:
    idle = [await named_conversation(app, connector, f"Idle{n}") for n in range(3)]
    clock.now += 200
    active = await named_conversation(app, connector, "Active")
    busy = await named_conversation(app, connector, "Busy")
    await send(app, activity(busy, connector.service_url, text="1"))  # starts an operation
    clock.now += EXPIRE - 100  # idle ones: 400 s idle; active and busy: 200 s
    notified: list[tuple[str, list[str]]] = []
    report = await handle_sweep(sweeper(app, notified))

    assert report.expired == 3
    assert sorted(c for c, _ in notified) == sorted(idle)
    assert notified[0][1] == ["Closed after 5 minutes without activity. Send anything to start again."]
    again = await handle_sweep(sweeper(app, notified))
    assert again.expired == 0 and len(notified) == 3

    # The busy conversation is past its idle time but its operation is in flight until the deadline.
    clock.now += EXPIRE
    await handle_sweep(sweeper(app, notified))
    assert [c for c, _ in notified].count(active) == 1
    assert busy not in [c for c, _ in notified]
    clock.now += app.settings.operation_timeout_seconds
    await handle_sweep(sweeper(app, notified))
    told = [text for conversation, texts in notified if conversation == busy for text in texts]
    assert told[0].startswith("Sorry, the ") and "timed out" in told[0]
    assert told[1].startswith("Closed after")

    # The next message in a swept conversation starts over; the name is still known.
    await send(app, activity(idle[0], connector.service_url, text="hi"))
    assert connector.messages(idle[0])[-2] == "Welcome back! Let's start over from the beginning."
    assert connector.messages(idle[0])[-1].startswith("Which long operation shall I run, Idle0?")


async def test_conversation_touched_between_query_and_clear_survives(
    app: Composition, connector: RecordingConnector, clock: FakeClock
) -> None:
    conversation = await named_conversation(app, connector, "Late")
    clock.now += EXPIRE + 1
    key = f"directline/conversations/{conversation}"
    expired = await app.conversations.due_for_sweep(clock.now, 100)
    [(found, stale)] = [hit for hit in expired if hit[0] == key]
    # The user writes after the sweeper's query read the document...
    await send(app, activity(conversation, connector.service_url, text="still here"))
    notified: list[tuple[str, list[str]]] = []
    report = SweepReport()
    await sweep_conversation(found, stale, sweeper(app, notified), report)
    # ...so the sweeper's conditional clear fails and the conversation is left alone.
    assert (report.expired, report.skipped, notified) == (0, 1, [])
    fresh = (await app.conversations.read([key]))[key]
    assert fresh[RECORD_PROPERTY]["expiredAt"] is None


async def test_overlapping_sweeps_notify_once(
    app: Composition, connector: RecordingConnector, clock: FakeClock
) -> None:
    conversations = [await named_conversation(app, connector, f"Overlap{n}") for n in range(4)]
    clock.now += EXPIRE + 1
    notified: list[tuple[str, list[str]]] = []
    reports = await asyncio.gather(*(handle_sweep(sweeper(app, notified)) for _ in range(3)))
    assert sum(r.expired for r in reports) == len(conversations)
    assert sorted(c for c, _ in notified) == sorted(conversations)


async def test_an_operation_past_its_deadline_is_told_at_once_in_an_active_conversation(
    azurite: Azurite, cosmos: CosmosStandIn, connector: RecordingConnector, clock: FakeClock
) -> None:
    # Idle expiry far away, so only the operation's deadline matters.
    async with composed_app(azurite, cosmos, clock, ExpireAfterSeconds="3600", OperationTimeoutSeconds="60") as app:
        conversation = await named_conversation(app, connector, "Tess")
        await send(app, activity(conversation, connector.service_url, text="1"))
        notified: list[tuple[str, list[str]]] = []
        deps = sweeper(app, notified, expire=3600)
        clock.now += 59
        assert (await handle_sweep(deps)).timed_out == 0
        clock.now += 2
        report = await handle_sweep(deps)
        assert (report.timed_out, report.expired) == (1, 0)
        assert notified == [(conversation, ["Sorry, the prime report timed out: no result came within 1 min."])]
        assert (await handle_sweep(deps)).timed_out == 0  # told once

        await send(app, activity(conversation, connector.service_url, text="and now?"))
        texts = connector.messages(conversation)
        assert texts[-1].startswith("Which long operation shall I run, Tess?")
        assert not any("timed out" in t for t in texts)  # the sweeper told it; the bot does not repeat it


async def test_containers_and_per_item_ttl_as_stored(
    app: Composition, connector: RecordingConnector, clock: FakeClock
) -> None:
    """The stand-in stores TTL without enforcing it: check what Cosmos DB would enforce."""
    conversation = await named_conversation(app, connector, "Ttl")
    conversations = await app.cosmos.conversation_container()
    users = await app.cosmos.user_container()
    assert (await conversations.read())["defaultTtl"] == app.settings.cosmos_time_to_live
    assert "defaultTtl" not in await users.read()  # user state never expires

    doc_id = escape_key(f"directline/conversations/{conversation}")
    idle = await conversations.read_item(doc_id, doc_id)
    assert "ttl" not in idle  # the container's default applies
    assert idle["sweepAt"] == clock.now + EXPIRE

    await send(app, activity(conversation, connector.service_url, text="1"))
    busy = await conversations.read_item(doc_id, doc_id)
    timeout = app.settings.operation_timeout_seconds
    assert busy["ttl"] == app.settings.cosmos_time_to_live + timeout  # outlives the operation's deadline
    # The request is sent; until its delivery is written (by the next commit), its lease is indexed.
    assert busy["sweepAt"] == clock.now + LEASE_SECONDS
    await app.unit_of_work.record_deliveries_now()
    recorded = await conversations.read_item(doc_id, doc_id)
    assert recorded["sweepAt"] == clock.now + timeout  # the sweeper looks again at the deadline


async def test_a_conversation_due_only_under_older_settings_is_reindexed_not_left_blocking_the_sweep(
    azurite: Azurite, cosmos: CosmosStandIn, connector: RecordingConnector, clock: FakeClock
) -> None:
    database = f"test-{uuid.uuid4().hex[:8]}"
    async with composed_app(azurite, cosmos, clock, ExpireAfterSeconds="300", CosmosDbDatabaseId=database) as old:
        conversation = await named_conversation(old, connector, "Raised")
    clock.now += 301
    # The operator raised ExpireAfterSeconds: under the new setting the conversation is not idle yet.
    async with composed_app(azurite, cosmos, clock, ExpireAfterSeconds="3600", CosmosDbDatabaseId=database) as new:
        notified: list[tuple[str, list[str]]] = []
        report = await handle_sweep(sweeper(new, notified, expire=3600))
        assert (report.expired, notified) == (0, [])
        assert await new.conversations.due_for_sweep(clock.now, 10) == []  # its sweepAt was recomputed
        clock.now += 3600
        assert (await handle_sweep(sweeper(new, notified, expire=3600))).expired == 1
        assert [c for c, _ in notified] == [conversation]
