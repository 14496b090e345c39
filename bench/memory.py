"""Memory of one instance as distinct conversations pile up: RSS after N conversations.

The messages handler runs in this process as the host calls it (handlers.messages.handle_messages
with bootstrap.Composition's dependencies) against the Cosmos DB stand-in, Azurite (transcripts) and a
tiny local Connector (bench/profile_turn.py). Each conversation gets one turn, a first "hi" (greeting,
name prompt, state committed, transcript recorded), from a new user: every per-process map keyed by
conversation or user (turn locks, remembered references, indexed transcripts, Connector clients) sees
a new key each time. RSS (VmRSS) is read at each checkpoint after a garbage collection; the tracked
structures' sizes are read beside it. Bounded maps show as an RSS that levels off.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
import uuid
from typing import Any

from bench.profile_turn import Connector, _request
from bench.stack import Emulators, bench_settings
from bootstrap import Composition
from handlers.messages import handle_messages
from services.settings import load_settings

FULL_LARGEST = 10_000  # `python -m bench --only memory --memory-conversations 100000` for the long run
CHECKPOINTS = (1_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000)
QUICK_CHECKPOINTS = (50, 200)
CONCURRENCY = 16


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _map_sizes(app: Composition) -> dict[str, int]:
    """Sizes of the per-process maps that grow with conversations or users, where they can be reached."""
    built = app.__dict__  # cached_property values, only those the turns built
    sizes: dict[str, int] = {}
    if "unit_of_work" in built:
        sizes["turn locks"] = len(built["unit_of_work"].locks._locks)
    if "references" in built:
        sizes["remembered references"] = len(built["references"]._remembered)
    if "transcript_store" in built:
        sizes["indexed transcript pairs"] = sum(map(len, built["transcript_store"]._indexed.values()))
    if "adapter" in built:
        clients = getattr(getattr(built["adapter"], "_auth", None), "_clients", None)
        if clients is not None:
            sizes["connector clients"] = len(clients)
    return sizes


def checkpoints_up_to(largest: int) -> tuple[int, ...]:
    return (*(c for c in CHECKPOINTS if c < largest), largest)


async def run(stack: Emulators, quick: bool, largest: int = FULL_LARGEST) -> dict[str, Any]:
    checkpoints = QUICK_CHECKPOINTS if quick else checkpoints_up_to(largest)
    connector = Connector()
    await connector.start()
    app = Composition(load_settings(bench_settings(stack, "http://127.0.0.1:9/")))
    points: list[dict[str, Any]] = []
    errors = 0
    started = time.perf_counter()
    try:
        gc.collect()
        rss_before = _rss_mib()
        done = 0
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            nonlocal errors
            async with semaphore:
                conversation = f"memory-{uuid.uuid4().hex}"
                response = await handle_messages(_request(conversation, connector.url, text="hi"), app.messages)
                if response.status != 200:
                    errors += 1

        for checkpoint in checkpoints:
            for batch_start in range(done, checkpoint, 1000):
                await asyncio.gather(*(one() for _ in range(min(1000, checkpoint - batch_start))))
            done = checkpoint
            gc.collect()
            points.append(
                {
                    "conversations": checkpoint,
                    "rss_mib": _rss_mib(),
                    "elapsed_s": round(time.perf_counter() - started, 1),
                    "maps": _map_sizes(app),
                }
            )
            print(f"[bench] memory: {points[-1]}", file=sys.stderr, flush=True)  # a long run shows its progress
    finally:
        await app.close()
        await connector.stop()
    return {
        "rss_mib_before": rss_before,
        "checkpoints": points,
        "errors": errors,
        "notes": (
            "One first turn ('hi': greeting and name prompt, state committed, transcript recorded) in each of N "
            "distinct conversations from N distinct users, handled in this process (the app in process, as the "
            f"Functions host runs it), {CONCURRENCY} at a time; RSS of this process after a GC at each checkpoint. "
            "Map sizes: the per-process structures keyed by conversation or user that the composition exposes."
        ),
    }
