"""`python -m bench [--quick] [--only SECTION ...]`: run the benchmarks, print a table, write
bench/results/latest.json and latest.md. Figures only: nothing here asserts a time."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import cold_start, delivery, instances, machine, memory, profile_turn, report, sweeper, turns
from bench.stack import RESULTS_DIR, Emulators, emulators

Section = Callable[[Emulators, bool], Awaitable[dict[str, Any]]]
SECTIONS: dict[str, Section] = {
    "turns": turns.run,
    "delivery": delivery.run,
    "sweeper": sweeper.run,
    "cold_start": cold_start.run,
    "profile": profile_turn.run,
    "memory": memory.run,
    "instances": instances.run,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test's mode, well under a minute)")
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), help="run only these sections")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR, help="folder for latest.json and latest.md")
    parser.add_argument(
        "--memory-conversations",
        type=int,
        default=memory.FULL_LARGEST,
        help=f"distinct conversations the memory section goes up to (default {memory.FULL_LARGEST:,}; "
        "100000 takes about 40 minutes on 2 cores)",
    )
    return parser.parse_args(argv)


async def run_sections(names: list[str], quick: bool, memory_conversations: int) -> dict[str, Any]:
    sections = {**SECTIONS, "memory": functools.partial(memory.run, largest=memory_conversations)}
    results: dict[str, Any] = {}
    with emulators() as stack:
        for name in names:
            started = time.perf_counter()
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            results[name] = await sections[name](stack, quick)
            results[name]["section_seconds"] = round(time.perf_counter() - started, 1)
            print(f"[bench] {name} done in {results[name]['section_seconds']} s", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine.describe(), "quick": args.quick}
    results.update(asyncio.run(run_sections(args.only or list(SECTIONS), args.quick, args.memory_conversations)))
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    tables = report.tables(results)
    notes = {name: results[name]["notes"] for name in SECTIONS if name in results and "notes" in results[name]}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.json").write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    (args.output / "latest.md").write_text(report.render_markdown(tables, notes))
    print(report.render_text(tables))
    print(f"Results: {args.output / 'latest.json'} and {args.output / 'latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
