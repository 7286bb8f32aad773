"""``budget-mcp report``: a month's spending, budgets and trend as a person reads them at a terminal, checked
line by line on a seeded month in a fixed-width terminal (100 columns), plain when piped, coloured on a TTY."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from rich.console import Console
from sqlalchemy import Engine

from budget_mcp.cli import main
from budget_mcp.config import Settings
from budget_mcp.db import make_engine
from budget_mcp.schemas import SpendingDashboard
from budget_mcp.terminal import render

from conftest import make_settings
from dashboard_seed import MONTH, TODAY, decimal_of, seed_quarter, spent_by_category
from helpers import client_at, ok

ANSI = re.compile(r"\x1b\[")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A seeded SQLite database (the report reads what the tools wrote; the SQL is the same on PostgreSQL)."""
    seeded = make_settings(f"sqlite:///{tmp_path / 'report.sqlite3'}")

    async def seed() -> None:
        async with client_at(seeded, TODAY) as client:
            await seed_quarter(client)

    anyio.run(seed)
    return seeded


@pytest.fixture
def db(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Settings) -> Iterator[None]:
    """The command's environment: only these settings, a 100-column terminal, logging restored afterwards."""
    for name in list(os.environ):
        if name == "DATABASE_URL" or name.startswith("BUDGET_MCP_") or name in ("NO_COLOR", "FORCE_COLOR"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", settings.database_url.get_secret_value())
    monkeypatch.setenv("BUDGET_MCP_USER", "alice")
    monkeypatch.setenv("BUDGET_MCP_TIMEZONE", "UTC")
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def report(capsys: pytest.CaptureFixture[str], *arguments: str) -> list[str]:
    assert main(["report", *arguments]) == 0
    out = capsys.readouterr().out
    assert not ANSI.search(out), "piped output must carry no colour codes"
    return [line.rstrip() for line in out.splitlines()]


def test_report_prints_a_months_spending_budgets_and_trend_with_the_databases_amounts(
    terminal: None, capsys: pytest.CaptureFixture[str], db: Engine
) -> None:
    lines = report(capsys, "--month", MONTH)
    assert lines[0] == "Spending in March 2026"  # a past month (today is later): no pace
    assert max(map(len, lines)) <= 100
    for (category, _currency), (minor, _count) in spent_by_category(db, MONTH).items():
        row = next(line for line in lines if line.startswith(f"│ {category} "))
        assert f" {decimal_of(minor):,} │" in row, row
    assert "│ Groceries │     452.10 │ 25.37% │ █████████                │" in lines
    assert "│ Total     │   1,782.10 │        │ 6 expenses               │" in lines
    assert "│ Total    │      80.00 │         │ 1 expense                │" in lines  # EUR apart, never added
    assert "│ Dining    │     130.00 / 100.00 USD │ ▓▓▓▓▓▓▓▓▓▓▓▓ 130.00% │ OVER by 30.00 │" in lines
    assert "│ Groceries │     452.10 / 400.00 USD │ ▓▓▓▓▓▓▓▓▓▓▓▓ 113.02% │ OVER by 52.10 │" in lines
    assert "│ Rent      │ 1,200.00 / 1,200.00 USD │ ████████████ 100.00% │ 0.00 left     │" in lines
    assert "Not covered by a budget: Travel 80.00 EUR" in lines
    assert "│ 2026-01   │   1,480.40 │ ████████████████████     │" in lines
    assert "│ 2026-03 < │   1,782.10 │ ████████████████████████ │" in lines
    assert "total 4,932.49, average 822.08 a month" in lines


def test_report_of_a_named_month_and_a_shorter_trend(terminal: None, capsys: pytest.CaptureFixture[str]) -> None:
    lines = report(capsys, "--period", "this_month", "--months", "2")
    assert lines[0].startswith("Spending in ") and "so far" in lines[0]
    assert sum(line.startswith("Last 2 months, USD") for line in lines) == 1


def test_report_refuses_a_month_that_does_not_exist_and_says_why(terminal: None) -> None:
    with pytest.raises(SystemExit, match="2026-13 is not a month"):
        main(["report", "--month", "2026-13"])


def current_month(settings: Settings) -> SpendingDashboard:
    """The seeded month seen on its 15th day, as the server computes it."""

    async def fetch() -> SpendingDashboard:
        async with client_at(settings, TODAY) as client:
            return SpendingDashboard.model_validate(await ok(client, "spending_dashboard", month=MONTH))

    return anyio.run(fetch)


def test_the_current_month_shows_each_budgets_pace_and_colours_only_on_a_terminal(settings: Settings) -> None:
    board = current_month(settings)
    piped, tty = io.StringIO(), io.StringIO()
    render(board, Console(file=piped, width=100))
    render(board, Console(file=tty, width=100, force_terminal=True, color_system="standard"))
    lines = [line.rstrip() for line in piped.getvalue().splitlines()]
    assert lines[0] == "Spending in March 2026 (so far: 48.39% of the month has passed)"
    # The even-pace point (| at 48% of the bar) and where the month ends at this pace.
    assert "│ Dining    │     130.00 / 100.00 USD │ ▓▓▓▓▓▓|▓▓▓▓▓ 130.00% │ OVER by 30.00 │ ahead -> 268.67   │" in lines
    assert "│ Rent      │ 1,200.00 / 1,200.00 USD │ ██████|█████ 100.00% │ 0.00 left     │ ahead -> 2,480.00 │" in lines
    assert not ANSI.search(piped.getvalue())
    coloured = tty.getvalue()
    assert ANSI.search(coloured)
    assert "\x1b[1;31mOVER by 52.10" in coloured  # over budget in bold red
