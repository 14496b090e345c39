"""The benchmark runner does not rot: `python -m bench --quick` runs every section with tiny
sizes and writes JSON holding numbers for each (no figure is judged: benchmarks assert no time)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localdev.processes import PROJECT_ROOT

pytestmark = [pytest.mark.emulators]

SECTIONS = ("turns", "delivery", "sweeper", "cold_start", "profile", "memory", "instances")


def numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for item in value.values() for n in numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in numbers(item)]
    return []


def test_quick_run_writes_every_section_with_numbers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # the whole quick run; about 2-3 min on a busy 2-core machine
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert (tmp_path / "latest.md").read_text().startswith("# Benchmark results")
    assert results["machine"]["cores"] >= 1 and results["machine"]["python"]
    for section in SECTIONS:
        assert section in results, section
        values = numbers(results[section])
        assert values and all(math.isfinite(v) for v in values), section

    turns = results["turns"]
    for kind in ("plain", "start"):
        for level in ("1", "8", "32"):
            figures = turns[kind]["levels"][level]
            assert figures["count"] > 0 and figures["errors"] == 0 and figures["turns_per_s"] > 0
        assert turns[kind]["storage_per_turn"]["reads"] > 0 and turns[kind]["storage_per_turn"]["writes"] > 0
    assert turns["memory"]["host_peak_rss_mib_after_all_levels"] > 0
    for baseline in ("baseline", "agents_baseline"):  # both baselines answer 2xx even when a turn fails
        assert turns[baseline]["turn_errors_logged"] == 0, baseline
        assert all(level["count"] > 0 for level in turns[baseline]["plain"]["levels"].values()), baseline
    assert all(part["count"] > 0 for part in results["delivery"]["parts_ms"].values())
    assert all(s["expired_swept"] == s["expired_seeded"] for s in results["sweeper"]["scenarios"])
    assert results["cold_start"]["host_ms"]["spawn_to_first_200_ms"] > 0
    assert results["memory"]["errors"] == 0 and all(p["rss_mib"] > 0 for p in results["memory"]["checkpoints"])
    for run in results["instances"]["runs"].values():  # both instances take turns: no per-instance bottleneck
        assert run["count"] > 0 and run["errors"] == 0
    assert all(share > 0 for share in results["instances"]["runs"]["2"]["cpu_share_by_instance"].values())
    assert len(results["instances"]["runs"]["2"]["cpu_share_by_instance"]) == 2
    assert "Turns through the local Functions host" in done.stdout
    assert "App vs Agents SDK baseline" in done.stdout
