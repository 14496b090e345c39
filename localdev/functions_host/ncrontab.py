"""NCRONTAB schedules as the Functions timer trigger reads them, and the TimeSpan form.

Six fields, seconds first: ``{second} {minute} {hour} {day} {month} {day-of-week}`` (five-field
expressions are accepted too, with second 0, as NCrontab does). Times are UTC. Like NCrontab (and
unlike Vixie cron), a day must match BOTH the day-of-month and the day-of-week field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_MONTH_NAMES = "JANUARY FEBRUARY MARCH APRIL MAY JUNE JULY AUGUST SEPTEMBER OCTOBER NOVEMBER DECEMBER".split()
_DAY_NAMES = "SUNDAY MONDAY TUESDAY WEDNESDAY THURSDAY FRIDAY SATURDAY".split()
# Far enough for "29 Feb that is a Monday" (every 28 years at most); anything rarer never happens.
_SEARCH_YEARS = 30


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


_SECOND = _FieldSpec("second", 0, 59)
_MINUTE = _FieldSpec("minute", 0, 59)
_HOUR = _FieldSpec("hour", 0, 23)
_DAY = _FieldSpec("day", 1, 31)
_MONTH = _FieldSpec("month", 1, 12, tuple(_MONTH_NAMES))
_DAY_OF_WEEK = _FieldSpec("day-of-week", 0, 6, tuple(_DAY_NAMES))


def _value(text: str, spec: _FieldSpec) -> int:
    if text[:1].isdigit():
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"'{text}' is not a valid {spec.name} value")
        number = int(text)
        if not spec.low <= number <= spec.high:
            raise ValueError(f"{spec.name} value {number} is outside {spec.low}-{spec.high}")
        return number
    # NCrontab takes any leading part of a name, case-insensitive: "Mon", "monday", even "M" (the
    # first name it begins: March, Monday) or "Tu".
    upper = text.upper()
    for index, name in enumerate(spec.names):
        if upper and name.startswith(upper):
            return index + spec.low
    raise ValueError(f"'{text}' is not a valid {spec.name} value")


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

    @property
    def restricts_only_seconds(self) -> bool:
        """Minute to day-of-week all '*' (or their whole range, which NCrontab prints as '*')."""
        full = (_MINUTE, _HOUR, _DAY, _MONTH, _DAY_OF_WEEK)
        fields = (self.minutes, self.hours, self.days, self.months, self.days_of_week)
        return all(len(values) == spec.high - spec.low + 1 for values, spec in zip(fields, full, strict=True))

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


_CLOCK = re.compile(r"^(\d+):(\d+)(?::(\d+)(?:\.(\d{1,7}))?)?$")


def parse_timespan(text: str) -> timedelta | None:
    """.NET TimeSpan text as TimeSpan.TryParse reads it, or None if `text` is not one.

    ``d`` (a bare number is days), ``hh:mm``, ``hh:mm:ss[.fffffff]``, with ``d.`` or ``d:`` before
    them for days, and an optional leading ``-``.
    """
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    body = body.removeprefix("-")
    if body.isascii() and body.isdigit():
        return sign * timedelta(days=int(body))
    days = "0"
    head, dot, rest = body.partition(".")
    if dot and head.isascii() and head.isdigit() and ":" in rest and ":" not in head:
        days, body = head, rest  # d.hh:mm[:ss]
    elif body.count(":") == 3:
        days, body = body.split(":", 1)  # d:hh:mm:ss
    match = _CLOCK.match(body)
    if match is None or not days.isdigit():
        return None
    hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
        raise ValueError(f"'{text}' is not a valid TimeSpan: hours 0-23, minutes and seconds 0-59")
    return sign * timedelta(
        days=int(days),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds or 0),
        microseconds=int((fraction or "0").ljust(7, "0")) // 10,
    )


@dataclass(frozen=True)
class IntervalSchedule:
    """The TimeSpan form ("00:05:00"): every interval, counted from the start of the previous run."""

    expression: str
    interval: timedelta

    def next_occurrence(self, after: datetime) -> datetime:
        return after + self.interval


def parse_schedule(expression: str) -> CronSchedule | IntervalSchedule:
    """What the timer trigger does with its schedule: NCRONTAB if it has five or six fields, else a
    TimeSpan (TimerSchedule.Create: CronSchedule.TryCreate, then TimeSpan.TryParse)."""
    if len(expression.split()) in (5, 6):
        return CronSchedule.parse(expression)
    try:
        interval = parse_timespan(expression)
    except ValueError:
        interval = None
    if interval is None:
        raise ValueError(f"'{expression}' is neither an NCRONTAB expression (six fields, seconds first) nor a TimeSpan")
    # The host would accept 00:00:00 and fire without pause; refuse it.
    if interval <= timedelta(0):
        raise ValueError(f"timer interval '{expression}' must be positive")
    return IntervalSchedule(expression, interval)


def next_occurrence(expression: str, after: datetime) -> datetime:
    return parse_schedule(expression).next_occurrence(after)
