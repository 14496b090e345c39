"""`python -m bench.storage_requests_ab [--rounds N]`: A/B/C of how the app's Azure SDK clients send requests.

A = azure-core's default aiohttp transport (it looks up ~/.netrc and the proxy variables on every request)
and every transcript write a table transaction; B = the direct transport (services/azure_transport.py),
transcripts still in transactions; C = as shipped, the direct transport and a write of up to three rows
as single upserts (services/transcripts/store.py: SINGLE_UPSERT_ROWS). Three compositions in one process,
against the Cosmos DB stand-in, Azurite and a stub Connector (bench/profile_turn.py), in rounds of plain
turns (bench/turn_ab.py). Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from azure.core.pipeline.transport import AioHttpTransport

import services.queues.storage_clients as storage_clients
import services.state.cosmos as cosmos
import services.transcripts.store as transcript_store
from bench.stack import bench_settings
from bench.turn_ab import Built, introduced, measure, print_medians
from bootstrap import Composition
from services.azure_transport import direct_transport
from services.settings import load_settings

VARIANTS = ("A: default transport, transactions", "B: direct transport, transactions", "C: as shipped")


def _default_transport(connection_timeout: float | None = None, read_timeout: float | None = None) -> Any:
    timeouts = {"connection_timeout": connection_timeout, "read_timeout": read_timeout}
    return AioHttpTransport(**{name: seconds for name, seconds in timeouts.items() if seconds is not None})


async def _composition(variant: str, stack: Any, connector_url: str) -> Built:
    transport = _default_transport if variant.startswith("A") else direct_transport
    storage_clients.direct_transport = cosmos.direct_transport = transport  # type: ignore[assignment]  # read when a client is built
    try:
        app = Composition(load_settings(bench_settings(stack, "http://127.0.0.1:9/")))
        return app, await introduced(app, connector_url)  # every client built now, with this variant's transport
    finally:
        storage_clients.direct_transport = cosmos.direct_transport = direct_transport


def _single_upserts_for(variant: str) -> None:
    transcript_store.SINGLE_UPSERT_ROWS = 3 if variant.startswith("C") else 0


async def _measure(rounds: int) -> dict[str, list[float]]:
    try:
        return await measure(VARIANTS, _composition, rounds, _single_upserts_for)
    finally:
        transcript_store.SINGLE_UPSERT_ROWS = 3


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.storage_requests_ab", description=__doc__)
    parser.add_argument("--rounds", type=int, default=12)
    cpu_ms = asyncio.run(_measure(parser.parse_args().rounds))
    a, b, c = VARIANTS
    print_medians(cpu_ms, [(b, a), (c, b), (c, a)])


if __name__ == "__main__":
    main()
