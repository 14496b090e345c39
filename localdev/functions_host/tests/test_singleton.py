"""Timer functions as singletons: two instances sharing a lock folder run each timer on one of them
at a time, and when that instance dies the other takes its timers over."""

from __future__ import annotations

import signal
from pathlib import Path

from localdev.functions_host import HostProcess, spawn_host
from localdev.functions_host.tests.helpers import APPS, LOG_DIR, records
from localdev.processes import wait_until


def start_instance(record_dir: Path, lock_dir: Path, number: int) -> HostProcess:
    return spawn_host(
        APPS / "timer_app",
        settings={"RECORD_DIR": str(record_dir), "FastSchedule": "*/1 * * * * *"},
        extra_args=["--singleton-lock-dir", str(lock_dir), "--singleton-recovery-interval", "0.2"],
        log_path=LOG_DIR / f"functions-host-singleton-{number}.log",
    )


def pids(record_dir: Path, function: str) -> list[int]:
    return [record["pid"] for record in records(record_dir, function)]


def test_each_timer_runs_on_one_instance_and_another_takes_over_when_it_dies(tmp_path: Path) -> None:
    record_dir, lock_dir = tmp_path / "records", tmp_path / "locks"
    first = start_instance(record_dir, lock_dir, 1)
    second = start_instance(record_dir, lock_dir, 2)
    try:
        wait_until(lambda: len(records(record_dir, "every_second")) >= 3, timeout=10, message="three ticks")
        # The retrying instance tried about ten times meanwhile (every 0.2 s) and never got in.
        holders = set(pids(record_dir, "every_second"))
        assert holders == {first.pid}, holders
        assert set(pids(record_dir, "interval")) == {first.pid}
        assert pids(record_dir, "on_startup") == [first.pid]  # runOnStartup: only where the lock is held
        assert "singleton: runs on another instance for now" in second.output

        first.signal(signal.SIGKILL)  # no clean stop: the kernel drops the dead instance's locks
        first.wait()
        before = len(records(record_dir, "every_second"))
        wait_until(lambda: pids(record_dir, "every_second").count(second.pid) >= 2, timeout=10, message="the takeover")
        assert len(records(record_dir, "every_second")) >= before + 2
        assert "Singleton lock 'every_second.Listener' acquired" in second.output
    finally:
        first.stop()
        assert second.stop() == 0


def test_a_stopped_instance_hands_its_timers_over(tmp_path: Path) -> None:
    record_dir, lock_dir = tmp_path / "records", tmp_path / "locks"
    first = start_instance(record_dir, lock_dir, 1)
    second = start_instance(record_dir, lock_dir, 2)
    try:
        wait_until(lambda: pids(record_dir, "every_second"), timeout=10, message="a tick")
        assert first.stop() == 0  # a clean stop releases the lock after the timer stopped
        wait_until(lambda: second.pid in pids(record_dir, "every_second"), timeout=10, message="the takeover")
        assert set(pids(record_dir, "every_second")) == {first.pid, second.pid}
    finally:
        first.stop()
        assert second.stop() == 0
