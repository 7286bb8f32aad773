"""Engine profiles and the transaction runner: how each kind of database is connected to, that no
connection carries session state, that migrations take a lock on the direct endpoint, and what a call
does when the database fails under it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from pydantic import ValidationError
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.exc import IntegrityError, InternalError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from budget_mcp.config import Settings
from budget_mcp.db import SCHEMA_HEAD, EngineOptions, engine_profile, make_engine, make_session_factory, upgrade_schema
from budget_mcp.errors import DatabaseUnavailable
from budget_mcp.models import Change, Expense, User
from budget_mcp.server import build_server
from budget_mcp.transactions import RetryPolicy, migrate, run_in_transaction

from conftest import make_settings
from helpers import LUNCH, empty_tables, ok, seed_categories
from pgserver import PostgresInstance

PASSWORD = "s3cret-Pa55word"
pytestmark = pytest.mark.anyio


def load(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# --- profiles -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "pooled", "profile"),
    [
        ("sqlite:////tmp/budget.sqlite3", None, "sqlite"),
        ("postgresql://a:b@ep-cool-123.eu-central-1.aws.neon.tech/db?sslmode=require", None, "postgresql"),
        ("postgresql://a:b@ep-cool-123-pooler.eu-central-1.aws.neon.tech/db?sslmode=require", None, "pooled"),
        ("postgresql://a:b@127.0.0.1:6432/db", True, "pooled"),
        ("postgresql://a:b@ep-cool-123-pooler.eu-central-1.aws.neon.tech/db?sslmode=require", False, "postgresql"),
    ],
)
def test_the_engine_profile_follows_the_url_unless_a_setting_says_otherwise(
    url: str, pooled: bool | None, profile: str
) -> None:
    settings = load(database_url=url, pooled=pooled)
    assert engine_profile(settings.url, EngineOptions.from_settings(settings)) == profile
    assert settings.is_pooled is (profile == "pooled")


def test_migrations_run_on_the_unpooled_url_when_one_is_given() -> None:
    settings = load(
        database_url="postgresql://a:b@ep-cool-123-pooler.eu-central-1.aws.neon.tech/db?sslmode=require",
        database_url_unpooled="postgresql://a:b@direct.example.com/db?sslmode=require",
    )
    assert settings.migration_url.host == "direct.example.com"


def test_migrations_on_a_neon_pooler_host_go_to_the_same_host_without_pooler() -> None:
    settings = load(database_url="postgresql://a:b@ep-cool-123-pooler.eu-central-1.aws.neon.tech/db?sslmode=require")
    assert settings.migration_url.host == "ep-cool-123.eu-central-1.aws.neon.tech"
    assert settings.migration_url.password == "b"


def test_migrations_on_a_direct_url_use_that_url() -> None:
    settings = load(database_url="postgresql://a:b@db.example.com/db?sslmode=require")
    assert settings.migration_url == settings.url


def test_a_pooled_engine_recycles_and_bounds_its_connections_without_pings_or_startup_options() -> None:
    settings = load(
        database_url="postgresql://a:b@ep-cool-123-pooler.eu-central-1.aws.neon.tech/db?sslmode=require",
        pool_size=7,
    )
    engine = make_engine(settings.url, EngineOptions.from_settings(settings))
    try:
        pool: Any = engine.pool
        assert pool.size() == 7
        assert pool._pre_ping is False  # a round trip per call; test_faults shows the retry covers dead ones
        assert 0 < pool._recycle < 300  # under Neon's five-minute idle suspend
        assert pool._timeout <= 10
        connect_args = engine.dialect.create_connect_args(engine.url)[1]
        assert "options" not in connect_args  # PgBouncer refuses the startup parameter
    finally:
        engine.dispose()


# --- TLS ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "query"),
    [
        ("db.example.com", ""),
        ("db.example.com", "?sslmode=disable"),
        ("db.example.com", "?sslmode=prefer"),
        ("db.example.com", "?sslmode=allow"),
        ("127.attacker.example", ""),  # a name that only looks like a loopback address
        ("10.0.0.5", ""),
    ],
)
def test_a_remote_postgresql_url_without_tls_is_refused_with_the_fix(host: str, query: str) -> None:
    with pytest.raises(ValidationError) as caught:
        load(database_url=f"postgresql://alex:{PASSWORD}@{host}/budget{query}")
    message = str(caught.value)
    assert "without TLS" in message and "sslmode=require" in message
    assert "BUDGET_MCP_ALLOW_INSECURE_DATABASE" in message
    assert PASSWORD not in message


def test_an_unpooled_url_without_tls_is_refused_too() -> None:
    with pytest.raises(ValidationError, match=r"DATABASE_URL_UNPOOLED points at direct\.example\.com without TLS"):
        load(
            database_url="postgresql://a:b@db.example.com/budget?sslmode=require",
            database_url_unpooled="postgresql://a:b@direct.example.com/budget",
        )


def test_plaintext_to_a_remote_host_is_allowed_when_the_user_says_so() -> None:
    settings = load(database_url="postgresql://a:b@db.internal/budget", allow_insecure_database=True)
    assert settings.url.host == "db.internal"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://a:b@localhost/budget",
        "postgresql://a:b@127.0.0.1:5432/budget",
        "postgresql://a:b@[::1]/budget",
        "postgresql://a:b@/budget?host=/var/run/postgresql",
        "postgresql://a:b@db.example.com/budget?sslmode=verify-full",
    ],
)
def test_loopback_unix_sockets_and_tls_urls_are_accepted(url: str) -> None:
    assert load(database_url=url).url.get_backend_name() == "postgresql"


def test_channel_binding_required_in_the_url_works_on_a_direct_connection(postgres_url: str, tmp_path: Path) -> None:
    settings = make_settings(postgres_url + "&channel_binding=require")
    engine = make_engine(settings.url, EngineOptions.from_settings(settings))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).scalar()
    finally:
        engine.dispose()


# --- no session state ---------------------------------------------------------------------------------


def test_the_statement_timeout_lasts_only_as_long_as_each_transaction(postgres_url: str) -> None:
    settings = make_settings(postgres_url, statement_timeout=1.5)
    engine = make_engine(settings.url, EngineOptions.from_settings(settings))
    try:
        with engine.connect() as connection:
            with connection.begin():
                assert connection.execute(text("SHOW statement_timeout")).scalar() == "1500ms"
            # The same server connection, outside any transaction of ours: nothing was left behind.
            raw: Any = connection.connection.dbapi_connection
            cursor = raw.cursor()
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone()[0] == "0"
            raw.rollback()
    finally:
        engine.dispose()


@pytest.fixture
def empty_postgres(postgres_url: str) -> Iterator[str]:
    empty_tables(postgres_url)
    try:
        yield postgres_url
    finally:
        empty_tables(postgres_url)


def test_each_transaction_begins_in_the_same_query_as_its_first_statement(postgres_url: str) -> None:
    settings = make_settings(postgres_url, statement_timeout=1.5)
    engine = make_engine(settings.url, EngineOptions.from_settings(settings))
    sent: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        sent.append(sql)

    try:
        for _ in range(2):
            with engine.begin() as connection:
                assert connection.execute(text("SELECT current_setting('statement_timeout')")).scalar() == "1500ms"
                assert connection.execute(text("SELECT current_setting('transaction_isolation')")).scalar() == (
                    "read committed"
                )
    finally:
        engine.dispose()
    # No round trip for BEGIN or SET LOCAL: they and the first statement are one query.
    first = "BEGIN; SET LOCAL statement_timeout = 1500; SELECT current_setting('statement_timeout')"
    assert sent == [first, "SELECT current_setting('transaction_isolation')"] * 2


def test_a_read_only_transaction_reads_one_snapshot_and_cannot_write(empty_postgres: str) -> None:
    engine = make_engine(make_settings(empty_postgres).url)
    factory = make_session_factory(engine, read_only=True)
    try:
        with factory.begin() as reading:
            before = reading.scalar(select(func.count()).select_from(User))
            with engine.begin() as writing:  # another call commits a change meanwhile
                writing.execute(User.__table__.insert(), {"name": "meanwhile"})
            assert reading.scalar(select(func.count()).select_from(User)) == before  # a page and its totals agree
            assert reading.scalar(text("SELECT current_setting('transaction_isolation')")) == "repeatable read"
        with pytest.raises(InternalError, match="read-only transaction"), factory.begin() as reading:
            reading.execute(User.__table__.insert(), {"name": "no"})
    finally:
        engine.dispose()


def test_a_connection_goes_back_to_the_pool_with_no_transaction_open_whatever_ended_the_last(
    empty_postgres: str,
) -> None:
    engine = make_engine(make_settings(empty_postgres).url, EngineOptions(pool_size=1))
    observer = create_engine(make_settings(empty_postgres).url, poolclass=NullPool)

    def server_state(pid: int) -> str:
        with observer.connect() as connection:
            state = "SELECT state FROM pg_stat_activity WHERE pid = :pid"
            return str(connection.execute(text(state), {"pid": pid}).scalar())

    try:
        with engine.begin() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as connection:  # closed without a commit
            connection.execute(User.__table__.insert(), {"name": "unsaid"})
        assert server_state(pid) == "idle"
        with pytest.raises(ZeroDivisionError), engine.begin() as connection:  # failed
            connection.execute(User.__table__.insert(), {"name": "failed"})
            raise ZeroDivisionError
        assert server_state(pid) == "idle"
        with pytest.raises(IntegrityError), engine.begin() as connection:  # a statement failed
            connection.execute(User.__table__.insert(), [{"name": "twice"}, {"name": "twice"}])
        assert server_state(pid) == "idle"
        with engine.begin() as connection:
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid  # the same connection
            assert connection.execute(select(User.name)).all() == []
    finally:
        engine.dispose()
        observer.dispose()


def test_an_executemany_that_opens_a_transaction_runs_in_it(
    empty_postgres: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sqlalchemy.dialects.postgresql")  # where SQLAlchemy puts server notices
    engine = make_engine(make_settings(empty_postgres).url)
    rows = [{"name": f"user {i}"} for i in range(3)]
    try:
        with pytest.raises(ZeroDivisionError), engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO users (name, created_at) VALUES (%(name)s, now())", rows)
            raise ZeroDivisionError  # rolled back: all three or none
        assert "already a transaction in progress" not in caplog.text  # one BEGIN, not one per row
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(User)).scalar() == 0
    finally:
        engine.dispose()


def test_a_statement_over_the_timeout_fails_at_once_and_is_not_retried(postgres_url: str) -> None:
    settings = make_settings(postgres_url, statement_timeout=0.05)
    engine = make_engine(settings.url, EngineOptions.from_settings(settings))
    attempts = []

    def slow(session: Session) -> None:
        attempts.append(1)
        session.execute(text("SELECT pg_sleep(1)"))

    try:
        with pytest.raises(OperationalError, match="statement timeout"):
            run_in_transaction(make_session_factory(engine), slow, policy=RetryPolicy(wait=30))
    finally:
        engine.dispose()
    assert len(attempts) == 1


# --- migrations ---------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    postgres: PostgresInstance = request.getfixturevalue("postgres")
    name = f"fresh_{tmp_path.name[-20:].lower().replace('-', '_')}"
    try:
        yield postgres.create_database(name)
    finally:
        postgres.drop_database(name)


def test_two_servers_migrating_one_new_database_at_once_both_start_and_migrate_once(fresh_url: str) -> None:
    """What two servers starting together run (``migrate``): one migrates, the other waits for its lock
    (SQLite: may find the file busy while it switches to WAL, and retries) and finds the schema current."""
    settings = make_settings(fresh_url)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            migrate(settings)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    engine = make_engine(settings.url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [SCHEMA_HEAD]
    finally:
        engine.dispose()


# --- the transaction runner ---------------------------------------------------------------------------


async def test_a_call_after_every_backend_was_terminated_succeeds(
    postgres: PostgresInstance, postgres_url: str
) -> None:
    empty = make_settings(postgres_url)
    async with Client(build_server(empty)) as client:
        await seed_categories(client, "Food")
        await ok(client, "create_expense", **LUNCH)
        postgres.terminate_backends()  # like Neon suspending the compute between two calls
        found = await ok(client, "query_expenses_by_category", category="Food")
        assert found["count"] == 1
        await ok(client, "create_expense", **{**LUNCH, "description": "Dinner"})
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(Expense)).scalar() == 2
    finally:
        engine.dispose()


def test_a_pooled_connection_that_died_while_idle_is_replaced_at_once_and_the_call_succeeds(
    postgres: PostgresInstance, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(postgres_url)
    migrate(settings)
    engine = make_engine(settings.url)  # no ping before use: the dead connection is met by the call itself
    factory = make_session_factory(engine)
    try:
        first = run_in_transaction(factory, _user)
        postgres.terminate_backends()  # the pooled connection is dead now
        with caplog.at_level(logging.WARNING, logger="budget_mcp.transactions"):
            assert run_in_transaction(factory, _user) == first
    finally:
        engine.dispose()
    retries = [record.getMessage() for record in caplog.records if "retry" in record.getMessage()]
    assert len(retries) == 1 and retries[0].endswith("retry 1 in 0.00 s")  # no backoff for a dead connection


def test_a_database_that_cannot_be_reached_gives_a_clear_error_after_a_bounded_wait(tmp_path: Path) -> None:
    with socket_closed_port() as port:
        settings = make_settings(f"postgresql://app:pw@127.0.0.1:{port}/budget?connect_timeout=2")
        engine = make_engine(settings.url, EngineOptions.from_settings(settings))
        attempts = []

        def read(session: Session) -> int:
            attempts.append(1)
            return session.execute(text("SELECT 1")).scalar_one()

        try:
            with pytest.raises(DatabaseUnavailable, match=r"unavailable right now.*nothing was changed, try again"):
                run_in_transaction(make_session_factory(engine), read, policy=RetryPolicy(wait=0.3, first_delay=0.01))
        finally:
            engine.dispose()
    assert len(attempts) >= 2  # it retried before giving up


def test_a_wrong_password_fails_at_once_instead_of_waiting(postgres: PostgresInstance) -> None:
    url = postgres.url().replace(f":{postgres.app_password}@", ":not-the-password@")
    settings = make_settings(url)
    engine = make_engine(settings.url, EngineOptions.from_settings(settings))
    attempts = []

    def read(session: Session) -> int:
        attempts.append(1)
        return session.execute(text("SELECT 1")).scalar_one()

    try:
        with pytest.raises(OperationalError, match="password authentication failed"):
            run_in_transaction(make_session_factory(engine), read, policy=RetryPolicy(wait=30))
    finally:
        engine.dispose()
    assert len(attempts) == 1


def test_a_dry_run_is_rolled_back_and_leaves_no_change(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'b.sqlite3'}")
    engine = make_engine(settings.url)
    upgrade_schema(engine)
    factory = make_session_factory(engine)

    def write(session: Session) -> int:
        session.add(Change(user_id=_user(session), tool="t", summary="s"))
        session.flush()
        return 1

    try:
        assert run_in_transaction(factory, write, dry_run=True) == 1
        with factory.begin() as session:
            assert session.scalar(select(func.count()).select_from(Change)) == 0
    finally:
        engine.dispose()


def _user(session: Session) -> int:
    from budget_mcp.repository import ensure_user

    return ensure_user(session, "alice")


class socket_closed_port:
    """A local TCP port nobody listens on (bound, never listening, so nobody else takes it meanwhile)."""

    def __enter__(self) -> int:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        return int(self._socket.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._socket.close()


def test_on_sqlite_a_long_read_does_not_hold_up_a_writer_in_another_process(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'b.sqlite3'}")
    migrate(settings)
    engine = make_engine(settings.url)
    writer = create_engine(settings.url, connect_args={"timeout": 0.1})  # another process: gives up quickly
    try:
        with make_session_factory(engine, read_only=True).begin() as reading:
            assert reading.scalar(select(func.count()).select_from(Expense)) == 0  # the read holds its snapshot
            with writer.begin() as connection:  # BEGIN IMMEDIATE in the reader would make this "locked"
                connection.execute(text("INSERT INTO users (name, created_at) VALUES ('bob', '2026-01-01')"))
            assert reading.scalar(text("SELECT count(*) FROM users")) == 0  # still its own snapshot
    finally:
        writer.dispose()
        engine.dispose()


def test_on_sqlite_a_write_transaction_takes_the_write_lock_up_front(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'b.sqlite3'}")
    migrate(settings)
    engine = make_engine(settings.url)
    other = create_engine(settings.url, connect_args={"timeout": 0.1})
    try:
        with make_session_factory(engine).begin() as writing:
            writing.execute(text("SELECT 1"))
            with pytest.raises(OperationalError, match="database is locked"), other.begin() as connection:
                connection.execute(text("INSERT INTO users (name, created_at) VALUES ('bob', '2026-01-01')"))
    finally:
        other.dispose()
        engine.dispose()


def test_on_sqlite_writes_made_at_once_in_one_process_take_turns_instead_of_meeting_the_busy_lock(
    tmp_path: Path,
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'b.sqlite3'}")
    migrate(settings)
    engine = make_engine(settings.url)

    @event.listens_for(engine, "connect")
    def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=0")  # meeting SQLite's lock would fail at once

    factory = make_session_factory(engine)
    threads, writes = 8, 25
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def write(session: Session) -> None:
        session.add(Change(user_id=_user(session), tool="t", summary="s"))

    def writer() -> None:
        start.wait(timeout=30)
        try:
            for _ in range(writes):
                run_in_transaction(factory, write, policy=RetryPolicy(wait=0))  # no retry: a lock error fails
        except BaseException as error:  # reported below
            failures.append(error)

    workers = [threading.Thread(target=writer) for _ in range(threads)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert failures == []
        with factory.begin() as session:
            assert session.scalar(select(func.count()).select_from(Change)) == threads * writes
    finally:
        engine.dispose()


def test_on_postgresql_two_writes_of_one_process_run_at_the_same_time(postgres_url: str) -> None:
    settings = make_settings(postgres_url)
    migrate(settings)
    engine = make_engine(settings.url)
    factory = make_session_factory(engine)
    user_id = run_in_transaction(factory, _user)  # committed: neither write waits to create it
    first_open, second_done = threading.Event(), threading.Event()

    def first(session: Session) -> None:
        session.add(Change(user_id=user_id, tool="first", summary="s"))
        session.flush()
        first_open.set()
        assert second_done.wait(timeout=30), "the second write waited for the first one to end"

    def second(session: Session) -> None:
        session.add(Change(user_id=user_id, tool="second", summary="s"))

    holder = threading.Thread(target=run_in_transaction, args=(factory, first))
    try:
        holder.start()
        assert first_open.wait(timeout=30)
        run_in_transaction(factory, second)
        second_done.set()
        holder.join(timeout=30)
        with factory.begin() as session:
            tools = session.scalars(select(Change.tool).where(Change.tool.in_(["first", "second"]))).all()
            assert sorted(tools) == ["first", "second"]
    finally:
        second_done.set()
        engine.dispose()
