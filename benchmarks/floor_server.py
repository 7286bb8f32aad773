"""The floor for the benchmarks: the smallest MCPServer of the same SDK, with one trivial tool, over stdio.

    .venv/bin/python benchmarks/floor_server.py

Its cold start (spawn to ``tools/list`` answered) and its ``echo`` round trip are what any server built on
this SDK pays before doing any work of its own; ``benchmarks/run.py`` measures budget-mcp against them.
"""

from mcp.server import MCPServer

server = MCPServer("floor", log_level="WARNING")


@server.tool()
def echo(value: int) -> int:
    """Return the value unchanged."""
    return value


if __name__ == "__main__":
    server.run()
