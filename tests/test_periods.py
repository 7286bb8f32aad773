"""Calendar rules as pure functions: named periods at month and year edges, the period before a range,
months written YYYY-MM, and cutting spans of months (what budgets are made of)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from budget_mcp.errors import InvalidInput
from budget_mcp.periods import (
    PERIOD_NAMES,
    DateRange,
    Month,
    MonthSpan,
    comparison,
    named_period,
    overlap,
    previous_range,
    resolve_range,
    subtract,
)

D = date.fromisoformat

# today -> {period: (first day, last day)}
EDGES: dict[str, dict[str, tuple[str, str]]] = {
    "2026-01-01": {
        "this_month": ("2026-01-01", "2026-01-31"),
        "last_month": ("2025-12-01", "2025-12-31"),
        "this_year": ("2026-01-01", "2026-12-31"),
        "last_year": ("2025-01-01", "2025-12-31"),
        "last_7_days": ("2025-12-26", "2026-01-01"),
        "last_30_days": ("2025-12-03", "2026-01-01"),
        "year_to_date": ("2026-01-01", "2026-01-01"),
    },
    "2026-12-31": {
        "this_month": ("2026-12-01", "2026-12-31"),
        "last_month": ("2026-11-01", "2026-11-30"),
        "this_year": ("2026-01-01", "2026-12-31"),
        "last_year": ("2025-01-01", "2025-12-31"),
        "last_7_days": ("2026-12-25", "2026-12-31"),
        "last_30_days": ("2026-12-02", "2026-12-31"),
        "year_to_date": ("2026-01-01", "2026-12-31"),
    },
    "2028-02-29": {
        "this_month": ("2028-02-01", "2028-02-29"),
        "last_month": ("2028-01-01", "2028-01-31"),
        "this_year": ("2028-01-01", "2028-12-31"),
        "last_year": ("2027-01-01", "2027-12-31"),
        "last_7_days": ("2028-02-23", "2028-02-29"),
        "last_30_days": ("2028-01-31", "2028-02-29"),
        "year_to_date": ("2028-01-01", "2028-02-29"),
    },
    "2026-03-31": {
        "this_month": ("2026-03-01", "2026-03-31"),
        "last_month": ("2026-02-01", "2026-02-28"),  # not "February 31st"
        "this_year": ("2026-01-01", "2026-12-31"),
        "last_year": ("2025-01-01", "2025-12-31"),
        "last_7_days": ("2026-03-25", "2026-03-31"),
        "last_30_days": ("2026-03-02", "2026-03-31"),
        "year_to_date": ("2026-01-01", "2026-03-31"),
    },
    "2028-03-31": {
        "this_month": ("2028-03-01", "2028-03-31"),
        "last_month": ("2028-02-01", "2028-02-29"),  # a leap February
        "this_year": ("2028-01-01", "2028-12-31"),
        "last_year": ("2027-01-01", "2027-12-31"),
        "last_7_days": ("2028-03-25", "2028-03-31"),
        "last_30_days": ("2028-03-02", "2028-03-31"),
        "year_to_date": ("2028-01-01", "2028-03-31"),
    },
}


@pytest.mark.parametrize(
    ("today", "name", "first", "last"),
    [(today, name, first, last) for today, periods in EDGES.items() for name, (first, last) in periods.items()],
)
def test_each_named_period_covers_exactly_its_days_at_month_and_year_edges(
    today: str, name: str, first: str, last: str
) -> None:
    assert named_period(name, D(today)) == DateRange(D(first), D(last), name)


def test_the_edge_table_names_every_period() -> None:
    assert all(set(periods) == set(PERIOD_NAMES) for periods in EDGES.values())


@pytest.mark.parametrize("today", ["2026-01-01", "2026-03-01", "2028-02-29", "2026-12-31", "2027-03-01"])
@pytest.mark.parametrize(("name", "days"), [("last_7_days", 7), ("last_30_days", 30)])
def test_last_n_days_counts_n_days_ending_today(today: str, name: str, days: int) -> None:
    found = named_period(name, D(today))
    assert found.end == D(today)
    assert found.start is not None and (found.end - found.start).days + 1 == days


@pytest.mark.parametrize("today", ["2026-01-01", "2026-06-15", "2028-02-29", "2026-12-31"])
def test_year_to_date_runs_from_new_year_through_today(today: str) -> None:
    found = named_period("year_to_date", D(today))
    assert (found.start, found.end) == (date(D(today).year, 1, 1), D(today))


def test_an_unknown_period_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as refused:
        named_period("next_month", D("2026-03-15"))
    assert "next_month" in str(refused.value)
    assert all(name in str(refused.value) for name in PERIOD_NAMES)


# --- resolving what a call asks for -----------------------------------------------------------------------


def test_a_period_and_explicit_dates_together_are_refused() -> None:
    with pytest.raises(InvalidInput, match="not both"):
        resolve_range(D("2026-03-01"), None, "this_month", D("2026-03-15"))


def test_start_after_end_is_refused_naming_both_days() -> None:
    with pytest.raises(InvalidInput) as refused:
        resolve_range(D("2026-03-02"), D("2026-03-01"), None, D("2026-03-15"))
    assert "2026-03-02" in str(refused.value) and "2026-03-01" in str(refused.value)


def test_no_dates_fall_back_to_the_default_or_to_no_limit() -> None:
    today = D("2026-03-15")
    assert resolve_range(None, None, None, today, default="this_month") == named_period("this_month", today)
    assert resolve_range(None, None, None, today) is None
    assert resolve_range(D("2026-03-01"), None, None, today) == DateRange(D("2026-03-01"), None)


# --- the period before ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (("2026-03-01", "2026-03-31"), ("2026-02-01", "2026-02-28")),
        (("2026-01-01", "2026-01-31"), ("2025-12-01", "2025-12-31")),  # January -> the previous December
        (("2028-03-01", "2028-03-31"), ("2028-02-01", "2028-02-29")),
        (("2026-02-01", "2026-02-28"), ("2026-01-01", "2026-01-31")),
        (("2026-01-01", "2026-12-31"), ("2025-01-01", "2025-12-31")),  # a calendar year -> the year before
        (("2029-01-01", "2029-12-31"), ("2028-01-01", "2028-12-31")),  # a leap year before
        (("2026-02-01", "2026-03-31"), ("2025-12-01", "2026-01-31")),  # two months -> the two before
        (("2026-01-01", "2026-03-31"), ("2025-10-01", "2025-12-31")),  # a quarter
    ],
)
def test_the_period_before_whole_months_is_the_same_number_of_calendar_months(
    current: tuple[str, str], expected: tuple[str, str]
) -> None:
    found = previous_range(DateRange(D(current[0]), D(current[1])))
    assert (found.start, found.end) == (D(expected[0]), D(expected[1]))


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (("2026-03-15", "2026-03-15"), ("2026-03-14", "2026-03-14")),
        (("2026-03-09", "2026-03-15"), ("2026-03-02", "2026-03-08")),
        (("2026-01-01", "2026-01-07"), ("2025-12-25", "2025-12-31")),
        (("2028-03-01", "2028-03-02"), ("2028-02-28", "2028-02-29")),
        (("2026-03-01", "2026-03-30"), ("2026-01-30", "2026-02-28")),  # starts on the 1st, not a whole month
        (("2026-02-14", "2026-03-15"), ("2026-01-15", "2026-02-13")),
    ],
)
def test_the_period_before_any_other_range_is_as_many_days_ending_the_day_before(
    current: tuple[str, str], expected: tuple[str, str]
) -> None:
    found = previous_range(DateRange(D(current[0]), D(current[1])))
    assert (found.start, found.end) == (D(expected[0]), D(expected[1]))


@given(start=st.dates(date(1950, 1, 1), date(2900, 12, 31)), length=st.integers(1, 800))
def test_the_period_before_always_ends_the_day_before_and_never_overlaps(start: date, length: int) -> None:
    current = DateRange(start, start + timedelta(days=length - 1))
    found = previous_range(current)
    assert found.end == start - timedelta(days=1)
    assert found.start is not None and found.start <= found.end


@pytest.mark.parametrize("current", [DateRange(D("2026-03-01"), None), DateRange(None, D("2026-03-31"))])
def test_the_period_before_an_open_range_is_refused(current: DateRange) -> None:
    with pytest.raises(InvalidInput, match="start_date and end_date"):
        previous_range(current)


@pytest.mark.parametrize(
    ("period", "today", "current", "baseline"),
    [
        ("this_month", "2026-03-15", ("2026-03-01", "2026-03-15"), ("2026-02-01", "2026-02-15")),
        ("this_month", "2026-03-01", ("2026-03-01", "2026-03-01"), ("2026-02-01", "2026-02-01")),
        ("this_month", "2026-03-30", ("2026-03-01", "2026-03-30"), ("2026-02-01", "2026-02-28")),  # Feb is short
        ("this_month", "2026-03-31", ("2026-03-01", "2026-03-31"), ("2026-02-01", "2026-02-28")),  # whole months
        ("this_month", "2026-02-28", ("2026-02-01", "2026-02-28"), ("2026-01-01", "2026-01-31")),  # whole months
        ("this_month", "2026-01-10", ("2026-01-01", "2026-01-10"), ("2025-12-01", "2025-12-10")),
        ("this_year", "2026-03-15", ("2026-01-01", "2026-03-15"), ("2025-01-01", "2025-03-15")),
        ("year_to_date", "2026-03-15", ("2026-01-01", "2026-03-15"), ("2025-01-01", "2025-03-15")),
        ("year_to_date", "2028-02-29", ("2028-01-01", "2028-02-29"), ("2027-01-01", "2027-02-28")),  # leap day
        ("year_to_date", "2029-02-28", ("2029-01-01", "2029-02-28"), ("2028-01-01", "2028-02-29")),
        ("this_year", "2026-12-31", ("2026-01-01", "2026-12-31"), ("2025-01-01", "2025-12-31")),
        # periods that are over, or not calendar periods, are compared whole with the period before
        ("last_month", "2026-03-15", ("2026-02-01", "2026-02-28"), ("2026-01-01", "2026-01-31")),
        ("last_year", "2026-03-15", ("2025-01-01", "2025-12-31"), ("2024-01-01", "2024-12-31")),
        ("last_7_days", "2026-03-15", ("2026-03-09", "2026-03-15"), ("2026-03-02", "2026-03-08")),
    ],
)
def test_a_comparison_sets_a_period_under_way_so_far_beside_the_same_days_before_it(
    period: str, today: str, current: tuple[str, str], baseline: tuple[str, str]
) -> None:
    now, then = comparison(named_period(period, D(today)), D(today))
    assert (now.start, now.end, now.period) == (D(current[0]), D(current[1]), period)
    assert (then.start, then.end) == (D(baseline[0]), D(baseline[1]))


def test_a_comparison_of_explicit_dates_takes_them_as_given_even_when_they_run_past_today() -> None:
    march = DateRange(D("2026-03-01"), D("2026-03-31"))
    assert comparison(march, D("2026-03-15")) == (march, DateRange(D("2026-02-01"), D("2026-02-28")))


@given(today=st.dates(date(1950, 1, 1), date(2900, 12, 31)), period=st.sampled_from(["this_month", "this_year"]))
def test_a_period_under_way_is_compared_up_to_today_with_days_of_the_period_before_only(
    today: date, period: str
) -> None:
    now, then = comparison(named_period(period, today), today)
    assert now.start is not None and then.start is not None and then.end is not None
    assert now.end == today and then.start <= then.end < now.start
    before = named_period("last_month" if period == "this_month" else "last_year", today)
    assert before.start == then.start and before.end is not None and then.end <= before.end
    # the same days: up to the same day of the month (the last one when today is a month's last day, or
    # when the month before is shorter), in the month before or the same month of the year before
    month_before = Month.of(then.end)
    assert month_before == (Month.of(today).plus(-1) if period == "this_month" else Month(today.year - 1, today.month))
    last_day = today.day == Month.of(today).days or today.day >= month_before.days
    assert then.end.day == (month_before.days if last_day else today.day)


# --- months -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03", Month(2026, 3)),
        ("1900-01", Month(1900, 1)),
        ("2999-12", Month(2999, 12)),
        (" 2026-12 ", Month(2026, 12)),
    ],
)
def test_a_month_written_yyyy_mm_is_accepted(text: str, expected: Month) -> None:
    assert Month.parse(text) == expected
    assert str(Month.parse(text)) == text.strip()


def test_a_month_parses_to_itself() -> None:
    assert Month.parse(Month(2026, 3)) == Month(2026, 3)


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("2026-13", "01 to 12"),
        ("2026-00", "01 to 12"),
        ("1899-12", "1900 to 2999"),
        ("3000-01", "1900 to 2999"),
        ("2026-3", "YYYY-MM"),
        ("26-03", "YYYY-MM"),
        ("2026/03", "YYYY-MM"),
        ("2026-03-01", "YYYY-MM"),
        ("March 2026", "YYYY-MM"),
        ("\uff12\uff10\uff12\uff16-03", "YYYY-MM"),  # full-width digits
        ("", "YYYY-MM"),
        (202603, "YYYY-MM"),
        (None, "YYYY-MM"),
    ],
)
def test_anything_else_is_refused_saying_what_a_month_looks_like(value: object, hint: str) -> None:
    with pytest.raises(InvalidInput, match=hint):
        Month.parse(value)


@pytest.mark.parametrize(
    ("month", "first", "last"),
    [
        (Month(2026, 1), "2026-01-01", "2026-01-31"),
        (Month(2026, 2), "2026-02-01", "2026-02-28"),
        (Month(2028, 2), "2028-02-01", "2028-02-29"),
        (Month(2100, 2), "2100-02-01", "2100-02-28"),  # not a leap year
        (Month(2000, 2), "2000-02-01", "2000-02-29"),  # a leap year
        (Month(2026, 4), "2026-04-01", "2026-04-30"),
        (Month(2026, 12), "2026-12-01", "2026-12-31"),
    ],
)
def test_a_month_knows_its_first_and_last_day(month: Month, first: str, last: str) -> None:
    assert (month.first_day, month.last_day) == (D(first), D(last))


@pytest.mark.parametrize(
    ("month", "steps", "expected"),
    [
        (Month(2026, 1), -1, Month(2025, 12)),
        (Month(2026, 12), 1, Month(2027, 1)),
        (Month(2026, 3), -14, Month(2025, 1)),
        (Month(2026, 3), 0, Month(2026, 3)),
        (Month(2026, 3), 22, Month(2028, 1)),
    ],
)
def test_months_step_across_year_ends(month: Month, steps: int, expected: Month) -> None:
    assert month.plus(steps) == expected
    assert expected.index() - month.index() == steps


# --- spans of months ----------------------------------------------------------------------------------------

HORIZON = 1000  # beyond every finite end the strategies produce: stands for "every month on"


def _contains(span: MonthSpan, month: int) -> bool:
    start, end = span
    return start <= month and (end is None or month <= end)


@st.composite
def spans(draw: st.DrawFn) -> MonthSpan:
    start = draw(st.integers(0, 20))
    end = draw(st.one_of(st.none(), st.integers(start, 20)))
    return (start, end)


@given(span=spans(), cut=spans())
def test_subtract_and_overlap_partition_the_months_of_a_span(span: MonthSpan, cut: MonthSpan) -> None:
    remains = subtract(span, cut)
    common = overlap(span, cut)
    pieces = [*remains, *([common] if common is not None else [])]
    assert len(remains) <= 2
    for start, end in pieces:
        assert end is None or start <= end, f"empty piece {(start, end)}"
    for month in [*range(-2, 25), HORIZON]:
        inside = [piece for piece in pieces if _contains(piece, month)]
        assert len(inside) == (1 if _contains(span, month) else 0), (month, pieces)
        if common is not None and _contains(common, month):
            assert _contains(cut, month)
        if any(_contains(piece, month) for piece in remains):
            assert not _contains(cut, month)


@given(a=spans(), b=spans())
def test_overlap_is_symmetric(a: MonthSpan, b: MonthSpan) -> None:
    assert overlap(a, b) == overlap(b, a)


@pytest.mark.parametrize(
    ("span", "cut", "remains", "common"),
    [
        ((3, 8), (5, 6), [(3, 4), (7, 8)], (5, 6)),  # a hole in the middle
        ((3, None), (5, 6), [(3, 4), (7, None)], (5, 6)),  # an open span keeps its open tail
        ((3, 8), (5, None), [(3, 4)], (5, 8)),  # an open cut takes everything from it on
        ((3, 8), (0, None), [], (3, 8)),
        ((3, 8), (9, 12), [(3, 8)], None),  # no overlap: untouched
        ((3, 8), (0, 2), [(3, 8)], None),
        ((3, 3), (3, 3), [], (3, 3)),
        ((3, None), (3, None), [], (3, None)),
    ],
)
def test_subtract_and_overlap_at_their_edges(
    span: MonthSpan, cut: MonthSpan, remains: list[MonthSpan], common: MonthSpan | None
) -> None:
    assert subtract(span, cut) == remains
    assert overlap(span, cut) == common
