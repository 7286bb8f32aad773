"""``budget-mcp demo``: a year of sample spending in a throwaway database, and a short scripted session of
an agent with the real server, printed as the agent would see it.

The server runs as MCP clients run it: ``python -m budget_mcp`` over stdio, configured by environment
variables, migrating its database on start. The session calls the tools through the SDK's client with
explicit dates, so what it prints depends only on ``today`` (and the server's own clock plays no part).
Amounts are printed exactly as the tools return them: decimal strings, never floats.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TextIO

import anyio
import anyio.to_thread
from mcp import Client, StdioServerParameters
from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from sqlalchemy import insert, select

from . import __version__, service
from . import repository as repo
from .config import Settings
from .db import make_engine, make_session_factory
from .models import Category, Expense
from .periods import Month
from .transactions import migrate

Transport = Literal["stdio", "memory"]
USER = "demo"
CURRENCY = "USD"
TRAVEL_CURRENCY = "EUR"
SEED = 2718  # the sample year is the same on every run for the same today
MONTHS = 12
CATEGORIES = ("Rent", "Groceries", "Dining", "Transport", "Utilities", "Subscriptions", "Travel")
# category, monthly limit, rollover: unspent (or overspent) money carries into the next month
BUDGETS = (
    ("Groceries", "600.00", True),
    ("Dining", "350.00", False),
    ("Transport", "275.00", True),
    ("Utilities", "250.00", False),
    ("Subscriptions", "80.00", False),
)
DATABASE_FILE = "demo.sqlite3"
WIDTH = 30  # of the trend's bars, in characters


class DemoFailed(Exception):
    """A step did not behave as the demo expects (a tool failed, or a mistake was accepted)."""


# --- a year of sample spending ------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleExpense:
    spent_on: date
    category: str
    amount_minor: int
    currency: str
    description: str
    merchant: str | None


def sample_year(today: date, seed: int = SEED) -> list[SampleExpense]:
    """Twelve months of one person's spending ending ``today``, in date order: rent, groceries, dining,
    transport, utilities and subscriptions in USD, flights in USD and a trip to Lisbon in EUR.

    Deterministic (a seeded generator) and exact (amounts are drawn as whole cents)."""
    rng = random.Random(seed)
    last = Month.of(today)
    first = last.plus(-(MONTHS - 1))
    found: list[SampleExpense] = []

    def add(day: date, category: str, cents: int, description: str, merchant: str | None, currency: str = CURRENCY):
        if day <= today:
            found.append(SampleExpense(day, category, cents, currency, description, merchant))

    for offset in range(MONTHS):
        month = first.plus(offset)
        ago = MONTHS - 1 - offset  # 0: this month, 1: last month, ...

        def on(day: int, month: Month = month) -> date:
            return date(month.year, month.month, min(day, month.days))

        add(on(1), "Rent", 145000, "Rent", "Maple Street Properties")
        add(on(1), "Transport", 9800, "Monthly transit pass", "Metro Transit")
        add(on(3), "Subscriptions", 1549, "Netflix Standard", "Netflix")
        add(on(7), "Subscriptions", 1199, "Spotify Premium", "Spotify")
        add(on(15), "Subscriptions", 299, "Cloud storage 200 GB", "iCloud")
        add(on(20), "Subscriptions", 4500, "Gym membership", "FitLife Gym")
        winter, summer = month.month in (12, 1, 2), month.month in (7, 8)
        power = 6200 + (4800 if winter else 2900 if summer else 0) + rng.randint(0, 1800)
        add(on(8), "Utilities", power, "Electricity", "City Power & Light")
        add(on(12), "Utilities", 5999, "Home internet", "Fibernet")
        if month.month % 2 == 0:
            add(on(18), "Utilities", rng.randint(7400, 9800), "Water and trash (2 months)", "City Water")
        day = 2 + rng.randint(0, 2)
        while day <= month.days:
            shop = rng.choice(["Trader Joe's", "Safeway", "Safeway", "Whole Foods Market", "Farmers Market"])
            cents = rng.randint(1800, 4200) if shop == "Farmers Market" else rng.randint(3500, 13800)
            add(on(day), "Groceries", cents, "Produce" if shop == "Farmers Market" else "Groceries", shop)
            day += rng.randint(3, 5)
        for _ in range(rng.randint(6, 10)):
            add(on(rng.randint(1, month.days)), "Dining", rng.randint(425, 675), "Coffee", "Blue Bottle Coffee")
        for _ in range(rng.randint(3, 5)):
            place = rng.choice(["Sweetgreen", "Taqueria El Sol", "Pho Saigon"])
            add(on(rng.randint(1, month.days)), "Dining", rng.randint(1150, 2250), "Lunch", place)
        for _ in range(rng.randint(2, 3)):
            place = rng.choice(["Luigi's Trattoria", "Sushi Zen", "The Local Tap"])
            add(on(rng.randint(1, month.days)), "Dining", rng.randint(4200, 11800), "Dinner", place)
        for _ in range(rng.randint(2, 4)):
            add(on(rng.randint(1, month.days)), "Transport", rng.randint(1100, 3800), "Ride home", "Uber")
        for _ in range(rng.randint(1, 2)):
            add(on(rng.randint(1, month.days)), "Transport", rng.randint(3800, 6200), "Fuel", "Shell")
        if ago == 1:  # last month: a birthday dinner pushes Dining over its budget
            add(on(14), "Dining", 18640, "Birthday dinner for six", "Sushi Zen")
        if ago == 6:
            add(on(9), "Travel", 112480, "Flights SFO-LIS round trip", "TAP Air Portugal")
        if ago == 4:  # the trip itself, paid in euros
            for day, cents, description, merchant in (
                (10, 64500, "Hotel, 5 nights", "Hotel Lisboa Centro"),
                (10, 3850, "Airport taxi", "Taxi Lisboa"),
                (11, 2400, "Jeronimos Monastery tickets", "Museus e Monumentos"),
                (11, 6840, "Seafood dinner", "Cervejaria Ramiro"),
                (12, 900, "Train to Sintra and back", "CP Comboios"),
                (12, 3200, "Pena Palace tickets", "Parques de Sintra"),
                (13, 1260, "Pasteis de nata", "Pasteis de Belem"),
                (13, 5475, "Dinner in Alfama", "Tasca do Chico"),
                (14, 2980, "Souvenirs", "A Vida Portuguesa"),
                (15, 3600, "Airport taxi", "Taxi Lisboa"),
            ):
                add(on(day), "Travel", cents, description, merchant, TRAVEL_CURRENCY)
        if ago == 2:
            add(on(22), "Travel", 48600, "Lake cabin, 2 nights", "Tahoe Pines Cabins")
    found.sort(key=lambda e: e.spent_on)  # stable: the same day keeps the order drawn
    return found


@dataclass(frozen=True)
class Seeded:
    expenses: int
    categories: int
    budgets: int
    first_month: Month
    last_month: Month
    currencies: tuple[str, ...]


def seed_database(settings: Settings, today: date) -> Seeded:
    """Create the schema and fill it with :func:`sample_year`: categories and budgets through the service
    layer (as the tools make them), the expenses in one bulk insert, all in one transaction."""
    migrate(settings)
    expenses = sample_year(today)
    first, last = Month.of(today).plus(-(MONTHS - 1)), Month.of(today)
    noon = datetime.combine(today, time(12), UTC)
    caller = service.Caller(USER, CURRENCY, UTC, clock=lambda: noon)
    engine = make_engine(settings.url)
    try:
        with make_session_factory(engine).begin() as session:
            for name in CATEGORIES:
                service.create_category(session, caller, name)
            for category, limit, rollover in BUDGETS:
                service.set_budget(
                    session,
                    caller,
                    category,
                    Decimal(limit),
                    month=str(first),
                    through_month=None,
                    ongoing=True,
                    currency=CURRENCY,
                    rollover=rollover,
                    dry_run=False,
                )
            user_id = repo.ensure_user(session, USER)
            ids = dict(session.execute(select(Category.name, Category.id).where(Category.user_id == user_id)).all())
            session.execute(
                insert(Expense),
                [
                    {
                        "user_id": user_id,
                        "category_id": ids[e.category],
                        "amount_minor": e.amount_minor,
                        "currency": e.currency,
                        "spent_on": e.spent_on,
                        "description": e.description,
                        "merchant": e.merchant,
                    }
                    for e in expenses
                ],
            )
    finally:
        engine.dispose()
    return Seeded(
        expenses=len(expenses),
        categories=len(CATEGORIES),
        budgets=len(BUDGETS),
        first_month=first,
        last_month=last,
        currencies=tuple(sorted({e.currency for e in expenses})),
    )


# --- rendering what the agent sees ----------------------------------------------------------------------


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], right: set[int] | None = None, *, cut: int = 30
) -> list[str]:
    """A plain-text table; columns listed in ``right`` (numbers) are right-aligned, text is cut at ``cut``."""
    right = right or set()
    cells = [[_cell(value, cut) for value in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    return [line(headers).rstrip(), line(["-" * w for w in widths]), *(line(r).rstrip() for r in cells)]


def _cell(value: object, width: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _minor(amount: str) -> int:
    """A decimal string as the tools return it ("1234.50") in minor units, exactly."""
    sign = -1 if amount.startswith("-") else 1
    return sign * int(amount.lstrip("-").replace(".", ""))


def _money(total: Mapping[str, Any], key: str = "total") -> str:
    return f"{total['currency']} {total[key]}"


def _totals(totals: Sequence[Mapping[str, Any]], label: str = "total") -> list[str]:
    return [f"{label} {_money(t)} ({t['count']} expense{'s' if t['count'] != 1 else ''})" for t in totals]


def _expense_line(e: Mapping[str, Any]) -> str:
    where = f" at {e['merchant']}" if e.get("merchant") else ""
    amount = f"{e['currency']} {e['amount']}"
    return f"expense {e['id']}: {e['spent_on']}  {amount}  {e['category']}{where}, {e['description']!r}"


def _render_categories(r: Mapping[str, Any]) -> list[str]:
    rows = [(c["name"], c["expense_count"]) for c in r["categories"]]
    return [*_table(["category", "expenses"], rows, {1}), f"{r['count']} categories"]


def _render_summary(r: Mapping[str, Any]) -> list[str]:
    rows = [(g["key"], g["currency"], g["total"], g["count"], g["share_percent"] + " %") for g in r["groups"]]
    head = f"{r['start_date']} to {r['end_date']}, by {r['group_by']}:"
    return [head, *_table([r["group_by"], "cur", "total", "count", "share"], rows, {2, 3, 4}), *_totals(r["totals"])]


def _render_budget(r: Mapping[str, Any]) -> list[str]:
    rows = [
        (
            b["category"],
            b["currency"],
            b["limit"],
            b["carried_over"],
            b["available"],
            b["spent"],
            b["remaining"],
            f"{b['percent_used']} %" if b["percent_used"] is not None else "-",
            "OVER" if b["over"] else "ok",
        )
        for b in r["budgets"]
    ]
    headers = ["category", "cur", "limit", "carried", "available", "spent", "remaining", "used", ""]
    lines = [f"month {r['month']}:", *_table(headers, rows, {2, 3, 4, 5, 6, 7})]
    for t in r["totals"]:
        lines.append(f"budgets {t['currency']}: available {t['available']}, spent {t['spent']}, left {t['remaining']}")
    lines += _totals(r["spending"], "all spending")
    if r["unbudgeted"]:
        lines.append("not budgeted: " + ", ".join(f"{u['category']} {_money(u)}" for u in r["unbudgeted"]))
    return lines


def _render_trend(r: Mapping[str, Any]) -> list[str]:
    lines = [f"{r['start_month']} to {r['end_month']}" + (f", {r['category']}" if r["category"] else "") + ":"]
    for series in r["series"]:
        largest = max((_minor(m["total"]) for m in series["months"]), default=0) or 1
        rows = [
            (m["month"], m["total"], m["count"], "#" * (_minor(m["total"]) * WIDTH // largest))
            for m in series["months"]
        ]
        lines += _table(["month", series["currency"], "count", ""], rows, {1, 2})
        lines.append(f"total {series['currency']} {series['total']}, on average {series['average_per_month']} a month")
    return lines


def _render_top(r: Mapping[str, Any]) -> list[str]:
    period = r["period"]
    rows = [(e["spent_on"], e["amount"], e["category"], e["merchant"], e["description"]) for e in r["expenses"]]
    lines = [f"{period['start_date']} to {period['end_date']}, largest in {r['currency']}:"]
    lines += _table(["day", r["currency"], "category", "merchant", "description"], rows, {1})
    merchants = [(m["merchant"], m["total"], m["count"]) for m in r["merchants"]]
    lines += ["", "largest merchants:", *_table(["merchant", r["currency"], "count"], merchants, {1, 2})]
    if r["other_currencies"]:
        lines += _totals(r["other_currencies"], "also spent")
    return lines


def _render_search(r: Mapping[str, Any]) -> list[str]:
    rows = [
        (e["id"], e["spent_on"], e["amount"], e["currency"], e["merchant"], e["description"]) for e in r["expenses"]
    ]
    shown = f"newest {len(rows)} of {r['count']} matches" + (" (next_cursor pages on)" if r["next_cursor"] else "")
    return [
        shown + ":",
        *_table(["id", "day", "amount", "cur", "merchant", "description"], rows, {0, 2}),
        *_totals(r["totals"], "all matches"),
    ]


def _render_expense(r: Mapping[str, Any]) -> list[str]:
    return [_expense_line(r)]


def _render_changes(r: Mapping[str, Any]) -> list[str]:
    rows = [(c["id"], c["tool"], c["summary"]) for c in r["changes"]]
    return _table(["change", "tool", "summary"], rows, {0}, cut=90)


def _render_undone(r: Mapping[str, Any]) -> list[str]:
    undone = r["undone"]
    rows = f"{r['rows']} row{'s' if r['rows'] != 1 else ''}"
    return [f"undid change {undone['id']} ({undone['tool']}, {rows}): {undone['summary']}"]


RENDERERS: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "list_categories": _render_categories,
    "summarize_spending": _render_summary,
    "budget_status": _render_budget,
    "spending_trend": _render_trend,
    "top_expenses": _render_top,
    "search_expenses": _render_search,
    "create_expense": _render_expense,
    "list_changes": _render_changes,
    "undo_change": _render_undone,
}


class _Session:
    """Calls tools and prints each call and what came back, numbered."""

    def __init__(self, client: Client, out: TextIO) -> None:
        self.client = client
        self.out = out
        self.steps = 0

    def say(self, *lines: str) -> None:
        for line in lines:
            print(line.rstrip(), file=self.out)

    async def call(
        self, question: str, tool: str, arguments: dict[str, Any], *, expect_error: bool = False
    ) -> dict[str, Any]:
        self.steps += 1
        self.say("", f"[{self.steps}] {question}", f"    -> {tool} {json.dumps(arguments)}")
        result = await self.client.call_tool(tool, arguments)
        text = "".join(getattr(block, "text", "") for block in result.content)
        if result.is_error:
            if not expect_error:
                raise DemoFailed(f"{tool} failed: {text}")
            self.say("    <- error (is_error: true); the model reads:")
            self.say(*textwrap.wrap(text, 100, initial_indent="       ", subsequent_indent="       "))
            return {}
        if expect_error:
            raise DemoFailed(f"{tool} accepted {arguments} but should have refused it")
        structured = result.structured_content or {}
        render = RENDERERS.get(tool, lambda r: [json.dumps(r)])
        lines = render(structured)
        self.say(*(f"    <- {line}" if i == 0 else f"       {line}" for i, line in enumerate(lines)))
        return structured


async def conversation(client: Client, out: TextIO, today: date) -> int:
    """The scripted session: questions an agent asks on a user's behalf, with explicit dates. Returns
    how many tool calls it made."""
    last = Month.of(today).plus(-1)
    month = {"start_date": last.first_day.isoformat(), "end_date": last.last_day.isoformat()}
    tools = (await client.list_tools()).tools
    session = _Session(client, out)
    session.say(f"The agent connects and lists the tools: {len(tools)} of them.")
    session.say(
        *textwrap.wrap(", ".join(sorted(t.name for t in tools)), 100, initial_indent="  ", subsequent_indent="  ")
    )
    await session.call("Which categories are there?", "list_categories", {})
    await session.call(f"Where did my money go in {last}?", "summarize_spending", dict(month))
    await session.call(f"How did {last} do against my budgets?", "budget_status", {"month": str(last)})
    await session.call(
        "How has my spending moved over the year?",
        "spending_trend",
        {"months": MONTHS, "end_month": str(Month.of(today))},
    )
    await session.call(f"What were the biggest expenses in {last}?", "top_expenses", {**month, "limit": 5})
    await session.call(
        "How much goes on coffee?",
        "search_expenses",
        {"text": "coffee", "start_date": last.first_day.isoformat(), "end_date": today.isoformat(), "limit": 5},
    )
    await session.call(
        "I just had a flat white at Blue Bottle, 4.75.",
        "create_expense",
        {
            "amount": "4.75",
            "description": "Flat white",
            "category": "dining",
            "merchant": "Blue Bottle Coffee",
            "spent_on": today.isoformat(),
        },
    )
    changes = await session.call(
        "Wait, I had already logged that one. What did you just change?", "list_changes", {"limit": 1}
    )
    await session.call("Undo it, please.", "undo_change", {"change_id": changes["changes"][0]["id"]})
    await session.call(
        "And 18.40 at the farmers market, under Grocery.",
        "create_expense",
        {"amount": "18.40", "description": "Farmers market", "category": "Grocery", "spent_on": today.isoformat()},
        expect_error=True,
    )
    return session.steps


# --- running it -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoResult:
    exit_code: int
    steps: int
    database: Path | None  # the kept database (keep=True), else None: it was removed


class _OnlyGiven(Settings):
    """Settings from the arguments alone: the environment and .env files play no part in the demo."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def demo_settings(database: Path) -> Settings:
    """Settings for the throwaway database, whatever the environment or a .env file says."""
    return _OnlyGiven(
        database_url=SecretStr(f"sqlite:///{database}"),
        user=USER,
        default_currency=CURRENCY,
        timezone="UTC",
    )


def server_environment(database: Path) -> dict[str, str]:
    """This process's environment without any budget-mcp setting, plus the throwaway database's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "BUDGET_MCP_"))}
    env.update(
        DATABASE_URL=f"sqlite:///{database}",
        BUDGET_MCP_USER=USER,
        BUDGET_MCP_DEFAULT_CURRENCY=CURRENCY,
        BUDGET_MCP_LOG_LEVEL="WARNING",
    )
    return env


@contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="budget-mcp-demo-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def run_demo(
    out: TextIO | None = None,
    *,
    today: date | None = None,
    keep: bool = False,
    transport: Transport = "stdio",
) -> DemoResult:
    """Seed a throwaway database, run the scripted session against the server, print it all to ``out``.

    ``today`` decides which year is sampled (default: today on this machine). ``keep`` keeps the database
    (its path is in the result and printed). ``transport="memory"`` runs the same server in this process
    instead of as a subprocess (the same answers, without starting a process).

    The sample year is written while the server starts (both migrate the new file; SQLite's write lock
    makes the second find the schema current), and the session begins once both are done.
    """
    out = sys.stdout if out is None else out
    today = today or date.today()
    with _workdir(keep) as workdir:
        database = workdir / DATABASE_FILE
        target: Any
        if transport == "stdio":
            target = StdioServerParameters(
                command=sys.executable, args=["-m", "budget_mcp"], env=server_environment(database), cwd=workdir
            )
            server = f"`{Path(sys.executable).name} -m budget_mcp` over stdio, as an MCP client starts it"
        else:
            from .server import build_server  # the stdio demo never builds a server in this process

            noon = datetime.combine(today, time(12), UTC)
            target = build_server(demo_settings(database), clock=lambda: noon)
            server = "budget-mcp in this process (in-memory transport)"

        async def session() -> int:
            with ThreadPoolExecutor(1) as pool:
                seeding = pool.submit(seed_database, demo_settings(database), today)
                async with Client(target) as client:
                    seeded = await anyio.to_thread.run_sync(seeding.result)
                    _introduce(out, seeded, server)
                    return await conversation(client, out, today)

        try:
            steps = anyio.run(session)
        except DemoFailed as failure:
            print(f"\ndemo failed: {failure}", file=out)
            return DemoResult(1, 0, database if keep else None)
        print("", file=out)
        print("That is what an agent sees. Add budget-mcp to your own client:", file=out)
        print("  budget-mcp install claude-desktop    or    budget-mcp install claude-code", file=out)
        if keep:
            print(f"The demo database is kept: {database}", file=out)
            print("  to try it in Claude Code, for instance:", file=out)
            print(
                f"  DATABASE_URL=sqlite:///{database} BUDGET_MCP_USER={USER} "
                "budget-mcp install claude-code --name budget-demo",
                file=out,
            )
        else:
            print("The demo database is removed (--keep keeps it).", file=out)
        return DemoResult(0, steps, database if keep else None)


def _introduce(out: TextIO, seeded: Seeded, server: str) -> None:
    rollovers = sum(rollover for *_, rollover in BUDGETS)
    print(f"budget-mcp {__version__} demo: a year of sample spending, and an agent using it", file=out)
    print(
        f"  data:   {seeded.expenses} expenses in {seeded.categories} categories, {seeded.first_month} to "
        f"{seeded.last_month}, in {' and '.join(seeded.currencies)};",
        file=out,
    )
    print(f"          {seeded.budgets} monthly budgets, {rollovers} of them with rollover", file=out)
    print(f"  server: {server}", file=out)
