"""GET /api/health, for uptime probes (Azure's health check, a load balancer, a monitor): is the
app able to reach what every turn needs? It checks Cosmos DB (a point read) and the operations
queue (its properties), at once and each within a bound, and answers 200 when both answer, 503
when one does not, naming only which, never why (details go to the log, not to the caller)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from handlers.http_types import HttpResponseData

logger = logging.getLogger(__name__)

OK, UNAVAILABLE = "ok", "unavailable"
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class HealthDependencies:
    checks: Mapping[str, Callable[[], Awaitable[object]]]  # by the name the answer uses
    timeout_seconds: float = 5.0  # a probe waits for the answer; a hung dependency must not hang it


async def handle_health(deps: HealthDependencies) -> HttpResponseData:
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
