"""Timer triggers through the local Functions host."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from localdev.functions_host import HostProcess, spawn_host
from localdev.functions_host.ncrontab import CronSchedule, IntervalSchedule
from localdev.functions_host.tests.helpers import APPS, LOG_DIR, records
from localdev.functions_host.timer_trigger import ScheduleMonitor, ScheduleStatus, monitor_in_effect
from localdev.processes import wait_until


def test_use_monitor_holds_for_schedules_of_a_minute_or_more_only() -> None:
    now = datetime(2026, 11, 23, 12, 0, 30, 500_000, tzinfo=UTC)
    assert monitor_in_effect(True, CronSchedule.parse("0 */1 * * * *"), now)
    assert monitor_in_effect(True, CronSchedule.parse("0 * * * * *"), now)  # exactly once a minute
    assert monitor_in_effect(True, IntervalSchedule("00:05:00", timedelta(minutes=5)), now)
    assert monitor_in_effect(True, IntervalSchedule("00:01:00", timedelta(minutes=1)), now)
    assert not monitor_in_effect(True, CronSchedule.parse("*/15 * * * * *"), now)
    assert not monitor_in_effect(True, CronSchedule.parse("0,30 * * * * *"), now)
    assert not monitor_in_effect(True, CronSchedule.parse("* 0-59 * * * *"), now)  # a full range is '*'
    # Any restriction beyond the seconds keeps it on, however often it fires (the host's own rule).
    assert monitor_in_effect(True, CronSchedule.parse("*/10 5 * * * *"), now)
    assert not monitor_in_effect(True, IntervalSchedule("00:00:30", timedelta(seconds=30)), now)
    assert not monitor_in_effect(False, CronSchedule.parse("0 0 * * * *"), now)


def test_schedule_status_is_written_as_the_host_serialises_it() -> None:
    status = ScheduleStatus(None, datetime(2027, 1, 1, tzinfo=UTC), datetime(2026, 5, 1, 8, 0, 0, 250_000, tzinfo=UTC))
    assert status.to_json() == {
        "Last": "0001-01-01T00:00:00+00:00",
        "Next": "2027-01-01T00:00:00+00:00",
        "LastUpdated": "2026-05-01T08:00:00.25+00:00",
    }
    assert ScheduleStatus.from_json(status.to_json()) == status


def test_a_changed_schedule_is_not_a_missed_run() -> None:
    monitor = ScheduleMonitor(None)
    hourly, daily = CronSchedule.parse("0 0 * * * *"), CronSchedule.parse("0 0 0 * * *")
    run = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    monitor.update_status("f", ScheduleStatus(run, hourly.next_occurrence(run), run))
    # Hours later, with the same schedule: the 11:00 run was missed.
    late, _ = monitor.check_past_due("f", datetime(2026, 1, 1, 13, 30, tzinfo=UTC), hourly)
    assert late == timedelta(hours=2, minutes=30)
    # Same status, new schedule whose expected occurrence is already past: start afresh, not past due.
    monitor.update_status("f", ScheduleStatus(run, hourly.next_occurrence(run), run))
    now = datetime(2026, 1, 3, 9, 0, tzinfo=UTC)
    late, status = monitor.check_past_due("f", now, daily)
    assert late == timedelta(0)
    assert status == ScheduleStatus(None, datetime(2026, 1, 4, tzinfo=UTC), now)


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


def test_the_next_run_counts_from_the_start_of_the_previous_one(tmp_path: Path) -> None:
    # Every second, each run taking 0.6 s: runs start a second apart, as in the real host (counting
    # from the end of a run would space them 1.6 s apart).
    host = spawn_host(
        APPS / "timer_app",
        settings={"RECORD_DIR": str(tmp_path), "FastSchedule": "*/1 * * * * *", "INTERVAL_SLEEP": "0.6"},
        log_path=LOG_DIR / "functions-host-timer-overrun.log",
    )
    try:
        wait_until(lambda: len(records(tmp_path, "interval")) >= 4, timeout=15, message="four runs")
    finally:
        assert host.stop() == 0
    starts = sorted(datetime.fromisoformat(r["at"]) for r in records(tmp_path, "interval"))
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(starts)]
    assert all(0.8 < gap < 1.3 for gap in gaps), gaps
    assert all(r["schedule"] == {"AdjustForDST": False} for r in records(tmp_path, "interval"))  # a TimeSpan


def test_use_monitor_keeps_status_across_restarts_and_runs_a_missed_occurrence_as_past_due(tmp_path: Path) -> None:
    record_dir, status_dir = tmp_path / "records", tmp_path / "status"
    # What the host recorded after a run on 1 January 2020: the 2021 run was missed while it was down.
    missed = {
        "Last": "2020-01-01T00:00:00+00:00",
        "Next": "2021-01-01T00:00:00+00:00",
        "LastUpdated": "2020-01-01T00:00:00+00:00",
    }
    (status_dir / "yearly").mkdir(parents=True)
    (status_dir / "yearly" / "status").write_text(json.dumps(missed))

    def start() -> HostProcess:
        return spawn_host(
            APPS / "monitor_app",
            settings={"RECORD_DIR": str(record_dir), "AzureWebJobsStorage": "UseDevelopmentStorage=true"},
            extra_args=["--timer-status-dir", str(status_dir)],
            log_path=LOG_DIR / "functions-host-timer-monitor.log",
        )

    host = start()
    try:
        (late,) = wait_until(lambda: records(record_dir, "yearly"), message="the past-due run")
        (startup,) = wait_until(lambda: records(record_dir, "yearly_on_startup"), message="the startup run")
    finally:
        assert host.stop() == 0
    next_new_year = f"{datetime.now(UTC).year + 1}-01-01T00:00:00+00:00"
    assert late["past_due"] is True and late["schedule_status"] == missed
    assert late["schedule"] == {"AdjustForDST": True}
    assert "Function 'yearly' is past due on startup. Executing now." in host.output
    # A new timer: no run yet, and no status recorded before this run.
    never = "0001-01-01T00:00:00+00:00"
    assert startup["past_due"] is False
    assert startup["schedule_status"] == {"Last": never, "Next": next_new_year, "LastUpdated": never}
    # The run was recorded: the next start finds nothing missed.
    recorded = json.loads((status_dir / "yearly" / "status").read_text())
    assert recorded["Next"] == next_new_year and recorded["Last"].startswith(str(datetime.now(UTC).year))

    host = start()
    try:
        wait_until(lambda: len(records(record_dir, "yearly_on_startup")) == 2, message="the second startup run")
    finally:
        assert host.stop() == 0
    assert len(records(record_dir, "yearly")) == 1
    assert records(record_dir, "yearly_on_startup")[0]["schedule_status"]["Next"] == next_new_year


def test_use_monitor_without_azure_web_jobs_storage_does_not_start(tmp_path: Path) -> None:
    # The host keeps the schedule status in AzureWebJobsStorage; without it the listener cannot start.
    with pytest.raises(RuntimeError, match="Could not create BlobContainerClient for ScheduleMonitor"):
        spawn_host(APPS / "monitor_app", settings={"RECORD_DIR": str(tmp_path)}, log_path=LOG_DIR / "x.log")
