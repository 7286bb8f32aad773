"""``budget-mcp doctor``: check the settings and the database, and say in plain words how to fix what is wrong.

Everything printed passes through one masking step, so no password reaches the terminal, whoever wrote the
text (we or the driver). The doctor only looks: it never creates a missing SQLite file or directory, never
migrates, and on PostgreSQL runs only reads inside transactions that are rolled back, so it leaves no session
state behind on a pooled connection.
"""

from __future__ import annotations

import os
import re
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any, Literal, TextIO, TypeVar
from urllib.parse import quote, quote_plus

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from pydantic import SecretStr
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from . import __version__
from .config import Settings, env_var, is_loopback, redact_url
from .db import MIGRATIONS_DIR, EngineOptions, Profile, engine_profile, make_engine, make_migration_engine
from .troubleshoot import connection_fix, driver_message

Status = Literal["ok", "warn", "FAIL"]
T = TypeVar("T")

LATENCY_ROUND_TRIPS = 5
SLOW_ROUND_TRIP_MS = 100.0  # several round trips per tool call: beyond this, calls feel sluggish
UPGRADE = "run `budget-mcp db upgrade` (the server also does it when it starts)"


def run_doctor(settings: Settings, sources: Mapping[str, str], out: TextIO) -> int:
    """Print the settings in effect and the result of each check to ``out``; 1 if anything needs fixing."""
    report = _Report(out, _secrets(settings))
    report.line(f"budget-mcp {__version__} doctor")
    _report_settings(settings, sources, report)
    report.line()
    report.line("Checks")
    options = EngineOptions.from_settings(settings)
    profile = engine_profile(settings.url, options)
    _check_profile(settings, profile, report)
    if profile == "sqlite":
        _check_sqlite(settings, report)
    else:
        _check_postgresql(settings, options, profile, report)
    report.summary()
    return 1 if report.failures else 0


# --- output -------------------------------------------------------------------------------------------


@dataclass
class _Report:
    """Writes the report line by line (so a slow check shows where it is), masking every secret."""

    out: TextIO
    secrets: list[str]
    failures: int = 0
    warnings: int = 0
    checks: int = 0

    def line(self, text: str = "") -> None:
        self.out.write(_mask(text, self.secrets) + "\n")
        self.out.flush()

    def check(self, status: Status, name: str, detail: str, fix: str | None = None) -> None:
        self.checks += 1
        self.failures += status == "FAIL"
        self.warnings += status == "warn"
        self.line(f"  {status:<5} {name:<12} {detail}")
        if fix and status != "ok":
            self.line(f"  {'':<5} {'':<12} fix: {fix}")

    def summary(self) -> None:
        self.line()
        if self.failures:
            warned = f" and {_plural(self.warnings, 'warning')}" if self.warnings else ""
            self.line(f"{_plural(self.failures, 'check')} failed{warned}: see the fix lines above.")
        elif self.warnings:
            self.line(f"No failures; {_plural(self.warnings, 'warning')}: see the fix lines above.")
        else:
            self.line(f"All {self.checks} checks passed.")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _secrets(settings: Settings) -> list[str]:
    """The password of each database URL, also given as a query parameter, in every spelling it may take."""
    found: set[str] = set()
    for url in (settings.url, settings.migration_url):
        found.add(url.password or "")
        for key, value in url.query.items():
            if "password" in key.lower():
                found.update([value] if isinstance(value, str) else value)
    spellings = {form for secret in found if secret for form in (secret, quote(secret, safe=""), quote_plus(secret))}
    return sorted(spellings, key=len, reverse=True)  # longest first: a quoted form may contain the plain one


_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s/]+@")
_PASSWORD_PARAMETER = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def _mask(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _PASSWORD_PARAMETER.sub(r"\1***", text)


# --- settings -----------------------------------------------------------------------------------------


def _report_settings(settings: Settings, sources: Mapping[str, str], report: _Report) -> None:
    rows = [(env_var(name), _setting_value(settings, name)) for name in Settings.model_fields]
    name_width = max(len(name) for name, _ in rows)
    value_width = min(max(len(value) for _, value in rows), 60)
    report.line()
    report.line("Settings in effect (secrets masked), and where each came from")
    for name, value in rows:
        report.line(f"  {name:<{name_width}}  {value:<{value_width}}  {sources.get(name, 'default')}")


def _setting_value(settings: Settings, name: str) -> str:
    value = getattr(settings, name)
    if name == "database_url":
        return redact_url(settings.url)  # the URL in effect, also when it is the embedded default
    if name == "database_url_unpooled" and value is not None:
        return redact_url(settings.migration_url)
    if isinstance(value, SecretStr):  # a secret setting added later: never shown
        return "***"
    if name == "pooled" and value is None:
        return f"auto ({'pooled' if settings.is_pooled else 'direct'})"
    if name == "timezone" and value is None:
        return f"the machine's ({settings.tz()})"
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _check_profile(settings: Settings, profile: Profile, report: _Report) -> None:
    described = {
        "sqlite": "sqlite: an embedded file, no server",
        "postgresql": "postgresql, direct connection",
        "pooled": "pooled: PostgreSQL through a transaction pooler (PgBouncer)",
    }
    report.check("ok", "profile", described[profile])
    if settings.migration_url != settings.url:
        report.check("ok", "migrations", f"run over {redact_url(settings.migration_url)} (the direct endpoint)")
    elif profile == "pooled":
        report.check(
            "warn",
            "migrations",
            "run through the pooler: no direct URL is known for this host",
            "set DATABASE_URL_UNPOOLED to the direct (not pooled) URL of the same database; schema changes "
            "belong on the direct endpoint",
        )


# --- SQLite -------------------------------------------------------------------------------------------


def _check_sqlite(settings: Settings, report: _Report) -> None:
    assert settings.url.database, "config.normalize_database_url() guarantees a file path"
    path = Path(settings.url.database)
    if path.is_dir():
        report.check("FAIL", "file", f"{path} is a directory", "point DATABASE_URL at a file inside it")
        return
    if not path.exists():
        _check_new_sqlite_file(settings, path, report)
        return
    if not os.access(path, os.R_OK | os.W_OK):
        report.check(
            "FAIL",
            "file",
            f"{path} cannot be read and written by this user",
            "fix its permissions, or point DATABASE_URL at another file",
        )
        return
    if not os.access(path.parent, os.W_OK | os.X_OK):
        report.check(
            "FAIL",
            "file",
            f"{path.parent} is not writable, and SQLite keeps its journal next to the database",
            "make the directory writable by this user, or move the file",
        )
        return
    report.check("ok", "file", f"{path} ({_size(path.stat().st_size)})")
    engine = make_engine(settings.url)  # the directory exists, so this creates nothing
    try:
        _check_database(engine, report, "DATABASE_URL")
    finally:
        engine.dispose()


def _check_new_sqlite_file(settings: Settings, path: Path, report: _Report) -> None:
    existing = next(parent for parent in path.parents if parent.exists())
    if not existing.is_dir():
        report.check(
            "FAIL", "file", f"{path} cannot be created: {existing} is a file", "point DATABASE_URL at another path"
        )
        return
    if not os.access(existing, os.W_OK | os.X_OK):
        report.check(
            "FAIL",
            "file",
            f"{path} does not exist, and {existing} is not writable, so it cannot be created",
            "make that directory writable by this user, or set DATABASE_URL=sqlite:////a/writable/path/budget.sqlite3",
        )
        return
    created = "it" if existing == path.parent else f"it and the directory {path.parent}"
    detail = f"{path} does not exist yet: {created} will be created on first start"
    if settings.database_url is None:  # the usual first run
        report.check("ok", "file", detail)
    else:
        report.check(
            "warn",
            "file",
            detail,
            "nothing to do for a new budget; if you already keep one, point DATABASE_URL at its file",
        )


def _size(size: int) -> str:
    scaled = float(size)
    for unit in ("bytes", "KB", "MB"):
        if scaled < 1024:
            return f"{size} bytes" if unit == "bytes" else f"{scaled:.1f} {unit}"
        scaled /= 1024
    return f"{scaled:.1f} GB"


# --- PostgreSQL ---------------------------------------------------------------------------------------


def _check_postgresql(settings: Settings, options: EngineOptions, profile: Profile, report: _Report) -> None:
    engine = make_engine(settings.url, options)
    try:
        reached = _check_database(engine, report, "DATABASE_URL", profile)
    finally:
        engine.dispose()
    if settings.migration_url != settings.url:
        _check_migration_endpoint(settings, reached, report)


@dataclass(frozen=True)
class _Reached:
    """What one connection learnt about the database it reached."""

    database: str
    revisions: tuple[str, ...]


def _check_database(engine: Engine, report: _Report, setting: str, profile: Profile = "sqlite") -> _Reached | None:
    """Connect once and run every check that needs a connection. None when it could not connect."""
    url = engine.url
    postgresql = url.get_backend_name() == "postgresql"
    started = perf_counter()
    try:
        with engine.connect() as connection:
            if postgresql:
                user, database = connection.exec_driver_sql("SELECT current_user, current_database()").one()
                connection.rollback()
                whom = f" as {user} to database {database}"
            else:
                database, whom = str(url.database), ""
            report.check("ok", "connection", f"connected in {_ms(perf_counter() - started)} ms{whom}")
            if postgresql:
                _check_tls(connection, url, report, setting)
            _step(connection, report, "server", _check_server(report))
            if postgresql:
                _step(connection, report, "pooling", _check_pooling(report, profile, url))
            revisions = _step(connection, report, "schema", _check_schema(report))
            _step(connection, report, "latency", _check_latency(report))
            return _Reached(database, revisions or ())
    except SQLAlchemyError as error:
        report.check("FAIL", "connection", driver_message(error), _connection_fix(error, url, setting))
        return None


def _step(connection: Connection, report: _Report, name: str, check: Callable[[Connection], T]) -> T | None:
    """Run one check; a database error fails that check (not the whole report). Whatever it ran is rolled
    back, so it leaves nothing behind, not even on a pooled connection."""
    try:
        return check(connection)
    except SQLAlchemyError as error:
        report.check(
            "FAIL",
            name,
            driver_message(error),
            "the database refused a plain read: check that the user in DATABASE_URL owns the database or may read it",
        )
        return None
    finally:
        connection.rollback()


def _check_tls(connection: Connection, url: URL, report: _Report, setting: str) -> None:
    info = _driver_connection(connection).info
    sslmode = url.query.get("sslmode") or "prefer (libpq's default)"
    if info.ssl_in_use:
        report.check("ok", "TLS", f"on, {info.ssl_attribute('protocol')} (sslmode={sslmode})")
    elif is_loopback(url):
        report.check("ok", "TLS", "off: the server is on this machine, so nothing crosses the network")
    else:
        report.check(
            "warn",
            "TLS",
            "off: your password and data cross the network in the clear",
            f"add ?sslmode=require (or verify-full) to {setting}",
        )


def _check_server(report: _Report) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        if connection.dialect.name == "sqlite":
            version = connection.exec_driver_sql("SELECT sqlite_version()").scalar_one()
            report.check("ok", "server", f"SQLite {version}")
            return
        version = connection.exec_driver_sql("SHOW server_version").scalar_one()
        # db.unicode_lower folds case with ICU's root collation; without ICU every search fails.
        icu = connection.exec_driver_sql("SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'").first()
        if icu is None:
            report.check(
                "FAIL",
                "server",
                f"PostgreSQL {version}, built without ICU collations",
                "searches need ICU; use a PostgreSQL built with ICU (Neon's and most distributions' are)",
            )
        else:
            report.check("ok", "server", f"PostgreSQL {version}")

    return run


def _check_pooling(report: _Report, profile: Profile, url: URL) -> Callable[[Connection], None]:
    """A pooler hands out its own process id at connect time, and the statements then run in the server
    process it lends: the two differ. Nothing is set, so nothing leaks to the pooler's other clients."""

    def run(connection: Connection) -> None:
        server_pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        relayed = _driver_connection(connection).info.backend_pid != server_pid
        if profile == "pooled":
            seen = (
                "a pooler relays the connection" if relayed else "no pooler seen, but pooled settings work direct too"
            )
            report.check("ok", "pooling", f"pooled: {seen}")
        elif not relayed:
            report.check("ok", "pooling", "direct: connected straight to PostgreSQL")
        elif (url.host or "").endswith(".neon.tech"):
            report.check("ok", "pooling", "direct, through Neon's proxy")
        else:
            report.check(
                "warn",
                "pooling",
                "direct by the settings, but a proxy or pooler relays the connection",
                "if it is a transaction pooler such as PgBouncer, set BUDGET_MCP_POOLED=true and "
                "DATABASE_URL_UNPOOLED to the direct URL, so schema changes bypass it",
            )

    return run


def _driver_connection(connection: Connection) -> Any:
    """psycopg2's own connection object (its ``info`` tells TLS and process ids)."""
    return connection.connection.dbapi_connection


def _check_schema(report: _Report) -> Callable[[Connection], tuple[str, ...]]:
    def run(connection: Connection) -> tuple[str, ...]:
        current = tuple(MigrationContext.configure(connection).get_current_heads())
        scripts = ScriptDirectory(str(MIGRATIONS_DIR))
        heads = tuple(scripts.get_heads())
        head = ", ".join(heads)
        if not current:
            report.check("warn", "schema", f"no budget-mcp tables yet (the newest migration is {head})", UPGRADE)
            return current
        known = [revision for revision in current if _is_known(scripts, revision)]
        if len(known) < len(current):
            unknown = ", ".join(revision for revision in current if revision not in known)
            report.check(
                "FAIL",
                "schema",
                f"the database is at migration {unknown}, which budget-mcp {__version__} does not know: a newer "
                "budget-mcp has upgraded it",
                "upgrade budget-mcp (e.g. `pip install -U budget-mcp` or `uv tool upgrade budget-mcp`); "
                "do not use this version with that database",
            )
        elif set(current) == set(heads):
            report.check("ok", "schema", f"up to date (migration {head})")
        else:
            pending = sum(1 for _ in scripts.iterate_revisions(heads, current))
            report.check(
                "warn",
                "schema",
                f"at migration {', '.join(current)}; {_plural(pending, 'migration')} to apply (newest: {head})",
                UPGRADE,
            )
        return current

    return run


def _is_known(scripts: ScriptDirectory, revision: str) -> bool:
    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


def _check_latency(report: _Report) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        connection.exec_driver_sql("SELECT 1")  # begins the transaction, so each timing is one round trip
        timings = []
        for _ in range(LATENCY_ROUND_TRIPS):
            started = perf_counter()
            connection.exec_driver_sql("SELECT 1").scalar_one()
            timings.append(perf_counter() - started)
        median, worst = statistics.median(timings), max(timings)
        detail = f"median {_ms(median)} ms, max {_ms(worst)} ms over {LATENCY_ROUND_TRIPS} round trips (SELECT 1)"
        if median * 1000 > SLOW_ROUND_TRIP_MS:
            report.check(
                "warn",
                "latency",
                detail,
                "the database is far from this machine and every tool call makes several round trips; "
                "run budget-mcp closer to it, or move the database (e.g. a Neon region near you)",
            )
        else:
            report.check("ok", "latency", detail)

    return run


def _ms(seconds: float) -> str:
    milliseconds = seconds * 1000
    return f"{milliseconds:.0f}" if milliseconds >= 10 else f"{milliseconds:.2g}"


def _check_migration_endpoint(settings: Settings, app: _Reached | None, report: _Report) -> None:
    """Migrations run over the direct URL: it must reach the same database the server works on."""
    url, setting = settings.migration_url, "DATABASE_URL_UNPOOLED"
    engine = make_migration_engine(url)
    try:
        with engine.connect() as connection:
            database = connection.exec_driver_sql("SELECT current_database()").scalar_one()
            revisions = tuple(MigrationContext.configure(connection).get_current_heads())
            tls = bool(_driver_connection(connection).info.ssl_in_use)
            connection.rollback()
    except SQLAlchemyError as error:
        fix = _connection_fix(error, url, setting)
        if settings.database_url_unpooled is None:
            fix += f" ({setting} is not set, so it is DATABASE_URL's host without -pooler; set it if that is wrong)"
        report.check("FAIL", "direct URL", driver_message(error), fix)
        return
    finally:
        engine.dispose()
    if app is not None and (database, revisions) != (app.database, app.revisions):
        report.check(
            "FAIL",
            "direct URL",
            f"reaches database {database} at migration {', '.join(revisions) or 'none'}, but DATABASE_URL reaches "
            f"{app.database} at {', '.join(app.revisions) or 'none'}",
            f"point {setting} at the same database as DATABASE_URL (its direct, not pooled, endpoint)",
        )
    elif not tls and not is_loopback(url):
        report.check("warn", "direct URL", "reachable, without TLS", f"add ?sslmode=require to {setting}")
    else:
        same = "the same database" if app is not None else "database"
        report.check("ok", "direct URL", f"reaches {same} {database}{' over TLS' if tls else ''}")


# --- what went wrong, in plain words ------------------------------------------------------------------


def _connection_fix(error: SQLAlchemyError, url: URL, setting: str) -> str:
    return connection_fix(
        driver_message(error), setting=setting, address=f"{url.host or 'localhost'}:{url.port or 5432}"
    )
