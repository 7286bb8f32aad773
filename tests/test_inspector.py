"""End to end with the official MCP Inspector (``@modelcontextprotocol/inspector``, CLI mode) as the client:
it lists tools, resources and prompts, records a category and an expense, summarises, and reads an error
result, against the real ``budget-mcp``: over stdio on SQLite and on the test PostgreSQL, and over
streamable HTTP with a bearer token.

Every Inspector run is one process that connects, makes one request and prints the result as JSON on
stdout; it exits 5 when the result is an error result (``isError``), with an error envelope on stderr.
Over stdio each run starts its own server process (seconds, mostly Python imports), so runs that do not
depend on each other go concurrently.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from helpers import TOOLS, as_stored, empty_tables
from httpserver import create_token, running_http_server
from node_tools import INSPECTOR, node_env, require, run_node

BUDGET_MCP = Path(sys.executable).with_name("budget-mcp")  # the venv's console script
STDIO_USER = "inspector-stdio-user"
RUN_TIMEOUT = 90.0  # seconds one Inspector run (connect, one request, exit) may take
PROMPTS = {"monthly_review", "budget_checkup", "cleanup_expenses"}
REFUSED = "Error executing tool create_expense: no category 'Nope'; known: Food (create_category adds a new one)"


@dataclass(frozen=True)
class Run:
    """One Inspector run: its exit code and output."""

    argv: Sequence[str]
    exit_code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        command = " ".join(self.argv[2:])
        command = re.sub(r"Bearer \S+", "Bearer ***", command)
        return f"{command}\nexit {self.exit_code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    @property
    def result(self) -> dict[str, Any]:
        """The JSON result on stdout of a run that succeeded (or returned an error result)."""
        assert self.exit_code in (0, 5), self
        answer: dict[str, Any] = json.loads(self.stdout)
        return answer

    @property
    def error(self) -> dict[str, Any]:
        """The error envelope, the last line on stderr of a run that failed."""
        assert self.exit_code != 0, self
        envelope: dict[str, Any] = json.loads(self.stderr.strip().splitlines()[-1])["error"]
        return envelope


class Inspector:
    """``inspector --cli TARGET ...`` runs against one server: a stdio command or an HTTP URL."""

    def __init__(self, target: Sequence[str], home: Path) -> None:
        self.command = [*require(INSPECTOR), "--cli", *target]
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)

    def __call__(self, *args: str) -> Run:
        argv = [*self.command, *args]
        done = run_node(argv, node_env(self.home), self.home, timeout=RUN_TIMEOUT)
        return Run(argv, done.returncode, done.stdout, done.stderr)

    def together(self, *runs: Sequence[str]) -> list[Run]:
        """Several independent runs at once, in the order given."""
        with ThreadPoolExecutor(max_workers=len(runs)) as pool:
            return list(pool.map(lambda args: self(*args), runs))


def call(tool: str, **arguments: Any) -> list[str]:
    """The Inspector arguments of a ``tools/call`` (arguments as JSON: values pass verbatim, "12.30" too)."""
    return ["--method", "tools/call", "--tool-name", tool, "--tool-args-json", json.dumps(arguments)]


def structured(run: Run) -> dict[str, Any]:
    assert run.exit_code == 0 and run.result["isError"] is False, run
    content: dict[str, Any] = run.result["structuredContent"]
    return content


def exercise(inspect: Inspector, *, lists: bool = True) -> None:
    """List tools, resources, resource templates and prompts (unless ``lists`` is false), record a category
    and an expense, summarise it (as a tool and as a resource), and read the error result of a call naming
    an unknown category."""
    if lists:
        listed = inspect("--method", "tools/list")  # alone: on a new database this run migrates it
        tools = listed.result["tools"]
        assert listed.exit_code == 0 and {tool["name"] for tool in tools} == TOOLS, listed
        assert all(tool["description"] and tool["inputSchema"]["type"] == "object" for tool in tools)
        assert all(tool["title"] and "readOnlyHint" in tool["annotations"] for tool in tools)
    listings = (["--method", "resources/list"], ["--method", "resources/templates/list"], ["--method", "prompts/list"])
    *listed_rest, category = inspect.together(*(listings if lists else ()), call("create_category", name="Food"))
    assert as_stored(structured(category)) == {"name": "Food", "expense_count": 0}
    if lists:
        resources, templates, prompts = listed_rest
        assert [r["uri"] for r in resources.result["resources"]] == [
            "ui://budget-mcp/dashboard.html",  # the dashboard view (MCP App)
            "budget://categories",
        ], resources
        assert {t["uriTemplate"] for t in templates.result["resourceTemplates"]} == {
            "budget://months/{month}/summary",
            "budget://months/{month}/budget",
        }, templates
        assert {p["name"] for p in prompts.result["prompts"]} == PROMPTS, prompts
        assert all(p["description"] for p in prompts.result["prompts"])

    created, refused = inspect.together(
        call("create_expense", amount="12.30", description="Lunch", category="food", spent_on="2026-03-14"),
        call("create_expense", amount="5", description="x", category="Nope"),
    )
    expense = structured(created)
    assert (expense["amount"], expense["currency"], expense["category"]) == ("12.30", "USD", "Food")
    assert refused.exit_code == 5, refused  # the Inspector's exit code for an error result
    assert refused.result["isError"] is True
    assert [c["text"] for c in refused.result["content"]] == [REFUSED]
    assert refused.error["code"] == "tool_is_error", refused

    summary, month = inspect.together(
        call("summarize_spending", start_date="2026-03-01", end_date="2026-03-31"),
        ["--method", "resources/read", "--uri", "budget://months/2026-03/summary"],
    )
    totals = [{"currency": "USD", "total": "12.30", "count": 1}]
    assert structured(summary)["totals"] == totals
    assert [(g["key"], g["total"], g["share_percent"]) for g in structured(summary)["groups"]] == [
        ("Food", "12.30", "100.00")
    ]
    (contents,) = month.result["contents"]
    assert contents["mimeType"] == "application/json" and json.loads(contents["text"])["totals"] == totals, month


def stdio_target(database_url: str, home: Path) -> list[str]:
    """The venv's ``budget-mcp`` as the Inspector starts it: only these settings in its environment."""
    assert BUDGET_MCP.is_file(), f"no {BUDGET_MCP}: install the project into this environment (make venv)"
    settings = {
        "DATABASE_URL": database_url,
        "BUDGET_MCP_USER": STDIO_USER,
        "BUDGET_MCP_TIMEZONE": "UTC",
        "XDG_DATA_HOME": str(home / "xdg-data"),
    }
    return [*(arg for name, value in settings.items() for arg in ("-e", f"{name}={value}")), str(BUDGET_MCP)]


WHOSE_EXPENSES = text(
    "SELECT u.name, e.description, e.amount_minor FROM expenses e JOIN users u ON u.id = e.user_id ORDER BY e.id"
)


def stored(database_url: str) -> list[tuple[Any, ...]]:
    """Whose expenses the database holds: (user, description, amount in cents)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(WHOSE_EXPENSES)]
    finally:
        engine.dispose()


def test_the_inspector_over_stdio_lists_records_summarises_and_reads_an_error_result_on_sqlite(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'inspector.sqlite3'}"
    inspect = Inspector(stdio_target(database_url, tmp_path), tmp_path / "home")
    exercise(inspect)
    assert stored(database_url) == [(STDIO_USER, "Lunch", 1230)]
    assert not (tmp_path / "xdg-data").exists()  # nothing went to a default per-user database


@pytest.mark.postgres
def test_the_inspector_over_stdio_records_summarises_and_reads_an_error_result_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    # The lists do not depend on the database (the SQLite test reads them); each run here costs a server start.
    empty_tables(postgres_url)
    try:
        exercise(Inspector(stdio_target(postgres_url, tmp_path), tmp_path / "home"), lists=False)
        assert stored(postgres_url) == [(STDIO_USER, "Lunch", 1230)]
    finally:
        empty_tables(postgres_url)


def test_the_inspector_over_http_with_a_bearer_token_lists_records_summarises_and_reads_an_error_result(
    tmp_path: Path,
) -> None:
    require(INSPECTOR)  # before the server starts: a missing Inspector skips (fails in CI) at once
    database_url = f"sqlite:///{tmp_path / 'inspector-http.sqlite3'}"
    with running_http_server(database_url, tmp_path / "server") as server:
        issued = create_token(database_url, "inspector-http-user")
        inspect = Inspector([server.url, "--header", f"Authorization: Bearer {issued.token}"], tmp_path / "home")
        exercise(inspect)
        # Without a token the Inspector is refused, and asks for a login instead (never interactively here).
        anonymous = Inspector([server.url, "--stored-auth-only"], tmp_path / "home")("--method", "tools/list")
        assert anonymous.exit_code == 3 and anonymous.error["code"] == "auth_required", anonymous
        assert server.running, server.stderr_tail()
    assert stored(database_url) == [("inspector-http-user", "Lunch", 1230)]  # the token's user, not the server's
