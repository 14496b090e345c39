"""Prime report: primes, twin primes and the largest prime gap in a range (segmented sieve)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import compress

from ._support import Progress, as_list, in_thread, plural
from .registry import Operation, OperationFailed, Parameter, ProgressCallback

# One segment is ~10-20 ms of work: short enough to keep the GIL hand-offs and
# cancellation prompt, long enough that per-segment overhead does not matter.
SEGMENT = 1 << 19
_ZEROS = memoryview(bytes(SEGMENT))


@dataclass(frozen=True)
class PrimeSummary:
    start: int
    end: int
    count: int
    twin_pairs: int  # pairs (p, p + 2) with both in the range
    largest_gap: int  # 0 when the range holds fewer than two primes
    gap_after: int  # the prime that starts the (first) largest gap
    largest_prime: int  # 0 when there is none


def base_primes(limit: int) -> list[int]:
    """Primes <= limit (small limits only: used for the sieving primes up to sqrt(end))."""
    if limit < 2:
        return []
    flags = bytearray([1]) * (limit + 1)
    flags[0] = flags[1] = 0
    for p in range(2, math.isqrt(limit) + 1):
        if flags[p]:
            flags[p * p :: p] = bytes(len(range(p * p, limit + 1, p)))
    return list(compress(range(limit + 1), flags))


def sieve_segment(lo: int, hi: int, sieving: list[int]) -> bytearray:
    """Flags for lo..hi-1 (1 = prime); ``sieving`` must hold every prime <= sqrt(hi - 1)."""
    size = hi - lo
    flags = bytearray([1]) * size
    for p in sieving:
        square = p * p
        if square >= hi:
            break
        first = max(square, -(-lo // p) * p) - lo
        flags[first::p] = _ZEROS[: len(range(first, size, p))]
    for small in (0, 1):
        if lo <= small < hi:
            flags[small - lo] = 0
    return flags


class _Tally:
    """Running counts across segments (only touched by one thread at a time)."""

    def __init__(self) -> None:
        self.count = 0
        self.twin_pairs = 0
        self.largest_gap = 0
        self.gap_after = 0
        self.previous: int | None = None

    def add_segment(self, lo: int, hi: int, sieving: list[int]) -> None:
        # Walk the flags with find(): much faster than enumerating every number, and no
        # single C call runs long (enumerating a whole segment held the GIL for ~35 ms).
        find = sieve_segment(lo, hi, sieving).find
        position = find(1)
        if position < 0:
            return
        previous = self.previous if self.previous is not None else lo + position
        count, twins, largest, after = self.count, self.twin_pairs, self.largest_gap, self.gap_after
        while position >= 0:
            p = lo + position
            gap = p - previous
            if gap == 2:
                twins += 1
            if gap > largest:  # strictly greater: keep the first largest gap
                largest, after = gap, previous
            previous = p
            count += 1
            position = find(1, position + 1)
        self.count, self.twin_pairs, self.largest_gap, self.gap_after = count, twins, largest, after
        self.previous = previous


async def prime_summary(start: int, end: int, progress: Progress | None = None) -> PrimeSummary:
    if start > end:
        raise OperationFailed(f"The range is empty: start ({start:,}) is after end ({end:,}).")
    sieving = await in_thread(base_primes, math.isqrt(end))
    tally = _Tally()
    lo = start
    while lo <= end:
        hi = min(lo + SEGMENT, end + 1)
        await in_thread(tally.add_segment, lo, hi, sieving)
        lo = hi
        if progress is not None:
            await progress.update(lo - start, end + 1 - start)
    return PrimeSummary(
        start=start,
        end=end,
        count=tally.count,
        twin_pairs=tally.twin_pairs,
        largest_gap=tally.largest_gap,
        gap_after=tally.gap_after,
        largest_prime=tally.previous or 0,
    )


def describe(summary: PrimeSummary) -> str:
    span = f"{summary.start:,} to {summary.end:,}"  # not "..": Markdown renderers make it an ellipsis
    if summary.count == 0:
        return f"Prime report for {span}: no primes in this range."
    if summary.count == 1:
        return f"Prime report for {span}: exactly one prime, {summary.largest_prime:,}."
    return as_list(
        f"Prime report for {span}:",
        plural(summary.count, "prime"),
        plural(summary.twin_pairs, "twin pair"),
        f"largest gap {summary.largest_gap:,} after {summary.gap_after:,}",
        f"largest prime {summary.largest_prime:,}",
    )


async def run(parameters: Mapping[str, int], progress: ProgressCallback) -> str:
    async with Progress(progress) as reporter:
        summary = await prime_summary(parameters["start"], parameters["end"], reporter)
    return describe(summary)


OPERATION = Operation(
    name="prime report",
    description="Count primes and twin primes in a range and find the largest gap between primes.",
    parameters=(
        Parameter("start", "First number of the range", default=1, minimum=1, maximum=5_000_000_000),
        Parameter("end", "Last number of the range", default=500_000_000, minimum=1, maximum=5_000_000_000),
    ),
    run=run,
)
