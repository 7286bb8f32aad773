"""Load test: several ``budget-mcp serve --transport http`` processes behind a Neon-like database.

    .venv/bin/python benchmarks/load_http.py            # 3 servers, 24 clients (takes a minute or so)
    .venv/bin/python benchmarks/load_http.py --quick    # 2 servers, 4 clients: a CI smoke run (< 20 s)

It starts a throwaway PostgreSQL 15 (TLS + SCRAM) with PgBouncer in transaction mode in front (the "Neon
lab" of tests/pgserver.py), then N server processes with DATABASE_URL = the pooled URL, DATABASE_URL_UNPOOLED
= the direct URL and BUDGET_MCP_POOLED=true, each on its own port. C concurrent clients (asyncio, one MCP
client each, spread round-robin over the servers, U users) each make K create_expense calls (every one with
a unique idempotency_key) with a summarize_spending call after every S of them. A baseline in the same run
makes the same number of calls sequentially, one client against one server.

Checks (exit status 1 if any fails): no call failed; every summarize_spending saw at least the client's own
acknowledged expenses (read-your-writes across processes and the pooler); per user, the database holds
exactly the expenses created, and summarize_spending's totals equal their exact Decimal sum.

The report (markdown) goes to stdout, and with --output FILE to that file too. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from httpserver import HttpServer, create_token, mcp_client  # noqa: E402
from pgserver import NeonLab, running_neon_lab  # noqa: E402

DATABASE = "budget_load"
MONTH_START, MONTH_END = "2026-03-01", "2026-03-31"
CATEGORIES = ("Food", "Rent", "Travel")
TOOLS = ("create_expense", "summarize_spending")


@dataclass(frozen=True)
class Plan:
    servers: int
    clients: int
    calls: int  # create_expense calls per client
    users: int
    summarize_every: int

    @property
    def summaries_per_client(self) -> int:
        return self.calls // self.summarize_every

    @property
    def total_calls(self) -> int:
        return self.clients * (self.calls + self.summaries_per_client)


def log(message: str) -> None:
    print(f"[load_http {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- what each client does ---------------------------------------------------------------------------------


def amount_cents(client: int, call: int) -> int:
    """A deterministic amount between 1.00 and 999.99 for a client's n-th expense."""
    return 100 + (client * 7919 + call * 104_729) % 99_900


def money(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds (Linux /proc): the whole machine's busy time, this process's, the servers'."""

    machine: float
    generator: float
    servers: float

    @classmethod
    def sample(cls, servers: Sequence[HttpServer]) -> CpuUse | None:
        try:
            tick = os.sysconf("SC_CLK_TCK")
            values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
            busy = sum(values) - values[3] - values[4]  # all but idle and iowait
            ticks = 0
            for server in servers:
                assert server.process is not None
                fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except (OSError, ValueError, IndexError, AssertionError):
            return None
        return cls(busy / tick, time.process_time(), ticks / tick)

    def __sub__(self, other: CpuUse) -> CpuUse:
        return CpuUse(self.machine - other.machine, self.generator - other.generator, self.servers - other.servers)


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    stale_reads: list[str] = field(default_factory=list)
    created: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    wall: float = 0.0
    cpu: CpuUse | None = None

    @property
    def calls(self) -> int:
        return sum(len(v) for v in self.latencies.values())


async def timed_call(client: Client, stats: Stats, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
    started = time.perf_counter()
    try:
        result = await client.call_tool(tool, arguments)
    except Exception as error:  # a transport or protocol failure counts as an error, and the run goes on
        stats.latencies[tool].append(time.perf_counter() - started)
        stats.errors.append(f"{tool}: {type(error).__name__}: {error}")
        return None
    stats.latencies[tool].append(time.perf_counter() - started)
    if result.is_error:
        stats.errors.append(f"{tool}: {result.content[0].text if result.content else '?'}")  # type: ignore[union-attr]
        return None
    return result.structured_content


@dataclass
class Gate:
    """Every client connects first; the clock starts when the last one is ready."""

    expected: int
    ready: int = 0
    all_ready: anyio.Event = field(default_factory=anyio.Event)
    go: anyio.Event = field(default_factory=anyio.Event)

    async def arrive(self) -> None:
        self.ready += 1
        if self.ready == self.expected:
            self.all_ready.set()
        await self.go.wait()


async def run_client(
    number: int, url: str, user: str, token: str, plan: Plan, run_id: str, stats: Stats, gate: Gate
) -> None:
    """K create_expense calls, a summarize_spending after every S of them; checks read-your-writes."""
    arrived = False
    try:
        async with mcp_client(url, token) as client:
            await client.list_tools()  # connected and warm before the clock starts
            arrived = True
            await gate.arrive()
            await make_calls(client, number, user, plan, run_id, stats)
    except Exception as error:
        stats.errors.append(f"client {number}: {type(error).__name__}: {error}")
    finally:
        if not arrived:
            await gate.arrive()


async def make_calls(client: Client, number: int, user: str, plan: Plan, run_id: str, stats: Stats) -> None:
    own_cents = own_count = 0
    for call in range(plan.calls):
        cents = amount_cents(number, call)
        category = CATEGORIES[(number + call) % len(CATEGORIES)]
        created = await timed_call(
            client,
            stats,
            "create_expense",
            {
                "amount": money(cents),
                "description": f"load {number}/{call}",
                "category": category,
                "spent_on": f"2026-03-{1 + (number + call) % 28:02d}",
                "merchant": f"Shop {call % 5}",
                "idempotency_key": f"{run_id}-{number}-{call}",
            },
        )
        if created is not None:
            if created["amount"] != money(cents):
                stats.errors.append(f"create_expense stored {created['amount']}, sent {money(cents)}")
            stats.created[user][category] += cents
            stats.counts[user] += 1
            own_cents += cents
            own_count += 1
        if (call + 1) % plan.summarize_every == 0:
            summary = await timed_call(
                client, stats, "summarize_spending", {"start_date": MONTH_START, "end_date": MONTH_END}
            )
            if summary is not None:
                total = sum((Decimal(t["total"]) for t in summary["totals"]), Decimal(0))
                count = sum(t["count"] for t in summary["totals"])
                if total < Decimal(own_cents) / 100 or count < own_count:
                    stats.stale_reads.append(
                        f"client {number} ({user}) saw {count} expenses / {total} after its own {own_count} / "
                        f"{money(own_cents)}"
                    )


async def run_phase(servers: Sequence[HttpServer], users: Sequence[tuple[str, str]], plan: Plan, run_id: str) -> Stats:
    """``plan.clients`` clients at once; client i talks to server i mod N as user i mod U."""
    stats = Stats()
    gate = Gate(plan.clients)
    async with anyio.create_task_group() as group:
        for number in range(plan.clients):
            user, token = users[number % len(users)]
            group.start_soon(
                run_client, number, servers[number % len(servers)].url, user, token, plan, run_id, stats, gate
            )
        with anyio.fail_after(120):
            await gate.all_ready.wait()
        cpu_before = CpuUse.sample(servers)
        began = time.perf_counter()
        gate.go.set()
    stats.wall = time.perf_counter() - began
    cpu_after = CpuUse.sample(servers)
    if cpu_before is not None and cpu_after is not None:
        stats.cpu = cpu_after - cpu_before
    return stats


# --- checks ------------------------------------------------------------------------------------------------


async def final_summaries(server: HttpServer, users: Sequence[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    found = {}
    for user, token in users:
        async with mcp_client(server.url, token) as client:
            result = await client.call_tool("summarize_spending", {"start_date": MONTH_START, "end_date": MONTH_END})
            assert not result.is_error, result.content
            assert result.structured_content is not None
            found[user] = result.structured_content
    return found


def check(
    stats: Stats, summaries: dict[str, dict[str, Any]], database_rows: dict[str, tuple[int, int]]
) -> list[tuple[str, bool, str]]:
    results = []
    results.append(("zero errors", not stats.errors, f"{len(stats.errors)} errors" + _first(stats.errors)))
    results.append(
        (
            "read-your-writes in every summary",
            not stats.stale_reads,
            f"{len(stats.stale_reads)}" + _first(stats.stale_reads),
        )
    )
    bad_db, bad_sum = [], []
    for user, per_category in stats.created.items():
        expected_cents = sum(per_category.values())
        expected_count = stats.counts[user]
        if database_rows.get(user) != (expected_count, expected_cents):
            bad_db.append(f"{user}: database {database_rows.get(user)}, created ({expected_count}, {expected_cents})")
        summary = summaries[user]
        totals = [(t["currency"], Decimal(t["total"]), t["count"]) for t in summary["totals"]]
        if totals != [("USD", Decimal(expected_cents) / 100, expected_count)]:
            bad_sum.append(f"{user}: totals {totals}, created {money(expected_cents)} in {expected_count}")
        groups = {g["key"]: Decimal(g["total"]) for g in summary["groups"]}
        wanted = {name: Decimal(cents) / 100 for name, cents in per_category.items()}
        if groups != wanted:
            bad_sum.append(f"{user}: groups {groups}, created {wanted}")
    users = len(stats.created)
    results.append(("expenses per user in the database = created", not bad_db, f"{users} users" + _first(bad_db)))
    results.append(("summarize_spending totals = exact Decimal sums", not bad_sum, f"{users} users" + _first(bad_sum)))
    return results


def _first(problems: list[str]) -> str:
    return f"; first: {problems[0]}" if problems else ""


def database_rows(url: str, run_id: str) -> dict[str, tuple[int, int]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT u.name, count(*), sum(e.amount_minor) FROM expenses e JOIN users u ON u.id = e.user_id "
                    "WHERE e.idempotency_key LIKE :prefix GROUP BY u.name"
                ),
                {"prefix": f"{run_id}-%"},
            ).all()
    finally:
        engine.dispose()
    return {name: (int(count), int(total)) for name, count, total in rows}


# --- the report --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def machine(lab: NeonLab) -> str:
    engine = create_engine(lab.direct_url(DATABASE))
    try:
        with engine.connect() as connection:
            postgres = connection.execute(text("SHOW server_version")).scalar_one()
    finally:
        engine.dispose()
    bouncer = lab.pooler.admin_console("SHOW VERSION")
    pgbouncer = next(iter(bouncer[0].values())) if bouncer else "?"
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"PostgreSQL {postgres}, {pgbouncer}, mcp {version('mcp')}, SQLAlchemy {version('sqlalchemy')}, "
        f"psycopg2 {version('psycopg2-binary')}"
    )


def report(plan: Plan, description: str, baseline: Stats, load: Stats, checks: list[tuple[str, bool, str]]) -> str:
    lines = [
        "# budget-mcp HTTP load test",
        "",
        f"- Machine: {description} (load generator, servers, PgBouncer and PostgreSQL share it)",
        f"- Setup: {plan.servers} server processes (streamable HTTP, stateless, bearer tokens) → PgBouncer "
        "(transaction mode, TLS, SCRAM) → PostgreSQL (TLS, SCRAM)",
        f"- Load: {plan.clients} concurrent clients over {plan.users} users; each makes {plan.calls} create_expense "
        f"calls (unique idempotency_key) and a summarize_spending after every {plan.summarize_every}",
        "- Baseline: the same number of calls, sequentially, one client against one server",
        "",
        "| Run | Calls | Errors | Wall (s) | Calls/s |",
        "|---|---:|---:|---:|---:|",
    ]
    runs = [
        ("baseline: 1 server, 1 client, sequential", baseline),
        (f"load: {plan.servers} servers, {plan.clients} clients", load),
    ]
    for name, stats in runs:
        lines.append(
            f"| {name} | {stats.calls} | {len(stats.errors)} | {stats.wall:.2f} | {stats.calls / stats.wall:.1f} |"
        )
    ratio = (load.calls / load.wall) / (baseline.calls / baseline.wall)
    lines += [
        "",
        f"Throughput ratio, load / baseline: **{ratio:.2f}x**",
        "",
        "| Run | Tool | Calls | p50 (ms) | p99 (ms) | max (ms) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, stats in runs:
        for tool in TOOLS:
            values = stats.latencies.get(tool, [])
            if values:
                lines.append(
                    f"| {name.split(':')[0]} | {tool} | {len(values)} | {1000 * percentile(values, 0.5):.1f} | "
                    f"{1000 * percentile(values, 0.99):.1f} | {1000 * max(values):.1f} |"
                )
    if baseline.cpu is not None and load.cpu is not None:
        lines += [
            "",
            "CPU seconds used while the clock ran (available = wall time x CPUs):",
            "",
            "| Run | Load generator | Server processes | PostgreSQL, PgBouncer, other | Available |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, stats in runs:
            assert stats.cpu is not None
            rest = stats.cpu.machine - stats.cpu.generator - stats.cpu.servers
            lines.append(
                f"| {name.split(':')[0]} | {stats.cpu.generator:.1f} | {stats.cpu.servers:.1f} | {max(rest, 0):.1f} | "
                f"{stats.wall * (os.cpu_count() or 1):.1f} |"
            )
    lines += ["", "| Check | Result | Detail |", "|---|---|---|"]
    lines += [f"| {name} | {'pass' if passed else '**FAIL**'} | {detail} |" for name, passed, detail in checks]
    return "\n".join(lines) + "\n"


# --- main --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", type=int, help="server processes (default 3; --quick: 2)")
    parser.add_argument("--clients", type=int, help="concurrent clients (default 24; --quick: 6)")
    parser.add_argument("--calls", type=int, help="create_expense calls per client (default 20; --quick: 10)")
    parser.add_argument("--users", type=int, help="users the clients act as (default 6; --quick: 3)")
    parser.add_argument(
        "--summarize-every", type=int, help="a summarize_spending after every S creates (default 4; --quick: 5)"
    )
    parser.add_argument("--pool-size", type=int, help="BUDGET_MCP_POOL_SIZE of each server (default: the server's)")
    parser.add_argument("--quick", action="store_true", help="a small run for CI (under ~20 s)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' stderr logs (path printed)")
    args = parser.parse_args(argv)
    defaults = (2, 6, 10, 3, 5) if args.quick else (3, 24, 20, 6, 4)
    given = (args.servers, args.clients, args.calls, args.users, args.summarize_every)
    plan = Plan(*(value if value is not None else default for value, default in zip(given, defaults, strict=True)))
    if min(plan.servers, plan.clients, plan.calls, plan.users, plan.summarize_every) < 1:
        parser.error("--servers, --clients, --calls, --users and --summarize-every must be at least 1")
    return plan, args


def start_servers(lab: NeonLab, count: int, workdir: Path, pool_size: int | None) -> list[HttpServer]:
    env = {
        "DATABASE_URL_UNPOOLED": lab.direct_url(DATABASE),
        "BUDGET_MCP_POOLED": "true",
        **({"BUDGET_MCP_POOL_SIZE": str(pool_size)} if pool_size else {}),
    }
    servers = [
        HttpServer(lab.pooled_url(DATABASE), workdir / f"server-{n + 1}", name=f"server-{n + 1}", env=env)
        for n in range(count)
    ]
    with ThreadPoolExecutor(max_workers=count) as pool:  # together: they migrate under the migration lock
        list(pool.map(lambda server: server.start(), servers))
    return servers


async def setup_users(server: HttpServer, users: Sequence[tuple[str, str]]) -> None:
    for _user, token in users:
        async with mcp_client(server.url, token) as client:
            for name in CATEGORIES:
                result = await client.call_tool("create_category", {"name": name})
                assert not result.is_error, result.content


async def warm_up(servers: Sequence[HttpServer], token: str, concurrency: int) -> None:
    """Fill each server's connection pool (TLS + SCRAM through PgBouncer) before anything is timed."""

    async def summarize(server: HttpServer) -> None:
        async with mcp_client(server.url, token) as client:
            for _ in range(3):
                result = await client.call_tool(
                    "summarize_spending", {"start_date": MONTH_START, "end_date": MONTH_END}
                )
                assert not result.is_error, result.content

    async with anyio.create_task_group() as group:
        for server in servers:
            for _ in range(concurrency):
                group.start_soon(summarize, server)


def server_problems(servers: Sequence[HttpServer]) -> list[str]:
    return [
        f"{server.name}: {line}"
        for server in servers
        for line in server.stderr_text().splitlines()
        if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
    ]


def main(argv: Sequence[str] | None = None) -> int:
    plan, args = parse_args(argv)
    run_id = f"load-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="budget-load-"))
    began = time.monotonic()
    servers: list[HttpServer] = []
    try:
        log("starting PostgreSQL + PgBouncer (transaction mode)")
        with running_neon_lab() as lab:
            lab.create_database(DATABASE)
            log(f"starting {plan.servers} server processes")
            servers = start_servers(lab, plan.servers, workdir, args.pool_size)
            direct = lab.direct_url(DATABASE)
            users = [(f"user-{n + 1}", create_token(direct, f"user-{n + 1}").token) for n in range(plan.users)]
            baseline_user = ("baseline", create_token(direct, "baseline").token)
            anyio.run(setup_users, servers[0], [*users, baseline_user])
            anyio.run(warm_up, servers, baseline_user[1], math.ceil(plan.clients / plan.servers))

            baseline_plan = Plan(1, 1, plan.clients * plan.calls, 1, plan.summarize_every)
            sequential_calls = baseline_plan.total_calls
            log(f"baseline: {sequential_calls} calls, one client, one server")
            baseline = anyio.run(run_phase, servers[:1], [baseline_user], baseline_plan, f"{run_id}-base")
            log(f"load: {plan.total_calls} calls, {plan.clients} clients, {plan.servers} servers")
            load = anyio.run(run_phase, servers, users, plan, f"{run_id}-load")

            summaries = anyio.run(final_summaries, servers[-1], users)
            checks = check(load, summaries, database_rows(direct, f"{run_id}-load"))
            base_rows = database_rows(direct, f"{run_id}-base")
            base_ok = base_rows.get("baseline") == (
                baseline.counts["baseline"],
                sum(baseline.created["baseline"].values()),
            )
            checks.append(
                ("baseline: zero errors, all stored", not baseline.errors and base_ok, _first(baseline.errors))
            )
            problems = server_problems(servers)
            checks.append(("no ERROR in the servers' logs", not problems, f"{len(problems)} lines" + _first(problems)))
            text_report = report(plan, machine(lab), baseline, load, checks)
            for server in servers:
                server.stop()
    finally:
        for server in servers:
            server.stop()
        if args.keep_logs:
            log(f"server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    text_report += f"\nTotal run time (with start-up): {time.monotonic() - began:.1f} s\n"
    sys.stdout.write(text_report)
    if args.output:
        args.output.write_text(text_report)
    return 0 if all(passed for _, passed, _ in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
