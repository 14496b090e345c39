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

from bench.stack import bench_settings
from bench.turn_ab import Built, introduced, measure, print_medians
from bootstrap import Composition
from services.channel.connector_sender import ConnectorSessions
from services.settings import load_settings

VARIANTS = ("A: the SDK's requests sender", "B: as shipped (aiohttp)")


async def _composition(variant: str, stack: Any, connector_url: str) -> Built:
    shipped = ConnectorSessions.send_over_aiohttp
    if variant.startswith("A"):
        ConnectorSessions.send_over_aiohttp = lambda _self, _client: None  # type: ignore[method-assign,assignment]  # keep the SDK's
    try:
        app = Composition(load_settings(bench_settings(stack, "http://127.0.0.1:9/")))
        return app, await introduced(app, connector_url)  # its Connector client built now, with this variant's sender
    finally:
        ConnectorSessions.send_over_aiohttp = shipped  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.connector_sender_ab", description=__doc__)
    parser.add_argument("--rounds", type=int, default=12)
    cpu_ms = asyncio.run(measure(VARIANTS, _composition, parser.parse_args().rounds))
    print_medians(cpu_ms, [VARIANTS[::-1]])


if __name__ == "__main__":
    main()
