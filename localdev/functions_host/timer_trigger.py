"""Timer triggers: NCRONTAB or TimeSpan schedules, in UTC."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from azure.functions.timer import TimerRequest

from localdev.functions_host.indexing import FunctionSpec
from localdev.functions_host.invocation import Invoker
from localdev.functions_host.ncrontab import CronSchedule, IntervalSchedule

log = logging.getLogger("localdev.functions_host")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def monitor_in_effect(use_monitor: bool, schedule: CronSchedule | IntervalSchedule, now: datetime) -> bool:
    """The host ignores useMonitor for a schedule that runs more often than once a minute."""
    first = schedule.next_occurrence(now)
    return use_monitor and (schedule.next_occurrence(first) - first).total_seconds() >= 60


class TimerListener:
    def __init__(
        self,
        spec: FunctionSpec,
        schedule: CronSchedule | IntervalSchedule,
        invoker: Invoker,
        run_on_startup: bool,
        use_monitor: bool,
    ) -> None:
        self.spec = spec
        self.schedule = schedule
        self._invoker = invoker
        self._run_on_startup = run_on_startup
        # The real host keeps schedule status in storage to catch up missed runs after a restart;
        # here it lives in memory for the host's lifetime and is only reported to the function.
        self._use_monitor = monitor_in_effect(use_monitor, schedule, _utcnow())
        self._last: datetime | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.next_run: datetime = schedule.next_occurrence(_utcnow())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"timer-{self.spec.name}")

    async def stop(self, timeout: float) -> None:
        """No new runs; a running invocation gets up to `timeout` to finish."""
        self._stopping.set()
        if self._task is not None:
            _done, pending = await asyncio.wait({self._task}, timeout=timeout)
            for task in pending:
                task.cancel()

    async def _run(self) -> None:
        if self._run_on_startup:
            await self._fire(_utcnow())
        scheduled = self.schedule.next_occurrence(_utcnow())
        while not self._stopping.is_set():
            self.next_run = scheduled
            # Wait in wall-clock time; asyncio may wake a hair early, so re-check until due.
            while (remaining := (scheduled - _utcnow()).total_seconds()) > 0:
                try:
                    await asyncio.wait_for(self._stopping.wait(), remaining)
                    return
                except TimeoutError:
                    pass
            await self._fire(scheduled)
            # Like the host: the next run is computed after this one finished (no overlaps).
            scheduled = self.schedule.next_occurrence(max(scheduled, _utcnow()))

    async def _fire(self, scheduled: datetime) -> None:
        now = _utcnow()
        status: dict[str, Any] = {}
        if self._use_monitor:
            status = {
                "Last": _iso(self._last) if self._last else "0001-01-01T00:00:00",
                "Next": _iso(self.schedule.next_occurrence(scheduled)),
                "LastUpdated": _iso(now),
            }
        # The host sets isPastDue only for a run missed while it was stopped (its schedule monitor keeps
        # the last run in storage); a late wake-up while running is not past due. Here the status
        # lives in memory, so no run is ever past due.
        request = TimerRequest(past_due=False, schedule_status=status, schedule={"AdjustForDST": True})
        await self._invoker.invoke(self.spec, request, f"Timer fired at {_iso(now)}")
        self._last = scheduled
