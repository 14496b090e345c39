"""NCRONTAB schedules as the Functions timer trigger reads them, and the TimeSpan form.

Six fields, seconds first: ``{second} {minute} {hour} {day} {month} {day-of-week}`` (five-field
expressions are accepted too, with second 0, as NCrontab does). Times are UTC. Like NCrontab (and
unlike Vixie cron), a day must match BOTH the day-of-month and the day-of-week field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

_MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# Far enough for "29 Feb that is a Monday" (every 28 years at most); anything rarer never happens.
_SEARCH_YEARS = 30


class Schedule(Protocol):
    def next_occurrence(self, after: datetime) -> datetime: ...


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_SECOND = _FieldSpec("second", 0, 59)
_MINUTE = _FieldSpec("minute", 0, 59)
_HOUR = _FieldSpec("hour", 0, 23)
_DAY = _FieldSpec("day", 1, 31)
_MONTH = _FieldSpec("month", 1, 12, tuple(_MONTH_NAMES), 1)
_DAY_OF_WEEK = _FieldSpec("day-of-week", 0, 6, tuple(_DAY_NAMES), 0)


_FULL_NAMES = {
    "JANUARY",
    "FEBRUARY",
    "MARCH",
    "APRIL",
    "JUNE",
    "JULY",
    "AUGUST",
    "SEPTEMBER",
    "OCTOBER",
    "NOVEMBER",
    "DECEMBER",
    "SUNDAY",
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
}


def _value(text: str, spec: _FieldSpec) -> int:
    upper = text.upper()
    # Three-letter names ("MON", "Jan") and full names ("Monday"), case-insensitive.
    if len(upper) == 3 or upper in _FULL_NAMES:
        for index, name in enumerate(spec.names):
            if upper[:3] == name:
                return index + spec.name_base
    if not text.isdigit():
        raise ValueError(f"'{text}' is not a valid {spec.name} value")
    number = int(text)
    if not spec.low <= number <= spec.high:
        raise ValueError(f"{spec.name} value {number} is outside {spec.low}-{spec.high}")
    return number


def _parse_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ValueError(f"empty list item in {spec.name} field '{text}'")
        range_text, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"invalid step '{step_text}' in {spec.name} field")
            step = int(step_text)
        if range_text == "*":
            first, last = spec.low, spec.high
        elif "-" in range_text:
            first_text, last_text = range_text.split("-", 1)
            first, last = _value(first_text, spec), _value(last_text, spec)
            if first > last:
                raise ValueError(f"range {range_text} in {spec.name} field runs backwards")
        else:
            first = _value(range_text, spec)
            # "a/n" means a, a+n, ... up to the field's maximum (NCrontab and Vixie cron agree).
            last = spec.high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        fields = expression.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        if len(fields) != 6:
            raise ValueError(f"'{expression}' is not an NCRONTAB expression: it needs six fields, seconds first")
        specs = (_SECOND, _MINUTE, _HOUR, _DAY, _MONTH, _DAY_OF_WEEK)
        parsed = [_parse_field(text, spec) for text, spec in zip(fields, specs, strict=True)]
        return cls(expression, *parsed)

    def _day_matches(self, moment: datetime) -> bool:
        # Python's weekday() is Monday=0; cron's is Sunday=0.
        return moment.day in self.days and (moment.weekday() + 1) % 7 in self.days_of_week

    def next_occurrence(self, after: datetime) -> datetime:
        """The first matching second strictly after `after` (keeps `after`'s tzinfo; read as UTC)."""
        moment = after.replace(microsecond=0) + timedelta(seconds=1)
        limit_year = after.year + _SEARCH_YEARS
        while moment.year <= limit_year:
            if moment.month not in self.months:
                year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
                moment = moment.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
            elif not self._day_matches(moment):
                moment = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif moment.hour not in self.hours:
                moment = (moment + timedelta(hours=1)).replace(minute=0, second=0)
            elif moment.minute not in self.minutes:
                moment = (moment + timedelta(minutes=1)).replace(second=0)
            elif moment.second not in self.seconds:
                moment += timedelta(seconds=1)
            else:
                return moment
        raise ValueError(f"schedule '{self.expression}' has no occurrence within {_SEARCH_YEARS} years")


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$")


def parse_timespan(text: str) -> timedelta | None:
    """.NET TimeSpan text ``[d.]hh:mm:ss[.fffffff]``, or None if `text` is not one."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        return None
    days, hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds) > 59:
        raise ValueError(f"'{text}' is not a valid TimeSpan")
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(7, "0")) // 10,
    )


@dataclass(frozen=True)
class IntervalSchedule:
    """The TimeSpan form ("00:05:00"): every interval, counted from the previous occurrence."""

    expression: str
    interval: timedelta

    def next_occurrence(self, after: datetime) -> datetime:
        return after + self.interval


def parse_schedule(expression: str) -> Schedule:
    """An NCRONTAB expression, or a TimeSpan as the host accepts for timer triggers."""
    interval = parse_timespan(expression) if ":" in expression else None
    if interval is not None:
        if interval <= timedelta(0):
            raise ValueError(f"timer interval '{expression}' must be positive")
        return IntervalSchedule(expression, interval)
    return CronSchedule.parse(expression)


def next_occurrence(expression: str, after: datetime) -> datetime:
    return parse_schedule(expression).next_occurrence(after)
