"""The shared progress relay and formatting helpers."""

from __future__ import annotations

import pytest

from operations import OperationFailed, get_operation
from operations._support import Progress, checked_parameters, money, plural


async def test_progress_is_throttled_monotonic_and_finishes_once() -> None:
    sent: list[float] = []

    async def callback(fraction: float) -> None:
        sent.append(fraction)

    progress = Progress(callback, min_step=0.1, max_interval=3600)
    await progress.start()
    for done in (1, 5, 12, 11, 30, 31, 100, 100):
        await progress.update(done, 100)
    await progress.finish()
    await progress.finish()
    assert sent == [0.0, 0.12, 0.3, 0.999, 1.0]


async def test_progress_is_sent_when_due_even_for_small_steps() -> None:
    sent: list[float] = []

    async def callback(fraction: float) -> None:
        sent.append(fraction)

    progress = Progress(callback, min_step=0.5, max_interval=0.0)
    for done in range(1, 4):
        await progress.update(done, 1000)
    assert sent == [0.001, 0.002, 0.003]


def test_checked_parameters_turns_bad_input_into_a_user_message() -> None:
    with pytest.raises(OperationFailed, match="days must be between 1 and 252"):
        checked_parameters(get_operation("risk simulation"), {"days": 0})


def test_formatting() -> None:
    assert money(0) == "$0.00"
    assert money(123_456_789) == "$1,234,567.89"
    assert money(-5) == "-$0.05"
    assert plural(1, "prime") == "1 prime"
    assert plural(1_000, "prime") == "1,000 primes"
