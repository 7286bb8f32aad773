"""The ``budget-mcp`` command: help, version, info, ``db upgrade`` and how it reports bad settings or a
database it cannot reach -- never with the database password."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from budget_mcp import __version__
from budget_mcp.cli import main
from budget_mcp.config import Settings, env_var
from budget_mcp.db import SCHEMA_HEAD, Base

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-Pa55word"
SUBCOMMANDS = ("serve", "db", "info", "doctor", "token", "skills", "install", "demo", "report", "import", "export")


def setting_names() -> set[str]:
    """The environment variable of every Settings field."""
    return {env_var(field) for field in Settings.model_fields}


def documented_settings() -> set[str]:
    """Names assigned in .env.example, also in commented-out examples (``# NAME=...``) if they are settings."""
    names: set[str] = set()
    known = setting_names()
    for line in (REPO / ".env.example").read_text().splitlines():
        active = re.match(r"([A-Z][A-Z0-9_]*)=", line)
        if active:
            names.add(active.group(1))
            continue
        example = re.match(r"#\s*([A-Z][A-Z0-9_]*)=", line)
        if example and example.group(1) in known:
            names.add(example.group(1))
    return names


def console_script() -> str:
    """The installed ``budget-mcp`` next to this interpreter."""
    found = shutil.which("budget-mcp", path=str(Path(sys.executable).parent))
    assert found is not None, f"budget-mcp is not installed next to {sys.executable}"
    return found


def closed_port() -> int:
    """A local TCP port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("BUDGET_MCP_")}
    env.update(settings)
    return env


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Only the settings a test sets apply (no .env nearby, none from the machine); logging is restored."""
    for name in list(os.environ):
        if name == "DATABASE_URL" or name.startswith("BUDGET_MCP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def exits(argv: list[str]) -> SystemExit:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    return caught.value


# --- help and version ---------------------------------------------------------------------------------


def test_every_setting_is_documented_in_env_example() -> None:
    assert documented_settings() == setting_names()


def test_help_lists_every_subcommand_and_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert exits(["--help"]).code == 0
    help_text = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert re.search(rf"^\s+{command}\s", help_text, re.MULTILINE), f"{command} missing from --help"
    for name in documented_settings():
        assert name in help_text, f"{name} is in .env.example but not in --help"
    assert "--env-file" in help_text


def test_db_help_lists_upgrade(capsys: pytest.CaptureFixture[str]) -> None:
    assert exits(["db", "--help"]).code == 0
    assert "upgrade" in capsys.readouterr().out


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert exits(["--version"]).code == 0
    assert capsys.readouterr().out.strip() == f"budget-mcp {__version__}"
    assert __version__ == version("budget-mcp")


def test_no_arguments_mean_what_the_parser_makes_of_none() -> None:
    from budget_mcp.cli import NO_ARGUMENTS, build_parser  # start-up skips building the parser

    assert build_parser().parse_args([]) == NO_ARGUMENTS


def test_the_installed_console_script_runs_the_cli() -> None:
    done = subprocess.run([console_script(), "--version"], capture_output=True, text=True, timeout=60, env=clean_env())
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, f"budget-mcp {__version__}", "")


def test_an_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert exits(["frobnicate"]).code == 2
    assert "invalid choice" in capsys.readouterr().err


# --- info ---------------------------------------------------------------------------------------------


def test_info_shows_the_settings_with_the_postgresql_password_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgres://alex:{PASSWORD}@db.example.com/neondb?sslmode=require")
    monkeypatch.setenv("BUDGET_MCP_USER", "alex")
    monkeypatch.setenv("BUDGET_MCP_DEFAULT_CURRENCY", "eur")
    monkeypatch.setenv("BUDGET_MCP_TIMEZONE", "Europe/Berlin")
    assert main(["info"]) == 0
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    assert "postgresql+psycopg2://alex:***@db.example.com/neondb?sslmode=require" in out
    assert re.search(r"^user\s+alex$", out, re.MULTILINE)
    assert re.search(r"^default currency\s+EUR$", out, re.MULTILINE)
    assert re.search(r"^timezone\s+Europe/Berlin$", out, re.MULTILINE)
    assert re.search(rf"^version\s+{re.escape(__version__)}$", out, re.MULTILINE)


def test_info_masks_a_password_given_as_a_query_parameter(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://alex@db.example.com/neondb?password={PASSWORD}&sslmode=require")
    assert main(["info"]) == 0
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    assert "db.example.com/neondb" in out


def test_info_shows_the_absolute_default_database_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    expected = tmp_path / "data" / "budget-mcp" / "budget.sqlite3"
    assert re.search(rf"^database\s+sqlite\+pysqlite:///{re.escape(str(expected))}$", capsys.readouterr().out, re.M)
    assert not expected.exists()  # info only reports; it creates nothing


def test_settings_come_from_the_env_file_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env_file = tmp_path / "budget.env"
    env_file.write_text("BUDGET_MCP_USER=from-file\nBUDGET_MCP_DEFAULT_CURRENCY=JPY\n")
    assert main(["--env-file", str(env_file), "info"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^user\s+from-file$", out, re.MULTILINE)
    assert re.search(r"^default currency\s+JPY$", out, re.MULTILINE)


def test_a_dotenv_in_the_working_directory_is_read_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".env").write_text("BUDGET_MCP_USER=from-dotenv\n")
    assert main(["info"]) == 0
    assert re.search(r"^user\s+from-dotenv$", capsys.readouterr().out, re.MULTILINE)


def test_a_missing_env_file_is_refused_by_name(tmp_path: Path) -> None:
    code = exits(["--env-file", str(tmp_path / "nope.env"), "info"]).code
    assert isinstance(code, str)
    assert "nope.env" in code and "no such file" in code


# --- db upgrade ---------------------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema_on_a_new_sqlite_file_and_is_idempotent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "new" / "dir" / "budget.sqlite3"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    assert main(["db", "upgrade"]) == 0
    assert path.is_file()
    assert "database schema is up to date" in capsys.readouterr().out
    engine = create_engine(f"sqlite:///{path}")
    try:
        assert set(inspect(engine).get_table_names()) == {"alembic_version"} | {
            table.name for table in Base.metadata.sorted_tables
        }
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO users (name, created_at) VALUES ('alice', '2026-01-01')"))
        assert main(["db", "upgrade"]) == 0
        with engine.connect() as connection:
            assert connection.execute(text("SELECT name FROM users")).scalars().all() == ["alice"]
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [SCHEMA_HEAD]
    finally:
        engine.dispose()


def test_db_without_a_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert exits(["db"]).code == 2
    assert "required" in capsys.readouterr().err


# --- bad settings and unreachable databases -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("BUDGET_MCP_DEFAULT_CURRENCY", "XYZ", "unknown currency"),
        ("BUDGET_MCP_TIMEZONE", "Mars/Olympus_Mons", "unknown time zone"),
        ("BUDGET_MCP_LOG_LEVEL", "LOUD", "DEBUG"),
        ("DATABASE_URL", f"mysql://root:{PASSWORD}@localhost/budget", "scheme 'mysql' is not supported"),
        ("DATABASE_URL", f"postgresql+psycopg://alex:{PASSWORD}@h/db", "driver 'psycopg' is not supported"),
        ("DATABASE_URL", "sqlite:///:memory:", "in-memory"),
    ],
)
def test_invalid_settings_exit_with_a_message_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    code = exits(["info"]).code
    assert isinstance(code, str)  # SystemExit(str): printed to stderr, exit status 1
    assert code.startswith("budget-mcp: invalid settings:")
    assert re.search(rf"^  {name}: .*{re.escape(expected)}", code, re.MULTILINE), code
    assert PASSWORD not in code + "".join(capsys.readouterr())


def test_a_url_missing_its_host_is_refused_without_echoing_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://alex:{PASSWORD}/neondb")
    code = exits(["info"]).code
    assert isinstance(code, str) and "DATABASE_URL" in code
    assert PASSWORD not in code


def test_the_console_script_exits_1_on_invalid_settings_without_echoing_the_password(tmp_path: Path) -> None:
    env = clean_env(
        DATABASE_URL=f"mysql://root:{PASSWORD}@localhost/budget",
        BUDGET_MCP_DEFAULT_CURRENCY="XYZ",
        HOME=str(tmp_path),
    )
    done = subprocess.run([console_script(), "info"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "DATABASE_URL: DATABASE_URL scheme 'mysql' is not supported" in done.stderr
    assert "BUDGET_MCP_DEFAULT_CURRENCY: unknown currency 'XYZ'" in done.stderr
    assert PASSWORD not in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("log_level", ["WARNING", "DEBUG"])
def test_an_unreachable_postgresql_exits_1_with_a_clear_message_and_no_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], log_level: str
) -> None:
    port = closed_port()
    monkeypatch.setenv("DATABASE_URL", f"postgresql://alex:{PASSWORD}@127.0.0.1:{port}/budget?sslmode=require")
    monkeypatch.setenv("BUDGET_MCP_LOG_LEVEL", log_level)
    monkeypatch.setenv("BUDGET_MCP_DATABASE_WAIT", "0.2")  # how long it retries is tested in test_engine
    assert main(["db", "upgrade"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"cannot use the database postgresql+psycopg2://alex:***@127.0.0.1:{port}/budget" in err
    assert "Connection refused" in err
    assert "Check DATABASE_URL" in err
    assert PASSWORD not in err


# --- install and demo, through the command line -----------------------------------------------------------


def test_install_print_shows_the_entry_with_the_password_masked_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"postgresql://alex:{PASSWORD}@db.example.com/budget?sslmode=require")
    assert main(["install", "claude-code", "--print"]) == 0
    out, err = capsys.readouterr()
    assert '"budget"' in out and "budget-mcp" in out
    assert PASSWORD not in out + err
    assert not (tmp_path / ".claude.json").exists()


def test_the_demo_runs_end_to_end_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "summarize_spending" in out and "did you mean" in out
