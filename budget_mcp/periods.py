"""Calendar arithmetic: months written YYYY-MM, named periods ("last_month") and ranges of months.

Pure functions of their arguments; "today" is always passed in, so every rule is testable at any date.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal, get_args

from .errors import InvalidInput

PeriodName = Literal[
    "this_month", "last_month", "this_year", "last_year", "last_7_days", "last_30_days", "year_to_date"
]
PERIOD_NAMES: tuple[str, ...] = get_args(PeriodName)
_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")
MIN_YEAR, MAX_YEAR = 1900, 2999


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month. Ordered, hashable, and written YYYY-MM."""

    year: int
    month: int

    @classmethod
    def parse(cls, value: object) -> Month:
        if isinstance(value, Month):
            return value
        if not isinstance(value, str) or not _MONTH.fullmatch(value.strip()):
            raise InvalidInput(f"expected a month written YYYY-MM (e.g. 2026-03), got {value!r}")
        year, month = (int(part) for part in value.strip().split("-"))
        if not 1 <= month <= 12:
            raise InvalidInput(f"{value.strip()} is not a month: the month number must be 01 to 12")
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise InvalidInput(f"{value.strip()} is out of range: use a year from {MIN_YEAR} to {MAX_YEAR}")
        return cls(year, month)

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, self.days)

    @property
    def days(self) -> int:
        return calendar.monthrange(self.year, self.month)[1]

    def index(self) -> int:
        """Months since year 0: differences of indexes count months."""
        return self.year * 12 + self.month - 1

    @classmethod
    def from_index(cls, index: int) -> Month:
        return cls(index // 12, index % 12 + 1)

    def plus(self, months: int) -> Month:
        return Month.from_index(self.index() + months)


@dataclass(frozen=True)
class DateRange:
    """An inclusive range of days (None: open at that end), and the named period it came from (if any)."""

    start: date | None
    end: date | None
    period: str | None = None


def named_period(name: str, today: date) -> DateRange:
    """The exact days a named period covers, seen from ``today`` (in the user's time zone)."""
    this_month = Month.of(today)
    if name == "this_month":
        return DateRange(this_month.first_day, this_month.last_day, name)
    if name == "last_month":
        last = this_month.plus(-1)
        return DateRange(last.first_day, last.last_day, name)
    if name == "this_year":
        return DateRange(date(today.year, 1, 1), date(today.year, 12, 31), name)
    if name == "last_year":
        return DateRange(date(today.year - 1, 1, 1), date(today.year - 1, 12, 31), name)
    if name == "last_7_days":
        return DateRange(today - timedelta(days=6), today, name)
    if name == "last_30_days":
        return DateRange(today - timedelta(days=29), today, name)
    if name == "year_to_date":
        return DateRange(date(today.year, 1, 1), today, name)
    raise InvalidInput(f"unknown period {name!r}; use one of {', '.join(PERIOD_NAMES)}")


def resolve_range(
    start: date | None,
    end: date | None,
    period: str | None,
    today: date,
    *,
    default: str | None = None,
    names: tuple[str, str, str] = ("period", "start_date", "end_date"),
) -> DateRange | None:
    """The range a call asks for: a named period, or explicit dates (either end may be open), or ``default``.

    Returns None for "no limit at all" (no dates, no period and no default).
    """
    period_name, start_name, end_name = names
    if period is not None and (start is not None or end is not None):
        raise InvalidInput(f"pass either {period_name} or {start_name}/{end_name}, not both")
    if period is not None:
        return named_period(period, today)
    if start is None and end is None:
        return named_period(default, today) if default is not None else None
    if start is not None and end is not None and start > end:
        raise InvalidInput(f"{start_name} {start} is after {end_name} {end}; swap them or fix one")
    return DateRange(start, end)


def previous_range(current: DateRange) -> DateRange:
    """The period just before ``current``: the previous calendar month or year for those periods,
    otherwise the same number of days ending the day before."""
    start, end = current.start, current.end
    if start is None or end is None:
        raise InvalidInput("a comparison needs a closed period: give both start_date and end_date, or a period")
    if start.day == 1 and end == Month.of(end).last_day:
        months = Month.of(end).index() - Month.of(start).index() + 1
        first = Month.of(start).plus(-months)
        return DateRange(first.first_day, Month.of(start).plus(-1).last_day)
    length = (end - start).days + 1
    return DateRange(start - timedelta(days=length), start - timedelta(days=1))


RUNNING_PERIODS = ("this_month", "this_year", "year_to_date")
"""Named periods that can still be under way today: compared so far, not whole (see ``comparison``)."""


def comparison(current: DateRange, today: date) -> tuple[DateRange, DateRange]:
    """The two ranges a comparison with no baseline of its own sets side by side.

    A named period still under way today (this_month, this_year, year_to_date) is compared so far: from its
    first day to today, against the same days of the month or year before (the 31st falls back to the last
    day of a shorter month), so that half a month is never set beside a whole one. On the period's last day
    it is whole, and so is the one before. Any other range is compared with the period just before it.
    """
    start, end = current.start, current.end
    running = current.period in RUNNING_PERIODS and start is not None and end is not None and start <= today <= end
    if not running:
        return current, previous_range(current)
    this = Month.of(today)
    month_before = this.plus(-1) if current.period == "this_month" else Month(today.year - 1, today.month)
    if today == this.last_day:
        last = month_before.last_day
    else:
        last = date(month_before.year, month_before.month, min(today.day, month_before.days))
    first = month_before.first_day if current.period == "this_month" else date(today.year - 1, 1, 1)
    return DateRange(start, today, current.period), DateRange(first, last)


# --- ranges of months (budgets) -------------------------------------------------------------------------

MonthSpan = tuple[int, int | None]  # first and last month index, inclusive; None: open-ended


def subtract(span: MonthSpan, cut: MonthSpan) -> list[MonthSpan]:
    """What remains of ``span`` once the months of ``cut`` are taken out: zero, one or two spans."""
    start, end = span
    cut_start, cut_end = cut
    if (end is not None and end < cut_start) or (cut_end is not None and cut_end < start):
        return [span]  # no overlap
    remains: list[MonthSpan] = []
    if start < cut_start:
        remains.append((start, cut_start - 1))
    if cut_end is not None and (end is None or end > cut_end):
        remains.append((cut_end + 1, end))
    return remains


def overlap(a: MonthSpan, b: MonthSpan) -> MonthSpan | None:
    start = max(a[0], b[0])
    ends = [e for e in (a[1], b[1]) if e is not None]
    end = min(ends) if ends else None
    if end is not None and end < start:
        return None
    return (start, end)
