"""The smallest correct SQLAlchemy 2.x data layer: one typed model, created and read back.

Runs with no setup on a temporary SQLite file (removed at the end):

    python simple_expense.py

or on PostgreSQL / Neon, inside a private schema that is dropped at the end (your own tables are not touched):

    DATABASE_URL='postgresql://user:password@host/dbname?sslmode=require' python simple_expense.py
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Engine, String, cast, create_engine, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.schema import CreateSchema, DropSchema

# --- The model -------------------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


def utcnow() -> datetime:
    """Now, as a timezone-aware instant in UTC."""
    return datetime.now(UTC)


class Expense(Base):
    __tablename__ = "expenses"
    __table_args__ = (CheckConstraint("amount_cents > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    description: Mapped[str] = mapped_column(String(200))
    # Integer cents are exact on every database; SQLite would store a Numeric as a float.
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    spent_on: Mapped[date]
    # An instant, stored with its time zone. SQLite returns it without one: budget_tracker.py has the fix.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- Money: text in, integer cents stored, text out ---------------------------------------------------------


def parse_amount(text: str) -> int:
    """'12.30' -> 1230, through Decimal so no cent is lost on the way."""
    try:
        cents = Decimal(text) * 100
    except InvalidOperation:
        raise ValueError(f"amount {text!r} is not a number") from None
    if not cents.is_finite() or cents != cents.to_integral_value():
        raise ValueError(f"amount {text!r} must have at most two decimal places")
    return int(cents)


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


# --- Data access: functions take a session and never commit; the caller owns the transaction ------------


def add_expense(session: Session, description: str, amount: str, spent_on: date) -> int:
    expense = Expense(description=description, amount_cents=parse_amount(amount), spent_on=spent_on)
    session.add(expense)
    session.flush()  # sends the INSERT now, so the id the database assigned is known
    return expense.id


def run(engine: Engine) -> None:
    Base.metadata.create_all(engine)  # fine for a demo; a real app migrates (references/neon-deployment.md)
    Session = sessionmaker(engine)

    with Session.begin() as session:  # one transaction: COMMIT at the end, ROLLBACK if anything raises
        coffee_id = add_expense(session, "Coffee beans", "12.30", date(2026, 3, 14))
        add_expense(session, "Train ticket", "8.75", date(2026, 3, 15))
    print("Saved 2 expenses in one transaction.")

    with Session() as session:  # reading needs no commit; the ORM objects are used only inside this block
        coffee = session.get_one(Expense, coffee_id)
        print(f"Read back by id: {coffee.description}, {format_cents(coffee.amount_cents)} on {coffee.spent_on}")

        march = select(Expense).where(Expense.spent_on >= date(2026, 3, 1)).order_by(Expense.spent_on, Expense.id)
        for expense in session.scalars(march):
            print(f"  {expense.spent_on}  {format_cents(expense.amount_cents):>8}  {expense.description}")

        # PostgreSQL's SUM of a bigint is a numeric (a Decimal in Python): cast it back to whole cents.
        total = session.execute(select(cast(func.coalesce(func.sum(Expense.amount_cents), 0), BigInteger)))
        print(f"Total, summed by the database: {format_cents(total.scalar_one())}")


# --- Connecting ---------------------------------------------------------------------------------------------


def normalize_url(raw: str) -> URL:
    """Parse DATABASE_URL and pin the psycopg2 driver: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):  # with no host, the password is read as the port and quoted in the error
        raise ValueError(
            "DATABASE_URL is not a valid URL; expected postgresql://user:password@host/dbname?sslmode=require"
        ) from None
    if url.drivername not in {"postgres", "postgresql", "postgresql+psycopg2"}:
        raise ValueError(
            f"DATABASE_URL must be a PostgreSQL URL (postgresql://...), not {url.drivername}://; "
            "unset it to run on a temporary SQLite file"
        )
    return url.set(drivername="postgresql+psycopg2")


def make_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        return create_engine(url)
    # pool_pre_ping replaces a connection the server closed (Neon suspends idle computes) before handing it out.
    return create_engine(url, pool_pre_ping=True)


@contextmanager
def demo_database() -> Iterator[Engine]:
    """Demo scaffolding, not part of the pattern: an engine on a temporary SQLite file, or on DATABASE_URL
    with every table in a private schema that is dropped afterwards."""
    raw_url = os.environ.get("DATABASE_URL", "").strip()
    if not raw_url:
        with tempfile.TemporaryDirectory(prefix="simple-expense-") as directory:
            path = Path(directory) / "expenses.sqlite3"
            print(f"Database: temporary SQLite file {path}")
            engine = make_engine(URL.create("sqlite+pysqlite", database=str(path)))
            try:
                yield engine
            finally:
                engine.dispose()
        print("Removed the temporary SQLite file.")
        return

    url = normalize_url(raw_url)
    print(f"Database: PostgreSQL database {url.database!r} on {url.host}, in a private schema")
    engine = make_engine(url)
    schema = f"demo_{secrets.token_hex(4)}"
    try:
        with engine.begin() as connection:
            connection.execute(CreateSchema(schema))
        try:
            yield engine.execution_options(schema_translate_map={None: schema})
        finally:
            with engine.begin() as connection:
                connection.execute(DropSchema(schema, cascade=True))
    finally:
        engine.dispose()
    print("Dropped the private schema.")


def describe(error: Exception) -> str:
    """One line for the user: the driver's own message (not the SQL and its parameters), never the URL."""
    message = str(error.orig) if isinstance(error, DBAPIError) else str(error)
    return " ".join(message.split())


def main() -> int:
    try:
        with demo_database() as engine:
            run(engine)
    except (SQLAlchemyError, ValueError) as error:
        print(f"simple_expense.py failed: {describe(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
