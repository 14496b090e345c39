"""`python -m bench.state_codec_ab [--rounds N]`: A/B of the state codec against jsonpickle, in one process.

Three paths: jsonpickle; the codec writing jsonpickle's own form ("codec, full models"); the codec writing
msrest models compactly ("codec, compact models", services/state/state_codec.py: COMPACT_MODELS). Each
figure is measured with the paths taking turns in rounds (the order rotates every round), so machine noise
hits all alike: (1) ms per flatten + restore of real conversation documents, (2) host CPU ms (process time:
the Cosmos DB stand-in runs in its own process) and wall ms per plain turn through the messages handler as
bench/profile_turn.py runs it (the first turn of each block, which reads the previous path's document, is
left out). Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jsonpickle import Pickler, Unpickler

from bench.profile_turn import Connector, _request
from bench.stack import bench_settings, emulators
from bootstrap import Composition
from handlers.messages import handle_messages
from services.settings import load_settings
from services.state import state_codec
from services.state.cosmos_storage import escape_key

DOCUMENTS = Path(__file__).resolve().parents[1] / "tests" / "support" / "stored_states_before_codec.json"
CODEC = (state_codec.flatten, state_codec.restore)
PATHS = ("jsonpickle", "codec, full models", "codec, compact models")


def _jsonpickle_flatten(state: Any) -> Any:
    return Pickler().flatten(state)


def _jsonpickle_restore(document: Any) -> Any:
    return Unpickler().restore(document)


@contextmanager
def path(name: str) -> Iterator[None]:
    """Every caller of state_codec.flatten/restore goes through `name`'s path meanwhile."""
    compact = state_codec.COMPACT_MODELS
    if name == "jsonpickle":
        state_codec.flatten, state_codec.restore = _jsonpickle_flatten, _jsonpickle_restore  # type: ignore[assignment]
    state_codec.COMPACT_MODELS = name == "codec, compact models"
    try:
        yield
    finally:
        state_codec.flatten, state_codec.restore = CODEC  # type: ignore[assignment]
        state_codec.COMPACT_MODELS = compact


def rotated(number: int) -> tuple[str, ...]:
    shift = number % len(PATHS)
    return PATHS[shift:] + PATHS[:shift]


def alternate(rounds: int, run: Callable[[str], list[float]]) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in PATHS}
    for number in range(rounds):
        for name in rotated(number):
            with path(name):
                samples[name].extend(run(name))
    return samples


def report(label: str, samples: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) for name, values in samples.items()}
    old, full, compact = (medians[name] for name in PATHS)
    figures = ", ".join(f"{name} {value:.3f} ms" for name, value in medians.items())
    print(f"{label}: {figures}; full/jsonpickle {full / old:.2f}, compact/jsonpickle {compact / old:.2f}, "
          f"compact/full {compact / full:.2f}")  # fmt: skip


def flatten_and_restore(documents: list[dict[str, Any]], repeat: int) -> Callable[[str], list[float]]:
    def run(_: str) -> list[float]:
        started = time.perf_counter()
        for _ in range(repeat):
            for document in documents:
                state_codec.flatten(state_codec.restore(document))
        return [(time.perf_counter() - started) * 1000 / (repeat * len(documents))]

    return run


async def turns(rounds: int, per_round: int) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, int]]:
    connector = Connector()
    await connector.start()
    with emulators() as stack:
        app = Composition(load_settings(bench_settings(stack, "http://127.0.0.1:9/")))
        try:
            conversation = f"ab-{uuid.uuid4().hex[:8]}"
            url = connector.url
            update = {"type": "conversationUpdate", "membersAdded": [{"id": "bot"}, {"id": f"user-of-{conversation}"}]}
            for fields in (update, {"text": "Ada"}, {"text": "what?"}):
                await handle_messages(_request(conversation, url, **fields), app.messages)
            cpu: dict[str, list[float]] = {name: [] for name in PATHS}
            wall: dict[str, list[float]] = {name: [] for name in PATHS}
            sizes: dict[str, int] = {}
            loop = asyncio.get_running_loop()
            container = await app.cosmos.conversation_container()
            doc_id = escape_key(f"directline/conversations/{conversation}")
            for number in range(rounds):
                for name in rotated(number):
                    with path(name):
                        for turn in range(per_round + 1):
                            request = _request(conversation, url, text="what?")
                            started_cpu, started = time.process_time(), loop.time()
                            await handle_messages(request, app.messages)
                            if turn:
                                cpu[name].append((time.process_time() - started_cpu) * 1000)
                                wall[name].append((loop.time() - started) * 1000)
                    stored = await container.read_item(item=doc_id, partition_key=doc_id)
                    sizes[name] = len(json.dumps(stored["document"]))
        finally:
            await app.close()
            await connector.stop()
    return cpu, wall, sizes


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.state_codec_ab", description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--turns-per-round", type=int, default=20)
    args = parser.parse_args()
    documents = [doc for name, doc in json.loads(DOCUMENTS.read_text()).items() if not name.startswith("_")]
    codec = alternate(args.rounds, flatten_and_restore(documents, 50))
    report("flatten + restore of a stored conversation state", codec)
    cpu, wall, sizes = asyncio.run(turns(args.rounds, args.turns_per_round))
    report("host CPU per plain turn", cpu)
    report("wall time per plain turn", wall)
    print("conversation state, bytes of JSON: " + ", ".join(f"{name} {size}" for name, size in sizes.items()))


if __name__ == "__main__":
    main()
