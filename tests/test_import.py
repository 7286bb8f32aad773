"""Bank statement imports through the MCP protocol, on SQLite, PostgreSQL and PostgreSQL behind PgBouncer:
preview, deduplication, filing, rejections, refusals that change nothing, undo, paths and progress."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server.auth.provider import AccessToken
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from budget_mcp import repository
from budget_mcp.cli import main
from budget_mcp.db import make_engine
from budget_mcp.server import build_server
from budget_mcp.statements import MAX_STATEMENT_BYTES

from conftest import make_settings
from helpers import cli_database, fails, ok, seed_categories, snapshot
from httpserver import create_token, mcp_client, running_http_server

pytestmark = pytest.mark.anyio

DATA = Path(__file__).resolve().parent / "data"
RECEIPT = {"change_id", "import_id", "dry_run", "message"}


def statement(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def csv(*rows: str, header: str = "Date,Description,Amount") -> str:
    return "\n".join([header, *rows]) + "\n"


async def imported(client: Client, /, **arguments: Any) -> dict[str, Any]:
    """A real import (dry_run=false)."""
    return await ok(client, "import_expenses_csv", dry_run=False, **arguments)


def expenses(engine: Engine) -> list[tuple[Any, ...]]:
    """Every expense as (day, amount in cents, currency, description, category): what the user sees."""
    with engine.connect() as connection:
        return [
            (str(day), amount, currency, description, category)
            for day, amount, currency, description, category in connection.execute(
                text(
                    "SELECT e.spent_on, e.amount_minor, e.currency, e.description, c.name FROM expenses e "
                    "JOIN categories c ON c.id = e.category_id ORDER BY e.spent_on, e.id"
                )
            )
        ]


def count(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def without_receipt(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in RECEIPT}


# --- preview and import ---------------------------------------------------------------------------------


async def test_a_preview_changes_nothing_and_shows_exactly_what_the_import_then_does(
    client: Client, db: Engine
) -> None:
    await ok(client, "create_category", name="Coffee")
    await ok(client, "add_category_rule", pattern="starbucks", category="Coffee")
    before = snapshot(db)
    preview = await ok(client, "import_expenses_csv", csv_text=statement("us_credit_card.csv"), source="card")
    assert snapshot(db) == before
    assert (preview["dry_run"], preview["change_id"], preview["import_id"]) == (True, None, None)
    assert "Nothing was saved" in preview["message"] and "dry_run=false" in preview["message"]

    done = await imported(client, csv_text=statement("us_credit_card.csv"), source="card")

    assert without_receipt(done) == without_receipt(preview)
    assert done["dry_run"] is False and done["change_id"] is not None and done["import_id"] is not None
    assert (done["rows"], done["added"], done["duplicates"], done["credits_skipped"], done["rejected"]) == (
        8,
        6,
        0,
        2,
        0,
    )
    assert done["totals"] == [{"currency": "USD", "total": "1394.05", "count": 6}]
    assert done["categories"] == {"Uncategorized": 5, "Coffee": 1}
    assert done["format"] == {
        "encoding": "text",  # passed as text: nothing to decode
        "delimiter": ",",
        "header_line": 1,
        "columns": {"date": "Date", "amount": "Amount", "description": "Description"},
        "columns_inferred": True,
        "date_order": "month_first",
        "decimal_separator": ".",
        "sign_convention": "positive_is_expense",
    }
    first = done["preview"][0]
    assert first == {
        "line": 2,
        "status": "add",
        "spent_on": "2025-03-02",
        "amount": "5.75",
        "currency": "USD",
        "description": "STARBUCKS STORE 10432 SEATTLE WA",
        "category": "Coffee",
        "note": "rule 'starbucks'",
    }
    assert expenses(db)[-1] == ("2025-03-28", 1549, "USD", "NETFLIX.COM", "Uncategorized")
    assert len(expenses(db)) == 6


async def test_importing_the_same_file_twice_adds_nothing_the_second_time(client: Client, db: Engine) -> None:
    first = await imported(client, csv_text=statement("uk_current_account.csv"), source="current")
    rows_after_first = snapshot(db)

    again = await imported(client, csv_text=statement("uk_current_account.csv"), source="current")

    assert first["added"] == 5
    assert (again["added"], again["duplicates"], again["change_id"], again["import_id"]) == (0, 5, None, None)
    assert snapshot(db) == rows_after_first  # not even an empty import or change is recorded
    assert "Nothing new to import" in again["message"]
    notes = {row["note"] for row in again["preview"] if row["status"] == "duplicate"}
    assert all(note.startswith("imported before as expense ") for note in notes)


async def test_two_identical_coffees_on_one_day_are_both_kept_and_a_reimport_adds_neither_again(
    client: Client, db: Engine
) -> None:
    first = await imported(client, csv_text=statement("duplicate_coffees.csv"))
    assert first["added"] == 4
    assert [row for row in expenses(db) if row[3] == "Coffee Corner" and row[0] == "2025-03-04"] == [
        ("2025-03-04", 380, "USD", "Coffee Corner", "Uncategorized")
    ] * 2
    with_one_more = statement("duplicate_coffees.csv") + "2025-03-04,Coffee Corner,-3.80\n"  # a third, later

    again = await imported(client, csv_text=with_one_more)

    assert (again["added"], again["duplicates"]) == (1, 4)
    assert len(expenses(db)) == 5


async def test_rows_are_duplicates_per_source_so_another_account_imports_them(client: Client, db: Engine) -> None:
    await imported(client, csv_text=statement("duplicate_coffees.csv"), source="checking")
    other = await imported(client, csv_text=statement("duplicate_coffees.csv"), source="savings")
    assert (other["added"], other["duplicates"]) == (4, 0)
    assert len(expenses(db)) == 8


async def test_a_deleted_imported_expense_does_not_come_back_with_the_next_import(client: Client, db: Engine) -> None:
    await imported(client, csv_text=statement("duplicate_coffees.csv"))
    bagel = next(r for r in (await ok(client, "search_expenses", text="bagel"))["expenses"])
    await ok(client, "delete_expense", expense_id=bagel["id"])

    again = await imported(client, csv_text=statement("duplicate_coffees.csv"))

    assert (again["added"], again["duplicates"]) == (0, 4)
    notes = [row["note"] for row in again["preview"]]
    assert "imported before (deleted since)" in notes
    assert not [row for row in expenses(db) if row[3] == "Bagel Shop"]


# --- filing ---------------------------------------------------------------------------------------------


async def test_rows_no_rule_files_go_to_uncategorized_created_when_first_needed_as_its_own_change(
    client: Client, db: Engine
) -> None:
    done = await imported(client, csv_text=csv("2025-03-04,Corner shop,-3.80"))
    categories = (await ok(client, "list_categories"))["categories"]
    assert categories == [{"name": "Uncategorized", "expense_count": 1}]
    assert done["preview"][0]["note"] == "no rule matched"
    changes = (await ok(client, "list_changes"))["changes"]
    assert [change["tool"] for change in changes] == ["import_expenses_csv", "create_category"]
    assert changes[0]["id"] == done["change_id"]

    await imported(client, csv_text=csv("2025-03-05,Corner shop,-4.10"))  # exists now: not created again

    assert [c["name"] for c in (await ok(client, "list_categories"))["categories"]] == ["Uncategorized"]


async def test_an_existing_uncategorized_category_of_any_case_is_used(client: Client, db: Engine) -> None:
    await ok(client, "create_category", name="uncategorized")
    done = await imported(client, csv_text=csv("2025-03-04,Corner shop,-3.80"))
    assert done["categories"] == {"uncategorized": 1}
    assert [c["name"] for c in (await ok(client, "list_categories"))["categories"]] == ["uncategorized"]


async def test_the_files_category_is_used_when_it_exists_and_a_rule_beats_it(client: Client, db: Engine) -> None:
    await seed_categories(client, "coffee", "Groceries", "Travel")
    await ok(client, "add_category_rule", pattern="uber", category="Travel")

    done = await imported(client, csv_text=(DATA / "budget_app.tsv").read_text(encoding="utf-8"))

    filed = {row["description"]: (row["category"], row["note"]) for row in done["preview"] if row["status"] == "add"}
    assert filed == {
        "Flat white": ("coffee", "the file's category"),
        'Weekly shop: milk, eggs and "good" bread': ("Groceries", "the file's category"),
        "Ride to airport": ("Travel", "rule 'uber'"),  # the file says Transport
        "Ramen": ("Uncategorized", "the file's category 'Dining' does not exist here"),
    }
    assert done["totals"] == [
        {"currency": "EUR", "total": "31.20", "count": 1},
        {"currency": "JPY", "total": "1200", "count": 1},
        {"currency": "USD", "total": "66.68", "count": 2},
    ]
    assert done["credits_skipped"] == 2


async def test_credits_are_counted_explained_and_skipped(client: Client, db: Engine) -> None:
    done = await imported(client, csv_text=statement("us_credit_card.csv"))
    credits = [row for row in done["preview"] if row["status"] == "credit_skipped"]
    assert [(row["description"], row["amount"]) for row in credits] == [
        ("PAYMENT - THANK YOU", "500.00"),
        ("AMAZON.COM REFUND", "12.99"),
    ]
    assert {row["note"] for row in credits} == {"money in: only expenses are imported"}
    assert "2 credit(s) (money in is not recorded as expenses)" in done["message"]
    assert not [row for row in expenses(db) if "REFUND" in row[3] or "PAYMENT" in row[3]]


async def test_a_statement_with_unreadable_rows_is_refused_whole_naming_them(client: Client, db: Engine) -> None:
    message = await fails(client, "import_expenses_csv", csv_text=statement("ragged_rows.csv"), dry_run=False)
    assert message == (
        "Error executing tool import_expenses_csv: 3 row(s) of the statement could not be read, so nothing was "
        "imported: line 3: row has 4 fields, the header has 3; line 4: row has 2 fields, the header has 3; "
        "line 8: date 'Total' is not a date (expected e.g. 2025-03-04, 04/03/2025 or 4 Mar 2025). Fix the file, "
        "or call again with skip_rejected=true to import the other rows (a preview, dry_run=true with "
        "preview_status='rejected', lists every rejected row)"
    )
    assert expenses(db) == []


async def test_with_skip_rejected_the_readable_rows_are_imported_and_the_others_reported(
    client: Client, db: Engine
) -> None:
    done = await imported(client, csv_text=statement("ragged_rows.csv"), preview_status="rejected", skip_rejected=True)
    assert (done["added"], done["rejected"]) == (3, 3)
    assert [(row["line"], row["note"]) for row in done["preview"]] == [
        (3, "row has 4 fields, the header has 3"),
        (4, "row has 2 fields, the header has 3"),
        (8, "date 'Total' is not a date (expected e.g. 2025-03-04, 04/03/2025 or 4 Mar 2025)"),
    ]
    assert all(row["status"] == "rejected" for row in done["preview"])
    assert [row[3] for row in expenses(db)] == ["Groceries", "Books", "Train, return"]


async def test_the_preview_is_paged_by_cursor_in_file_order_without_gaps_or_repeats(client: Client) -> None:
    rows = [f"2025-03-{day:02d},Shop {day},-{day}.00" for day in range(1, 29)]
    text_ = csv(*rows)
    seen: list[int] = []
    cursor = None
    while True:
        page = await ok(
            client, "import_expenses_csv", csv_text=text_, preview_limit=5, **({"cursor": cursor} if cursor else {})
        )
        seen += [row["line"] for row in page["preview"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(2, 30))
    first = await ok(client, "import_expenses_csv", csv_text=text_, preview_limit=5)
    other = csv(*rows[:10])  # a cursor continues only the statement (and options) it came from
    message = await fails(client, "import_expenses_csv", csv_text=other, cursor=first["next_cursor"])
    assert "cursor is not valid here" in message
    rejected_only = await ok(
        client, "import_expenses_csv", csv_text=statement("ragged_rows.csv"), preview_status="rejected"
    )
    assert [row["line"] for row in rejected_only["preview"]] == [3, 4, 8]


# --- refusals that change nothing -----------------------------------------------------------------------

GARBAGE = random.Random(7).randbytes(4096)

MALFORMED = {
    "an unclosed quote": (csv('2025-03-01,"Groceries,-45.10', "2025-03-02,Cinema,-12.00"), "never closed"),
    "every date bad": (statement("bad_dates.csv").replace("14/03/2025", "x").replace("15/03/2025", "y"), "rejected"),
    "ambiguous dates": (statement("ambiguous_dates.csv"), "date_order='day_first'"),
    "no header": ("hello,world\nfoo,bar\n", "could not find the header row"),
    "empty": ("  \n", "the statement is empty"),
    "a header only": ("Date,Description,Amount\n", "no transaction rows"),
    "as many credits as debits": (csv("2025-03-01,a,-1.00", "2025-03-02,b,1.00"), "sign_convention="),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_statement_is_refused_with_the_fix_and_changes_nothing(
    client: Client, db: Engine, case: str
) -> None:
    await imported(client, csv_text=statement("duplicate_coffees.csv"))
    before = snapshot(db)
    text_, expected = MALFORMED[case]
    for dry_run in (True, False):
        message = await fails(client, "import_expenses_csv", csv_text=text_, dry_run=dry_run)
        assert expected in message, message
        assert "Traceback" not in message and "sqlalchemy" not in message.lower()
    assert snapshot(db) == before


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("garbage.csv", GARBAGE, "does not look like a CSV text file"),
        ("statement.pdf", b"%PDF-1.7\n" + GARBAGE, "a PDF document"),
        ("statement.xlsx", b"PK\x03\x04" + GARBAGE, "a ZIP archive"),
    ],
)
async def test_a_binary_file_is_refused_as_not_a_csv_and_changes_nothing(
    client: Client, db: Engine, tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    await ok(client, "list_categories")  # the database exists (the server creates it on first use)
    before = snapshot(db)
    message = await fails(client, "import_expenses_csv", path=str(path), dry_run=False)
    assert expected in message
    assert snapshot(db) == before


async def test_a_50_mb_file_is_refused_by_its_size_before_it_is_read_and_changes_nothing(
    client: Client, db: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "huge.csv"
    row = b"2025-03-01,Groceries,-45.10\n"
    with path.open("wb") as handle:
        handle.write(b"Date,Description,Amount\n")
        handle.write(row * (50 * 1024 * 1024 // len(row)))
    await ok(client, "list_categories")
    before = snapshot(db)
    message = await fails(client, "import_expenses_csv", path=str(path), dry_run=False)
    assert f"huge.csv is {path.stat().st_size:,} bytes; the most one import takes is {MAX_STATEMENT_BYTES:,}" in message
    assert "split the export into smaller files" in message
    assert snapshot(db) == before


async def test_statement_text_over_the_size_limit_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'b.sqlite3'}")
    huge = csv(*["2025-03-01,Groceries,-45.10"] * (MAX_STATEMENT_BYTES // 27 + 10))
    async with Client(build_server(settings)) as client:
        message = await fails(client, "import_expenses_csv", csv_text=huge, dry_run=False)
        assert "the most one import takes is 20,971,520 bytes" in message
        assert (await ok(client, "list_changes"))["changes"] == []


async def test_an_import_is_all_or_nothing_when_a_write_fails_half_way(
    client: Client, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ok(client, "create_category", name="Food")
    before = snapshot(db)
    real = repository.insert_imported_rows
    calls = []

    def fail_on_the_second_chunk(session: Any, rows: Any) -> None:
        calls.append(len(rows))
        if len(calls) == 2:
            raise IntegrityError("INSERT", {}, Exception("clash"))
        real(session, rows)

    monkeypatch.setattr(repository, "insert_imported_rows", fail_on_the_second_chunk)
    rows = [f"2025-03-{1 + i % 28:02d},Shop {i},-1.{i % 100:02d}" for i in range(6000)]

    message = await fails(client, "import_expenses_csv", csv_text=csv(*rows), dry_run=False)

    assert "nothing was changed" in message
    assert calls == [5000, 1000]
    assert snapshot(db) == before


# --- files by path --------------------------------------------------------------------------------------


async def test_a_stdio_server_imports_a_file_by_its_absolute_path(client: Client, db: Engine, tmp_path: Path) -> None:
    path = tmp_path / "march.csv"
    path.write_bytes((DATA / "sparkasse.csv").read_bytes())  # Latin-1, ';', decimal comma
    done = await imported(client, path=str(path), source="giro", currency="EUR")
    assert (done["added"], done["credits_skipped"], done["format"]["encoding"]) == (5, 2, "latin-1")
    changes = (await ok(client, "list_changes", limit=1))["changes"]
    assert "from 'giro' (march.csv)" in changes[0]["summary"]
    assert ("2025-03-03", 8600, "EUR") in [row[:3] for row in expenses(db)]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("relative/statement.csv", "is relative; give the file's absolute path"),
        ("/nonexistent/statement.csv", "no file at '/nonexistent/statement.csv'"),
        ("{tmp}", "is not a regular file"),
    ],
)
async def test_a_path_that_is_relative_missing_or_not_a_file_is_refused(
    client: Client, db: Engine, tmp_path: Path, path: str, expected: str
) -> None:
    await ok(client, "list_categories")
    before = snapshot(db)
    message = await fails(client, "import_expenses_csv", path=path.format(tmp=tmp_path), dry_run=False)
    assert expected in message
    assert snapshot(db) == before


async def test_columns_given_must_name_the_date_and_amount_columns_and_exist_in_the_header(client: Client) -> None:
    text_ = statement("duplicate_coffees.csv")
    assert 'but not the date column: name those too, e.g. {"date": "Posting Date"' in await fails(
        client, "import_expenses_csv", csv_text=text_, columns={"amount": "Amount"}
    )
    assert "nor the amount (or debit and/or credit) column" in await fails(
        client, "import_expenses_csv", csv_text=text_, columns={"description": "Description"}
    )
    assert "columns names columns this file's header does not have: amount='Betrag'" in await fails(
        client, "import_expenses_csv", csv_text=text_, columns={"date": "Date", "amount": "Betrag"}
    )
    assert "columns.payee.[key]: Input should be 'date', 'amount'" in await fails(
        client, "import_expenses_csv", csv_text=text_, columns={"payee": "Description"}
    )
    mapped = await ok(
        client,
        "import_expenses_csv",
        csv_text=text_,
        columns={"date": "DATE", "amount": "amount", "notes": "Description"},
    )
    assert (mapped["format"]["columns_inferred"], mapped["preview"][0]["description"]) == (False, "Coffee Corner")


async def test_exactly_one_of_csv_text_and_path_is_required(client: Client, tmp_path: Path) -> None:
    for arguments in ({}, {"csv_text": "x", "path": str(tmp_path)}):
        message = await fails(client, "import_expenses_csv", **arguments)
        assert "pass exactly one of csv_text" in message


@pytest.fixture
def served_per_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Requests act as the bearer token's user, as over HTTP (the token check itself is the SDK's)."""
    token = AccessToken(token="t", client_id="alice", scopes=[])
    monkeypatch.setattr("budget_mcp.server.get_access_token", lambda: token)
    yield


async def test_a_server_that_serves_users_by_token_refuses_a_path_but_takes_the_text(
    settings: Any, db: Engine, tmp_path: Path, served_per_token: None
) -> None:
    path = tmp_path / "statement.csv"
    path.write_text(statement("duplicate_coffees.csv"))
    async with Client(build_server(settings, token_auth_url="http://127.0.0.1:8000")) as client:
        await ok(client, "list_categories")
        before = snapshot(db)
        message = await fails(client, "import_expenses_csv", path=str(path), dry_run=False)
        assert "path is not available on this server" in message and "pass the file's contents as csv_text" in message
        assert snapshot(db) == before
        assert (await imported(client, csv_text=path.read_text()))["added"] == 4


async def test_the_http_server_refuses_a_path(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'http.sqlite3'}"
    path = tmp_path / "statement.csv"
    path.write_text(statement("duplicate_coffees.csv"))
    with running_http_server(url, tmp_path / "server") as server:
        issued = create_token(url, "alice")
        async with mcp_client(server.url, issued.token) as client:
            message = await fails(client, "import_expenses_csv", path=str(path), dry_run=False)
            assert "path is not available on this server" in message
            assert (await ok(client, "list_changes"))["changes"] == []


# --- undo -----------------------------------------------------------------------------------------------


async def test_undoing_an_import_removes_exactly_its_expenses_and_a_reimport_adds_them_again(
    client: Client, db: Engine
) -> None:
    await ok(client, "create_category", name="Food")
    await ok(client, "create_expense", amount="9.99", description="By hand", category="Food", spent_on="2025-03-04")
    first = await imported(client, csv_text=statement("uk_current_account.csv"), source="current")
    other = await imported(client, csv_text=statement("duplicate_coffees.csv"), source="card")
    kept = [row for row in expenses(db) if row[2] != "GBP"]

    preview = await ok(client, "undo_change", change_id=first["change_id"], dry_run=True)
    assert preview["dry_run"] is True and count(db, "expenses") == 10
    undone = await ok(client, "undo_change", change_id=first["change_id"])

    assert undone["undone"]["id"] == first["change_id"]
    assert expenses(db) == kept  # the hand-made expense and the other import are untouched
    assert count(db, "imported_rows") == other["added"]
    again = await imported(client, csv_text=statement("uk_current_account.csv"), source="current")
    assert (again["added"], again["duplicates"]) == (5, 0)
    assert count(db, "expenses") == 10


async def test_undoing_an_import_is_refused_while_one_of_its_expenses_is_edited_and_allowed_once_that_is_undone(
    client: Client, db: Engine
) -> None:
    done = await imported(client, csv_text=statement("duplicate_coffees.csv"))
    bagel = (await ok(client, "search_expenses", text="bagel"))["expenses"][0]
    edit = await ok(client, "update_expense", expense_id=bagel["id"], amount="2.60")
    edit_change = (await ok(client, "list_changes", limit=1))["changes"][0]["id"]
    before = snapshot(db)

    message = await fails(client, "undo_change", change_id=done["change_id"])

    assert message.endswith(
        f"cannot undo change {done['change_id']}: expense {bagel['id']} of the import was changed later by change "
        f"{edit_change} (update_expense); undo change {edit_change} first. Nothing was changed"
    )
    assert snapshot(db) == before
    assert edit["amount"] == "2.60"
    await ok(client, "undo_change", change_id=edit_change)
    await ok(client, "undo_change", change_id=done["change_id"])
    assert count(db, "expenses") == 0


@pytest.mark.parametrize("later", ["delete_expense", "recategorize_expenses", "merge_categories"])
async def test_undoing_an_import_is_refused_after_its_expenses_were_deleted_or_moved_naming_that_change(
    client: Client, db: Engine, later: str
) -> None:
    await ok(client, "create_category", name="Coffee")
    done = await imported(client, csv_text=statement("duplicate_coffees.csv"))
    ids = [e["id"] for e in (await ok(client, "search_expenses", text="coffee"))["expenses"]]
    arguments: dict[str, Any] = {
        "delete_expense": {"expense_id": ids[0]},
        "recategorize_expenses": {"expense_ids": ids, "category": "Coffee"},
        "merge_categories": {"source": "Uncategorized", "target": "Coffee"},
    }[later]
    await ok(client, later, **arguments)
    change = (await ok(client, "list_changes", limit=1))["changes"][0]["id"]

    message = await fails(client, "undo_change", change_id=done["change_id"])

    assert f"by change {change} ({later}); undo change {change} first" in message
    await ok(client, "undo_change", change_id=change)
    await ok(client, "undo_change", change_id=done["change_id"])
    assert count(db, "expenses") == 0


async def test_an_undone_import_is_not_redone_by_undoing_the_undo(client: Client, db: Engine) -> None:
    done = await imported(client, csv_text=statement("duplicate_coffees.csv"))
    undo = await ok(client, "undo_change", change_id=done["change_id"])
    before = snapshot(db)

    message = await fails(client, "undo_change", change_id=undo["change_id"])

    assert "an undone import is not redone. Import the same file again (same source)" in message
    assert snapshot(db) == before


async def test_an_import_is_one_change_in_the_audit_log_whatever_its_size(client: Client) -> None:
    rows = [f"2025-03-{1 + i % 28:02d},Shop {i},-{1 + i % 50}.25" for i in range(2500)]
    done = await imported(client, csv_text=csv(*rows), source="card")
    changes = (await ok(client, "list_changes", details=True))["changes"]
    imports = [change for change in changes if change["tool"] == "import_expenses_csv"]
    assert len(imports) == 1 and imports[0]["id"] == done["change_id"]
    assert imports[0]["summary"].startswith("imported 2500 expense(s) from 'card': ")
    assert [detail["table"] for detail in imports[0]["details"]] == ["import"]


# --- progress -------------------------------------------------------------------------------------------


async def test_a_large_import_reports_increasing_progress_to_a_client_that_asks(settings: Any) -> None:
    rows = [f"2025-03-{1 + i % 28:02d},Shop {i},-{1 + i % 90}.10" for i in range(12000)]
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async with Client(build_server(settings)) as client:
        result = await client.call_tool(
            "import_expenses_csv", {"csv_text": csv(*rows), "dry_run": False}, progress_callback=on_progress
        )
        assert not result.is_error
        silent = await client.call_tool("import_expenses_csv", {"csv_text": csv(*rows)})  # no callback: none sent
        assert not silent.is_error

    assert [progress for progress, _, _ in reports] == [0, 5000, 10000, 12000]
    assert {total for _, total, _ in reports} == {12000}
    assert reports[-1][2] == "12,000 of 12,000 rows added"


# --- the command line -----------------------------------------------------------------------------------


def test_the_import_command_imports_at_once_and_prints_what_it_did(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_database(monkeypatch, tmp_path)
    path = tmp_path / "march.csv"
    path.write_text(statement("ragged_rows.csv"))

    with pytest.raises(SystemExit) as refused:
        main(["import", str(path), "--source", "checking"])
    assert str(refused.value).startswith("budget-mcp: 3 row(s) of the statement could not be read, so nothing")
    assert str(refused.value).endswith(
        "run again with --skip-rejected to import the other rows (--dry-run lists every rejected row)"
    )
    assert main(["import", str(path), "--source", "checking", "--skip-rejected"]) == 0

    out = capsys.readouterr().out
    assert "march.csv: utf-8, delimiter ',', header on line 1, dates iso" in out
    assert "Imported" in out and "Uncategorized" in out and "87.49" in out
    assert "Rejected rows (3)" in out and "row has 4 fields, the header has 3" in out
    assert "undo_change with change_id=2 removes the whole import" in out
    assert main(["import", str(path), "--source", "checking", "--skip-rejected"]) == 0
    assert "Nothing new to import; nothing was changed." in capsys.readouterr().out


def test_the_import_command_previews_with_dry_run_and_saves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = cli_database(monkeypatch, tmp_path)
    path = tmp_path / "statement.csv"
    path.write_text(statement("uk_current_account.csv"))
    columns = ["--date-column", "Date", "--debit-column", "Paid out", "--credit-column", "Paid in"]
    assert main(["import", str(path), "--dry-run", *columns]) == 0
    out = capsys.readouterr().out
    assert "Import preview (nothing saved)" in out and "GBP" in out and "1170.45" in out
    assert "Preview only: nothing was saved." in out
    engine = make_engine(make_settings(url).url)
    try:
        assert count(engine, "expenses") == 0 and count(engine, "changes") == 0
    finally:
        engine.dispose()


def test_the_import_command_exits_1_with_the_fix_written_as_its_own_option(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cli_database(monkeypatch, tmp_path)
    path = tmp_path / "statement.csv"
    path.write_text(statement("ambiguous_dates.csv"))
    with pytest.raises(SystemExit) as refused:
        main(["import", str(path)])
    assert str(refused.value.code).startswith("budget-mcp: every date can be read day-first or month-first")
    assert "Call again with --date-order day_first or --date-order month_first" in str(refused.value.code)
    with pytest.raises(SystemExit) as missing:
        main(["import", str(tmp_path / "nope.csv")])
    assert "no file at" in str(missing.value.code)


# --- edges ----------------------------------------------------------------------------------------------


async def test_long_texts_are_cut_to_their_limits_and_a_row_without_text_gets_a_placeholder(
    client: Client, db: Engine
) -> None:
    long = "x" * 600
    text_ = csv(f"2025-03-01,{long},Shop,-1.00", "2025-03-02,,,-2.00", header="Date,Description,Merchant,Amount")
    done = await imported(client, csv_text=text_)
    assert done["added"] == 2
    stored = [row[3] for row in expenses(db)]
    assert stored == ["x" * 499 + "…", "(no description)"]


async def test_concurrent_imports_of_one_statement_store_each_row_once(settings: Any, db: Engine) -> None:
    import anyio

    rows = [f"2025-03-{1 + i % 28:02d},Shop {i},-{1 + i % 90}.10" for i in range(3000)]
    outcomes: list[Any] = []
    async with Client(build_server(settings)) as first, Client(build_server(settings)) as second:
        await ok(first, "list_categories")

        async def run(client: Client) -> None:
            outcomes.append(await client.call_tool("import_expenses_csv", {"csv_text": csv(*rows), "dry_run": False}))

        async with anyio.create_task_group() as group:
            group.start_soon(run, first)
            group.start_soon(run, second)
    assert count(db, "expenses") == 3000 and count(db, "imported_rows") == 3000
    for outcome in outcomes:  # the later one found every row imported, or was told to try again
        if outcome.is_error:
            assert "nothing was changed, try again" in outcome.content[0].text
        else:
            assert outcome.structured_content["added"] in (0, 3000)
