"""The database-deployment skill is tested like code: each example runs as documented (no setup on SQLite,
on the test PostgreSQL, and through PgBouncer like a Neon pooled URL), prints exactly its report, fails
clearly, never prints a password and leaves nothing behind; and no code in the skill repeats the mistakes
the skill warns about."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
import sqlalchemy.engine
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from pgserver import PgBouncerInstance, PostgresInstance

SKILL = Path(__file__).resolve().parent.parent / "skills" / "database-deployment"
EXAMPLES = SKILL / "examples"
EXAMPLE_NAMES = ["simple_expense.py", "budget_tracker.py", "neon_deploy.py"]
SECRET = "Secret-pw-4711"

# What each example prints between its header (which names the database) and its last line.
SIMPLE_EXPENSE_REPORT = """\
Saved 2 expenses in one transaction.
Read back by id: Coffee beans, 12.30 on 2026-03-14
  2026-03-14     12.30  Coffee beans
  2026-03-15      8.75  Train ticket
Total, summed by the database: 21.05
"""

BUDGET_TRACKER_REPORT = """\
Created alice (Food, Rent, Transport) and bob (Books).
Added 5 expenses for alice (4 in March, 1 in April) and 1 for bob.
Repeated the March rent with its idempotency key: 1 saved, not 2.
alice, March 2026:
  2026-03-01  Rent        1200.00  March rent
  2026-03-02  Food          23.40  Groceries
  2026-03-05  Transport     18.00  Taxi home
  2026-03-09  Food           6.80  Lunch
Updated Groceries: 23.40 -> 25.10.
Deleted Taxi home.
Imported 2 expenses, creating the category Travel on the way.
Import of 3 rows failed (row 3: amount '9.999' must have at most two decimal places); \
the whole transaction was rolled back:
  alice still has 4 categories (no Gifts) and 6 expenses.
Summary for alice, March 2026 (one GROUP BY query):
  Food        2 expenses    31.90
  Rent        1 expense   1200.00
  Transport   0 expenses     0.00
  Travel      2 expenses   274.50
  Total       5 expenses  1506.40
Users and their categories (selectinload):
  alice: Food, Rent, Transport, Travel
  bob: Books
Deleted bob; ON DELETE CASCADE removed his 1 category and 1 expense (0 and 0 left).
Timestamps come back timezone-aware in UTC: yes
"""

NEON_DEPLOY_WRITES = """\
Saved 12.30 under the idempotency key receipt-2026-03-14-0042.
Ran the write again, as a retry after a lost COMMIT answer would: 1 row, the same id.
"""

NEON_DEPLOY_ON_SQLITE = f"""\
Skipped without Neon: the pooled engine settings, SET LOCAL statement_timeout, the migration advisory lock \
and the direct endpoint.
Migrated (create_all).
Health check (SELECT 1) through the application engine: ok
{NEON_DEPLOY_WRITES}"""

NEON_DEPLOY_ON_POSTGRESQL = f"""\
Migrated, holding the migration advisory lock.
Health check (SELECT 1) through the application engine: ok
statement_timeout inside each transaction (SET LOCAL): 30s
{NEON_DEPLOY_WRITES}"""

REPORTS_ON_POSTGRESQL = {
    "simple_expense.py": SIMPLE_EXPENSE_REPORT,
    "budget_tracker.py": BUDGET_TRACKER_REPORT,
    "neon_deploy.py": NEON_DEPLOY_ON_POSTGRESQL,
}

# How each example names its temporary SQLite file: (line prefix, directory prefix, file name).
SQLITE_FILES = {
    "simple_expense.py": ("Database: temporary SQLite file ", "simple-expense-", "expenses.sqlite3"),
    "budget_tracker.py": ("Database: temporary SQLite file ", "budget-tracker-", "budget.sqlite3"),
    "neon_deploy.py": (
        "DATABASE_URL is not set: running on a temporary SQLite file ",
        "neon-deploy-",
        "deploy.sqlite3",
    ),
}
REPORTS_ON_SQLITE = {
    "simple_expense.py": SIMPLE_EXPENSE_REPORT,
    "budget_tracker.py": BUDGET_TRACKER_REPORT,
    "neon_deploy.py": NEON_DEPLOY_ON_SQLITE,
}


# --- Running an example ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    """Where an example runs: its own working directory, HOME and TMPDIR, all under the test's tmp_path."""

    cwd: Path
    home: Path
    tmp: Path

    def files(self) -> list[Path]:
        return sorted(p for d in (self.cwd, self.home, self.tmp) for p in d.rglob("*"))


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    dirs = Sandbox(cwd=tmp_path / "cwd", home=tmp_path / "home", tmp=tmp_path / "tmp")
    for directory in (dirs.cwd, dirs.home, dirs.tmp):
        directory.mkdir()
    return dirs


def run_example(name: str, sandbox: Sandbox, **variables: str) -> subprocess.CompletedProcess[str]:
    """``python examples/<name>`` as a user would run it, with warnings as errors and only ``variables``
    set of the database settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "PG"))}
    env.update(HOME=str(sandbox.home), TMPDIR=str(sandbox.tmp), PYTHONDONTWRITEBYTECODE="1", **variables)
    return subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name)],
        cwd=sandbox.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The printed lines of a run that must have succeeded silently (nothing on stderr)."""
    assert result.returncode == 0, f"exit {result.returncode}; stderr:\n{result.stderr}"
    assert result.stderr == ""
    return result.stdout.splitlines()


def as_neon_hands_it_out(url: str) -> str:
    """The fixture's URL as Neon's console shows it: a bare postgresql:// scheme, which the examples must
    normalise to psycopg2 themselves."""
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def password_of(url: str) -> str:
    password = make_url(url).password
    assert password
    return password


def leftovers(url: str) -> list[str]:
    """Schemas and tables in the database besides the empty public schema it started with."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            schemas = connection.execute(
                text(
                    "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
                    "AND nspname NOT IN ('public', 'information_schema')"
                )
            ).scalars()
            tables = connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
            return [f"schema {name}" for name in schemas] + [f"table {name}" for name in tables]
    finally:
        engine.dispose()


@pytest.fixture
def example_database(postgres: PostgresInstance, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A fresh database on the test PostgreSQL for one test: (its name, the app role's direct URL)."""
    name = "skill_example_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
    url = postgres.create_database(name)
    try:
        yield name, url
    finally:
        postgres.drop_database(name)


# --- The examples run as documented --------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_each_example_runs_with_no_setup_on_a_temporary_sqlite_file_and_removes_it(
    example: str, sandbox: Sandbox
) -> None:
    lines = succeeded(run_example(example, sandbox))

    prefix, directory, file_name = SQLITE_FILES[example]
    where = re.escape(str(sandbox.tmp)) + "/" + re.escape(directory) + r"[^/\s]+/" + re.escape(file_name)
    assert re.fullmatch(re.escape(prefix) + where, lines[0]), lines[0]
    assert lines[1:] == [*REPORTS_ON_SQLITE[example].splitlines(), "Removed the temporary SQLite file."]
    assert sandbox.files() == []


@pytest.mark.parametrize("example", ["simple_expense.py", "budget_tracker.py"])
@pytest.mark.postgres
def test_each_example_prints_the_same_report_on_postgresql_and_leaves_the_database_as_it_found_it(
    example: str, sandbox: Sandbox, example_database: tuple[str, str]
) -> None:
    name, url = example_database
    for _ in range(2):  # re-runnable on the same database
        result = run_example(example, sandbox, DATABASE_URL=as_neon_hands_it_out(url))
        lines = succeeded(result)

        assert lines == [
            f"Database: PostgreSQL database '{name}' on 127.0.0.1, in a private schema",
            *REPORTS_ON_POSTGRESQL[example].splitlines(),
            "Dropped the private schema.",
        ]
        assert SECRET not in result.stdout
        assert password_of(url) not in result.stdout
        assert leftovers(url) == []


@pytest.mark.postgres
def test_neon_deploy_on_a_direct_url_migrates_on_that_same_url(
    sandbox: Sandbox, example_database: tuple[str, str], postgres: PostgresInstance
) -> None:
    name, url = example_database
    result = run_example("neon_deploy.py", sandbox, DATABASE_URL=as_neon_hands_it_out(url))

    assert succeeded(result) == [
        f"Application engine on 127.0.0.1:{postgres.port}, database '{name}' (DATABASE_URL)",
        f"Migrations on 127.0.0.1:{postgres.port} (DATABASE_URL itself: its host has no -pooler)",
        *NEON_DEPLOY_ON_POSTGRESQL.splitlines(),
        "Dropped the private schema.",
    ]
    assert password_of(url) not in result.stdout
    assert leftovers(url) == []


@pytest.mark.postgres
def test_neon_deploy_serves_through_the_pooler_and_migrates_on_the_direct_url_twice_in_a_row(
    sandbox: Sandbox,
    example_database: tuple[str, str],
    postgres: PostgresInstance,
    pooler: PgBouncerInstance,
) -> None:
    name, direct = example_database
    pooled = pooler.url(name)
    for _ in range(2):
        result = run_example(
            "neon_deploy.py",
            sandbox,
            DATABASE_URL=as_neon_hands_it_out(pooled),
            DATABASE_URL_UNPOOLED=as_neon_hands_it_out(direct),
        )

        assert succeeded(result) == [
            f"Application engine on 127.0.0.1:{pooler.port}, database '{name}' (DATABASE_URL)",
            f"Migrations on 127.0.0.1:{postgres.port} (DATABASE_URL_UNPOOLED)",
            *NEON_DEPLOY_ON_POSTGRESQL.splitlines(),
            "Dropped the private schema.",
        ]
        assert password_of(direct) not in result.stdout
        assert leftovers(direct) == []


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_an_unreachable_database_fails_with_one_clear_line_and_never_the_password(
    example: str, sandbox: Sandbox
) -> None:
    url = f"postgresql://app:{SECRET}@127.0.0.1:{closed_port()}/budget?sslmode=require"
    result = run_example(example, sandbox, DATABASE_URL=url)

    assert result.returncode == 1
    assert re.fullmatch(
        rf"{re.escape(example)} failed: connection to server at .*Connection refused.*\n", result.stderr
    )
    assert SECRET not in result.stdout + result.stderr
    assert sandbox.files() == []


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        (f"postgresql://app:{SECRET}@db.example.com:port/budget", "is not a valid URL"),
        # No host: SQLAlchemy reads the password as the port, and its own error would quote it.
        (f"postgresql://app:{SECRET}/budget", "is not a valid URL"),
        (f"mysql://app:{SECRET}@db.example.com/budget", "must be a PostgreSQL URL"),
    ],
    ids=["bad-port", "no-host", "not-postgresql"],
)
def test_a_bad_database_url_is_refused_before_connecting_without_echoing_it(
    example: str, url: str, complaint: str, sandbox: Sandbox
) -> None:
    result = run_example(example, sandbox, DATABASE_URL=url)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"{example} failed: DATABASE_URL ")
    assert complaint in result.stderr
    assert result.stderr.count("\n") == 1
    assert SECRET not in result.stderr


def test_neon_deploy_refuses_a_remote_url_that_would_send_the_password_in_the_clear(sandbox: Sandbox) -> None:
    url = f"postgresql://app:{SECRET}@ep-x-1-pooler.eu-central-1.aws.neon.tech/neondb?sslmode=disable"
    result = run_example("neon_deploy.py", sandbox, DATABASE_URL=url)

    assert result.returncode == 1
    assert result.stderr == (
        "neon_deploy.py failed: DATABASE_URL has sslmode=disable; "
        "use sslmode=require (or verify-full) for ep-x-1-pooler.eu-central-1.aws.neon.tech\n"
    )


def test_no_example_creates_an_engine_or_touches_a_database_when_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("create_engine() called at import")

    monkeypatch.setattr(sqlalchemy, "create_engine", refuse)
    monkeypatch.setattr(sqlalchemy.engine, "create_engine", refuse)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{SECRET}@127.0.0.1:{closed_port()}/budget")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no __pycache__ inside the shipped skill
    for example in EXAMPLE_NAMES:
        name = f"skill_example_{example.removesuffix('.py')}"
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / example)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        assert callable(module.main)


# --- The skill's own code follows its rules ------------------------------------------------------------------

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
FLOAT_TYPES = {"Float", "FLOAT", "Double", "DOUBLE", "DOUBLE_PRECISION", "REAL"}
QUERY_METHODS = {"execute", "scalars", "scalar", "get", "get_one"}


class MistakeFinder(ast.NodeVisitor):
    """Finds, in Python source, the mistakes the skill tells its reader never to make."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.functions = 0  # depth of enclosing function bodies (module level: 0)
        self.loops = 0  # depth of enclosing loop bodies

    def report(self, node: ast.AST, mistake: str) -> None:
        self.found.append(f"line {getattr(node, 'lineno', '?')}: {mistake}")

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.functions += 1
        self.generic_visit(node)
        self.functions -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.target)
        self.visit(node.iter)  # evaluated once
        self.loops += 1
        for statement in [*node.body, *node.orelse]:
            self.visit(statement)
        self.loops -= 1

    visit_AsyncFor = visit_For

    def visit_While(self, node: ast.While) -> None:
        self.loops += 1
        self.generic_visit(node)
        self.loops -= 1

    def _visit_comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        self.visit(node.generators[0].iter)  # evaluated once
        self.loops += 1
        for generator in node.generators:
            self.visit(generator.target)
            if generator is not node.generators[0]:
                self.visit(generator.iter)
            for condition in generator.ifs:
                self.visit(condition)
        for part in (node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,):
            self.visit(part)
        self.loops -= 1

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comprehension

    def visit_Name(self, node: ast.Name) -> None:
        if node.id == "float":
            self.report(node, "float (money must be integer cents or Decimal)")
        if node.id in FLOAT_TYPES:
            self.report(node, f"{node.id} column type (money must be integer cents)")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in FLOAT_TYPES:
            self.report(node, f"{node.attr} column type (money must be integer cents)")
        if node.attr in {"utcnow", "utcfromtimestamp"}:
            self.report(node, f"datetime.{node.attr} (naive; use datetime.now(UTC))")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", "")
        receiver = function.value if isinstance(function, ast.Attribute) else None
        receiver_name = receiver.id if isinstance(receiver, ast.Name) else ""
        first = node.args[0] if node.args else None
        if name == "create_engine" and self.functions == 0:
            self.report(node, "create_engine() at import")
        if name in {"execute", "exec_driver_sql"} and isinstance(first, ast.JoinedStr):
            self.report(node, f"{name}(f-string): SQL built from values")
        if name == "execute" and isinstance(first, ast.Constant) and receiver_name != "cursor":
            self.report(node, "execute() with a raw SQL string (use text())")
        if name == "text" and not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            self.report(node, "text() of a computed string (use bound parameters)")
        if any(isinstance(a, ast.Name) and a.id == "DateTime" for a in [*node.args, *(k.value for k in node.keywords)]):
            self.report(node, "DateTime() without timezone=True")
        if name == "DateTime" and not any(
            k.arg == "timezone" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords
        ):
            self.report(node, "DateTime() without timezone=True")
        if receiver_name == "datetime" and (name == "today" or (name == "now" and not node.args and not node.keywords)):
            self.report(node, f"datetime.{name}() (naive local time)")
        if name == "commit":
            self.report(node, "commit() (use `with Session.begin()`)")
        if name == "suppress" and any(isinstance(a, ast.Name) and a.id.endswith("Exception") for a in node.args):
            self.report(node, "suppress(Exception) (a swallowed exception)")
        if self.loops and name in QUERY_METHODS and "session" in receiver_name.lower():
            self.report(node, f"session.{name}() inside a loop (N+1 queries)")
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is None:
            self.report(node, "bare except:")
        if all(
            isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
            for s in node.body
        ):
            self.report(node, "an exception caught and dropped")
        self.generic_visit(node)


def mistakes_in(source: str) -> list[str]:
    finder = MistakeFinder()
    finder.visit(ast.parse(source))
    return finder.found


def python_in_the_skill() -> list[tuple[str, str]]:
    """(where, source) of every example and every ```python block in the skill's Markdown."""
    units = [(f"examples/{path.name}", path.read_text()) for path in sorted(EXAMPLES.glob("*.py"))]
    for path in sorted(SKILL.rglob("*.md")):
        for number, match in enumerate(FENCE.finditer(path.read_text()), start=1):
            if match.group(1) == "python":
                units.append((f"{path.relative_to(SKILL)} block {number}", match.group(2)))
    return units


def test_every_python_snippet_in_the_skill_is_valid_python() -> None:
    units = python_in_the_skill()
    assert len(units) > 20  # the examples and the reference snippets were all found
    for where, source in units:
        try:
            ast.parse(source)
        except SyntaxError as error:
            pytest.fail(f"{where}: {error}")


def test_no_code_in_the_skill_uses_float_money_naive_time_raw_sql_strings_engines_at_import_or_swallowed_errors() -> (
    None
):
    found = {where: mistakes for where, source in python_in_the_skill() if (mistakes := mistakes_in(source))}
    assert found == {}


def test_no_shell_or_text_block_in_the_skill_shows_a_naive_timestamp_or_a_raw_sql_string() -> None:
    for path in sorted(SKILL.rglob("*.md")):
        for match in FENCE.finditer(path.read_text()):
            if match.group(1) != "python":
                assert not re.search(r"utcnow|execute\(\s*f?[\"']", match.group(2)), path.name


def test_the_mistake_finder_catches_each_mistake_it_looks_for() -> None:
    bad = """
from datetime import datetime
from sqlalchemy import DateTime, Float, create_engine, text
engine = create_engine("sqlite://")
class Expense(Base):
    amount: Mapped[float] = mapped_column(Float)
    created_at = mapped_column(DateTime, default=datetime.utcnow)
def total(session, categories, name):
    try:
        session.execute("SELECT 1")
        session.execute(text(f"SELECT * FROM t WHERE name = '{name}'"))
        for category in categories:
            session.scalar(select(func.sum(Expense.amount)).where(Expense.category == category))
        session.commit()
    except:
        pass
    try:
        return float(datetime.now().day)
    except Exception:
        pass
"""
    found = " | ".join(mistakes_in(bad))
    for mistake in [
        "create_engine() at import",
        "float (money",
        "Float column type",
        "DateTime() without timezone=True",
        "datetime.utcnow",
        "execute() with a raw SQL string",
        "text() of a computed string",
        "session.scalar() inside a loop",
        "commit()",
        "bare except:",
        "an exception caught and dropped",
        "datetime.now() (naive",
    ]:
        assert mistake in found, mistake


def test_the_quick_start_in_skill_md_runs_as_shown(tmp_path: Path) -> None:
    quick_start = next(m.group(2) for m in FENCE.finditer((SKILL / "SKILL.md").read_text()) if m.group(1) == "python")
    namespace: dict[str, Any] = {"__name__": "quick_start"}
    exec(compile(quick_start, "SKILL.md quick start", "exec", dont_inherit=True), namespace)
    url = URL.create("sqlite+pysqlite", database=str(tmp_path / "quick.sqlite3"))
    engine = create_engine(url)
    try:
        namespace["Base"].metadata.create_all(engine)
    finally:
        engine.dispose()

    printed = StringIO()
    with redirect_stdout(printed):
        namespace["main"](url)
    assert printed.getvalue() == "1230\n"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_link_in_the_skill_resolves_and_every_reference_and_example_is_linked_from_skill_md() -> None:
    for page in sorted(SKILL.rglob("*.md")):
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            assert linked.is_file(), f"{page.name}: {target}"
            assert linked.name in os.listdir(linked.parent), f"{page.name}: {target} (letter case)"
            if anchor:
                assert anchor in heading_anchors(linked), f"{page.name}: {target}"

    linked_from_skill_md = set(LINK.findall((SKILL / "SKILL.md").read_text()))
    shipped = {
        p.relative_to(SKILL).as_posix()
        for p in SKILL.rglob("*")
        if p.is_file() and p.name != "SKILL.md" and "__pycache__" not in p.parts
    }
    assert shipped <= linked_from_skill_md


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
