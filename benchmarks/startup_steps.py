"""Where budget-mcp's start-up time goes: each import and step of ``budget-mcp`` (stdio) timed in one fresh
process, in the order the server does them: what it does before it can answer ``initialize`` and
``tools/list`` (the handshake path, with the cyclic garbage collector off as the CLI has it), then what a
worker thread does after the handshake (registering the tools, the database layer, opening the database). Prints JSON
``{"steps": [[step, seconds], ...], "stale": [...]}`` on stdout. Run by ``benchmarks/run.py`` with the
server's environment.

The floor server pays only the first step (importing the SDK) and building its one tool.
"""

from __future__ import annotations

import gc
import json
import sys
import time

gc.disable()  # as budget_mcp.cli.main() does until the server is built
began = last = time.perf_counter()
steps: list[tuple[str, float]] = []


def mark(step: str) -> None:
    global last
    now = time.perf_counter()
    steps.append((step, now - last))
    last = now


import mcp.server  # noqa: E402

mark("import the MCP SDK (mcp.server), as the floor does")
import budget_mcp.config  # noqa: E402

mark("import budget_mcp.config (pydantic-settings)")
settings = budget_mcp.config.Settings()  # type: ignore[call-arg]
mark("read the settings (a DATABASE_URL is checked with the standard library, not SQLAlchemy)")
import budget_mcp.server  # noqa: E402

mark("import budget_mcp.server and .schemas (tool declarations, pydantic models)")
server = budget_mcp.server.build_server(settings)
shipped = budget_mcp.server.shipped_tools(settings.read_only)
mark(
    "build_server(): tools/list from the shipped copy (budget_mcp/tools_list.json), tools not registered yet"
    if shipped is not None
    else "build_server(): every tool registered (no shipped tools/list fits these sources and versions)"
)
handshake = time.perf_counter() - began
gc.freeze()  # as budget_mcp.cli._started() does once the server is built
gc.enable()
if shipped is not None:
    server._deferred.register()  # type: ignore[attr-defined]
    mark(f"after the handshake, in a worker thread: register the {len(shipped)} tools (the SDK's JSON schemas)")
import budget_mcp.models  # noqa: E402
import budget_mcp.service  # noqa: E402

mark("after the handshake, in a worker thread: import the database layer (SQLAlchemy ORM, models, use cases)")
from budget_mcp.transactions import migrate  # noqa: E402

migrate(settings)
mark("after the handshake: open the database, schema already at head (one SELECT; Alembic not imported)")
total = time.perf_counter() - began
assert "alembic" not in sys.modules, "a database at head must not need Alembic"


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
        "steps": [*steps, ("handshake path (the steps before the worker thread)", handshake), ("total", total)],
        "stale": sorted(
            name for name, module in list(sys.modules.items()) if name.startswith("budget_mcp") and stale(module)
        ),
    },
    sys.stdout,
)
del mcp
