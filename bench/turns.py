"""Turn latency, throughput, storage round trips per turn, and the host's peak memory.

Through the local Functions host (a subprocess, the app as shipped) with the Cosmos DB stand-in;
replies go to the local Direct Line's Connector API. Two kinds of turn:
  * plain: a message while the menu is shown -> the choice prompt's retry (state read, dialog, commit, reply);
  * start: the choice -> pending record committed -> queue message -> acknowledgement.
Each conversation sends one turn at a time (as a person does); `concurrency` conversations at once.

The same load, level by level in turn (the order rotating), against the plain-SDK baseline
(bench/baseline: the same dialog in the SDK's aiohttp hosting with MemoryStorage) and the Microsoft 365
Agents SDK baseline (bench/agents_baseline), replying to the same local Direct Line, for a side-by-side
comparison; and the CPU time of each serving process per turn (bench/cpu.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.agents_baseline import TURN_ERROR_LOG as AGENTS_TURN_ERROR_LOG
from bench.baseline import TURN_ERROR_LOG
from bench.baseline.process import BaselineProcess, start_baseline
from bench.client import TINY_OPERATION, ChannelClient, Conversation, succeeded
from bench.cpu import CpuMeter, ms_per_turn, this_process, trees
from bench.stack import LOG_DIR, CosmosStats, Emulators, bot_stack, peak_rss_mib, reads_and_writes
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


async def gather_bounded(factories: list[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
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
    ok = [elapsed for status, elapsed in samples if succeeded(status)]
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


def cpu_readers(stack: Emulators, bot: LocalStack, serving_pid: int) -> dict[str, Callable[[], float]]:
    """What a level's CPU time is read from: "serving" is the bot's process tree (the local Functions
    host, which runs the app in process, or the baseline); the others are for context only."""
    return {
        "serving": trees(serving_pid),
        "directline": trees(bot.directline.process.popen.pid),
        "cosmos": trees(stack.cosmos.process.popen.pid),
        "azurite": trees(*(process.popen.pid for process in stack.azurite.processes)),
        "load_driver": this_process,
    }


def _add_cpu(figures: dict[str, Any], cpu_s: dict[str, float]) -> None:
    turns = figures["count"]
    figures["cpu_ms_per_turn"] = ms_per_turn(cpu_s["serving"], turns)
    figures["cpu_ms_per_turn_others"] = {
        name: ms_per_turn(seconds, turns) for name, seconds in cpu_s.items() if name != "serving"
    }


# After a start level: the level's count of start turns -> whether their background work has finished.
Drain = Callable[[int], Awaitable[bool]]


@dataclass
class Contender:
    """One bot under the same load: its conversations (introduced, untimed), its CPU meter and, for the
    app, how to wait for the background work a start level caused. `levels` collects its figures."""

    plain: list[Conversation]
    starts: dict[int, list[Conversation]]
    meter: CpuMeter
    drain: Drain | None = None
    levels: dict[str, dict[str, Any]] = field(default_factory=lambda: {"plain": {}, "start": {}})


async def timed_levels(contenders: list[Contender], sizes: TurnSizes) -> None:
    """Every level of each kind, the contenders one after another at that level, the order rotating from
    level to level: a drift in the machine's speed over the run then falls on all of them alike."""
    for kind in ("plain", "start"):
        for index, level in enumerate(sizes.levels):
            shift = index % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                contender.meter.start()
                if kind == "plain":
                    figures = await plain_level(contender.plain[:level], sizes.plain_turns[level], sizes.time_bound)
                else:
                    figures = await start_level(contender.starts[level], level, sizes.time_bound)
                _add_cpu(figures, contender.meter.stop())
                if kind == "start" and contender.drain is not None:
                    figures["results_drained"] = await contender.drain(figures["count"])
                    # The meter still runs: the level's turns plus the worker's runs and result turns they caused.
                    figures["cpu_ms_per_turn_until_results"] = ms_per_turn(
                        contender.meter.stop()["serving"], figures["count"]
                    )
                contender.levels[kind][str(level)] = figures


async def _introduced(
    client: ChannelClient, sizes: TurnSizes
) -> tuple[list[Conversation], dict[int, list[Conversation]]]:
    """Setup (not timed): conversations for the plain levels and, per level, for the start levels."""
    plain = await gather_bounded([lambda: Conversation.start(client)] * max(sizes.levels), 8)
    starts = {
        level: await gather_bounded([lambda: Conversation.start(client)] * sizes.start_conversations[level], 8)
        for level in sizes.levels
    }
    return plain, starts


async def prepare_app(
    bot: LocalStack, stats: CosmosStats, sizes: TurnSizes, meter: CpuMeter, session: aiohttp.ClientSession
) -> tuple[Contender, dict[str, Any]]:
    """The app's conversations, and its storage round trips per turn (counted one turn at a time on a
    quiet host); the setup also warms the app up (runtime, containers)."""
    client = ChannelClient(session, bot.messages_url, bot.directline.url)
    plain, starts = await _introduced(client, sizes)
    counting = await gather_bounded([lambda: Conversation.start(client)] * sizes.count_samples_start, 4)
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

    async def drain(count: int) -> bool:
        nonlocal results
        results += count
        return await _wait_for_results(bot, results, sizes.drain_timeout)

    counts = {"plain": plain_counts, "start": start_counts}
    return Contender(plain, starts, meter, drain), counts


async def prepare_baseline(
    baseline: BaselineProcess, directline_url: str, sizes: TurnSizes, meter: CpuMeter, session: aiohttp.ClientSession
) -> Contender:
    """A baseline's conversations, the same as the app's, and the same warm-up turns as the app's counted ones."""
    client = ChannelClient(session, baseline.messages_url, directline_url)
    plain, starts = await _introduced(client, sizes)
    warm_up = await gather_bounded([lambda: Conversation.start(client)] * sizes.count_samples_start, 4)
    for _ in range(sizes.count_samples_plain):
        await plain[0].expect(text=PLAIN_TEXT)
    for conversation in warm_up:
        await conversation.expect(text=TINY_OPERATION)
    return Contender(plain, starts, meter)  # nothing runs a baseline's operations: no drain


def _ratio(app: float | None, baseline: float | None) -> float | None:
    """app / baseline; None when either is missing or the baseline is 0 (the JSON stays finite)."""
    if app is None or baseline is None or not math.isfinite(app) or not math.isfinite(baseline) or baseline == 0:
        return None
    return round(app / baseline, 2)


def compare(app: dict[str, Any], baseline: dict[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per kind and level: app / baseline of throughput, p50, p99 and CPU ms per turn."""
    comparison: dict[str, dict[str, dict[str, float | None]]] = {}
    for kind in ("plain", "start"):
        for level, ours in app[kind]["levels"].items():
            theirs = baseline[kind]["levels"][level]
            comparison.setdefault(kind, {})[level] = {
                "throughput_ratio": _ratio(ours["turns_per_s"], theirs["turns_per_s"]),
                "p50_ratio": _ratio(ours["p50_ms"], theirs["p50_ms"]),
                "p99_ratio": _ratio(ours["p99_ms"], theirs["p99_ms"]),
                "cpu_ratio": _ratio(ours["cpu_ms_per_turn"], theirs["cpu_ms_per_turn"]),
            }
    return comparison


async def run(stack: Emulators, quick: bool) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    with contextlib.ExitStack() as processes:
        bot = processes.enter_context(bot_stack(stack, "turns"))
        # Each baseline in its own process with its own queue: the app's worker must not pick up their
        # requests. All three stay up for the whole run; an idle one costs the others nothing to speak of.
        settings = {**bot.settings, "OperationsQueueName": f"baseline-ops-{secrets.token_hex(4)}"}
        baseline = processes.enter_context(start_baseline(settings, LOG_DIR, "turns-baseline"))
        settings = {**bot.settings, "OperationsQueueName": f"agents-ops-{secrets.token_hex(4)}"}
        agents = processes.enter_context(
            start_baseline(settings, LOG_DIR, "turns-agents-baseline", "bench.agents_baseline")
        )
        pids = {"app": bot.host.pid, "baseline": baseline.pid, "agents_baseline": agents.pid}
        async with contextlib.AsyncExitStack() as sessions:
            def session() -> aiohttp.ClientSession:
                return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128))

            stats = CosmosStats(stack.cosmos.endpoint, await sessions.enter_async_context(aiohttp.ClientSession()))
            app_meter = CpuMeter(cpu_readers(stack, bot, bot.host.pid))
            app, counts = await prepare_app(bot, stats, sizes, app_meter, await sessions.enter_async_context(session()))
            contenders = {"app": app}
            for name, process in (("baseline", baseline), ("agents_baseline", agents)):
                meter = CpuMeter(cpu_readers(stack, bot, process.pid))
                opened = await sessions.enter_async_context(session())
                contenders[name] = await prepare_baseline(process, bot.directline.url, sizes, meter, opened)
            memory_before = {name: peak_rss_mib(pid) for name, pid in pids.items()}
            await timed_levels(list(contenders.values()), sizes)
            memory_after = {name: peak_rss_mib(pid) for name, pid in pids.items()}
        result: dict[str, Any] = {
            "plain": {"levels": app.levels["plain"], "storage_per_turn": counts["plain"]},
            "start": {"levels": app.levels["start"], "storage_per_turn": counts["start"]},
            "memory": {
                "host_pid_rss_mib_after_setup": memory_before["app"].get("VmRSS"),
                "host_peak_rss_mib_after_all_levels": memory_after["app"].get("VmHWM"),
                "host_rss_mib_at_end": memory_after["app"].get("VmRSS"),
            },
            "unclosed_client_sessions_logged": bot.host.output.count("Unclosed client session"),
        }
        for name in ("baseline", "agents_baseline"):
            result[name] = {
                "plain": {"levels": contenders[name].levels["plain"]},
                "start": {"levels": contenders[name].levels["start"]},
                "memory": {
                    "rss_mib_after_setup": memory_before[name].get("VmRSS"),
                    "peak_rss_mib_after_all_levels": memory_after[name].get("VmHWM"),
                    "rss_mib_at_end": memory_after[name].get("VmRSS"),
                },
            }
        result["baseline"]["turn_errors_logged"] = baseline.log_text().count(TURN_ERROR_LOG)
        result["agents_baseline"]["turn_errors_logged"] = agents.log_text().count(AGENTS_TURN_ERROR_LOG)
        from bench.baseline.app import per_turn_clients_cpu_ms  # here: botbuilder is slow to import

        repeats = 5 if quick else 50
        result["baseline"]["sdk_clients_cpu_ms_per_turn"] = await per_turn_clients_cpu_ms(bot.directline.url, repeats)
    result["comparison"] = compare(result, result["baseline"])
    result["comparison_agents"] = compare(result, result["agents_baseline"])
    result["notes"] = (
        "plain = a message while the menu is shown (retry prompt); start = the choice of a tiny operation "
        f"({TINY_OPERATION!r}): pending record committed, then the queue message. Latency = the HTTP POST to "
        "/api/messages (the turn, its commit and its replies to the Direct Line all happen before it answers). "
        "Start levels include the worker's background work for the operations they start (as in production). "
        "Storage per turn counted at the stand-in, one turn at a time on a quiet host. "
        "Baseline = bench/baseline: the same dialog and greeting (LongOperationBot, MainDialog) hosted as the "
        "SDK's Python samples host a bot (botbuilder-integration-aiohttp CloudAdapter, POST /api/messages -> "
        "adapter.process, MemoryStorage, state saved at the end of on_turn, no app id), in its own process, driven "
        "by the same client with the same conversations, turns and time bounds, level by level in turn with the "
        "app and the Agents SDK baseline (the order rotating from level to level, so that a drift in the "
        "machine's speed falls on all three alike), replying to the same local Direct Line; it answers 201, "
        "which counts as success like the app's 200. Its start "
        "turn sends the operation request straight to an Azurite queue once the state is saved (no outbox; "
        "nothing consumes that queue), where the app commits the request in its outbox with the state, sends "
        "it, and removes it with the conversation's next write (its result turn's commit): 1 write per start; "
        "the bench sets no per-user limits, so a start touches no user state (with limits: 1 read + 1 write "
        "more). The app keeps state durable in the Cosmos DB stand-in (1-2 point reads + 1-2 writes per "
        "turn), records transcripts in Azurite's table service and runs one turn at a time per "
        "conversation; the baseline keeps state in memory and records nothing. Ratios are app / baseline "
        "(throughput below 1 and latency or CPU above 1 mean the app costs more). CPU ms per turn = the "
        "serving process tree's utime + stime (/proc/<pid>/stat, live children found by a tree walk, waited "
        "ones in cutime + cstime) over the level's wall time, divided by its successful turns: for the app the "
        "local Functions host process, which runs the app in process (its queue and timer listeners' polling "
        "included); for the baseline its one process. Emulators (Azurite, the Cosmos DB stand-in), the local "
        "Direct Line and the load driver are excluded there and shown apart, per turn, for context. App start "
        "levels: 'until results' keeps counting until the worker's runs and result turns (in the same host) "
        "are done; the baseline has no worker. 'SDK clients per turn': CPU ms, measured in the load driver's "
        "process, that the SDK's CloudAdapter spends on every turn building a new ConnectorClient and "
        "UserTokenClient (msrest retry-policy setup; the new client also opens a new TCP connection for the "
        "turn's replies); the app builds each once (services/turns/authentication.py)."
    )
    return result
