"""Faults on the way to a Neon-like database (tests/pgserver.py: PostgreSQL with TLS and SCRAM behind
PgBouncer in transaction mode): backends terminated, a write cut mid-statement and mid-COMMIT, the
compute suspended and resumed, the pooler restarted. The agent gets the right answer or a clear error,
and each test ends by checking the database's rows one by one."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
from mcp import Client
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from budget_mcp.config import Settings
from budget_mcp.server import build_server

from conftest import make_settings
from faultproxy import FaultProxy
from helpers import fails, ok
from httpserver import create_token, post, running_http_server, tool_call
from pgserver import NeonLab

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

LOCK = 4242  # the advisory lock a test holds to stop a statement or a COMMIT half-way
_names = itertools.count()


@pytest.fixture
def database(neon_lab: NeonLab) -> Iterator[str]:
    """A fresh database in the lab for one test."""
    name = f"faults_{next(_names)}"
    neon_lab.create_database(name)
    try:
        yield name
    finally:
        neon_lab.postgres.drop_database(name)


def lab_settings(lab: NeonLab, database: str, *, url: str | None = None, **overrides: Any) -> Settings:
    """A server on the pooled endpoint, migrating over the direct one, as on Neon."""
    return make_settings(
        url or lab.pooled_url(database),
        database_url_unpooled=lab.direct_url(database),
        pooled=True,
        **overrides,
    )


@contextmanager
def admin(lab: NeonLab, database: str) -> Iterator[Engine]:
    """A superuser connection straight to PostgreSQL, to set traps and read what was stored."""
    engine = create_engine(lab.direct_url(database, admin=True), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()


def expense_rows(lab: NeonLab, database: str) -> list[tuple[Any, ...]]:
    with admin(lab, database) as engine, engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text(
                    "SELECT e.id, u.name, c.name, e.amount_minor, e.currency, e.spent_on::text, e.description "
                    "FROM expenses e JOIN users u ON u.id = e.user_id JOIN categories c ON c.id = e.category_id "
                    "ORDER BY e.id"
                )
            )
        ]


def change_rows(lab: NeonLab, database: str) -> list[tuple[Any, ...]]:
    with admin(lab, database) as engine, engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text("SELECT id, tool FROM changes ORDER BY id"))]


def expense(description: str, amount: str = "4.50") -> dict[str, Any]:
    return {"amount": amount, "category": "Food", "spent_on": "2026-11-20", "description": description}


def row(expense_id: int, description: str, amount_minor: int = 450) -> tuple[Any, ...]:
    return (expense_id, "alice", "Food", amount_minor, "USD", "2026-11-20", description)


@asynccontextmanager
async def agent(settings: Settings) -> AsyncIterator[Client]:
    async with Client(build_server(settings)) as client:
        yield client


def wait_until(condition: Any, what: str, timeout: float = 20.0) -> Any:
    """Poll ``condition`` until it returns something truthy (no fixed sleeps: a condition with a deadline)."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
    return found


def backend_waiting_on_lock(lab: NeonLab, database: str, query: str) -> int | None:
    """The pid of a budget-mcp backend blocked on our advisory lock while running ``query``."""
    with admin(lab, database) as engine, engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = :db AND application_name LIKE 'budget-mcp/%' "
                "AND wait_event_type = 'Lock' AND wait_event = 'advisory' AND query ILIKE :query"
            ),
            {"db": database, "query": query},
        ).scalar()


@contextmanager
def held_lock(lab: NeonLab, database: str) -> Iterator[Any]:
    """Hold advisory lock LOCK in a session of our own until the block ends (or ``release()``)."""
    engine = create_engine(lab.direct_url(database, admin=True), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    connection = engine.connect()
    connection.execute(text(f"SELECT pg_advisory_lock({LOCK})"))
    released = False

    class Handle:
        def release(self) -> None:
            nonlocal released
            if not released:
                connection.execute(text(f"SELECT pg_advisory_unlock({LOCK})"))
                released = True

    try:
        yield Handle()
    finally:
        Handle().release()
        connection.close()
        engine.dispose()


def install_trap(lab: NeonLab, database: str, *, at_commit: bool) -> None:
    """A trigger on expenses that waits for advisory lock LOCK: on INSERT, or (deferred) at COMMIT."""
    timing = "AFTER INSERT ON expenses DEFERRABLE INITIALLY DEFERRED" if at_commit else "AFTER INSERT ON expenses"
    with admin(lab, database) as engine, engine.connect() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION wait_for_test() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN PERFORM pg_advisory_xact_lock_shared({LOCK}); RETURN NULL; END $$"
            )
        )
        connection.execute(
            text(f"CREATE CONSTRAINT TRIGGER trap {timing} FOR EACH ROW EXECUTE FUNCTION wait_for_test()")
        )


def terminate(lab: NeonLab, database: str, pid: int) -> None:
    with admin(lab, database) as engine, engine.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})


async def seeded(client: Client) -> dict[str, Any]:
    await ok(client, "create_category", name="Food")
    return await ok(client, "create_expense", **expense("Coffee"))


# --- between calls ------------------------------------------------------------------------------------


async def test_backends_terminated_between_calls_are_invisible_to_the_agent(neon_lab: NeonLab, database: str) -> None:
    async with agent(lab_settings(neon_lab, database)) as client:
        first = await seeded(client)
        neon_lab.terminate_backends()
        assert (await ok(client, "query_expenses_by_category", category="Food"))["count"] == 1
        neon_lab.terminate_backends()
        second = await ok(client, "create_expense", **expense("Tea", "3.00"))
    assert expense_rows(neon_lab, database) == [row(first["id"], "Coffee"), row(second["id"], "Tea", 300)]
    assert [tool for _, tool in change_rows(neon_lab, database)] == ["create_category", "create_expense"] * 1 + [
        "create_expense"
    ]


async def test_a_pooler_restart_between_calls_is_invisible_to_the_agent(neon_lab: NeonLab, database: str) -> None:
    async with agent(lab_settings(neon_lab, database)) as client:
        first = await seeded(client)
        neon_lab.pooler.restart()
        summary = await ok(client, "summarize_spending", start_date="2026-11-01", end_date="2026-11-30")
        assert summary["totals"] == [{"currency": "USD", "total": "4.50", "count": 1}]
        second = await ok(client, "create_expense", **expense("Tea", "3.00"))
    assert expense_rows(neon_lab, database) == [row(first["id"], "Coffee"), row(second["id"], "Tea", 300)]


async def test_a_suspended_database_fails_clearly_then_works_again_once_resumed(
    neon_lab: NeonLab, database: str
) -> None:
    async with agent(lab_settings(neon_lab, database, database_wait=0.5)) as client:
        first = await seeded(client)
        neon_lab.suspend()
        try:
            message = await fails(client, "create_expense", **expense("Lost?"))
            assert "database is unavailable right now" in message and "nothing was changed" in message
            assert "Error executing tool" not in message.split(":", 1)[-1]
            assert "psycopg2" not in message and "127.0.0.1" not in message
        finally:
            neon_lab.resume()
        second = await ok(client, "create_expense", **expense("Tea", "3.00"))
    assert expense_rows(neon_lab, database) == [row(first["id"], "Coffee"), row(second["id"], "Tea", 300)]


async def test_a_call_made_while_the_database_wakes_up_waits_for_it(neon_lab: NeonLab, database: str) -> None:
    async with agent(lab_settings(neon_lab, database, database_wait=60)) as client:
        first = await seeded(client)
        neon_lab.suspend()
        results: list[dict[str, Any]] = []
        try:

            async def call() -> None:
                results.append(await ok(client, "create_expense", **expense("Tea", "3.00")))

            async with anyio.create_task_group() as group:
                group.start_soon(call)
                # Resume only once the call has found the database down at least once.
                await anyio.to_thread.run_sync(lambda: wait_until(lambda: _refused(neon_lab), "the refusal"))
                await anyio.to_thread.run_sync(neon_lab.resume)
        finally:
            if not neon_lab.pooler.running:
                neon_lab.resume()
    assert expense_rows(neon_lab, database) == [row(first["id"], "Coffee"), row(results[0]["id"], "Tea", 300)]


def _refused(lab: NeonLab) -> bool:
    """The pooler's port refuses connections (it is stopped)."""
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", lab.pooler.port)) != 0


# --- during a call ------------------------------------------------------------------------------------


async def stopped_tea(
    client: Client, lab: NeonLab, database: str, *, at_commit: bool, fault: Callable[[int, Any], None]
) -> dict[str, Any]:
    """Record a Tea expense while a trap stops it at its INSERT or at COMMIT; once it is stopped, run
    ``fault(pid, lock)`` in a thread (which must release the lock). Returns the tool's answer."""
    install_trap(lab, database, at_commit=at_commit)
    query = "COMMIT" if at_commit else "%INSERT INTO expenses%"  # on PostgreSQL the category lookup comes with it
    results: list[dict[str, Any]] = []
    with held_lock(lab, database) as lock:

        async def call() -> None:
            results.append(await ok(client, "create_expense", **expense("Tea", "3.00")))

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            pid = await anyio.to_thread.run_sync(
                lambda: wait_until(lambda: backend_waiting_on_lock(lab, database, query), query)
            )
            await anyio.to_thread.run_sync(fault, pid, lock)
    return results[0]


async def test_a_write_cut_mid_statement_is_retried_and_stored_exactly_once(neon_lab: NeonLab, database: str) -> None:
    def kill(pid: int, lock: Any) -> None:
        terminate(neon_lab, database, pid)
        lock.release()

    async with agent(lab_settings(neon_lab, database)) as client:
        first = await seeded(client)
        tea = await stopped_tea(client, neon_lab, database, at_commit=False, fault=kill)
    assert expense_rows(neon_lab, database) == [row(first["id"], "Coffee"), row(tea["id"], "Tea", 300)]
    assert len(change_rows(neon_lab, database)) == 3


async def test_a_commit_cut_before_it_completed_is_run_again_and_stored_once(
    neon_lab: NeonLab, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    def kill(pid: int, lock: Any) -> None:
        terminate(neon_lab, database, pid)  # the COMMIT never happens
        lock.release()

    async with agent(lab_settings(neon_lab, database)) as client:
        first = await seeded(client)
        tea = await stopped_tea(client, neon_lab, database, at_commit=True, fault=kill)
    assert "the lost COMMIT had not happened" in caplog.text
    assert expense_rows(neon_lab, database) == [row(first["id"], "Coffee"), row(tea["id"], "Tea", 300)]
    assert len(change_rows(neon_lab, database)) == 3


async def test_a_commit_whose_answer_was_lost_is_answered_not_written_twice(
    neon_lab: NeonLab, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The worst case: COMMIT reached the database and succeeded, but the connection dropped before the
    answer came back. The retry finds the call's request key and answers with the stored expense."""
    with FaultProxy("127.0.0.1", neon_lab.pooler.port) as proxy:

        def lose_the_answer(pid: int, lock: Any) -> None:
            proxy.freeze_replies()  # the database's answer to COMMIT will never arrive
            lock.release()
            wait_until(lambda: _committed(neon_lab, database, pid), "the COMMIT to finish")
            proxy.cut()
            proxy.heal()

        through_proxy = neon_lab.pooled_url(database).replace(f":{neon_lab.pooler.port}/", f":{proxy.port}/")
        async with agent(lab_settings(neon_lab, database, url=through_proxy)) as client:
            first = await seeded(client)
            tea = await stopped_tea(client, neon_lab, database, at_commit=True, fault=lose_the_answer)
    assert expense_rows(neon_lab, database) == [row(first["id"], "Coffee"), row(tea["id"], "Tea", 300)]
    assert len(change_rows(neon_lab, database)) == 3
    assert "the lost COMMIT had succeeded" in caplog.text  # answered from the first attempt, not run again


def _committed(lab: NeonLab, database: str, pid: int) -> bool:
    """The backend finished its COMMIT (it is idle again) and the row is visible."""
    with admin(lab, database) as engine, engine.connect() as connection:
        state = connection.execute(text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar()
        count = connection.execute(text("SELECT count(*) FROM expenses")).scalar()
    return state != "active" and count == 2


# --- no session state ---------------------------------------------------------------------------------

FORBIDDEN = re.compile(
    r"^\s*(SET\s+(?!LOCAL\b)|RESET\b|PREPARE\b|LISTEN\b|UNLISTEN\b|DECLARE\b.*\bWITH\s+HOLD\b|"
    r"CREATE\s+(TEMP|TEMPORARY)\b|DISCARD\b)|pg_advisory_lock\(|pg_advisory_lock_shared\(|set_config\([^)]*false\)",
    re.IGNORECASE,
)


PGBOUNCER_PARAMETER_SYNC = re.compile(
    r"^SET (application_name|client_encoding|datestyle|timezone|standard_conforming_strings)='[^']*';$"
)


async def test_two_agents_sharing_one_server_connection_see_only_their_own_work(neon_lab: NeonLab) -> None:
    """The pooler gives this database ONE server connection, so every transaction of both agents runs on
    the same PostgreSQL session, interleaved. Every answer is still right, and the server log proves that
    no statement the servers sent set or relied on session state."""
    name = neon_lab.create_database("guard")
    neon_lab.pooler.add_database(name, pool_size=1)
    with admin(neon_lab, name) as engine, engine.connect() as connection:
        connection.execute(text(f"ALTER DATABASE {name} SET log_statement = 'all'"))
    log = Path(neon_lab.postgres.base_dir) / "postgres.log"
    start = log.stat().st_size
    alice = lab_settings(neon_lab, name, user="alice", statement_timeout=7)
    bob = lab_settings(neon_lab, name, user="bob", timezone="Asia/Tokyo", default_currency="EUR", statement_timeout=9)
    async with agent(alice) as a, agent(bob) as b:
        await ok(a, "create_category", name="Food")
        await ok(b, "create_category", name="Rent")

        async def alice_works(i: int) -> None:
            await ok(
                a, "create_expense", amount=f"{i}.00", category="Food", spent_on="2026-11-02", description=f"Lunch {i}"
            )
            total = await ok(a, "summarize_spending", start_date="2026-11-01", end_date="2026-11-30")
            assert {t["currency"] for t in total["totals"]} == {"USD"}

        async def bob_works(i: int) -> None:
            await ok(
                b, "create_expense", amount=f"{i}.00", category="Rent", spent_on="2026-11-02", description=f"Rent {i}"
            )
            listed = await ok(b, "list_categories")
            assert [c["name"] for c in listed["categories"]] == ["Rent"]

        async with anyio.create_task_group() as group:
            for i in range(1, 11):
                group.start_soon(alice_works, i)
                group.start_soon(bob_works, i)
        alice_total = await ok(a, "summarize_spending", start_date="2026-11-01", end_date="2026-11-30")
        bob_total = await ok(b, "summarize_spending", start_date="2026-11-01", end_date="2026-11-30")
    assert alice_total["totals"] == [{"currency": "USD", "total": "55.00", "count": 10}]
    assert bob_total["totals"] == [{"currency": "EUR", "total": "55.00", "count": 10}]
    with admin(neon_lab, name) as engine, engine.connect() as connection:
        assert connection.execute(text("SELECT count(DISTINCT user_id), count(*) FROM expenses")).one() == (2, 20)

    with log.open(errors="replace") as handle:
        handle.seek(start)
        statements = re.findall(r"LOG:\s+statement: (.*(?:\n\t.*)*)", handle.read())  # with continuation lines
    assert any("INSERT INTO expenses" in s for s in statements), "log_statement did not capture the workload"
    assert any(s.startswith("BEGIN; SET LOCAL statement_timeout = ") for s in statements)
    # PgBouncer itself replays each client's startup parameters on the shared connection (that is how it
    # keeps them per client); everything else came from budget-mcp and must not touch session state.
    ours = [s for s in statements if not PGBOUNCER_PARAMETER_SYNC.match(s)]
    assert [s for s in ours if FORBIDDEN.search(s)] == []


# --- over HTTP ----------------------------------------------------------------------------------------


def test_over_http_a_suspended_database_answers_503_not_401_and_the_token_works_again_after(
    neon_lab: NeonLab, database: str, tmp_path: Path
) -> None:
    """A token that cannot be checked is not a bad token: the client must not be told to throw it away."""
    env = {
        "DATABASE_URL_UNPOOLED": neon_lab.direct_url(database),
        "BUDGET_MCP_POOLED": "true",
        "BUDGET_MCP_DATABASE_WAIT": "0.5",
    }
    with running_http_server(neon_lab.pooled_url(database), tmp_path, env=env) as server:
        issued = create_token(neon_lab.pooled_url(database), "alice")
        body = tool_call("list_categories")
        with httpx2.Client(timeout=30) as http:
            assert post(http, server.url, body, issued.headers).status_code == 200
            neon_lab.suspend()
            try:
                down = post(http, server.url, body, issued.headers)
            finally:
                neon_lab.resume()
            assert down.status_code == 503
            assert down.headers["retry-after"] == "30"
            assert "unavailable" in down.json()["error_description"]
            assert post(http, server.url, body, issued.headers).status_code == 200
            assert post(http, server.url, body, {"Authorization": "Bearer bmcp_unknown"}).status_code == 401
