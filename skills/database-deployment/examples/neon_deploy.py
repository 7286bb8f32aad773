"""Deploying a SQLAlchemy 2.x data layer to Neon: the production engine for the pooled endpoint, a health
check, schema migrations over the direct endpoint, and a retried write that cannot be saved twice.

    DATABASE_URL='postgresql://user:password@ep-name-123-pooler.region.aws.neon.tech/neondb?sslmode=require' \\
    python neon_deploy.py

DATABASE_URL is the pooled URL (its host ends in -pooler). DATABASE_URL_UNPOOLED, if set, is the direct URL;
otherwise the direct host is the pooled one without -pooler (Neon's naming), or DATABASE_URL itself when its
host has no -pooler. Everything is created in a private schema that is dropped at the end.

With no DATABASE_URL it runs on a temporary SQLite file and says which Neon-specific steps it skipped.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Engine,
    String,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateSchema, DropSchema

logger = logging.getLogger("neon_deploy")
T = TypeVar("T")

# Any constant will do: it names the lock that lets one deploy at a time change the schema.
MIGRATION_LOCK = 0x6E656F6E

# --- The model -------------------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


def utcnow() -> datetime:
    return datetime.now(UTC)


class Expense(Base):
    __tablename__ = "expenses"
    __table_args__ = (CheckConstraint("amount_cents > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The caller's name for this write (a receipt number, a request id): a retry finds the first attempt.
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(200))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    spent_on: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- URLs: the driver, TLS, and the direct endpoint ----------------------------------------------------------

TLS_MODES = {"require", "verify-ca", "verify-full"}


def normalize_url(raw: str, variable: str) -> URL:
    """Parse a PostgreSQL URL, pin psycopg2 (SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which
    PgBouncer before 1.22 breaks) and insist on TLS for anything but this machine."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):  # with no host, the password is read as the port and quoted in the error
        raise ValueError(
            f"{variable} is not a valid URL; expected postgresql://user:password@host/dbname?sslmode=require"
        ) from None
    if url.drivername not in {"postgres", "postgresql", "postgresql+psycopg2"}:
        raise ValueError(f"{variable} must be a PostgreSQL URL (postgresql://...), not {url.drivername}://")
    url = url.set(drivername="postgresql+psycopg2")
    if url.host in (None, "localhost", "127.0.0.1", "::1"):
        return url
    sslmode = url.query.get("sslmode")
    if sslmode is None:
        return url.update_query_dict({"sslmode": "require"})  # Neon refuses plaintext anyway
    if sslmode not in TLS_MODES:
        raise ValueError(f"{variable} has sslmode={sslmode}; use sslmode=require (or verify-full) for {url.host}")
    return url


def direct_url(pooled: URL, unpooled: str) -> tuple[URL, str]:
    """The direct endpoint of the same database, and where it came from."""
    if unpooled:
        return normalize_url(unpooled, "DATABASE_URL_UNPOOLED"), "DATABASE_URL_UNPOOLED"
    first_label, dot, rest = (pooled.host or "").partition(".")
    if first_label.endswith("-pooler"):
        return pooled.set(host=first_label.removesuffix("-pooler") + dot + rest), "the pooled host without -pooler"
    return pooled, "DATABASE_URL itself: its host has no -pooler"


def endpoint(url: URL) -> str:
    return f"{url.host}:{url.port}" if url.port else str(url.host)


# --- Engines --------------------------------------------------------------------------------------------------


def make_app_engine(url: URL) -> Engine:
    """The engine of a long-lived server on Neon's pooled endpoint (PgBouncer in transaction mode).
    Create it once, at start-up (never at import), and dispose of it at shutdown."""
    engine = create_engine(
        url,
        pool_size=5,
        max_overflow=5,
        pool_timeout=10,
        pool_pre_ping=True,  # a connection closed while idle (scale to zero) is replaced at checkout
        pool_recycle=240,  # retired before Neon's five-minute idle suspend closes it
        pool_use_lifo=True,  # reuse the warm connection; the spare ones age out
        connect_args={
            "connect_timeout": 10,
            "application_name": "neon-deploy-example",
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            # No "options" here: the pooler refuses that startup parameter.
        },
    )

    @event.listens_for(engine, "begin")
    def _statement_timeout(connection: Any) -> None:
        # SET LOCAL ends with the transaction, so it cannot leak to the next client of this server connection
        # (a plain SET would, through a transaction pooler).
        connection.execute(text("SET LOCAL statement_timeout = '30s'"))

    return engine


def make_migration_engine(url: URL) -> Engine:
    """A one-off engine for schema changes on the direct endpoint: no pool, it runs once per deploy."""
    return create_engine(
        url,
        poolclass=NullPool,
        connect_args={"connect_timeout": 10, "application_name": "neon-deploy-example-migrations"},
    )


def make_sqlite_engine(path: Path) -> Engine:
    engine = create_engine(URL.create("sqlite+pysqlite", database=str(path)))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, decides when a transaction begins
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


# --- Deploy steps ---------------------------------------------------------------------------------------------


def migrate(engine: Engine) -> None:
    """Bring the schema up to date over the direct endpoint, one deploy at a time: a second deploy waits
    for the transaction-scoped advisory lock (released at COMMIT), then finds nothing to do.

    create_all only creates missing tables; once the schema is live, change it with Alembic migrations,
    run the same way (references/neon-deployment.md)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL lock_timeout = '10s'"))  # fail the deploy rather than hang it
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        Base.metadata.create_all(connection)


def health_check(engine: Engine) -> None:
    """Raises unless the database answers. (A probe that runs every few seconds keeps a Neon compute from
    ever scaling to zero: use it for readiness, not liveness.)"""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1")).scalar_one()


# Connection failures that running the transaction again may cure: Neon waking up or suspending, a pooler
# restart, a terminated backend. Authentication or SQL errors are not among them.
TRANSIENT = (
    "couldn't connect to compute node",
    "terminating connection",
    "server closed the connection",
    "ssl connection has been closed",
    "ssl syscall error",
    "connection refused",
    "timeout expired",
)


def is_transient(error: DBAPIError) -> bool:
    return error.connection_invalidated or any(marker in str(error.orig).lower() for marker in TRANSIENT)


def retrying(operation: Callable[[], T], attempts: int = 4) -> T:
    """Call ``operation``; when a dropped or refused connection interrupts it, call it again after 0.2, 0.4,
    0.8 s (Neon wakes in a few hundred milliseconds). Other errors, and the last attempt's, propagate."""
    delay = 0.2
    for _ in range(attempts - 1):
        try:
            return operation()
        except DBAPIError as error:
            if not is_transient(error):
                raise
            logger.warning("database connection failed (%s); retrying in %.1f s", describe(error), delay)
        time.sleep(delay)
        delay *= 2
    return operation()


def run_with_retry(session_factory: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction; if the connection drops, run it again, whole, in a new one.

    A drop before COMMIT was sent rolled everything back; a drop *during* COMMIT leaves unknown whether it
    was saved. So a write must be idempotent (keyed) before it may be retried: see record_expense()."""

    def attempt() -> T:
        with session_factory.begin() as session:
            return work(session)

    return retrying(attempt)


def record_expense(
    session: Session, *, idempotency_key: str, description: str, amount_cents: int, spent_on: date
) -> int:
    """Save an expense once, however often it is called with the same key. The unique constraint on the key
    settles a race between two concurrent attempts: the loser fails instead of writing twice."""
    saved = session.scalar(select(Expense.id).where(Expense.idempotency_key == idempotency_key))
    if saved is not None:
        return saved
    expense = Expense(
        idempotency_key=idempotency_key,
        description=description,
        amount_cents=amount_cents,
        spent_on=spent_on,
    )
    session.add(expense)
    session.flush()
    return expense.id


RECEIPT = "receipt-2026-03-14-0042"


def save_coffee(session: Session) -> int:
    return record_expense(
        session, idempotency_key=RECEIPT, description="Coffee beans", amount_cents=1230, spent_on=date(2026, 3, 14)
    )


def run(app: Engine, migrations: Engine, on_postgresql: bool) -> None:
    retrying(lambda: migrate(migrations))  # a deploy may meet a suspended compute that is still waking
    if on_postgresql:
        print("Migrated, holding the migration advisory lock.")
    else:
        print("Migrated (create_all).")

    health_check(app)
    print("Health check (SELECT 1) through the application engine: ok")
    if on_postgresql:
        with app.connect() as connection:
            timeout = connection.execute(text("SHOW statement_timeout")).scalar_one()
        print(f"statement_timeout inside each transaction (SET LOCAL): {timeout}")

    Session = sessionmaker(app)
    first = run_with_retry(Session, save_coffee)
    print(f"Saved 12.30 under the idempotency key {RECEIPT}.")
    # Had the connection dropped while COMMIT was in flight, the caller could not know it was saved and
    # would run the write again: exactly this second call.
    second = run_with_retry(Session, save_coffee)
    with Session() as session:
        saved = session.execute(
            select(func.count()).select_from(Expense).where(Expense.idempotency_key == RECEIPT)
        ).scalar_one()
    same = "the same" if first == second else "a different"
    print(f"Ran the write again, as a retry after a lost COMMIT answer would: {saved} row, {same} id.")


# --- Scaffolding and entry point ------------------------------------------------------------------------------


@contextmanager
def demo_engines() -> Iterator[tuple[Engine, Engine, bool]]:
    """Demo scaffolding, not part of the pattern: (application engine, migration engine, on PostgreSQL),
    with every table in a private schema dropped afterwards, or on a temporary SQLite file."""
    raw_url = os.environ.get("DATABASE_URL", "").strip()
    if not raw_url:
        with tempfile.TemporaryDirectory(prefix="neon-deploy-") as directory:
            path = Path(directory) / "deploy.sqlite3"
            print(f"DATABASE_URL is not set: running on a temporary SQLite file {path}")
            print(
                "Skipped without Neon: the pooled engine settings, SET LOCAL statement_timeout, "
                "the migration advisory lock and the direct endpoint."
            )
            engine = make_sqlite_engine(path)
            try:
                yield engine, engine, False
            finally:
                engine.dispose()
        print("Removed the temporary SQLite file.")
        return

    pooled = normalize_url(raw_url, "DATABASE_URL")
    direct, source = direct_url(pooled, os.environ.get("DATABASE_URL_UNPOOLED", "").strip())
    print(f"Application engine on {endpoint(pooled)}, database {pooled.database!r} (DATABASE_URL)")
    print(f"Migrations on {endpoint(direct)} ({source})")
    app, migrations = make_app_engine(pooled), make_migration_engine(direct)
    schema = f"demo_{secrets.token_hex(4)}"
    try:
        with migrations.begin() as connection:
            connection.execute(CreateSchema(schema))
        try:
            in_schema = {None: schema}
            yield (
                app.execution_options(schema_translate_map=in_schema),
                migrations.execution_options(schema_translate_map=in_schema),
                True,
            )
        finally:
            with migrations.begin() as connection:
                connection.execute(DropSchema(schema, cascade=True))
    finally:
        app.dispose()
        migrations.dispose()
    print("Dropped the private schema.")


def describe(error: Exception) -> str:
    """One line for the user: the driver's own message (not the SQL and its parameters), never the URL."""
    message = str(error.orig) if isinstance(error, DBAPIError) else str(error)
    return " ".join(message.split())


def main() -> int:
    try:
        with demo_engines() as (app, migrations, on_postgresql):
            run(app, migrations, on_postgresql)
    except (SQLAlchemyError, ValueError) as error:
        print(f"neon_deploy.py failed: {describe(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
