"""The dashboard view (an MCP App) in a real headless Chromium. A small host page does what an Apps host does:
it loads the App's HTML from the server into a sandboxed iframe under the CSP its resource asks for (no domain
at all), answers ui/initialize with a theme and a locale, hands over a real tool result, and forwards the
view's tools/call requests to the real server on a seeded database. The numbers the view shows are checked
against the database's own sums.

Chromium is Debian's (``apt-get install chromium``; ``.ci/run`` installs it), driven by Playwright; no browser
is ever downloaded. In CI a missing Chromium fails the test; elsewhere it is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy import Engine

from budget_mcp.config import Settings

from dashboard_seed import MONTH, TODAY, budget_limits, decimal_of, seed_quarter, spent_by_category
from helpers import client_at, ok

pytestmark = pytest.mark.anyio

APP = Path(__file__).resolve().parent.parent / "budget_mcp" / "apps" / "dashboard.html"
DASHBOARD_URI = "ui://budget-mcp/dashboard.html"
SYMBOLS = {"USD": "$", "EUR": "€"}  # how en-US writes the seeded currencies

HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>test host</title></head>
<body style="margin:0;background:#888">
<iframe id="app" sandbox="allow-scripts" title="Spending dashboard" style="width:1000px;height:600px;border:0"></iframe>
<script>
const frame = document.getElementById("app");
const post = (message) => frame.contentWindow.postMessage(message, "*");
window.viewMessages = [];
window.startApp = (html, hostContext, toolInput, toolResult) => {
  window.addEventListener("message", async (event) => {
    if (event.source !== frame.contentWindow) return;
    const message = event.data;
    window.viewMessages.push(message.method || "response");
    if (message.method === "ui/initialize") {
      post({jsonrpc: "2.0", id: message.id, result: {protocolVersion: "2026-01-26",
        hostInfo: {name: "budget-mcp test host", version: "1"}, hostCapabilities: {serverTools: {}}, hostContext}});
    } else if (message.method === "ui/notifications/initialized") {
      post({jsonrpc: "2.0", method: "ui/notifications/tool-input", params: {arguments: toolInput}});
      post({jsonrpc: "2.0", method: "ui/notifications/tool-result", params: toolResult});
    } else if (message.method === "tools/call") {
      const result = await window.callServerTool(message.params.name, message.params.arguments || {});
      post({jsonrpc: "2.0", id: message.id, result});
    } else if (message.method === "ui/notifications/size-changed") {
      frame.style.height = `${message.params.height}px`;
    }
  });
  frame.srcdoc = html;
};
window.changeTheme = (theme) =>
  post({jsonrpc: "2.0", method: "ui/notifications/host-context-changed", params: {theme}});
</script>
</body></html>
"""


def chromium_path() -> str:
    found = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(found, os.X_OK):
        reason = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; .ci/run installs it, and in CI a missing browser is an error", pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


def shown(minor: int, currency: str) -> str:
    """An amount as the view must show it in en-US: the exact decimal, grouped, with the currency's symbol."""
    amount = decimal_of(minor)
    return f"{'-' if amount < 0 else ''}{SYMBOLS[currency]}{abs(amount):,}"


def with_csp(html: str, csp: dict[str, list[str]]) -> str:
    """The App's HTML under the Content-Security-Policy a host derives from the resource's ``_meta.ui.csp``:
    only the domains listed (here none) on top of the App's own inline code."""

    def sources(key: str) -> str:
        return " ".join(csp.get(key, [])) or "'none'"

    policy = (
        f"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
        f"connect-src {sources('connectDomains')}; font-src {sources('resourceDomains')}; "
        f"frame-src {sources('frameDomains')}; base-uri {sources('baseUriDomains')}"
    )
    return html.replace("<head>", f'<head>\n<meta http-equiv="Content-Security-Policy" content="{policy}">', 1)


class Host:
    """The host page in a browser tab, connected to the real server through ``client``."""

    def __init__(self, page: Page, client: Client) -> None:
        self.page = page
        self.client = client
        self.tool_calls: list[tuple[str, dict[str, Any]]] = []
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.view = page.frame_locator("#app")

    async def open(self, tool_result: Any, tool_input: dict[str, Any], *, theme: str = "light") -> None:
        resource = (await self.client.read_resource(DASHBOARD_URI)).contents[0]
        assert resource.mime_type == "text/html;profile=mcp-app"
        csp = (resource.meta or {})["ui"]["csp"]
        assert csp == {"connectDomains": [], "resourceDomains": [], "frameDomains": [], "baseUriDomains": []}
        html = with_csp(resource.text, csp)  # type: ignore[union-attr]
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: message.type == "error" and self.problems.append(message.text))
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))
        await self.page.expose_function("callServerTool", self.call_server_tool)
        await self.page.set_content(HOST_PAGE)
        context = {"theme": theme, "locale": "en-US", "displayMode": "inline", "platform": "web"}
        await self.page.evaluate(
            "([html, context, input, result]) => window.startApp(html, context, input, result)",
            [html, context, tool_input, tool_result.model_dump(mode="json", by_alias=True, exclude_none=True)],
        )

    async def call_server_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        self.tool_calls.append((name, arguments))
        result = await self.client.call_tool(name, arguments)
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)


@pytest.fixture
async def seeded(settings: Settings) -> AsyncIterator[Client]:
    async with client_at(settings, TODAY) as client:
        await seed_quarter(client)
        yield client


async def check_month(host: Host, db: Engine, month: str, title: str) -> None:
    """Every category total, budget and trend bar the view shows equals the database's."""
    view = host.view
    await expect(view.locator("#month-label")).to_have_text(title)
    spent = spent_by_category(db, month)
    for (category, currency), (minor, count) in spent.items():
        button = view.locator(f'.cat[data-category="{category}"][data-currency="{currency}"]')
        await expect(button.locator(".amount")).to_have_text(shown(minor, currency))
        await expect(button).to_have_attribute("aria-label", re.compile(f"{count} expenses?\\. Show its expenses"))
    assert await view.locator(".cat").count() == len(spent)
    for category, (currency, limit) in budget_limits(db, month).items():
        row = view.locator(f'.budget[data-category="{category}"]')
        used = spent.get((category, currency), (0, 0))[0]
        await expect(row.locator(".spent")).to_have_text(shown(used, currency))
        await expect(row.locator(".available")).to_have_text(shown(limit, currency))
        if used > limit:
            await expect(row).to_have_class(re.compile(r"\bover\b"))
            await expect(row.locator(".flag")).to_have_text(f"Over by {shown(used - limit, currency)}")
        else:
            await expect(row).not_to_have_class(re.compile(r"\bover\b"))
            await expect(row.locator(".flag")).to_have_text(f"{shown(limit - used, currency)} left")


# A browser per test: the full walk-through on SQLite and PostgreSQL, the smaller cases on SQLite.
ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_the_dashboard_shows_the_databases_numbers_switches_month_and_lists_a_categorys_expenses(
    browser: Browser, seeded: Client, db: Engine, tmp_path: Path
) -> None:
    arguments = {"month": MONTH, "months": 6}
    result = await seeded.call_tool("spending_dashboard", arguments)
    host = Host(await browser.new_page(viewport={"width": 1000, "height": 700}), seeded)
    await host.open(result, arguments)
    view = host.view

    await check_month(host, db, MONTH, "March 2026")
    # Over budget is marked, and March is the current month: its budgets show the pace (15 of 31 days).
    await expect(view.locator(".budget.over")).to_have_count(2)  # Groceries and Dining
    await expect(view.locator("#pace-note")).to_contain_text("48.4% of the month has passed")
    await expect(view.locator(".budget .pace-marker")).to_have_count(3)
    await expect(view.locator('.unbudgeted[data-category="Travel"]')).to_contain_text("€80.00")
    for month, (minor, _count) in {
        m: (sum(t for (_c, cur), (t, _n) in spent_by_category(db, m).items() if cur == "USD"), 0)
        for m in ("2025-12", "2026-01", "2026-02", "2026-03")
    }.items():
        bar = view.locator(f'g[data-month="{month}"][data-currency="USD"]')
        await expect(bar).to_have_attribute("aria-label", re.compile(re.escape(f": {shown(minor, 'USD')}.")))
    light = tmp_path / "dashboard-light.png"
    await host.page.screenshot(path=str(light), full_page=True)

    # Switching month asks the server for that month's dashboard through the host's bridge.
    await view.get_by_role("button", name="Previous month").click()
    await check_month(host, db, "2026-02", "February 2026")
    assert host.tool_calls == [("spending_dashboard", {"month": "2026-02", "months": 6})]
    await expect(view.locator(".budget .pace-marker")).to_have_count(0)  # a past month has no pace

    # A category, chosen with the keyboard, lists its expenses of the month.
    await view.locator('.cat[data-category="Groceries"]').focus()
    await host.page.keyboard.press("Enter")
    await expect(view.locator("#expense-table tbody tr")).to_have_count(
        spent_by_category(db, "2026-02")[("Groceries", "USD")][1]
    )
    assert host.tool_calls[-1] == (
        "query_expenses_by_category",
        {"category": "Groceries", "start_date": "2026-02-01", "end_date": "2026-02-28", "limit": 50},
    )
    await expect(view.locator("#expense-table caption")).to_have_text("1 expense, $310.00")
    await expect(view.locator('.cat[data-category="Groceries"]')).to_have_attribute("aria-pressed", "true")

    # The host switches to dark: the view follows.
    light_background = await view.locator("body").evaluate("body => getComputedStyle(body).backgroundColor")
    await host.page.evaluate("window.changeTheme('dark')")
    await expect(view.locator("html")).to_have_attribute("data-theme", "dark")
    dark_background = await view.locator("body").evaluate("body => getComputedStyle(body).backgroundColor")
    assert dark_background != light_background
    dark = tmp_path / "dashboard-dark.png"
    await host.page.screenshot(path=str(dark), full_page=True)
    assert light.stat().st_size > 10_000 and dark.stat().st_size > 10_000

    assert host.requests == [], "the view reached the network"
    assert host.problems == [], host.problems  # no script error, no CSP violation


@ON_SQLITE
async def test_a_budget_status_result_opens_the_dashboard_of_its_month(
    browser: Browser, seeded: Client, db: Engine
) -> None:
    arguments = {"month": "2026-01"}
    status = await seeded.call_tool("budget_status", arguments)
    host = Host(await browser.new_page(), seeded)
    await host.open(status, arguments, theme="dark")
    await check_month(host, db, "2026-01", "January 2026")
    assert host.tool_calls == [("spending_dashboard", {"month": "2026-01", "months": 6})]
    assert host.problems == []


@ON_SQLITE
async def test_an_error_result_is_shown_as_an_alert(browser: Browser, seeded: Client) -> None:
    failed = await seeded.call_tool("spending_dashboard", {"month": "2026-13"})
    assert failed.is_error
    host = Host(await browser.new_page(), seeded)
    await host.open(failed, {"month": "2026-13"})
    await expect(host.view.get_by_role("alert")).to_contain_text("2026-13 is not a month")


def test_the_view_is_self_contained_no_url_and_no_external_script() -> None:
    html = APP.read_text(encoding="utf-8")
    assert not re.search(r"https?://", html)
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, flags=re.IGNORECASE)
    assert not re.search(r"<link[^>]*\bhref\s*=", html, flags=re.IGNORECASE)
    assert not re.search(r"@import|url\(", html)


@ON_SQLITE
async def test_tools_bound_to_the_dashboard_answer_the_same_without_it(seeded: Client) -> None:
    tools = {tool.name: tool for tool in (await seeded.list_tools()).tools}
    for name in ("spending_dashboard", "budget_status", "summarize_spending"):
        assert tools[name].meta == {"ui": {"resourceUri": DASHBOARD_URI}}, name
    dashboard = await ok(seeded, "spending_dashboard", month=MONTH)
    assert dashboard["budget_status"] == await ok(seeded, "budget_status", month=MONTH)
    summary = await ok(seeded, "summarize_spending", start_date="2026-03-01", end_date="2026-03-31")
    assert dashboard["by_category"] == summary
    assert dashboard["trend"] == await ok(seeded, "spending_trend", months=6, end_month=MONTH)
    result = await seeded.call_tool("spending_dashboard", {"month": MONTH})
    assert json.loads(result.content[0].text) == dashboard  # type: ignore[union-attr]  # the text says it all
