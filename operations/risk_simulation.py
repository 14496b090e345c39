"""Monte-Carlo value at risk of a small multi-asset portfolio, with confidence intervals."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ._support import Progress, as_list, in_thread
from .registry import Operation, Parameter, ProgressCallback

PORTFOLIO_VALUE = 1_000_000.0
TRADING_DAYS = 252
# (asset, weight, annual drift, annual volatility)
ASSETS: tuple[tuple[str, float, float, float], ...] = (
    ("global equities", 0.50, 0.07, 0.18),
    ("government bonds", 0.30, 0.03, 0.06),
    ("gold", 0.10, 0.04, 0.15),
    ("real estate", 0.10, 0.06, 0.20),
)
CORRELATION: tuple[tuple[float, ...], ...] = (
    (1.00, -0.20, 0.05, 0.60),
    (-0.20, 1.00, 0.20, 0.10),
    (0.05, 0.20, 1.00, 0.05),
    (0.60, 0.10, 0.05, 1.00),
)
Z95 = 1.959963984540054  # two-sided 95% normal quantile, for the confidence intervals

# ~0.15 s of simulation per chunk. Part of the data definition: the random stream is
# drawn chunk by chunk, so changing it changes the simulated paths.
CHUNK = 50_000


def cholesky(matrix: tuple[tuple[float, ...], ...]) -> list[list[float]]:
    size = len(matrix)
    lower = [[0.0] * size for _ in range(size)]
    for i in range(size):
        for j in range(i + 1):
            s = matrix[i][j] - sum(lower[i][k] * lower[j][k] for k in range(j))
            lower[i][j] = math.sqrt(s) if i == j else s / lower[j][j]
    return lower


def iter_loss_chunks(seed: int, days: int, paths: int) -> Iterator[list[float]]:
    """Simulated losses (positive = money lost) of the portfolio over ``days`` trading days.

    Prices follow correlated geometric Brownian motions; same arguments, same losses.
    """
    years = days / TRADING_DAYS
    lower = cholesky(CORRELATION)
    # value_i = scale_i * exp(sum_j m_ij z_j), z standard normal.
    scale = [weight * PORTFOLIO_VALUE * math.exp((drift - vol * vol / 2) * years) for _, weight, drift, vol in ASSETS]
    m = [[vol * math.sqrt(years) * x for x in row] for (_, _, _, vol), row in zip(ASSETS, lower, strict=True)]
    # Unrolled for the four assets: this inner loop is the whole cost of the operation.
    a0, a1, a2, a3 = scale
    m00 = m[0][0]
    m10, m11 = m[1][:2]
    m20, m21, m22 = m[2][:3]
    m30, m31, m32, m33 = m[3]
    rng = random.Random(seed)
    gauss, exp, total = rng.gauss, math.exp, PORTFOLIO_VALUE
    for first in range(0, paths, CHUNK):
        losses: list[float] = []
        append = losses.append
        for _ in range(min(CHUNK, paths - first)):
            z0, z1, z2, z3 = gauss(), gauss(), gauss(), gauss()
            append(
                total
                - a0 * exp(m00 * z0)
                - a1 * exp(m10 * z0 + m11 * z1)
                - a2 * exp(m20 * z0 + m21 * z1 + m22 * z2)
                - a3 * exp(m30 * z0 + m31 * z1 + m32 * z2 + m33 * z3)
            )
        yield losses


@dataclass(frozen=True)
class Quantile:
    value: float
    low: float  # 95% confidence interval (order statistics; distribution-free)
    high: float


@dataclass(frozen=True)
class RiskSummary:
    seed: int
    days: int
    paths: int
    var95: Quantile
    var99: Quantile
    shortfall99: float  # mean of the worst ceil(1% of paths) losses
    mean_loss: float
    mean_loss_error: float  # standard error of mean_loss
    loss_probability: float


def _rank(paths: int, level: float, z: float = 0.0) -> int:
    """1-based ascending rank of the ``level`` quantile (nearest rank), shifted by z standard errors."""
    centre = level * paths
    spread = z * math.sqrt(paths * level * (1 - level))
    rank = math.floor(centre + spread) if z < 0 else math.ceil(centre + spread)
    return min(paths, max(1, rank))


class _Tally:
    def __init__(self, paths: int) -> None:
        self.paths = paths
        # Only the worst losses are needed for the quantiles, their intervals and the shortfall.
        # They are kept in a min-heap: re-sorting a list of millions per chunk would hold the
        # GIL for hundreds of milliseconds, while each heap operation is tiny.
        self.keep = paths - _rank(paths, 0.95, -Z95) + 1
        self._heap: list[float] = []
        self.worst: list[float] = []  # descending; filled by finish()
        self.sum = 0.0
        self.sum_squares = 0.0
        self.losing = 0

    def add(self, losses: list[float]) -> None:
        self.sum += math.fsum(losses)
        self.sum_squares += math.fsum(x * x for x in losses)
        self.losing += sum(1 for x in losses if x > 0)
        heap = self._heap
        room = max(0, self.keep - len(heap))
        for x in losses[:room]:
            heapq.heappush(heap, x)
        replace = heapq.heapreplace
        for x in losses[room:]:
            if x > heap[0]:
                replace(heap, x)

    def finish(self) -> None:
        heap, pop = self._heap, heapq.heappop
        self.worst = [pop(heap) for _ in range(len(heap))]
        self.worst.reverse()

    def quantile(self, level: float) -> Quantile:
        def at(rank: int) -> float:
            return self.worst[self.paths - rank]

        return Quantile(
            value=at(_rank(self.paths, level)),
            low=at(_rank(self.paths, level, -Z95)),
            high=at(_rank(self.paths, level, Z95)),
        )


async def risk_summary(seed: int, days: int, paths: int, progress: Progress | None = None) -> RiskSummary:
    tally = _Tally(paths)
    chunks = iter_loss_chunks(seed, days, paths)
    done = 0

    def next_chunk() -> int:
        losses = next(chunks)
        tally.add(losses)
        return len(losses)

    while done < paths:
        done += await in_thread(next_chunk)
        if progress is not None:
            await progress.update(done, paths)
    await in_thread(tally.finish)
    mean = tally.sum / paths
    variance = max(0.0, tally.sum_squares / paths - mean * mean) * paths / max(1, paths - 1)
    tail = math.ceil(0.01 * paths)
    return RiskSummary(
        seed=seed,
        days=days,
        paths=paths,
        var95=tally.quantile(0.95),
        var99=tally.quantile(0.99),
        shortfall99=math.fsum(tally.worst[:tail]) / tail,
        mean_loss=mean,
        mean_loss_error=math.sqrt(variance / paths),
        loss_probability=tally.losing / paths,
    )


def _dollars(amount: float) -> str:
    return f"${round(amount):,}"


def describe(summary: RiskSummary) -> str:
    def var(q: Quantile) -> str:
        return f"{_dollars(q.value)} (95% CI {_dollars(q.low)} to {_dollars(q.high)})"

    outcome = -summary.mean_loss
    sign = "+" if outcome >= 0 else "-"
    day_word = "day" if summary.days == 1 else "days"
    return as_list(
        f"Value at risk of a {_dollars(PORTFOLIO_VALUE)} portfolio over {summary.days} trading {day_word} "
        f"({summary.paths:,} simulations, seed {summary.seed}):",
        f"95%: {var(summary.var95)}",
        f"99%: {var(summary.var99)}",
        f"expected shortfall in the worst 1%: {_dollars(summary.shortfall99)}",
        f"mean outcome {sign}{_dollars(abs(outcome))} (± {_dollars(Z95 * summary.mean_loss_error)})",
        f"chance of a loss {100 * summary.loss_probability:.1f}%",
    )


async def run(parameters: Mapping[str, int], progress: ProgressCallback) -> str:
    async with Progress(progress) as reporter:
        summary = await risk_summary(parameters["seed"], parameters["days"], parameters["simulations"], reporter)
    return describe(summary)


OPERATION = Operation(
    name="risk simulation",
    description="Monte-Carlo value at risk of a four-asset portfolio, with confidence intervals.",
    parameters=(
        Parameter(
            "simulations", "How many market scenarios to simulate", default=5_000_000, minimum=100, maximum=50_000_000
        ),
        Parameter("days", "Holding period in trading days", default=10, minimum=1, maximum=252),
        Parameter(
            "seed", "Seed for the random scenarios (same seed, same result)", default=7, minimum=0, maximum=1_000_000
        ),
    ),
    run=run,
)
