"""The server's public contract: every tool is described, annotated and typed, documented in the README,
and the code keeps its one direction of imports."""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from mcp import Client
from mcp.shared.exceptions import MCPError
from pydantic import TypeAdapter

from budget_mcp.config import Settings
from budget_mcp.server import TOOL_SOURCES, TOOLS_LIST_FILE, build_server, flatten_output_schema, tools_list_key

from helpers import DESTRUCTIVE_TOOLS, LUNCH, READ_TOOLS, TOOLS, ok

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "budget_mcp"
# Bound by budget_mcp.server at import, loaded on first use (after the handshake).
LAZY_MODULES = {"dashboard", "imports", "reports", "service", "tokens", "transactions"}


@pytest.fixture
async def sqlite_client(tmp_path: Path) -> Client:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.sqlite3'}", user="alice", _env_file=None)  # type: ignore[call-arg]
    async with Client(build_server(settings)) as client:
        yield client  # type: ignore[misc]


async def _tools(client: Client) -> dict[str, object]:
    return {tool.name: tool for tool in (await client.list_tools()).tools}


async def test_every_tool_is_offered(sqlite_client: Client) -> None:
    assert set(await _tools(sqlite_client)) == TOOLS


async def test_every_tool_has_a_title_a_description_and_honest_annotations(sqlite_client: Client) -> None:
    for name, tool in (await _tools(sqlite_client)).items():
        assert tool.title, name  # type: ignore[attr-defined]
        assert tool.description and len(tool.description) > 40, name  # type: ignore[attr-defined]
        hints = tool.annotations  # type: ignore[attr-defined]
        assert hints is not None, name
        assert hints.read_only_hint is (name in READ_TOOLS), name
        assert hints.destructive_hint is (name in DESTRUCTIVE_TOOLS), name
        assert hints.idempotent_hint is not None and hints.open_world_hint is False, name


async def test_every_tool_has_an_output_schema(sqlite_client: Client) -> None:
    for name, tool in (await _tools(sqlite_client)).items():
        schema = tool.output_schema  # type: ignore[attr-defined]
        assert schema and schema.get("type") == "object", name


def _derived_output_schemas(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Each tool's output schema as the SDK derives it from the answer's model (before budget-mcp flattens it)."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'declared.sqlite3'}", _env_file=None)  # type: ignore[call-arg]
    server = build_server(settings, shipped_tools_list=False)  # registers the tools; nothing connects
    return {
        tool.name: TypeAdapter(tool.fn_metadata.output_model).json_schema()
        for tool in server._tool_manager.list_tools()
        if tool.fn_metadata.output_model is not None
    }


def _verdict(schema: dict[str, Any], answer: object) -> bool:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).is_valid(answer)


def _paths(value: object, at: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in a JSON value (its own root excluded) where another value could go."""
    found: list[tuple[str | int, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, inner in items:
        found += [(*at, key), *_paths(inner, (*at, key))]
    return found


def _replaced(value: Any, path: tuple[str | int, ...], new: object) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)  # type: ignore[index]
    return copy


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner, max_size=2),
    max_leaves=4,
)


async def test_a_flattened_output_schema_accepts_and_refuses_exactly_what_the_models_schema_does(
    sqlite_client: Client, tmp_path: Path
) -> None:
    client = sqlite_client
    await ok(client, "create_category", name="Food")
    first = await ok(client, "create_expense", **LUNCH)
    await ok(client, "create_expense", **(LUNCH | {"merchant": None, "notes": None, "amount": "7", "currency": "EUR"}))
    await ok(client, "set_budget", category="Food", amount="300", month="2026-03")
    answers = {
        "query_expenses_by_category": await ok(client, "query_expenses_by_category", category="Food"),
        "summarize_spending": await ok(client, "summarize_spending", start_date="2026-03-01", end_date="2026-03-31"),
        "budget_status": await ok(client, "budget_status", month="2026-03"),
        "spending_trend": await ok(client, "spending_trend", end_month="2026-03", months=2),
        "compare_periods": await ok(client, "compare_periods", start_date="2026-03-01", end_date="2026-03-31"),
        "spending_dashboard": await ok(client, "spending_dashboard", month="2026-03"),
        "list_changes": await ok(client, "list_changes", details=True),
        "get_expense": await ok(client, "get_expense", expense_id=first["id"]),
        "undo_change": await ok(
            client, "undo_change", change_id=(await ok(client, "list_changes"))["changes"][0]["id"]
        ),
    }
    derived = _derived_output_schemas(tmp_path)
    flat = {tool: flatten_output_schema(copy.deepcopy(schema)) for tool, schema in derived.items()}

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @given(data=st.data())
    def agree(data: st.DataObject) -> None:
        tool = data.draw(st.sampled_from(sorted(answers)), label="tool")
        answer = answers[tool]
        path = data.draw(st.sampled_from(_paths(answer)), label="where")
        changed = _replaced(answer, path, data.draw(JSON_VALUES, label="new value"))
        assert _verdict(flat[tool], changed) == _verdict(derived[tool], changed)

    for tool, answer in answers.items():
        Draft202012Validator.check_schema(flat[tool])
        assert _verdict(flat[tool], answer) and _verdict(derived[tool], answer), tool
    agree()
    page = json.dumps(flat["query_expenses_by_category"])
    assert "$ref" not in page and '["string", "null"]' in page  # the page's models inlined, "X or null" merged


def test_flattening_inlines_models_used_once_and_merges_x_or_null_into_one_type() -> None:
    schema = {
        "$defs": {
            "Row": {"properties": {"note": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}]}}},
            "Tag": {"enum": ["a", "b"], "type": "string"},
        },
        "properties": {
            "row": {"$ref": "#/$defs/Row"},
            "tags": {"items": {"$ref": "#/$defs/Tag"}, "type": "array"},
            "tag": {"anyOf": [{"$ref": "#/$defs/Tag"}, {"type": "null"}], "default": None},
            "kind": {"anyOf": [{"enum": ["x"], "type": "string"}, {"type": "null"}]},
        },
        "type": "object",
    }
    assert flatten_output_schema(schema) == {
        "properties": {
            "row": {"properties": {"note": {"type": ["string", "null"], "maxLength": 3}}},
            "tags": {"items": {"$ref": "#/$defs/Tag"}, "type": "array"},  # used twice: kept once, referred to
            "tag": {"anyOf": [{"$ref": "#/$defs/Tag"}, {"type": "null"}], "default": None},
            "kind": {"anyOf": [{"enum": ["x"], "type": "string"}, {"type": "null"}]},  # an enum would refuse null
        },
        "type": "object",
        "$defs": {"Tag": {"enum": ["a", "b"], "type": "string"}},
    }


async def test_input_schemas_carry_their_constraints(sqlite_client: Client) -> None:
    tools = await _tools(sqlite_client)
    create = tools["create_expense"].input_schema  # type: ignore[attr-defined]
    assert set(create["required"]) == {"amount", "description", "category"}
    assert create["properties"]["description"]["maxLength"] == 500
    assert "exclusiveMinimum" in str(create["properties"]["amount"])
    summarize = tools["summarize_spending"].input_schema  # type: ignore[attr-defined]
    assert summarize["properties"]["group_by"]["enum"] == ["category", "month", "week", "day", "merchant"]
    assert "date" in str(summarize["properties"]["start_date"])
    query = tools["query_expenses_by_category"].input_schema  # type: ignore[attr-defined]
    assert query["properties"]["limit"]["maximum"] == 200


def _keys(schema: object) -> set[str]:
    if isinstance(schema, dict):
        return set(schema) | {k for value in schema.values() for k in _keys(value)}
    if isinstance(schema, list):
        return {k for value in schema for k in _keys(value)}
    return set()


async def test_input_schemas_use_only_json_schema_keywords_for_constraints(sqlite_client: Client) -> None:
    for name, tool in (await _tools(sqlite_client)).items():
        pydantic_only = _keys(tool.input_schema) & {"ge", "gt", "le", "lt"}  # type: ignore[attr-defined]
        assert not pydantic_only, f"{name}: {pydantic_only}"


async def test_the_server_introduces_itself_to_the_model(sqlite_client: Client) -> None:
    assert sqlite_client.server_info is not None
    assert sqlite_client.server_info.name == "budget-mcp"
    assert "next_cursor" in (sqlite_client.instructions or "")


async def test_the_readme_documents_every_tool_and_nothing_else(sqlite_client: Client) -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", readme, flags=re.MULTILINE))
    assert documented == set(await _tools(sqlite_client))


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test    #" in readme
    assert ci.rstrip().splitlines()[-1] == "make test"


def _imports(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y / from . import x
                base = node.module or ""
                if base:
                    names.add(f"budget_mcp.{base}")
                else:  # `from . import x`: x is a sibling module, or a name defined in __init__
                    names |= {
                        f"budget_mcp.{a.name}" if (PACKAGE / f"{a.name}.py").exists() else "budget_mcp.__init__"
                        for a in node.names
                    }
            elif node.module:
                names.add(node.module)
    return names


# Each module may import only the modules to its right (and the leaves).
LAYERS = [
    "cli",
    "demo",  # a scripted client session: uses the SDK's client, not the server API
    "terminal",  # `budget-mcp report`: the dashboard drawn with rich
    "doctor",
    "server",
    "transactions",
    "dashboard",
    "imports",
    "reports",
    "service",
    "tokens",
    "audit",
    "repository",
    "models",
    "db",
    "install",  # writes client configs; needs only the settings
]
LEAVES = {"schemas", "errors", "money", "config", "periods", "skills", "troubleshoot", "statements"}


@pytest.mark.parametrize(
    "module", sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in {"__init__", "__main__"})
)
def test_imports_point_one_way_and_only_the_adapter_imports_mcp(module: str) -> None:
    ours = {
        name.removeprefix("budget_mcp.").split(".")[0]
        for name in _imports(PACKAGE / f"{module}.py")
        if name.startswith("budget_mcp")
    }
    ours.discard("")
    if module in LAYERS:
        allowed = set(LAYERS[LAYERS.index(module) + 1 :]) | LEAVES | {"__init__", "budget_mcp"}
    else:  # a leaf may use other leaves only
        allowed = (LEAVES - {module, "config"}) | {"__init__"}
    assert ours <= allowed, f"{module} imports {sorted(ours - allowed)}"
    uses_mcp = any(name == "mcp" or name.startswith("mcp.") for name in _imports(PACKAGE / f"{module}.py"))
    assert uses_mcp is (module in {"server", "demo"}), module


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_misspelt_argument_is_refused_on_every_protocol_version(tmp_path: Path, mode: str) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.sqlite3'}", user="alice", _env_file=None)  # type: ignore[call-arg]
    async with Client(build_server(settings), mode=mode) as client:  # type: ignore[arg-type]
        result = await client.call_tool("list_categories", {"limt": 5})
    assert result.is_error
    assert "unknown argument 'limt'; list_categories takes cursor, limit" in result.content[0].text  # type: ignore[union-attr]


# tools/list goes to the model with every request: a budget keeps it from growing unnoticed.
# About 18k tokens: 55.8k at 21 tools; 71.3k at 26, after statement import/export and category rules (five
# tools at the existing average of 2.7k each; the import's many options are one `columns` object).
# 77.0k at 27, with spending_dashboard (its output schema outlines the three reports it combines).
TOOLS_LIST_BUDGET = 77_500  # bytes of JSON for every tool together
TOOL_BUDGET = 6_000  # bytes for any one tool


async def test_tools_list_stays_within_its_size_budget(sqlite_client: Client) -> None:
    tools = (await sqlite_client.list_tools()).tools
    sizes = {t.name: len(json.dumps(t.model_dump(mode="json", by_alias=True, exclude_none=True))) for t in tools}
    assert sum(sizes.values()) <= TOOLS_LIST_BUDGET, sizes
    assert max(sizes.values()) <= TOOL_BUDGET, sizes
    for tool in tools:  # no generated noise: titles like "Start Date", docstring indentation
        assert '"title"' not in json.dumps(tool.input_schema), tool.name
        assert "\n    " not in (tool.description or ""), tool.name


async def test_read_only_mode_offers_no_tool_that_changes_data(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'b.sqlite3'}", user="alice", read_only=True, _env_file=None
    )  # type: ignore[call-arg]
    async with Client(build_server(settings)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        prompts = {prompt.name for prompt in (await client.list_prompts()).prompts}
        result = await client.call_tool("create_category", {"name": "Food"})
    assert tools == READ_TOOLS
    assert prompts == {"monthly_review", "budget_checkup"}
    assert result.is_error


def test_read_only_mode_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGET_MCP_READ_ONLY", "true")
    assert Settings(_env_file=None).read_only is True  # type: ignore[call-arg]


async def test_resources_give_the_category_list_and_month_templates(sqlite_client: Client) -> None:
    resources = (await sqlite_client.list_resources()).resources
    templates = (await sqlite_client.list_resource_templates()).resource_templates
    assert [(str(r.uri), r.mime_type) for r in resources] == [
        ("ui://budget-mcp/dashboard.html", "text/html;profile=mcp-app"),  # the dashboard view (MCP App)
        ("budget://categories", "application/json"),
    ]
    assert {t.uri_template for t in templates} == {"budget://months/{month}/summary", "budget://months/{month}/budget"}
    assert all(t.mime_type == "application/json" and t.description for t in templates)
    await sqlite_client.call_tool("create_category", {"name": "Food"})
    categories = json.loads((await sqlite_client.read_resource("budget://categories")).contents[0].text)  # type: ignore[union-attr]
    assert categories["categories"] == [{"name": "Food", "expense_count": 0}]
    summary = json.loads((await sqlite_client.read_resource("budget://months/2026-02/summary")).contents[0].text)  # type: ignore[union-attr]
    assert (summary["start_date"], summary["end_date"], summary["group_by"]) == ("2026-02-01", "2026-02-28", "category")


async def test_a_resource_for_a_month_that_does_not_exist_is_refused_with_the_reason(sqlite_client: Client) -> None:
    with pytest.raises(MCPError, match="2026-13 is not a month"):
        await sqlite_client.read_resource("budget://months/2026-13/summary")


async def test_every_prompt_is_described_and_names_only_real_tools(sqlite_client: Client) -> None:
    prompts = {prompt.name: prompt for prompt in (await sqlite_client.list_prompts()).prompts}
    assert set(prompts) == {"monthly_review", "budget_checkup", "cleanup_expenses"}
    assert [(a.name, a.required) for a in prompts["monthly_review"].arguments or []] == [("month", True)]
    tools = set(await _tools(sqlite_client))
    for name, prompt in prompts.items():
        assert prompt.description, name
        arguments = {"month": "2026-03"} if name == "monthly_review" else None
        text = (await sqlite_client.get_prompt(name, arguments)).messages[0].content.text  # type: ignore[union-attr]
        named = set(re.findall(r"\b([a-z]+(?:_[a-z]+)+)\b", text)) - {"dry_run", "group_by", "last_30_days"}
        assert named and named <= tools, f"{name} names {sorted(named - tools)}"


async def test_an_unknown_prompt_or_a_missing_prompt_argument_is_invalid_params_with_the_fix(
    sqlite_client: Client,
) -> None:
    with pytest.raises(MCPError) as unknown:
        await sqlite_client.get_prompt("monthly_reveiw", {})
    assert unknown.value.error.code == -32602
    assert "no prompt 'monthly_reveiw'; known: budget_checkup, cleanup_expenses, monthly_review" in str(unknown.value)
    with pytest.raises(MCPError) as missing:
        await sqlite_client.get_prompt("monthly_review", {})
    assert missing.value.error.code == -32602
    assert "monthly_review needs month" in str(missing.value)


HANDSHAKE_PROBE = """
import sys, anyio
from mcp import Client
from budget_mcp.cli import _configure_logging, _load_settings
from budget_mcp.server import build_server

def loaded():
    return sorted(name for name in ("sqlalchemy", "sqlalchemy.orm", "alembic", "budget_mcp.models",
                                    "budget_mcp.service", "budget_mcp.tokens", "budget_mcp.imports")
                  if type(sys.modules.get(name)).__name__ == "module")

async def main():
    settings = _load_settings(None)
    _configure_logging(settings)  # as the CLI starts: its log filter must not parse the URL yet
    async with Client(build_server(settings)) as client:
        print(loaded())
        await client.call_tool("list_categories", {})
        print(loaded())

anyio.run(main)
"""


def test_the_handshake_needs_no_database_layer_and_the_first_call_loads_it(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("BUDGET_MCP_")}
    env = {
        **clean,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'b.sqlite3'}",
        "HOME": str(tmp_path),
        "BUDGET_MCP_LOG_LEVEL": "WARNING",  # the default; a more verbose level masks (parses the URL) sooner
    }
    done = subprocess.run(
        [sys.executable, "-c", HANDSHAKE_PROBE], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[]",
        # a new database: migrated; every lazily bound module loaded at once (threads never see one half loaded)
        "['alembic', 'budget_mcp.imports', 'budget_mcp.models', 'budget_mcp.service', 'budget_mcp.tokens', "
        "'sqlalchemy', 'sqlalchemy.orm']",
    ]


# --- tools/list before the tools are registered (budget_mcp/tools_list.json) -------------------------------


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'b.sqlite3'}", user="alice", _env_file=None, **values)  # type: ignore[call-arg]


async def _registered_tools_list(settings: Settings) -> list[dict[str, object]]:
    server = build_server(settings, shipped_tools_list=False)
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in await server.list_tools()]


async def test_the_shipped_tools_list_is_what_the_registered_tools_list(tmp_path: Path) -> None:
    """budget_mcp/tools_list.json answers tools/list during the handshake; it must be exactly what the tools,
    once registered, list (the server ignores a copy made by other sources or versions, so a stale copy
    would only make every start slower)."""
    tools = await _registered_tools_list(_settings(tmp_path))
    read_only = await _registered_tools_list(_settings(tmp_path, read_only=True))
    names = [tool["name"] for tool in read_only]
    assert [tool for tool in tools if tool["name"] in names] == read_only  # so the file lists them once
    # One tool per line: a change to a tool is a change to its line.
    lines = ",\n".join(json.dumps(tool, ensure_ascii=False, separators=(",", ":")) for tool in tools)
    text = f'{{"made_by":{json.dumps(tools_list_key())},\n"read_only":{json.dumps(names)},\n"tools":[\n{lines}\n]}}\n'
    shipped = PACKAGE / TOOLS_LIST_FILE
    if os.environ.get("BUDGET_MCP_UPDATE_TOOLS_LIST") == "1":
        shipped.write_text(text, encoding="utf-8")
    assert shipped.read_text(encoding="utf-8") == text, (
        "budget_mcp/tools_list.json is out of date; regenerate it with "
        "BUDGET_MCP_UPDATE_TOOLS_LIST=1 .venv/bin/python -m pytest tests/test_contract.py -k shipped_tools_list"
    )


@pytest.mark.parametrize("read_only", [False, True])
async def test_a_client_sees_the_same_tools_before_and_after_they_are_registered(
    tmp_path: Path, read_only: bool
) -> None:
    settings = _settings(tmp_path, read_only=read_only)
    server = build_server(settings)
    async with Client(build_server(settings, shipped_tools_list=False)) as eager, Client(server) as client:
        before = await client.list_tools()
        assert not server._tool_manager.list_tools(), "the handshake was answered from the shipped list"
        ok = await client.call_tool("list_categories", {})  # the first call registers the tools
        assert not ok.is_error
        assert len(server._tool_manager.list_tools()) == len(before.tools)
        assert await client.list_tools() == before == await eager.list_tools()


async def test_a_first_call_with_a_wrong_argument_gets_the_same_answer_as_later(tmp_path: Path) -> None:
    async with Client(build_server(_settings(tmp_path))) as client:
        first = await client.call_tool("list_categories", {"limt": 5})
        again = await client.call_tool("list_categories", {"limt": 5})
    assert first.is_error and first == again
    assert "unknown argument 'limt'" in first.content[0].text  # type: ignore[union-attr]


SHIPPED_PROBE = "from budget_mcp.server import shipped_tools; print(shipped_tools(False) is not None)"


@pytest.mark.parametrize("change", ["nothing", "a tool's source", "the recorded SDK version"])
def test_a_shipped_tools_list_is_used_only_with_the_sources_and_versions_that_made_it(
    tmp_path: Path, change: str
) -> None:
    import shutil

    copy = tmp_path / "budget_mcp"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    if change == "a tool's source":
        with (copy / "schemas.py").open("a", encoding="utf-8") as schemas:
            schemas.write("\n# edited\n")
    elif change == "the recorded SDK version":
        shipped = json.loads((copy / TOOLS_LIST_FILE).read_text(encoding="utf-8"))
        shipped["made_by"]["mcp"] = "0.0.1"
        (copy / TOOLS_LIST_FILE).write_text(json.dumps(shipped), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", SHIPPED_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        check=True,
    )
    assert done.stdout.split() == [str(change == "nothing")]


def test_the_tool_sources_are_every_module_the_tool_declarations_load(tmp_path: Path) -> None:
    probe = (
        "import json, sys, budget_mcp.server; print(json.dumps([n for n in sys.modules if n[:11] == 'budget_mcp.']))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    loaded = {name.split(".", 1)[1] for name in json.loads(done.stdout)} - LAZY_MODULES
    assert loaded | {"__init__"} == set(TOOL_SOURCES)
