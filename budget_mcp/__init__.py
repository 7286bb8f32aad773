"""budget-mcp: keep and analyse spending through safe, typed MCP tools."""

__version__ = "0.1.0"
