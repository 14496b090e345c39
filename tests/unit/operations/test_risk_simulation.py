"""Risk simulation: statistics checked against a plain recomputation and against theory."""

from __future__ import annotations

import math

import pytest

from operations import get_operation
from operations import risk_simulation as risk
from operations.risk_simulation import describe, iter_loss_chunks, risk_summary

PATHS = risk.CHUNK + 10_000  # more than one chunk, so the running worst-losses merge is exercised


@pytest.fixture(scope="module")
async def summary() -> risk.RiskSummary:
    return await risk_summary(seed=21, days=10, paths=PATHS)


async def test_matches_plain_recomputation(summary: risk.RiskSummary) -> None:
    losses = sorted(loss for chunk in iter_loss_chunks(21, 10, PATHS) for loss in chunk)
    n = len(losses)
    assert n == PATHS

    def order_statistic(level: float, z: float) -> float:
        position = level * n + z * math.sqrt(n * level * (1 - level))
        rank = math.ceil(position) if z >= 0 else math.floor(position)
        return losses[rank - 1]

    for level, quantile in ((0.95, summary.var95), (0.99, summary.var99)):
        assert quantile.value == losses[math.ceil(level * n) - 1]
        assert quantile.low == order_statistic(level, -1.959964)
        assert quantile.high == order_statistic(level, 1.959964)
        assert quantile.low <= quantile.value <= quantile.high
    worst = losses[-math.ceil(0.01 * n) :]
    assert summary.shortfall99 == pytest.approx(sum(worst) / len(worst), rel=1e-12)
    assert summary.mean_loss == pytest.approx(sum(losses) / n, rel=1e-9)
    assert summary.loss_probability == sum(1 for x in losses if x > 0) / n
    spread = math.sqrt(sum((x - summary.mean_loss) ** 2 for x in losses) / (n - 1))
    assert summary.mean_loss_error == pytest.approx(spread / math.sqrt(n), rel=1e-6)


async def test_agrees_with_theory(summary: risk.RiskSummary) -> None:
    """Independent of the simulation code: exact mean, and the delta-normal VaR for a short horizon."""
    years = 10 / 252
    weights = [w for _, w, _, _ in risk.ASSETS]
    drifts = [mu for _, _, mu, _ in risk.ASSETS]
    vols = [sigma for _, _, _, sigma in risk.ASSETS]
    value = risk.PORTFOLIO_VALUE
    expected_end = sum(w * value * math.exp(mu * years) for w, mu in zip(weights, drifts, strict=True))
    assert abs(summary.mean_loss - (value - expected_end)) < 4 * summary.mean_loss_error

    variance = sum(
        weights[i] * weights[j] * vols[i] * vols[j] * risk.CORRELATION[i][j] * years for i in range(4) for j in range(4)
    )
    sigma = value * math.sqrt(variance)
    mean_gain = expected_end - value
    assert summary.var95.value == pytest.approx(1.644854 * sigma - mean_gain, rel=0.04)
    assert summary.var99.value == pytest.approx(2.326348 * sigma - mean_gain, rel=0.05)
    assert summary.shortfall99 > summary.var99.value > summary.var95.value > 0


async def test_longer_horizon_means_more_risk() -> None:
    short = await risk_summary(seed=1, days=1, paths=5_000)
    long = await risk_summary(seed=1, days=100, paths=5_000)
    assert long.var99.value > 5 * short.var99.value


async def test_tiny_run_still_has_intervals() -> None:
    tiny = await risk_summary(seed=0, days=1, paths=100)
    assert tiny.var95.low <= tiny.var95.value <= tiny.var95.high


async def test_result_text(summary: risk.RiskSummary) -> None:
    async def progress(fraction: float) -> None:
        pass

    text = await get_operation("risk simulation").run({"simulations": PATHS, "days": 10, "seed": 21}, progress)
    assert text == describe(summary)
    lines = text.splitlines()
    assert lines[0] == f"Value at risk of a $1,000,000 portfolio over 10 trading days ({PATHS:,} simulations, seed 21):"
    assert lines[1].startswith(f"- 95%: ${round(summary.var95.value):,} (95% CI $")
    assert lines[-1].startswith("- chance of a loss ")
