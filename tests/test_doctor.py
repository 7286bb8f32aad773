"""``budget-mcp doctor``: what it reports about the settings and a real database, how it says what to fix,
and that no password ever reaches its output."""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import URL

from budget_mcp.cli import main
from budget_mcp.config import Settings
from budget_mcp.db import SCHEMA_HEAD, make_engine, upgrade_schema
from budget_mcp.doctor import run_doctor

from conftest import make_settings
from pgserver import PgBouncerInstance, PostgresInstance


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Only the settings a test sets apply (no .env nearby, none from the machine); logging is restored."""
    for name in list(os.environ):
        if name == "DATABASE_URL" or name.startswith("BUDGET_MCP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def assert_no_password(output: str, *urls: str | URL) -> None:
    """No password of these URLs (in the URL or its query string) appears in ``output``, in any spelling."""
    for url in urls:
        parsed = make_url(url) if isinstance(url, str) else url
        secrets = [parsed.password] + [v for k, v in parsed.query.items() if "password" in k.lower()]
        for secret in filter(None, secrets):
            assert isinstance(secret, str)
            for spelling in (secret, quote(secret, safe=""), quote_plus(secret)):
                assert spelling not in output, "a database password appears in the doctor's output"


def doctor(settings: Settings, sources: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the doctor; return its exit code and output, having checked that the output shows no password."""
    out = io.StringIO()
    code = run_doctor(settings, sources or {}, out)
    output = out.getvalue()
    assert_no_password(output, settings.url, settings.migration_url)
    return code, output


def check(output: str, name: str) -> tuple[str, str, str | None]:
    """The status, detail and fix (None without one) of the check called ``name``."""
    found = re.search(rf"^  (ok|warn|FAIL) +{re.escape(name)} +(.*)\n(?: +fix: (.*)\n)?", output, re.MULTILINE)
    assert found, f"no {name!r} check in:\n{output}"
    return found.group(1), found.group(2), found.group(3)


def setting(output: str, name: str) -> tuple[str, str]:
    """The value and source shown for the setting ``name`` (an environment variable name)."""
    found = re.search(rf"^  {name} +(.*?) {{2,}}(\S.*)$", output, re.MULTILINE)
    assert found, f"no setting {name} in:\n{output}"
    return found.group(1), found.group(2)


def migrated_sqlite(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = make_engine(make_settings(url).url)
    try:
        upgrade_schema(engine)
    finally:
        engine.dispose()
    return url


def set_revision(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision})
    finally:
        engine.dispose()


def closed_port() -> int:
    """A local TCP port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fresh_database(postgres: PostgresInstance) -> Iterator[str]:
    """A new, empty PostgreSQL database owned by the app role (TLS + SCRAM); dropped afterwards."""
    name = f"doctor_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name)
    try:
        yield url
    finally:
        postgres.drop_database(name)


# --- SQLite -------------------------------------------------------------------------------------------


def test_a_healthy_sqlite_database_passes_and_each_setting_shows_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = migrated_sqlite(tmp_path / "budget.sqlite3")
    monkeypatch.setenv("DATABASE_URL", url)
    env_file = tmp_path / "budget.env"
    env_file.write_text("BUDGET_MCP_USER=from-file\nBUDGET_MCP_DEFAULT_CURRENCY=eur\n")

    assert main(["--env-file", str(env_file), "doctor"]) == 0

    out, err = capsys.readouterr()
    assert_no_password(out + err, url)
    assert err == ""
    assert setting(out, "DATABASE_URL") == (f"sqlite+pysqlite:///{tmp_path / 'budget.sqlite3'}", "environment")
    assert setting(out, "BUDGET_MCP_USER") == ("from-file", str(env_file))
    assert setting(out, "BUDGET_MCP_DEFAULT_CURRENCY") == ("EUR", str(env_file))
    assert setting(out, "BUDGET_MCP_READ_ONLY") == ("false", "default")
    assert setting(out, "BUDGET_MCP_POOL_SIZE") == ("5", "default")
    assert check(out, "profile")[:2] == ("ok", "sqlite: an embedded file, no server")
    assert check(out, "connection")[0] == "ok"
    assert re.fullmatch(r"SQLite 3\.\d+\.\d+", check(out, "server")[1])
    assert check(out, "schema")[:2] == ("ok", f"up to date (migration {SCHEMA_HEAD})")
    assert re.fullmatch(r"median [\d.]+ ms, max [\d.]+ ms over 5 round trips \(SELECT 1\)", check(out, "latency")[1])
    assert "FAIL" not in out and "warn" not in out
    assert out.rstrip().endswith("checks passed.")


def test_a_missing_sqlite_file_is_reported_as_created_on_first_start_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "budget.sqlite3"

    code, output = doctor(make_settings(f"sqlite:///{path}"))

    assert code == 0
    status, detail, fix = check(output, "file")
    assert status == "warn"
    assert "will be created on first start" in detail
    assert fix is not None and "DATABASE_URL" in fix
    assert "connection" not in output  # nothing was opened
    assert not (tmp_path / "not").exists()


def test_the_default_sqlite_file_not_yet_created_is_fine(tmp_path: Path) -> None:
    code, output = doctor(Settings(_env_file=None))  # type: ignore[call-arg]

    assert code == 0
    assert check(output, "file")[0] == "ok"
    assert "will be created on first start" in output
    assert not (tmp_path / "data").exists()


def test_a_database_migrated_by_a_newer_budget_mcp_fails_and_says_to_upgrade_budget_mcp(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path / "budget.sqlite3")
    set_revision(url, "9999_from_the_future")

    code, output = doctor(make_settings(url))

    assert code == 1
    status, detail, fix = check(output, "schema")
    assert status == "FAIL"
    assert "9999_from_the_future" in detail
    assert fix is not None and "upgrade budget-mcp" in fix
    assert "1 check failed" in output


def test_a_database_behind_the_code_warns_to_run_db_upgrade(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path / "budget.sqlite3")
    set_revision(url, "0002")

    code, output = doctor(make_settings(url))

    assert code == 0
    status, detail, fix = check(output, "schema")
    assert (status, detail) == ("warn", f"at migration 0002; 3 migrations to apply (newest: {SCHEMA_HEAD})")
    assert fix is not None and "budget-mcp db upgrade" in fix


def test_a_file_that_is_not_a_database_fails_with_a_plain_fix(tmp_path: Path) -> None:
    path = tmp_path / "budget.sqlite3"
    path.write_bytes(b"not a database, just some text that is long enough to be a header " * 4)

    code, output = doctor(make_settings(f"sqlite:///{path}"))

    assert code == 1
    status, detail, fix = check(output, "connection")
    assert status == "FAIL" and "not a database" in detail
    assert fix is not None and "DATABASE_URL" in fix
    assert "Traceback" not in output


# --- PostgreSQL ---------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_healthy_postgresql_shows_tls_version_direct_profile_schema_and_latency(postgres_url: str) -> None:
    code, output = doctor(make_settings(postgres_url))

    assert code == 0, output
    assert check(output, "profile")[1] == "postgresql, direct connection"
    assert check(output, "connection")[1].endswith(f"as app to database {make_url(postgres_url).database}")
    assert re.fullmatch(r"on, TLSv1\.[23] \(sslmode=require\)", check(output, "TLS")[1])
    assert check(output, "server")[1].startswith("PostgreSQL 15.")
    assert check(output, "pooling")[:2] == ("ok", "direct: connected straight to PostgreSQL")
    assert check(output, "schema")[:2] == ("ok", f"up to date (migration {SCHEMA_HEAD})")
    assert check(output, "latency")[0] == "ok"
    assert "direct URL" not in output  # the same URL: nothing more to check
    assert "FAIL" not in output and "warn" not in output


@pytest.mark.postgres
def test_a_password_given_in_the_query_string_is_masked_too(postgres: PostgresInstance, postgres_url: str) -> None:
    url = make_url(postgres_url)
    in_query = url.set(password=None).update_query_dict({"password": postgres.app_password})

    code, output = doctor(make_settings(in_query.render_as_string(hide_password=False)))

    assert code == 0, output
    assert "password=***" in setting(output, "DATABASE_URL")[0]


@pytest.mark.postgres
def test_an_unmigrated_postgresql_database_warns_to_run_db_upgrade(fresh_database: str) -> None:
    code, output = doctor(make_settings(fresh_database))

    assert code == 0
    status, detail, fix = check(output, "schema")
    assert status == "warn" and "no budget-mcp tables yet" in detail
    assert fix is not None and "budget-mcp db upgrade" in fix
    assert "No failures; 1 warning" in output


@pytest.mark.postgres
def test_a_wrong_password_fails_with_a_fix_about_the_password_and_never_shows_it(
    postgres: PostgresInstance, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = make_url(postgres.url()).set(password="Wr0ng-but-still/secret@")
    monkeypatch.setenv("DATABASE_URL", wrong.render_as_string(hide_password=False))

    assert main(["doctor"]) == 1

    out, err = capsys.readouterr()
    assert_no_password(out + err, wrong, postgres.url())
    status, detail, fix = check(out, "connection")
    assert status == "FAIL"
    assert "password authentication failed" in detail
    assert fix is not None and "password in DATABASE_URL" in fix
    assert "Traceback" not in out + err


@pytest.mark.postgres
def test_a_database_that_does_not_exist_fails_with_a_fix_naming_it(postgres: PostgresInstance) -> None:
    code, output = doctor(make_settings(postgres.url("no_such_budget")))

    assert code == 1
    status, detail, fix = check(output, "connection")
    assert status == "FAIL" and '"no_such_budget" does not exist' in detail
    assert fix is not None and "create it" in fix


def test_a_refused_port_fails_with_a_plain_fix() -> None:
    port = closed_port()
    url = f"postgresql://app:Pa55-w0rd-never-shown@127.0.0.1:{port}/budget"

    code, output = doctor(make_settings(url))

    assert code == 1
    status, detail, fix = check(output, "connection")
    assert status == "FAIL" and "Connection refused" in detail
    assert fix == (
        f"nothing is listening at 127.0.0.1:{port}: start the database server, or correct the host and port "
        "in DATABASE_URL"
    )
    assert "1 check failed" in output


@pytest.mark.postgres
def test_a_pooled_url_is_reported_as_pooled_with_its_direct_url_checked(
    pooler: PgBouncerInstance, postgres_url: str
) -> None:
    database = make_url(postgres_url).database
    settings = make_settings(pooler.url(database), pooled=True, database_url_unpooled=postgres_url)

    code, output = doctor(settings)

    assert code == 0, output
    assert check(output, "profile")[1].startswith("pooled")
    assert check(output, "migrations")[1].endswith(
        f":{make_url(postgres_url).port}/{database}?sslmode=require (the direct endpoint)"
    )
    assert check(output, "pooling")[:2] == ("ok", "pooled: a pooler relays the connection")
    assert check(output, "TLS")[0] == "ok"
    assert check(output, "schema")[0] == "ok"
    assert check(output, "direct URL")[:2] == ("ok", f"reaches the same database {database} over TLS")
    assert setting(output, "BUDGET_MCP_POOLED")[0] == "true"


@pytest.mark.postgres
def test_a_direct_url_that_reaches_another_database_fails(
    pooler: PgBouncerInstance, postgres_url: str, fresh_database: str
) -> None:
    settings = make_settings(
        pooler.url(make_url(postgres_url).database), pooled=True, database_url_unpooled=fresh_database
    )

    code, output = doctor(settings)

    assert code == 1
    status, detail, fix = check(output, "direct URL")
    assert status == "FAIL" and make_url(fresh_database).database in detail
    assert fix is not None and "DATABASE_URL_UNPOOLED" in fix
