"""The shared progress reporter and formatting helpers."""

from __future__ import annotations

from operations._support import Progress, money, plural


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
