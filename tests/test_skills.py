"""The Claude Code skills in skills/ are tested like code.

Every skill folder follows the skill format (front matter, names, size, links that resolve with exact case).
The budget-analyst skill names only tools, prompts, parameters and resources the server really has, covers
every one of them, and carries two references that cannot drift from the server: references/tools.md is
generated from it (every tool's schema, one real example call and its result on a small household), and
the error messages quoted in references/errors.md are replayed against it. After changing the server:

    BUDGET_MCP_UPDATE_SKILL_REFERENCE=1 .venv/bin/python -m pytest tests/test_skills.py
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import posixpath
import re
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import pytest
from mcp import Client

from conftest import make_settings
from helpers import TOOLS, client_at, ok

ROOT = Path(__file__).resolve().parent.parent
SKILLS = ROOT / "skills"
ANALYST = SKILLS / "budget-analyst"
TOOLS_REFERENCE = ANALYST / "references" / "tools.md"
ERRORS_REFERENCE = ANALYST / "references" / "errors.md"

UPDATE_ENV = "BUDGET_MCP_UPDATE_SKILL_REFERENCE"
UPDATE_COMMAND = f"{UPDATE_ENV}=1 .venv/bin/python -m pytest tests/test_skills.py"

# --- the skill format (after anthropics/skills skill-creator/scripts/quick_validate.py) -------------------

ALLOWED_KEYS = frozenset({"name", "description", "license", "allowed-tools", "metadata", "compatibility"})
NAME_MAX = 64
DESCRIPTION_MAX = 1024
COMPATIBILITY_MAX = 500
BODY_LINES_MAX = 500
FILE_NAME = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*(?:\.[a-z0-9]+)*")
EXEMPT_NAMES = frozenset({"SKILL.md", "LICENSE.txt"})
IGNORED_NAMES = frozenset({"__pycache__", ".DS_Store"})
RESOURCE_FOLDERS = ("references/", "scripts/", "assets/", "examples/")


class FrontMatterError(ValueError):
    """The front matter is missing or is not YAML this validator can read."""


def split_front_matter(text: str) -> tuple[str, str]:
    """The YAML between the opening and closing ``---`` lines, and the body after them."""
    match = re.match(r"---\n(.*?)\n---[ \t]*(?:\n|\Z)", text, flags=re.DOTALL)
    if not text.startswith("---") or match is None:
        raise FrontMatterError("SKILL.md must start with YAML front matter between two '---' lines")
    return match.group(1), text[match.end() :]


def parse_front_matter(source: str) -> dict[str, Any]:
    """The front matter as YAML: with PyYAML when it is installed, else with the strict reader below."""
    try:
        import yaml  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return parse_simple_yaml(source)
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as error:
        raise FrontMatterError(f"invalid YAML: {error}") from None
    if not isinstance(data, dict):
        raise FrontMatterError("the front matter must be a YAML mapping (key: value lines)")
    return data


_KEY_LINE = re.compile(r"([A-Za-z0-9_-]+):(?:[ \t]+(.*))?")
_BLOCK_INDICATOR = re.compile(r"[|>][+-]?")


def parse_simple_yaml(source: str) -> dict[str, Any]:
    """The subset of YAML that skill front matter uses, read strictly: top-level ``key: value`` lines
    whose value is a plain, quoted or block (``|``, ``>``) scalar, or an indented mapping of scalars
    (``metadata``). Anything YAML would read differently or refuse is refused."""
    lines = source.split("\n")
    data: dict[str, Any] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip() or line.startswith("#"):
            index += 1
            continue
        match = _KEY_LINE.fullmatch(line.rstrip())
        if match is None or line[0].isspace():
            raise FrontMatterError(f"front matter line {index + 1}: expected 'key: value', got {line!r}")
        key, value = match.group(1), (match.group(2) or "").strip()
        if key in data:
            raise FrontMatterError(f"front matter line {index + 1}: {key!r} is given twice")
        start = index + 1
        index = start
        while index < len(lines) and (not lines[index].strip() or lines[index][0] in " \t"):
            index += 1
        block = lines[start:index]
        if _BLOCK_INDICATOR.fullmatch(value):
            data[key] = _block_scalar(value, block)
        elif not value:
            data[key] = _mapping(block, start) if any(part.strip() for part in block) else None
        else:
            continued = [part.strip() for part in block if part.strip()]
            if continued and value[0] in "\"'":
                raise FrontMatterError(f"front matter line {start}: write a quoted {key!r} on one line")
            data[key] = _scalar(" ".join([value, *continued]), start)
    return data


def _block_scalar(indicator: str, block: list[str]) -> str:
    while block and not block[-1].strip():
        block = block[:-1]
    if not block:
        return ""
    indent = min(len(line) - len(line.lstrip()) for line in block if line.strip())
    text = [line[indent:] for line in block]
    if indicator[0] == "|":
        value = "\n".join(text)
    else:  # folded: lines of a paragraph joined by spaces, paragraphs by newlines
        paragraphs = "\n".join(text).split("\n\n")
        value = "\n".join(" ".join(paragraph.split("\n")) for paragraph in paragraphs)
    return value if indicator.endswith("-") else value + "\n"


def _mapping(block: list[str], first: int) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    indents = {len(line) - len(line.lstrip()) for line in block if line.strip()}
    if len(indents) != 1:
        raise FrontMatterError(f"front matter line {first + 1}: nest mappings one level deep, evenly indented")
    for offset, line in enumerate(block):
        if not line.strip():
            continue
        match = _KEY_LINE.fullmatch(line.strip())
        if match is None or not match.group(2):
            raise FrontMatterError(f"front matter line {first + offset + 1}: expected 'key: value', got {line!r}")
        entries[match.group(1)] = _scalar(match.group(2).strip(), first + offset + 1)
    return entries


def _scalar(value: str, line: int) -> Any:
    if value[0] == '"':
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise FrontMatterError(f"front matter line {line}: unterminated or invalid double-quoted string") from None
        if not isinstance(parsed, str):
            raise FrontMatterError(f"front matter line {line}: text after the closing quote")
        return parsed
    if value[0] == "'":
        if len(value) < 2 or value[-1] != "'" or re.search(r"(?<!')'(?!')", value[1:-1].replace("''", "")):
            raise FrontMatterError(f"front matter line {line}: invalid single-quoted string")
        return value[1:-1].replace("''", "'")
    if value[0] in "[]{}&*!|>%@`,#?-" and not re.fullmatch(r"-?[0-9.]+", value):
        raise FrontMatterError(f"front matter line {line}: quote a value that starts with {value[0]!r}")
    if ": " in value or value.endswith(":") or " #" in value:
        raise FrontMatterError(
            f"front matter line {line}: quote a value containing ': ' or ' #' (YAML reads it otherwise)"
        )
    lowered = value.lower()
    if lowered in {"true", "yes", "on"}:
        return True
    if lowered in {"false", "no", "off"}:
        return False
    if lowered in {"null", "~"}:
        return None
    if re.fullmatch(r"[-+]?[0-9]+", value):
        return int(value)
    if re.fullmatch(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", value):
        return float(value)
    return value


def front_matter_problems(data: Mapping[str, Any], folder: str) -> list[str]:
    """What quick_validate.py would refuse, plus: the name is the folder's name."""
    problems = []
    unexpected = sorted(set(data) - ALLOWED_KEYS)
    if unexpected:
        problems.append(f"unexpected front matter keys {unexpected}; allowed: {sorted(ALLOWED_KEYS)}")
    name, description = data.get("name"), data.get("description")
    if not isinstance(name, str) or not name.strip():
        problems.append("front matter needs a 'name' (text)")
    else:
        name = name.strip()
        if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", name):
            problems.append(f"name {name!r} must be kebab-case: lowercase letters, digits, single inner hyphens")
        if len(name) > NAME_MAX:
            problems.append(f"name is {len(name)} characters; at most {NAME_MAX}")
        if name != folder:
            problems.append(f"name {name!r} must equal the folder name {folder!r}")
    if not isinstance(description, str) or not description.strip():
        problems.append("front matter needs a 'description' (text): what the skill does and when to use it")
    else:
        description = description.strip()
        if "<" in description or ">" in description:
            problems.append("description must not contain angle brackets (< or >)")
        if len(description) > DESCRIPTION_MAX:
            problems.append(f"description is {len(description)} characters; at most {DESCRIPTION_MAX}")
    if "compatibility" in data:
        compatibility = data["compatibility"]
        if not isinstance(compatibility, str) or not 1 <= len(compatibility) <= COMPATIBILITY_MAX:
            problems.append(f"compatibility must be text of 1 to {COMPATIBILITY_MAX} characters")
    for key in ("license", "allowed-tools"):
        if key in data and not isinstance(data[key], str):
            problems.append(f"{key} must be text")
    if "metadata" in data and not isinstance(data["metadata"], dict):
        problems.append("metadata must be a mapping of keys to values")
    return problems


# --- markdown: code, links, anchors ----------------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", flags=re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", flags=re.DOTALL)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", flags=re.MULTILINE)
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", flags=re.MULTILINE)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def without_fenced_code(markdown: str) -> str:
    """The markdown with fenced code blocks blanked (line numbers kept): what is in them is not a link."""
    return _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), markdown)


def inline_code(markdown: str) -> list[str]:
    return [m.group(2).strip() for m in _INLINE_CODE.finditer(without_fenced_code(markdown))]


def link_targets(markdown: str) -> list[str]:
    prose = _INLINE_CODE.sub("", without_fenced_code(markdown))
    targets = [m.group(1) for m in _INLINE_LINK.finditer(prose)] + _REFERENCE_LINK.findall(prose)
    return [target[1:-1] if target.startswith("<") else target for target in targets]


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a file's headings: lowercased, punctuation dropped, spaces to hyphens,
    repeats numbered."""
    seen: Counter[str] = Counter()
    anchors = set()
    for heading in _HEADING.findall(without_fenced_code(markdown)):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors as its text
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return anchors


def existing_with_exact_case(root: Path, relative: str) -> bool:
    """Whether ``relative`` (a normalised path below ``root``) exists with exactly this spelling, also on a
    file system that ignores case (compared against the directory listings, not ``Path.exists``)."""
    here = root
    for part in relative.split("/"):
        if not here.is_dir() or part not in os.listdir(here):
            return False
        here = here / part
    return True


def _skill_files(skill: Path) -> Iterator[Path]:
    for directory, folders, files in os.walk(skill):
        folders[:] = sorted(f for f in folders if f not in IGNORED_NAMES)
        for name in sorted(files):
            if name not in IGNORED_NAMES and not name.endswith(".pyc"):
                yield Path(directory) / name


def link_problems(skill: Path, document: Path) -> list[str]:
    """Every link of ``document`` is relative and leads to a file of the skill, spelt with its exact case
    (and to a heading of it, when it names one); so does every backticked path into a resource folder."""
    where = document.relative_to(skill).as_posix()
    markdown = document.read_text(encoding="utf-8")
    problems = []
    for target in link_targets(markdown):
        if _SCHEME.match(target) and not re.match(r"[A-Za-z]:[\\/]", target):
            if target.lower().startswith("file:"):
                problems.append(f"{where}: link {target!r} is an absolute file URL; link relative to {where}")
            continue
        path, _, fragment = target.partition("#")
        path = unquote(path)
        if path.startswith(("/", "~", "\\")) or re.match(r"[A-Za-z]:[\\/]", path):
            problems.append(f"{where}: link {target!r} is absolute; links must be relative")
            continue
        relative = posixpath.normpath(posixpath.join(posixpath.dirname(where), path)) if path else where
        if relative == ".." or relative.startswith("../"):
            problems.append(f"{where}: link {target!r} leads outside the skill")
        elif not existing_with_exact_case(skill, relative):
            problems.append(f"{where}: link {target!r} does not resolve to a file of the skill (case matters)")
        elif (
            fragment
            and relative.endswith(".md")
            and fragment not in heading_anchors((skill / relative).read_text(encoding="utf-8"))
        ):
            problems.append(f"{where}: link {target!r}: {relative} has no heading with anchor #{fragment}")
    for code in inline_code(markdown):
        if code.startswith(RESOURCE_FOLDERS) and re.fullmatch(r"[\w./-]+", code):
            inside = posixpath.normpath(posixpath.join(posixpath.dirname(where), code))
            if not (
                existing_with_exact_case(skill, posixpath.normpath(code)) or existing_with_exact_case(skill, inside)
            ):
                problems.append(f"{where}: mentions `{code}`, which is not a file of the skill (case matters)")
    if str(ROOT) in markdown:
        problems.append(f"{where}: contains this checkout's absolute path {ROOT}; write paths relative to the skill")
    return problems


def skill_problems(skill: Path) -> list[str]:
    """Everything that keeps ``skill`` from being a valid, self-contained Claude Code skill."""
    if "SKILL.md" not in os.listdir(skill):
        return [f"{skill.name}: SKILL.md is missing (the name is exactly SKILL.md)"]
    problems = []
    text = (skill / "SKILL.md").read_text(encoding="utf-8")
    try:
        source, body = split_front_matter(text)
        problems += front_matter_problems(parse_front_matter(source), skill.name)
    except FrontMatterError as error:
        problems.append(str(error))
        body = text
    if len(body.splitlines()) >= BODY_LINES_MAX:
        problems.append(f"the SKILL.md body has {len(body.splitlines())} lines; keep it under {BODY_LINES_MAX}")
    for file in _skill_files(skill):
        relative = file.relative_to(skill)
        for part in relative.parts:
            exempt = part in EXEMPT_NAMES and relative.as_posix() in {"SKILL.md", "LICENSE.txt"}
            if not exempt and not FILE_NAME.fullmatch(part):
                problems.append(f"{relative.as_posix()}: {part!r} is not a lowercase kebab-case or snake_case name")
                break
        if file.suffix == ".md":
            problems += link_problems(skill, file)
    return problems


def skill_folders() -> list[Path]:
    if not SKILLS.is_dir():
        return []
    return sorted(p for p in SKILLS.iterdir() if p.is_dir() and p.name not in IGNORED_NAMES)


# --- the server as the skill describes it: names, schemas, one example per tool ---------------------------

NOW = "2026-03-20T12:00:00+00:00"
"""The example's stopped clock: today is Friday 2026-03-20, in UTC; the default currency is USD."""
SHOWN_TIMESTAMP = "2026-03-20T12:00:00Z"
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")
LIST_ITEMS_SHOWN = 10
JSON_WIDTH = 100


@dataclass(frozen=True)
class Earlier:
    """An example argument taken from an earlier example's result (a change id, say)."""

    tool: str
    key: str


@dataclass(frozen=True)
class Call:
    """One tool call of the household or of the examples."""

    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)


def _expense(day: str, amount: str, category: str, description: str, merchant: str, **more: str) -> Call:
    return Call(
        "create_expense",
        {"amount": amount, "description": description, "category": category, "spent_on": day, "merchant": merchant}
        | more,
    )


HOUSEHOLD = [
    *(
        Call("create_category", {"name": name})
        for name in ("Groceries", "Dining", "Eating out", "Transport", "Utilities", "Travel", "Household", "Misc")
    ),
    _expense("2026-01-06", "88.40", "Groceries", "Weekly groceries", "Green Market"),
    _expense("2026-01-19", "131.15", "Utilities", "Electricity bill", "City Power"),
    _expense("2026-01-24", "46.00", "Dining", "Pizza night", "Luigi's"),
    _expense("2026-02-03", "84.20", "Groceries", "Weekly groceries", "Green Market"),
    _expense("2026-02-14", "62.00", "Dining", "Valentine's dinner", "Luigi's"),
    _expense("2026-02-17", "118.40", "Utilities", "Electricity bill", "City Power"),
    _expense("2026-02-25", "45.00", "Transport", "Monthly transit pass", "Metro"),
    _expense("2026-03-02", "102.35", "Groceries", "Weekly groceries", "Green Market"),
    _expense("2026-03-02", "102.35", "Groceries", "Weekly groceries", "Green Market"),
    Call("delete_expense", {"expense_id": 9}),  # recorded twice by mistake
    _expense("2026-03-05", "38.50", "Eating out", "Lunch with Sam", "Deli 21", notes="Sam paid the tip"),
    _expense("2026-03-08", "240.00", "Travel", "Hotel in Lisbon, 2 nights", "Hotel Alfama", currency="EUR"),
    _expense("2026-03-09", "54.80", "Eating out", "Dinner in Lisbon", "Taberna Real", currency="EUR"),
    _expense("2026-03-10", "18.60", "Transport", "Airport train", "CP", currency="EUR"),
    _expense("2026-03-12", "91.10", "Groceries", "Weekly groceries", "Green Market"),
    _expense("2026-03-16", "121.90", "Utilities", "Electricity bill", "City Power"),
    _expense("2026-03-18", "29.99", "Misc", "Phone case", "Gadget Shop"),
    _expense("2026-03-19", "71.25", "Dining", "Birthday dinner", "Luigi's"),
    Call("set_budget", {"category": "Groceries", "amount": "220.00", "month": "2026-01", "ongoing": True}),
    Call("set_budget", {"category": "Dining", "amount": 100, "month": "2026-02", "ongoing": True, "rollover": True}),
    Call("set_budget", {"category": "Travel", "amount": 200, "currency": "EUR", "month": "2026-03"}),
    Call("add_category_rule", {"pattern": "Green Market", "category": "Groceries"}),
]
"""A small household, recorded through the tools: three months of expenses in USD and a trip paid in EUR,
one expense recorded twice and deleted, and three budgets (one with rollover, one in EUR)."""

EXAMPLES = [
    Call("summarize_spending", {"period": "this_month"}),
    Call("query_expenses_by_category", {"category": "groceries", "period": "this_month"}),
    Call("search_expenses", {"text": "dinner", "limit": 2}),
    Call("get_expense", {"expense_id": 10}),
    Call("list_categories", {"limit": 4}),
    Call("budget_status", {}),
    Call("spending_trend", {"months": 3}),
    Call("spending_dashboard", {"months": 3}),
    Call("compare_periods", {"period": "this_month", "baseline_period": "last_month"}),
    Call("top_expenses", {"period": "this_month", "limit": 3}),
    Call("list_changes", {"limit": 2}),
    Call("export_expenses", {"period": "this_month", "currency": "EUR"}),
    Call("list_category_rules", {}),
    Call(
        "create_expense",
        {
            "amount": "23.40",
            "description": "Farmers market",
            "category": "Groceries",
            "merchant": "Saturday Market",
            "idempotency_key": "2026-03-20-farmers-market",
        },
    ),
    Call(
        "update_expense", {"expense_id": Earlier("create_expense", "id"), "amount": "25.40", "notes": "Eggs and honey"}
    ),
    Call("delete_expense", {"expense_id": Earlier("create_expense", "id"), "dry_run": True}),
    Call("recategorize_expenses", {"expense_ids": [10, 12], "category": "Dining", "dry_run": True}),
    Call("create_category", {"name": "Gifts"}),
    Call("rename_category", {"name": "Misc", "new_name": "Miscellaneous"}),
    Call("merge_categories", {"source": "Eating out", "target": "Dining", "dry_run": True}),
    Call("delete_category", {"name": "Miscellaneous", "move_to": "Household", "dry_run": True}),
    Call("set_budget", {"category": "Utilities", "amount": "130.00", "ongoing": True, "dry_run": True}),
    Call("delete_budget", {"category": "Travel", "month": "2026-03", "dry_run": True}),
    Call("undo_change", {"change_id": Earlier("rename_category", "change_id"), "dry_run": True}),
    Call(
        "import_expenses_csv",
        {
            "csv_text": "Date,Description,Amount\n2026-03-19,GREEN MARKET 0042,-64.10\n"
            "2026-03-19,REFUND COFFEE CO,12.00\n2026-03-20,CITY PARKING,-6.50\n",
            "source": "checking",
        },
    ),
    Call("add_category_rule", {"pattern": "City Parking", "category": "Transport", "dry_run": True}),
    Call("delete_category_rule", {"pattern": "green market", "dry_run": True}),
]
"""One call per tool, in this order, on the household: the read-only ones first, then the writes (with
dry_run wherever a tool has it)."""


@dataclass(frozen=True)
class Example:
    arguments: dict[str, Any]
    result: dict[str, Any]


@dataclass(frozen=True)
class Replayed:
    """A call quoted in references/errors.md and the message the server answers it with today."""

    tool: str
    arguments: str
    read_only: bool
    message: str


@dataclass(frozen=True)
class ServerFacts:
    """What the skill is checked against: the server's tools, prompts and resources as a client lists
    them, the result of each example call, and the answer to each error call errors.md quotes."""

    tools: list[Any]  # mcp.types.Tool, as tools/list gives them
    prompts: list[Any]
    resource_uris: list[str]
    examples: dict[str, Example]
    replayed: list[Replayed]

    def known_identifiers(self) -> set[str]:
        """Every name an agent may write in a call: tools, prompts and their arguments, every parameter,
        result field and enum value of every schema."""
        names = {tool.name for tool in self.tools} | {prompt.name for prompt in self.prompts}
        names |= {argument.name for prompt in self.prompts for argument in prompt.arguments or []}
        for tool in self.tools:
            names |= _schema_names(tool.input_schema) | _schema_names(tool.output_schema or {})
        return names


def _schema_names(schema: Any) -> set[str]:
    if isinstance(schema, list):
        return {name for item in schema for name in _schema_names(item)}
    if not isinstance(schema, dict):
        return set()
    names = set(schema.get("properties", {})) | {v for v in schema.get("enum", []) if isinstance(v, str)}
    return names | {name for value in schema.values() for name in _schema_names(value)}


_CALL_QUOTE = re.compile(
    r"^\*\*Call\*\* `(?P<tool>[a-z_]+)` with `(?P<arguments>\{[^`\n]*\})`(?P<read_only> on a read-only server)?:\n"
    r"\n```text\n(?P<message>.*?)\n```",
    flags=re.MULTILINE | re.DOTALL,
)


def quoted_calls(markdown: str) -> list[re.Match[str]]:
    return list(_CALL_QUOTE.finditer(markdown))


def _resolve(value: Any, results: Mapping[str, dict[str, Any]]) -> Any:
    if isinstance(value, Earlier):
        return results[value.tool][value.key]
    if isinstance(value, dict):
        return {key: _resolve(item, results) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, results) for item in value]
    return value


async def _error_message(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    result = await client.call_tool(tool, arguments)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    assert result.is_error, f"errors.md quotes {tool} {json.dumps(arguments)} as an error, but it succeeded: {text}"
    return text


async def _collect(database: Path, error_calls: list[tuple[str, str, bool]]) -> ServerFacts:
    settings = make_settings(f"sqlite:///{database}", read_only=False)
    async with client_at(settings, NOW) as client:
        tools = (await client.list_tools()).tools
        prompts = (await client.list_prompts()).prompts
        uris = [str(r.uri) for r in (await client.list_resources()).resources]
        uris += [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        for call in HOUSEHOLD:
            await ok(client, call.tool, **call.arguments)
        results: dict[str, dict[str, Any]] = {}
        examples = {}
        for call in EXAMPLES:
            arguments = _resolve(call.arguments, results)
            results[call.tool] = await ok(client, call.tool, **arguments)
            examples[call.tool] = Example(arguments, results[call.tool])
        replayed = [
            Replayed(tool, arguments, False, await _error_message(client, tool, json.loads(arguments)))
            for tool, arguments, read_only in error_calls
            if not read_only
        ]
    async with client_at(make_settings(f"sqlite:///{database}", read_only=True), NOW) as client:
        replayed += [
            Replayed(tool, arguments, True, await _error_message(client, tool, json.loads(arguments)))
            for tool, arguments, read_only in error_calls
            if read_only
        ]
    return ServerFacts(tools, prompts, uris, examples, replayed)


@functools.cache
def server_facts() -> ServerFacts:
    """The server, run once per test session on a fresh SQLite file with the clock stopped at NOW."""
    quoted = quoted_calls(ERRORS_REFERENCE.read_text(encoding="utf-8")) if ERRORS_REFERENCE.exists() else []
    calls = [(m["tool"], m["arguments"], bool(m["read_only"])) for m in quoted]
    with tempfile.TemporaryDirectory() as folder:
        return anyio.run(_collect, Path(folder) / "budget.sqlite3", calls)


# --- rendering references/tools.md --------------------------------------------------------------------------


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _code(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def describe_type(schema: Mapping[str, Any]) -> str:
    """A parameter's type and constraints in a few words, from its JSON schema."""
    if "anyOf" in schema:
        options = [option for option in schema["anyOf"] if option.get("type") != "null"]
        return " or ".join(describe_type(option) for option in options)
    if "enum" in schema:
        return "one of " + ", ".join(_code(value) for value in schema["enum"])
    kind = schema.get("type", "any")
    limits = []
    if kind == "string":
        if schema.get("format") == "date":
            return "date `YYYY-MM-DD`"
        if schema.get("pattern") == "^[0-9]{4}-[0-9]{2}$":
            return "month `YYYY-MM`"
        low, high = schema.get("minLength"), schema.get("maxLength")
        if low is not None or high is not None:
            limits.append(f"{low} to {high} characters" if low != high else f"{low} characters")
        if "pattern" in schema:
            limits.append(f"matching `{schema['pattern']}`")
    elif kind in {"integer", "number"}:
        if "exclusiveMinimum" in schema:
            limits.append(f"over {_number(schema['exclusiveMinimum'])}")
        if "minimum" in schema and "maximum" in schema:
            limits.append(f"{_number(schema['minimum'])} to {_number(schema['maximum'])}")
        elif "maximum" in schema:
            limits.append(f"at most {_number(schema['maximum'])}")
    elif kind == "array":
        items = f"{schema.get('minItems', 0)} to {schema.get('maxItems', 'any number of')} items"
        return f"list ({items}) of {describe_type(schema.get('items', {}))}"
    return f"{kind} ({', '.join(limits)})" if limits else kind


def _description(schema: Mapping[str, Any]) -> str:
    if "description" in schema:
        return str(schema["description"])
    return next((str(o["description"]) for o in schema.get("anyOf", []) if "description" in o), "")


def result_fields(schema: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(path, description) of every described field of an output schema, nested ones as ``a[].b``."""
    definitions = schema.get("$defs", {})
    fields: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()  # a nested model used twice is described once

    def target(node: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, str]:
        if "$ref" in node:
            return definitions[node["$ref"].rsplit("/", 1)[-1]], "."
        if isinstance(node.get("items"), dict):  # a list (or a list or null)
            inner, _ = target(node["items"])
            return inner, "[]."
        if "properties" in node:  # a model written in place (the server flattens output schemas)
            return node, "."
        for option in node.get("anyOf", []):
            inner, separator = target(option)
            if inner is not None:
                return inner, separator
        return None, ""

    def walk(node: Mapping[str, Any], prefix: str, depth: int) -> None:
        for name, prop in node.get("properties", {}).items():
            path = prefix + name
            description = _description(prop)
            if description and (name, description) not in seen:
                seen.add((name, description))
                fields.append((path, description))
            inner, separator = target(prop)
            if inner is not None and depth < 3:
                walk(inner, path + separator, depth + 1)

    walk(schema, "", 0)
    return fields


def _trimmed(value: Any) -> Any:
    """Long lists cut to their first items, with a note saying how many were left out."""
    if isinstance(value, list):
        shown = [_trimmed(item) for item in value[:LIST_ITEMS_SHOWN]]
        left = len(value) - LIST_ITEMS_SHOWN
        return [*shown, f"... {left} more"] if left > 0 else shown
    if isinstance(value, dict):
        return {key: _trimmed(item) for key, item in value.items()}
    return value


def compact_json(value: Any, indent: int = 0, column: int | None = None) -> str:
    """JSON indented by two, with every object or list that fits in JSON_WIDTH columns on one line
    (``column``: where the value starts, after its key)."""
    flat = json.dumps(value, ensure_ascii=False)
    start = indent if column is None else column
    if start + len(flat) <= JSON_WIDTH or not isinstance(value, dict | list) or not value:
        return flat
    inner = " " * (indent + 2)
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            label = f"{json.dumps(key, ensure_ascii=False)}: "
            items.append(inner + label + compact_json(item, indent + 2, indent + 2 + len(label)))
    else:
        items = [inner + compact_json(item, indent + 2) for item in value]
    opening, closing = "{}" if isinstance(value, dict) else "[]"
    return opening + "\n" + ",\n".join(items) + "\n" + " " * indent + closing


def _json_block(value: Any) -> list[str]:
    text = compact_json(_trimmed(value))
    return ["```json", _TIMESTAMP.sub(SHOWN_TIMESTAMP, text), "```"]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _kind(tool: Any) -> str:
    """The tool's annotations in words: read-only or not, and the hints that matter for a write."""
    hints = tool.annotations
    if hints.read_only_hint:
        return "read-only"
    marked = [
        word for word, hint in (("destructive", hints.destructive_hint), ("idempotent", hints.idempotent_hint)) if hint
    ]
    words = ["changes data", *(["hints: " + " and ".join(marked)] if marked else [])]
    if "dry_run" in tool.input_schema.get("properties", {}):
        words.append("takes `dry_run`")
    return "; ".join(words)


def render_tools_reference(facts: ServerFacts) -> str:
    read = [tool for tool in facts.tools if tool.annotations.read_only_hint]
    write = [tool for tool in facts.tools if not tool.annotations.read_only_hint]
    lines = [
        "# budget-mcp tools",
        "",
        f"<!-- Generated from the server by tests/test_skills.py; do not edit. Regenerate: {UPDATE_COMMAND} -->",
        "",
        "Every tool the server offers, as `tools/list` describes it, with one real call and its result.",
        "The examples ran in order on a fresh database holding the [example household](#example-household),",
        f"with today = {NOW[:10]} (UTC) and USD as the default currency: the read-only tools first, then the",
        "tools that change data, each seeing the changes before it. Timestamps show as that instant; lists",
        f"longer than {LIST_ITEMS_SHOWN} items are cut, with a note of how many more there were.",
        "",
        "Find a tool with `grep -n '^## ' references/tools.md`.",
        "",
        "## Contents",
        "",
        "- [Example household](#example-household)",
        "- Read-only: " + ", ".join(f"[{t.name}](#{t.name})" for t in read),
        "- Change data: " + ", ".join(f"[{t.name}](#{t.name})" for t in write),
        "",
        "## Example household",
        "",
        "Recorded through the tools before the examples, in this order (ids count from 1):",
        "",
        "| Tool | Arguments |",
        "|---|---|",
    ]
    lines += [f"| {call.tool} | `{json.dumps(call.arguments, ensure_ascii=False)}` |" for call in HOUSEHOLD]
    for tool in [*read, *write]:
        example = facts.examples[tool.name]
        schema = tool.input_schema
        required = set(schema.get("required", []))
        lines += ["", f"## {tool.name}", "", f"**{tool.title}** ({_kind(tool)})", "", tool.description, ""]
        if schema.get("properties"):
            lines += ["| Parameter | Type | Required | Default | Description |", "|---|---|---|---|---|"]
            for name, prop in schema["properties"].items():
                default = "" if name in required or "default" not in prop else _code(prop["default"])
                lines.append(
                    f"| `{name}` | {_cell(describe_type(prop))} | {'yes' if name in required else 'no'} "
                    f"| {default} | {_cell(_description(prop))} |"
                )
        else:
            lines.append("No parameters.")
        fields = result_fields(tool.output_schema or {})
        if fields:
            lines += ["", "Result fields:", ""]
            lines += [f"- `{path}`: {_cell(text)}" for path, text in fields]
        lines += [
            "",
            "Example call:",
            "",
            *_json_block(example.arguments),
            "",
            "Result:",
            "",
            *_json_block(example.result),
        ]
    return "\n".join(lines) + "\n"


def refresh_error_messages(markdown: str, replayed: list[Replayed]) -> str:
    """errors.md with each quoted message replaced by what the server answers that call with today."""
    answers = {(r.tool, r.arguments, r.read_only): r.message for r in replayed}

    def replace(match: re.Match[str]) -> str:
        message = answers[(match["tool"], match["arguments"], bool(match["read_only"]))]
        return match.group(0)[: match.start("message") - match.start()] + message + "\n```"

    return _CALL_QUOTE.sub(replace, markdown)


def _compare_or_update(path: Path, wanted: str) -> None:
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if current == wanted:
        return
    if os.environ.get(UPDATE_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted, encoding="utf-8")
        return
    diff = difflib.unified_diff(
        current.splitlines(), wanted.splitlines(), f"{path.name} (committed)", f"{path.name} (server)", lineterm=""
    )
    shown = "\n".join(list(diff)[:60])
    pytest.fail(
        f"{path.relative_to(ROOT)} no longer matches the server. Review the change, then run\n"
        f"    {UPDATE_COMMAND}\nwhich rewrites it.\n{shown}",
        pytrace=False,
    )


# --- tests ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("skill", skill_folders(), ids=lambda p: p.name)
def test_every_skill_folder_is_a_valid_skill_whose_links_resolve_with_exact_case(skill: Path) -> None:
    assert skill_problems(skill) == []


def test_the_skills_folder_holds_the_budget_analyst_skill() -> None:
    assert ANALYST in skill_folders()
    assert (ANALYST / "SKILL.md").is_file()


def test_the_front_matter_reader_accepts_what_skills_use() -> None:
    source = (
        "name: demo-skill\n"
        "description: >-\n  Does one thing well.\n  Use it when asked.\n"
        "license: 'MIT, see LICENSE.txt'\n"
        'compatibility: "Requires: Python 3.11"\n'
        "metadata:\n  version: 1.2\n  owner: budget-mcp\n"
    )
    assert parse_simple_yaml(source) == {
        "name": "demo-skill",
        "description": "Does one thing well. Use it when asked.",
        "license": "MIT, see LICENSE.txt",
        "compatibility": "Requires: Python 3.11",
        "metadata": {"version": 1.2, "owner": "budget-mcp"},
    }


@pytest.mark.parametrize(
    "source",
    [
        "name: demo\ndescription: Reads files: all of them\n",  # YAML refuses ': ' in a plain value
        "name: demo\nname: again\n",
        "name: [demo]\n",
        "  name: demo\n",
        "name: 'demo\n",
        "metadata:\n  a: 1\n    b: 2\n",
    ],
)
def test_the_front_matter_reader_refuses_invalid_or_ambiguous_yaml(source: str) -> None:
    with pytest.raises(FrontMatterError):
        parse_simple_yaml(source)


def test_the_validator_catches_a_wrong_name_a_long_description_and_extra_keys() -> None:
    problems = front_matter_problems({"name": "Budget_Analyst", "description": "x" * 1025, "tags": "a"}, "budget")
    assert len(problems) == 4, problems


def test_the_validator_catches_links_that_are_absolute_broken_or_wrong_in_case(tmp_path: Path) -> None:
    skill = tmp_path / "demo"
    (skill / "references").mkdir(parents=True)
    (skill / "references" / "guide.md").write_text("# Guide\n\n## Step one\n")
    (skill / "SKILL.md").write_text(
        "---\nname: demo\ndescription: A demo skill. Use it in tests.\n---\n\n"
        "[ok](references/guide.md#step-one) [case](references/Guide.md) [gone](references/none.md)\n"
        "[abs](/etc/passwd) [anchor](references/guide.md#step-two) [web](https://example.com)\n"
        "Read `references/missing.md`.\n\n```\n[in code](nowhere.md)\n```\n"
    )
    problems = skill_problems(skill)
    assert len(problems) == 5, problems
    assert all(word in " ".join(problems) for word in ("Guide.md", "none.md", "/etc/passwd", "step-two", "missing.md"))


def test_the_tool_reference_is_generated_from_the_server() -> None:
    facts = server_facts()
    assert {call.tool for call in EXAMPLES} == {tool.name for tool in facts.tools}, (
        "every tool needs exactly one example call in EXAMPLES (tests/test_skills.py)"
    )
    _compare_or_update(TOOLS_REFERENCE, render_tools_reference(facts))


def test_the_error_messages_quoted_in_the_skill_are_what_the_server_answers() -> None:
    markdown = ERRORS_REFERENCE.read_text(encoding="utf-8")
    assert quoted_calls(markdown), "errors.md quotes no calls"
    _compare_or_update(ERRORS_REFERENCE, refresh_error_messages(markdown, server_facts().replayed))


def test_messages_the_skill_quotes_without_a_call_come_from_the_server_code() -> None:
    # String literals continued on the next line are joined, as Python joins them.
    source = "".join(
        re.sub(r"\"\s*\n\s*f?\"", "", p.read_text(encoding="utf-8")) for p in (ROOT / "budget_mcp").glob("*.py")
    )
    phrases = re.findall(r"^\*\*Message\*\* `([^`]+)`", ERRORS_REFERENCE.read_text(encoding="utf-8"), re.MULTILINE)
    assert phrases, "errors.md quotes no messages"
    missing = [phrase for phrase in phrases if phrase not in source]
    assert not missing, f"the server no longer says: {missing}"


def _skill_markdown() -> dict[str, str]:
    return {
        path.relative_to(ANALYST).as_posix(): path.read_text(encoding="utf-8") for path in sorted(ANALYST.rglob("*.md"))
    }


def test_every_name_the_analyst_skill_writes_in_code_is_a_tool_prompt_parameter_or_field_of_the_server() -> None:
    known = server_facts().known_identifiers()
    unknown = {
        f"{where}: {name}"
        for where, markdown in _skill_markdown().items()
        for code in inline_code(_CALL_QUOTE.sub("", markdown))  # replayed calls are checked by the replay
        for name in re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", code)
        if name not in known
    }
    assert not unknown, f"names the server does not have: {sorted(unknown)}"


def test_every_resource_uri_the_analyst_skill_names_is_one_the_server_offers() -> None:
    offered = server_facts().resource_uris
    patterns = [re.compile(re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(uri))) for uri in offered]
    named = {uri for markdown in _skill_markdown().values() for uri in re.findall(r"budget://[^\s`)\"']+", markdown)}
    assert named, "the skill names no resource"
    unknown = [uri for uri in named if uri not in offered and not any(p.fullmatch(uri) for p in patterns)]
    assert not unknown, f"resources the server does not offer: {unknown}"


def test_every_tool_prompt_and_resource_is_documented_and_taught_by_the_analyst_skill() -> None:
    facts = server_facts()
    assert {tool.name for tool in facts.tools} == TOOLS
    documents = _skill_markdown()
    reference = set(re.findall(r"^## ([a-z_]+)$", documents["references/tools.md"], flags=re.MULTILINE))
    assert reference == TOOLS, "references/tools.md must have one section per tool"
    taught = " ".join(text for where, text in documents.items() if where != "references/tools.md")
    mentioned = set(re.findall(r"`([a-z_]+)", taught))
    names = TOOLS | {prompt.name for prompt in facts.prompts}
    assert not names - mentioned, f"not taught in SKILL.md or a hand-written reference: {sorted(names - mentioned)}"
    unnamed = [uri for uri in facts.resource_uris if uri not in taught]
    assert not unnamed, f"resources the skill does not mention: {unnamed}"


def test_the_analyst_skill_says_when_to_read_each_reference() -> None:
    skill = (ANALYST / "SKILL.md").read_text(encoding="utf-8")
    references = sorted(p.relative_to(ANALYST).as_posix() for p in (ANALYST / "references").iterdir())
    assert references
    for reference in references:
        assert f"]({reference})" in skill, f"SKILL.md never links {reference}"
