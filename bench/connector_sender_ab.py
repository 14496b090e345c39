"""`python -m bench.connector_sender_ab [--rounds N]`: A/B of how the bot's replies reach the channel.

A = the SDK's own sender (msrest: requests, in a worker thread, per reply); B = as shipped, the same
ConnectorClient and pipeline ending in the aiohttp sender (services/channel/connector_sender.py). Two
compositions in one process, against the Cosmos DB stand-in, Azurite and a stub Connector, in rounds of plain
turns (bench/turn_ab.py). Prints medians and the ratio B/A.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench.profile_turn import Connector
from bench.stack import bench_settings, emulators
from bench.turn_ab import Built, introduced, print_medians, rotating_rounds
from bootstrap import Composition
from services.channel.connector_sender import ConnectorSessions
from services.settings import load_settings

VARIANTS = ("A: the SDK's requests sender", "B: as shipped (aiohttp)")


async def _composition(variant: str, stack: Any, connector: Connector) -> Built:
    shipped = ConnectorSessions.send_over_aiohttp
    if variant.startswith("A"):
        ConnectorSessions.send_over_aiohttp = lambda _self, _client: None  # type: ignore[method-assign]  # keep the SDK's
    try:
        app = Composition(load_settings(bench_settings(stack, "http://127.0.0.1:9/")))
        return app, await introduced(app, connector.url)  # its Connector client built now, with this variant's sender
    finally:
        ConnectorSessions.send_over_aiohttp = shipped  # type: ignore[method-assign]


async def measure(rounds: int) -> dict[str, list[float]]:
    connector = Connector()
    await connector.start()
    with emulators() as stack:
        built = {variant: await _composition(variant, stack, connector) for variant in VARIANTS}
        try:
            return await rotating_rounds(built, connector.url, rounds)
        finally:
            for app, _ in built.values():
                await app.close()
            await connector.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.connector_sender_ab", description=__doc__)
    parser.add_argument("--rounds", type=int, default=12)
    cpu_ms = asyncio.run(measure(parser.parse_args().rounds))
    print_medians(cpu_ms, [VARIANTS[::-1]])


if __name__ == "__main__":
    main()
