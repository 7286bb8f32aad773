"""Database plumbing: the declarative base, engines per database kind, sessions and schema upgrades.

This is the one module that knows how SQLite and PostgreSQL differ at the connection level.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from sqlalchemy import DateTime, Engine, MetaData, String, Table, create_engine, event, inspect
from sqlalchemy.engine import URL, Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from . import __version__
from .config import Settings, is_neon_pooler_host, max_connections
from .errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The newest migration (tests keep it equal to Alembic's head): a server whose database is already there
# starts without importing Alembic or reading the migration scripts.
SCHEMA_HEAD = "0005"
# An execution option: the transaction only reads (on SQLite a plain BEGIN instead of BEGIN IMMEDIATE).
READ_ONLY = "budget_mcp_read_only"
# ``Session.info`` key: a lock that write transactions of one session factory take in turn (SQLite only).
WRITE_LOCK = "budget_mcp_write_lock"
# How long an SQLite writer waits for the write lock before "database is locked", in seconds.
SQLITE_BUSY_TIMEOUT = 15.0

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current instant, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass a timezone-aware value")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements where the ORM's per-row bookkeeping would cost more than the SQL."""
    table = model.__table__
    assert isinstance(table, Table), model
    return table


Profile = Literal["sqlite", "postgresql", "pooled"]

# Any constant would do; it names the lock that lets one server at a time migrate a database.
MIGRATION_LOCK_ID = 0x62756467  # "budg"


@dataclass(frozen=True)
class EngineOptions:
    """How to connect, beyond the URL. ``pooled``: the URL goes through a transaction pooler (PgBouncer),
    so no connection may carry session state; ``None`` decides from the host (Neon's ``-pooler``)."""

    pooled: bool | None = None
    pool_size: int = 5
    statement_timeout: float = 30.0
    connect_timeout: int = 10

    @property
    def max_connections(self) -> int:
        """The most connections one engine opens: the pool plus as many again under load."""
        return max_connections(self.pool_size)

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions:
        return cls(
            pooled=settings.is_pooled,
            pool_size=settings.pool_size,
            statement_timeout=settings.statement_timeout,
        )


def engine_profile(url: URL, options: EngineOptions | None = None) -> Profile:
    """Which engine settings ``url`` gets: an embedded file, a direct PostgreSQL, or a pooled endpoint."""
    if url.get_backend_name() == "sqlite":
        return "sqlite"
    pooled = options.pooled if options is not None and options.pooled is not None else None
    if pooled is None:
        pooled = is_neon_pooler_host(url.host)
    return "pooled" if pooled else "postgresql"


def make_engine(url: URL, options: EngineOptions | None = None) -> Engine:
    """An engine with the pool and connection settings that suit the kind of database ``url`` names.

    PostgreSQL, direct or pooled, gets the same discipline, so code tested on one runs on the other:
    a small QueuePool recycled under Neon's five-minute idle suspend and not pinged before each use (a
    dead connection is caught by the call's retry instead), short connect and pool timeouts, TCP keepalives
    and an ``application_name``; no ``options`` startup parameter (PgBouncer refuses it) and no session
    state at all: the statement timeout is ``SET LOCAL`` inside each transaction, sent (with ``BEGIN``) in the
    same query as the transaction's first statement.
    """
    options = options or EngineOptions()
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    profile = engine_profile(url, options)
    engine = create_engine(
        url,
        pool_size=options.pool_size,
        max_overflow=options.max_connections - options.pool_size,
        pool_timeout=10,
        # No ping before each use: it costs a round trip on every call (tens of ms to a remote Neon). A connection
        # that died while idle fails at its first statement, before anything was written, and the pool then
        # replaces every connection older than the failure: transactions.run_in_transaction runs the call
        # again on a fresh one, as it must anyway for a connection that dies mid-transaction.
        pool_pre_ping=False,
        pool_recycle=240,  # under Neon's five-minute idle suspend
        pool_use_lifo=True,  # idle connections beyond what the load needs age out instead of being kept warm
        connect_args={**_postgresql_connect_args(options), "connection_factory": _own_transactions()},
    )
    _begin_with_first_statement(engine, max(1, round(options.statement_timeout * 1000)))
    logger.debug("engine profile %s, pool size %d", profile, options.pool_size)
    return engine


def _begin_with_first_statement(engine: Engine, timeout_ms: int) -> None:
    """Open each transaction with its first statement, in the same query: ``BEGIN`` and ``SET LOCAL
    statement_timeout`` (which ends with the transaction, so it cannot leak to another client of a pooled
    connection) cost no round trip of their own (each is tens of ms to a remote Neon). Read-only
    transactions read one snapshot (REPEATABLE READ), so a page and the totals beside it always agree.
    :func:`_own_transactions` ends them."""
    from psycopg2.extensions import TRANSACTION_STATUS_IDLE  # type: ignore[import-untyped]

    timeout = f"SET LOCAL statement_timeout = {timeout_ms}"
    writing, reading = f"BEGIN; {timeout}; ", f"BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; {timeout}; "

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _begin(
        connection: Connection, cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> tuple[str, Any]:
        if cursor.connection.info.transaction_status != TRANSACTION_STATUS_IDLE or not connection.in_transaction():
            return statement, parameters
        begin = reading if connection.get_execution_options().get(READ_ONLY) else writing
        if many:  # an executemany repeats its SQL for each set of parameters: BEGIN goes first, alone
            with cursor.connection.cursor() as plain:
                plain.execute(begin)
            return statement, parameters
        return begin + statement, parameters  # one simple query; the cursor holds the result of the last part


@functools.cache
def _own_transactions() -> type:
    """psycopg2 connections whose transactions budget-mcp opens itself (see :func:`_begin_with_first_statement`):
    the driver is in autocommit mode, so it sends no BEGIN of its own, and ``commit()`` / ``rollback()``
    (SQLAlchemy's, and the pool's rollback when a connection is returned) end the transaction the server
    reports open. A connection can therefore never go back to the pool inside a transaction. Server-side
    cursors are unavailable (psycopg2 refuses them in autocommit mode): read in keyset-paged batches."""
    from psycopg2.extensions import TRANSACTION_STATUS_IDLE, connection  # type: ignore[import-untyped]

    class OwnTransactions(connection):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.autocommit = True

        def commit(self) -> None:
            self._end("COMMIT")

        def rollback(self) -> None:
            self._end("ROLLBACK")

        def _end(self, command: str) -> None:
            if self.closed or self.info.transaction_status == TRANSACTION_STATUS_IDLE:
                super().rollback()  # nothing to end: a no-op in autocommit mode ("connection already closed" if so)
                return
            with self.cursor() as cursor:
                cursor.execute(command)

    return OwnTransactions


def _postgresql_connect_args(options: EngineOptions) -> dict[str, Any]:
    return {
        "connect_timeout": options.connect_timeout,
        "application_name": f"budget-mcp/{__version__}",
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }


def make_migration_engine(url: URL) -> Engine:
    """An engine for one schema upgrade: no pool (it runs once), a lock timeout so a stuck lock fails
    the start instead of hanging it. Point it at the direct endpoint: DDL does not belong on a pooler."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    engine = create_engine(url, poolclass=NullPool, connect_args=_postgresql_connect_args(EngineOptions()))

    @event.listens_for(engine, "begin")
    def _lock_timeout(connection: Any) -> None:
        connection.exec_driver_sql("SET LOCAL lock_timeout = '60s'")

    return engine


def _sqlite_engine(url: URL) -> Engine:
    assert url.database, "config.normalize_database_url() guarantees a file path"
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (see "Serializable isolation / Savepoints /
        # Transactional DDL" in SQLAlchemy's SQLite docs); the driver's own implicit BEGIN is too late.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={round(SQLITE_BUSY_TIMEOUT * 1000)}")
        cursor.close()
        # SQLite's lower() knows only ASCII; searches fold case with Python's rules instead.
        dbapi_connection.create_function("budget_lower", 1, _lower, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            # A read takes no lock in WAL mode: it reads a snapshot while writers go on.
            connection.exec_driver_sql("BEGIN")
        else:
            # IMMEDIATE takes the write lock up front, so a read-then-write transaction never fails
            # half-way with "database is locked" when another process writes at the same time.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def make_session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions on ``engine``; ``read_only`` ones are for calls that only read (on SQLite they take no
    write lock, so a long report never holds up a writer in another process).

    On SQLite the writing sessions also carry a :data:`WRITE_LOCK` (see ``transactions.run_in_transaction``):
    SQLite takes one writer at a time, and writers of the same process that wait for each other in SQLite's
    busy handler sleep in steps of up to 100 ms, so calls made at once (an agent's parallel tool calls) would
    finish up to tens of milliseconds late; on the lock each starts as soon as the one before commits."""
    if read_only:
        return sessionmaker(engine.execution_options(**{READ_ONLY: True}), autoflush=True, expire_on_commit=True)
    info = {WRITE_LOCK: threading.Lock()} if engine.dialect.name == "sqlite" else {}
    return sessionmaker(engine, autoflush=True, expire_on_commit=True, info=info)


def schema_revision(connection: Connection) -> str | None:
    """The Alembic revision the database is at; None for a database without budget-mcp's tables."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def upgrade_schema(engine: Engine) -> None:
    """Bring the database's schema up to the newest Alembic revision (a new, empty database included).

    Safe when several servers start at once: on PostgreSQL the upgrade holds a transaction-scoped advisory
    lock (which works through a transaction pooler too), on SQLite the write lock (BEGIN IMMEDIATE); the
    second server waits, then finds the schema current. A database already at :data:`SCHEMA_HEAD` costs
    one query; one newer than this version of budget-mcp is refused (its migrations are unknown here).
    """
    with engine.connect() as connection:
        revision = schema_revision(connection.execution_options(**{READ_ONLY: True}))
        connection.rollback()
    if revision == SCHEMA_HEAD:
        return
    from alembic import command  # only when there is something to upgrade
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if revision is not None and revision not in known:
        raise DatabaseUnavailable(
            f"the database's schema is at revision {revision}, newer than this budget-mcp knows "
            f"({SCHEMA_HEAD}): upgrade budget-mcp (pip install -U budget-mcp), or point DATABASE_URL at "
            "another database"
        )
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        raw = connection.connection.dbapi_connection
        if sqlite and raw is not None:
            # SQLite changes a table by rebuilding it, which foreign keys would block; the switch only
            # works outside a transaction. The keys are checked before the upgrade commits instead.
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("the schema upgrade would break foreign keys; nothing was changed")
        finally:
            if sqlite and raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


# --- SQL that differs by dialect ----------------------------------------------------------------------


class _PeriodKey(FunctionElement[str]):
    """The text key of the period a date falls in; a subclass per unit, so each compiles (and caches) apart."""

    type = String()
    inherit_cache = True
    unit: ClassVar[str]


class day_key(_PeriodKey):
    """YYYY-MM-DD."""

    inherit_cache = True
    unit = "day"


class week_key(_PeriodKey):
    """The Monday that starts the date's ISO week, YYYY-MM-DD."""

    inherit_cache = True
    unit = "week"


class month_key(_PeriodKey):
    """YYYY-MM."""

    inherit_cache = True
    unit = "month"


_PERIOD_FORMATS = {
    "day": ("%Y-%m-%d", "YYYY-MM-DD"),
    "week": ("%Y-%m-%d", "YYYY-MM-DD"),
    "month": ("%Y-%m", "YYYY-MM"),
}


@compiles(_PeriodKey, "sqlite")
def _period_key_sqlite(element: _PeriodKey, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    if element.unit == "week":  # the next Sunday (or the day itself), less six days: that week's Monday
        return f"date({column}, 'weekday 0', '-6 days')"
    return f"strftime('{_PERIOD_FORMATS[element.unit][0]}', {column})"


@compiles(_PeriodKey, "postgresql")
def _period_key_postgresql(element: _PeriodKey, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    if element.unit == "week":
        column = f"date_trunc('week', {column})"
    return f"to_char({column}, '{_PERIOD_FORMATS[element.unit][1]}')"


class unicode_lower(FunctionElement[str]):
    """lower() for every script, whatever the database's locale: "CAFÉ" and "café" compare equal."""

    type = String()
    inherit_cache = True


@compiles(unicode_lower, "sqlite")
def _unicode_lower_sqlite(element: unicode_lower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"budget_lower({compiler.process(element.clauses, **kw)})"


@compiles(unicode_lower, "postgresql")
def _unicode_lower_postgresql(element: unicode_lower, compiler: SQLCompiler, **kw: Any) -> str:
    # ICU's root collation lowercases by Unicode rules even on a database created with LC_CTYPE=C.
    return f'lower(({compiler.process(element.clauses, **kw)}) COLLATE "und-x-icu")'
