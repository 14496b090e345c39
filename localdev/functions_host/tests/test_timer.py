"""Timer triggers through the local Functions host."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path

from localdev.functions_host import spawn_host
from localdev.functions_host.tests.helpers import APPS, LOG_DIR, records
from localdev.processes import wait_until


def test_timers_fire_on_schedule(tmp_path: Path) -> None:
    host = spawn_host(
        APPS / "timer_app",
        settings={"RECORD_DIR": str(tmp_path), "FastSchedule": "*/1 * * * * *"},
        log_path=LOG_DIR / "functions-host-timer.log",
    )
    try:
        wait_until(lambda: len(records(tmp_path, "every_second")) >= 3, timeout=10, message="three ticks")
        wait_until(lambda: len(records(tmp_path, "interval")) >= 2, timeout=10, message="the TimeSpan timer")
        ticks = records(tmp_path, "every_second")
        startup = records(tmp_path, "on_startup")
    finally:
        assert host.stop() == 0

    times = sorted(datetime.fromisoformat(t["at"]) for t in ticks)
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert all(gap > 0.5 for gap in gaps), gaps  # one run per second, not a burst
    assert all(t["is_timer_request"] and t["past_due"] is False for t in ticks)
    assert {"Last", "Next", "LastUpdated"} <= set(ticks[0]["schedule_status"])  # useMonitor defaults to on
    # runOnStartup ran once though the schedule is yearly; useMonitor=False gives no status.
    assert len(startup) == 1 and startup[0]["schedule_status"] == {}
    assert "every_second: timerTrigger (schedule '*/1 * * * * *'" in host.output
    assert "Executed 'Functions.every_second' (Succeeded" in host.output
