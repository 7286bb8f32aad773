"""The interface floor for the benchmarks: an MCPServer of the same SDK whose tools have budget-mcp's
interface (the same names, parameters, descriptions, output schemas) but do no work: each answers with a
canned answer, the one budget-mcp gave for the same call on the same dataset.

    BENCH_INTERFACE_ANSWERS=answers.json .venv/bin/python benchmarks/interface_server.py

``answers.json`` maps a tool name to its structured answer. The SDK validates the arguments against the
tool's argument model and the answer against its output model, and serialises the answer, exactly as for
budget-mcp; what budget-mcp takes beyond this server is its own work: the database, the ORM, the service
code. So (interface - floor) is the least any implementation of these tools on this SDK adds to the floor,
and 1 + (interface - floor) ÷ raw SQL the lowest ratio it could reach. ``benchmarks/run.py`` runs it.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp.server import MCPServer

from budget_mcp.config import Settings
from budget_mcp.server import build_server


def interface_server(answers: dict[str, Any]) -> MCPServer:
    """A server with budget-mcp's declaration of each tool in ``answers``, answering with it."""
    with tempfile.TemporaryDirectory() as scratch:  # build_server needs settings; nothing connects
        settings = Settings(database_url=f"sqlite:///{Path(scratch) / 'unused.sqlite3'}", _env_file=None)  # type: ignore[call-arg]
        real = build_server(settings, shipped_tools_list=False)
    server = MCPServer("interface", log_level="WARNING")
    for name, answer in answers.items():
        tool = real._tool_manager.get_tool(name)  # the declaration as budget-mcp registers it
        assert tool is not None and tool.fn_metadata.output_model is not None, name
        canned = tool.fn_metadata.output_model.model_validate(answer)
        server.add_tool(
            _answering(tool.fn, canned),
            name=name,
            title=tool.title,
            description=tool.description,
            annotations=tool.annotations,
            structured_output=True,
        )
        mirror = server._tool_manager.get_tool(name)
        assert mirror is not None, name
        # budget-mcp compacts its schemas (tools/list is sent to the model on every turn): the same here, so
        # clients validate the same output schema
        mirror.parameters = tool.parameters
        mirror.fn_metadata.output_schema = tool.fn_metadata.output_schema
    return server


def _answering(declared: Callable[..., Any], answer: Any) -> Callable[..., Any]:
    """A function with ``declared``'s signature (so the SDK derives the same argument model and output
    schema) that returns ``answer``."""

    def answering(**_arguments: Any) -> Any:
        return answer

    signature = inspect.signature(declared, eval_str=True)
    # budget-mcp's tools take the request context as ``ctx`` (the SDK passes it, it is not an argument)
    parameters = [p for name, p in signature.parameters.items() if name != "ctx"]
    answering.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    answering.__name__ = declared.__name__
    return answering


if __name__ == "__main__":
    path = os.environ.get("BENCH_INTERFACE_ANSWERS")
    if not path:
        sys.exit("set BENCH_INTERFACE_ANSWERS to a JSON file mapping tool names to answers")
    interface_server(json.loads(Path(path).read_text(encoding="utf-8"))).run()
