"""The dashboard App as the official MCP Inspector (CLI mode, pinned in e2e/) sees it over stdio: with
``--app-info --advertise-apps`` it reports the App on exactly the tools bound to it (the ui:// resource, its
MIME type and a CSP that allows no domain), and without Apps the same tools answer with their data as before."""

from __future__ import annotations

import json
from pathlib import Path

import anyio

from conftest import make_settings
from dashboard_seed import MONTH, TODAY, seed_quarter
from helpers import client_at
from test_inspector import STDIO_USER, Inspector, call, stdio_target, structured

DASHBOARD_URI = "ui://budget-mcp/dashboard.html"
BOUND = {"spending_dashboard", "budget_status", "summarize_spending"}
NO_DOMAINS = {"connectDomains": [], "resourceDomains": [], "frameDomains": [], "baseUriDomains": []}


def seeded_database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'inspector-dashboard.sqlite3'}"

    async def seed() -> None:
        async with client_at(make_settings(url, user=STDIO_USER), TODAY) as client:
            await seed_quarter(client)

    anyio.run(seed)
    return url


def test_the_inspector_reports_the_dashboard_app_on_the_reporting_tools_and_they_still_answer_without_it(
    tmp_path: Path,
) -> None:
    inspect = Inspector(stdio_target(seeded_database(tmp_path), tmp_path), tmp_path / "home")
    probe = inspect("--method", "tools/list", "--app-info", "--advertise-apps")
    assert probe.exit_code == 0, probe
    apps = {info["toolName"]: info for info in map(json.loads, probe.stdout.splitlines())}
    assert {name for name, info in apps.items() if info["hasApp"]} == BOUND, probe
    for name in BOUND:
        assert apps[name]["resourceUri"] == DASHBOARD_URI
        assert apps[name]["resourceMimeType"] == "text/html;profile=mcp-app"
        assert apps[name]["csp"] == NO_DOMAINS  # the view reaches no network

    plain, resource = inspect.together(
        call("spending_dashboard", month=MONTH),
        ["--method", "resources/read", "--uri", DASHBOARD_URI],
    )
    board = structured(plain)
    assert board["by_category"]["totals"] == [
        {"currency": "EUR", "total": "80.00", "count": 1},
        {"currency": "USD", "total": "1782.10", "count": 6},
    ]
    assert [(b["category"], b["spent"], b["over"]) for b in board["budget_status"]["budgets"]] == [
        ("Dining", "130.00", True),
        ("Groceries", "452.10", True),
        ("Rent", "1200.00", False),
    ]
    assert json.loads(plain.result["content"][0]["text"]) == board  # text-only clients read the same data
    (contents,) = resource.result["contents"]
    assert contents["mimeType"] == "text/html;profile=mcp-app", resource
    assert contents["text"].startswith("<!doctype html>") and "http://" not in contents["text"]
