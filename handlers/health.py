"""GET /api/health, for uptime probes (Azure's health check, a load balancer, a monitor): is the
app able to reach what every turn needs? It checks Cosmos DB (a point read) and the operations
queue (its properties), at once and each within a bound, and answers 200 when both answer, 503
when one does not, naming only which, never why (details go to the log, not to the caller).

The endpoint is anonymous, so each probe must not cost backend calls: the answer comes from a check
at most `cache_seconds` old (HealthCacheSeconds), and probes arriving while a check runs wait for
that one check instead of starting their own. A flood of probes thus costs one Cosmos DB read and
one queue call per interval per instance, whatever its size.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from handlers.http_types import HttpResponseData

logger = logging.getLogger(__name__)

OK, UNAVAILABLE = "ok", "unavailable"
NO_STORE = {"Cache-Control": "no-store"}


class SharedCheck:
    """The latest health result, reused for `max_age` seconds, and the one check in flight that
    concurrent callers share. `clock` is monotonic seconds (injected in tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._latest: tuple[float, HttpResponseData] | None = None  # (when the check started, its answer)
        self._in_flight: asyncio.Task[HttpResponseData] | None = None
        self.checks_run = 0

    async def result(self, check: Callable[[], Awaitable[HttpResponseData]], max_age: float) -> HttpResponseData:
        now = self._clock()
        if self._latest is not None and now - self._latest[0] < max_age:
            return self._latest[1]
        task = self._in_flight
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.get_running_loop().create_task(self._run(check, now), name="health-check")
            self._in_flight = task
        # Shielded: a probe that gives up (its client went away) does not cancel the others' check.
        return await asyncio.shield(task)

    async def _run(self, check: Callable[[], Awaitable[HttpResponseData]], started: float) -> HttpResponseData:
        self.checks_run += 1
        answer = await check()
        self._latest = (started, answer)
        return answer


@dataclass(frozen=True)
class HealthDependencies:
    checks: Mapping[str, Callable[[], Awaitable[object]]]  # by the name the answer uses
    timeout_seconds: float = 5.0  # a probe waits for the answer; a hung dependency must not hang it
    cache_seconds: float = 0.0  # HealthCacheSeconds: answer from a check at most this old; 0: check each time
    shared: SharedCheck = field(default_factory=SharedCheck)  # one per process


async def handle_health(deps: HealthDependencies) -> HttpResponseData:
    if deps.cache_seconds <= 0:
        return await _check_now(deps)
    answer = await deps.shared.result(lambda: _check_now(deps), deps.cache_seconds)
    return HttpResponseData(answer.status, copy.deepcopy(answer.body), dict(answer.headers))  # each its own copy


async def _check_now(deps: HealthDependencies) -> HttpResponseData:
    async def outcome(name: str, check: Callable[[], Awaitable[object]]) -> str:
        try:
            await asyncio.wait_for(check(), deps.timeout_seconds)
        except Exception as error:
            logger.warning("health: %s is unavailable: %s", name, error or type(error).__name__)
            return UNAVAILABLE
        return OK

    names = list(deps.checks)
    results = dict(zip(names, await asyncio.gather(*(outcome(n, deps.checks[n]) for n in names)), strict=True))
    healthy = all(result == OK for result in results.values())
    body = {"status": "healthy" if healthy else "unhealthy", "checks": results}
    return HttpResponseData(200 if healthy else 503, body, dict(NO_STORE))
