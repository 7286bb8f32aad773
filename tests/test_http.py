"""End to end over streamable HTTP: real ``budget-mcp serve --transport http`` processes (stateless, bearer
tokens) on SQLite, on the test PostgreSQL and on the same PostgreSQL through PgBouncer in transaction mode
(a Neon pooled endpoint), driven by the SDK's client and by raw HTTP requests.

One server per backend serves the whole module (a second one only for the stateless test), so every test
makes its own users and tokens (``fresh_user``) and compares whole-database snapshots where it claims that
nothing changed. Server stderr goes to ``<tmp>/http-*/server-*.stderr.log`` and is shown when a start fails.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from sqlalchemy import Engine, make_url, text

from budget_mcp import __version__
from budget_mcp.config import Settings
from budget_mcp.db import make_engine

from helpers import as_stored, fails, ok, snapshot
from httpserver import (
    SERVER_USER,
    HttpServer,
    IssuedToken,
    can_bind_all_interfaces,
    create_token,
    free_port,
    mcp_client,
    post,
    revoke_token,
    rpc_request,
    rpc_result,
    run_cli,
    running_http_server,
    tool_call,
)

TOKEN_PATTERN = re.compile(r"bmcp_[A-Za-z0-9_-]{43}")


# --- servers and databases --------------------------------------------------------------------------------


@dataclass
class Backend:
    """A database, and how the servers and the CLI reach it (on "pooled": through PgBouncer, migrating
    over the direct URL, as on a Neon pooled endpoint). ``url`` is the direct URL the checks use."""

    name: str
    url: str
    workdir: Path
    serve_url: str = ""
    serve_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.serve_url = self.serve_url or self.url

    def database_files(self) -> list[Path]:
        """SQLite: the database file and its journal/WAL companions."""
        assert self.name == "sqlite"
        path = Path(self.url.removeprefix("sqlite:///"))
        return sorted(p for p in path.parent.glob(path.name + "*") if p.is_file())

    def server(self, name: str, **settings: str) -> AbstractContextManager[HttpServer]:
        return running_http_server(self.serve_url, self.workdir / name, name=name, env={**self.serve_env, **settings})

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``budget-mcp ARGS`` configured like the servers."""
        return run_cli(args, self.serve_url, self.workdir, **self.serve_env)


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("pooled", marks=pytest.mark.postgres),
    ],
)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """A database of the module's own (the servers create its schema when they start)."""
    workdir = tmp_path_factory.mktemp(f"http-{request.param}")
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{workdir / 'budget.sqlite3'}", workdir)
        return
    postgres = request.getfixturevalue("postgres")
    name = f"budget_http_{request.param}"
    postgres.drop_database(name)
    url = postgres.create_database(name)
    backend = Backend(request.param, url, workdir)
    if request.param == "pooled":
        backend.serve_url = request.getfixturevalue("pooler").url(name)
        backend.serve_env = {"DATABASE_URL_UNPOOLED": url, "BUDGET_MCP_POOLED": "true"}
    try:
        yield backend
    finally:
        postgres.drop_database(name)


@pytest.fixture(scope="module")
def server(backend: Backend) -> Iterator[HttpServer]:
    """Logging at DEBUG, so the last test can show that even then no token or password reaches the log."""
    with backend.server("server-1", BUDGET_MCP_LOG_LEVEL="DEBUG") as started:
        yield started


@pytest.fixture(scope="module")
def second_server(backend: Backend, server: HttpServer) -> Iterator[HttpServer]:
    """Another process on the same database (only the stateless test starts it)."""
    with backend.server("server-2") as started:
        yield started


@pytest.fixture
def db(backend: Backend, server: HttpServer) -> Iterator[Engine]:
    """A separate connection to the servers' (migrated) database, to check what they really stored."""
    engine = make_engine(Settings(database_url=backend.url, _env_file=None).url)  # type: ignore[call-arg]
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=30.0) as client:
        yield client


def fresh_user(prefix: str) -> str:
    """A user name no other test uses: the module shares one database."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


ISSUED: list[str] = []  # every token the module's tests made through account(), for the log check


def account(backend: Backend, prefix: str) -> IssuedToken:
    issued = create_token(backend.url, fresh_user(prefix))
    ISSUED.append(issued.token)
    return issued


def logged_secrets(server: HttpServer, *secrets: str) -> list[str]:
    """Which of ``secrets`` (or a 16-character piece of one) appear in the server's stderr."""
    log = server.stderr_text()
    assert log, "the server log is empty: is it logging at all?"
    return [secret for secret in secrets if secret and (secret in log or secret[-16:] in log or secret[:16] in log)]


def user_rows(engine: Engine, user: str) -> dict[str, int]:
    """How many rows of each per-user table belong to ``user``."""
    with engine.connect() as connection:
        return {
            table: connection.execute(
                text(f"SELECT count(*) FROM {table} t JOIN users u ON u.id = t.user_id WHERE u.name = :user"),
                {"user": user},
            ).scalar_one()
            for table in ("categories", "expenses", "budgets", "changes", "api_tokens")
        }


# --- without a valid token: 401, and nothing happens ------------------------------------------------------


def test_requests_without_a_valid_bearer_token_get_401_and_change_nothing(
    backend: Backend, server: HttpServer, db: Engine, http: httpx2.Client
) -> None:
    valid = account(backend, "owner")
    revoked = account(backend, "revoked")
    assert post(http, server.url, tool_call("list_categories"), revoked.headers).status_code == 200
    revoke_token(backend.url, revoked.id)
    unknown = "bmcp_" + "A" * 43
    refused_headers: dict[str, dict[str, str]] = {
        "no Authorization header": {},
        "empty Authorization": {"Authorization": ""},
        "Bearer without a token": {"Authorization": "Bearer"},
        "Basic credentials": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        "valid token under another scheme": {"Authorization": f"Token {valid.token}"},
        "not a budget-mcp token": {"Authorization": "Bearer not-a-budget-token"},
        "prefix only": {"Authorization": "Bearer bmcp_"},
        "unknown token": {"Authorization": f"Bearer {unknown}"},
        "valid token with a character dropped": {"Authorization": f"Bearer {valid.token[:-1]}"},
        "valid token with a character added": {"Authorization": f"Bearer {valid.token}x"},
        "valid token followed by junk": {"Authorization": f"Bearer {valid.token} junk"},
        "absurdly long token": {"Authorization": "Bearer bmcp_" + "A" * 5000},
        "revoked token": revoked.headers,
    }
    before = snapshot(db)
    for number, (case, headers) in enumerate(refused_headers.items()):
        for body in (
            tool_call("create_category", name=f"Sneaky {number}"),
            tool_call("create_expense", amount="1.00", description="sneaky", category="Food"),
            rpc_request("tools/list"),
        ):
            response = post(http, server.url, body, headers)
            assert response.status_code == 401, f"{case}: HTTP {response.status_code} {response.text[:200]}"
            assert response.headers.get("www-authenticate", "").startswith("Bearer"), case
            assert valid.token not in response.text, case
        assert http.get(server.url, headers={"Accept": "text/event-stream", **headers}).status_code == 401, case
        assert http.delete(server.url, headers=headers).status_code == 401, case
    assert snapshot(db) == before, "a refused request changed the database"

    # The SDK's client cannot get past the door either.
    async def connect(token: str) -> None:
        async with mcp_client(server.url, token) as client:
            await client.call_tool("create_category", {"name": "Sneaky client"})

    for token in (unknown, revoked.token):
        with pytest.RaisesGroup(MCPError, flatten_subgroups=True):
            anyio.run(connect, token)
    assert snapshot(db) == before

    # The very same request with the valid token goes through: the refusals above were about the token.
    response = post(http, server.url, tool_call("create_category", name="Sneaky 0"), valid.headers)
    assert as_stored(rpc_result(response)["result"]["structuredContent"]) == {"name": "Sneaky 0", "expense_count": 0}
    assert user_rows(db, valid.user)["categories"] == 1


# --- with a token: the token's user, whatever the server process says --------------------------------------


@pytest.mark.anyio
async def test_a_token_acts_as_its_own_user_and_the_server_setting_is_ignored(
    backend: Backend, server: HttpServer, db: Engine
) -> None:
    carol, dave = account(backend, "carol"), account(backend, "dave")
    async with mcp_client(server.url, carol.token) as client:
        assert client.server_info is not None and client.server_info.name == "budget-mcp"
        assert as_stored(await ok(client, "create_category", name="Food")) == {"name": "Food", "expense_count": 0}
        expense = await ok(
            client, "create_expense", amount="12.30", description="Lunch", category="food", spent_on="2026-03-14"
        )
        assert (expense["amount"], expense["category"]) == ("12.30", "Food")
        summary = await ok(client, "summarize_spending", start_date="2026-03-01", end_date="2026-03-31")
        assert summary["totals"] == [{"currency": "USD", "total": "12.30", "count": 1}]
        assert await ok(client, "get_expense", expense_id=expense["id"]) == as_stored(expense)
    async with mcp_client(server.url, dave.token) as client:
        assert (await ok(client, "list_categories"))["categories"] == []
        message = await fails(client, "get_expense", expense_id=expense["id"])
        assert message == (
            f"Error executing tool get_expense: no expense with id {expense['id']}; "
            "search_expenses finds expenses and their ids"
        )
    with db.connect() as connection:
        owners = connection.execute(
            text("SELECT u.name, e.amount_minor FROM expenses e JOIN users u ON u.id = e.user_id WHERE e.id = :id"),
            {"id": expense["id"]},
        ).all()
        assert [tuple(row) for row in owners] == [(carol.user, 1230)]
        assert (
            connection.execute(text("SELECT count(*) FROM users WHERE name = :n"), {"n": SERVER_USER}).scalar_one() == 0
        )
    assert user_rows(db, carol.user) == {"categories": 1, "expenses": 1, "budgets": 0, "changes": 2, "api_tokens": 1}
    assert user_rows(db, dave.user) == {"categories": 0, "expenses": 0, "budgets": 0, "changes": 0, "api_tokens": 1}


@pytest.mark.anyio
async def test_concurrent_requests_of_different_users_each_act_as_their_own_user(
    backend: Backend, server: HttpServer, db: Engine
) -> None:
    """Requests of several users interleave in one process; none may pick up another request's user."""
    users = [account(backend, name) for name in ("erin", "frank", "grace")]
    calls = 12

    async def work(issued: IssuedToken) -> None:
        async with mcp_client(server.url, issued.token) as client:
            await ok(client, "create_category", name=issued.user)  # a category named after its owner

            async def one(n: int) -> None:
                await ok(client, "create_expense", amount="1.25", description=f"n{n}", category=issued.user)

            async with anyio.create_task_group() as group:
                for n in range(calls):
                    group.start_soon(one, n)

    async with anyio.create_task_group() as group:
        for issued in users:
            group.start_soon(work, issued)
    with db.connect() as connection:
        for issued in users:
            rows = connection.execute(
                text(
                    "SELECT c.name, count(*), sum(e.amount_minor) FROM expenses e JOIN users u ON u.id = e.user_id "
                    "JOIN categories c ON c.id = e.category_id WHERE u.name = :user GROUP BY c.name"
                ),
                {"user": issued.user},
            ).all()
            assert [tuple(row) for row in rows] == [(issued.user, calls, 125 * calls)]


# --- isolation: bob can neither see nor touch alice's data --------------------------------------------------

MARK = "A1ice"  # in every name, description, merchant and note of alice's, so any leak is visible
ALICE_AMOUNTS = ("1111.11", "2222.22", "3333.33", "4444.44", "5555.55", "9876.00", "5000.00")


def leaks(value: Any) -> list[str]:
    """Which of alice's markers appear anywhere in a result (structured content or error text)."""
    dumped = value if isinstance(value, str) else json.dumps(value)
    return [marker for marker in (MARK, MARK.lower(), *ALICE_AMOUNTS) if marker in dumped]


def listed_ids(value: Any, key: str) -> set[int]:
    """The ids of the rows listed under ``key`` ("expenses", "changes") anywhere in a result."""
    if isinstance(value, list):
        return set().union(*(listed_ids(item, key) for item in value))
    if not isinstance(value, dict):
        return set()
    found = {row["id"] for row in value.get(key) or [] if isinstance(row, dict) and "id" in row}
    return found.union(*(listed_ids(item, key) for item in value.values()))


@dataclass
class AliceData:
    expense_ids: list[int]
    change_ids: list[int]
    cursors: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (tool, arguments with cursor)


def last_month(day: date) -> date:
    return (day.replace(day=1) - timedelta(days=1)).replace(day=1)


async def seed_alice(client: Client) -> AliceData:
    today = datetime.now(UTC).date()
    earlier = last_month(today).isoformat()
    for name in ("Food", f"{MARK}-Travel", f"{MARK}-Hidden"):
        await ok(client, "create_category", name=name)
    expenses = [
        ("1111.11", "Food", today.isoformat()),
        ("2222.22", "Food", today.isoformat()),
        ("3333.33", f"{MARK}-Travel", earlier),
        ("4444.44", "Food", today.isoformat()),
        ("5555.55", "Food", earlier),
    ]
    ids = []
    for amount, category, day in expenses:
        created = await ok(
            client,
            "create_expense",
            amount=amount,
            description=f"{MARK} {category}",
            category=category,
            spent_on=day,
            merchant=f"{MARK}Mart",
            notes=f"{MARK} notes",
            idempotency_key=f"{MARK}-{amount}",
        )
        ids.append(created["id"])
    await ok(client, "update_expense", expense_id=ids[0], notes=f"{MARK} changed")
    await ok(client, "recategorize_expenses", expense_ids=[ids[1]], category=f"{MARK}-Travel")
    await ok(client, "delete_expense", expense_id=ids[3])
    await ok(client, "set_budget", category="Food", amount="9876")
    await ok(client, "set_budget", category=f"{MARK}-Travel", amount="5000", ongoing=True, rollover=True)
    changes = await ok(client, "list_changes", limit=100)
    data = AliceData(expense_ids=ids, change_ids=[c["id"] for c in changes["changes"]])
    assert len(data.change_ids) == 3 + 5 + 5  # categories, expenses, update/move/delete/two budgets

    paged: list[tuple[str, dict[str, Any]]] = [
        ("search_expenses", {"limit": 1}),
        ("search_expenses", {"limit": 1, "text": MARK}),
        ("query_expenses_by_category", {"category": "Food", "limit": 1}),
        ("list_categories", {"limit": 1}),
        ("list_changes", {"limit": 1}),
        ("list_changes", {"limit": 1, "details": True}),
        ("summarize_spending", {"limit": 1, "period": "this_year"}),
        ("summarize_spending", {"limit": 1, "period": "this_year", "group_by": "month"}),
        ("budget_status", {"limit": 1}),
        ("compare_periods", {"limit": 1}),
        ("top_expenses", {"limit": 1, "period": "this_year"}),
    ]
    for tool, arguments in paged:
        page = await ok(client, tool, **arguments)
        if page.get("next_cursor"):
            data.cursors.append((tool, {**arguments, "cursor": page["next_cursor"]}))
    assert len(data.cursors) >= 8, f"too few of alice's listings were paged: {data.cursors}"
    return data


async def call(client: Client, tool: str, /, **arguments: Any) -> tuple[bool, Any]:
    """(is_error, structured content or error text) of any tool call."""
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        return True, result.content[0].text  # type: ignore[union-attr]
    return False, result.structured_content


@pytest.mark.anyio
async def test_a_user_cannot_read_or_change_another_users_data_by_any_tool_id_cursor_or_resource(
    backend: Backend, server: HttpServer, db: Engine
) -> None:
    alice, bob = account(backend, "alice"), account(backend, "bob")
    async with mcp_client(server.url, alice.token) as client:
        seeded = await seed_alice(client)
    today = datetime.now(UTC).date().isoformat()
    async with mcp_client(server.url, bob.token) as client:
        # bob's own, deliberately overlapping names: a category "Food" of his own
        await ok(client, "create_category", name="Food")
        mine = await ok(
            client,
            "create_expense",
            amount="7.00",
            description="tea",
            category="Food",
            merchant="Kiosk",
            spent_on=today,
        )
        pristine = snapshot(db)

        # --- alice's ids, by every tool that takes one: not found, and nothing of hers in the message ---
        for expense_id in seeded.expense_ids:
            attempts: list[tuple[str, dict[str, Any]]] = [
                ("get_expense", {"expense_id": expense_id}),
                ("update_expense", {"expense_id": expense_id, "description": "pwned"}),
                ("update_expense", {"expense_id": expense_id, "clear": ["notes"]}),
                ("delete_expense", {"expense_id": expense_id}),
                ("delete_expense", {"expense_id": expense_id, "dry_run": True}),
                ("recategorize_expenses", {"expense_ids": [expense_id], "category": "Food"}),
                ("recategorize_expenses", {"expense_ids": [mine["id"], expense_id], "category": "Food"}),
                ("recategorize_expenses", {"expense_ids": [expense_id], "category": "Food", "dry_run": True}),
            ]
            for tool, arguments in attempts:
                message = await fails(client, tool, **arguments)
                assert f"no expense with id {expense_id}" in message, (tool, message)
                assert not leaks(message), (tool, message)
        for change_id in seeded.change_ids:
            for dry_run in (False, True):
                message = await fails(client, "undo_change", change_id=change_id, dry_run=dry_run)
                assert message.startswith(f"Error executing tool undo_change: no change with id {change_id};"), message
        # --- alice's category names: unknown to bob ---
        for tool, arguments in [
            ("query_expenses_by_category", {"category": f"{MARK}-Travel"}),
            ("search_expenses", {"category": f"{MARK}-Travel"}),
            ("rename_category", {"name": f"{MARK}-Hidden", "new_name": "Mine now"}),
            ("merge_categories", {"source": f"{MARK}-Travel", "target": "Food"}),
            ("delete_category", {"name": f"{MARK}-Hidden"}),
            ("set_budget", {"category": f"{MARK}-Travel", "amount": "1"}),
            ("delete_budget", {"category": f"{MARK}-Travel", "ongoing": True}),
            ("create_expense", {"amount": "1", "description": "x", "category": f"{MARK}-Travel"}),
        ]:
            name = arguments.get("category") or arguments.get("name") or arguments.get("source")
            message = await fails(client, tool, **arguments)
            # The hint names only bob's categories.
            assert message == (
                f"Error executing tool {tool}: no category {name!r}; known: Food (create_category adds a new one)"
            ), message

        # --- every listing and report shows bob's rows only ---
        categories = await ok(client, "list_categories")
        assert categories["categories"] == [{"name": "Food", "expense_count": 1}]
        changes = await ok(client, "list_changes", limit=100, details=True)
        assert not {c["id"] for c in changes["changes"]} & set(seeded.change_ids)
        assert [c["tool"] for c in changes["changes"]] == ["create_expense", "create_category"]
        found = await ok(client, "search_expenses")
        assert [e["id"] for e in found["expenses"]] == [mine["id"]]
        assert (await ok(client, "search_expenses", text=MARK))["expenses"] == []
        assert (await ok(client, "search_expenses", merchant=f"{MARK}Mart"))["expenses"] == []
        in_food = await ok(client, "query_expenses_by_category", category="Food")
        assert [e["id"] for e in in_food["expenses"]] == [mine["id"]]
        for group_by in ("category", "month", "week", "day", "merchant"):
            summary = await ok(client, "summarize_spending", period="this_year", group_by=group_by)
            assert summary["totals"] == [{"currency": "USD", "total": "7.00", "count": 1}], group_by
            assert not leaks(summary), group_by
        status = await ok(client, "budget_status")
        assert status["budgets"] == [] and not leaks(status)
        reports: list[tuple[str, dict[str, Any]]] = [
            ("spending_trend", {"months": 3}),
            ("spending_trend", {"months": 3, "category": "Food"}),
            ("compare_periods", {}),
            ("top_expenses", {"period": "this_year"}),
            ("search_expenses", {"min_amount": "1000"}),
            ("list_changes", {"details": True}),
        ]
        for tool, arguments in reports:
            result = await ok(client, tool, **arguments)
            assert not leaks(result), (tool, result)
        top = await ok(client, "top_expenses", period="this_year")
        assert [e["id"] for e in top["expenses"]] == [mine["id"]]

        # --- alice's cursors continue bob's own queries at most: an error, or nothing of hers ---
        for tool, arguments in seeded.cursors:
            failed, result = await call(client, tool, **arguments)
            assert not leaks(result), (tool, arguments, result)
            if not failed:
                assert listed_ids(result, "expenses") <= {mine["id"]}, (tool, result)
                assert not listed_ids(result, "changes") & set(seeded.change_ids), (tool, result)

        # --- resources: bob's data only ---
        read = await client.read_resource("budget://categories")
        assert json.loads(read.contents[0].text)["categories"] == [{"name": "Food", "expense_count": 1}]  # type: ignore[union-attr]
        for uri in ("budget://months/current/summary", "budget://months/current/budget"):
            content = (await client.read_resource(uri)).contents[0].text  # type: ignore[union-attr]
            assert not leaks(content), (uri, content)
        month = json.loads((await client.read_resource("budget://months/current/summary")).contents[0].text)  # type: ignore[union-attr]
        assert month["totals"] == [{"currency": "USD", "total": "7.00", "count": 1}]

    # Nothing bob did changed anything: alice's rows (and bob's) are exactly as they were.
    assert snapshot(db) == pristine
    # And alice still sees all of hers.
    async with mcp_client(server.url, alice.token) as client:
        assert len((await ok(client, "search_expenses"))["expenses"]) == 4  # five created, one deleted
        assert len((await ok(client, "list_changes", limit=100))["changes"]) == len(seeded.change_ids)


# --- revocation ------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_token_revoke_takes_effect_for_the_very_next_request(
    backend: Backend, server: HttpServer, db: Engine, http: httpx2.Client
) -> None:
    kept = account(backend, "henry")
    revoked = create_token(backend.url, kept.user, "laptop")  # a second token of the same user
    async with mcp_client(server.url, revoked.token) as client:
        await ok(client, "create_category", name="Food")
        done = backend.cli("token", "revoke", str(revoked.id))
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"token {revoked.id} of user {kept.user!r} is revoked\n"
        before = snapshot(db)
        # The same client, the same connection, the next call: refused.
        with pytest.raises(MCPError):
            await client.call_tool("create_category", {"name": "Too late"})
    response = post(http, server.url, tool_call("create_category", name="Too late"), revoked.headers)
    assert response.status_code == 401
    assert snapshot(db) == before
    # Only that token: the user's other token still works, and sees the data.
    async with mcp_client(server.url, kept.token) as client:
        assert (await ok(client, "list_categories"))["categories"] == [{"name": "Food", "expense_count": 0}]


# --- DNS rebinding ------------------------------------------------------------------------------------------


def test_a_foreign_host_gets_421_and_a_foreign_origin_403_even_with_a_valid_token(
    backend: Backend, server: HttpServer, db: Engine, http: httpx2.Client
) -> None:
    issued = account(backend, "ivan")
    before = snapshot(db)
    refused = {
        421: [{"Host": "evil.example.com"}, {"Host": f"evil.example.com:{server.port}"}, {"Host": "127.0.0.2"}],
        403: [
            {"Origin": "http://evil.example.com"},
            {"Origin": f"http://evil.example.com:{server.port}"},
            {"Origin": "null"},
        ],
    }
    for status, cases in refused.items():
        for headers in cases:
            response = post(
                http, server.url, tool_call("create_category", name="Rebound"), {**issued.headers, **headers}
            )
            assert response.status_code == status, (headers, response.status_code, response.text[:200])
    assert snapshot(db) == before
    # What a local client sends is accepted.
    for number, headers in enumerate(
        [
            {},
            {"Host": f"localhost:{server.port}"},
            {"Origin": f"http://127.0.0.1:{server.port}"},
            {"Origin": f"http://localhost:{server.port}"},
        ]
    ):
        response = post(
            http, server.url, tool_call("create_category", name=f"Local {number}"), {**issued.headers, **headers}
        )
        assert not rpc_result(response)["result"]["isError"], headers
    assert user_rows(db, issued.user)["categories"] == 4


def test_a_load_balancer_health_check_needs_no_token_and_reveals_no_data(
    server: HttpServer, http: httpx2.Client
) -> None:
    response = http.get(f"{server.base_url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


def test_a_standalone_get_stream_is_refused_since_a_stateless_server_never_pushes(
    backend: Backend, server: HttpServer, http: httpx2.Client
) -> None:
    issued = account(backend, "gina")
    refused = http.get(server.url, headers={"Accept": "text/event-stream", **issued.headers})
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"
    # Without a token the answer is still 401: the token check comes first.
    assert http.get(server.url, headers={"Accept": "text/event-stream"}).status_code == 401


def test_serving_on_all_interfaces_without_allowed_host_is_refused(tmp_path: Path) -> None:
    port = free_port()
    done = run_cli(
        ["serve", "--transport", "http", "--host", "0.0.0.0", "--port", str(port)],
        f"sqlite:///{tmp_path / 'budget.sqlite3'}",
        tmp_path,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--allowed-host" in done.stderr, done.stderr
    assert "--host 0.0.0.0" in done.stderr, done.stderr
    assert done.stdout == ""


def test_an_allowed_host_is_accepted_and_only_the_named_hosts(tmp_path: Path) -> None:
    """``--allowed-host budget.example.com``: that Host (with or without a port) and its origins are accepted,
    other names are not. Bound to 0.0.0.0 when the sandbox lets us (else 127.0.0.1, where loopback names are
    allowed too)."""
    url = f"sqlite:///{tmp_path / 'budget.sqlite3'}"
    everywhere = can_bind_all_interfaces()
    with (
        running_http_server(
            url, tmp_path, host="0.0.0.0" if everywhere else "127.0.0.1", allowed_hosts=["budget.example.com"]
        ) as started,
        httpx2.Client(timeout=30.0) as http,
    ):
        issued = create_token(url, fresh_user("judy"))
        accepted = [
            {"Host": "budget.example.com"},
            {"Host": f"budget.example.com:{started.port}"},
            {"Host": "budget.example.com", "Origin": "https://budget.example.com"},
            {"Host": "budget.example.com", "Origin": f"http://budget.example.com:{started.port}"},
        ]
        for number, headers in enumerate(accepted):
            response = post(
                http,
                started.url,
                tool_call("create_category", name=f"Via proxy {number}"),
                {**issued.headers, **headers},
            )
            assert response.status_code == 200, (headers, response.status_code, response.text)
            assert not rpc_result(response)["result"]["isError"]
        refused = [
            ({"Host": "evil.example.com"}, 421),
            ({"Host": "budget.example.com.evil.example.com"}, 421),
            ({"Host": "budget.example.com", "Origin": "https://evil.example.com"}, 403),
        ]
        if everywhere:  # not bound to loopback: loopback names are not implicitly allowed
            refused.append(({"Host": f"127.0.0.1:{started.port}"}, 421))
        for headers, status in refused:
            response = post(http, started.url, tool_call("create_category", name="Nope"), {**issued.headers, **headers})
            assert response.status_code == status, (headers, response.status_code, response.text)


# --- the token command line -----------------------------------------------------------------------------


def all_values(engine: Engine) -> str:
    """Every value of every row of every table, as text."""
    return repr(snapshot(engine))


def test_token_create_prints_the_token_only_on_stdout_and_stores_only_its_sha256(
    backend: Backend, server: HttpServer, db: Engine, http: httpx2.Client
) -> None:
    user = fresh_user("kate")
    done = backend.cli("token", "create", "--user", user, "--label", "kate's laptop")
    assert done.returncode == 0, done.stderr
    token = done.stdout.removesuffix("\n")
    assert TOKEN_PATTERN.fullmatch(token), done.stdout
    assert done.stdout == token + "\n"  # one line: the token, nothing else
    assert token not in done.stderr
    note = re.fullmatch(rf"token (\d+) for user '{re.escape(user)}'; it is shown only this once\..*\n", done.stderr)
    assert note, done.stderr
    token_id = int(note.group(1))

    with db.connect() as connection:
        stored = connection.execute(
            text(
                "SELECT u.name, t.token_hash, t.label, t.revoked_at FROM api_tokens t JOIN users u ON u.id = t.user_id "
                "WHERE t.id = :id"
            ),
            {"id": token_id},
        ).one()
    assert tuple(stored) == (user, hashlib.sha256(token.encode()).hexdigest(), "kate's laptop", None)
    secret = token.removeprefix("bmcp_")
    everything = all_values(db)
    assert token not in everything and secret not in everything
    if backend.name == "sqlite":
        files = backend.database_files()
        assert files, "no SQLite file found"
        for path in files:
            raw = path.read_bytes()
            assert secret.encode() not in raw, path
    # And it works on the running server.
    response = post(http, server.url, tool_call("list_categories"), {"Authorization": f"Bearer {token}"})
    assert rpc_result(response)["result"]["structuredContent"] == {"categories": [], "count": 0, "next_cursor": None}


def test_token_list_shows_ids_users_labels_and_state_but_never_a_token(
    backend: Backend, server: HttpServer, db: Engine
) -> None:
    first = create_token(backend.url, fresh_user("liam"), "desktop")
    second = create_token(backend.url, fresh_user("mona"))
    revoke_token(backend.url, second.id)
    done = backend.cli("token", "list")
    assert done.returncode == 0, done.stderr
    lines = {int(line.split()[0]): line for line in done.stdout.splitlines()}
    assert first.user in lines[first.id] and "active" in lines[first.id] and "desktop" in lines[first.id]
    assert second.user in lines[second.id] and "revoked" in lines[second.id]
    with db.connect() as connection:
        hashes = connection.execute(text("SELECT token_hash FROM api_tokens")).scalars().all()
    assert hashes
    for secret in [first.token, second.token, first.token.removeprefix("bmcp_"), *hashes]:
        assert secret not in done.stdout and secret not in done.stderr
    assert not TOKEN_PATTERN.search(done.stdout)


def test_token_revoke_of_an_unknown_id_fails_with_a_clear_message_and_changes_nothing(
    backend: Backend, server: HttpServer, db: Engine
) -> None:
    before = snapshot(db)
    done = backend.cli("token", "revoke", "987654")
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr == "budget-mcp: no token 987654; `budget-mcp token list` shows the tokens\n"
    blank = backend.cli("token", "create", "--user", "  ")
    assert blank.returncode != 0 and blank.stdout == ""
    assert "--user NAME" in blank.stderr
    assert snapshot(db) == before


# --- stateless: any process serves any request ----------------------------------------------------------


@dataclass
class Hop:
    port: int
    method: str
    status: int
    sent_session: str | None
    got_session: str | None


class RoundRobin(httpx2.AsyncBaseTransport):
    """A load balancer without sticky sessions: each HTTP request goes to the next server in turn."""

    def __init__(self, ports: list[int]) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self.ports = ports
        self.hops: list[Hop] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self.ports[len(self.hops) % len(self.ports)]
        request.url = request.url.copy_with(port=port)
        request.headers["Host"] = f"127.0.0.1:{port}"
        response = await self._inner.handle_async_request(request)
        self.hops.append(
            Hop(
                port,
                request.method,
                response.status_code,
                request.headers.get("mcp-session-id"),
                response.headers.get("mcp-session-id"),
            )
        )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.mark.anyio
async def test_two_server_processes_serve_one_client_alternately_without_sessions(
    backend: Backend, server: HttpServer, second_server: HttpServer, db: Engine
) -> None:
    issued = account(backend, "nina")
    balancer = RoundRobin([server.port, second_server.port])
    async with mcp_client(server.url, issued.token, transport=balancer) as client:
        await ok(client, "create_category", name="Food")
        created = await ok(
            client, "create_expense", amount="3.10", description="bun", category="Food", spent_on="2026-03-02"
        )
        assert await ok(client, "get_expense", expense_id=created["id"]) == as_stored(created)
        updated = await ok(client, "update_expense", expense_id=created["id"], amount="3.20")
        assert updated["amount"] == "3.20"
        summary = await ok(client, "summarize_spending", start_date="2026-03-01", end_date="2026-03-31")
        assert summary["totals"] == [{"currency": "USD", "total": "3.20", "count": 1}]
        changes = (await ok(client, "list_changes"))["changes"]
        await ok(client, "undo_change", change_id=changes[0]["id"])
        assert (await ok(client, "get_expense", expense_id=created["id"]))["amount"] == "3.10"
    served = {hop.port for hop in balancer.hops if hop.status == 200}
    assert served == {server.port, second_server.port}, balancer.hops
    assert all(hop.status in (200, 202) for hop in balancer.hops), balancer.hops
    assert not [hop for hop in balancer.hops if hop.sent_session or hop.got_session], balancer.hops
    assert user_rows(db, issued.user)["expenses"] == 1

    # The same, by hand: server 1, then server 2, then server 1 again, never a session id.
    with httpx2.Client(timeout=30.0, headers=issued.headers) as http:
        for turn, target in enumerate([server, second_server, server]):
            response = post(
                http,
                target.url,
                tool_call(
                    "create_expense", amount="1", description=f"turn {turn}", category="Food", spent_on="2026-03-03"
                ),
            )
            assert "mcp-session-id" not in response.headers
            assert not rpc_result(response)["result"]["isError"]
    assert user_rows(db, issued.user)["expenses"] == 4


# --- secrets and the log ---------------------------------------------------------------------------------


def test_the_server_log_never_carries_a_token_or_the_database_password(
    backend: Backend, server: HttpServer, http: httpx2.Client
) -> None:
    """The module's server logs at DEBUG; tokens (valid, revoked, unknown) and the password stay out of it."""
    valid, revoked = account(backend, "olga"), account(backend, "pete")
    revoke_token(backend.url, revoked.id)
    unknown = "bmcp_" + uuid.uuid4().hex + "Zz9"
    for headers in (valid.headers, revoked.headers, {"Authorization": f"Bearer {unknown}"}):
        post(http, server.url, tool_call("create_category", name="Logged?"), headers)
        post(http, server.url, tool_call("get_expense", expense_id=999_999_999), headers)
    secrets = [token.removeprefix("bmcp_") for token in (*ISSUED, unknown)]
    password = make_url(backend.url).password
    assert not logged_secrets(server, *secrets, *([password] if password else []))
