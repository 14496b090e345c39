"""GET /api/health for uptime probes: 200 while Cosmos DB and the queue answer; 503 naming which one
does not, and nothing more (no error text, no endpoint), within its bound."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import pytest

from handlers.health import handle_health
from localdev.emulators import Azurite, CosmosStandIn
from localdev.processes import free_port
from tests.support.app import composed_app

pytestmark = pytest.mark.emulators


async def test_healthy_while_both_answer(azurite: Azurite, cosmos: CosmosStandIn) -> None:
    async with composed_app(azurite, cosmos) as app:
        response = await handle_health(app.health)
    assert response.status == 200
    assert response.body == {"status": "healthy", "checks": {"cosmos": "ok", "queue": "ok"}}
    assert response.headers["Cache-Control"] == "no-store"


async def test_an_unreachable_cosmos_db_is_named_without_internals(azurite: Azurite, cosmos: CosmosStandIn) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/"
    async with composed_app(azurite, cosmos, CosmosDbEndpoint=unreachable) as app:
        started = time.monotonic()
        response = await handle_health(replace(app.health, timeout_seconds=2.0))
        elapsed = time.monotonic() - started
    assert response.status == 503
    assert response.body == {"status": "unhealthy", "checks": {"cosmos": "unavailable", "queue": "ok"}}
    assert unreachable not in json.dumps(response.body)
    assert elapsed < 5  # bounded: a probe is not left hanging


async def test_a_flood_of_anonymous_probes_costs_one_check(azurite: Azurite, cosmos: CosmosStandIn) -> None:
    """200 probes at once, then 200 more, within HealthCacheSeconds: one Cosmos DB read, one queue call."""
    async with composed_app(azurite, cosmos, HealthCacheSeconds="3600") as app:
        queue_calls = 0
        ping = app.operation_queue.ping

        async def counted_ping() -> None:
            nonlocal queue_calls
            queue_calls += 1
            await ping()

        health = replace(app.health, checks={**app.health.checks, "queue": counted_ping})
        reads_before = app.counters.reads
        answers = await asyncio.gather(*(handle_health(health) for _ in range(200)))
        answers += [await handle_health(health) for _ in range(200)]
    assert {a.status for a in answers} == {200}
    assert app.counters.reads - reads_before == 1 and queue_calls == 1
