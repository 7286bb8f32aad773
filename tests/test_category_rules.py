"""Category rules: how imports file rows (pattern in merchant or description, any case, longest wins), and
how rules live with the categories they point at (merge, delete, undo), through the MCP protocol on every
backend."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from sqlalchemy import Engine

from helpers import fails, ok, seed_categories, snapshot

pytestmark = pytest.mark.anyio

HEADER = "Date,Merchant,Description,Amount"


def statement(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


async def filed(client: Client, *rows: str) -> dict[str, str]:
    """Where a preview files each row: description -> category (nothing is saved)."""
    preview = await ok(client, "import_expenses_csv", csv_text=statement(*rows))
    return {row["description"]: row["category"] for row in preview["preview"]}


async def rules(client: Client) -> list[dict[str, Any]]:
    return (await ok(client, "list_category_rules"))["rules"]


async def test_a_rule_files_rows_whose_merchant_or_description_contains_its_pattern_in_any_case(
    client: Client,
) -> None:
    await seed_categories(client, "Coffee")
    added = await ok(client, "add_category_rule", pattern="Starbucks", category="coffee")
    assert added["rule"] == {"pattern": "Starbucks", "category": "Coffee"}
    assert (added["replaced"], added["dry_run"]) == (None, False) and added["change_id"] is not None

    assert await filed(
        client,
        "2025-03-01,STARBUCKS #123,Card payment,-4.10",  # in the merchant
        "2025-03-02,,starbucks seattle,-3.90",  # in the description
        "2025-03-03,Star bucks,Coffee,-3.00",  # not the pattern
    ) == {"Card payment": "Coffee", "starbucks seattle": "Coffee", "Coffee": "Uncategorized"}


async def test_the_longest_matching_pattern_wins_and_equal_lengths_go_to_the_older_rule(client: Client) -> None:
    await seed_categories(client, "Shopping", "Groceries", "Books", "Music")
    await ok(client, "add_category_rule", pattern="amazon", category="Shopping")
    await ok(client, "add_category_rule", pattern="amazon fresh", category="Groceries")
    await ok(client, "add_category_rule", pattern="kindle", category="Books")  # 6 letters: as long as "amazon"
    await ok(client, "add_category_rule", pattern="audible", category="Music")

    assert await filed(
        client,
        "2025-03-01,Amazon Fresh,Weekly shop,-60.00",
        "2025-03-02,Amazon,Kindle book,-9.99",
        "2025-03-03,AMAZON,Kindle Audible bundle,-14.99",
        "2025-03-04,Amazon,Cable,-7.00",
    ) == {"Weekly shop": "Groceries", "Kindle book": "Shopping", "Kindle Audible bundle": "Music", "Cable": "Shopping"}


async def test_patterns_and_texts_are_compared_by_unicode_case_folding(client: Client) -> None:
    await seed_categories(client, "Transport", "Cafés")
    await ok(client, "add_category_rule", pattern="STRASSENBAHN", category="Transport")
    await ok(client, "add_category_rule", pattern="café", category="Cafés")
    assert await filed(client, "2025-03-01,,Straßenbahn München,-2.90", "2025-03-02,CAFÉ CENTRAL,Melange,-4.20") == {
        "Straßenbahn München": "Transport",
        "Melange": "Cafés",
    }


async def test_adding_a_rule_for_an_existing_pattern_points_it_at_the_new_category(client: Client) -> None:
    await seed_categories(client, "Coffee", "Dining")
    await ok(client, "add_category_rule", pattern="Deli 21", category="Coffee")

    moved = await ok(client, "add_category_rule", pattern="DELI 21", category="Dining")
    again = await ok(client, "add_category_rule", pattern="DELI 21", category="Dining")

    assert (moved["rule"], moved["replaced"]) == ({"pattern": "DELI 21", "category": "Dining"}, "Coffee")
    assert again["change_id"] is None  # nothing to change, nothing logged
    assert await rules(client) == [{"pattern": "DELI 21", "category": "Dining"}]
    await ok(client, "undo_change", change_id=moved["change_id"])
    assert await rules(client) == [{"pattern": "Deli 21", "category": "Coffee"}]


async def test_a_dry_run_rule_changes_nothing(client: Client, db: Engine) -> None:
    await seed_categories(client, "Coffee")
    before = snapshot(db)
    preview = await ok(client, "add_category_rule", pattern="Starbucks", category="Coffee", dry_run=True)
    assert (preview["dry_run"], preview["change_id"]) == (True, None)
    assert snapshot(db) == before


async def test_a_rule_for_an_unknown_category_or_a_bad_pattern_is_refused_and_changes_nothing(
    client: Client, db: Engine
) -> None:
    await seed_categories(client, "Coffee")
    before = snapshot(db)
    assert "no category 'Cofee'; did you mean Coffee?" in await fails(
        client, "add_category_rule", pattern="Starbucks", category="Cofee"
    )
    assert "pattern: String should have at least 2 characters" in await fails(
        client, "add_category_rule", pattern="x", category="Coffee"
    )
    assert "must not contain control characters" in await fails(
        client, "add_category_rule", pattern="two\nlines", category="Coffee"
    )
    assert "no category rule 'nope'; list_category_rules shows the rules" in await fails(
        client, "delete_category_rule", pattern="nope"
    )
    assert snapshot(db) == before


async def test_deleting_a_rule_stops_it_filing_and_undo_brings_it_back(client: Client) -> None:
    await seed_categories(client, "Coffee")
    await ok(client, "add_category_rule", pattern="Starbucks", category="Coffee")
    deleted = await ok(client, "delete_category_rule", pattern="STARBUCKS")
    assert deleted["rule"] == {"pattern": "Starbucks", "category": "Coffee"}
    assert await filed(client, "2025-03-01,Starbucks,Latte,-4.10") == {"Latte": "Uncategorized"}
    await ok(client, "undo_change", change_id=deleted["change_id"])
    assert await filed(client, "2025-03-01,Starbucks,Latte,-4.10") == {"Latte": "Coffee"}


async def test_rules_are_listed_by_pattern_in_pages_without_gaps_or_repeats(client: Client) -> None:
    await seed_categories(client, "Misc")
    patterns = [f"shop {n:02d}" for n in range(23)]
    for pattern in reversed(patterns):
        await ok(client, "add_category_rule", pattern=pattern, category="Misc")
    listed: list[str] = []
    cursor = None
    while True:
        page = await ok(client, "list_category_rules", limit=5, **({"cursor": cursor} if cursor else {}))
        assert page["count"] == 23
        listed += [rule["pattern"] for rule in page["rules"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert listed == patterns
    assert "cursor is not valid here" in await fails(client, "list_category_rules", cursor="bm9wZQ")


async def test_merging_categories_moves_their_rules_and_undo_moves_them_back(client: Client) -> None:
    await seed_categories(client, "Coffee", "Dining")
    await ok(client, "add_category_rule", pattern="Starbucks", category="Coffee")
    merged = await ok(client, "merge_categories", source="Coffee", target="Dining")
    assert merged["rules_moved"] == ["Starbucks"]
    assert await rules(client) == [{"pattern": "Starbucks", "category": "Dining"}]
    await ok(client, "undo_change", change_id=merged["change_id"])
    assert await rules(client) == [{"pattern": "Starbucks", "category": "Coffee"}]


async def test_deleting_a_category_removes_its_rules_or_moves_them_with_move_to_and_undo_restores_them(
    client: Client,
) -> None:
    await seed_categories(client, "Coffee", "Dining")
    await ok(client, "add_category_rule", pattern="Starbucks", category="Coffee")
    await ok(client, "add_category_rule", pattern="Blue Bottle", category="Coffee")

    preview = await ok(client, "delete_category", name="Coffee", move_to="Dining", dry_run=True)
    assert preview["rules_moved"] == ["Blue Bottle", "Starbucks"]
    deleted = await ok(client, "delete_category", name="Coffee")

    assert (deleted["rules_removed"], deleted["rules_moved"]) == (["Blue Bottle", "Starbucks"], [])
    assert "2 category rule(s) removed" in (await ok(client, "list_changes", limit=1))["changes"][0]["summary"]
    assert await rules(client) == []
    await ok(client, "undo_change", change_id=deleted["change_id"])
    assert await rules(client) == [
        {"pattern": "Blue Bottle", "category": "Coffee"},
        {"pattern": "Starbucks", "category": "Coffee"},
    ]


async def test_undoing_the_creation_of_a_category_a_rule_points_at_is_refused(client: Client, db: Engine) -> None:
    created = await ok(client, "create_category", name="Coffee")
    create_change = (await ok(client, "list_changes", limit=1))["changes"][0]["id"]
    await ok(client, "add_category_rule", pattern="Starbucks", category="Coffee")
    before = snapshot(db)
    message = await fails(client, "undo_change", change_id=create_change)
    assert "rows added later depend on what it would remove" in message
    assert created["name"] == "Coffee" and snapshot(db) == before
