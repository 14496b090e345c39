"""Turn latency, throughput, storage round trips per turn, and the host's peak memory.

Through the local Functions host (a subprocess, the app as shipped) with the Cosmos DB stand-in;
replies go to the local Direct Line's Connector API. Two kinds of turn:
  * plain: a message while the menu is shown -> the choice prompt's retry (state read, dialog, commit, reply);
  * start: the choice -> pending record committed -> queue message -> acknowledgement.
Each conversation sends one turn at a time (as a person does); `concurrency` conversations at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.client import TINY_OPERATION, ChannelClient, Conversation
from bench.stack import CosmosStats, Emulators, bot_stack, peak_rss_mib, reads_and_writes
from bench.stats import summary_ms
from localdev.stack import LocalStack

PLAIN_TEXT = "what?"  # not a choice: the menu's retry prompt
SUCCEEDED_LINE = "(prime report) succeeded"


@dataclass(frozen=True)
class TurnSizes:
    levels: tuple[int, ...]
    plain_turns: dict[int, int]  # per level: bounded count
    start_conversations: dict[int, int]  # per level: one choice turn each
    time_bound: float  # seconds per level, whatever the count
    count_samples_plain: int
    count_samples_start: int
    drain_timeout: float


FULL = TurnSizes((1, 8, 32), {1: 150, 8: 400, 32: 800}, {1: 30, 8: 64, 32: 128}, 20.0, 10, 3, 60.0)
QUICK = TurnSizes((1, 8, 32), {1: 5, 8: 16, 32: 32}, {1: 2, 8: 8, 32: 32}, 5.0, 2, 1, 15.0)


async def _gather_bounded(factories: list[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(factory: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await factory()

    return list(await asyncio.gather(*(run(f) for f in factories)))


async def _level(
    workers: list[Callable[[float], Awaitable[list[tuple[int, float]]]]], time_bound: float
) -> dict[str, Any]:
    deadline = time.perf_counter() + time_bound
    started = time.perf_counter()
    results = await asyncio.gather(*(worker(deadline) for worker in workers))
    wall = time.perf_counter() - started
    samples = [r for result in results for r in result]
    ok = [elapsed for status, elapsed in samples if status == 200]
    return {
        **summary_ms(ok),
        "errors": len(samples) - len(ok),
        "wall_s": round(wall, 2),
        "turns_per_s": round(len(ok) / wall, 1) if wall > 0 else 0.0,
    }


async def plain_level(conversations: list[Conversation], turns: int, time_bound: float) -> dict[str, Any]:
    per_conversation = max(1, turns // len(conversations))

    def worker(conversation: Conversation) -> Callable[[float], Awaitable[list[tuple[int, float]]]]:
        async def run(deadline: float) -> list[tuple[int, float]]:
            samples = []
            for _ in range(per_conversation):
                if time.perf_counter() > deadline:
                    break
                samples.append(await conversation.say(text=PLAIN_TEXT))
            return samples

        return run

    return await _level([worker(c) for c in conversations], time_bound)


async def start_level(conversations: list[Conversation], concurrency: int, time_bound: float) -> dict[str, Any]:
    lanes = [conversations[i::concurrency] for i in range(concurrency)]

    def worker(lane: list[Conversation]) -> Callable[[float], Awaitable[list[tuple[int, float]]]]:
        async def run(deadline: float) -> list[tuple[int, float]]:
            samples = []
            for conversation in lane:
                if time.perf_counter() > deadline:
                    break
                samples.append(await conversation.say(text=TINY_OPERATION))
            return samples

        return run

    return await _level([worker(lane) for lane in lanes if lane], time_bound)


def _per_turn(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean requests per turn from per-turn stand-in snapshots, in all and per container."""
    n = len(snapshots)
    kinds: dict[str, float] = {}
    containers: dict[str, dict[str, float]] = {}
    for snapshot in snapshots:
        for kind, value in snapshot["kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + value / n
        for container, per_kind in snapshot["containers"].items():
            target = containers.setdefault(container, {})
            for kind, value in per_kind.items():
                target[kind] = target.get(kind, 0) + value / n
    reads, writes = reads_and_writes(kinds)
    return {
        "samples": n,
        "reads": round(reads, 2),
        "writes": round(writes, 2),
        "total": round(sum(kinds.values()), 2),
        "kinds": {k: round(v, 2) for k, v in kinds.items() if v},
        "containers": {c: {k: round(v, 2) for k, v in per.items()} for c, per in containers.items()},
    }


async def _wait_for_results(bot: LocalStack, expected: int, timeout: float) -> bool:
    """Wait until the worker reports `expected` results in all (so a level starts on a quiet host)."""
    deadline = time.monotonic() + timeout
    while bot.host.output.count(SUCCEEDED_LINE) < expected:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def measure(bot: LocalStack, stats: CosmosStats, sizes: TurnSizes) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128)) as session:
        client = ChannelClient(session, bot.messages_url, bot.directline.url)
        # Setup (not timed): introduced conversations; also warms the app up (runtime, containers).
        biggest = max(sizes.levels)
        plain = await _gather_bounded([lambda: Conversation.start(client)] * biggest, 8)
        starts = {
            level: await _gather_bounded([lambda: Conversation.start(client)] * sizes.start_conversations[level], 8)
            for level in sizes.levels
        }
        counting = await _gather_bounded([lambda: Conversation.start(client)] * sizes.count_samples_start, 4)
        memory_before = peak_rss_mib(bot.host.pid)

        # Storage round trips, counted at the stand-in, one turn at a time on a quiet host.
        snapshots = []
        for _ in range(sizes.count_samples_plain):
            await stats.reset()
            await plain[0].expect(text=PLAIN_TEXT)
            snapshots.append(await stats.read())
        plain_counts = _per_turn(snapshots)
        snapshots = []
        results = bot.host.output.count(SUCCEEDED_LINE)
        for conversation in counting:
            await stats.reset()
            await conversation.expect(text=TINY_OPERATION)
            snapshots.append(await stats.read())
            results += 1
            # Its result turn must not land in the next window.
            await _wait_for_results(bot, results, sizes.drain_timeout)
        start_counts = _per_turn(snapshots)

        plain_levels: dict[str, Any] = {}
        for level in sizes.levels:
            plain_levels[str(level)] = await plain_level(plain[:level], sizes.plain_turns[level], sizes.time_bound)
        memory_after_plain = peak_rss_mib(bot.host.pid)
        start_levels: dict[str, Any] = {}
        for level in sizes.levels:
            start_levels[str(level)] = await start_level(starts[level], level, sizes.time_bound)
            results += start_levels[str(level)]["count"]
            drained = await _wait_for_results(bot, results, sizes.drain_timeout)
            start_levels[str(level)]["results_drained"] = drained
        memory_after = peak_rss_mib(bot.host.pid)
    return {
        "plain": {"levels": plain_levels, "storage_per_turn": plain_counts},
        "start": {"levels": start_levels, "storage_per_turn": start_counts},
        "memory": {
            "host_pid_rss_mib_after_setup": memory_before.get("VmRSS"),
            "host_peak_rss_mib_after_plain_levels": memory_after_plain.get("VmHWM"),
            "host_peak_rss_mib_after_all_levels": memory_after.get("VmHWM"),
            "host_rss_mib_at_end": memory_after.get("VmRSS"),
        },
    }


async def run(stack: Emulators, quick: bool) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    with bot_stack(stack, "turns") as bot:
        async with aiohttp.ClientSession() as session:
            stats = CosmosStats(stack.cosmos.endpoint, session)
            result = await measure(bot, stats, sizes)
        result["unclosed_client_sessions_logged"] = bot.host.output.count("Unclosed client session")
    result["notes"] = (
        "plain = a message while the menu is shown (retry prompt); start = the choice of a tiny operation "
        f"({TINY_OPERATION!r}): pending record committed, then the queue message. Latency = the HTTP POST to "
        "/api/messages (the turn, its commit and its replies to the Direct Line all happen before it answers). "
        "Start levels include the worker's background work for the operations they start (as in production). "
        "Storage per turn counted at the stand-in, one turn at a time on a quiet host."
    )
    return result
