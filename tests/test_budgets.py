"""Monthly budgets: setting and removing limits over spans of months, rollover (also across a year
boundary), the month's status with pace, paging, dry runs, refusals, and the budget resource."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client
from sqlalchemy import Engine

from budget_mcp.config import Settings

from conftest import make_settings
from helpers import client_at, fails, ok, seed_categories, snapshot

pytestmark = pytest.mark.anyio

NOW = "2026-01-15T12:00:00+00:00"  # mid-January 2026: 15 of 31 days have begun


async def _spend(client: Client, amount: str, category: str, day: str, currency: str = "USD") -> None:
    await ok(
        client,
        "create_expense",
        amount=amount,
        description=f"{category} on {day}",
        category=category,
        spent_on=day,
        currency=currency,
    )


async def _status(client: Client, month: str | None = None, **arguments: Any) -> dict[str, Any]:
    return await ok(client, "budget_status", **({"month": month} if month else {}), **arguments)


async def _line(client: Client, month: str, category: str = "Food") -> dict[str, Any] | None:
    """The category's budget line in a month, or None when the month has no budget for it."""
    lines = [line for line in (await _status(client, month))["budgets"] if line["category"] == category]
    assert len(lines) <= 1
    return lines[0] if lines else None


async def _limits(client: Client, months: list[str], category: str = "Food") -> list[str | None]:
    """Each month's own limit for the category, in order (None: no budget that month)."""
    found = [await _line(client, month, category) for month in months]
    return [line["limit"] if line else None for line in found]


def _span(
    from_month: str,
    through_month: str | None,
    amount: str,
    currency: str = "USD",
    rollover: bool = False,
    category: str = "Food",
) -> dict[str, Any]:
    return {
        "category": category,
        "from_month": from_month,
        "through_month": through_month,
        "amount": amount,
        "currency": currency,
        "rollover": rollover,
    }


def _numbers(line: dict[str, Any]) -> tuple[str | None, ...]:
    keys = ("limit", "carried_over", "available", "spent", "remaining", "percent_used")
    return tuple(line[key] for key in keys)


# --- set_budget -----------------------------------------------------------------------------------------


async def test_set_budget_defaults_to_this_month_in_the_default_currency_and_answers_exact_amounts(
    settings: Settings,
) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Travel")
        change = await ok(client, "set_budget", category="food", amount=400)
        assert change["category"] == "Food"
        assert (change["from_month"], change["through_month"]) == ("2026-01", "2026-01")
        assert change["budget"] == _span("2026-01", "2026-01", "400.00")
        assert change["replaced"] == []
        assert isinstance(change["change_id"], int) and change["dry_run"] is False

        assert await _limits(client, ["2025-12", "2026-01", "2026-02"]) == [None, "400.00", None]

        pounds = await ok(client, "set_budget", category="Food", amount=12.3, month="2026-02", currency="gbp")
        assert pounds["budget"] == _span("2026-02", "2026-02", "12.30", currency="GBP")

        yen = await ok(client, "set_budget", category="Travel", amount="50000", month="2026-03", currency="JPY")
        assert yen["budget"] == _span("2026-03", "2026-03", "50000", currency="JPY", category="Travel")
        travel = await _line(client, "2026-03", "Travel")
        assert travel is not None
        assert _numbers(travel) == ("50000", "0", "50000", "0", "50000", "0.00")
        assert travel["currency"] == "JPY"


async def test_a_range_covers_each_month_through_the_last_and_ongoing_covers_every_month_on(
    settings: Settings,
) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Rent")
        ranged = await ok(client, "set_budget", category="Food", amount="250", month="2026-02", through_month="2026-04")
        assert ranged["budget"] == _span("2026-02", "2026-04", "250.00")
        ongoing = await ok(client, "set_budget", category="Rent", amount="1200", month="2026-03", ongoing=True)
        assert (ongoing["from_month"], ongoing["through_month"]) == ("2026-03", None)
        assert ongoing["budget"]["through_month"] is None

        months = ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2031-12"]
        assert await _limits(client, months) == [None, "250.00", "250.00", "250.00", None, None]
        assert await _limits(client, months, "Rent") == [None, None, "1200.00", "1200.00", "1200.00", "1200.00"]


async def test_a_new_limit_inside_an_ongoing_span_cuts_the_old_span_around_it(settings: Settings, db: Engine) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        await ok(client, "set_budget", category="Food", amount="300", month="2026-01", ongoing=True)
        inside = await ok(client, "set_budget", category="Food", amount="500", month="2026-03", through_month="2026-04")
        assert inside["replaced"] == [_span("2026-01", None, "300.00")]
        assert inside["budget"] == _span("2026-03", "2026-04", "500.00")
        months = ["2025-12", "2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2027-06"]
        assert await _limits(client, months) == [None, "300.00", "300.00", "500.00", "500.00", "300.00", "300.00"]
        assert len(snapshot(db)["budgets"]) == 3

        # One limit from January on replaces all three pieces and leaves a single span.
        everything = await ok(client, "set_budget", category="Food", amount="350", month="2026-01", ongoing=True)
        assert everything["replaced"] == [
            _span("2026-01", "2026-02", "300.00"),
            _span("2026-03", "2026-04", "500.00"),
            _span("2026-05", None, "300.00"),
        ]
        assert await _limits(client, months) == [None] + ["350.00"] * 6
        assert len(snapshot(db)["budgets"]) == 1

        # Setting the same limit again is harmless: it replaces itself.
        again = await ok(client, "set_budget", category="Food", amount="350", month="2026-01", ongoing=True)
        assert again["replaced"] == [again["budget"]]
        assert len(snapshot(db)["budgets"]) == 1


# --- delete_budget --------------------------------------------------------------------------------------


async def test_delete_budget_removes_one_month_a_range_or_every_month_on_and_keeps_the_rest(
    settings: Settings,
) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        await ok(client, "set_budget", category="Food", amount="250", month="2026-01", ongoing=True)

        one = await ok(client, "delete_budget", category="food", month="2026-03")
        assert (one["category"], one["from_month"], one["through_month"]) == ("Food", "2026-03", "2026-03")
        assert one["budget"] is None
        assert one["replaced"] == [_span("2026-01", None, "250.00")]
        assert isinstance(one["change_id"], int)

        ranged = await ok(client, "delete_budget", category="Food", month="2026-05", through_month="2026-06")
        assert ranged["replaced"] == [_span("2026-04", None, "250.00")]

        rest = await ok(client, "delete_budget", category="Food", month="2026-08", ongoing=True)
        assert (rest["from_month"], rest["through_month"]) == ("2026-08", None)
        assert rest["replaced"] == [_span("2026-07", None, "250.00")]

        months = [f"2026-{m:02d}" for m in range(1, 10)] + ["2030-01"]
        kept = "250.00"
        assert await _limits(client, months) == [kept, kept, None, kept, None, None, kept, None, None, None]

        this_month = await ok(client, "delete_budget", category="Food")  # default: the current month
        assert (this_month["from_month"], this_month["through_month"]) == ("2026-01", "2026-01")
        assert this_month["replaced"] == [_span("2026-01", "2026-02", "250.00")]
        assert await _limits(client, ["2026-01", "2026-02"]) == [None, "250.00"]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"month": "2026-03"}, "'Food' has no budget in 2026-03"),
        ({"month": "2026-03", "through_month": "2026-05"}, "'Food' has no budget in 2026-03 to 2026-05;"),
        ({"month": "2026-03", "ongoing": True}, "'Food' has no budget in 2026-03 or later;"),
        ({"category": "Rent"}, "'Rent' has no budget in 2026-01"),
    ],
)
async def test_deleting_where_there_is_no_budget_is_refused_with_a_hint_and_changes_nothing(
    settings: Settings, db: Engine, where: dict[str, Any], expected: str
) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Rent")
        await ok(client, "set_budget", category="Food", amount="100", month="2026-01", through_month="2026-02")
        before = snapshot(db)
        message = await fails(client, "delete_budget", **({"category": "Food"} | where))
        assert expected in message
        assert "budget_status" in message
        assert snapshot(db) == before


# --- dry runs -------------------------------------------------------------------------------------------


async def test_dry_runs_show_what_would_change_and_change_nothing(settings: Settings, db: Engine) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        await ok(client, "set_budget", category="Food", amount="300", month="2026-01", ongoing=True)
        before = snapshot(db)
        status_before = await _status(client, "2026-03")

        preview = await ok(client, "set_budget", category="Food", amount="80", month="2026-03", dry_run=True)
        assert (preview["change_id"], preview["dry_run"]) == (None, True)
        assert preview["budget"] == _span("2026-03", "2026-03", "80.00")
        assert preview["replaced"] == [_span("2026-01", None, "300.00")]
        assert snapshot(db) == before

        removal = await ok(client, "delete_budget", category="Food", month="2026-02", ongoing=True, dry_run=True)
        assert (removal["change_id"], removal["dry_run"], removal["budget"]) == (None, True, None)
        assert removal["replaced"] == [_span("2026-01", None, "300.00")]
        assert snapshot(db) == before
        assert await _status(client, "2026-03") == status_before

        # The real call does exactly what the preview said.
        real = await ok(client, "set_budget", category="Food", amount="80", month="2026-03")
        assert (real["budget"], real["replaced"]) == (preview["budget"], preview["replaced"])
        assert isinstance(real["change_id"], int)


# --- rollover -------------------------------------------------------------------------------------------


async def test_unspent_and_overspent_money_carries_forward_month_after_month(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Fun")
        await ok(client, "set_budget", category="Food", amount="100", month="2026-03", ongoing=True, rollover=True)
        await _spend(client, "60", "Food", "2026-03-31")
        await _spend(client, "999", "Food", "2026-03-10", currency="EUR")  # another currency: not this budget's
        await _spend(client, "999", "Fun", "2026-03-10")  # another category
        await _spend(client, "200", "Food", "2026-04-01")
        await _spend(client, "50", "Food", "2026-05-20")

        march, april, may, june = [await _line(client, m) for m in ("2026-03", "2026-04", "2026-05", "2026-06")]
        assert march and april and may and june
        assert _numbers(march) == ("100.00", "0.00", "100.00", "60.00", "40.00", "60.00")
        assert _numbers(april) == ("100.00", "40.00", "140.00", "200.00", "-60.00", "142.86")
        assert april["over"] is True and april["rollover"] is True
        assert _numbers(may) == ("100.00", "-60.00", "40.00", "50.00", "-10.00", "125.00")
        assert may["over"] is True
        assert _numbers(june) == ("100.00", "-10.00", "90.00", "0.00", "90.00", "0.00")
        assert june["over"] is False

        # Removing July leaves a gap: August starts afresh.
        await ok(client, "delete_budget", category="Food", month="2026-07")
        august = await _line(client, "2026-08")
        assert august is not None
        assert (august["carried_over"], august["available"]) == ("0.00", "100.00")


async def test_overspending_that_eats_the_whole_limit_leaves_no_percentage(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        await ok(client, "set_budget", category="Food", amount="100", month="2026-03", ongoing=True, rollover=True)
        await _spend(client, "250", "Food", "2026-03-05")
        await _spend(client, "10", "Food", "2026-04-05")
        april = await _line(client, "2026-04")
        assert april is not None
        assert _numbers(april) == ("100.00", "-150.00", "-50.00", "10.00", "-60.00", None)
        assert april["over"] is True


async def test_unspent_money_rolls_over_into_january_across_the_year_boundary(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        await ok(
            client,
            "set_budget",
            category="Food",
            amount="200",
            month="2025-11",
            through_month="2025-12",
            rollover=True,
        )
        await ok(client, "set_budget", category="Food", amount="250", month="2026-01", rollover=True)
        await _spend(client, "150.20", "Food", "2025-11-30")
        await _spend(client, "180.50", "Food", "2025-12-31")
        await _spend(client, "100", "Food", "2026-01-01")
        await _spend(client, "7", "Food", "2025-10-31")  # before the chain: never counted

        november, december = await _line(client, "2025-11"), await _line(client, "2025-12")
        assert november and december
        assert _numbers(november) == ("200.00", "0.00", "200.00", "150.20", "49.80", "75.10")
        assert _numbers(december) == ("200.00", "49.80", "249.80", "180.50", "69.30", "72.26")
        assert november["pace"] is None and december["pace"] is None

        status = await _status(client)
        assert status["month"] == "2026-01"
        assert status["month_elapsed_percent"] == "48.39"
        [january] = status["budgets"]
        assert _numbers(january) == ("250.00", "69.30", "319.30", "100.00", "219.30", "31.32")
        assert january["over"] is False
        # 319.30 x 15/31 = 154.50 exactly; 100.00 x 31/15 = 206.666...
        assert january["pace"] == {"expected_by_today": "154.50", "projected_month_end": "206.67", "on_track": True}
        assert status["totals"] == [
            {"currency": "USD", "available": "319.30", "spent": "100.00", "remaining": "219.30"}
        ]


@pytest.mark.parametrize(
    "breaker",
    [
        pytest.param({"amount": "100", "rollover": False}, id="without-rollover"),
        pytest.param({"amount": "100", "rollover": True, "currency": "EUR"}, id="in-another-currency"),
        pytest.param({"amount": "100", "rollover": True, "through_month": "2025-09"}, id="after-a-gap"),
    ],
)
async def test_the_rollover_chain_stops_at_a_month_without_rollover_in_another_currency_or_without_budget(
    settings: Settings, breaker: dict[str, Any]
) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        # September and October 2025 (or only September: October then has no budget) break the chain ...
        await ok(client, "set_budget", category="Food", month="2025-09", **({"through_month": "2025-10"} | breaker))
        # ... so only November and December roll into January.
        await ok(
            client,
            "set_budget",
            category="Food",
            amount="100",
            month="2025-11",
            through_month="2026-01",
            rollover=True,
        )
        for day in ("2025-09-15", "2025-10-15"):
            await _spend(client, "10", "Food", day)
            await _spend(client, "10", "Food", day, currency="EUR")
        await _spend(client, "70", "Food", "2025-11-15")
        await _spend(client, "50", "Food", "2025-12-15")

        november, december, january = [await _line(client, m) for m in ("2025-11", "2025-12", "2026-01")]
        assert november and december and january
        assert (november["carried_over"], december["carried_over"], january["carried_over"]) == (
            "0.00",
            "30.00",
            "80.00",
        )
        assert january["available"] == "180.00"

        # A month in another currency starts a chain of its own.
        await ok(client, "set_budget", category="Food", amount="90", month="2026-02", currency="EUR", rollover=True)
        february = await _line(client, "2026-02")
        assert february is not None
        assert (february["currency"], february["carried_over"], february["available"]) == ("EUR", "0.00", "90.00")


# --- budget_status --------------------------------------------------------------------------------------


async def test_budget_status_reports_each_budget_with_totals_and_unbudgeted_spending(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Rent", "Travel", "Fun")
        await ok(client, "set_budget", category="Food", amount="400", month="2026-03")
        await ok(client, "set_budget", category="Rent", amount="1200", month="2026-01", ongoing=True)
        await ok(client, "set_budget", category="Travel", amount="50000", month="2026-03", currency="JPY")
        await _spend(client, "100.40", "Food", "2026-03-01")
        await _spend(client, "20", "Food", "2026-03-31")
        await _spend(client, "30", "Food", "2026-03-12", currency="EUR")  # not the budget's currency
        await _spend(client, "5", "Food", "2026-02-28")  # other months
        await _spend(client, "5", "Food", "2026-04-01")
        await _spend(client, "1300", "Rent", "2026-03-02")
        await _spend(client, "12000", "Travel", "2026-03-20", currency="JPY")
        await _spend(client, "45.25", "Fun", "2026-03-03")  # no budget

        status = await _status(client, "2026-03")
        assert (status["month"], status["start_date"], status["end_date"]) == ("2026-03", "2026-03-01", "2026-03-31")
        assert status["month_elapsed_percent"] is None
        assert (status["budget_count"], status["next_cursor"]) == (3, None)
        lines = {line["category"]: line for line in status["budgets"]}
        assert list(lines) == ["Food", "Rent", "Travel"]
        assert _numbers(lines["Food"]) == ("400.00", "0.00", "400.00", "120.40", "279.60", "30.10")
        assert _numbers(lines["Rent"]) == ("1200.00", "0.00", "1200.00", "1300.00", "-100.00", "108.33")
        assert _numbers(lines["Travel"]) == ("50000", "0", "50000", "12000", "38000", "24.00")
        assert [(line["currency"], line["over"], line["rollover"]) for line in lines.values()] == [
            ("USD", False, False),
            ("USD", True, False),
            ("JPY", False, False),
        ]
        assert all(line["pace"] is None for line in lines.values())
        assert status["totals"] == [
            {"currency": "JPY", "available": "50000", "spent": "12000", "remaining": "38000"},
            {"currency": "USD", "available": "1600.00", "spent": "1420.40", "remaining": "179.60"},
        ]
        assert status["spending"] == [
            {"currency": "EUR", "total": "30.00", "count": 1},
            {"currency": "JPY", "total": "12000", "count": 1},
            {"currency": "USD", "total": "1465.65", "count": 4},
        ]
        assert sorted(status["unbudgeted"], key=lambda u: u["category"]) == [
            {"category": "Food", "currency": "EUR", "total": "30.00", "count": 1},
            {"category": "Fun", "currency": "USD", "total": "45.25", "count": 1},
        ]
        assert status["unbudgeted_count"] == 2


async def test_budget_status_pages_through_every_budget_exactly_once(settings: Settings) -> None:
    names = [f"Cat {i}" for i in range(7)]
    async with client_at(settings, NOW) as client:
        await seed_categories(client, *names)
        for i, name in enumerate(names):
            await ok(client, "set_budget", category=name, amount=str(10 * (i + 1)))
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            status = await _status(client, limit=3, **({"cursor": cursor} if cursor else {}))
            pages += 1
            assert status["budget_count"] == 7
            assert status["totals"] == [
                {"currency": "USD", "available": "280.00", "spent": "0.00", "remaining": "280.00"}
            ]
            seen += [line["category"] for line in status["budgets"]]
            cursor = status["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert seen == names

        first = await _status(client, limit=3)
        message = await fails(client, "budget_status", month="2026-02", cursor=first["next_cursor"])
        assert "cursor is not valid here" in message


async def test_a_month_without_budgets_shows_its_spending_as_unbudgeted(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        fresh = await _status(client)  # nothing stored for this user yet
        assert (fresh["month"], fresh["month_elapsed_percent"]) == ("2026-01", "48.39")
        assert (fresh["budgets"], fresh["totals"], fresh["spending"], fresh["unbudgeted"]) == ([], [], [], [])
        assert (fresh["budget_count"], fresh["unbudgeted_count"], fresh["next_cursor"]) == (0, 0, None)

        await seed_categories(client, "Food")
        await ok(client, "set_budget", category="Food", amount="100", month="2026-02")
        await _spend(client, "12.50", "Food", "2026-01-03")
        await _spend(client, "7.50", "Food", "2026-01-04")
        status = await _status(client, "2026-01")
        assert (status["budgets"], status["totals"], status["budget_count"]) == ([], [], 0)
        assert status["spending"] == [{"currency": "USD", "total": "20.00", "count": 2}]
        assert status["unbudgeted"] == [{"category": "Food", "currency": "USD", "total": "20.00", "count": 2}]
        assert status["unbudgeted_count"] == 1


@pytest.mark.parametrize("month", ["2025-12", "2026-02", "2025-01", "2027-01"])
async def test_only_the_current_month_has_a_pace(settings: Settings, month: str) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food")
        await ok(client, "set_budget", category="Food", amount="100", month="2025-01", ongoing=True)
        await _spend(client, "10", "Food", f"{month}-01")
        status = await _status(client, month)
        assert status["month_elapsed_percent"] is None
        [line] = status["budgets"]
        assert (line["spent"], line["pace"]) == ("10.00", None)
        current = await _status(client)
        assert current["budgets"][0]["pace"] is not None


async def test_pace_compares_spending_so_far_with_an_even_spread_of_the_month(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Rent", "Travel", "Fun")
        await ok(client, "set_budget", category="Food", amount="310", month="2026-01")
        await ok(client, "set_budget", category="Rent", amount="1000", month="2026-01")
        await ok(client, "set_budget", category="Travel", amount="10000", month="2026-01", currency="JPY")
        await ok(client, "set_budget", category="Fun", amount="50", month="2026-01")
        await _spend(client, "160", "Food", "2026-01-15")
        await _spend(client, "400", "Rent", "2026-01-01")
        await _spend(client, "5000", "Travel", "2026-01-10", currency="JPY")

        status = await _status(client)
        assert (status["month"], status["month_elapsed_percent"]) == ("2026-01", "48.39")
        paces = {line["category"]: line["pace"] for line in status["budgets"]}
        assert paces == {
            # 310.00 x 15/31 = 150.00 exactly; 160.00 x 31/15 = 330.666...
            "Food": {"expected_by_today": "150.00", "projected_month_end": "330.67", "on_track": False},
            # 1000.00 x 15/31 = 483.870...; 400.00 x 31/15 = 826.666...
            "Rent": {"expected_by_today": "483.87", "projected_month_end": "826.67", "on_track": True},
            # 10000 x 15/31 = 4838.7...; 5000 x 31/15 = 10333.3...
            "Travel": {"expected_by_today": "4839", "projected_month_end": "10333", "on_track": False},
            # 50.00 x 15/31 = 24.193...; nothing spent yet
            "Fun": {"expected_by_today": "24.19", "projected_month_end": "0.00", "on_track": True},
        }


async def test_the_current_month_is_the_month_of_today_in_the_configured_time_zone(database_url: str) -> None:
    auckland = make_settings(database_url, timezone="Pacific/Auckland")
    # 12:00 UTC on 31 January is 01:00 on 1 February in Auckland (UTC+13 in summer).
    async with client_at(auckland, "2026-01-31T12:00:00+00:00") as client:
        await seed_categories(client, "Food")
        change = await ok(client, "set_budget", category="Food", amount="280")
        assert (change["from_month"], change["through_month"]) == ("2026-02", "2026-02")
        await _spend(client, "5", "Food", "2026-02-01")

        status = await _status(client)
        assert (status["month"], status["month_elapsed_percent"]) == ("2026-02", "3.57")  # 1 of 28 days
        [line] = status["budgets"]
        assert line["pace"] == {"expected_by_today": "10.00", "projected_month_end": "140.00", "on_track": True}
        january = await _status(client, "2026-01")
        assert (january["month_elapsed_percent"], january["budgets"]) == (None, [])

        resource = await client.read_resource("budget://months/current/budget")
        assert json.loads(resource.contents[0].text)["month"] == "2026-02"  # type: ignore[union-attr]

        removed = await ok(client, "delete_budget", category="Food")
        assert removed["from_month"] == "2026-02"


# --- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("set_budget", {"category": "Fod", "amount": "10"}, ["no category 'Fod'", "did you mean Food?"]),
        ("delete_budget", {"category": "Rnt"}, ["no category 'Rnt'", "did you mean Rent?"]),
        (
            "set_budget",
            {"category": "Food", "amount": "10", "month": "2026-03", "through_month": "2026-02"},
            ["through_month 2026-02 is before month 2026-03"],
        ),
        (
            "delete_budget",
            {"category": "Food", "month": "2026-03", "through_month": "2026-02"},
            ["through_month 2026-02 is before month 2026-03"],
        ),
        (
            "set_budget",
            {"category": "Food", "amount": "10", "through_month": "2026-04", "ongoing": True},
            ["either through_month or ongoing=true, not both"],
        ),
        (
            "set_budget",
            {"category": "Food", "amount": "10", "month": "2026-01", "through_month": "2036-01"},
            ["at most 120 months"],
        ),
        ("set_budget", {"category": "Food", "amount": "10", "month": "2026-13"}, ["month number must be 01 to 12"]),
        ("set_budget", {"category": "Food", "amount": "10", "month": "26-01"}, ["YYYY-MM"]),
        ("set_budget", {"category": "Food", "amount": "10", "month": "2026-1"}, ["YYYY-MM"]),
        ("delete_budget", {"category": "Food", "through_month": "2026-00"}, ["month number must be 01 to 12"]),
        ("budget_status", {"month": "2026-1"}, ["YYYY-MM"]),
        ("set_budget", {"category": "Food", "amount": 0}, ["amount", "greater than 0"]),
        ("set_budget", {"category": "Food", "amount": "-5"}, ["amount", "greater than 0"]),
        ("set_budget", {"category": "Food", "amount": "10.001"}, ["too many decimals", "USD allows at most 2"]),
        (
            "set_budget",
            {"category": "Food", "amount": "100.5", "currency": "JPY"},
            ["too many decimals", "JPY allows no decimals"],
        ),
        ("set_budget", {"category": "Food", "amount": "10", "currency": "XYZ"}, ["unknown currency"]),
    ],
)
async def test_bad_budget_calls_are_refused_with_a_hint_and_change_nothing(
    settings: Settings, db: Engine, tool: str, arguments: dict[str, Any], expected: list[str]
) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Rent")
        await ok(client, "set_budget", category="Food", amount="100", month="2026-01", ongoing=True)
        before = snapshot(db)
        message = await fails(client, tool, **arguments)
        for fragment in expected:
            assert fragment in message
        assert snapshot(db) == before


# --- the budget resource --------------------------------------------------------------------------------


async def test_the_budget_resource_holds_the_same_numbers_as_budget_status(settings: Settings) -> None:
    async with client_at(settings, NOW) as client:
        await seed_categories(client, "Food", "Fun")
        await ok(client, "set_budget", category="Food", amount="200", month="2025-12", ongoing=True, rollover=True)
        await _spend(client, "150", "Food", "2025-12-24")
        await _spend(client, "30.10", "Food", "2026-01-02")
        await _spend(client, "8", "Fun", "2026-01-03")

        for uri, month in [
            ("budget://months/2026-01/budget", "2026-01"),
            ("budget://months/current/budget", None),
            ("budget://months/2025-12/budget", "2025-12"),
        ]:
            resource = await client.read_resource(uri, cache_mode="bypass")
            content = resource.contents[0]
            assert content.mime_type == "application/json"
            assert json.loads(content.text) == await _status(client, month)  # type: ignore[union-attr]

        january = json.loads((await client.read_resource("budget://months/current/budget")).contents[0].text)  # type: ignore[union-attr]
        assert january["month"] == "2026-01"
        assert _numbers(january["budgets"][0]) == ("200.00", "50.00", "250.00", "30.10", "219.90", "12.04")
        assert january["unbudgeted"] == [{"category": "Fun", "currency": "USD", "total": "8.00", "count": 1}]
