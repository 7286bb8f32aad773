"""Statement import against a raw bulk insert of the same rows, on SQLite and PostgreSQL, in the same run.

    .venv/bin/python benchmarks/import_bench.py --output benchmarks/results/import.md   # 100k rows (~5 min)
    .venv/bin/python benchmarks/import_bench.py --quick                                 # CI: 3k rows (~20 s)
    .venv/bin/python benchmarks/import_bench.py --rows 20000 --repeats 5 --no-postgres

For each database and repeat, on a fresh database each time:

- **raw**: the statement's rows, already converted to column values, inserted into ``expenses`` with one
  executemany (SQLAlchemy Core) in one transaction: the floor for writing these rows at all;
- **import**: ``imports.import_statement`` on the CSV text, as the ``import_expenses_csv`` tool runs it
  (one transaction through ``transactions.run_in_transaction``, without the MCP layer): parsing, the
  duplicate lookup, the category rules, the bulk inserts of expenses and fingerprints, the audit entry;
- **preview**: the same call with ``dry_run=True`` (the same work, rolled back);
- **re-import**: the same file again (every row a duplicate: parsing and the lookups, no insert);
- **parse**: ``statements.parse_statement`` alone, in memory.

Reported: the median over the repeats (with the range) and import ÷ raw (target: at most 3). Checked (exit
status 1 if one fails): the raw insert and the import store exactly the statement's expenses (count and
total in cents per currency), the rules filed what they match, the preview left the database as it was, and
the re-import added nothing. Times are reported, never asserted. The report (markdown) goes to stdout and
with --output FILE to that file; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import procs
from procs import REPO, Spread, log
from sqlalchemy import Engine, func, insert, select

from budget_mcp import imports
from budget_mcp.config import Settings
from budget_mcp.db import make_engine, make_session_factory, upgrade_schema
from budget_mcp.models import Category, Expense, User
from budget_mcp.money import format_amount
from budget_mcp.schemas import StatementOptions
from budget_mcp.service import Caller, create_category
from budget_mcp.statements import parse_statement
from budget_mcp.transactions import run_in_transaction

sys.path.insert(0, str(REPO / "tests"))
from pgserver import PostgresInstance, PostgresUnavailable, running_postgres

USER = "bench"
MERCHANTS = 400  # distinct merchants: statements repeat a few hundred payees
RULES = {"coffee": "Coffee", "market": "Groceries", "rail": "Transport", "cinema": "Fun", "pharmacy": "Health"}
CATEGORIES = ("Coffee", "Groceries", "Transport", "Fun", "Health")
TARGET = 3.0


@dataclass(frozen=True)
class Plan:
    rows: int
    repeats: int
    postgres: bool = True


FULL = Plan(rows=100_000, repeats=3)
QUICK = Plan(rows=3_000, repeats=1)


# --- the statement ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    day: date
    merchant: str
    description: str
    minor: int
    currency: str


def statement_rows(count: int) -> list[Row]:
    """Row i is a pure function of i: a year of card payments, one in ten in EUR, a few identical pairs."""
    kinds = ("Coffee House", "Fresh Market", "City Rail", "Cinema Roxy", "Pharmacy Plus", "Hardware Store")
    rows = []
    for i in range(count):
        n = i - i % 50 if i % 50 == 1 else i  # every 50th row repeats the one before: identical rows stay apart
        kind = kinds[n % len(kinds)]
        merchant = f"{kind} {n % MERCHANTS:03d}"
        rows.append(
            Row(
                day=date(2025, 1, 1) + timedelta(days=n % 365),
                merchant=merchant,
                description=f"Card payment {merchant}",
                minor=100 + (n * 7919) % 25_000,
                currency="EUR" if n % 10 == 0 else "USD",
            )
        )
    return rows


def statement_csv(rows: Sequence[Row]) -> str:
    lines = ["Date,Merchant,Description,Amount,Currency"]
    lines += [
        f"{r.day.isoformat()},{r.merchant},{r.description},-{format_amount(r.minor, r.currency)},{r.currency}"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def expected_category(row: Row) -> str:
    folded = row.merchant.casefold()
    matches = [pattern for pattern in RULES if pattern in folded]
    return RULES[max(matches, key=len)] if matches else "Uncategorized"


# --- databases ----------------------------------------------------------------------------------------


@dataclass
class Measured:
    raw: list[float] = field(default_factory=list)
    imported: list[float] = field(default_factory=list)
    preview: list[float] = field(default_factory=list)
    again: list[float] = field(default_factory=list)


@dataclass
class Results:
    plan: Plan
    parse: list[float] = field(default_factory=list)
    measured: dict[str, Measured] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    postgres_version: str | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def check(self, name: str, passed: bool, detail: str = "") -> None:
        """Record a check; repeated for every repeat, it passes only if it passed every time."""
        if not passed:
            log(f"CHECK FAILED: {name}: {detail}")
        for index, (known, before, first_detail) in enumerate(self.checks):
            if known == name:
                self.checks[index] = (name, before and passed, first_detail or (detail if not passed else ""))
                return
        self.checks.append((name, passed, detail if not passed else ""))


@contextmanager
def fresh_database(kind: str, workdir: Path, postgres: PostgresInstance | None) -> Iterator[Engine]:
    """A new, migrated database with the benchmark user and its categories and rules."""
    name = f"import_{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        url = f"sqlite:///{workdir / (name + '.sqlite3')}"
    else:
        assert postgres is not None
        url = postgres.create_database(name)
    engine = make_engine(Settings(database_url=url, _env_file=None).url)  # type: ignore[call-arg]
    try:
        upgrade_schema(engine)
        caller = bench_caller()
        with make_session_factory(engine).begin() as session:
            for category in CATEGORIES:
                create_category(session, caller, category)
            for pattern, category in RULES.items():
                imports.add_category_rule(session, caller, pattern, category, dry_run=False)
        yield engine
    finally:
        engine.dispose()
        if postgres is not None and kind != "sqlite":
            postgres.drop_database(name)


def bench_caller() -> Caller:
    return Caller(user=USER, default_currency="USD", timezone=UTC)


def stored(engine: Engine) -> dict[str, tuple[int, int]]:
    """Per currency: how many expenses and their total in cents."""
    with engine.connect() as connection:
        query = select(Expense.currency, func.count(), func.sum(Expense.amount_minor)).group_by(Expense.currency)
        return {currency: (count, int(total)) for currency, count, total in connection.execute(query)}


def expected_totals(rows: Sequence[Row]) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for row in rows:
        count, total = found.get(row.currency, (0, 0))
        found[row.currency] = (count + 1, total + row.minor)
    return found


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def raw_insert(engine: Engine, rows: Sequence[Row]) -> float:
    """The floor: the same rows as column values (categories resolved), one executemany, one transaction."""
    with engine.connect() as connection:
        user_id = connection.execute(select(User.id).where(User.name == USER)).scalar_one()
        found = connection.execute(select(Category.name, Category.id).where(Category.user_id == user_id))
        categories = {name: category_id for name, category_id in found}
    fallback = categories["Coffee"]  # raw rows need some category; which one does not change the cost
    now = datetime.now(UTC)
    values = [
        {
            "user_id": user_id,
            "category_id": categories.get(expected_category(r), fallback),
            "amount_minor": r.minor,
            "currency": r.currency,
            "spent_on": r.day,
            "description": r.description,
            "merchant": r.merchant,
            "notes": None,
            "created_at": now,
            "updated_at": now,
        }
        for r in rows
    ]
    start = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(insert(Expense), values)
    return time.perf_counter() - start


def run_import(engine: Engine, text: str, *, dry_run: bool) -> Any:
    return run_in_transaction(
        make_session_factory(engine),
        lambda session: imports.import_statement(
            session,
            bench_caller(),
            imports.Statement(text),
            StatementOptions(source="bench"),
            dry_run=dry_run,
            preview_limit=200,
        ),
        dry_run=dry_run,
    )


def measure(
    kind: str,
    plan: Plan,
    rows: Sequence[Row],
    text: str,
    workdir: Path,
    results: Results,
    postgres: PostgresInstance | None = None,
) -> None:
    measured = results.measured.setdefault(kind, Measured())
    expected = expected_totals(rows)
    for repeat in range(plan.repeats):
        log(f"{kind}: repeat {repeat + 1} of {plan.repeats}")
        with fresh_database(kind, workdir, postgres) as engine:
            measured.raw.append(raw_insert(engine, rows))
            results.check(f"{kind}: the raw insert stored every row", stored(engine) == expected, str(stored(engine)))
        with fresh_database(kind, workdir, postgres) as engine:  # right after the raw insert: a fair pair
            seconds, done = timed(lambda engine=engine: run_import(engine, text, dry_run=False))
            measured.imported.append(seconds)
            results.check(
                f"{kind}: the import stored exactly the statement's expenses (count, cents per currency)",
                stored(engine) == expected and done.added == len(rows),
                f"{stored(engine)} vs {expected}",
            )
            wanted: dict[str, int] = {}
            for row in rows:
                wanted[expected_category(row)] = wanted.get(expected_category(row), 0) + 1
            results.check(f"{kind}: the rules filed what they match", done.categories == wanted, str(done.categories))
            seconds, again = timed(lambda engine=engine: run_import(engine, text, dry_run=False))
            measured.again.append(seconds)
            results.check(
                f"{kind}: importing the file again added nothing",
                again.added == 0 and again.duplicates == len(rows) and stored(engine) == expected,
            )
        with fresh_database(kind, workdir, postgres) as engine:
            seconds, preview = timed(lambda engine=engine: run_import(engine, text, dry_run=True))
            measured.preview.append(seconds)
            results.check(f"{kind}: the preview changed nothing", stored(engine) == {}, str(stored(engine)))
            results.check(
                f"{kind}: the preview announced what the import did",
                (preview.added, preview.categories) == (done.added, done.categories),
            )


def execute(plan: Plan) -> Results:
    results = Results(plan)
    results.load_before = procs.load_average()
    rows = statement_rows(plan.rows)
    text = statement_csv(rows)
    log(f"statement: {plan.rows:,} rows, {len(text.encode()):,} bytes")
    for _ in range(plan.repeats):
        results.parse.append(timed(lambda: parse_statement(text, source="bench", default_currency="USD"))[0])
    with tempfile.TemporaryDirectory(prefix="budget-import-bench-") as workdir:
        measure("sqlite", plan, rows, text, Path(workdir), results)
        if plan.postgres:
            log("starting a throwaway PostgreSQL 15 (TLS, SCRAM)")
            with running_postgres() as postgres:
                engine = make_engine(Settings(database_url=postgres.url(), _env_file=None).url)  # type: ignore[call-arg]
                with engine.connect() as connection:
                    results.postgres_version = connection.exec_driver_sql("SHOW server_version").scalar()
                engine.dispose()
                measure("postgresql", plan, rows, text, Path(workdir), results, postgres)
    results.load_after = procs.load_average()
    return results


# --- the report ---------------------------------------------------------------------------------------


def seconds(values: Sequence[float]) -> str:
    spread = Spread.of(values)
    return f"{spread.median:.2f} ({spread.low:.2f}\u2013{spread.high:.2f})" if len(values) > 1 else f"{values[0]:.2f}"


def markdown(results: Results) -> str:
    plan = results.plan
    lines = [
        "# Statement import: budget-mcp against a raw bulk insert",
        "",
        f"{plan.rows:,} statement rows, {plan.repeats} repeat(s) on a fresh database each; seconds, median "
        "(range). *raw*: the same rows as column values, one executemany in one transaction. *import*: "
        "`import_expenses_csv`'s use case on the CSV text (parse, duplicate lookup, rules, bulk inserts of "
        "expenses and fingerprints, audit entry), one transaction. Target: import ÷ raw at most "
        f"{TARGET:g}. Parsing alone: {seconds(results.parse)} s.",
        "",
        "Each repeat times the raw insert and then the import, so *import ÷ raw* is the median of the repeats' "
        "own ratios (with their range): a busy machine slows both halves of a pair alike.",
        "",
        "| Database | Raw insert | Import | Import ÷ raw | Preview (dry run) | Re-import (all duplicates) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, measured in results.measured.items():
        ratios = [imported / raw for imported, raw in zip(measured.imported, measured.raw, strict=True)]
        ratio = statistics.median(ratios)
        spread = f" ({min(ratios):.2f}\u2013{max(ratios):.2f})" if len(ratios) > 1 else ""
        verdict = "" if ratio <= TARGET else ", over target"
        lines.append(
            f"| {kind} | {seconds(measured.raw)} | {seconds(measured.imported)} | {ratio:.2f}{spread}{verdict} "
            f"| {seconds(measured.preview)} | {seconds(measured.again)} |"
        )
    lines += ["", "## Checks", "", "| Check | Result | Detail |", "|---|---|---|"]
    lines += [
        f"| {name} | {'pass' if ok else 'fail'} | {detail if not ok else ''} |" for name, ok, detail in results.checks
    ]
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in procs.machine_facts(results.postgres_version)]
    before = ", ".join(f"{v:.2f}" for v in results.load_before)
    after = ", ".join(f"{v:.2f}" for v in results.load_after)
    lines.append(f"| Load average | {before} before, {after} after |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"a small, fast run for CI ({QUICK.rows:,} rows)")
    parser.add_argument("--rows", type=int, help=f"statement rows (default {FULL.rows:,})")
    parser.add_argument("--repeats", type=int, help="repeats per database")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only (no PostgreSQL server binaries)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="also write the report to FILE")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    plan = Plan(rows=args.rows or plan.rows, repeats=args.repeats or plan.repeats, postgres=not args.no_postgres)
    return plan, args


def main(argv: Sequence[str] | None = None) -> int:
    plan, args = parse_args(argv)
    try:
        results = execute(plan)
    except PostgresUnavailable as error:
        print(f"could not start PostgreSQL ({error}); use --no-postgres to run on SQLite only", file=sys.stderr)
        return 2
    text = markdown(results)
    sys.stdout.write(text)
    if args.output:
        args.output.write_text(text)
    return 0 if all(passed for _, passed, _ in results.checks) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
