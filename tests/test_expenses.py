"""Recording, reading, changing and deleting expenses through the MCP protocol, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from mcp import Client
from sqlalchemy import Engine, text

from budget_mcp.config import Settings
from budget_mcp.server import build_server

from conftest import make_settings
from helpers import as_stored, fails, ok, seed_categories, snapshot

pytestmark = pytest.mark.anyio


async def test_create_expense_returns_the_stored_expense_with_exact_amount(client: Client, db: Engine) -> None:
    await seed_categories(client, "Food")
    expense = await ok(
        client,
        "create_expense",
        amount="12.30",
        description="Lunch",
        category="Food",
        spent_on="2026-03-14",
        merchant="Cafe Rio",
        notes="with Sam",
    )
    assert expense["amount"] == "12.30"
    assert expense["currency"] == "USD"
    assert expense["category"] == "Food"
    assert expense["spent_on"] == "2026-03-14"
    assert (expense["description"], expense["merchant"], expense["notes"]) == (
        "Lunch",
        "Cafe Rio",
        "with Sam",
    )
    with db.connect() as connection:
        stored = connection.execute(text("SELECT amount_minor, currency FROM expenses")).one()
    assert tuple(stored) == (1230, "USD")


async def test_amount_is_accepted_as_a_json_number_or_a_decimal_string(client: Client) -> None:
    await seed_categories(client, "Food")
    as_number = await ok(client, "create_expense", amount=0.1, description="gum", category="Food")
    as_string = await ok(client, "create_expense", amount="7", description="tea", category="Food")
    assert (as_number["amount"], as_string["amount"]) == ("0.10", "7.00")


async def test_spent_on_defaults_to_today_in_the_configured_timezone(client: Client) -> None:
    await seed_categories(client, "Food")
    expense = await ok(client, "create_expense", amount=1, description="gum", category="Food")
    assert expense["spent_on"] == datetime.now(UTC).date().isoformat()


async def test_timestamps_are_timezone_aware_utc(client: Client) -> None:
    await seed_categories(client, "Food")
    expense = await ok(client, "create_expense", amount=1, description="gum", category="Food")
    created = datetime.fromisoformat(expense["created_at"])
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60


async def test_currency_follows_its_minor_digits(client: Client) -> None:
    await seed_categories(client, "Travel")
    yen = await ok(client, "create_expense", amount=500, description="train", category="Travel", currency="jpy")
    dinar = await ok(client, "create_expense", amount="1.25", description="tea", category="Travel", currency="KWD")
    assert (yen["amount"], yen["currency"]) == ("500", "JPY")
    assert (dinar["amount"], dinar["currency"]) == ("1.250", "KWD")


async def test_default_currency_comes_from_the_settings(database_url: str) -> None:
    async with Client(build_server(make_settings(database_url, default_currency="EUR"))) as client:
        await seed_categories(client, "Food")
        expense = await ok(client, "create_expense", amount="3.50", description="bread", category="Food")
    assert expense["currency"] == "EUR"


async def test_categories_are_matched_case_insensitively(client: Client) -> None:
    await seed_categories(client, "Groceries")
    expense = await ok(client, "create_expense", amount=5, description="milk", category="gROCERIES")
    assert expense["category"] == "Groceries"
    message = await fails(client, "create_category", name="GROCERIES")
    assert "already exists" in message


async def test_unknown_category_is_refused_with_the_closest_names(client: Client, db: Engine) -> None:
    await seed_categories(client, "Food", "Rent", "Fuel")
    before = snapshot(db)
    message = await fails(client, "create_expense", amount=5, description="x", category="fod")
    assert "no category 'fod'" in message
    assert "Food" in message
    assert snapshot(db) == before


async def test_unknown_category_without_any_categories_says_how_to_create_one(client: Client) -> None:
    message = await fails(client, "create_expense", amount=5, description="x", category="food")
    assert "create_category" in message


async def test_sql_injection_and_unicode_text_is_stored_and_returned_literally(client: Client) -> None:
    name = "Café ☕ 'x'; DROP TABLE expenses;--"
    await seed_categories(client, name)
    description = "Robert'); DROP TABLE users;-- 🍕 naïve 日本語"
    created = await ok(
        client,
        "create_expense",
        amount=1,
        description=description,
        category=name,
        merchant='O\'Brien "&" Sons',
    )
    fetched = await ok(client, "get_expense", expense_id=created["id"])
    assert fetched["description"] == description
    assert fetched["category"] == name
    assert fetched["merchant"] == 'O\'Brien "&" Sons'
    listed = await ok(client, "list_categories")
    assert [c["name"] for c in listed["categories"]] == [name]


async def test_get_expense_returns_what_create_expense_stored(client: Client) -> None:
    await seed_categories(client, "Food")
    created = await ok(client, "create_expense", amount="4.20", description="bagel", category="Food")
    assert await ok(client, "get_expense", expense_id=created["id"]) == as_stored(created)


async def test_update_expense_changes_only_the_given_fields(client: Client) -> None:
    await seed_categories(client, "Food", "Fun")
    created = await ok(
        client,
        "create_expense",
        amount="4.20",
        description="bagel",
        category="Food",
        merchant="Deli",
        notes="n",
    )
    updated = await ok(
        client, "update_expense", expense_id=created["id"], amount="5", category="fun", spent_on="2026-01-02"
    )
    assert (updated["amount"], updated["category"], updated["spent_on"]) == ("5.00", "Fun", "2026-01-02")
    assert (updated["description"], updated["merchant"], updated["notes"]) == ("bagel", "Deli", "n")
    assert updated["created_at"] == created["created_at"]
    assert updated["updated_at"] >= created["updated_at"]
    assert await ok(client, "get_expense", expense_id=created["id"]) == as_stored(updated)


async def test_update_expense_can_clear_optional_fields(client: Client) -> None:
    await seed_categories(client, "Food")
    created = await ok(
        client, "create_expense", amount=1, description="tea", category="Food", merchant="Deli", notes="n"
    )
    updated = await ok(client, "update_expense", expense_id=created["id"], clear=["merchant", "notes"])
    assert (updated["merchant"], updated["notes"]) == (None, None)


async def test_update_expense_with_only_a_currency_keeps_the_number(client: Client) -> None:
    await seed_categories(client, "Food")
    created = await ok(client, "create_expense", amount="12.30", description="tea", category="Food")
    updated = await ok(client, "update_expense", expense_id=created["id"], currency="EUR")
    assert (updated["amount"], updated["currency"]) == ("12.30", "EUR")


async def test_update_expense_refuses_an_amount_the_new_currency_cannot_hold(client: Client, db: Engine) -> None:
    await seed_categories(client, "Food")
    created = await ok(client, "create_expense", amount="12.30", description="tea", category="Food")
    before = snapshot(db)
    message = await fails(client, "update_expense", expense_id=created["id"], currency="JPY")
    assert "JPY allows no decimals" in message
    assert snapshot(db) == before


async def test_update_expense_without_changes_is_refused(client: Client) -> None:
    await seed_categories(client, "Food")
    created = await ok(client, "create_expense", amount=1, description="tea", category="Food")
    assert "nothing to update" in await fails(client, "update_expense", expense_id=created["id"])


async def test_delete_expense_removes_it_and_returns_what_was_deleted(client: Client) -> None:
    await seed_categories(client, "Food")
    created = await ok(client, "create_expense", amount=1, description="tea", category="Food")
    deleted = await ok(client, "delete_expense", expense_id=created["id"])
    assert deleted["expense"] == as_stored(created)
    assert deleted["dry_run"] is False and deleted["change_id"] is not None
    message = await fails(client, "get_expense", expense_id=created["id"])
    assert f"was removed by change {deleted['change_id']} (delete_expense)" in message
    assert "was removed by change" in await fails(client, "delete_expense", expense_id=created["id"])


async def test_a_user_never_sees_or_changes_another_users_expenses(database_url: str, db: Engine) -> None:
    async with Client(build_server(make_settings(database_url, user="alice"))) as alice:
        await seed_categories(alice, "Food")
        mine = await ok(alice, "create_expense", amount="9.99", description="pizza", category="Food")
    async with Client(build_server(make_settings(database_url, user="bob"))) as bob:
        before = snapshot(db)
        for tool, extra in [("get_expense", {}), ("update_expense", {"amount": 1}), ("delete_expense", {})]:
            message = await fails(bob, tool, expense_id=mine["id"], **extra)
            assert message.endswith(f"no expense with id {mine['id']}; search_expenses finds expenses and their ids")
        assert "no category 'Food'" in await fails(bob, "query_expenses_by_category", category="Food")
        assert (await ok(bob, "list_categories"))["categories"] == []
        summary = await ok(bob, "summarize_spending", start_date="2000-01-01", end_date="2100-12-31")
        assert summary["count"] == 0 and summary["groups"] == []
        await seed_categories(bob, "Food")  # the same name is free for another user
        assert snapshot(db)["expenses"] == before["expenses"]


async def test_list_categories_counts_expenses_and_pages(client: Client) -> None:
    await seed_categories(client, "b", "A", "c")
    await ok(client, "create_expense", amount=1, description="x", category="a")
    await ok(client, "create_expense", amount=1, description="y", category="a")
    first = await ok(client, "list_categories", limit=2)
    assert first["categories"] == [{"name": "A", "expense_count": 2}, {"name": "b", "expense_count": 0}]
    assert first["count"] == 3 and first["next_cursor"]
    rest = await ok(client, "list_categories", limit=2, cursor=first["next_cursor"])
    assert rest["categories"] == [{"name": "c", "expense_count": 0}]
    assert rest["next_cursor"] is None


async def test_the_first_start_creates_the_sqlite_file_and_its_folder(tmp_path: object) -> None:
    path = tmp_path / "new" / "folder" / "budget.sqlite3"  # type: ignore[operator]
    settings: Settings = make_settings(f"sqlite:///{path}")
    async with Client(build_server(settings)) as client:
        await seed_categories(client, "Food")
    assert path.exists()


def test_dates_are_returned_as_days_not_timestamps() -> None:
    assert date.fromisoformat("2026-03-14").isoformat() == "2026-03-14"
