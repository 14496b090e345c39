"""Route report against Bellman-Ford on an explicitly built graph."""

from __future__ import annotations

import pytest

from operations import get_operation
from operations.route_report import (
    CLOSED_PERCENT,
    RouteSummary,
    ShortestPaths,
    describe,
    road_minutes,
    route_summary,
)


def _roads(size: int, seed: int) -> list[tuple[int, int, int]]:
    """Every open road, both directions, built from grid coordinates."""
    roads = []
    for row in range(size):
        for col in range(size):
            here = row * size + col
            for d_row, d_col in ((0, 1), (1, 0)):
                r, c = row + d_row, col + d_col
                if r < size and c < size:
                    there = r * size + c
                    minutes = road_minutes(here, there, seed)
                    if minutes:
                        roads += [(here, there, minutes), (there, here, minutes)]
    return roads


def _bellman_ford(size: int, seed: int) -> list[float]:
    inf = float("inf")
    best = [inf] * (size * size)
    best[0] = 0
    roads = _roads(size, seed)
    changed = True
    while changed:
        changed = False
        for a, b, m in roads:
            if best[a] + m < best[b]:
                best[b] = best[a] + m
                changed = True
    return best


@pytest.mark.parametrize(("size", "seed"), [(2, 0), (3, 1), (12, 3), (25, 8)])
async def test_matches_bellman_ford(size: int, seed: int) -> None:
    best = _bellman_ford(size, seed)
    reached = [m for m in best if m != float("inf")]
    summary = await route_summary(size, seed)
    assert summary.reachable == len(reached)
    assert summary.farthest_minutes == max(reached)
    assert summary.farthest == best.index(max(reached))
    others = [m for i, m in enumerate(best) if i and m != float("inf")]
    assert summary.average_minutes == pytest.approx(sum(others) / len(others) if others else 0.0)
    corner = best[-1]
    assert summary.corner_minutes == (corner if corner != float("inf") else -1)


def test_route_to_corner_is_a_real_route() -> None:
    paths = ShortestPaths(30, 4)
    while not paths.finished:
        paths.step(100)  # many small chunks
    corner = paths.count - 1
    total, roads, here = 0, 0, corner
    while here != 0:
        before = paths.previous[here]
        assert abs(before - here) in (1, 30)
        total += road_minutes(before, here, 4)
        roads += 1
        here = before
    assert total == paths.minutes[corner]
    assert roads == paths.roads_to(corner)


def test_roads_are_symmetric_and_some_closed() -> None:
    pairs = [(a, a + 1) for a in range(0, 20_000, 2)]
    minutes = [road_minutes(a, b, 9) for a, b in pairs]
    assert minutes == [road_minutes(b, a, 9) for a, b in pairs]
    assert all(0 <= m <= 30 for m in minutes)
    closed = minutes.count(0) / len(minutes)
    assert closed == pytest.approx(CLOSED_PERCENT / 100, abs=0.02)


async def test_cut_off_depot() -> None:
    seed = next(s for s in range(10_000) if road_minutes(0, 1, s) == 0 and road_minutes(0, 2, s) == 0)
    summary = await route_summary(2, seed)
    assert summary == RouteSummary(2, seed, 1, 0.0, 0, 0, -1, -1)
    assert describe(summary).endswith("\n- the depot is cut off: every road out of it is closed")


async def test_result_text() -> None:
    async def progress(fraction: float) -> None:
        pass

    text = await get_operation("route report").run({"size": 10, "seed": 3}, progress)
    assert text == (
        "Route report for a 10×10 generated road grid (seed 3, 15% of roads closed), "
        "from the depot in the north-west corner:\n"
        "- 100 of 100 junctions reachable, average trip 1 h 35 min\n"
        "- farthest is row 10, column 8 at 3 h 00 min\n"
        "- the far (south-east) corner takes 2 h 34 min over 18 roads"
    )
