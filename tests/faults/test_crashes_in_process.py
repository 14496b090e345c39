"""Crashes between two steps, in this process: the turn or the sweeper is cancelled while its send hangs
at the proxy. Cancelling stands in for SIGKILL here because nothing of the unit of work or the sweeper
runs after that point either (no `finally` writes state), and only in process can a FakeClock carry the
test past the outbox's 120 s lease; the real host's crash is in test_host_crash.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from bootstrap import Composition
from handlers.sweeper import handle_sweep
from services.turns.outbox import LEASE_SECONDS
from tests.faults.conftest import Survived
from tests.faults.harness import CONNECTOR_PATH, QUICK_OPERATION, RESULT_PREFIX, Rig
from tests.support.fault_proxy import HANG

pytestmark = [pytest.mark.faults, pytest.mark.emulators]

EXPIRED_NOTICE = "This conversation was closed after"


async def crash(task: asyncio.Task[object]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_crash_between_the_commit_and_the_queue_send(
    rig: Rig, survived: Survived, lost: Callable[[], list[str]]
) -> None:
    conversation = rig.new_conversation()
    await rig.open(conversation)
    since = len(rig.texts(conversation))
    rig.queue_proxy.inject(HANG, method="POST", path=r"/messages")
    turn = asyncio.create_task(rig.say(conversation, QUICK_OPERATION))
    await rig.queue_proxy.wait_for(method="POST", path=r"/messages", outcome=HANG)
    await crash(turn)  # committed (the request is in the outbox), never sent
    rig.queue_proxy.clear()
    rig.queue_proxy.release()
    [entry] = await rig.outbox(conversation)
    assert entry["kind"] == "operation"
    assert rig.texts(conversation)[since:] == []  # the turn's replies were held until after the sends

    # Another instance takes over; its sweeper leaves the entry alone while the dead turn's lease runs.
    other = Composition(rig.app.settings, rig.clock)
    try:
        rig.directline.app = other
        rig.clock.now += LEASE_SECONDS / 2
        await handle_sweep(other.sweeper)
        assert await rig.queued() == 0
        rig.clock.now += LEASE_SECONDS / 2 + 1
        await handle_sweep(other.sweeper)
        assert await rig.queued() == 1
        await handle_sweep(other.sweeper)  # sent once
        assert await rig.queued() == 1
        assert await rig.run_worker(other.worker) == "succeeded"

    finally:
        await other.close()

    survived(
        "host killed between the commit and the queue send; the sweeper sends it after the lease",
        rig.brief(conversation, since),
        rig.seen(conversation, RESULT_PREFIX),
    )
    assert rig.seen(conversation, RESULT_PREFIX) == 1
    assert await rig.outbox(conversation) == []
    assert lost() == []


async def test_sweeper_killed_midway(rig: Rig, survived: Survived, lost: Callable[[], list[str]]) -> None:
    first, second = rig.new_conversation(), rig.new_conversation()
    await rig.open(first, "Ada")
    await rig.open(second, "Bob")
    rig.clock.now += int(rig.app.settings.expire_after_seconds) + 1  # both idle long enough to expire
    rig.connector_proxy.inject(HANG, method="POST", path=CONNECTOR_PATH + second)
    sweep = asyncio.create_task(handle_sweep(rig.app.sweeper))
    await rig.connector_proxy.wait_for(method="POST", path=CONNECTOR_PATH + second, outcome=HANG)
    await crash(sweep)
    rig.connector_proxy.clear()
    rig.connector_proxy.release()
    assert rig.seen(second, EXPIRED_NOTICE) == 0

    rig.clock.now += LEASE_SECONDS / 2
    await handle_sweep(rig.app.sweeper)  # the dead run's lease still holds the second notice
    assert rig.seen(second, EXPIRED_NOTICE) == 0
    rig.clock.now += LEASE_SECONDS / 2 + 1
    await handle_sweep(rig.app.sweeper)
    await handle_sweep(rig.app.sweeper)

    both = f"first: {rig.brief(first, -1)}; second: {rig.brief(second, -1)}"
    survived(
        "sweeper killed while sending a notice; the next run after the lease",
        both,
        rig.seen(first, EXPIRED_NOTICE) + rig.seen(second, EXPIRED_NOTICE),
    )
    assert rig.seen(first, EXPIRED_NOTICE) == 1
    assert rig.seen(second, EXPIRED_NOTICE) == 1
    assert await rig.outbox(first) == [] and await rig.outbox(second) == []
    assert lost() == []
