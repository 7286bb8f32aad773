"""The audit log, undo and dry runs, and the category and bulk operations they cover, through the MCP
protocol on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mcp import Client
from sqlalchemy import Engine, text

from budget_mcp.db import Base
from budget_mcp.server import build_server

from conftest import make_settings
from helpers import LUNCH, fails, ok, seed_categories, snapshot

pytestmark = pytest.mark.anyio

DATA_TABLES = ("users", "categories", "expenses", "budgets")


def rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The data tables without ``updated_at``: an undo sets that anew, and the audit tables only grow.
    Equal answers mean every row is back exactly as it was."""
    full = snapshot(engine)
    kept: dict[str, list[tuple[Any, ...]]] = {}
    for name in DATA_TABLES:
        columns = [column.key for column in Base.metadata.tables[name].columns]
        keep = [i for i, column in enumerate(columns) if column != "updated_at"]
        kept[name] = [tuple(row[i] for i in keep) for row in full[name]]
    return kept


async def changes(client: Client) -> list[dict[str, Any]]:
    return (await ok(client, "list_changes", limit=100))["changes"]


async def latest_change(client: Client) -> dict[str, Any]:
    return (await ok(client, "list_changes", limit=1))["changes"][0]


async def seed_household(client: Client) -> dict[str, int]:
    """Three categories; expenses in two; budgets on all three (Rent holds no expense)."""
    await seed_categories(client, "Food", "Fun", "Rent")
    lunch = await ok(client, "create_expense", **LUNCH)
    film = await ok(client, "create_expense", amount="9.50", description="Film", category="Fun", spent_on="2026-03-20")
    bus = await ok(client, "create_expense", amount="2.75", description="Bus", category="Fun", spent_on="2026-02-02")
    await ok(client, "set_budget", category="Food", amount=300, month="2026-01", through_month="2026-12")
    await ok(client, "set_budget", category="Fun", amount=50, month="2026-03", ongoing=True, rollover=True)
    await ok(client, "set_budget", category="Rent", amount=1200, month="2026-01", through_month="2026-06")
    return {"lunch": lunch["id"], "film": film["id"], "bus": bus["id"]}


def budget_spans(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT c.name, b.start_month, b.end_month, b.amount_minor, b.rollover FROM budgets b "
                "JOIN categories c ON c.id = b.category_id ORDER BY c.name, b.start_month"
            )
        )
        return [
            (name, str(start), None if end is None else str(end), amount, bool(rollover))
            for name, start, end, amount, rollover in found
        ]


# Every kind of change, made on the seeded household: (tool, arguments).
Change = Callable[[dict[str, int]], tuple[str, dict[str, Any]]]
CHANGES: dict[str, Change] = {
    "create_expense": lambda ids: (
        "create_expense",
        {"amount": "4.20", "description": "Bagel", "category": "food", "spent_on": "2026-03-15"},
    ),
    "update_expense": lambda ids: (
        "update_expense",
        {
            "expense_id": ids["lunch"],
            "amount": "13",
            "currency": "EUR",
            "category": "fun",
            "spent_on": "2026-03-01",
            "description": "Brunch",
            "clear": ["merchant", "notes"],
        },
    ),
    "delete_expense": lambda ids: ("delete_expense", {"expense_id": ids["lunch"]}),
    "recategorize_expenses": lambda ids: (
        "recategorize_expenses",
        {"expense_ids": [ids["lunch"], ids["film"], ids["bus"]], "category": "Rent"},
    ),
    "create_category": lambda ids: ("create_category", {"name": "Travel"}),
    "rename_category": lambda ids: ("rename_category", {"name": "food", "new_name": "Groceries"}),
    "merge_categories": lambda ids: ("merge_categories", {"source": "Fun", "target": "Food"}),
    "delete_category-empty-with-budget": lambda ids: ("delete_category", {"name": "Rent"}),
    "delete_category-move_to": lambda ids: ("delete_category", {"name": "Fun", "move_to": "Rent"}),
    "set_budget-new-span": lambda ids: ("set_budget", {"category": "Fun", "amount": 40, "month": "2026-01"}),
    "set_budget-cuts-the-start-of-a-span": lambda ids: (
        "set_budget",
        {"category": "Food", "amount": 500, "month": "2026-01", "through_month": "2026-03"},
    ),
    "set_budget-splits-a-span": lambda ids: (
        "set_budget",
        {"category": "Food", "amount": 250, "month": "2026-05", "through_month": "2026-06", "rollover": True},
    ),
    "set_budget-replaces-a-span": lambda ids: (
        "set_budget",
        {"category": "Rent", "amount": 1300, "month": "2026-01", "through_month": "2026-06"},
    ),
    "delete_budget-splits-a-span": lambda ids: ("delete_budget", {"category": "Food", "month": "2026-06"}),
    "delete_budget-whole-span": lambda ids: ("delete_budget", {"category": "fun", "month": "2026-03", "ongoing": True}),
}


# --- the log --------------------------------------------------------------------------------------------


async def test_every_change_is_listed_newest_first_with_its_tool_summary_and_row_count(client: Client) -> None:
    await seed_categories(client, "Food", "Fun")
    lunch = await ok(
        client, "create_expense", amount="12.30", description="Lunch", category="Food", spent_on="2026-03-14"
    )
    film = await ok(client, "create_expense", amount="9.50", description="Film", category="Food", spent_on="2026-03-20")
    await ok(client, "update_expense", expense_id=lunch["id"], amount="15")
    await ok(client, "recategorize_expenses", expense_ids=[lunch["id"], film["id"]], category="fun")
    await ok(client, "rename_category", name="Fun", new_name="Leisure")
    await ok(client, "set_budget", category="Leisure", amount=100, month="2026-03")
    await ok(client, "delete_budget", category="Leisure", month="2026-03")
    await seed_categories(client, "Misc")
    await ok(client, "merge_categories", source="Misc", target="Food")
    await ok(client, "delete_category", name="Leisure", move_to="Food")
    await ok(client, "delete_expense", expense_id=film["id"])
    deleted_film = await latest_change(client)
    undo = await ok(client, "undo_change", change_id=deleted_film["id"])

    log = await changes(client)
    expected = [  # newest first: (tool, rows, words of the summary)
        ("undo_change", 1, [f"undid change {deleted_film['id']}", "Film"]),
        ("delete_expense", 1, [f"expense {film['id']}", "9.50 USD", "'Film'"]),
        ("delete_category", 3, ["'Leisure'", "'Food'", "2 expense"]),
        ("merge_categories", 1, ["'Misc'", "'Food'"]),
        ("create_category", 1, ["'Misc'"]),
        ("delete_budget", 1, ["Leisure", "2026-03"]),
        ("set_budget", 1, ["Leisure", "100.00 USD", "2026-03"]),
        ("rename_category", 1, ["'Fun'", "'Leisure'"]),
        ("recategorize_expenses", 2, ["2 expense", "Fun", str(lunch["id"]), str(film["id"])]),
        ("update_expense", 1, [f"expense {lunch['id']}", "amount", "15.00"]),
        ("create_expense", 1, [f"expense {film['id']}", "'Film'", "Food"]),
        ("create_expense", 1, [f"expense {lunch['id']}", "12.30 USD", "'Lunch'", "2026-03-14"]),
        ("create_category", 1, ["'Fun'"]),
        ("create_category", 1, ["'Food'"]),
    ]
    assert [(c["tool"], c["rows"]) for c in log] == [(tool, count) for tool, count, _ in expected]
    for change, (_, _, words) in zip(log, expected, strict=True):
        assert all(word in change["summary"] for word in words), (change["summary"], words)
    assert [c["id"] for c in log] == sorted((c["id"] for c in log), reverse=True)
    assert log[0]["id"] == undo["change_id"] and log[0]["undoes"] == deleted_film["id"]
    assert [c["undone_by"] for c in log if c["undone_by"] is not None] == [undo["change_id"]]
    assert all(c["at"].endswith(("Z", "+00:00")) for c in log)


async def test_list_changes_with_details_shows_each_row_before_and_after(client: Client) -> None:
    await seed_categories(client, "Food", "Rent")
    created = await ok(client, "create_expense", amount="12.30", description="lunch", category="Food")
    await ok(client, "update_expense", expense_id=created["id"], amount="15")

    plain = await ok(client, "list_changes", limit=2)
    detailed = await ok(client, "list_changes", limit=2, details=True)

    assert all(change.get("details") is None for change in plain["changes"])
    update, create = detailed["changes"]
    assert (
        update["summary"] == f"changed amount of expense {created['id']} (15.00 USD 'lunch' on {created['spent_on']})"
    )
    [row] = update["details"]
    assert (row["table"], row["row_id"]) == ("expense", created["id"])
    assert (row["before"]["amount_minor"], row["after"]["amount_minor"]) == (1230, 1500)
    assert create["details"][0]["before"] is None and create["details"][0]["after"]["description"] == "lunch"


async def test_list_changes_pages_with_a_cursor(client: Client) -> None:
    await seed_categories(client, "a", "b", "c", "d", "e")
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = await ok(client, "list_changes", limit=2, **({"cursor": cursor} if cursor else {}))
        pages.append([c["summary"] for c in page["changes"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [
        ["created category 'e'", "created category 'd'"],
        ["created category 'c'", "created category 'b'"],
        ["created category 'a'"],
    ]
    assert "cursor is not valid" in await fails(client, "list_changes", cursor="bm9wZQ")
    categories_cursor = (await ok(client, "list_categories", limit=1))["next_cursor"]
    assert "cursor is not valid" in await fails(client, "list_changes", cursor=categories_cursor)


FAILING_CALLS: dict[str, Callable[[dict[str, int]], tuple[str, dict[str, Any]]]] = {
    "create_expense-unknown-category": lambda ids: (
        "create_expense",
        {"amount": 1, "description": "x", "category": "Nope"},
    ),
    "create_expense-bad-amount": lambda ids: (
        "create_expense",
        {"amount": "1.234", "description": "x", "category": "Food"},
    ),
    "create_category-existing": lambda ids: ("create_category", {"name": "FOOD"}),
    "update_expense-nothing": lambda ids: ("update_expense", {"expense_id": ids["lunch"]}),
    "delete_expense-unknown": lambda ids: ("delete_expense", {"expense_id": 99999}),
    "recategorize-unknown-id": lambda ids: (
        "recategorize_expenses",
        {"expense_ids": [ids["lunch"], 99999], "category": "Rent"},
    ),
    "rename-onto-existing": lambda ids: ("rename_category", {"name": "Fun", "new_name": "food"}),
    "merge-into-itself": lambda ids: ("merge_categories", {"source": "Fun", "target": "FUN"}),
    "delete_category-with-expenses": lambda ids: ("delete_category", {"name": "Fun"}),
    "delete_budget-none-there": lambda ids: ("delete_budget", {"category": "Rent", "month": "2027-01"}),
    "set_budget-unknown-category": lambda ids: ("set_budget", {"category": "Nope", "amount": 5, "month": "2026-01"}),
    "undo-unknown-change": lambda ids: ("undo_change", {"change_id": 99999}),
}


@pytest.mark.parametrize("call", FAILING_CALLS)
async def test_a_call_that_fails_writes_no_change_entry(client: Client, db: Engine, call: str) -> None:
    ids = await seed_household(client)
    tool, arguments = FAILING_CALLS[call](ids)
    before = snapshot(db)
    await fails(client, tool, **arguments)
    assert snapshot(db) == before


# --- undo -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CHANGES)
async def test_undo_puts_every_row_back_exactly(client: Client, db: Engine, kind: str) -> None:
    tool, arguments = CHANGES[kind](await seed_household(client))
    before = rows(db)
    await ok(client, tool, **arguments)
    assert rows(db) != before
    change = await latest_change(client)
    assert change["tool"] == tool
    undone = await ok(client, "undo_change", change_id=change["id"])
    assert rows(db) == before
    assert (undone["dry_run"], undone["rows"], undone["undone"]["id"]) == (False, change["rows"], change["id"])
    assert undone["undone"]["undone_by"] == undone["change_id"]


@pytest.mark.parametrize("kind", CHANGES)
async def test_undoing_an_undo_makes_the_change_again(client: Client, db: Engine, kind: str) -> None:
    tool, arguments = CHANGES[kind](await seed_household(client))
    await ok(client, tool, **arguments)
    after = rows(db)
    change = await latest_change(client)
    undo = await ok(client, "undo_change", change_id=change["id"])
    redo = await ok(client, "undo_change", change_id=undo["change_id"])
    assert rows(db) == after
    log = await changes(client)
    assert (log[0]["id"], log[0]["undoes"]) == (redo["change_id"], undo["change_id"])
    assert log[1]["undone_by"] == redo["change_id"]


async def test_the_change_id_in_a_writes_answer_undoes_that_call_without_looking_it_up(
    client: Client, db: Engine
) -> None:
    await seed_categories(client, "Rent")  # the user exists from the first write on, and is never undone
    before = rows(db)
    category = await ok(client, "create_category", name="Food")
    created = await ok(client, "create_expense", **LUNCH)
    updated = await ok(client, "update_expense", expense_id=created["id"], description="Brunch")
    assert [change["id"] for change in await changes(client)][:3] == [
        updated["change_id"],
        created["change_id"],
        category["change_id"],
    ]
    for answer in (updated, created, category):  # newest first: each undo leaves the one before undoable
        await ok(client, "undo_change", change_id=answer["change_id"])
    assert rows(db) == before


async def test_an_update_to_the_values_already_stored_has_no_change_id_and_logs_nothing(client: Client) -> None:
    await seed_categories(client, "Food")
    created = await ok(client, "create_expense", **LUNCH)
    same = await ok(client, "update_expense", expense_id=created["id"], description=LUNCH["description"])
    assert same["change_id"] is None
    assert (await latest_change(client))["id"] == created["change_id"]


async def test_a_deleted_expense_comes_back_with_the_same_id_and_fields(client: Client) -> None:
    ids = await seed_household(client)
    original = await ok(client, "get_expense", expense_id=ids["lunch"])
    await ok(client, "delete_expense", expense_id=ids["lunch"])
    message = await fails(client, "get_expense", expense_id=ids["lunch"])
    deletion = await latest_change(client)
    assert f"undo_change with change_id={deletion['id']}" in message
    await ok(client, "undo_change", change_id=deletion["id"])
    back = await ok(client, "get_expense", expense_id=ids["lunch"])
    assert {k: v for k, v in back.items() if k != "updated_at"} == {
        k: v for k, v in original.items() if k != "updated_at"
    }
    listed = await ok(client, "query_expenses_by_category", category="Food")
    assert [e["id"] for e in listed["expenses"]] == [ids["lunch"]]


async def test_undoing_a_merge_brings_back_both_categories_their_expenses_and_budget_spans(
    client: Client, db: Engine
) -> None:
    ids = await seed_household(client)
    categories_before = await ok(client, "list_categories")
    spans_before = budget_spans(db)
    merged = await ok(client, "merge_categories", source="fun", target="FOOD")
    assert (merged["removed"], merged["moved_to"], merged["expenses_moved"]) == ("Fun", "Food", 2)
    assert [(s["category"], s["from_month"]) for s in merged["budgets_moved"]] == [("Food", "2027-01")]
    assert budget_spans(db) != spans_before
    await ok(client, "undo_change", change_id=merged["change_id"])
    assert await ok(client, "list_categories") == categories_before
    assert budget_spans(db) == spans_before
    fun = await ok(client, "query_expenses_by_category", category="Fun")
    assert sorted(e["id"] for e in fun["expenses"]) == sorted([ids["film"], ids["bus"]])


async def test_undo_is_refused_while_a_later_change_touched_the_same_rows(client: Client, db: Engine) -> None:
    ids = await seed_household(client)
    await ok(client, "update_expense", expense_id=ids["lunch"], amount="15")
    first = await latest_change(client)
    later = await ok(client, "recategorize_expenses", expense_ids=[ids["lunch"], ids["film"]], category="Rent")
    before = snapshot(db)
    message = await fails(client, "undo_change", change_id=first["id"])
    assert f"cannot undo change {first['id']}" in message
    assert f"expense {ids['lunch']}" in message
    assert f"change {later['change_id']} (recategorize_expenses)" in message
    assert f"undo change {later['change_id']} first" in message
    assert snapshot(db) == before
    await ok(client, "undo_change", change_id=later["change_id"])
    await ok(client, "undo_change", change_id=first["id"])
    restored = await ok(client, "get_expense", expense_id=ids["lunch"])
    assert (restored["amount"], restored["category"]) == ("12.30", "Food")


async def test_after_undoing_the_newest_later_change_the_refusal_names_the_next_one_in_the_way(
    client: Client,
) -> None:
    ids = await seed_household(client)
    await ok(client, "update_expense", expense_id=ids["lunch"], amount="15")
    first = await latest_change(client)
    await ok(client, "update_expense", expense_id=ids["lunch"], description="Brunch")
    middle = await latest_change(client)
    await ok(client, "delete_expense", expense_id=ids["lunch"])
    newest = await latest_change(client)
    assert f"undo change {newest['id']} first" in await fails(client, "undo_change", change_id=first["id"])
    await ok(client, "undo_change", change_id=newest["id"])
    message = await fails(client, "undo_change", change_id=first["id"])
    assert f"undo change {middle['id']} first" in message  # not the undo just made: that would delete it again
    await ok(client, "undo_change", change_id=middle["id"])
    await ok(client, "undo_change", change_id=first["id"])
    assert (await ok(client, "get_expense", expense_id=ids["lunch"]))["amount"] == "12.30"


async def test_undoing_a_change_twice_is_refused(client: Client, db: Engine) -> None:
    ids = await seed_household(client)
    await ok(client, "delete_expense", expense_id=ids["film"])
    deletion = await latest_change(client)
    undo = await ok(client, "undo_change", change_id=deletion["id"])
    before = snapshot(db)
    message = await fails(client, "undo_change", change_id=deletion["id"])
    assert f"change {deletion['id']} was already undone by change {undo['change_id']}" in message
    assert "already undone" in await fails(client, "undo_change", change_id=deletion["id"], dry_run=True)
    assert snapshot(db) == before


async def test_undoing_create_category_is_refused_once_an_expense_was_filed_under_it(
    client: Client, db: Engine
) -> None:
    await seed_categories(client, "Travel")
    creation = await latest_change(client)
    await ok(client, "create_expense", amount=80, description="Train", category="Travel")
    before = snapshot(db)
    message = await fails(client, "undo_change", change_id=creation["id"])
    assert f"cannot undo change {creation['id']}" in message
    assert "expenses filed under its category" in message and "Nothing was changed" in message
    assert snapshot(db) == before
    assert [c["name"] for c in (await ok(client, "list_categories"))["categories"]] == ["Travel"]


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [("rename_category", {"name": "Rent", "new_name": "Housing"}), ("delete_category", {"name": "Rent"})],
)
async def test_undo_is_refused_when_a_new_category_took_the_name_back(
    client: Client, db: Engine, tool: str, arguments: dict[str, Any]
) -> None:
    await seed_household(client)
    await ok(client, tool, **arguments)
    change = await latest_change(client)
    await seed_categories(client, "RENT")
    before = snapshot(db)
    message = await fails(client, "undo_change", change_id=change["id"])
    assert f"cannot undo change {change['id']}" in message and "a category now using its name" in message
    assert snapshot(db) == before


async def test_undoing_an_unknown_change_points_to_list_changes(client: Client, db: Engine) -> None:
    await seed_categories(client, "Food")
    before = snapshot(db)
    message = await fails(client, "undo_change", change_id=4242)
    assert message.endswith("no change with id 4242; list_changes shows the recent ones and their ids")
    assert snapshot(db) == before


async def test_a_user_never_sees_or_undoes_another_users_changes(client: Client, database_url: str, db: Engine) -> None:
    await seed_categories(client, "Food")
    alices = await latest_change(client)
    async with Client(build_server(make_settings(database_url, user="bob"))) as bob:
        assert await ok(bob, "list_changes") == {"changes": [], "next_cursor": None}
        before = snapshot(db)
        for dry_run in (True, False):
            message = await fails(bob, "undo_change", change_id=alices["id"], dry_run=dry_run)
            assert f"no change with id {alices['id']}; list_changes" in message
        assert snapshot(db) == before
        await seed_categories(bob, "Food")
        bobs = await changes(bob)
        assert [c["summary"] for c in bobs] == ["created category 'Food'"]
    assert await changes(client) == [alices]
    assert "no change with id" in await fails(client, "undo_change", change_id=bobs[0]["id"])


# --- dry runs -------------------------------------------------------------------------------------------


Prepare = Callable[[Client, dict[str, int]], Awaitable[tuple[str, dict[str, Any]]]]


def _plain(kind: str) -> Prepare:
    async def prepare(client: Client, ids: dict[str, int]) -> tuple[str, dict[str, Any]]:
        return CHANGES[kind](ids)

    return prepare


async def _undo_a_deletion(client: Client, ids: dict[str, int]) -> tuple[str, dict[str, Any]]:
    await ok(client, "delete_expense", expense_id=ids["lunch"])
    return "undo_change", {"change_id": (await latest_change(client))["id"]}


DRY_RUNS: dict[str, Prepare] = {
    kind: _plain(kind)
    for kind in (
        "delete_expense",
        "recategorize_expenses",
        "merge_categories",
        "delete_category-move_to",
        "delete_category-empty-with-budget",
        "set_budget-splits-a-span",
        "delete_budget-splits-a-span",
    )
} | {"undo_change": _undo_a_deletion}


def _without_receipt(result: dict[str, Any]) -> dict[str, Any]:
    trimmed = {k: v for k, v in result.items() if k not in ("change_id", "dry_run")}
    if "undone" in trimmed:
        trimmed["undone"] = {k: v for k, v in trimmed["undone"].items() if k != "undone_by"}
    return trimmed


@pytest.mark.parametrize("kind", DRY_RUNS)
async def test_a_dry_run_describes_the_change_exactly_and_changes_nothing(
    client: Client, db: Engine, kind: str
) -> None:
    tool, arguments = await DRY_RUNS[kind](client, await seed_household(client))
    before = snapshot(db)
    preview = await ok(client, tool, **arguments, dry_run=True)
    assert snapshot(db) == before
    real = await ok(client, tool, **arguments)
    assert snapshot(db) != before
    assert _without_receipt(preview) == _without_receipt(real)
    assert (preview.get("dry_run"), preview.get("change_id")) == (True, None), preview
    assert real.get("dry_run") is False and real.get("change_id") == (await latest_change(client))["id"]


# --- recategorize ---------------------------------------------------------------------------------------


async def test_recategorize_moves_every_expense_in_one_change(client: Client) -> None:
    ids = await seed_household(client)
    moved = await ok(client, "recategorize_expenses", expense_ids=[ids["film"], ids["lunch"]], category="RENT")
    assert (moved["category"], moved["moved"], moved["already_there"]) == ("Rent", [ids["film"], ids["lunch"]], [])
    rent = await ok(client, "query_expenses_by_category", category="Rent")
    assert sorted(e["id"] for e in rent["expenses"]) == sorted([ids["film"], ids["lunch"]])
    change = await latest_change(client)
    assert (change["id"], change["tool"], change["rows"]) == (moved["change_id"], "recategorize_expenses", 2)


async def test_recategorize_with_an_unknown_id_moves_nothing_and_lists_the_missing_ids(
    client: Client, db: Engine
) -> None:
    ids = await seed_household(client)
    before = snapshot(db)
    message = await fails(
        client, "recategorize_expenses", expense_ids=[ids["lunch"], 9001, ids["film"], 9002], category="Rent"
    )
    assert "no expense with id 9001, 9002 (2 of 4); nothing was moved" in message
    assert snapshot(db) == before


async def test_recategorize_reports_ids_already_there_and_ignores_repeated_ids(client: Client) -> None:
    ids = await seed_household(client)
    moved = await ok(
        client,
        "recategorize_expenses",
        expense_ids=[ids["lunch"], ids["film"], ids["lunch"], ids["bus"], ids["film"]],
        category="Fun",
    )
    assert (moved["moved"], moved["already_there"]) == ([ids["lunch"]], [ids["film"], ids["bus"]])
    assert (await latest_change(client))["rows"] == 1
    assert (await ok(client, "get_expense", expense_id=ids["lunch"]))["category"] == "Fun"


async def test_recategorize_into_the_category_they_are_already_in_logs_nothing(client: Client, db: Engine) -> None:
    ids = await seed_household(client)
    before = snapshot(db)
    moved = await ok(client, "recategorize_expenses", expense_ids=[ids["film"], ids["bus"]], category="fun")
    assert (moved["moved"], moved["already_there"], moved["change_id"]) == ([], [ids["film"], ids["bus"]], None)
    assert snapshot(db) == before


# --- categories -----------------------------------------------------------------------------------------


async def test_a_category_can_be_renamed_to_a_different_case_of_its_own_name(client: Client) -> None:
    ids = await seed_household(client)
    renamed = await ok(client, "rename_category", name="food", new_name="FOOD")
    assert (renamed["old_name"], renamed["name"], renamed["dry_run"]) == ("Food", "FOOD", False)
    assert renamed["change_id"] == (await latest_change(client))["id"]
    assert (await ok(client, "get_expense", expense_id=ids["lunch"]))["category"] == "FOOD"
    names = [c["name"] for c in (await ok(client, "list_categories"))["categories"]]
    assert names == ["FOOD", "Fun", "Rent"]


async def test_rename_follows_with_expenses_and_budgets(client: Client, db: Engine) -> None:
    ids = await seed_household(client)
    await ok(client, "rename_category", name="Food", new_name="Groceries")
    assert (await ok(client, "get_expense", expense_id=ids["lunch"]))["category"] == "Groceries"
    assert [s[0] for s in budget_spans(db)] == ["Fun", "Groceries", "Rent"]
    assert "no category 'Food'" in await fails(client, "query_expenses_by_category", category="Food")


@pytest.mark.parametrize("new_name", ["Fun", "fUN"])
async def test_renaming_onto_an_existing_name_is_refused_suggesting_merge(
    client: Client, db: Engine, new_name: str
) -> None:
    await seed_household(client)
    before = snapshot(db)
    message = await fails(client, "rename_category", name="Food", new_name=new_name)
    assert "category 'Fun' already exists" in message
    assert "merge_categories (source='Food', target='Fun')" in message
    assert snapshot(db) == before


async def test_renaming_to_the_same_name_is_refused(client: Client, db: Engine) -> None:
    await seed_household(client)
    before = snapshot(db)
    assert "already has that name" in await fails(client, "rename_category", name="food", new_name="Food")
    assert snapshot(db) == before


async def test_delete_category_is_refused_while_it_holds_expenses(client: Client, db: Engine) -> None:
    await seed_household(client)
    before = snapshot(db)
    message = await fails(client, "delete_category", name="fun")
    assert "'Fun' still holds 2 expense(s)" in message and "move_to" in message and "merge_categories" in message
    assert snapshot(db) == before


async def test_delete_category_with_move_to_moves_its_expenses_and_budgets(client: Client, db: Engine) -> None:
    ids = await seed_household(client)
    removed = await ok(client, "delete_category", name="Fun", move_to="rent")
    assert (removed["removed"], removed["moved_to"], removed["expenses_moved"]) == ("Fun", "Rent", 2)
    assert [(s["category"], s["from_month"], s["through_month"]) for s in removed["budgets_moved"]] == [
        ("Rent", "2026-07", None)
    ]
    assert [(s["category"], s["from_month"]) for s in removed["budgets_removed"]] == [("Fun", "2026-03")]
    assert (await ok(client, "get_expense", expense_id=ids["film"]))["category"] == "Rent"
    assert [c["name"] for c in (await ok(client, "list_categories"))["categories"]] == ["Food", "Rent"]
    assert budget_spans(db) == [
        ("Food", "2026-01-01", "2026-12-01", 30000, False),
        ("Rent", "2026-01-01", "2026-06-01", 120000, False),
        ("Rent", "2026-07-01", None, 5000, True),
    ]


async def test_deleting_an_empty_category_removes_it_and_its_budgets(client: Client, db: Engine) -> None:
    await seed_household(client)
    removed = await ok(client, "delete_category", name="RENT")
    assert (removed["removed"], removed["moved_to"], removed["expenses_moved"]) == ("Rent", None, 0)
    assert removed["budgets_moved"] == []
    assert [(s["from_month"], s["through_month"], s["amount"]) for s in removed["budgets_removed"]] == [
        ("2026-01", "2026-06", "1200.00")
    ]
    assert [s[0] for s in budget_spans(db)] == ["Food", "Fun"]
    assert [c["name"] for c in (await ok(client, "list_categories"))["categories"]] == ["Food", "Fun"]
    status = await ok(client, "budget_status", month="2026-03")
    assert sorted(line["category"] for line in status["budgets"]) == ["Food", "Fun"]


UNKNOWN_CATEGORY_CALLS: dict[str, dict[str, Any]] = {
    "rename_category": {"name": "Fod", "new_name": "Groceries"},
    "merge_categories": {"source": "Fun", "target": "Fod"},
    "delete_category": {"name": "Fod"},
    "delete_category-move_to": {"name": "Fun", "move_to": "Fod"},
    "recategorize_expenses": {"expense_ids": [1], "category": "Fod"},
    "set_budget": {"category": "Fod", "amount": 10, "month": "2026-01"},
    "delete_budget": {"category": "Fod", "month": "2026-01"},
}


@pytest.mark.parametrize("call", UNKNOWN_CATEGORY_CALLS)
async def test_an_unknown_category_name_is_answered_with_the_closest_names(
    client: Client, db: Engine, call: str
) -> None:
    await seed_household(client)
    before = snapshot(db)
    message = await fails(client, call.split("-")[0], **UNKNOWN_CATEGORY_CALLS[call])
    assert "no category 'Fod'; did you mean Food" in message
    assert snapshot(db) == before


async def test_merge_addresses_categories_in_any_case_and_keeps_the_targets_budget_where_both_have_one(
    client: Client, db: Engine
) -> None:
    ids = await seed_household(client)
    merged = await ok(client, "merge_categories", source="FUN", target="food")
    assert (merged["removed"], merged["moved_to"]) == ("Fun", "Food")
    assert [(s["from_month"], s["through_month"]) for s in merged["budgets_removed"]] == [("2026-03", None)]
    assert [span for span in budget_spans(db) if span[0] == "Food"] == [
        ("Food", "2026-01-01", "2026-12-01", 30000, False),
        ("Food", "2027-01-01", None, 5000, True),
    ]
    food = await ok(client, "query_expenses_by_category", category="Food")
    assert sorted(e["id"] for e in food["expenses"]) == sorted(ids.values())
    assert [c["name"] for c in (await ok(client, "list_categories"))["categories"]] == ["Food", "Rent"]
