"""Timer triggers: NCRONTAB or TimeSpan schedules, in UTC, with the host's schedule monitor.

As the timers extension's TimerListener does it: the next occurrence is computed from the time a run
started (so a run that overruns its next occurrence is followed by another at once, not skipped);
`runOnStartup` runs once before the schedule; with `useMonitor` the schedule status (Last, Next,
LastUpdated) is kept between runs and passed to the function, and a start that finds an occurrence
missed while the host was down runs the function at once with `past_due` set (ScheduleMonitor).
The real host keeps that status in AzureWebJobsStorage; here it is a JSON file per function under
`--timer-status-dir`, or memory for the host's lifetime without one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.functions.timer import TimerRequest

from localdev.functions_host.indexing import FunctionSpec
from localdev.functions_host.invocation import Invoker
from localdev.functions_host.ncrontab import CronSchedule, IntervalSchedule

log = logging.getLogger("localdev.functions_host")

TimerSchedule = CronSchedule | IntervalSchedule
# default(DateTime) as the host serialises it for a timer that has not run yet.
_NEVER = "0001-01-01T00:00:00+00:00"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def dotnet_iso(moment: datetime | None) -> str:
    """A UTC time as Newtonsoft writes the host's DateTime values: 2024-01-01T10:00:00.5+00:00."""
    if moment is None:
        return _NEVER
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return f"{text}{fraction}+00:00"


def _parse_iso(text: str) -> datetime | None:
    return None if text.startswith("0001-01-01") else datetime.fromisoformat(text).astimezone(UTC)


def monitor_in_effect(use_monitor: bool, schedule: TimerSchedule, now: datetime) -> bool:
    """The host turns useMonitor off for schedules that run more often than once a minute
    (TimerSchedule.Create): a TimeSpan under a minute, or NCRONTAB whose fields other than the seconds
    are all '*' and that fires more than once in the coming minute."""
    if not use_monitor:
        return False
    if isinstance(schedule, IntervalSchedule):
        return schedule.interval >= timedelta(minutes=1)
    if not schedule.restricts_only_seconds:
        return True
    first = schedule.next_occurrence(now)
    return schedule.next_occurrence(first) >= now + timedelta(minutes=1)


@dataclass(frozen=True)
class ScheduleStatus:
    """Last run (None: never), next occurrence, and when it was last recorded (None: never)."""

    last: datetime | None
    next: datetime
    last_updated: datetime | None

    def to_json(self) -> dict[str, str]:
        return {
            "Last": dotnet_iso(self.last),
            "Next": dotnet_iso(self.next),
            "LastUpdated": dotnet_iso(self.last_updated),
        }

    @classmethod
    def from_json(cls, document: dict[str, str]) -> ScheduleStatus:
        upcoming = _parse_iso(document["Next"])
        if upcoming is None:
            raise ValueError("no Next occurrence")
        return cls(_parse_iso(document["Last"]), upcoming, _parse_iso(document["LastUpdated"]))


class ScheduleMonitor:
    """Schedule status per timer function: files under `directory`, or memory when it is None."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._memory: dict[str, ScheduleStatus] = {}

    def _path(self, name: str) -> Path | None:
        return None if self.directory is None else self.directory / name / "status"

    def get_status(self, name: str) -> ScheduleStatus | None:
        path = self._path(name)
        if path is None:
            return self._memory.get(name)
        try:
            return ScheduleStatus.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            log.warning("Timer status '%s' is unreadable (%s); starting afresh", path, error)
            return None

    def update_status(self, name: str, status: ScheduleStatus) -> None:
        path = self._path(name)
        if path is None:
            self._memory[name] = status
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(status.to_json()))
            temporary.replace(path)
        except OSError as error:  # best effort, as the host's storage monitor
            log.error("Function '%s' failed to update the timer trigger status: %s", name, error)

    def check_past_due(self, name: str, now: datetime, schedule: TimerSchedule) -> tuple[timedelta, ScheduleStatus]:
        """ScheduleMonitor.CheckPastDueAsync: how long ago a missed occurrence was due (zero: none),
        and the status now recorded.

        Records a first status for a new timer, and starts afresh from now when the schedule changed
        and the occurrence it would expect is already past (a schedule change is not a missed run).
        """
        recorded = self.get_status(name)
        if recorded is None:
            recorded = ScheduleStatus(None, schedule.next_occurrence(now), now)
            self.update_status(name, recorded)
        else:
            since = recorded.last or recorded.last_updated or now
            expected = schedule.next_occurrence(since)
            if recorded.next != expected:
                if now > expected:
                    since, expected = now, schedule.next_occurrence(now)
                recorded = ScheduleStatus(None, expected, since)
                self.update_status(name, recorded)
        return (now - recorded.next if now > recorded.next else timedelta(0)), recorded


def next_occurrences(schedule: TimerSchedule, count: int, now: datetime) -> list[datetime]:
    moments: list[datetime] = []
    for _ in range(count):
        now = schedule.next_occurrence(now)
        moments.append(now)
    return moments


class TimerListener:
    def __init__(
        self,
        spec: FunctionSpec,
        schedule: TimerSchedule,
        invoker: Invoker,
        run_on_startup: bool,
        use_monitor: bool,
        monitor: ScheduleMonitor | None = None,
    ) -> None:
        self.spec = spec
        self.schedule = schedule
        self._invoker = invoker
        self._run_on_startup = run_on_startup
        self.use_monitor = monitor_in_effect(use_monitor, schedule, _utcnow())
        self._monitor = (monitor or ScheduleMonitor(None)) if self.use_monitor else None
        self._status = ScheduleStatus(None, schedule.next_occurrence(_utcnow()), None)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def next_run(self) -> datetime:
        return self._status.next

    def start(self) -> None:
        now = _utcnow()
        past_due = timedelta(0)
        self._status = ScheduleStatus(None, self.schedule.next_occurrence(now), None)
        if self._monitor is not None:
            # A run missed while the host was down is run at once, as past due.
            known = self._monitor.get_status(self.spec.name) is not None
            past_due, recorded = self._monitor.check_past_due(self.spec.name, now, self.schedule)
            if known:  # a new timer's first run still sees "never" for Last and LastUpdated
                self._status = recorded
        moments = "\n".join(dotnet_iso(moment) for moment in next_occurrences(self.schedule, 5, now))
        log.info("The next 5 occurrences of the '%s' schedule (%s) will be:\n%s", self.spec.name, self._label, moments)
        self._task = asyncio.create_task(self._run(past_due > timedelta(0)), name=f"timer-{self.spec.name}")

    @property
    def _label(self) -> str:
        kind = "Cron" if isinstance(self.schedule, CronSchedule) else "Constant"
        return f"{kind}: '{self.schedule.expression}'"

    async def stop(self, timeout: float) -> None:
        """No new runs; a running invocation gets up to `timeout` to finish."""
        self._stopping.set()
        if self._task is not None:
            _done, pending = await asyncio.wait({self._task}, timeout=timeout)
            for task in pending:
                task.cancel()

    async def _run(self, past_due: bool) -> None:
        if past_due:
            log.info("Function '%s' is past due on startup. Executing now.", self.spec.name)
            await self._invoke(_utcnow(), past_due=True)
        elif self._run_on_startup:
            log.info("Function '%s' is configured to run on startup. Executing now.", self.spec.name)
            await self._invoke(_utcnow(), on_startup=True)
        while not self._stopping.is_set():
            # Wait in wall-clock time; asyncio may wake a hair early, so re-check until due.
            while (remaining := (self._status.next - _utcnow()).total_seconds()) > 0:
                try:
                    await asyncio.wait_for(self._stopping.wait(), remaining)
                    return
                except TimeoutError:
                    pass
            await self._invoke(_utcnow())

    async def _invoke(self, started: datetime, past_due: bool = False, on_startup: bool = False) -> None:
        request = TimerRequest(
            past_due=past_due,
            # The status as it stood before this run (Next is this run's occurrence); none without the monitor.
            schedule_status=self._status.to_json() if self._monitor is not None else {},
            schedule={"AdjustForDST": isinstance(self.schedule, CronSchedule)},
        )
        if past_due or on_startup:
            reason = "IsPastDue" if past_due else "RunOnStartup"
            log.info("Trigger Details: UnscheduledInvocationReason: %s", reason)
        await self._invoker.invoke(self.spec, request, f"Timer fired at {dotnet_iso(started)}")
        # The next occurrence counts from this run's start, or from its occurrence if the timer woke early.
        adjusted = started
        if not past_due and not on_startup and self._status.next > started:
            adjusted = self._status.next
        self._status = ScheduleStatus(adjusted, self.schedule.next_occurrence(adjusted), adjusted)
        if self._monitor is not None:
            self._monitor.update_status(self.spec.name, self._status)
