"""Run the real ``budget-mcp serve --transport http`` as a subprocess, for the tests and the benchmarks.

Usage::

    with running_http_server(database_url, workdir) as server:    # waits until it answers HTTP
        issued = create_token(database_url, "alice")                # through the library
        async with mcp_client(server.url, issued.token) as client:
            await client.call_tool("create_category", {"name": "Food"})

Each server gets a free port (a new one if the port was taken in the meantime), its stderr goes to a file
in ``workdir`` (shown when it fails to start), and readiness is polled: uvicorn runs the server's lifespan
(schema migration) before it listens, so the first HTTP answer (401 to a request without a token) means the
server is ready. Nothing here sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from budget_mcp import tokens
from budget_mcp.config import Settings
from budget_mcp.db import make_engine, make_session_factory

SERVER_COMMAND = (sys.executable, "-m", "budget_mcp")
SERVER_USER = "http-server-default-user"
"""BUDGET_MCP_USER of every server process: with bearer tokens it must never be used."""
START_TIMEOUT = 60.0  # seconds until the server must answer HTTP
STOP_TIMEOUT = 15.0  # seconds a SIGTERM'd server gets before SIGKILL
POLL_INTERVAL = 0.02
_PORT_ATTEMPTS = 5
ACCEPT = "application/json, text/event-stream"


class ServerFailed(RuntimeError):
    """The server process did not start (or died); the message carries its stderr's tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the server may still lose a race for it: see ``start``)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def can_bind_all_interfaces() -> bool:
    """Whether this sandbox lets a process listen on 0.0.0.0."""
    try:
        with socket.socket() as sock:
            sock.bind(("0.0.0.0", 0))
            sock.listen(1)
    except OSError:
        return False
    return True


def server_env(database_url: str, home: Path, **settings: str) -> dict[str, str]:
    """The current environment without any budget-mcp setting, plus DATABASE_URL and ``settings``.

    ``HOME``/``XDG_DATA_HOME`` point into ``home`` so a mistake can never touch the real per-user database.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "DATABASE_URL_UNPOOLED"} and not k.startswith("BUDGET_MCP_")
    }
    env.update(
        DATABASE_URL=database_url,
        BUDGET_MCP_USER=SERVER_USER,
        BUDGET_MCP_TIMEZONE="UTC",
        BUDGET_MCP_LOG_LEVEL="WARNING",
        HOME=str(home),
        XDG_DATA_HOME=str(home / "xdg-data"),
    )
    env.update(settings)
    return env


class HttpServer:
    """One ``budget-mcp serve --transport http`` process (see :func:`running_http_server`)."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        *,
        name: str = "server",
        host: str = "127.0.0.1",
        allowed_hosts: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.allowed_hosts = list(allowed_hosts)
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = server_env(database_url, workdir, **dict(env or {}))
        self.stderr_path = workdir / f"{name}.stderr.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Where a client on this machine reaches it (loopback even when bound to 0.0.0.0)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/mcp"

    def command(self, port: int) -> list[str]:
        argv = [*SERVER_COMMAND, "serve", "--transport", "http", "--host", self.host, "--port", str(port)]
        for allowed in self.allowed_hosts:
            argv += ["--allowed-host", allowed]
        return argv

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start on a free port and return once it answers HTTP; retry on a port lost to a race."""
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = free_port("0.0.0.0" if self.host == "0.0.0.0" else "127.0.0.1")
            self._spawn(port)
            try:
                self._wait_ready(port)
            except ServerFailed:
                self.stop()
                if "address already in use" in self.stderr_text().lower() and attempt < _PORT_ATTEMPTS:
                    continue
                raise
            self.port = port
            return

    def _spawn(self, port: int) -> None:
        self._stderr = self.stderr_path.open("ab")
        self._stderr.write(f"--- {' '.join(self.command(port))}\n".encode())
        self._stderr.flush()
        self.process = subprocess.Popen(
            self.command(port),
            env=self.env,
            cwd=self.workdir,  # no .env file there
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,  # nothing is expected on stdout; keep it with stderr for diagnostics
            stderr=self._stderr,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the test runner, not the server
        )

    def _wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx2.Client(timeout=5.0) as http:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise ServerFailed(
                        f"{self.name} exited with {self.process.returncode} before it served HTTP" + self.stderr_tail()
                    )
                try:
                    response = http.post(f"http://127.0.0.1:{port}/mcp", json={}, headers={"Accept": ACCEPT})
                except httpx2.TransportError:
                    pass
                else:
                    if response.status_code == 401 and self._database_ready(http, port):
                        return
                    if response.status_code != 401:
                        raise ServerFailed(
                            f"{self.name} answered {response.status_code} (expected 401) to an anonymous request: "
                            f"{response.text[:200]}" + self.stderr_tail()
                        )
                if time.monotonic() > deadline:
                    raise ServerFailed(f"{self.name} did not answer HTTP within {START_TIMEOUT}s" + self.stderr_tail())
                time.sleep(POLL_INTERVAL)

    @staticmethod
    def _database_ready(http: httpx2.Client, port: int) -> bool:
        """The server opens (and migrates) its database in the background after it starts listening."""
        return http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL if it lingers; return the exit code."""
        process, self.process = self.process, None
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=STOP_TIMEOUT)
            code = process.returncode
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return code

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, lines: int = 40) -> str:
        tail = "\n".join(self.stderr_text().splitlines()[-lines:])
        return f"\n--- {self.stderr_path} (tail) ---\n{tail}" if tail else ""

    def __enter__(self) -> HttpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def running_http_server(
    database_url: str,
    workdir: Path,
    *,
    name: str = "server",
    host: str = "127.0.0.1",
    allowed_hosts: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[HttpServer]:
    """A started server (ready for requests); stopped afterwards, even on error."""
    server = HttpServer(database_url, workdir, name=name, host=host, allowed_hosts=allowed_hosts, env=env)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- tokens, through the library (the CLI is tested on its own) ---------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    id: int
    user: str
    token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, _env_file=None)  # type: ignore[call-arg]


def create_token(database_url: str, user: str, label: str | None = None) -> IssuedToken:
    """A new token for ``user`` in a migrated database (a started server has migrated it)."""
    engine = make_engine(_settings(database_url).url)
    try:
        with make_session_factory(engine).begin() as session:
            token, info = tokens.create_token(session, user, label)
    finally:
        engine.dispose()
    return IssuedToken(info.id, info.user, token)


def revoke_token(database_url: str, token_id: int) -> None:
    engine = make_engine(_settings(database_url).url)
    try:
        with make_session_factory(engine).begin() as session:
            tokens.revoke_token(session, token_id)
    finally:
        engine.dispose()


# --- clients -------------------------------------------------------------------------------------------


@asynccontextmanager
async def mcp_client(
    url: str, token: str | None, *, transport: httpx2.AsyncBaseTransport | None = None, timeout: float = 60.0
) -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP, sending ``Authorization: Bearer <token>`` on every request."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(timeout), transport=transport) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def rpc_request(method: str, params: dict[str, Any] | None = None, request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, **({"params": params} if params else {})}


def tool_call(tool: str, /, **arguments: Any) -> dict[str, Any]:
    """A raw JSON-RPC ``tools/call`` body (stateless HTTP needs no initialize before it)."""
    return rpc_request("tools/call", {"name": tool, "arguments": arguments})


def post(
    http: httpx2.Client, url: str, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> httpx2.Response:
    """POST one JSON-RPC message the way an MCP client does (both content types accepted)."""
    return http.post(url, json=body, headers={"Accept": ACCEPT, **dict(headers or {})})


def rpc_result(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC message of a 200 answer, whether sent as JSON or as one SSE event."""
    assert response.status_code == 200, f"HTTP {response.status_code}: {response.text[:300]}"
    if response.headers.get("content-type", "").startswith("application/json"):
        message: dict[str, Any] = response.json()
        return message
    for line in response.text.splitlines():
        if line.startswith("data:"):
            candidate: dict[str, Any] = json.loads(line.removeprefix("data:").strip())
            if "id" in candidate:
                return candidate
    raise AssertionError(f"no JSON-RPC response in: {response.text[:300]}")


# --- the command line ----------------------------------------------------------------------------------


def run_cli(
    args: Sequence[str], database_url: str, workdir: Path, *, timeout: float = 120.0, **settings: str
) -> subprocess.CompletedProcess[str]:
    """``budget-mcp ARGS`` with DATABASE_URL (and ``settings``), capturing stdout and stderr apart."""
    return subprocess.run(
        [*SERVER_COMMAND, *args],
        env=server_env(database_url, workdir, **settings),
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
