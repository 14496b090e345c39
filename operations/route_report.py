"""Route report: shortest travel times from a depot across a generated road grid (Dijkstra)."""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Mapping
from dataclasses import dataclass

from ._support import Progress, as_list, in_thread, plural
from .registry import Operation, Parameter, ProgressCallback

CLOSED_PERCENT = 15  # share of roads closed, so routes have to detour
_MASK = 0xFFFFFFFF
# Junctions settled per chunk: ~0.1-0.2 s of work.
CHUNK = 40_000
_SLICE = 1 << 18


def road_minutes(a: int, b: int, seed: int) -> int:
    """Travel time between neighbouring junctions a and b, in minutes; 0 if the road is closed.

    Derived from a hash of the junctions, so the network needs no storage and is the same
    on every run for a given seed.
    """
    if a > b:
        a, b = b, a
    h = (a * 0x9E3779B1 + b * 0x85EBCA77 + seed * 0xC2B2AE3D + 0x27D4EB2F) & _MASK
    h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & _MASK
    h = ((h ^ (h >> 12)) * 0x297A2D39) & _MASK
    h ^= h >> 15
    if h % 100 < CLOSED_PERCENT:
        return 0
    return 1 + (h >> 8) % 30


def neighbours(junction: int, size: int) -> list[int]:
    row, col = divmod(junction, size)
    found = []
    if row > 0:
        found.append(junction - size)
    if row < size - 1:
        found.append(junction + size)
    if col > 0:
        found.append(junction - 1)
    if col < size - 1:
        found.append(junction + 1)
    return found


def _filled(typecode: str, value: int, count: int) -> array[int]:
    """An array of ``count`` copies of ``value``, built in slices so no single C call holds the GIL long."""
    block = array(typecode, [value]) * _SLICE
    filled = array(typecode)
    for first in range(0, count, _SLICE):
        filled.extend(block[: min(_SLICE, count - first)])
    return filled


class ShortestPaths:
    """Dijkstra from junction 0 (the north-west corner), run a chunk at a time."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.count = size * size
        self.unreached = -1
        # Compact arrays: millions of junctions as Python lists of ints would take hundreds of MB.
        self.minutes = _filled("q", self.unreached, self.count)
        self.previous = _filled("i", -1, self.count)
        self.settled = 0
        self.minutes[0] = 0
        # Heap entries are minutes * count + junction: one int compares faster than a tuple.
        self._heap = [0]

    @property
    def finished(self) -> bool:
        return not self._heap

    def step(self, max_settled: int) -> None:
        heap, minutes, previous = self._heap, self.minutes, self.previous
        count, size, seed = self.count, self.size, self.seed
        pop, push = heapq.heappop, heapq.heappush
        stop = self.settled + max_settled
        settled = self.settled
        while heap and settled < stop:
            here_minutes, here = divmod(pop(heap), count)
            if here_minutes > minutes[here]:
                continue  # stale entry: already settled with a shorter time
            settled += 1
            for there in neighbours(here, size):
                road = road_minutes(here, there, seed)
                if road:
                    arrive = here_minutes + road
                    best = minutes[there]
                    if best < 0 or arrive < best:
                        minutes[there] = arrive
                        previous[there] = here
                        push(heap, arrive * count + there)
        self.settled = settled

    def roads_to(self, junction: int) -> int:
        roads = 0
        while junction != 0:
            junction = self.previous[junction]
            roads += 1
        return roads


@dataclass(frozen=True)
class RouteSummary:
    size: int
    seed: int
    reachable: int  # junctions reachable from the depot, the depot included
    average_minutes: float  # over reachable junctions other than the depot (0 if none)
    farthest: int  # junction index with the longest shortest time (lowest index on ties)
    farthest_minutes: int
    corner_minutes: int  # to the south-east corner; -1 if unreachable
    corner_roads: int  # roads on that route; -1 if unreachable


def _summarise(paths: ShortestPaths) -> RouteSummary:
    minutes = paths.minutes
    reachable = total = 0
    farthest, farthest_minutes = 0, 0
    # Slice by slice: each C-level pass is short, so the GIL is released often.
    for first in range(0, paths.count, _SLICE):
        part = minutes[first : first + _SLICE]
        unreached = part.count(paths.unreached)
        reachable += len(part) - unreached
        total += sum(part) + unreached  # each unreached junction contributed -1
        longest = max(part)
        if longest > farthest_minutes:
            farthest, farthest_minutes = first + part.index(longest), longest
    corner = paths.count - 1
    corner_minutes = minutes[corner]
    return RouteSummary(
        size=paths.size,
        seed=paths.seed,
        reachable=reachable,
        average_minutes=total / (reachable - 1) if reachable > 1 else 0.0,
        farthest=farthest,
        farthest_minutes=farthest_minutes,
        corner_minutes=corner_minutes,
        corner_roads=paths.roads_to(corner) if corner_minutes >= 0 else -1,
    )


async def route_summary(size: int, seed: int, progress: Progress | None = None) -> RouteSummary:
    paths = await in_thread(ShortestPaths, size, seed)
    while not paths.finished:
        await in_thread(paths.step, CHUNK)
        if progress is not None:
            await progress.update(paths.settled, paths.count)
    return await in_thread(_summarise, paths)


def _hours(minutes: float) -> str:
    whole = round(minutes)
    return f"{whole // 60:,} h {whole % 60:02d} min"


def describe(summary: RouteSummary) -> str:
    total = summary.size * summary.size
    row, col = divmod(summary.farthest, summary.size)
    if summary.corner_minutes >= 0:
        corner = (
            f"the far (south-east) corner takes {_hours(summary.corner_minutes)} "
            f"over {plural(summary.corner_roads, 'road')}"
        )
    else:
        corner = "the far (south-east) corner cannot be reached"
    heading = (
        f"Route report for a {summary.size:,}×{summary.size:,} generated road grid (seed {summary.seed}, "
        f"{CLOSED_PERCENT}% of roads closed), from the depot in the north-west corner:"
    )
    if summary.reachable == 1:
        return as_list(heading, "the depot is cut off: every road out of it is closed")
    return as_list(
        heading,
        f"{summary.reachable:,} of {total:,} junctions reachable, average trip {_hours(summary.average_minutes)}",
        f"farthest is row {row + 1:,}, column {col + 1:,} at {_hours(summary.farthest_minutes)}",
        corner,
    )


async def run(parameters: Mapping[str, int], progress: ProgressCallback) -> str:
    async with Progress(progress) as reporter:
        summary = await route_summary(parameters["size"], parameters["seed"], reporter)
    return describe(summary)


OPERATION = Operation(
    name="route report",
    description="Shortest travel times from a depot across a generated road grid with closed roads.",
    parameters=(
        Parameter("size", "Junctions along each side of the grid", default=1_500, minimum=2, maximum=4_000),
        Parameter("seed", "Seed for the road network (same seed, same roads)", default=3, minimum=0, maximum=1_000_000),
    ),
    run=run,
)
