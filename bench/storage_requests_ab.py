"""`python -m bench.storage_requests_ab [--rounds N]`: A/B/C of how the app's Azure SDK clients send requests.

A = azure-core's default aiohttp transport (it looks up ~/.netrc and the proxy variables on every request)
and every transcript write a table transaction; B = the direct transport (services/azure_transport.py),
transcripts still in transactions; C = as shipped, the direct transport and a write of up to three rows
as single upserts (services/transcripts/store.py: SINGLE_UPSERT_ROWS). Three compositions in one process,
against the Cosmos DB stand-in, Azurite and a stub Connector (bench/profile_turn.py). A block is one plain
turn (the menu's retry prompt) in each of 40 conversations, then the transcript recorder flushed, so each
turn's rows are written on their own as at low load; CPU ms per turn is the process time of the block.
The variants take turns in rounds (the order rotates), so machine noise hits all alike. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from azure.core.pipeline.transport import AioHttpTransport

import services.queues.storage_clients as storage_clients
import services.state.cosmos as cosmos
import services.transcripts.store as transcript_store
from bench.profile_turn import Connector, _request
from bench.stack import bench_settings, emulators
from bootstrap import Composition
from handlers.messages import handle_messages
from services.azure_transport import direct_transport
from services.settings import load_settings

CONVERSATIONS = 40
VARIANTS = ("A: default transport, transactions", "B: direct transport, transactions", "C: as shipped")


def _default_transport(connection_timeout: float | None = None, read_timeout: float | None = None) -> Any:
    timeouts = {"connection_timeout": connection_timeout, "read_timeout": read_timeout}
    return AioHttpTransport(**{name: seconds for name, seconds in timeouts.items() if seconds is not None})


async def _composition(variant: str, stack: Any, connector: Connector) -> tuple[Composition, list[str]]:
    transport = _default_transport if variant.startswith("A") else direct_transport
    storage_clients.direct_transport = cosmos.direct_transport = transport  # type: ignore[assignment]  # read when a client is built
    app = Composition(load_settings(bench_settings(stack, "http://127.0.0.1:9/")))
    conversations = [f"ab-{uuid.uuid4().hex[:12]}" for _ in range(CONVERSATIONS)]
    for conversation in conversations:  # introduced, and every client built now, with this variant's transport
        update = {"type": "conversationUpdate", "membersAdded": [{"id": "bot"}, {"id": f"user-of-{conversation}"}]}
        for fields in (update, {"text": "Ada"}, {"text": "what?"}):
            response = await handle_messages(_request(conversation, connector.url, **fields), app.messages)
            if response.status != 200:
                raise RuntimeError(f"set-up turn answered {response.status}")
    assert app.transcripts is not None
    await app.transcripts.flush(30)
    storage_clients.direct_transport = cosmos.direct_transport = direct_transport
    return app, conversations


async def measure(rounds: int) -> dict[str, list[float]]:
    connector = Connector()
    await connector.start()
    with emulators() as stack:
        built = {variant: await _composition(variant, stack, connector) for variant in VARIANTS}
        cpu_ms: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        try:
            for round_number in range(rounds):
                shift = round_number % len(VARIANTS)
                for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                    app, conversations = built[variant]
                    transcript_store.SINGLE_UPSERT_ROWS = 3 if variant.startswith("C") else 0
                    started = time.process_time()
                    for conversation in conversations:
                        await handle_messages(_request(conversation, connector.url, text="what?"), app.messages)
                    assert app.transcripts is not None
                    await app.transcripts.flush(30)
                    cpu_ms[variant].append((time.process_time() - started) * 1000 / len(conversations))
        finally:
            transcript_store.SINGLE_UPSERT_ROWS = 3
            for app, _ in built.values():
                await app.close()
            await connector.stop()
    return cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.storage_requests_ab", description=__doc__)
    parser.add_argument("--rounds", type=int, default=12)
    cpu_ms = asyncio.run(measure(parser.parse_args().rounds))
    medians = {variant: statistics.median(values) for variant, values in cpu_ms.items()}
    for variant, values in cpu_ms.items():
        each = ", ".join(f"{value:.1f}" for value in values)
        print(f"{variant}: {medians[variant]:.2f} CPU ms per plain turn (rounds: {each})")
    a, b, c = (medians[variant] for variant in VARIANTS)
    print(f"B/A {b / a:.3f}  C/B {c / b:.3f}  C/A {c / a:.3f}")


if __name__ == "__main__":
    main()
