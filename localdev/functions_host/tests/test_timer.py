"""Timer triggers through the local Functions host."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from localdev.functions_host import spawn_host
from localdev.functions_host.ncrontab import CronSchedule, IntervalSchedule
from localdev.functions_host.tests.helpers import APPS, LOG_DIR, records
from localdev.functions_host.timer_trigger import monitor_in_effect
from localdev.processes import wait_until


def test_use_monitor_holds_for_schedules_of_a_minute_or_more_only() -> None:
    now = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)
    assert monitor_in_effect(True, CronSchedule.parse("0 */1 * * * *"), now)
    assert monitor_in_effect(True, IntervalSchedule("00:05:00", timedelta(minutes=5)), now)
    assert not monitor_in_effect(True, CronSchedule.parse("*/15 * * * * *"), now)
    assert not monitor_in_effect(True, IntervalSchedule("00:00:30", timedelta(seconds=30)), now)
    assert not monitor_in_effect(False, CronSchedule.parse("0 0 * * * *"), now)


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
    assert ticks[0]["schedule_status"] == {}  # useMonitor is on by default, but ignored below a minute
    # runOnStartup ran once though the schedule is yearly; useMonitor=False gives no status.
    assert len(startup) == 1 and startup[0]["schedule_status"] == {}
    assert "every_second: timerTrigger (schedule '*/1 * * * * *'" in host.output
    assert "Executed 'Functions.every_second' (Succeeded" in host.output
