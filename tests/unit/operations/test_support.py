"""The shared progress reporter and formatting helpers."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from operations._support import Progress, in_thread, money, plural


async def test_progress_is_monotonic_keeps_1_for_the_end_and_finishes_once() -> None:
    sent: list[float] = []

    async def callback(fraction: float) -> None:
        sent.append(fraction)

    progress = Progress(callback)
    await progress.start()
    for done in (1, 5, 12, 11, 30, 30, 100, 100):
        await progress.update(done, 100)
    await progress.finish()
    await progress.finish()
    assert sent == [0.0, 0.01, 0.05, 0.12, 0.3, 0.999, 1.0]


def test_formatting() -> None:
    assert money(0) == "$0.00"
    assert money(123_456_789) == "$1,234,567.89"
    assert money(-5) == "-$0.05"
    assert plural(1, "prime") == "1 prime"
    assert plural(1_000, "prime") == "1,000 primes"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
async def test_a_process_forked_after_an_operation_ran_can_run_operations_too() -> None:
    """A worker process forked from one that already ran an operation (the pool's threads stay behind)."""
    assert await in_thread(sum, [1, 2]) == 3  # the parent's pool now exists, with its threads
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit status
        signal.alarm(60)  # a hang ends the child with SIGALRM instead of hanging the test run
        total = asyncio.run(in_thread(sum, [3, 4]))
        os._exit(0 if total == 7 else 1)
    _, status = await asyncio.to_thread(os.waitpid, child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
