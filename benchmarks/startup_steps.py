"""Where budget-mcp's start-up time goes: each import and step of ``budget-mcp`` (stdio) timed in one fresh
process, in the order the server does them, before it can answer ``initialize``. Prints JSON
``[[step, seconds], ...]`` on stdout. Run by ``benchmarks/run.py`` with the server's environment.

The floor server pays only the first step (importing the SDK) and building its one tool.
"""

from __future__ import annotations

import json
import sys
import time

began = last = time.perf_counter()
steps: list[tuple[str, float]] = []


def mark(step: str) -> None:
    global last
    now = time.perf_counter()
    steps.append((step, now - last))
    last = now


import mcp.server  # noqa: E402

mark("import the MCP SDK (mcp.server), as the floor does")
import sqlalchemy.orm  # noqa: E402

mark("import SQLAlchemy (engine, ORM)")
import pydantic_settings  # noqa: E402, F401

import budget_mcp.config  # noqa: E402

mark("import budget_mcp.config (pydantic-settings)")
import alembic.command  # noqa: E402, F401

mark("import Alembic (budget_mcp.db imports it at module level)")
import budget_mcp.db  # noqa: E402

mark("import budget_mcp.db (the rest)")
import budget_mcp.models  # noqa: E402
import budget_mcp.schemas  # noqa: E402

mark("import budget_mcp.models and .schemas (pydantic models)")
import budget_mcp.server  # noqa: E402

mark("import budget_mcp.server, service, reports, repository, transactions")
from budget_mcp.config import Settings  # noqa: E402

settings = Settings()  # type: ignore[call-arg]
server = budget_mcp.server.build_server(settings)
mark(f"build_server(): settings and {len(server._tool_manager.list_tools())} tool schemas")
from budget_mcp.transactions import migrate  # noqa: E402

migrate(settings)
mark("migrate(): schema already at head (Alembic loads its scripts, checks the version)")
total = time.perf_counter() - began


def stale(module: object) -> bool:
    """Whether the module's cached bytecode is missing or out of date (then every start compiles it again
    when PYTHONDONTWRITEBYTECODE is set, which would make the cold start look slower than it is)."""
    import importlib.util
    from pathlib import Path

    source = Path(getattr(module, "__file__", None) or "")
    if source.suffix != ".py":
        return False
    cached = Path(importlib.util.cache_from_source(str(source)))
    try:
        header = cached.read_bytes()[:16]
    except OSError:
        return True
    return int.from_bytes(header[8:12], "little") != int(source.stat().st_mtime) & 0xFFFFFFFF


json.dump(
    {
        "steps": [*steps, ("total", total)],
        "stale": sorted(
            name for name, module in list(sys.modules.items()) if name.startswith("budget_mcp") and stale(module)
        ),
    },
    sys.stdout,
)
del mcp, sqlalchemy
