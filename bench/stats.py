"""Small statistics helpers: percentiles of latency samples, in milliseconds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in 0..1) of a non-empty sequence."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """count, p50, p95, p99, mean and max of samples given in seconds, reported in ms."""
    if not seconds:
        return {"count": 0, "p50_ms": math.nan, "p95_ms": math.nan, "p99_ms": math.nan, "mean_ms": math.nan,
                "max_ms": math.nan}  # fmt: skip
    return {
        "count": len(seconds),
        "p50_ms": round(percentile(seconds, 0.50) * 1000, 2),
        "p95_ms": round(percentile(seconds, 0.95) * 1000, 2),
        "p99_ms": round(percentile(seconds, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(seconds) * 1000, 2),
        "max_ms": round(max(seconds) * 1000, 2),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
