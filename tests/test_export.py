"""Exports: CSV and JSON pages through the MCP protocol on every backend, cursors that neither skip nor
repeat, the round trip import -> export -> import (a property on SQLite, a fixed example everywhere), and the
``budget-mcp export`` command streaming to a file or stdout."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from sqlalchemy import Engine

from budget_mcp import imports
from budget_mcp.cli import main
from budget_mcp.config import Settings
from budget_mcp.db import make_engine, make_session_factory, upgrade_schema
from budget_mcp.money import format_amount
from budget_mcp.schemas import StatementOptions
from budget_mcp.service import Caller
from budget_mcp.transactions import run_in_transaction

from conftest import make_settings
from helpers import cli_database as cli_environment
from helpers import fails, ok, seed_categories

pytestmark = pytest.mark.anyio

HEADER = "date,amount,currency,category,description,merchant,notes,id"


async def seed(client: Client) -> None:
    await seed_categories(client, "Food", "Travel")
    for day, amount, currency, category, description in [
        ("2026-01-05", "12.30", "USD", "Food", "Lunch, with Sam"),
        ("2026-01-05", "500", "JPY", "Travel", "Onigiri"),
        ("2026-02-10", "1.250", "KWD", "Travel", 'Taxi "airport"'),
        ("2026-02-11", "99.99", "USD", "Food", "Groceries"),
    ]:
        await ok(
            client,
            "create_expense",
            amount=amount,
            currency=currency,
            category=category,
            description=description,
            spent_on=day,
            merchant="Deli" if category == "Food" else None,
            **({"notes": "two\nlines"} if description == "Groceries" else {}),
        )


async def test_a_csv_export_has_the_header_exact_amounts_and_is_oldest_first(client: Client) -> None:
    await seed(client)
    exported = await ok(client, "export_expenses")
    assert exported["format"] == "csv"
    assert (exported["count"], exported["exported"], exported["next_cursor"]) == (4, 4, None)
    assert exported["totals"] == [
        {"currency": "JPY", "total": "500", "count": 1},
        {"currency": "KWD", "total": "1.250", "count": 1},
        {"currency": "USD", "total": "112.29", "count": 2},
    ]
    rows = list(csv.reader(io.StringIO(exported["text"])))
    assert ",".join(rows[0]) == HEADER
    assert [row[:7] for row in rows[1:]] == [
        ["2026-01-05", "12.30", "USD", "Food", "Lunch, with Sam", "Deli", ""],
        ["2026-01-05", "500", "JPY", "Travel", "Onigiri", "", ""],
        ["2026-02-10", "1.250", "KWD", "Travel", 'Taxi "airport"', "", ""],
        ["2026-02-11", "99.99", "USD", "Food", "Groceries", "Deli", "two\nlines"],
    ]
    assert [int(row[7]) for row in rows[1:]] == sorted(int(row[7]) for row in rows[1:])


async def test_a_json_export_is_an_array_of_objects_with_amounts_as_exact_strings(client: Client) -> None:
    await seed(client)
    exported = await ok(client, "export_expenses", format="json", currency="USD")
    objects = json.loads(exported["text"])
    assert [(o["date"], o["amount"], o["description"], o["merchant"], o["notes"]) for o in objects] == [
        ("2026-01-05", "12.30", "Lunch, with Sam", "Deli", None),
        ("2026-02-11", "99.99", "Groceries", "Deli", "two\nlines"),
    ]
    assert set(objects[0]) == set(HEADER.split(","))
    empty = await ok(client, "export_expenses", format="json", currency="EUR")
    assert (json.loads(empty["text"]), empty["count"]) == ([], 0)


async def test_an_export_follows_its_period_and_filters_and_counts_every_match(client: Client) -> None:
    await seed(client)
    february = await ok(client, "export_expenses", start_date="2026-02-01", end_date="2026-02-28", category="travel")
    assert february["period"] == {"start_date": "2026-02-01", "end_date": "2026-02-28", "period": None}
    assert february["text"].splitlines()[1:] == [next(line for line in february["text"].splitlines() if "KWD" in line)]
    assert "no category 'Fod'; did you mean Food?" in await fails(client, "export_expenses", category="Fod")


@pytest.mark.parametrize("format", ["csv", "json"])
async def test_export_pages_follow_their_cursor_without_skipping_or_repeating(client: Client, format: str) -> None:
    await seed_categories(client, "Food")
    for n in range(17):  # many on one day: the cursor must tell them apart by id
        await ok(
            client, "create_expense", amount=f"{n + 1}.00", category="Food", description=f"n{n}", spent_on="2026-03-01"
        )
    await ok(client, "create_expense", amount="1.00", category="Food", description="later", spent_on="2026-03-02")
    seen: list[str] = []
    cursor = None
    cursors: list[str] = []
    while True:
        page = await ok(client, "export_expenses", format=format, limit=5, **({"cursor": cursor} if cursor else {}))
        assert page["count"] == 18
        # each page is complete text on its own
        lines = list(csv.DictReader(io.StringIO(page["text"]))) if format == "csv" else json.loads(page["text"])
        assert len(lines) == page["exported"] <= 5
        seen += [line["description"] for line in lines]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        cursors.append(cursor)
    assert seen == [f"n{n}" for n in range(17)] + ["later"]
    other = await fails(client, "export_expenses", format=format, currency="USD", cursor=cursors[0])
    assert "cursor is not valid here" in other  # a cursor continues only the export it came from


@pytest.mark.parametrize("batch", [1, 4, 5, 100])
async def test_a_streamed_export_reads_batch_after_batch_without_skipping_or_repeating(
    client: Client, settings: Settings, batch: int
) -> None:
    await seed_categories(client, "Food")
    for n in range(8):  # many on one day: a batch must continue after the right one of them
        await ok(client, "create_expense", amount="1.00", category="Food", description=f"n{n}", spent_on="2026-03-01")
    await ok(client, "create_expense", amount="1.00", category="Food", description="later", spent_on="2026-03-02")
    await ok(client, "create_expense", amount="1.00", category="Food", description="first", spent_on="2026-02-27")
    caller = Caller(user=settings.user, default_currency="USD", timezone=UTC)
    engine = make_engine(settings.url)
    try:
        with make_session_factory(engine, read_only=True).begin() as session:
            query = imports.export_query(
                session, caller, format="csv", days=(None, None, None), category=None, currency=None
            )
            text = "".join(imports.stream_export(session, query, "csv", batch=batch))
    finally:
        engine.dispose()
    described = [line["description"] for line in csv.DictReader(io.StringIO(text))]
    assert described == ["first", *(f"n{n}" for n in range(8)), "later"]


async def test_an_exported_csv_imports_back_adding_nothing_under_its_source_with_every_amount_exact(
    client: Client,
) -> None:
    statement = "Date,Description,Amount,Currency\n" + "".join(
        f"2025-03-0{day},{what},-{amount},{currency}\n"
        for day, what, amount, currency in [
            (1, "Coffee", "3.80", "USD"),
            (1, "Coffee", "3.80", "USD"),
            (2, '"Taxi, airport"', "1.250", "KWD"),
            (3, "Ramen", "1200", "JPY"),
        ]
    )
    first = await ok(client, "import_expenses_csv", csv_text=statement, source="card", dry_run=False)
    exported = await ok(client, "export_expenses")

    again = await ok(client, "import_expenses_csv", csv_text=exported["text"], source="card", dry_run=False)

    assert (first["added"], again["added"], again["duplicates"]) == (4, 0, 4)
    assert again["format"]["columns_inferred"] is True
    assert [row["amount"] for row in again["preview"]] == ["3.80", "3.80", "1.250", "1200"]
    kwd_only = "\n".join(exported["text"].splitlines()[i] for i in (0, 3)) + "\n"  # 1.250 alone is no puzzle
    assert (await ok(client, "import_expenses_csv", csv_text=kwd_only, source="other"))["added"] == 1


# --- the round trip as a property (SQLite: the same code runs on every backend above) --------------------

CURRENCIES = {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3}
TEXT = st.text(
    st.characters(categories=["L", "N", "P", "Zs"], exclude_characters=";\t\u2028\u2029"), min_size=1, max_size=40
).filter(lambda text: text.strip() != "")


@st.composite
def statement_rows(draw: st.DrawFn) -> list[tuple[date, int, str, str]]:
    """Rows as (day, amount in minor units, currency, description); identical rows are likely."""
    pool = draw(
        st.lists(
            st.tuples(
                st.dates(date(2000, 1, 1), date(2030, 12, 31)),
                st.integers(1, 10**8),
                st.sampled_from(sorted(CURRENCIES)),
                TEXT,
            ),
            min_size=1,
            max_size=8,
        )
    )
    return draw(st.lists(st.sampled_from(pool), min_size=1, max_size=25))


def bank_csv(rows: list[tuple[date, int, str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["Date", "Description", "Amount", "Currency"])
    for day, minor, currency, description in rows:
        writer.writerow([day.isoformat(), description, "-" + format_amount(minor, currency), currency])
    return out.getvalue()


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(make_settings(f"sqlite:///{tmp_path_factory.mktemp('roundtrip') / 'b.sqlite3'}").url)
    upgrade_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=statement_rows())
def test_import_export_import_adds_nothing_and_keeps_every_amount_exact(
    sqlite_engine: Engine, rows: list[tuple[date, int, str, str]]
) -> None:
    factory = make_session_factory(sqlite_engine)
    caller = Caller(user=f"u-{uuid.uuid4().hex}", default_currency="USD", timezone=UTC)
    options = StatementOptions(source="bank", decimal_separator=".")

    def run_import(text: str, options: StatementOptions) -> Any:
        return run_in_transaction(
            factory, lambda s: imports.import_statement(s, caller, imports.Statement(text), options, dry_run=False)
        )

    first = run_import(bank_csv(rows), options)
    exported = run_in_transaction(
        factory,
        lambda s: imports.export_expenses(
            s, caller, format="csv", days=(None, None, None), category=None, currency=None, limit=5000, cursor=None
        ),
    )
    again = run_import(exported.text, StatementOptions(source="bank"))

    assert (first.added, first.rejected, first.duplicates) == (len(rows), 0, 0)
    assert (again.added, again.duplicates, again.rejected) == (0, len(rows), 0)
    written = [
        (line["date"], line["amount"], line["currency"], line["description"])
        for line in csv.DictReader(io.StringIO(exported.text))
    ]
    expected = [
        (day.isoformat(), format_amount(minor, currency), currency, " ".join(description.split()))
        for day, minor, currency, description in rows
    ]
    assert Counter(written) == Counter(expected)


# --- the command line ------------------------------------------------------------------------------------


@pytest.fixture
def cli_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    return cli_environment(monkeypatch, tmp_path)


def statement_file(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / "statement.csv"
    lines = [f"2025-{1 + i % 12:02d}-{1 + i % 28:02d},Shop {i},-{1 + i % 97}.{i % 100:02d}" for i in range(rows)]
    path.write_text("Date,Description,Amount\n" + "\n".join(lines) + "\n")
    return path


def test_the_export_command_writes_the_whole_csv_to_a_file_and_json_to_stdout(
    cli_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(statement_file(tmp_path, 2500))]) == 0
    capsys.readouterr()
    output = tmp_path / "out" / "expenses.csv"
    output.parent.mkdir()

    assert main(["export", "--output", str(output)]) == 0
    with output.open() as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 2500 and list(lines[0]) == HEADER.split(",")
    assert [p.name for p in output.parent.iterdir()] == ["expenses.csv"]  # no partial file left

    assert main(["export", "--format", "json", "--start-date", "2025-03-01", "--end-date", "2025-03-31"]) == 0
    objects = json.loads(capsys.readouterr().out)
    assert objects and {o["date"][:7] for o in objects} == {"2025-03"}


def test_the_export_command_refuses_a_bad_filter_and_writes_nothing(
    cli_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.csv"
    with pytest.raises(SystemExit) as refused:
        main(["export", "--category", "Nope", "--output", str(output)])
    assert "budget-mcp: no category 'Nope'" in str(refused.value.code)
    with pytest.raises(SystemExit) as bad_date:
        main(["export", "--start-date", "2025-02-30"])
    assert "2025-02-30 is not a real calendar date" in str(bad_date.value.code)
    assert not output.exists()


def test_the_installed_export_command_streams_to_stdout(cli_database: str, tmp_path: Path) -> None:
    assert main(["import", str(statement_file(tmp_path, 3000))]) == 0
    env = {**os.environ, "DATABASE_URL": cli_database, "BUDGET_MCP_USER": "alice"}
    done = subprocess.run(
        [sys.executable, "-m", "budget_mcp", "export", "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(HEADER + "\n")
    assert len(done.stdout.splitlines()) == 3001
    assert done.stderr == ""
    first_rows = subprocess.run(  # a reader that stops early is no error
        f"{sys.executable} -m budget_mcp export | head -3",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert first_rows.stdout.splitlines()[0] == HEADER and len(first_rows.stdout.splitlines()) == 3
    assert "Traceback" not in first_rows.stderr
