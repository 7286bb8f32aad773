"""End to end over stdio: the real ``budget-mcp`` process, driven by the SDK's client and by hand-written
JSON-RPC, on SQLite and on the test PostgreSQL. stdout must carry the protocol and nothing else, and the
database password must never reach stderr."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from sqlalchemy import Engine, create_engine, text

from budget_mcp import __version__

from helpers import TOOLS, as_stored, empty_tables, fails, ok
from pgserver import PostgresInstance

SERVER = [sys.executable, "-m", "budget_mcp"]
PROTOCOL = "2025-11-25"
HEAD = "0005"  # the newest migration
TIMEOUT = 60.0  # seconds any single read or exit may take before the test fails (never slept)


def server_env(tmp_path: Path, database_url: str, **settings: str) -> dict[str, str]:
    """The test process's environment without any budget-mcp setting, plus the ones given here."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("BUDGET_MCP_")}
    env.update(
        DATABASE_URL=database_url,
        BUDGET_MCP_USER="stdio-user",
        BUDGET_MCP_TIMEZONE="UTC",
        HOME=str(tmp_path),
        XDG_DATA_HOME=str(tmp_path / "data"),
    )
    env.update(settings)
    return env


def parameters(tmp_path: Path, database_url: str, **settings: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=SERVER[0], args=SERVER[1:], env=server_env(tmp_path, database_url, **settings), cwd=tmp_path
    )


def rows(engine_url: str, sql: str) -> list[tuple[Any, ...]]:
    engine: Engine = create_engine(engine_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


async def exercise(client: Client) -> None:
    """A short session: every tool is listed, a category and an expense are recorded, and summarised."""
    listed = await client.list_tools()
    assert {tool.name for tool in listed.tools} == TOOLS
    assert all(tool.description and tool.input_schema for tool in listed.tools)
    assert as_stored(await ok(client, "create_category", name="Food")) == {"name": "Food", "expense_count": 0}
    expense = await ok(
        client, "create_expense", amount="12.30", description="Lunch", category="food", spent_on="2026-03-14"
    )
    assert (expense["amount"], expense["currency"], expense["category"]) == ("12.30", "USD", "Food")
    summary = await ok(client, "summarize_spending", start_date="2026-03-01", end_date="2026-03-31")
    assert summary["totals"] == [{"currency": "USD", "total": "12.30", "count": 1}]
    assert [(g["key"], g["total"], g["share_percent"]) for g in summary["groups"]] == [("Food", "12.30", "100.00")]


# --- through the SDK's stdio client -------------------------------------------------------------------


@pytest.mark.anyio
async def test_over_stdio_a_client_lists_tools_records_summarises_and_reads_domain_errors(tmp_path: Path) -> None:
    database = tmp_path / "budget.sqlite3"
    async with Client(parameters(tmp_path, f"sqlite:///{database}")) as client:
        assert client.server_info is not None
        assert (client.server_info.name, client.server_info.version) == ("budget-mcp", __version__)
        assert client.instructions and "list_categories" in client.instructions
        await exercise(client)
        message = await fails(client, "create_expense", amount=5, description="x", category="Nope")
        assert message == (
            "Error executing tool create_expense: no category 'Nope'; known: Food (create_category adds a new one)"
        )
        invalid = await fails(client, "create_expense", amount="-1", description="x", category="Food")
        assert "greater than 0" in invalid
    # The data went to DATABASE_URL, under the configured user, not to a default database.
    assert rows(
        f"sqlite:///{database}", "SELECT u.name, e.amount_minor FROM expenses e JOIN users u ON u.id = e.user_id"
    ) == [("stdio-user", 1230)]
    assert not (tmp_path / "data").exists()


# --- raw JSON-RPC -------------------------------------------------------------------------------------


class RawServer:
    """The server process with pipes; threads drain stdout (line by line) and stderr, so nothing blocks."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd
        )
        self.stdout_lines: list[bytes] = []
        self._unread: queue.Queue[bytes | None] = queue.Queue()
        self._stderr = bytearray()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, b""):
            self.stdout_lines.append(line)
            self._unread.put(line)
        self._unread.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for chunk in iter(lambda: self.process.stderr.read1(65536), b""):  # type: ignore[union-attr]
            self._stderr.extend(chunk)

    @property
    def stderr(self) -> str:
        return self._stderr.decode(errors="replace")

    def send(self, message: dict[str, Any] | bytes) -> None:
        stdin: IO[bytes] | None = self.process.stdin
        assert stdin is not None
        stdin.write((message if isinstance(message, bytes) else json.dumps(message).encode()) + b"\n")
        stdin.flush()

    def request(self, request_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its response (skipping any notification the server sends meanwhile)."""
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method, **({"params": params} if params else {})})
        while True:
            try:
                line = self._unread.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"no response to {method} within {TIMEOUT}s; stderr:\n{self.stderr}") from None
            if line is None:
                raise AssertionError(f"stdout closed before the response to {method}; stderr:\n{self.stderr}")
            message = json.loads(line)
            if message.get("id") == request_id and "method" not in message:
                return message

    def close(self) -> int:
        """Close stdin, as a client does to stop the server, and wait for the exit and the last output."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        code = self.process.wait(timeout=TIMEOUT)
        for reader in self._readers:
            reader.join(timeout=TIMEOUT)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


StartRawServer = Callable[[dict[str, str], Path], RawServer]


@pytest.fixture
def start_raw_server() -> Iterator[StartRawServer]:
    """Start server processes for a test; any still running at its end are killed."""
    started: list[RawServer] = []

    def start(env: dict[str, str], cwd: Path) -> RawServer:
        server = RawServer(env, cwd)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def initialize(server: RawServer) -> dict[str, Any]:
    response = server.request(
        1,
        "initialize",
        {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "raw-test", "version": "1"}},
    )
    server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    return response


def call(server: RawServer, request_id: int, tool: str, **arguments: Any) -> dict[str, Any]:
    response = server.request(request_id, "tools/call", {"name": tool, "arguments": arguments})
    assert "result" in response, response
    result: dict[str, Any] = response["result"]
    return result


def assert_only_json_rpc(lines: list[bytes]) -> None:
    """Every line on stdout is one complete JSON-RPC 2.0 message, and nothing else is there."""
    assert lines, "the server wrote nothing on stdout"
    for line in lines:
        assert line.endswith(b"\n"), f"unterminated line on stdout: {line!r}"
        message = json.loads(line.decode("utf-8"))
        assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", line
        if "method" in message:
            assert isinstance(message["method"], str), line
        else:
            assert "id" in message and ("result" in message) != ("error" in message), line


def test_raw_json_rpc_on_stdout_and_debug_logs_on_stderr_only(tmp_path: Path, start_raw_server: StartRawServer) -> None:
    server = start_raw_server(
        server_env(tmp_path, f"sqlite:///{tmp_path / 'raw.sqlite3'}", BUDGET_MCP_LOG_LEVEL="DEBUG"), tmp_path
    )
    hello = initialize(server)
    assert hello["result"]["protocolVersion"] == PROTOCOL
    assert hello["result"]["serverInfo"]["name"] == "budget-mcp"
    assert hello["result"]["serverInfo"]["version"] == __version__
    assert "tools" in hello["result"]["capabilities"]

    listed = server.request(2, "tools/list")
    assert {tool["name"] for tool in listed["result"]["tools"]} == TOOLS
    created = call(server, 3, "create_category", name="Food")
    assert (created["isError"], as_stored(created["structuredContent"])) == (
        False,
        {"name": "Food", "expense_count": 0},
    )
    refused = call(server, 4, "create_expense", amount="5", description="x", category="Nope")
    assert refused["isError"] is True
    assert "no category 'Nope'" in refused["content"][0]["text"]
    server.send(b"this line is not JSON")  # a broken line must not end the session
    assert server.request(5, "no/such/method")["error"]["code"] == -32601
    assert server.request(6, "ping") == {"jsonrpc": "2.0", "id": 6, "result": {}}

    assert server.close() == 0
    assert_only_json_rpc(server.stdout_lines)
    assert [json.loads(line)["id"] for line in server.stdout_lines] == [1, 2, 3, 4, 5, 6]
    assert " DEBUG " in server.stderr and " INFO budget_mcp" in server.stderr  # logging did happen, on stderr


# --- on PostgreSQL ------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.anyio
async def test_over_stdio_the_server_migrates_and_uses_a_new_postgresql_database(
    tmp_path: Path, postgres: PostgresInstance
) -> None:
    url = postgres.create_database("stdio_e2e")
    try:
        with (tmp_path / "stderr.log").open("w") as errlog:
            async with Client(stdio_client(parameters(tmp_path, url), errlog=errlog)) as client:
                await exercise(client)
                page = await ok(client, "query_expenses_by_category", category="Food")
                assert [e["description"] for e in page["expenses"]] == ["Lunch"]
        assert rows(url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
        assert postgres.app_password not in (tmp_path / "stderr.log").read_text()
        assert rows(url, "SELECT u.name, c.name FROM categories c JOIN users u ON u.id = c.user_id") == [
            ("stdio-user", "Food")
        ]
    finally:
        postgres.drop_database("stdio_e2e")


@pytest.mark.postgres
def test_the_postgresql_password_never_appears_on_stderr_even_at_debug_level(
    tmp_path: Path, postgres: PostgresInstance, postgres_url: str, start_raw_server: StartRawServer
) -> None:
    assert postgres.app_password in postgres_url
    empty_tables(postgres_url)
    try:
        server = start_raw_server(server_env(tmp_path, postgres_url, BUDGET_MCP_LOG_LEVEL="DEBUG"), tmp_path)
        initialize(server)
        assert call(server, 2, "create_category", name="Food")["isError"] is False
        assert call(server, 3, "create_expense", amount="1", description="x", category="Nope")["isError"] is True
        assert call(server, 4, "summarize_spending", start_date="2026-01-01", end_date="2026-12-31")["isError"] is False
        assert server.close() == 0
    finally:
        empty_tables(postgres_url)
    assert_only_json_rpc(server.stdout_lines)
    stderr = server.stderr
    assert f"{postgres.app_user}:***@{postgres.host}:{postgres.port}" in stderr  # the URL is logged, masked
    assert postgres.app_password not in stderr
    assert postgres.app_password not in b"".join(server.stdout_lines).decode()


# --- a database that cannot be used -------------------------------------------------------------------


@pytest.mark.anyio
async def test_with_an_unreachable_database_the_server_still_starts_and_each_call_says_what_to_fix(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    password = "s3cret-Pa55word"
    url = f"postgresql://alex:{password}@127.0.0.1:{port}/budget?sslmode=require"
    errlog = tmp_path / "stderr.log"
    with errlog.open("w") as stderr:
        params = parameters(tmp_path, url, BUDGET_MCP_DATABASE_WAIT="0.2")
        async with Client(stdio_client(params, errlog=stderr)) as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
            first = await fails(client, "list_categories")
            second = await fails(client, "create_category", name="Food")  # tried again, not cached
    logged = errlog.read_text()
    assert (
        first
        == second.replace("create_category", "list_categories")
        == (
            f"Error executing tool list_categories: cannot use the database: nothing is listening at "
            f"127.0.0.1:{port}: start the database server, or correct the host and port in DATABASE_URL. "
            "Nothing was changed; call again once that is fixed (no restart needed)"
        )
    )
    assert f"cannot use the database postgresql+psycopg2://alex:***@127.0.0.1:{port}/budget" in logged
    assert "Connection refused" in logged  # the driver's words go to the log, not to the client
    assert password not in logged + first + second
    assert "Traceback" not in logged


@pytest.mark.anyio
async def test_a_database_created_after_the_server_started_is_used_without_a_restart(
    tmp_path: Path, postgres: PostgresInstance
) -> None:
    name = f"later_{uuid.uuid4().hex[:8]}"
    try:
        async with Client(parameters(tmp_path, postgres.url(name), BUDGET_MCP_DATABASE_WAIT="0.2")) as client:
            refused = await fails(client, "list_categories")
            assert "cannot use the database: the database named in DATABASE_URL does not exist" in refused
            postgres.create_database(name)
            assert as_stored(await ok(client, "create_category", name="Food")) == {"name": "Food", "expense_count": 0}
    finally:
        postgres.drop_database(name)


# --- loading the database layer -----------------------------------------------------------------------

# The real server (budget_mcp.cli.main over stdio) in a fresh interpreter, which notes on stderr, at exit,
# every SQLAlchemy module imported outside config.load_sqlalchemy before SQLAlchemy and its ORM are loaded:
# that function loads them one thread at a time (two threads importing them at once can see a module half
# loaded on Python 3.11). Later imports of a dialect or such are SQLAlchemy's own, on a loaded package.
IMPORT_WATCH = """
import atexit, sys, importlib.abc, threading
outside = []

def loaded():
    orm = sys.modules.get("sqlalchemy.orm")
    return orm is not None and not getattr(orm.__spec__, "_initializing", False)

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] == "sqlalchemy" and not loaded():
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_name != "load_sqlalchemy":
                frame = frame.f_back
            if frame is None:
                outside.append(f"{name} in {threading.current_thread().name}")
        return None

sys.meta_path.insert(0, Watch())
atexit.register(lambda: print(f"imported outside load_sqlalchemy: {outside}", file=sys.stderr))
from budget_mcp.cli import main
raise SystemExit(main())
"""


@pytest.mark.anyio
async def test_sqlalchemy_is_only_imported_by_load_sqlalchemy_whichever_thread_needs_it_first(
    tmp_path: Path, database_url: str
) -> None:
    errlog = tmp_path / "stderr.log"
    params = parameters(tmp_path, database_url, BUDGET_MCP_LOG_LEVEL="DEBUG")  # every thread logs, masked
    params = StdioServerParameters(command=sys.executable, args=["-c", IMPORT_WATCH], env=params.env, cwd=tmp_path)
    with errlog.open("w") as stderr:
        async with Client(stdio_client(params, errlog=stderr)) as client:
            await ok(client, "list_categories")  # before the warm-up: this call opens the database itself
            await ok(client, "create_category", name="Food")
            assert "Unknown tool" in await fails(client, "no_such_tool")
    assert "imported outside load_sqlalchemy: []" in errlog.read_text()
