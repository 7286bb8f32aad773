"""Processes for the benchmarks: how servers are started, timed from spawn, and measured (RSS), plus the
machine description and the statistics every figure uses. Linux: memory and CPU facts come from /proc."""

from __future__ import annotations

import json
import math
import os
import platform
import selectors
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
PYTHON = sys.executable
SERVER = [PYTHON, "-m", "budget_mcp"]
FLOOR = [PYTHON, str(BENCHMARKS / "floor_server.py")]
INTERFACE = [PYTHON, str(BENCHMARKS / "interface_server.py")]  # budget-mcp's tool interface, no work
PROTOCOL = "2025-11-25"  # what Claude Desktop, Claude Code and the Inspector negotiate (the initialize handshake)
TIMEOUT = 120.0  # seconds any single answer may take before the benchmark gives up


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- statistics ------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (p99 of fewer than 100 samples is their maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class Spread:
    """The median over repeated runs, and the smallest and largest run."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def ms(self, digits: int = 2) -> str:
        return f"{self.median * 1000:.{digits}f} ({self.low * 1000:.{digits}f}\u2013{self.high * 1000:.{digits}f})"

    def plain(self, digits: int = 2, unit: str = "") -> str:
        return f"{self.median:.{digits}f}{unit} ({self.low:.{digits}f}\u2013{self.high:.{digits}f})"


# --- the servers' environment ----------------------------------------------------------------------------


def server_env(workdir: Path, database_url: str, user: str, **settings: str) -> dict[str, str]:
    """This process's environment without any budget-mcp setting, plus a throwaway home and these."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("BUDGET_MCP_")}
    env.update(
        DATABASE_URL=database_url,
        BUDGET_MCP_USER=user,
        BUDGET_MCP_TIMEZONE="UTC",
        BUDGET_MCP_LOG_LEVEL="WARNING",
        HOME=str(workdir),
        XDG_DATA_HOME=str(workdir / "data"),
    )
    env.update(settings)
    return env


TAG = "BENCH_PROCESS_TAG"  # set in each server's environment, so that its pid can be found


@asynccontextmanager
async def client(command: Sequence[str], env: dict[str, str], cwd: Path, errlog: Path) -> AsyncIterator[Client]:
    """An SDK client (default mode: it negotiates what it prefers) that spawns ``command`` and speaks MCP to it
    over stdio; the server's stderr goes to ``errlog``, so its log can be checked afterwards."""
    params = StdioServerParameters(command=command[0], args=list(command[1:]), env=env, cwd=cwd)
    with errlog.open("a") as handle:
        async with Client(stdio_client(params, errlog=handle)) as connected:
            yield connected


def pid_with_tag(tag: str) -> int | None:
    """The pid of this process's child whose environment has ``BENCH_PROCESS_TAG=tag``."""
    me = str(os.getpid())
    wanted = f"{TAG}={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            if next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "") != me:
                continue
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except OSError:
            continue
    return None


# --- cold start: spawn to tools/list, by hand-written JSON-RPC ---------------------------------------------


@dataclass(frozen=True)
class ColdStart:
    initialized: float  # seconds from spawn to the initialize answer
    listed: float  # seconds from spawn to the tools/list answer
    tools: int


class _Lines:
    """Reads JSON-RPC lines from a process's stdout with a deadline (no thread, no blocking read)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.stream = process.stdout
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.stream, selectors.EVENT_READ)
        self.buffer = b""

    def answer(self, request_id: int, deadline: float) -> dict[str, Any]:
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                message = json.loads(line)
                if message.get("id") == request_id:
                    if "error" in message:
                        raise RuntimeError(f"request {request_id} failed: {message['error']}")
                    return message["result"]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.selector.select(remaining):
                raise TimeoutError(f"no answer to request {request_id}")
            chunk = os.read(self.stream.fileno(), 1 << 16)
            if not chunk:
                raise RuntimeError(f"the server exited before answering request {request_id}")
            self.buffer += chunk


def _send(process: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert process.stdin is not None
    process.stdin.write(json.dumps(message).encode() + b"\n")
    process.stdin.flush()


def cold_start(command: Sequence[str], env: dict[str, str], cwd: Path, errlog: Path) -> ColdStart:
    """Spawn ``command``, send ``initialize`` (as Claude Desktop does), then ``notifications/initialized`` and
    ``tools/list``; the times are from just before the spawn to each answer. Then close stdin and reap it."""
    deadline = time.monotonic() + TIMEOUT
    with errlog.open("ab") as stderr:
        began = time.perf_counter()
        process = subprocess.Popen(
            list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=cwd
        )
    try:
        lines = _Lines(process)
        _send(
            process,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL,
                    "capabilities": {},
                    "clientInfo": {"name": "budget-mcp-benchmark", "version": "1"},
                },
            },
        )
        lines.answer(1, deadline)
        initialized = time.perf_counter() - began
        _send(process, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        _send(process, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        listed_tools = lines.answer(2, deadline)
        listed = time.perf_counter() - began
        return ColdStart(initialized, listed, len(listed_tools.get("tools", [])))
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


# --- memory ---------------------------------------------------------------------------------------------


def status_kb(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` field in kB (VmRSS: resident now; VmHWM: the peak since the last reset)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux 4.0+: write 5 to clear_refs); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return status_kb(pid, "VmHWM") <= status_kb(pid, "VmRSS") + 64


# --- the machine -----------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def memory_total_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine_facts(postgres_version: str | None) -> list[tuple[str, str]]:
    import sqlite3

    return [
        ("CPU", f"{cpu_model()}, {os.cpu_count()} logical CPUs"),
        ("RAM", f"{memory_total_gb():.1f} GiB"),
        ("OS", f"{os_name()}, Linux {platform.release()} ({platform.machine()})"),
        ("Python", platform.python_version()),
        ("SQLite", sqlite3.sqlite_version),
        ("PostgreSQL", postgres_version or "not run"),
        (
            "Packages",
            f"mcp {version('mcp')}, SQLAlchemy {version('sqlalchemy')}, psycopg2 {version('psycopg2-binary')}, "
            f"pydantic {version('pydantic')}, alembic {version('alembic')}",
        ),
    ]
