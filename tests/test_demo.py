"""`budget-mcp demo`: a year of sample spending in a throwaway database and a scripted agent session with
the real server over stdio. What it prints is exact (decimal strings, the same sums SQL gives) and
depends only on the date; by default nothing is left behind."""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from budget_mcp.demo import MONTHS, DemoResult, run_demo, sample_year

from helpers import TOOLS

TODAY = date(2026, 3, 15)  # a fixed day: last month is 2026-02, the year runs 2025-04 to 2026-03
TOOLS_CALLED = [
    "list_categories",
    "summarize_spending",
    "budget_status",
    "spending_trend",
    "top_expenses",
    "search_expenses",
    "create_expense",
    "list_changes",
    "undo_change",
    "create_expense",
]


@dataclass(frozen=True)
class Run:
    result: DemoResult
    output: str
    temp: Path


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One demo over stdio, with its database kept (in a temp folder of the test's own)."""
    temp = tmp_path_factory.mktemp("kept")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(temp))
        out = io.StringIO()
        result = run_demo(out, today=TODAY, keep=True)
    yield Run(result, out.getvalue(), temp)


def step(output: str, number: int) -> str:
    """The printed text of one numbered step."""
    found = re.search(rf"^\[{number}\] .*?(?=^\[{number + 1}\] |^That is what)", output, re.MULTILINE | re.DOTALL)
    assert found, f"step {number} is missing"
    return found.group(0)


def sql_total(database: Path, sql: str, **params: object) -> dict[str, int]:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            return {currency: total for currency, total in connection.execute(text(sql), params)}
    finally:
        engine.dispose()


def minor(amount: str) -> int:
    return int(amount.replace(".", ""))


def test_the_demo_runs_end_to_end_over_stdio_and_exits_0(kept: Run) -> None:
    assert kept.result.exit_code == 0
    assert kept.result.steps == len(TOOLS_CALLED)
    assert "over stdio" in kept.output
    assert f"The agent connects and lists the tools: {len(TOOLS)} of them." in kept.output
    assert kept.result.database is not None and kept.result.database.is_file()
    assert kept.result.database.is_relative_to(kept.temp)
    assert f"The demo database is kept: {kept.result.database}" in kept.output


def test_each_step_prints_the_call_and_what_came_back(kept: Run) -> None:
    calls = re.findall(r"^    -> (\w+) (\{.*\})$", kept.output, re.MULTILINE)
    assert [tool for tool, _ in calls] == TOOLS_CALLED
    assert calls[1][1] == '{"start_date": "2026-02-01", "end_date": "2026-02-28"}'
    for number in range(1, len(TOOLS_CALLED) + 1):
        assert re.search(r"^    <- \S", step(kept.output, number), re.MULTILINE), f"step {number} shows no result"
    assert "did you mean Groceries?" in step(kept.output, 10)
    assert "error (is_error: true)" in step(kept.output, 10)


def test_the_totals_it_prints_equal_sql_sums_over_its_database(kept: Run) -> None:
    assert kept.result.database is not None
    printed = dict(re.findall(r"^       total (USD|EUR) (\d+\.\d\d) \(\d+ expenses\)$", step(kept.output, 2), re.M))
    assert printed, "step 2 prints no total"
    february = sql_total(
        kept.result.database,
        "SELECT currency, SUM(amount_minor) FROM expenses WHERE spent_on BETWEEN :a AND :b GROUP BY currency",
        a="2026-02-01",
        b="2026-02-28",
    )
    assert {c: minor(t) for c, t in printed.items()} == february
    year = dict(re.findall(r"^       total (USD|EUR) (\d+\.\d\d), on average", step(kept.output, 4), re.M))
    whole = sql_total(kept.result.database, "SELECT currency, SUM(amount_minor) FROM expenses GROUP BY currency")
    assert {c: minor(t) for c, t in year.items()} == whole
    assert set(whole) == {"USD", "EUR"}


def test_the_expense_it_records_is_undone(kept: Run) -> None:
    assert kept.result.database is not None
    found = sql_total(kept.result.database, "SELECT description, COUNT(*) FROM expenses GROUP BY description")
    assert "Flat white" not in found
    assert re.search(r"undid change \d+ \(create_expense, 1 row\)", step(kept.output, 9))


def test_amounts_are_printed_exactly_never_as_floats(kept: Run) -> None:
    numbers = re.findall(r"(?<![\w.-])-?\d+\.\d+(?![\w.])", kept.output)
    assert numbers, "no amounts printed"
    assert all(re.fullmatch(r"-?\d+\.\d\d", n) for n in numbers), [n for n in numbers if len(n.split(".")[1]) != 2]
    assert "e+" not in kept.output and "e-0" not in kept.output


def test_by_default_nothing_is_left_behind_and_the_output_is_the_same_in_process(
    kept: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out = io.StringIO()
    result = run_demo(out, today=TODAY, transport="memory")
    assert (result.exit_code, result.database) == (0, None)
    assert list(tmp_path.iterdir()) == []
    assert "The demo database is removed" in out.getvalue()

    def session(output: str) -> str:  # from the first call to the last result
        return output[output.index("[1] ") : output.index("That is what")]

    assert session(out.getvalue()) == session(kept.output)


def test_the_sample_year_is_deterministic_exact_and_ends_today() -> None:
    year = sample_year(TODAY)
    assert year == sample_year(TODAY)
    assert all(isinstance(e.amount_minor, int) and e.amount_minor > 0 for e in year)
    assert min(e.spent_on for e in year) >= date(2025, 4, 1)
    assert max(e.spent_on for e in year) <= TODAY
    assert len({(e.spent_on.year, e.spent_on.month) for e in year}) == MONTHS
    assert {e.currency for e in year} == {"USD", "EUR"}
    assert {e.category for e in year} == {
        "Rent",
        "Groceries",
        "Dining",
        "Transport",
        "Utilities",
        "Subscriptions",
        "Travel",
    }
    assert 300 < len(year) < 600
