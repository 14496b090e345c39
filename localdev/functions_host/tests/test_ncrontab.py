"""The NCRONTAB parser, with fixed datetimes (no waiting)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from localdev.functions_host.ncrontab import CronSchedule, IntervalSchedule, next_occurrence, parse_schedule


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/1 * * * * *", at(2024, 1, 1, 0, 0, 0), at(2024, 1, 1, 0, 0, 1)),
        # Strictly after, even with microseconds.
        ("* * * * * *", datetime(2024, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC), at(2024, 1, 1, 0, 0, 1)),
        ("*/15 * * * * *", at(2024, 1, 1, 0, 0, 14), at(2024, 1, 1, 0, 0, 15)),
        ("*/15 * * * * *", at(2024, 1, 1, 0, 0, 45), at(2024, 1, 1, 0, 1, 0)),
        ("0 */5 * * * *", at(2024, 1, 1, 10, 3, 0), at(2024, 1, 1, 10, 5, 0)),
        ("0 0 * * * *", at(2024, 1, 1, 23, 30, 0), at(2024, 1, 2, 0, 0, 0)),
        # Year rollover.
        ("0 0 0 1 1 *", at(2024, 12, 31, 23, 59, 59), at(2025, 1, 1, 0, 0, 0)),
        # Leap day.
        ("0 0 12 29 2 *", at(2023, 3, 1), at(2024, 2, 29, 12, 0, 0)),
        # Lists and ranges; a-b/n steps inside the range.
        ("0 0 9,17 * * *", at(2024, 1, 1, 10, 0, 0), at(2024, 1, 1, 17, 0, 0)),
        ("0 10-20/5 * * * *", at(2024, 1, 1, 0, 16, 0), at(2024, 1, 1, 0, 20, 0)),
        ("0 10-20/5 * * * *", at(2024, 1, 1, 0, 20, 0), at(2024, 1, 1, 1, 10, 0)),
        # a/n: from a to the maximum.
        ("50/5 * * * * *", at(2024, 1, 1, 0, 0, 56), at(2024, 1, 1, 0, 1, 50)),
        # Day of week 0 = Sunday; 2024-01-01 is a Monday.
        ("0 30 9 * * 0", at(2024, 1, 1), at(2024, 1, 7, 9, 30, 0)),
        ("0 30 9 * * 1-5", at(2024, 1, 5, 10, 0, 0), at(2024, 1, 8, 9, 30, 0)),
        ("0 30 9 * * MON-FRI", at(2024, 1, 5, 10, 0, 0), at(2024, 1, 8, 9, 30, 0)),
        ("0 0 0 1 JAN,jul *", at(2024, 2, 1), at(2024, 7, 1)),
        # Day-of-month AND day-of-week, as NCrontab: the next 13th that is a Friday.
        ("0 0 0 13 * FRI", at(2024, 1, 1), at(2024, 9, 13)),
        # Months without a 31st are skipped.
        ("0 0 0 31 * *", at(2024, 4, 1), at(2024, 5, 31)),
        # Five fields: second 0.
        ("*/10 * * * *", at(2024, 1, 1, 0, 1, 30), at(2024, 1, 1, 0, 10, 0)),
        # NCrontab takes any leading part of a name: full names, "Tu", even "M" (Monday; March in months).
        ("0 30 9 * * Monday", at(2024, 1, 2), at(2024, 1, 8, 9, 30, 0)),
        ("0 30 9 * * tu", at(2024, 1, 3), at(2024, 1, 9, 9, 30, 0)),
        ("0 0 0 * * M", at(2024, 1, 2), at(2024, 1, 8)),
        ("0 0 0 1 M *", at(2024, 1, 2), at(2024, 3, 1)),
        ("0 0 0 1 Ju *", at(2024, 1, 2), at(2024, 6, 1)),  # June comes before July
    ],
)
def test_next_occurrence(expression: str, after: datetime, expected: datetime) -> None:
    assert next_occurrence(expression, after) == expected


def test_naive_datetimes_stay_naive() -> None:
    assert next_occurrence("0 0 * * * *", datetime(2024, 1, 1, 5, 30)) == datetime(2024, 1, 1, 6, 0)


def test_fields_are_parsed() -> None:
    schedule = CronSchedule.parse("0,30 1-3 */6 1 1 SUN,SAT")
    assert schedule.seconds == {0, 30}
    assert schedule.minutes == {1, 2, 3}
    assert schedule.hours == {0, 6, 12, 18}
    assert schedule.days_of_week == {0, 6}


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *  *  *",  # seven fields
        "* * * *",  # four
        "60 * * * * *",  # second out of range
        "* * 24 * * *",
        "* * * 0 * *",  # day 0
        "* * * * 13 *",
        "* * * * * 7",  # NCrontab's day-of-week is 0-6
        "*/0 * * * * *",
        "5-1 * * * * *",  # backwards range
        "* * * * FOO *",
        "1,,2 * * * * *",
        "? * * * * *",
        # Quartz and Vixie extensions NCrontab does not know (croniter would take them).
        "0 0 0 L * *",
        "0 0 0 * * 5#3",
        "0 0 0 ? * *",
        "0 0 0 15W * *",
        "@hourly",
        "0 0 0 * * Mondays",
    ],
)
def test_invalid_expressions(expression: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(expression)


def test_impossible_date_has_no_occurrence() -> None:
    with pytest.raises(ValueError, match="no occurrence"):
        next_occurrence("0 0 0 30 2 *", at(2024, 1, 1))


@pytest.mark.parametrize(
    ("expression", "interval"),
    [
        ("01:30:00", timedelta(hours=1, minutes=30)),
        ("00:05", timedelta(minutes=5)),  # hh:mm
        ("1.00:00:00", timedelta(days=1)),
        ("2:03:04:05", timedelta(days=2, hours=3, minutes=4, seconds=5)),  # d:hh:mm:ss
        ("00:00:00.5", timedelta(seconds=0.5)),
        ("7", timedelta(days=7)),  # TimeSpan.TryParse reads a bare number as days
    ],
)
def test_timespan_schedule(expression: str, interval: timedelta) -> None:
    schedule = parse_schedule(expression)
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.next_occurrence(at(2024, 1, 1)) == at(2024, 1, 1) + interval


@pytest.mark.parametrize("expression", ["24:00:00", "00:60:00", "00:00:60", "1:2:3:4:5", "00:00.5", "soon"])
def test_invalid_timespans(expression: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(expression)


def test_zero_timespan_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_schedule("00:00:00")
