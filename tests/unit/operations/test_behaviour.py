"""What the worker relies on from every built-in operation: progress, responsiveness, determinism, plain failures."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from operations import InvalidParameters, Operation, all_operations, get_operation, resolve_parameters
from operations._support import in_thread

# Small runs (well under a second) and medium runs (~0.3-1 s: long enough to watch the event loop).
SMALL: dict[str, dict[str, int]] = {
    "prime report": {"start": 1, "end": 50_000},
    "sales report": {"orders": 2_000, "seed": 1},
    "risk simulation": {"simulations": 2_000, "days": 5, "seed": 1},
    "route report": {"size": 30, "seed": 1},
}
MEDIUM: dict[str, dict[str, int]] = {
    "prime report": {"start": 1, "end": 12_000_000},
    "sales report": {"orders": 200_000},
    "risk simulation": {"simulations": 120_000},
    "route report": {"size": 350},
}
BUILTIN = [op.name for op in all_operations()]


def resolved(name: str, sizes: dict[str, dict[str, int]]) -> dict[str, int]:
    """Every parameter, as the worker hands them to an operation after the registry checked them."""
    return resolve_parameters(get_operation(name), sizes[name])


class Recorder:
    def __init__(self) -> None:
        self.fractions: list[float] = []
        self.started = asyncio.Event()

    async def __call__(self, fraction: float) -> None:
        self.fractions.append(fraction)
        if fraction > 0:
            self.started.set()


def test_every_builtin_has_test_sizes() -> None:
    assert set(BUILTIN) <= set(SMALL) and set(BUILTIN) <= set(MEDIUM)


@pytest.mark.parametrize("name", BUILTIN)
async def test_small_runs_are_deterministic_and_short_to_read(name: str) -> None:
    # How fast they are is for bench/; here: the same answer twice, fit for a chat message.
    operation = get_operation(name)
    first = await operation.run(resolved(name, SMALL), Recorder())
    second = await operation.run(resolved(name, SMALL), Recorder())
    assert first == second
    assert first.strip() and len(first) < 600 and len(first.splitlines()) <= 6


@pytest.mark.parametrize("name", BUILTIN)
async def test_progress_is_monotonic_and_ends_at_one(name: str) -> None:
    progress = Recorder()
    await get_operation(name).run(resolved(name, MEDIUM), progress)
    fractions = progress.fractions
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions.count(1.0) == 1
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)
    assert len(fractions) >= 3  # something in between, not just start and end


@pytest.mark.parametrize("name", BUILTIN)
async def test_event_loop_stays_responsive(name: str) -> None:
    operation: Operation = get_operation(name)
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        await operation.run(resolved(name, MEDIUM), Recorder())
    finally:
        running = False
        await task
    assert len(gaps) > 10  # the ticker really ran alongside the operation
    assert max(gaps) < 0.5


@pytest.mark.parametrize("name", BUILTIN)
async def test_cancellation_stops_the_work(name: str) -> None:
    progress = Recorder()
    task = asyncio.create_task(get_operation(name).run(resolved(name, MEDIUM), progress))
    await progress.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 1.0 not in progress.fractions  # stopped, not finished


async def test_a_cancelled_chunk_finishes_before_the_cancellation_returns() -> None:
    release, finished = threading.Event(), threading.Event()

    def chunk() -> None:
        release.wait(10)
        finished.set()

    task = asyncio.create_task(in_thread(chunk))
    await asyncio.to_thread(lambda: None)  # the chunk has been handed to the thread pool
    task.cancel()
    asyncio.get_running_loop().call_soon(release.set)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()  # no CPU work outlives its operation


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("bad", [{"no such thing": 1}, "out of range"])
def test_bad_parameters_are_refused_in_plain_words(name: str, bad: object) -> None:
    operation = get_operation(name)
    if bad == "out of range":
        first = operation.parameters[0]
        bad = {first.name: first.maximum + 1}
    with pytest.raises(InvalidParameters) as caught:
        resolve_parameters(operation, bad)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.endswith(".") and "Traceback" not in message


@pytest.mark.parametrize("name", BUILTIN)
async def test_defaults_accepted_from_an_empty_mapping(name: str) -> None:
    """Only checks that defaults resolve; running them is minutes of CPU, measured outside the tests."""
    from operations import resolve_parameters

    operation = get_operation(name)
    assert set(resolve_parameters(operation, {})) == {p.name for p in operation.parameters}
