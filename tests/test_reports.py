"""Reports through the MCP protocol: named periods and the dates they resolve to (in the user's time zone),
spending trends, period comparisons, top expenses and search, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from mcp import Client
from sqlalchemy import Engine

from budget_mcp.config import Settings
from budget_mcp.periods import RUNNING_PERIODS

from conftest import make_settings
from helpers import client_at, fails, ok, seed_categories, snapshot

pytestmark = pytest.mark.anyio

NOW = "2026-03-15T12:00:00+00:00"  # a Sunday; "today" is 2026-03-15 in UTC
PERIODS = {
    "this_month": ("2026-03-01", "2026-03-31"),
    "last_month": ("2026-02-01", "2026-02-28"),
    "this_year": ("2026-01-01", "2026-12-31"),
    "last_year": ("2025-01-01", "2025-12-31"),
    "last_7_days": ("2026-03-09", "2026-03-15"),
    "last_30_days": ("2026-02-14", "2026-03-15"),
    "year_to_date": ("2026-01-01", "2026-03-15"),
}
# Every day on which some period starts or ends, and the day on either side of it.
EDGE_DAYS = [
    "2024-12-31", "2025-01-01", "2025-12-31", "2026-01-01", "2026-02-13", "2026-02-14", "2026-02-28",
    "2026-03-01", "2026-03-08", "2026-03-09", "2026-03-15", "2026-03-16", "2026-03-31", "2026-04-01",
]  # fmt: skip
RANGE_TOOLS = ["summarize_spending", "query_expenses_by_category", "search_expenses", "top_expenses", "compare_periods"]


async def _spend(client: Client, amount: str, category: str, day: str, **extra: str) -> dict[str, Any]:
    description = extra.pop("description", f"{category} on {day}")
    return await ok(
        client, "create_expense", amount=amount, description=description, category=category, spent_on=day, **extra
    )


async def _window(client: Client, tool: str, **args: Any) -> tuple[dict[str, Any], int]:
    """The dates a range tool says it used, and how many of the one-dollar expenses it counted in them."""
    extra: dict[str, Any] = {"category": "Food"} if tool == "query_expenses_by_category" else {}
    result = await ok(client, tool, **extra, **({"limit": 100} if tool == "top_expenses" else {}), **args)
    if tool in ("summarize_spending", "query_expenses_by_category"):
        return {key: result[key] for key in ("start_date", "end_date", "period")}, result["count"]
    if tool == "compare_periods":
        return result["current"], sum(int(Decimal(t["current"])) for t in result["totals"])
    return result["period"], len(result["expenses"]) if tool == "top_expenses" else result["count"]


async def _pages(client: Client, tool: str, **args: Any) -> list[dict[str, Any]]:
    """Every page of a paged answer, following next_cursor to the end."""
    pages = [await ok(client, tool, **args)]
    while pages[-1]["next_cursor"] is not None:
        pages.append(await ok(client, tool, **args, cursor=pages[-1]["next_cursor"]))
    return pages


def _used(start: str | None, end: str | None, period: str | None = None) -> dict[str, Any]:
    return {"start_date": start, "end_date": end, "period": period}


def _seen_by(tool: str, name: str, start: str, end: str, today: str) -> tuple[str, str]:
    """The days a tool reports for a named period: compare_periods compares a period under way so far."""
    if tool == "compare_periods" and name in RUNNING_PERIODS and start <= today <= end:
        return start, today
    return start, end


# --- named periods --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", RANGE_TOOLS)
async def test_every_named_period_states_its_exact_dates_and_counts_the_days_at_its_edges(
    settings: Settings, tool: str
) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        for day in EDGE_DAYS:
            await _spend(client, "1", "Food", day)
        for name, whole in PERIODS.items():
            start, end = _seen_by(tool, name, *whole, today=NOW[:10])
            used, counted = await _window(client, tool, period=name)
            assert used == _used(start, end, name)
            assert counted == sum(start <= day <= end for day in EDGE_DAYS), name
        used, counted = await _window(client, tool, start_date="2026-02-28", end_date="2026-03-01")
        assert (used, counted) == (_used("2026-02-28", "2026-03-01"), 2)


THIS_MONTH = (_used("2026-03-01", "2026-03-31", "this_month"), 2)
SO_FAR = (_used("2026-03-01", "2026-03-15", "this_month"), 1)


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        *[(tool, THIS_MONTH) for tool in ("summarize_spending", "top_expenses")],
        ("compare_periods", SO_FAR),
        *[(tool, (_used(None, None), 4)) for tool in ("query_expenses_by_category", "search_expenses")],
    ],
)
async def test_reports_without_dates_cover_this_month_and_listings_all_time(
    settings: Settings, tool: str, expected: tuple[dict[str, Any], int]
) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        for day in ("2026-02-28", "2026-03-01", "2026-03-31", "2026-04-01"):
            await _spend(client, "1", "Food", day)
        assert await _window(client, tool) == expected


ZONES = [  # (zone, clock, today there, the UTC day, periods seen from there)
    (
        "America/Los_Angeles",  # 20:00 on 31 March
        "2026-04-01T03:00:00+00:00",
        "2026-03-31",
        "2026-04-01",
        [("this_month", "2026-03-01", "2026-03-31"), ("last_7_days", "2026-03-25", "2026-03-31")],
    ),
    (
        "Pacific/Auckland",  # 01:00 on 1 January 2026: the new year has begun
        "2025-12-31T12:00:00+00:00",
        "2026-01-01",
        "2025-12-31",
        [("this_year", "2026-01-01", "2026-12-31"), ("year_to_date", "2026-01-01", "2026-01-01")],
    ),
]


@pytest.mark.parametrize("tool", RANGE_TOOLS)
@pytest.mark.parametrize(("zone", "now", "today", "utc_day", "periods"), ZONES, ids=[z[0] for z in ZONES])
async def test_named_periods_count_from_today_in_the_users_time_zone_not_utc(
    database_url: str, tool: str, zone: str, now: str, today: str, utc_day: str, periods: list[tuple[str, str, str]]
) -> None:
    async with client_at(make_settings(database_url, timezone=zone), now) as client:
        await seed_categories(client, "Food")
        recorded = await ok(client, "create_expense", amount="1", description="today", category="Food")
        assert recorded["spent_on"] == today
        await _spend(client, "1", "Food", utc_day)
        for name, whole_start, whole_end in periods:
            start, end = _seen_by(tool, name, whole_start, whole_end, today)
            assert await _window(client, tool, period=name) == (_used(start, end, name), 1)


# --- refusals: each says how to fix the call and changes nothing ----------------------------------------

EVERY_RANGE_TOOL_REFUSES: list[tuple[dict[str, Any], list[str]]] = [
    ({"period": "this_month", "start_date": "2026-03-01"}, ["period", "start_date", "not both"]),
    ({"period": "last_month", "end_date": "2026-03-31"}, ["period", "end_date", "not both"]),
    ({"start_date": "2026-03-02", "end_date": "2026-03-01"}, ["2026-03-02", "2026-03-01", "after"]),
    ({"period": "next_month"}, ["this_month", "last_month"]),
    ({"cursor": "not-a-cursor"}, ["cursor", "next_cursor"]),
]
B_START, B_END = "baseline_start_date", "baseline_end_date"
REFUSALS: list[tuple[str, dict[str, Any], list[str]]] = [
    *[(tool, args, hints) for tool in RANGE_TOOLS for args, hints in EVERY_RANGE_TOOL_REFUSES],
    ("summarize_spending", {"start_date": "2026-03-01"}, ["start_date", "end_date"]),
    ("compare_periods", {"start_date": "2026-03-01"}, ["start_date", "end_date"]),
    ("compare_periods", {B_START: "2026-02-01"}, [B_START, B_END]),
    ("compare_periods", {"baseline_period": "last_month", B_START: "2026-02-01"}, ["baseline_period", B_START]),
    ("compare_periods", {B_START: "2026-02-02", B_END: "2026-02-01"}, [B_START, B_END, "2026-02-02"]),
    ("spending_trend", {"months": 0}, ["months", "1"]),
    ("spending_trend", {"months": 121}, ["months", "120"]),
    ("spending_trend", {"end_month": "2026-13"}, ["01 to 12"]),
    ("spending_trend", {"end_month": "March"}, ["YYYY-MM"]),
    ("spending_trend", {"category": "Fod"}, ["Food", "create_category"]),
    ("top_expenses", {"category": "Fod"}, ["Food"]),
    ("top_expenses", {"currency": "XYZ"}, ["ISO 4217"]),
    ("search_expenses", {"min_amount": "20", "max_amount": "10"}, ["min_amount", "max_amount", "swap"]),
    ("search_expenses", {"category": "Fod"}, ["Food"]),
    ("search_expenses", {"currency": "XYZ"}, ["ISO 4217"]),
    ("search_expenses", {"min_amount": "0"}, ["min_amount"]),
]


@pytest.mark.parametrize(("tool", "args", "fragments"), REFUSALS, ids=[f"{t}-{'-'.join(a)}" for t, a, _ in REFUSALS])
async def test_a_bad_report_call_is_refused_saying_how_to_fix_it_and_changes_nothing(
    settings: Settings, db: Engine, tool: str, args: dict[str, Any], fragments: list[str]
) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        await _spend(client, "1", "Food", "2026-03-01")
        before = snapshot(db)
        extra = {"category": "Food"} if tool == "query_expenses_by_category" else {}
        message = await fails(client, tool, **extra, **args)
        assert snapshot(db) == before
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"
    assert "Traceback" not in message and "SELECT" not in message


# --- spending_trend ---------------------------------------------------------------------------------------


async def test_trend_gives_one_zero_filled_row_per_month_and_one_series_per_currency(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        for amount, day, currency in [
            ("10.00", "2025-10-01", "USD"),
            ("5.50", "2025-12-31", "USD"),
            ("4.50", "2026-03-31", "USD"),
            ("3.00", "2026-01-15", "EUR"),
            ("99", "2025-09-30", "USD"),  # before the six months
            ("99", "2026-04-01", "EUR"),  # after them
        ]:
            await _spend(client, amount, "Food", day, currency=currency)
        trend = await ok(client, "spending_trend")
    dates = {"start_month": "2025-10", "end_month": "2026-03", "start_date": "2025-10-01", "end_date": "2026-03-31"}
    assert {key: trend[key] for key in dates} == dates and trend["category"] is None
    months = ["2025-10", "2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]
    eur, usd = trend["series"]
    assert eur["currency"] == "EUR" and usd["currency"] == "USD"
    assert [(m["month"], m["total"], m["count"]) for m in usd["months"]] == list(
        zip(months, ["10.00", "0.00", "5.50", "0.00", "0.00", "4.50"], [1, 0, 1, 0, 0, 1], strict=True)
    )
    assert [(m["month"], m["total"]) for m in eur["months"]] == list(
        zip(months, ["0.00", "0.00", "0.00", "3.00", "0.00", "0.00"], strict=True)
    )
    assert (usd["total"], usd["average_per_month"]) == ("20.00", "3.33")  # 20.00 / 6 = 3.333...
    assert (eur["total"], eur["average_per_month"]) == ("3.00", "0.50")


async def test_trend_filters_by_category_and_ends_at_the_month_asked_for(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Rent")
        await _spend(client, "1000", "Food", "2025-11-30", currency="JPY")
        await _spend(client, "500", "Food", "2026-01-01", currency="JPY")
        await _spend(client, "700", "Rent", "2025-12-01", currency="JPY")
        await _spend(client, "800", "Food", "2026-02-01", currency="JPY")  # after end_month
        trend = await ok(client, "spending_trend", months=3, end_month="2026-01", category="FOOD")
    assert (trend["start_month"], trend["end_month"], trend["category"]) == ("2025-11", "2026-01", "Food")
    (jpy,) = trend["series"]
    assert [m["total"] for m in jpy["months"]] == ["1000", "0", "500"]
    assert (jpy["currency"], jpy["total"], jpy["average_per_month"]) == ("JPY", "1500", "500")


@pytest.mark.parametrize("months", [1, 120])
async def test_trend_without_spending_is_one_series_of_zeros_in_the_default_currency(
    settings: Settings, months: int
) -> None:
    async with client_at(settings, NOW) as client:
        trend = await ok(client, "spending_trend", months=months)
    (usd,) = trend["series"]
    assert usd["currency"] == "USD" and len(usd["months"]) == months
    assert {m["total"] for m in usd["months"]} == {"0.00"}
    assert (usd["total"], usd["average_per_month"], trend["end_month"]) == ("0.00", "0.00", "2026-03")
    assert usd["months"][0]["month"] == ("2026-03" if months == 1 else "2016-04")


# --- compare_periods --------------------------------------------------------------------------------------


async def test_compare_puts_this_month_so_far_beside_the_same_days_of_last_month_largest_change_first(
    settings: Settings,
) -> None:
    async with client_at(settings, NOW) as client:  # the 15th
        await seed_categories(client, "Food", "Rent", "Fun", "Travel", "Gifts")
        for amount, category, day in [
            ("100", "Food", "2026-02-01"), ("150", "Food", "2026-03-15"),
            ("1000", "Rent", "2026-02-01"), ("1000", "Rent", "2026-03-01"),
            ("20", "Fun", "2026-03-15"),
            ("30", "Travel", "2026-02-10"),
            ("30", "Gifts", "2026-02-11"), ("20", "Gifts", "2026-03-11"),
            ("999", "Fun", "2026-01-31"), ("999", "Food", "2026-04-01"),  # outside both months
            ("500", "Rent", "2026-02-16"), ("500", "Food", "2026-03-31"),  # later in the month than today
        ]:  # fmt: skip
            await _spend(client, amount, category, day)
        result = await ok(client, "compare_periods")
    assert result["current"] == _used("2026-03-01", "2026-03-15", "this_month")
    assert (result["baseline"]["start_date"], result["baseline"]["end_date"]) == ("2026-02-01", "2026-02-15")
    assert [(r["category"], r["baseline"], r["current"], r["change"], r["change_percent"]) for r in result["rows"]] == [
        ("Food", "100.00", "150.00", "50.00", "50.00"),
        ("Travel", "30.00", "0.00", "-30.00", "-100.00"),
        ("Fun", "0.00", "20.00", "20.00", None),  # nothing to compare with: no percentage
        ("Gifts", "30.00", "20.00", "-10.00", "-33.33"),
        ("Rent", "1000.00", "1000.00", "0.00", "0.00"),
    ]
    assert result["totals"] == [
        {"currency": "USD", "baseline": "1160.00", "current": "1190.00", "change": "30.00", "change_percent": "2.59"}
    ]
    assert (result["row_count"], result["next_cursor"]) == (5, None)


async def test_compare_keeps_currencies_apart(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        await _spend(client, "10", "Food", "2026-02-05")
        await _spend(client, "12.50", "Food", "2026-03-05")
        await _spend(client, "2000", "Food", "2026-03-05", currency="JPY")
        result = await ok(client, "compare_periods", period="this_month")
    assert sorted((r["currency"], r["baseline"], r["current"], r["change_percent"]) for r in result["rows"]) == [
        ("JPY", "0", "2000", None),
        ("USD", "10.00", "12.50", "25.00"),
    ]
    assert result["totals"] == [
        {"currency": "JPY", "baseline": "0", "current": "2000", "change": "2000", "change_percent": None},
        {"currency": "USD", "baseline": "10.00", "current": "12.50", "change": "2.50", "change_percent": "25.00"},
    ]


COMPARED_DAYS = ("2025-03-01", "2025-03-31", "2025-12-31", "2026-03-08", "2026-03-09", "2026-03-15")


@pytest.mark.parametrize(
    ("args", "current", "baseline"),
    [
        ({"period": "this_year"}, _used("2026-01-01", "2026-03-15", "this_year"), ("2025-01-01", "2025-03-15")),
        ({"period": "last_year"}, _used("2025-01-01", "2025-12-31", "last_year"), ("2024-01-01", "2024-12-31")),
        ({"period": "last_7_days"}, _used("2026-03-09", "2026-03-15", "last_7_days"), ("2026-03-02", "2026-03-08")),
        (
            {"start_date": "2026-03-01", "end_date": "2026-03-15", "baseline_period": "last_year"},
            _used("2026-03-01", "2026-03-15"),
            ("2025-01-01", "2025-12-31", "last_year"),
        ),
        (
            {"period": "this_month", B_START: "2025-03-01", B_END: "2025-03-31"},
            _used("2026-03-01", "2026-03-31", "this_month"),
            ("2025-03-01", "2025-03-31"),
        ),
    ],
)
async def test_compare_states_both_periods_it_used(
    settings: Settings, args: dict[str, Any], current: dict[str, Any], baseline: tuple[str, ...]
) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        for day in COMPARED_DAYS:
            await _spend(client, "1", "Food", day)
        result = await ok(client, "compare_periods", **args)
    assert result["current"] == current
    assert (result["baseline"]["start_date"], result["baseline"]["end_date"]) == baseline[:2]
    if len(baseline) == 3:
        assert result["baseline"]["period"] == baseline[2]
    counted = sum(baseline[0] <= day <= baseline[1] for day in COMPARED_DAYS)
    assert result["totals"][0]["baseline"] == f"{counted}.00"


async def test_compare_pages_through_every_row_once_with_totals_on_each_page(settings: Settings) -> None:
    names = [f"c{i}" for i in range(5)]
    async with client_at(settings, NOW) as client:
        await seed_categories(client, *names)
        for i, name in enumerate(names):
            await _spend(client, str(i + 1), name, "2026-03-02")
            await _spend(client, "1", name, "2026-02-02")
        whole = await ok(client, "compare_periods")
        pages = await _pages(client, "compare_periods", limit=2)
    assert len(pages) == 3
    assert all((page["row_count"], page["totals"]) == (5, whole["totals"]) for page in pages)
    rows = [row for page in pages for row in page["rows"]]
    assert rows == whole["rows"]
    assert [r["category"] for r in rows] == ["c4", "c3", "c2", "c1", "c0"]


# --- top_expenses -----------------------------------------------------------------------------------------


async def test_top_expenses_are_largest_first_ties_newest_first_with_merchants_by_total(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Fun")
        seed = [("5", "Deli"), ("20", "Deli"), ("20", "Shop"), ("7", "Shop"), ("20", "Cafe"), ("3", None)]
        made = [await _spend(client, a, "Food", "2026-03-02", **({"merchant": m} if m else {})) for a, m in seed]
        await _spend(client, "500", "Food", "2026-04-01", merchant="Cafe")  # next month
        top = await ok(client, "top_expenses", limit=4)
    ids = [e["id"] for e in made]
    assert [e["id"] for e in top["expenses"]] == [ids[4], ids[2], ids[1], ids[3]]
    merchants = [(m["merchant"], m["total"], m["count"]) for m in top["merchants"]]
    assert merchants == [("Shop", "27.00", 2), ("Deli", "25.00", 2), ("Cafe", "20.00", 1)]
    assert (top["currency"], top["category"], top["other_currencies"]) == ("USD", None, [])
    assert top["next_cursor"]


async def test_top_expenses_rank_in_the_periods_main_currency_and_list_the_others(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        await _spend(client, "900", "Food", "2026-03-01")
        for amount in ("1", "2", "3"):
            await _spend(client, amount, "Food", "2026-03-03", currency="EUR")
        await _spend(client, "5000", "Food", "2026-03-04", currency="JPY")
        top = await ok(client, "top_expenses")
        assert top["currency"] == "EUR"  # most expenses, not the largest amount
        assert [e["amount"] for e in top["expenses"]] == ["3.00", "2.00", "1.00"]
        others = [(c["currency"], c["total"], c["count"]) for c in top["other_currencies"]]
        assert others == [("JPY", "5000", 1), ("USD", "900.00", 1)]
        usd = await ok(client, "top_expenses", currency="usd")
        assert (usd["currency"], [e["amount"] for e in usd["expenses"]]) == ("USD", ["900.00"])
        assert [c["currency"] for c in usd["other_currencies"]] == ["EUR", "JPY"]
        await _spend(client, "1", "Food", "2026-03-05")
        await _spend(client, "1", "Food", "2026-03-05")
        assert (await ok(client, "top_expenses"))["currency"] == "USD"  # three each: the default currency wins


async def test_top_expenses_of_one_category(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Rent")
        await _spend(client, "1000", "Rent", "2026-03-01", merchant="Landlord")
        await _spend(client, "12", "Food", "2026-03-02", merchant="Deli")
        await _spend(client, "8", "Food", "2026-03-03", merchant="Deli")
        top = await ok(client, "top_expenses", category="food")
    assert top["category"] == "Food"
    assert [e["amount"] for e in top["expenses"]] == ["12.00", "8.00"]
    assert top["merchants"] == [{"merchant": "Deli", "total": "20.00", "count": 2}]


async def test_top_expenses_page_in_rank_order_without_repeats(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        made = [await _spend(client, a, "Food", "2026-03-05") for a in ("4", "9", "4", "1", "9", "4", "2")]
        pages = await _pages(client, "top_expenses", limit=3)
    assert len(pages) == 3
    seen = [(Decimal(e["amount"]), e["id"]) for page in pages for e in page["expenses"]]
    assert seen == sorted(((Decimal(e["amount"]), e["id"]) for e in made), reverse=True)


# --- search_expenses --------------------------------------------------------------------------------------


async def test_search_text_finds_description_merchant_and_notes_in_any_case(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        hits = [
            await _spend(client, "1", "Food", "2026-03-01", description="Coffee beans"),
            await _spend(client, "1", "Food", "2026-03-02", description="Cup", merchant="THE COFFEE CORNER"),
            await _spend(client, "1", "Food", "2026-03-03", description="Snack", notes="with\nmorning coffee"),
        ]
        await _spend(client, "1", "Food", "2026-03-04", description="Tea", merchant="Teahouse", notes="no cof-fee")
        for text in ("coffee", "COFFEE", "cOfFeE"):
            found = await ok(client, "search_expenses", text=text)
            assert [e["id"] for e in found["expenses"]] == [e["id"] for e in reversed(hits)]
            assert found["count"] == 3


LOOKALIKES = ["50% off", "500 off", "snake_case", "snakeXcase", "a/b", "ab", "back\\slash", "backslash"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("%", "50% off"),
        ("0%", "50% off"),
        ("_", "snake_case"),
        ("e_c", "snake_case"),
        ("/", "a/b"),
        ("\\", "back\\slash"),
    ],
)
async def test_search_text_is_matched_literally_never_as_a_wildcard(
    settings: Settings, text: str, expected: str
) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        for description in LOOKALIKES:
            await _spend(client, "1", "Food", "2026-03-01", description=description)
        found = await ok(client, "search_expenses", text=text)
    assert [e["description"] for e in found["expenses"]] == [expected]


async def test_search_by_category_and_exact_merchant_in_any_case(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Fun")
        deli = await _spend(client, "1", "Food", "2026-03-01", merchant="Deli")
        loud = await _spend(client, "2", "Fun", "2026-03-02", merchant="DELI")
        await _spend(client, "3", "Food", "2026-03-03", merchant="Deli Express")
        await _spend(client, "4", "Food", "2026-03-04")
        by_merchant = await ok(client, "search_expenses", merchant="deli")
        assert [e["id"] for e in by_merchant["expenses"]] == [loud["id"], deli["id"]]
        both = await ok(client, "search_expenses", merchant="dElI", category="FOOD")
        assert [e["id"] for e in both["expenses"]] == [deli["id"]]
        assert (await ok(client, "search_expenses", category="fun"))["count"] == 1


@pytest.mark.parametrize(
    "search",
    [{"text": "CAFÉ"}, {"merchant": "CAFÉ"}, {"text": "café"}, {"merchant": "café"}],
    ids=["text-upper", "merchant-upper", "text-lower", "merchant-lower"],
)
async def test_search_ignores_the_case_of_accented_letters_too(settings: Settings, search: dict[str, str]) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        lower = await _spend(client, "1", "Food", "2026-03-01", description="Latte", merchant="café")
        upper = await _spend(client, "1", "Food", "2026-03-02", description="Latte", merchant="CAFÉ")
        await _spend(client, "1", "Food", "2026-03-03", description="Latte", merchant="Cafe")
        found = await ok(client, "search_expenses", **search)
    assert [e["id"] for e in found["expenses"]] == [upper["id"], lower["id"]]


AMOUNTS = [
    *(("USD", a) for a in ("9.99", "10.00", "10.50", "10.51", "11.00")),
    *(("JPY", a) for a in ("9", "10", "11", "12")),
]


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({"min_amount": 10}, {"USD": ["10.00", "10.50", "10.51", "11.00"], "JPY": ["10", "11", "12"]}),
        ({"min_amount": "10.00"}, {"USD": ["10.00", "10.50", "10.51", "11.00"], "JPY": ["10", "11", "12"]}),
        ({"max_amount": "10.5"}, {"USD": ["9.99", "10.00", "10.50"], "JPY": ["9", "10"]}),
        ({"min_amount": "10.5", "max_amount": "10.5"}, {"USD": ["10.50"], "JPY": []}),
        ({"min_amount": 10, "max_amount": 11}, {"USD": ["10.00", "10.50", "10.51", "11.00"], "JPY": ["10", "11"]}),
        ({"min_amount": "10.01", "max_amount": "10.99"}, {"USD": ["10.50", "10.51"], "JPY": []}),
        ({"min_amount": 11, "currency": "jpy"}, {"JPY": ["11", "12"]}),
        ({"currency": "USD"}, {"USD": ["9.99", "10.00", "10.50", "10.51", "11.00"]}),
    ],
)
async def test_search_amount_bounds_are_inclusive_in_every_currency(
    settings: Settings, bounds: dict[str, Any], expected: dict[str, list[str]]
) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        for currency, amount in AMOUNTS:
            await _spend(client, amount, "Food", "2026-03-01", currency=currency)
        found = await ok(client, "search_expenses", **bounds)
    got: dict[str, list[str]] = {currency: [] for currency in expected}
    for e in found["expenses"]:
        got.setdefault(e["currency"], []).append(e["amount"])
    assert {c: sorted(a, key=Decimal) for c, a in got.items()} == expected
    assert [t["currency"] for t in found["totals"]] == sorted(c for c, a in expected.items() if a)


async def test_search_combines_filters_and_counts_every_match_not_just_the_page(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Fun")
        for day in ("2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"):
            await _spend(client, "10.10", "Food", day, description="lunch", merchant="Deli")
        await _spend(client, "700", "Food", "2026-03-06", description="Lunch", merchant="deli", currency="JPY")
        for amount, category, day, description, merchant in [  # each misses exactly one filter
            ("10.10", "Fun", "2026-03-01", "lunch", "Deli"),
            ("10.10", "Food", "2026-02-28", "lunch", "Deli"),
            ("10.10", "Food", "2026-03-01", "dinner", "Deli"),
            ("10.10", "Food", "2026-03-01", "lunch", "Bistro"),
            ("1.00", "Food", "2026-03-01", "lunch", "Deli"),
        ]:
            await _spend(client, amount, category, day, description=description, merchant=merchant)
        filters = {"text": "LUNCH", "category": "food", "merchant": "DELI", "min_amount": 5, "period": "this_month"}
        page = await ok(client, "search_expenses", limit=2, **filters)
    assert [e["spent_on"] for e in page["expenses"]] == ["2026-03-06", "2026-03-05"]
    assert page["count"] == 6
    assert [(t["currency"], t["total"], t["count"]) for t in page["totals"]] == [("JPY", "700", 1), ("USD", "50.50", 5)]
    assert page["period"] == _used("2026-03-01", "2026-03-31", "this_month")
    assert page["next_cursor"]


async def test_search_pages_see_every_row_once_while_rows_are_inserted_between_pages(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        days = ["2026-03-10", "2026-03-05", "2026-03-10", "2026-03-01", "2026-03-05", "2026-02-20", "2026-03-12"]
        existing = {(await _spend(client, "1", "Food", day))["id"] for day in days}
        seen: list[tuple[str, int]] = []
        cursor = None
        while True:
            page = await ok(client, "search_expenses", text="food", limit=3, **({"cursor": cursor} if cursor else {}))
            seen += [(e["spent_on"], e["id"]) for e in page["expenses"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            # a newer expense, one on the day the page ended at, and an older one than any seen so far
            for day in ("2026-03-14", seen[-1][0], "2026-01-15"):
                await _spend(client, "1", "Food", day)
    ids = [expense_id for _, expense_id in seen]
    assert len(ids) == len(set(ids)), "a row was shown twice"
    assert existing <= set(ids), f"rows skipped: {existing - set(ids)}"
    assert seen == sorted(seen, reverse=True), "pages must continue newest first"


CURSOR_MISUSE: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("search_expenses", {"text": "lunch"}, {"text": "dinner"}),
    ("search_expenses", {"category": "Food"}, {"category": "Rent"}),
    ("search_expenses", {"merchant": "Deli"}, {"merchant": "Bistro"}),
    ("search_expenses", {"currency": "USD"}, {"currency": "EUR"}),
    ("search_expenses", {"min_amount": 1}, {"min_amount": 2}),
    ("search_expenses", {"max_amount": 100}, {"max_amount": 50}),
    ("search_expenses", {"period": "this_month"}, {"period": "last_month"}),
    ("search_expenses", {}, {"start_date": "2026-03-01"}),
    ("top_expenses", {"currency": "USD"}, {"currency": "EUR"}),
    ("top_expenses", {}, {"category": "Food"}),
    ("top_expenses", {"period": "this_month"}, {"period": "last_month"}),
    ("compare_periods", {}, {"period": "last_month"}),
    ("summarize_spending", {"period": "this_month"}, {"period": "last_month"}),
    ("query_expenses_by_category", {"category": "Food"}, {"category": "Rent"}),
]


@pytest.mark.parametrize(
    ("tool", "first", "second"), CURSOR_MISUSE, ids=[f"{t}-{'-'.join(s)}" for t, _, s in CURSOR_MISUSE]
)
async def test_a_cursor_is_refused_by_a_query_with_other_filters(
    settings: Settings, db: Engine, tool: str, first: dict[str, Any], second: dict[str, Any]
) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Rent")
        for day in ("2026-02-10", "2026-03-10"):
            for category in ("Food", "Rent"):
                for amount, currency in (("10", "USD"), ("20", "USD"), ("30", "EUR"), ("40", "EUR")):
                    extra = {"description": "lunch", "merchant": "Deli", "currency": currency}
                    await _spend(client, amount, category, day, **extra)
        page = await ok(client, tool, limit=1, **first)
        assert page["next_cursor"], "the first call must leave more to page through"
        before = snapshot(db)
        message = await fails(client, tool, limit=1, cursor=page["next_cursor"], **second)
        assert snapshot(db) == before
    assert "cursor" in message and "next_cursor" in message
