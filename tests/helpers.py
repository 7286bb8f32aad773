"""Small helpers shared by the tests: call a tool expecting success or failure, and snapshot tables."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from mcp import Client
from sqlalchemy import Engine, create_engine, select, text

from budget_mcp.config import Settings
from budget_mcp.db import Base
from budget_mcp.server import build_server


@asynccontextmanager
async def client_at(settings: Settings, now: str) -> AsyncIterator[Client]:
    """An in-memory client to a server whose clock is stopped at ``now`` (ISO 8601 with an offset,
    e.g. "2026-03-15T23:30:00+00:00"); "today" is that instant in the settings' time zone."""
    instant = datetime.fromisoformat(now)
    assert instant.tzinfo is not None, "give the instant an offset, e.g. +00:00"
    async with Client(build_server(settings, clock=lambda: instant)) as connected:
        yield connected


async def ok(client: Client, tool: str, /, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; return its structured content."""
    result = await client.call_tool(tool, arguments)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    assert not result.is_error, f"{tool} failed: {text}"
    assert result.structured_content is not None
    return result.structured_content


_OPENING = re.compile(r"^(BEGIN[^;]*); (SET LOCAL statement_timeout = \d+); ")


def statements_in(sql: str) -> list[str]:
    """The statements one execute sends: on PostgreSQL a transaction's first carries its BEGIN and SET LOCAL."""
    opening = _OPENING.match(sql)
    return [opening.group(1), opening.group(2), sql[opening.end() :]] if opening else [sql]


def as_stored(answer: dict[str, Any]) -> dict[str, Any]:
    """A write's answer without its change_id: the row as get_expense and the listings show it."""
    return {key: value for key, value in answer.items() if key != "change_id"}


async def fails(client: Client, tool: str, /, **arguments: Any) -> str:
    """Call a tool that must fail with an error result; return the message the model would read."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} should have failed but returned {result.structured_content}"
    message = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(message, str)
    return message


# Every tool, by kind: read-only mode offers exactly READ_TOOLS.
READ_TOOLS = frozenset(
    {
        "query_expenses_by_category",
        "summarize_spending",
        "search_expenses",
        "get_expense",
        "list_categories",
        "budget_status",
        "spending_trend",
        "compare_periods",
        "top_expenses",
        "list_changes",
        "export_expenses",
        "list_category_rules",
        "spending_dashboard",
    }
)
WRITE_TOOLS = frozenset(
    {
        "create_expense",
        "update_expense",
        "delete_expense",
        "recategorize_expenses",
        "create_category",
        "rename_category",
        "merge_categories",
        "delete_category",
        "set_budget",
        "delete_budget",
        "undo_change",
        "import_expenses_csv",
        "add_category_rule",
        "delete_category_rule",
    }
)
DESTRUCTIVE_TOOLS = frozenset(
    {"delete_expense", "merge_categories", "delete_category", "delete_budget", "undo_change", "delete_category_rule"}
)
TOOLS = READ_TOOLS | WRITE_TOOLS


# The expense the validation suites seed and then try, and fail, to change.
LUNCH: dict[str, Any] = {
    "amount": "12.30",
    "description": "Lunch",
    "category": "Food",
    "spent_on": "2026-03-14",
    "merchant": "Deli",
    "notes": "with Sam",
}


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order: equal snapshots mean nothing changed."""
    with engine.connect() as connection:
        return {
            table.name: [tuple(row) for row in connection.execute(select(table).order_by(*table.primary_key))]
            for table in Base.metadata.sorted_tables
        }


def empty_tables(url: str) -> None:
    """Empty every table of a migrated PostgreSQL database (the shared test database) and reset its ids."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


async def seed_categories(client: Client, *names: str) -> None:
    for name in names:
        await ok(client, "create_category", name=name)


def cli_database(monkeypatch: Any, tmp_path: Any) -> str:
    """Point the ``budget-mcp`` command (``budget_mcp.cli.main``) at a new SQLite file, for user alice, with no
    other settings from the machine; returns the URL."""
    import os

    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    for name in list(os.environ):
        if name == "DATABASE_URL" or name.startswith("BUDGET_MCP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("BUDGET_MCP_USER", "alice")
    monkeypatch.chdir(tmp_path)
    return url
