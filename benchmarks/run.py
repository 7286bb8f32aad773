"""budget-mcp's benchmarks: every figure is a ratio against a baseline measured in the same run.

    .venv/bin/python benchmarks/run.py --output BENCHMARKS.md   # full: 10k / 100k / 1M expenses (~16 min)
    .venv/bin/python benchmarks/run.py --quick                  # CI: 1k / 5k expenses, 2 repeats (~45 s)

What it measures (BENCHMARKS.md explains the method and shows the results):

- cold start: spawn -> ``initialize`` answered -> ``tools/list`` answered, for ``python -m budget_mcp`` and
  for ``benchmarks/floor_server.py`` (the smallest MCPServer of the same SDK), alternately;
- warm latency over stdio (the SDK's client): ``create_expense``, ``query_expenses_by_category`` and
  ``summarize_spending`` on each dataset size, each call followed by the same call's SQL replayed raw
  (SQLAlchemy Core, same database) and by a trivial tool's round trip on the floor server;
- scale: the same on SQLite and PostgreSQL, and the plans (EXPLAIN) of the first-page query;
- memory: the server's RSS while it summarises the largest dataset, against its RSS when idle;
- throughput: concurrent clients creating expenses, against one client alone.

Every answer is checked (exact counts and totals, pages in order, rows stored = rows created, zero errors,
no ERROR in the servers' logs); the exit status is 1 if a check fails. Times are reported, never asserted.
The report (markdown) goes to stdout, and with --output FILE to that file. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import dataset
import procs
import report
from dataset import (
    COVERING_INDEX,
    INDEXES,
    ORDERS,
    PAGE,
    QUERIED,
    USER,
    WRITE_DAY,
    WRITES,
    YEAR_END,
    YEAR_START,
    CapturedCall,
    Database,
    money,
)
from mcp import Client
from procs import FLOOR, INTERFACE, REPO, SERVER, ColdStart, log, percentile
from sqlalchemy.engine import make_url

from budget_mcp.transactions import migrate

sys.path.insert(0, str(REPO / "tests"))
from helpers import TOOLS as ALL_TOOLS
from pgserver import PostgresInstance, PostgresUnavailable, running_postgres

TOOL_COUNT = len(ALL_TOOLS)  # every tool budget-mcp offers, all listed by tools/list

TOOLS = ("create_expense", "query_expenses_by_category", "summarize_spending")
YEAR = {"start_date": YEAR_START.isoformat(), "end_date": YEAR_END.isoformat()}


@dataclass(frozen=True)
class Plan:
    quick: bool
    sizes: tuple[int, ...]
    postgres_sizes: tuple[int, ...]
    repeats: int
    cold_repeats: int
    calls_max: int  # per tool and repeat
    calls_min: int
    seconds_per_tool: float  # per tool and repeat, once calls_min calls are made
    memory_repeats: int
    decompose_calls: int  # in-process calls per block for "where the time goes"
    decompose_rounds: int
    writers: int
    writes_each: int
    throughput_repeats: int
    stress_seconds: float  # writers alongside a summariser stop after this long
    entry_order_size: int  # SQLite, expenses recorded in date order or not, with and without a covering index
    postgres: bool = True
    http_load: bool = False
    statement_import: bool = False

    @property
    def largest(self) -> int:
        return max(self.sizes)


FULL = Plan(
    quick=False,
    sizes=(10_000, 100_000, 1_000_000),
    postgres_sizes=(10_000, 100_000, 1_000_000),
    repeats=5,
    cold_repeats=15,
    calls_max=200,
    calls_min=5,
    seconds_per_tool=4.0,
    memory_repeats=3,
    decompose_calls=15,
    decompose_rounds=3,
    writers=4,
    writes_each=25,
    throughput_repeats=3,
    stress_seconds=10.0,
    entry_order_size=100_000,
    http_load=True,
    statement_import=True,
)
QUICK = Plan(
    quick=True,
    sizes=(1_000, 5_000),
    postgres_sizes=(5_000,),
    repeats=2,
    cold_repeats=2,
    calls_max=10,
    calls_min=3,
    seconds_per_tool=0.15,
    memory_repeats=1,
    decompose_calls=3,
    decompose_rounds=1,
    writers=2,
    writes_each=6,
    throughput_repeats=1,
    stress_seconds=1.0,
    entry_order_size=5_000,
)


# --- what the run found ------------------------------------------------------------------------------------


@dataclass
class Samples:
    """One repeat of one tool: the tool's round trips, its SQL replayed raw, and the floor's round trips; and
    how long the SDK client spent validating each answer against the tool's output schema (client side)."""

    tool: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    tool_validation: list[float] = field(default_factory=list)
    floor_validation: list[float] = field(default_factory=list)
    # The same call on the interface floor (benchmarks/interface_server.py): budget-mcp's tool, no work.
    interface: list[float] = field(default_factory=list)
    interface_validation: list[float] = field(default_factory=list)

    @property
    def tool_server(self) -> list[float]:
        """The round trips less the client's output-schema validation: what the server and the pipe took."""
        return [t - v for t, v in zip(self.tool, self.tool_validation, strict=True)]

    @property
    def floor_server(self) -> list[float]:
        return [t - v for t, v in zip(self.floor, self.floor_validation, strict=True)]

    def ratio(self, q: float) -> float:
        """(tool - floor) / raw SQL at percentile q, round trips as the SDK client measures them."""
        return (percentile(self.tool, q) - percentile(self.floor, q)) / percentile(self.raw, q)

    def server_ratio(self, q: float) -> float:
        """The same without the client-side validation on either side."""
        return (percentile(self.tool_server, q) - percentile(self.floor_server, q)) / percentile(self.raw, q)

    @property
    def interface_server(self) -> list[float]:
        return [t - v for t, v in zip(self.interface, self.interface_validation, strict=True)]

    def lowest_ratio(self, q: float) -> float:
        """The lowest (tool - floor) / raw SQL any implementation of this tool's interface on this SDK could
        reach: its raw SQL plus what the SDK does for the interface alone, (interface - floor)."""
        if not self.interface:
            return math.nan
        return 1 + (percentile(self.interface, q) - percentile(self.floor, q)) / percentile(self.raw, q)

    def lowest_server_ratio(self, q: float) -> float:
        if not self.interface:
            return math.nan
        spent = percentile(self.interface_server, q) - percentile(self.floor_server, q)
        return 1 + spent / percentile(self.raw, q)


@dataclass(frozen=True)
class MemoryRun:
    idle_kb: int
    first_peak_kb: int  # the first summary of the whole dataset after start
    again_peak_kb: int  # the same summary once more
    peak_reset: bool  # VmHWM could be reset (else the peak is what a 2 ms sampler saw)


@dataclass(frozen=True)
class ThroughputRun:
    calls: int  # answered (including errors)
    wall: float
    latencies: list[float]
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.calls / self.wall


@dataclass
class Results:
    plan: Plan
    started: datetime = field(default_factory=datetime.now)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_during: list[float] = field(default_factory=list)  # the 1-minute load average every 5 s
    wall: float = 0.0
    postgres_version: str | None = None
    stale_bytecode: list[str] = field(default_factory=list)
    cold: dict[str, list[ColdStart]] = field(default_factory=lambda: defaultdict(list))
    startup_steps: list[list[tuple[str, float]]] = field(default_factory=list)
    seeding: dict[tuple[str, int], float] = field(default_factory=dict)
    latency: dict[tuple[str, int, str], list[Samples]] = field(default_factory=lambda: defaultdict(list))
    explain: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    decomposition: dict[tuple[str, int, str], dict[str, float]] = field(default_factory=dict)
    round_trips: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # what one call sends, in order
    entry_order: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    entry_order_plans: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    memory: dict[str, list[MemoryRun]] = field(default_factory=lambda: defaultdict(list))
    throughput: dict[str, dict[str, list[ThroughputRun]]] = field(default_factory=dict)
    throughput_problems: dict[str, list[str]] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    http_load: str | None = None
    statement_import: str | None = None

    def check(self, name: str, passed: bool, detail: str = "") -> None:
        self.checks.append((name, passed, detail))
        if not passed:
            log(f"CHECK FAILED: {name}: {detail}")


class Run:
    """The benchmark's state: where its files go, which databases exist, the PostgreSQL cluster."""

    def __init__(self, plan: Plan, workdir: Path, postgres: PostgresInstance | None) -> None:
        self.plan = plan
        self.workdir = workdir
        self.postgres = postgres
        self.results = Results(plan)
        self.logs: list[Path] = []

    def errlog(self, name: str) -> Path:
        path = self.workdir / "logs" / f"{name}.log"
        path.parent.mkdir(exist_ok=True)
        self.logs.append(path)
        return path

    def database(self, backend: str, size: int, scattered: bool = False, name: str = "bench") -> Database:
        name = f"{name}_{size}{'_scattered' if scattered else ''}"
        if backend == "sqlite":
            url = f"sqlite:///{self.workdir / (name + '.sqlite3')}"
        else:
            assert self.postgres is not None
            url = self.postgres.create_database(name)
        return Database(backend, url, size, scattered)

    def env(self, url: str) -> dict[str, str]:
        return procs.server_env(self.workdir, url, USER)

    def backends(self) -> list[str]:
        return ["sqlite", "postgresql"] if self.postgres is not None else ["sqlite"]

    def sizes(self, backend: str) -> tuple[int, ...]:
        return self.plan.sizes if backend == "sqlite" else self.plan.postgres_sizes


# --- cold start ---------------------------------------------------------------------------------------------


def cold_start_phase(run: Run) -> None:
    """budget-mcp and the floor started alternately; then where budget-mcp's start-up time goes."""
    results = run.results
    sqlite = run.database("sqlite", 0)
    migrate(sqlite.settings)  # the timed starts find the schema current, as every start but the first does
    targets = [("budget-mcp, SQLite", sqlite.url)]
    if run.postgres is not None and not run.plan.quick:
        postgres = Database("postgresql", run.postgres.create_database("bench_cold"), 0)
        migrate(postgres.settings)
        targets.append(("budget-mcp, PostgreSQL", postgres.url))
    floor_log = run.errlog("cold-floor")
    for name, url in targets:
        errlog = run.errlog("cold-" + name.split(", ")[1].lower())
        if not run.plan.quick:  # once each untimed: the OS file cache holds both programs' files
            log(f"cold start: warming up {name} and the floor")
            procs.cold_start(SERVER, run.env(url), run.workdir, errlog)
            procs.cold_start(FLOOR, run.env(url), run.workdir, floor_log)
        for repeat in range(run.plan.cold_repeats):
            order = [(f"floor|{name}", FLOOR, floor_log), (name, SERVER, errlog)]
            for label, command, path in order if repeat % 2 == 0 else reversed(order):
                results.cold[label].append(procs.cold_start(command, run.env(url), run.workdir, path))
        log(f"cold start: {name} {statistics.median(s.listed for s in results.cold[name]):.2f} s")
    tools = {label: {s.tools for s in starts} for label, starts in results.cold.items()}
    bad = {label: found for label, found in tools.items() if found != {1 if label.startswith("floor") else TOOL_COUNT}}
    results.check(
        f"cold start: every start answered initialize and tools/list ({TOOL_COUNT} tools; floor 1)", not bad, f"{bad}"
    )
    for _ in range(1 if run.plan.quick else 3):
        output = subprocess.run(
            [procs.PYTHON, str(procs.BENCHMARKS / "startup_steps.py")],
            env=run.env(sqlite.url),
            cwd=run.workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if output.returncode != 0:
            results.check("start-up breakdown (benchmarks/startup_steps.py) ran", False, output.stderr[-500:])
            return
        found = json.loads(output.stdout)
        results.startup_steps.append([(step, seconds) for step, seconds in found["steps"]])
        results.stale_bytecode = found["stale"]


# --- warm latency ------------------------------------------------------------------------------------------


def use_case(tool: str, key: str | None = None) -> Callable[[Any, Any], Any]:
    """What the tool's function runs inside its transaction, with the arguments of ``arguments(tool)``."""
    from budget_mcp import service
    from budget_mcp.schemas import NewExpense

    if tool == "create_expense":
        new = NewExpense(
            amount=Decimal("12.34"),
            description="bench write",
            category=WRITES,
            spent_on=WRITE_DAY,
            merchant="Bench shop",
        )
        return lambda s, c: service.create_expense(s, c, new, key or f"service-{uuid.uuid4().hex}")
    if tool == "query_expenses_by_category":
        return lambda s, c: service.query_expenses_by_category(
            s, c, QUERIED, start=None, end=None, period=None, limit=PAGE, cursor=None
        )
    return lambda s, c: service.summarize_spending(
        s, c, start=YEAR_START, end=YEAR_END, period=None, group_by="category", limit=100, cursor=None
    )


def capture_calls(database: Database) -> dict[str, CapturedCall]:
    """The SQL of one call of each tool, captured from the product's own code with the tools' arguments."""
    key = f"capture-{uuid.uuid4().hex}"
    return {
        tool: dataset.capture(database, tool, use_case(tool, key), key if tool == "create_expense" else None)
        for tool in TOOLS
    }


def round_trips(call: CapturedCall) -> list[str]:
    """What one call sends to the database, one round trip each, as the first words of each statement: the
    captured statements (on PostgreSQL the first carries the BEGIN and the SET LOCAL too) and the COMMIT."""
    verbs = [
        " + ".join(
            " ".join(sql.split()[: 2 if sql.startswith(("SET", "BEGIN IMMEDIATE")) else 1])
            for sql in dataset.statements_in(statement.sql)
        )
        for statement in call.statements
    ]
    return [*verbs, "COMMIT"]


def arguments(tool: str) -> dict[str, Any]:
    """The tool's arguments, the same as the captured call's (a create gets a new idempotency key)."""
    if tool == "create_expense":
        return {
            "amount": "12.34",
            "description": "bench write",
            "category": WRITES,
            "spent_on": WRITE_DAY.isoformat(),
            "merchant": "Bench shop",
            "idempotency_key": f"tool-{uuid.uuid4().hex}",
        }
    if tool == "query_expenses_by_category":
        return {"category": QUERIED}
    return dict(YEAR)


def answer_problem(tool: str, content: dict[str, Any] | None, database: Database) -> str | None:
    """Why an answer is wrong (None: it is right): exact counts and totals, pages complete and in order."""
    if content is None:
        return "no structured content"
    expected = database.expected
    if tool == "create_expense":
        wanted = ("12.34", "USD", WRITES, WRITE_DAY.isoformat())
        got = (content.get("amount"), content.get("currency"), content.get("category"), content.get("spent_on"))
        return None if got == wanted else f"stored {got}, sent {wanted}"
    if tool == "summarize_spending":
        totals = {t["currency"]: (t["count"], t["total"]) for t in content["totals"]}
        want = {cur: (n, money(cents)) for cur, (n, cents) in expected.by_currency.items()}
        groups = {(g["key"], g["currency"]): (g["count"], g["total"]) for g in content["groups"]}
        want_groups = {key: (n, money(cents)) for key, (n, cents) in expected.by_category.items()}
        if content["count"] != expected.count or totals != want:
            return f"totals {totals}, count {content['count']}; expected {want}, {expected.count}"
        if groups != want_groups:
            return f"groups {groups}; expected {want_groups}"
        return None
    per_currency = expected.category_totals(QUERIED)
    count = sum(n for n, _ in per_currency.values())
    totals = {t["currency"]: (t["count"], t["total"]) for t in content["totals"]}
    want = {cur: (n, money(cents)) for cur, (n, cents) in per_currency.items()}
    if content["count"] != count or totals != want:
        return f"count {content['count']}, totals {totals}; expected {count}, {want}"
    rows = content["expenses"]
    if len(rows) != min(PAGE, count) or any(row["category"] != QUERIED for row in rows):
        return f"a page of {len(rows)} rows, expected {min(PAGE, count)} of {QUERIED}"
    keys = [(row["spent_on"], row["id"]) for row in rows]
    if keys != sorted(keys, reverse=True):
        return "the page is not newest first"
    if (content["next_cursor"] is None) != (count <= PAGE):
        return "next_cursor is wrong"
    return None


def service_answer(call: CapturedCall) -> dict[str, Any]:
    return call.result.model_dump(mode="json")  # type: ignore[no-any-return]


async def timed(operation: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = await operation()
    return time.perf_counter() - began, result


class Counter:
    """Expenses created in the benchmark's own category, by whom: the database must hold exactly these."""

    def __init__(self) -> None:
        self.tool_writes = 0
        self.raw_writes = 0
        self.other_writes = 1  # the captured call

    @property
    def total(self) -> int:
        return self.tool_writes + self.raw_writes + self.other_writes


async def measure_tool(
    run: Run,
    server: Client,
    floor: Client,
    interface: Client,
    tool: str,
    call: CapturedCall,
    raw_engine: Any,
    database: Database,
    counter: Counter,
    *,
    calls_min: int,
    calls_max: int,
    seconds: float,
) -> Samples:
    """Round trips of ``tool``, each followed by its SQL replayed raw and by the floor's trivial tool."""
    samples = Samples()
    began = time.perf_counter()
    while len(samples.tool) < calls_max and (len(samples.tool) < calls_min or time.perf_counter() - began < seconds):
        args = arguments(tool)
        took, result = await timed(lambda: server.call_tool(tool, args))  # noqa: B023
        samples.tool.append(took)
        # call_tool validated the answer against the tool's output schema (jsonschema, in this process):
        # the same validation again, timed, is the client's share of the round trip.
        validated, _ = await timed(lambda: server.session.validate_tool_result(tool, result))  # noqa: B023
        samples.tool_validation.append(validated if not result.is_error else 0.0)
        if result.is_error:
            run.results.errors.append(f"{tool}: {result.content[0].text if result.content else '?'}")
        else:
            problem = answer_problem(tool, result.structured_content, database)
            if problem is not None:
                run.results.errors.append(f"{tool} on {database.label} {database.size}: {problem}")
            counter.tool_writes += tool == "create_expense"
        raw_began = time.perf_counter()
        call.replay(raw_engine)
        samples.raw.append(time.perf_counter() - raw_began)
        counter.raw_writes += tool == "create_expense"
        took, echoed = await timed(lambda: floor.call_tool("echo", {"value": 7}))
        samples.floor.append(took)
        validated, _ = await timed(lambda: floor.session.validate_tool_result("echo", echoed))  # noqa: B023
        samples.floor_validation.append(validated)
        if echoed.is_error or echoed.structured_content != {"result": 7}:
            run.results.errors.append(f"floor echo: {echoed}")
        took, canned = await timed(lambda: interface.call_tool(tool, args))  # noqa: B023
        samples.interface.append(took)
        validated, _ = await timed(lambda: interface.session.validate_tool_result(tool, canned))  # noqa: B023
        samples.interface_validation.append(validated)
        if canned.is_error:
            run.results.errors.append(f"interface floor {tool}: {canned.content}")
    return samples


async def latency_section(run: Run, floor: Client, backend: str, size: int) -> None:
    """Seed a database of ``size`` expenses, capture each tool's SQL, then time the tools against the floor
    and the raw SQL. On the largest dataset also EXPLAIN, memory and throughput."""
    results = run.results
    database = run.database(backend, size)
    log(f"{database.label} {size:,}: seeding")
    results.seeding[(backend, size)] = await anyio.to_thread.run_sync(database.seed)
    log(f"{database.label} {size:,}: seeded in {results.seeding[(backend, size)]:.1f} s")
    calls = capture_calls(database)
    for tool, call in calls.items():
        results.round_trips[(backend, tool)] = round_trips(call)
        problem = answer_problem(tool, service_answer(call), database)
        results.check(
            f"{database.label} {size:,}: the captured {tool} answers correctly", problem is None, problem or ""
        )
    raw_engine = database.raw_engine()
    counter = Counter()
    largest = size == max(run.sizes(backend))
    answers = run.workdir / f"answers-{backend}-{size}.json"
    answers.write_text(json.dumps({tool: service_answer(call) for tool, call in calls.items()}), encoding="utf-8")
    interface_env = {**run.env(database.url), "BENCH_INTERFACE_ANSWERS": str(answers)}
    try:
        async with (
            procs.client(SERVER, run.env(database.url), run.workdir, run.errlog(f"latency-{backend}-{size}")) as server,
            procs.client(INTERFACE, interface_env, run.workdir, run.errlog(f"interface-{backend}-{size}")) as interface,
        ):
            await server.list_tools()
            await interface.list_tools()
            for tool in TOOLS:  # warm: connections, caches, the OS page cache
                await measure_tool(
                    run, server, floor, interface, tool, calls[tool], raw_engine, database, counter,
                    calls_min=3, calls_max=3, seconds=0,
                )  # fmt: skip
            for repeat in range(run.plan.repeats):
                for tool in TOOLS:
                    samples = await measure_tool(
                        run, server, floor, interface, tool, calls[tool], raw_engine, database, counter,
                        calls_min=run.plan.calls_min, calls_max=run.plan.calls_max, seconds=run.plan.seconds_per_tool,
                    )  # fmt: skip
                    results.latency[(backend, size, tool)].append(samples)
                log(
                    f"{database.label} {size:,} repeat {repeat + 1}/{run.plan.repeats}: "
                    + ", ".join(
                        f"{tool} {1000 * percentile(results.latency[(backend, size, tool)][-1].tool, 0.5):.1f} ms"
                        for tool in TOOLS
                    )
                )
            if size == min(run.sizes(backend)):
                await decompose(run, database, calls, raw_engine, counter)
            if largest:
                results.explain[backend] = explain_plans(run, database, calls)
                # Fresh servers: the first ones are measured idle and summarising (memory), then all of them
                # write concurrently with the latency server (throughput); the last one summarises meanwhile.
                async with fresh_clients(run, database, run.plan.writers) as fresh:
                    for client, pid in fresh[: run.plan.memory_repeats]:
                        await measure_memory(run, database, client, pid)
                    await throughput_phase(run, database, [server] + [client for client, _ in fresh])
    finally:
        raw_engine.dispose()
    stored = database.count_rows(
        "SELECT count(*), sum(e.amount_minor) FROM expenses e JOIN categories c ON c.id = e.category_id "
        "WHERE e.user_id = :user AND c.name = :name AND e.idempotency_key NOT LIKE 'writer-%'",
        user=database.user_id,
        name=WRITES,
    )
    made = counter.total
    results.check(
        f"{database.label} {size:,}: every create_expense stored exactly once",
        stored == (made, made * 1234),
        f"{stored[0]} rows stored, {made} created (tool over stdio {counter.tool_writes}, raw SQL "
        f"{counter.raw_writes}, in-process {counter.other_writes})",
    )
    if not largest and backend == "sqlite":
        remove_sqlite(database.url)


def remove_sqlite(url: str) -> None:
    """Delete an SQLite database file and its write-ahead log (the big datasets take disk space)."""
    path = make_url(url).database or ""
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


async def decompose(
    run: Run, database: Database, calls: dict[str, CapturedCall], raw_engine: Any, counter: Counter
) -> None:
    """Where a warm call's time goes, in this process on the same database: the raw SQL; the service code in its
    transaction (what the tool function runs: ORM, service, the answer's model); the tool through an in-memory
    MCP client (the SDK's server machinery, no pipe, no process); the floor's tool the same way. Each part runs
    in a block of calls of its own (interleaving them here would make each pay for the others' connections and
    caches), the four blocks in rounds; a part's figure is the median over the rounds of its blocks' medians.
    Client-side validation is timed apart and left out."""
    from floor_server import server as floor_app

    from budget_mcp.db import make_session_factory
    from budget_mcp.server import build_server

    engine = database.engine()
    factory = make_session_factory(engine)
    n = run.plan.decompose_calls
    try:
        async with Client(build_server(database.settings)) as tool_client, Client(floor_app) as floor_client:
            await tool_client.list_tools()
            await floor_client.list_tools()
            for tool in TOOLS:
                rounds: dict[str, list[float]] = defaultdict(list)
                for _ in range(run.plan.decompose_rounds):
                    parts: dict[str, list[float]] = defaultdict(list)
                    for call in range(3 + n):  # the first 3 of each block warm up
                        began = time.perf_counter()
                        calls[tool].replay(raw_engine)
                        if call >= 3:
                            parts["raw"].append(time.perf_counter() - began)
                    for call in range(3 + n):
                        began = time.perf_counter()
                        dataset.service_call(factory, use_case(tool))
                        if call >= 3:
                            parts["service"].append(time.perf_counter() - began)
                    for call in range(3 + n):
                        args = arguments(tool)
                        took, result = await timed(lambda: tool_client.call_tool(tool, args))  # noqa: B023
                        validated, _ = await timed(lambda: tool_client.session.validate_tool_result(tool, result))  # noqa: B023
                        if result.is_error:
                            run.results.errors.append(f"in-process {tool}: {result.content}")
                        if call >= 3:
                            parts["mcp"].append(took - validated)
                            parts["validation"].append(validated)
                    for call in range(3 + n):
                        took, echoed = await timed(lambda: floor_client.call_tool("echo", {"value": 7}))
                        validated, _ = await timed(lambda: floor_client.session.validate_tool_result("echo", echoed))  # noqa: B023
                        if call >= 3:
                            parts["floor"].append(took - validated)
                    if tool == "create_expense":
                        counter.raw_writes += 3 + n
                        counter.other_writes += 2 * (3 + n)
                    for name, values in parts.items():
                        rounds[name].append(statistics.median(values))
                run.results.decomposition[(database.backend, database.size, tool)] = {
                    name: statistics.median(values) for name, values in rounds.items()
                }
    finally:
        engine.dispose()


@asynccontextmanager
async def fresh_clients(run: Run, database: Database, count: int) -> AsyncIterator[list[tuple[Client, int]]]:
    """``count`` new server processes, started at once; each with its SDK client and its pid."""
    clients: list[tuple[Client, int] | None] = [None] * count
    ready = [anyio.Event() for _ in range(count)]
    stop = anyio.Event()

    async def hold(number: int) -> None:
        tag = uuid.uuid4().hex
        env = {**run.env(database.url), procs.TAG: tag}
        errlog = run.errlog(f"fresh-{database.backend}-{number}")
        async with procs.client(SERVER, env, run.workdir, errlog) as client:
            await client.list_tools()
            pid = procs.pid_with_tag(tag)
            if pid is None:
                raise RuntimeError("could not find a server process by its tag")
            clients[number] = (client, pid)
            ready[number].set()
            await stop.wait()

    async with anyio.create_task_group() as group:
        for number in range(count):
            group.start_soon(hold, number)
        for event in ready:
            await event.wait()
        try:
            yield [c for c in clients if c is not None]
        finally:
            stop.set()


def explain_plans(run: Run, database: Database, calls: dict[str, CapturedCall]) -> dict[str, list[str]]:
    query = calls["query_expenses_by_category"]
    summary = calls["summarize_spending"]
    analyze = database.backend == "postgresql"
    plans = {
        "first page": dataset.explain(database, query.statement("ORDER BY expenses.spent_on DESC"), analyze),
        "count and totals of the category": dataset.explain(
            database, query.statement("expenses.category_id = ", "GROUP BY expenses.currency"), analyze
        ),
        "summary: groups and grand totals (one query)": dataset.explain(
            database, summary.statement("OVER ()"), analyze
        ),
    }
    text = "\n".join(plans["first page"])
    index = "ix_expenses_by_category"
    sorts = "TEMP B-TREE" in text if database.backend == "sqlite" else " Sort " in f" {text} "
    run.results.check(
        f"{database.label} {database.size:,}: the first page of query_expenses_by_category reads the category "
        "index, no sort",
        index in text and not sorts,
        f"plan: {' / '.join(line.strip() for line in plans['first page'][:3])}",
    )
    return plans


# --- entry order and a covering index (SQLite) -----------------------------------------------------------


async def entry_order_phase(run: Run) -> None:
    """summarize_spending's raw SQL on two SQLite files of the same expenses: recorded in date order (ids
    follow the days, as in every other measurement) and in no date order (as after importing several bank
    files); then both again with one more index that holds every column the summary reads. Raw SQL only:
    the tool adds the same overhead to both."""
    size = run.plan.entry_order_size
    databases = {order: run.database("sqlite", size, scattered=order != ORDERS[0], name="order") for order in ORDERS}
    calls = {}
    for order, database in databases.items():
        log(f"entry order: seeding {size:,} expenses {order}")
        await anyio.to_thread.run_sync(database.seed)
        calls[order] = capture_calls(database)["summarize_spending"]
        problem = answer_problem("summarize_spending", service_answer(calls[order]), database)
        run.results.check(
            f"SQLite {size:,} {order}: the captured summarize_spending answers correctly",
            problem is None,
            problem or "",
        )
    engines = {order: database.raw_engine() for order, database in databases.items()}
    try:
        for index in INDEXES:
            if index != INDEXES[0]:
                for engine in engines.values():
                    with engine.connect() as connection:
                        connection.exec_driver_sql(COVERING_INDEX)
            for order, database in databases.items():
                statement = calls[order].statement("OVER ()")  # the summary's one query
                run.results.entry_order_plans[(order, index)] = dataset.explain(database, statement, False)
            for _ in range(min(run.plan.repeats, 3)):
                for order in ORDERS:
                    times: list[float] = []
                    began = time.perf_counter()
                    while len(times) < run.plan.calls_max and (
                        len(times) < run.plan.calls_min or time.perf_counter() - began < run.plan.seconds_per_tool
                    ):
                        started = time.perf_counter()
                        calls[order].replay(engines[order])
                        times.append(time.perf_counter() - started)
                    run.results.entry_order[(order, index)].append(percentile(times, 0.5))
            log(
                f"entry order, {index}: "
                + ", ".join(f"{order} {1000 * run.results.entry_order[(order, index)][-1]:.0f} ms" for order in ORDERS)
            )
    finally:
        for engine in engines.values():
            engine.dispose()
        for database in databases.values():
            remove_sqlite(database.url)


# --- memory ------------------------------------------------------------------------------------------------


class PeakSampler:
    """Samples a process's VmRSS every 2 ms in a thread (a cross-check of VmHWM)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, procs.status_kb(self.pid, "VmRSS"))
            except (OSError, KeyError):
                return
            time.sleep(0.002)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def measure_memory(run: Run, database: Database, server: Client, pid: int) -> None:
    """A fresh server: idle RSS after three one-day summaries (the same code path, a handful of rows), then
    the peak RSS while it summarises the whole year (every expense), twice."""
    day = {"start_date": YEAR_START.isoformat(), "end_date": YEAR_START.isoformat()}
    for _ in range(3):
        if (await server.call_tool("summarize_spending", day)).is_error:
            run.results.errors.append("memory run: the one-day summary failed")
    await anyio.sleep(0.5)
    idle = procs.status_kb(pid, "VmRSS")
    peaks = []
    reset = True
    for _ in range(2):
        reset = procs.reset_peak(pid) and reset
        with PeakSampler(pid) as sampler:
            result = await server.call_tool("summarize_spending", dict(YEAR))
        problem = (
            "it failed"
            if result.is_error
            else answer_problem("summarize_spending", result.structured_content, database)
        )
        if problem:
            run.results.errors.append(f"memory run, summary of the year: {problem}")
        peaks.append(max(sampler.peak, procs.status_kb(pid, "VmHWM") if reset else 0))
    run.results.memory[database.backend].append(MemoryRun(idle, peaks[0], peaks[1], reset))
    log(f"memory {database.label}: idle {idle / 1024:.1f} MB, peaks {peaks[0] / 1024:.1f} / {peaks[1] / 1024:.1f} MB")


# --- throughput --------------------------------------------------------------------------------------------


def writer_cents(client: int, call: int) -> int:
    return 100 + (client * 7919 + call * 104_729) % 99_900


async def throughput_phase(run: Run, database: Database, clients: list[Client]) -> None:
    """Concurrent clients creating expenses (each client its own server process, as when several agents
    share one database), against one client alone, in the same run; all as the benchmark user.
    ``clients``: the writers, then one more that summarises the year in a loop while they write (a stress
    test: its writers stop at a deadline, and what they could not do is reported, not checked)."""
    plan = run.plan
    n = plan.writers
    baseline, processes, in_flight, mixed = (
        "1 client, sequential (baseline)",
        f"{n} clients (processes)",
        f"1 client, {n} calls in flight",
        f"{n} clients + 1 client summarising the year in a loop",
    )
    modes: dict[str, list[ThroughputRun]] = defaultdict(list)
    made: list[tuple[str, int]] = []  # (idempotency key, cents) of every acknowledged create
    problems: dict[str, list[str]] = defaultdict(list)
    summaries = [0]

    async def write(
        mode: str, client: Client, number: int, calls: int, prefix: str, latencies: list[float], deadline: float
    ) -> None:
        for call in range(calls):
            if time.perf_counter() > deadline:
                return
            cents = writer_cents(number, call)
            key = f"writer-{prefix}-{number}-{call}"
            args = {
                "amount": money(cents),
                "description": f"writer {number}/{call}",
                "category": WRITES,
                "spent_on": WRITE_DAY.isoformat(),
                "idempotency_key": key,
            }
            try:
                took, result = await timed(lambda: client.call_tool("create_expense", args))  # noqa: B023
            except Exception as error:  # a transport failure is an error of the run, not of the benchmark
                problems[mode].append(f"create_expense: {type(error).__name__}: {error}")
                continue
            latencies.append(took)
            if result.is_error:
                problems[mode].append(f"create_expense: {result.content[0].text if result.content else '?'}")
            elif result.structured_content is None or result.structured_content["amount"] != money(cents):
                problems[mode].append(f"create_expense stored {result.structured_content}, sent {money(cents)}")
            else:
                made.append((key, cents))

    async def summarise(client: Client, done: anyio.Event) -> None:
        while not done.is_set():
            result = await client.call_tool("summarize_spending", dict(YEAR))
            summaries[0] += 1
            if result.is_error:
                problems[mixed].append("summarize_spending failed while writers wrote")

    async def one_run(mode: str, prefix: str) -> ThroughputRun:
        latencies: list[float] = []
        errors = len(problems[mode])
        began = time.perf_counter()
        deadline = began + (plan.stress_seconds if mode == mixed else 24 * 3600)
        async with anyio.create_task_group() as group:
            if mode == baseline:
                group.start_soon(write, mode, clients[0], 0, n * plan.writes_each, prefix, latencies, deadline)
            elif mode == in_flight:
                for number in range(n):
                    group.start_soon(write, mode, clients[0], number, plan.writes_each, prefix, latencies, deadline)
            else:
                done = anyio.Event()
                if mode == mixed:
                    group.start_soon(summarise, clients[n], done)

                async def writers() -> None:
                    async with anyio.create_task_group() as inner:
                        for number in range(n):
                            inner.start_soon(
                                write, mode, clients[number], number, plan.writes_each, prefix, latencies, deadline
                            )
                    done.set()

                group.start_soon(writers)
        wall = time.perf_counter() - began
        return ThroughputRun(len(latencies), wall, latencies, len(problems[mode]) - errors)

    for repeat in range(plan.throughput_repeats):
        for mode in (baseline, processes, in_flight, mixed):
            modes[mode].append(await one_run(mode, uuid.uuid4().hex[:8]))
        log(
            f"throughput {database.label} repeat {repeat + 1}: "
            + ", ".join(f"{mode}: {runs[-1].rate:.0f}/s" for mode, runs in modes.items())
        )
    run.results.throughput[database.backend] = dict(modes)
    run.results.throughput_problems[database.backend] = problems.get(mixed, [])[:3]
    stored = database.count_rows(
        "SELECT count(*), sum(amount_minor) FROM expenses WHERE user_id = :user AND idempotency_key LIKE 'writer-%'",
        user=database.user_id,
    )
    want = (len(made), sum(cents for _, cents in made))
    label = f"{database.label} {database.size:,}"
    failed = [problem for mode in (baseline, processes, in_flight) for problem in problems.get(mode, [])]
    run.results.check(
        f"{label} throughput: zero errors (baseline, processes, calls in flight)",
        not failed,
        f"{len(failed)}; first: {failed[:1]}",
    )
    complete = all(r.calls == n * plan.writes_each for mode in (baseline, processes, in_flight) for r in modes[mode])
    run.results.check(
        f"{label} throughput: the database holds exactly the expenses acknowledged (count, cents)",
        stored == want and complete,
        f"stored {stored}, acknowledged {want}; {summaries[0]} summaries ran alongside the stress runs",
    )


# --- the run -----------------------------------------------------------------------------------------------


async def latency_phase(run: Run) -> None:
    floor_log = run.errlog("latency-floor")
    async with procs.client(FLOOR, run.env("sqlite:///unused"), run.workdir, floor_log) as floor:
        for _ in range(5):
            await floor.call_tool("echo", {"value": 7})
        for backend in run.backends():
            for size in run.sizes(backend):
                await latency_section(run, floor, backend, size)
    await entry_order_phase(run)


def http_load_phase(run: Run) -> None:
    log("HTTP load test (benchmarks/load_http.py): PgBouncer + 3 HTTP servers")
    run.results.http_load = sub_report(run, "load_http.py", timeout=900)


def statement_import_phase(run: Run) -> None:
    log("statement import (benchmarks/import_bench.py): 100k rows against a raw bulk insert")
    run.results.statement_import = sub_report(run, "import_bench.py", timeout=1800)


def sub_report(run: Run, script: str, *, timeout: float) -> str:
    """Run another benchmark script of this folder in full mode; record whether it passed its checks and
    return its markdown report."""
    output = run.workdir / f"{Path(script).stem}.md"
    done = subprocess.run(
        [procs.PYTHON, str(procs.BENCHMARKS / script), "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    run.results.check(
        f"benchmarks/{script} passed its checks",
        done.returncode == 0,
        "" if done.returncode == 0 else " / ".join(done.stderr.strip().splitlines()[-5:]),
    )
    return output.read_text() if output.exists() else done.stdout


def server_log_problems(run: Run) -> list[str]:
    found = []
    for path in run.logs:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                found.append(f"{path.name}: {line}")
    return found


class LoadSampler:
    """Records the 1-minute load average every 5 s while the benchmark runs (was the machine quiet?)."""

    def __init__(self, into: list[float]) -> None:
        self.into = into
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(5.0):
            self.into.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def compile_bytecode() -> None:
    """Compile budget_mcp's bytecode, as ``pip install`` does: from a checkout with PYTHONDONTWRITEBYTECODE set
    (CI sets it) every server start would compile the package again and look slower than an installed one."""
    import budget_mcp

    log("compiling budget_mcp's bytecode (as pip install does)")
    compileall.compile_dir(Path(budget_mcp.__file__).parent, quiet=1)


def execute(plan: Plan, keep: bool) -> Results:
    workdir = Path(tempfile.mkdtemp(prefix="budget-bench-"))
    began = time.monotonic()
    try:
        with ExitStack() as stack:
            postgres: PostgresInstance | None = None
            if plan.postgres:
                log("starting a throwaway PostgreSQL 15 (TLS, SCRAM)")
                postgres = stack.enter_context(running_postgres())
            run = Run(plan, workdir, postgres)
            results = run.results
            results.load_before = procs.load_average()
            stack.enter_context(LoadSampler(results.load_during))
            if postgres is not None:
                results.postgres_version = Database("postgresql", postgres.url(), 0).server_version()
            compile_bytecode()
            cold_start_phase(run)
            anyio.run(latency_phase, run)
            results.check("no tool call failed or answered wrongly", not results.errors, "; ".join(results.errors[:3]))
            problems = server_log_problems(run)
            results.check("no ERROR in the servers' logs", not problems, "; ".join(problems[:3]))
            if plan.http_load and postgres is not None:
                http_load_phase(run)
            if plan.statement_import:
                statement_import_phase(run)
            results.load_after = procs.load_average()
    finally:
        if keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results.wall = time.monotonic() - began
    return results


def plain(results: Results) -> Results:
    """The results without default factories (lambdas cannot be pickled)."""
    for name in ("cold", "latency", "memory", "entry_order"):
        setattr(results, name, dict(getattr(results, name)))
    return results


def parse_args(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small, fast run for CI (1k / 5k expenses)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--sizes", help="comma-separated dataset sizes, e.g. 10000,100000 (both databases)")
    parser.add_argument("--repeats", type=int, help="repeats of the latency runs")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only (no PostgreSQL server binaries)")
    parser.add_argument("--no-http-load", action="store_true", help="do not run benchmarks/load_http.py")
    parser.add_argument("--no-import", action="store_true", help="do not run benchmarks/import_bench.py")
    parser.add_argument("--keep", action="store_true", help="keep the databases and server logs (path printed)")
    parser.add_argument("--save", type=Path, metavar="FILE", help="also save the raw results (pickle) to FILE")
    parser.add_argument("--render", type=Path, metavar="FILE", help="make the report from results saved by --save")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.sizes:
        sizes = tuple(int(s.replace("_", "")) for s in args.sizes.split(","))
        plan = replace(plan, sizes=sizes, postgres_sizes=sizes)
    if args.repeats:
        plan = replace(plan, repeats=args.repeats)
    if args.no_postgres:
        plan = replace(plan, postgres=False)
    if args.no_http_load:
        plan = replace(plan, http_load=False)
    if args.no_import:
        plan = replace(plan, statement_import=False)
    return plan, args


def main(argv: Sequence[str] | None = None) -> int:
    plan, args = parse_args(argv)
    if args.render:
        results = pickle.loads(args.render.read_bytes())  # a file this script saved (--save)
    else:
        try:
            results = execute(plan, args.keep)
        except PostgresUnavailable as error:
            print(f"could not start PostgreSQL ({error}); use --no-postgres to run on SQLite only", file=sys.stderr)
            return 2
        if args.save:
            args.save.write_bytes(pickle.dumps(plain(results)))
    text = report.markdown(results)
    sys.stdout.write(text)
    if args.output:
        args.output.write_text(text)
    return 0 if all(passed for _, passed, _ in results.checks) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
