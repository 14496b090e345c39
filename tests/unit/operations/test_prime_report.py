"""Prime report against trial division and published values."""

from __future__ import annotations

import itertools

import pytest

from operations import OperationFailed, get_operation, prime_report
from operations.prime_report import PrimeSummary, describe, prime_summary


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def _naive(start: int, end: int) -> tuple[int, int, int, int]:
    primes = [n for n in range(start, end + 1) if _is_prime(n)]
    twins = sum(1 for p in primes if p + 2 <= end and _is_prime(p + 2))
    gaps = [(b - a, a) for a, b in itertools.pairwise(primes)]
    largest, after = max(gaps, key=lambda g: (g[0], -g[1])) if gaps else (0, 0)
    return len(primes), twins, largest, after


@pytest.mark.parametrize(("start", "end"), [(1, 20_000), (9_000, 15_000), (2, 3), (24, 28), (1, 1), (89, 97)])
async def test_matches_trial_division_across_segments(monkeypatch: pytest.MonkeyPatch, start: int, end: int) -> None:
    monkeypatch.setattr(prime_report, "SEGMENT", 997)  # many segment boundaries, odd size
    summary = await prime_summary(start, end)
    assert (summary.count, summary.twin_pairs, summary.largest_gap, summary.gap_after) == _naive(start, end)


async def test_published_values_below_one_million() -> None:
    # pi(10^6) = 78,498; 8,169 twin prime pairs below 10^6; maximal gap 114 follows 492,113.
    summary = await prime_summary(1, 1_000_000)
    assert summary == PrimeSummary(1, 1_000_000, 78_498, 8_169, 114, 492_113, 999_983)


async def test_result_text() -> None:
    async def progress(fraction: float) -> None:
        pass

    text = await get_operation("prime report").run({"start": 1, "end": 100_000}, progress)
    # A heading and one "- " line per figure: a list in Web Chat, plain text elsewhere.
    assert text == (
        "Prime report for 1 to 100,000:\n- 9,592 primes\n- 1,224 twin pairs\n- largest gap 72 after 31,397\n"
        "- largest prime 99,991"
    )


def test_text_for_tiny_ranges() -> None:
    assert describe(PrimeSummary(24, 28, 0, 0, 0, 0, 0)) == "Prime report for 24 to 28: no primes in this range."
    assert describe(PrimeSummary(2, 2, 1, 0, 0, 0, 2)) == "Prime report for 2 to 2: exactly one prime, 2."
    assert "\n- 1 twin pair\n" in describe(PrimeSummary(3, 5, 2, 1, 2, 3, 5))


async def test_empty_range_is_a_plain_failure() -> None:
    async def progress(fraction: float) -> None:
        pass

    with pytest.raises(OperationFailed, match=r"start \(10\) is after end \(5\)"):
        await get_operation("prime report").run({"start": 10, "end": 5}, progress)
