"""GET /api/health is anonymous: a flood of probes must cost no more backend calls than one check per
HealthCacheSeconds, and probes that arrive during a check share it. Counted, on an injected clock."""

from __future__ import annotations

import asyncio

from handlers.health import HealthDependencies, SharedCheck, handle_health
from tests.support.clock import FakeClock


class CountingBackend:
    """A dependency whose calls are counted; `gate` (when set) holds every call until it opens."""

    def __init__(self) -> None:
        self.calls = 0
        self.healthy = True
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()  # a call has started

    async def check(self) -> None:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if not self.healthy:
            raise ConnectionError("down")


def deps(cosmos: CountingBackend, queue: CountingBackend, clock: FakeClock, seconds: float = 5) -> HealthDependencies:
    return HealthDependencies(
        checks={"cosmos": cosmos.check, "queue": queue.check}, cache_seconds=seconds, shared=SharedCheck(clock)
    )


async def test_a_flood_of_probes_costs_one_check_per_interval() -> None:
    clock, cosmos, queue = FakeClock(1000.0), CountingBackend(), CountingBackend()
    health = deps(cosmos, queue, clock)
    for _ in range(500):
        assert (await handle_health(health)).status == 200
        clock.now += 0.009  # 500 probes over 4.5 s
    assert (cosmos.calls, queue.calls) == (1, 1)

    clock.now += 0.5  # the interval is over: the next probe checks again
    cosmos.healthy = False
    answers = [await handle_health(health) for _ in range(100)]
    assert (cosmos.calls, queue.calls) == (2, 2)
    assert {a.status for a in answers} == {503}  # an unhealthy answer is cached too: an outage is not hammered
    assert answers[0].body == {"status": "unhealthy", "checks": {"cosmos": "unavailable", "queue": "ok"}}


async def test_concurrent_probes_during_a_check_share_it() -> None:
    clock, cosmos, queue = FakeClock(1000.0), CountingBackend(), CountingBackend()
    health = deps(cosmos, queue, clock)
    cosmos.gate = asyncio.Event()
    probes = [asyncio.create_task(handle_health(health)) for _ in range(200)]
    await cosmos.entered.wait()  # the first check has started and holds
    for _ in range(10):
        await asyncio.sleep(0)  # every probe has had its chance to start a check of its own
    assert (cosmos.calls, queue.calls) == (1, 1)
    cosmos.gate.set()
    answers = await asyncio.gather(*probes)
    assert {a.status for a in answers} == {200} and (cosmos.calls, queue.calls) == (1, 1)
    answers[0].body["status"] = "tampered"  # one caller's copy is its own
    assert (await handle_health(health)).body["status"] == "healthy"


async def test_a_probe_that_gives_up_does_not_cancel_the_shared_check() -> None:
    clock, cosmos, queue = FakeClock(1000.0), CountingBackend(), CountingBackend()
    health = deps(cosmos, queue, clock)
    cosmos.gate = asyncio.Event()
    impatient = asyncio.create_task(handle_health(health))
    patient = asyncio.create_task(handle_health(health))
    await cosmos.entered.wait()
    impatient.cancel()
    cosmos.gate.set()
    assert (await patient).status == 200 and cosmos.calls == 1


async def test_zero_seconds_checks_every_probe() -> None:
    clock, cosmos, queue = FakeClock(1000.0), CountingBackend(), CountingBackend()
    health = deps(cosmos, queue, clock, seconds=0)
    for _ in range(3):
        await handle_health(health)
    assert (cosmos.calls, queue.calls) == (3, 3)
