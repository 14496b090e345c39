"""Cosmos DB throttling and outages during turns: the SDK's retries, then the channel's and the worker's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from handlers.sweeper import handle_sweep
from services.turns.outbox import LEASE_SECONDS
from tests.faults.conftest import Survived
from tests.faults.harness import QUICK_OPERATION, RESULT_POST_PATH, RESULT_PREFIX, STARTED_PREFIX, Rig
from tests.support.fault_proxy import PASS, THROTTLE, UNAVAILABLE

pytestmark = [pytest.mark.faults, pytest.mark.emulators]


async def test_cosmos_throttling_during_turns_is_waited_out(
    rig: Rig, survived: Survived, lost: Callable[[], list[str]]
) -> None:
    conversation = rig.new_conversation()
    await rig.open(conversation)
    since = len(rig.texts(conversation))
    # The next state reads and writes are answered 429 first; the SDK waits the hinted 50 ms each time.
    rig.cosmos_proxy.inject(THROTTLE, times=4, retry_after=0.05)
    assert await rig.say(conversation, QUICK_OPERATION) == 200
    assert rig.cosmos_proxy.count(outcome=THROTTLE) == 4
    assert rig.seen(conversation, STARTED_PREFIX) == 1
    assert await rig.queued() == 1

    rig.cosmos_proxy.inject(THROTTLE, times=4, retry_after=0.05)  # and while the result comes in
    assert await rig.run_worker() == "succeeded"
    assert rig.cosmos_proxy.count(outcome=THROTTLE) == 8

    survived(
        "Cosmos DB 429 + x-ms-retry-after-ms, 4 per turn",
        rig.brief(conversation, since),
        rig.seen(conversation, RESULT_PREFIX),
    )
    assert rig.seen(conversation, RESULT_PREFIX) == 1
    assert await rig.outbox(conversation) == []
    assert lost() == []


async def test_cosmos_outage_fails_the_turn_and_the_bot_recovers_with_it(
    rig: Rig, survived: Survived, lost: Callable[[], list[str]]
) -> None:
    conversation = rig.new_conversation()
    await rig.open(conversation)
    since = len(rig.texts(conversation))
    rig.cosmos_proxy.inject(UNAVAILABLE)
    # Nothing can be committed, so nothing is said or queued; the channel hears 500 (Direct Line: 502).
    assert await rig.say(conversation, QUICK_OPERATION) == 500
    assert rig.texts(conversation)[since:] == []
    assert await rig.queued() == 0

    rig.cosmos_proxy.clear()  # recovered: the user sends it again
    assert await rig.say(conversation, QUICK_OPERATION) == 200
    assert rig.seen(conversation, STARTED_PREFIX) == 1

    # The outage comes back while the worker posts the result: the bot answers 500, Direct Line 502,
    # and the worker's own retries carry the result over once Cosmos DB is back.
    rig.cosmos_proxy.inject(UNAVAILABLE)
    worker = asyncio.create_task(rig.run_worker())
    await rig.directline_proxy.wait_for(method="POST", path=RESULT_POST_PATH, count=2, timeout=20)
    assert rig.seen(conversation, RESULT_PREFIX) == 0
    rig.cosmos_proxy.clear()
    assert await worker == "succeeded"

    survived(
        "Cosmos DB 503 outage during a turn, then while the result comes in",
        rig.brief(conversation, since),
        rig.seen(conversation, RESULT_PREFIX),
    )
    assert rig.seen(conversation, RESULT_PREFIX) == 1
    assert await rig.outbox(conversation) == []
    assert lost() == []


async def test_cosmos_failing_the_outbox_removal_after_the_result_was_sent(
    rig: Rig, survived: Survived, lost: Callable[[], list[str]]
) -> None:
    conversation = await rig.start_operation()
    since = len(rig.texts(conversation)) - 1
    document = r"/colls/conversation-state/docs/"
    # The result's turn commits (the first replace of the conversation's document), sends the reply,
    # then the write that removes the sent entry from the outbox meets a short Cosmos DB outage.
    rig.cosmos_proxy.inject(PASS, 1, method="PUT", path=document)
    rig.cosmos_proxy.inject(UNAVAILABLE, 3, method="PUT", path=document)  # the SDK rides out one, not three
    await rig.run_worker()
    assert rig.seen(conversation, RESULT_PREFIX) == 1
    rig.cosmos_proxy.clear()

    rig.clock.now += LEASE_SECONDS + 1  # the sending turn's lease on the entry ends
    await handle_sweep(rig.app.sweeper)
    survived(
        "Cosmos DB 503 on the write that removes the sent result from the outbox",
        rig.brief(conversation, since),
        rig.seen(conversation, RESULT_PREFIX),
    )
    assert rig.seen(conversation, RESULT_PREFIX) == 1
    assert await rig.outbox(conversation) == []
    assert lost() == []
