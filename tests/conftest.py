"""Fixtures: a real database per test (a fresh SQLite file, or the throwaway PostgreSQL cleared after
each test) and an in-memory MCP client talking to the real server over the protocol."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from mcp import Client
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from budget_mcp.config import Settings
from budget_mcp.db import make_engine, upgrade_schema
from budget_mcp.server import build_server

from helpers import empty_tables
from pgserver import (
    NeonLab,
    PgBouncerInstance,
    PostgresInstance,
    PostgresUnavailable,
    running_neon_lab,
    running_pgbouncer,
    running_postgres,
)

BACKENDS = ["sqlite", "postgresql", "pooled"]
"""Every behaviour test runs on a fresh SQLite file, on the test PostgreSQL directly, and on the same
PostgreSQL through PgBouncer in transaction mode (as a Neon pooled endpoint)."""

# Pooled URLs handed out by the fixtures, and the direct URL of the same database (for migrations).
_DIRECT_URL_OF: dict[str, str] = {}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresInstance]:
    """The test session's own PostgreSQL 15 (TLS + SCRAM on loopback). Never skipped in CI."""
    if os.environ.get("BUDGET_MCP_TEST_SKIP_POSTGRES") == "1" and os.environ.get("CI") != "true":
        pytest.skip("BUDGET_MCP_TEST_SKIP_POSTGRES=1 (never honoured in CI)")
    try:
        with running_postgres() as instance:
            yield instance
    except PostgresUnavailable as error:
        pytest.fail(f"could not start the test PostgreSQL: {error}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresInstance) -> str:
    """A migrated PostgreSQL database shared by the tests; each test leaves it empty again."""
    url = postgres.create_database("budget_suite")
    engine = make_engine(Settings(database_url=url, _env_file=None).url)  # type: ignore[call-arg]
    try:
        upgrade_schema(engine)
    finally:
        engine.dispose()
    return url


def connect_as(request: pytest.FixtureRequest, backend: str, direct_url: str) -> str:
    """The URL a ``backend`` test connects with: ``direct_url`` itself, or for "pooled" the same database
    through the session's PgBouncer (settings made by make_settings then migrate over the direct URL)."""
    if backend != "pooled":
        return direct_url
    pooler: PgBouncerInstance = request.getfixturevalue("pooler")
    pooled = pooler.url(make_url(direct_url).database)
    _DIRECT_URL_OF[pooled] = direct_url
    return pooled


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """Each behaviour test runs three times: SQLite, PostgreSQL direct, PostgreSQL through PgBouncer."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'budget.sqlite3'}"
        return
    url = connect_as(request, request.param, request.getfixturevalue("postgres_url"))
    empty_tables(url)
    try:
        yield url
    finally:
        empty_tables(url)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "user": "alice",
        "default_currency": "USD",
        "timezone": "UTC",
        "log_level": "WARNING",
    }
    if database_url in _DIRECT_URL_OF:
        values.update(pooled=True, database_url_unpooled=_DIRECT_URL_OF[database_url])
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    """An MCP client connected in memory to a real server on the test database."""
    async with Client(build_server(settings)) as connected:
        yield connected


@pytest.fixture
def db(settings: Settings) -> Iterator[Engine]:
    """A separate connection to the same database, to check what the tools really stored."""
    engine = make_engine(settings.url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def neon_lab() -> Iterator[NeonLab]:
    """A Neon-like project on loopback: its own PostgreSQL 15 (TLS + SCRAM) with PgBouncer in
    transaction mode in front (``pooled_url`` / ``direct_url``).  Never skipped in CI.

    Shared by the session: tests that suspend it, restart its pooler or kill its backends must
    restore it, or better start their own with ``running_neon_lab()``."""
    if os.environ.get("BUDGET_MCP_TEST_SKIP_POSTGRES") == "1" and os.environ.get("CI") != "true":
        pytest.skip("BUDGET_MCP_TEST_SKIP_POSTGRES=1 (never honoured in CI)")
    try:
        with running_neon_lab() as lab:
            yield lab
    except PostgresUnavailable as error:
        pytest.fail(f"could not start the Neon lab (PostgreSQL + PgBouncer): {error}", pytrace=False)


@pytest.fixture(scope="session")
def pooler(postgres: PostgresInstance) -> Iterator[PgBouncerInstance]:
    """PgBouncer (transaction mode, TLS, SCRAM) in front of the session's ``postgres`` cluster:
    ``pooler.url(db)`` reaches any of its databases through the pooler."""
    try:
        with running_pgbouncer(postgres) as instance:
            yield instance
    except PostgresUnavailable as error:
        pytest.fail(f"could not start PgBouncer in front of the test PostgreSQL: {error}", pytrace=False)
