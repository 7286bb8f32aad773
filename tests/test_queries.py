"""Answering "where did my money go?": category listings with totals, summaries, paging and exactness."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from mcp import Client
from sqlalchemy import Engine, event, text

from budget_mcp import service
from budget_mcp.config import Settings
from budget_mcp.db import make_engine, make_session_factory

from helpers import ok, seed_categories

pytestmark = pytest.mark.anyio


async def _spend(client: Client, amount: str, category: str, day: str, **extra: str) -> dict[str, object]:
    return await ok(
        client,
        "create_expense",
        amount=amount,
        description=f"{category} on {day}",
        category=category,
        spent_on=day,
        **extra,
    )


async def test_query_by_category_lists_newest_first_with_totals_of_every_match(client: Client) -> None:
    await seed_categories(client, "Food", "Rent")
    for day, amount in [("2026-01-05", "1.10"), ("2026-01-07", "2.20"), ("2026-01-06", "3.30")]:
        await _spend(client, amount, "Food", day)
    await _spend(client, "900", "Rent", "2026-01-01")
    page = await ok(client, "query_expenses_by_category", category="food", limit=2)
    assert page["category"] == "Food"
    assert [e["spent_on"] for e in page["expenses"]] == ["2026-01-07", "2026-01-06"]
    assert page["count"] == 3
    assert page["totals"] == [{"currency": "USD", "total": "6.60", "count": 3}]
    assert page["next_cursor"]


async def test_query_by_category_pages_through_everything_exactly_once(client: Client) -> None:
    await seed_categories(client, "Food")
    created = [await _spend(client, "1", "Food", f"2026-02-{day:02d}") for day in (3, 1, 2, 2, 2, 5, 4)]
    seen: list[int] = []
    cursor = None
    while True:
        args = {"category": "Food", "limit": 3} | ({"cursor": cursor} if cursor else {})
        page = await ok(client, "query_expenses_by_category", **args)
        seen += [e["id"] for e in page["expenses"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(e["id"] for e in created)  # type: ignore[misc]
    assert len(seen) == len(set(seen)) == len(created)


async def test_query_by_category_respects_an_inclusive_date_range(client: Client) -> None:
    await seed_categories(client, "Food")
    for day in ("2026-03-01", "2026-03-15", "2026-03-31", "2026-04-01"):
        await _spend(client, "1", "Food", day)
    page = await ok(
        client, "query_expenses_by_category", category="Food", start_date="2026-03-01", end_date="2026-03-31"
    )
    assert [e["spent_on"] for e in page["expenses"]] == ["2026-03-31", "2026-03-15", "2026-03-01"]
    assert (page["start_date"], page["end_date"], page["count"]) == ("2026-03-01", "2026-03-31", 3)
    assert page["next_cursor"] is None


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        ({"start_date": "2026-03-15"}, ["2026-04-01", "2026-03-31", "2026-03-15"]),
        ({"end_date": "2026-03-15"}, ["2026-03-15", "2026-03-01"]),
        ({}, ["2026-04-01", "2026-03-31", "2026-03-15", "2026-03-01"]),
    ],
)
async def test_query_by_category_pages_one_by_one_through_a_range_open_at_either_end(
    client: Client, dates: dict[str, str], expected: list[str]
) -> None:
    await seed_categories(client, "Food", "Rent")
    for day in ("2026-03-01", "2026-03-15", "2026-03-31", "2026-04-01"):
        await _spend(client, "1", "Food", day)
        await _spend(client, "5", "Rent", day)
    seen: list[str] = []
    cursor = None
    while True:
        page = await ok(client, "query_expenses_by_category", category="Food", limit=1, cursor=cursor, **dates)
        assert (page["count"], page["totals"]) == (
            len(expected),
            [{"currency": "USD", "total": f"{len(expected)}.00", "count": len(expected)}],
        )
        seen += [e["spent_on"] for e in page["expenses"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


async def test_totals_are_per_currency_and_never_mixed(client: Client) -> None:
    await seed_categories(client, "Travel")
    await _spend(client, "10.50", "Travel", "2026-05-01")
    await _spend(client, "2.25", "Travel", "2026-05-02", currency="EUR")
    await _spend(client, "1000", "Travel", "2026-05-03", currency="JPY")
    await _spend(client, "0.25", "Travel", "2026-05-04", currency="EUR")
    page = await ok(client, "query_expenses_by_category", category="Travel")
    assert page["totals"] == [
        {"currency": "EUR", "total": "2.50", "count": 2},
        {"currency": "JPY", "total": "1000", "count": 1},
        {"currency": "USD", "total": "10.50", "count": 1},
    ]
    summary = await ok(client, "summarize_spending", start_date="2026-05-01", end_date="2026-05-31")
    assert summary["totals"] == page["totals"]
    assert {(g["key"], g["currency"], g["total"]) for g in summary["groups"]} == {
        ("Travel", "EUR", "2.50"),
        ("Travel", "JPY", "1000"),
        ("Travel", "USD", "10.50"),
    }
    assert all(g["share_percent"] == "100.00" for g in summary["groups"])


async def test_summarize_by_category_orders_largest_first_with_shares(client: Client) -> None:
    await seed_categories(client, "Food", "Rent", "Fun")
    await _spend(client, "25", "Food", "2026-06-01")
    await _spend(client, "25", "Food", "2026-06-02")
    await _spend(client, "150", "Rent", "2026-06-01")
    await _spend(client, "50", "Fun", "2026-06-30")
    await _spend(client, "999", "Fun", "2026-07-01")  # outside the period
    summary = await ok(client, "summarize_spending", start_date="2026-06-01", end_date="2026-06-30")
    assert [(g["key"], g["total"], g["count"], g["share_percent"]) for g in summary["groups"]] == [
        ("Rent", "150.00", 1, "60.00"),
        ("Food", "50.00", 2, "20.00"),
        ("Fun", "50.00", 1, "20.00"),
    ]
    assert summary["totals"] == [{"currency": "USD", "total": "250.00", "count": 4}]
    assert (summary["count"], summary["group_count"], summary["next_cursor"]) == (4, 3, None)


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("month", [("2026-01", "3.00"), ("2026-02", "4.00")]),
        # Saturday 2026-01-31 and Sunday 2026-02-01 share the ISO week that starts Monday 2026-01-26.
        ("week", [("2025-12-29", "1.00"), ("2026-01-26", "6.00")]),
        ("day", [("2026-01-01", "1.00"), ("2026-01-31", "2.00"), ("2026-02-01", "4.00")]),
    ],
)
async def test_summarize_by_period_gives_one_row_per_period_in_date_order(
    client: Client, group_by: str, expected: list[tuple[str, str]]
) -> None:
    await seed_categories(client, "Food")
    await _spend(client, "1", "Food", "2026-01-01")  # a Thursday: its week starts Monday 2025-12-29
    await _spend(client, "2", "Food", "2026-01-31")
    await _spend(client, "4", "Food", "2026-02-01")
    summary = await ok(client, "summarize_spending", start_date="2026-01-01", end_date="2026-02-28", group_by=group_by)
    assert [(g["key"], g["total"]) for g in summary["groups"]] == expected


async def test_summarize_by_merchant_keeps_expenses_without_one_under_null(client: Client) -> None:
    await seed_categories(client, "Food")
    await _spend(client, "5", "Food", "2026-01-01", merchant="Deli")
    await _spend(client, "7", "Food", "2026-01-02", merchant="Deli")
    await _spend(client, "3", "Food", "2026-01-03")
    summary = await ok(
        client, "summarize_spending", start_date="2026-01-01", end_date="2026-01-31", group_by="merchant"
    )
    assert [(g["key"], g["total"], g["count"]) for g in summary["groups"]] == [
        ("Deli", "12.00", 2),
        (None, "3.00", 1),
    ]


async def test_summarize_pages_groups_and_keeps_grand_totals_on_every_page(client: Client) -> None:
    names = [f"c{i:02d}" for i in range(7)]
    await seed_categories(client, *names)
    for i, name in enumerate(names):
        await _spend(client, str(i + 1), name, "2026-08-01")
    keys: list[str] = []
    cursor = None
    pages = 0
    while True:
        args = {"start_date": "2026-08-01", "end_date": "2026-08-31", "limit": 3} | (
            {"cursor": cursor} if cursor else {}
        )
        summary = await ok(client, "summarize_spending", **args)
        pages += 1
        assert summary["totals"] == [{"currency": "USD", "total": "28.00", "count": 7}]
        assert summary["group_count"] == 7
        keys += [g["key"] for g in summary["groups"]]
        cursor = summary["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert keys == list(reversed(names))


async def test_a_summary_whose_groups_fit_on_one_page_reads_the_expenses_once(
    client: Client, settings: Settings
) -> None:
    await seed_categories(client, "Food", "Rent")
    await _spend(client, "12.30", "Food", "2026-08-02")
    await _spend(client, "7", "Food", "2026-08-03", currency="EUR")
    await _spend(client, "900", "Rent", "2026-08-01")
    engine = make_engine(settings.url)
    sent: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        sent.append(sql)

    caller = service.Caller(user="alice", default_currency="USD", timezone=ZoneInfo("UTC"))
    try:
        with make_session_factory(engine, read_only=True).begin() as session:
            summary = service.summarize_spending(
                session,
                caller,
                start=date(2026, 8, 1),
                end=date(2026, 8, 31),
                period=None,
                group_by="category",
                limit=100,
                cursor=None,
            )
    finally:
        engine.dispose()
    assert sum("FROM expenses" in sql for sql in sent) == 1  # groups and grand totals in one pass
    assert [(t.currency, t.total, t.count) for t in summary.totals] == [("EUR", "7.00", 1), ("USD", "912.30", 2)]
    assert summary.count == 3


async def test_summarize_an_empty_period_returns_zero_groups(client: Client) -> None:
    summary = await ok(client, "summarize_spending", start_date="2030-01-01", end_date="2030-01-31")
    assert (summary["groups"], summary["totals"], summary["count"], summary["next_cursor"]) == (
        [],
        [],
        0,
        None,
    )


async def test_many_small_amounts_sum_exactly(client: Client, db: Engine) -> None:
    await seed_categories(client, "Food")
    await _spend(client, "0.10", "Food", "2026-09-01")
    await _spend(client, "0.20", "Food", "2026-09-01")
    summary = await ok(client, "summarize_spending", start_date="2026-09-01", end_date="2026-09-01")
    assert summary["totals"][0]["total"] == "0.30"
    for _ in range(98):
        await _spend(client, "0.10", "Food", "2026-09-02")
    summary = await ok(client, "summarize_spending", start_date="2026-09-01", end_date="2026-09-30", group_by="day")
    assert summary["totals"] == [{"currency": "USD", "total": "10.10", "count": 100}]
    assert [(g["key"], g["total"]) for g in summary["groups"]] == [
        ("2026-09-01", "0.30"),
        ("2026-09-02", "9.80"),
    ]
    with db.connect() as connection:
        independent = connection.execute(text("SELECT SUM(amount_minor) FROM expenses")).scalar_one()
    assert Decimal(summary["totals"][0]["total"]) == Decimal(int(independent)) / 100
