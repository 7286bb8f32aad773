"""A complete small budget app on SQLAlchemy 2.x: users, categories and expenses; create, read, update and
delete; a monthly summary computed by the database; and an import that saves every row or none.

Runs with no setup on a temporary SQLite file (removed at the end):

    python budget_tracker.py

or on PostgreSQL / Neon, inside a private schema that is dropped at the end (your own tables are not touched):

    DATABASE_URL='postgresql://user:password@host/dbname?sslmode=require' python budget_tracker.py

Both print the same report: apart from make_engine() the code has no branch per database.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    MetaData,
    String,
    UniqueConstraint,
    and_,
    cast,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload, sessionmaker
from sqlalchemy.schema import CreateSchema, DropSchema
from sqlalchemy.types import TypeDecorator

MARCH = date(2026, 3, 1)

# --- Models: tables, constraints and indexes; no logic ------------------------------------------------------


def utcnow() -> datetime:
    """Now, as a timezone-aware instant in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An instant stored in UTC and always read back timezone-aware: SQLite keeps no zone of its own."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware one, e.g. datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    # Named constraints, so a later migration can find and change them.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # lazy="raise": touching an unloaded collection fails loudly instead of issuing one query per user (N+1);
    # load it with selectinload(). passive_deletes: the database's ON DELETE CASCADE removes the rows.
    categories: Mapped[list[Category]] = relationship(
        back_populates="user",
        order_by="Category.name",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="raise",
    )


class Category(Base):
    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(50))

    user: Mapped[User] = relationship(back_populates="categories", lazy="raise")


class Expense(Base):
    __tablename__ = "expenses"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        # A retried write finds its first attempt; two concurrent retries cannot both insert.
        UniqueConstraint("user_id", "idempotency_key"),
        Index(None, "user_id", "spent_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # No ON DELETE: a category that still has expenses cannot be deleted.
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)  # integer minor units: exact on every database
    spent_on: Mapped[date]
    description: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    category: Mapped[Category] = relationship(lazy="raise")


# --- Money and months ---------------------------------------------------------------------------------------


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


def month_bounds(month: date) -> tuple[date, date]:
    """The first day of the month and of the next: filter with >= and <, which any index can serve."""
    first = month.replace(day=1)
    return first, date(first.year + first.month // 12, first.month % 12 + 1, 1)


# --- Data access: functions take a session, return plain values and never commit --------------------------


class NotFound(LookupError):
    """No such user, category or expense (for this user)."""


@dataclass(frozen=True)
class ExpenseLine:
    spent_on: date
    category: str
    description: str
    amount_cents: int


@dataclass(frozen=True)
class CategoryTotal:
    category: str
    expenses: int
    amount_cents: int


@dataclass(frozen=True)
class ImportRow:
    spent_on: date
    category: str
    description: str
    amount: str


def create_user(session: Session, name: str, categories: Iterable[str]) -> int:
    user = User(name=name, categories=[Category(name=category) for category in categories])
    session.add(user)
    session.flush()  # sends the INSERTs now, so the ids the database assigned are known
    return user.id


def category_ids(session: Session, user_id: int, names: Iterable[str]) -> dict[str, int]:
    """The ids of one user's categories with these names, in one query."""
    query = select(Category.name, Category.id).where(Category.user_id == user_id, Category.name.in_(set(names)))
    return dict(session.execute(query).all())


def add_expense(
    session: Session,
    user_id: int,
    *,
    category: str,
    amount: str,
    spent_on: date,
    description: str,
    idempotency_key: str | None = None,
) -> int:
    """Record one expense. The same call again with the same idempotency key (a retry after a lost COMMIT
    answer) returns the expense the first call saved instead of saving it twice."""
    if idempotency_key is not None:
        saved = session.scalar(
            select(Expense.id).where(Expense.user_id == user_id, Expense.idempotency_key == idempotency_key)
        )
        if saved is not None:
            return saved
    found = category_ids(session, user_id, [category])
    if category not in found:
        raise NotFound(f"no category {category!r} for this user")
    expense = Expense(
        user_id=user_id,
        category_id=found[category],
        amount_cents=parse_amount(amount),
        spent_on=spent_on,
        description=description,
        idempotency_key=idempotency_key,
    )
    session.add(expense)
    session.flush()
    return expense.id


def list_expenses(session: Session, user_id: int, month: date) -> list[ExpenseLine]:
    """One user's expenses in a month with their category names: one query with a JOIN."""
    start, end = month_bounds(month)
    query = (
        select(Expense.spent_on, Category.name, Expense.description, Expense.amount_cents)
        .join(Expense.category)
        .where(Expense.user_id == user_id, Expense.spent_on >= start, Expense.spent_on < end)
        .order_by(Expense.spent_on, Expense.id)
    )
    return [ExpenseLine(*row) for row in session.execute(query)]


def update_amount(session: Session, user_id: int, expense_id: int, amount: str) -> tuple[int, int]:
    """Change an expense's amount; returns (old, new) in cents. The UPDATE is sent at flush or commit."""
    expense = session.scalar(select(Expense).where(Expense.id == expense_id, Expense.user_id == user_id))
    if expense is None:
        raise NotFound(f"no expense {expense_id} for this user")
    old = expense.amount_cents
    expense.amount_cents = parse_amount(amount)  # updated_at follows through its onupdate
    return old, expense.amount_cents


def delete_expense(session: Session, user_id: int, expense_id: int) -> None:
    expense = session.scalar(select(Expense).where(Expense.id == expense_id, Expense.user_id == user_id))
    if expense is None:
        raise NotFound(f"no expense {expense_id} for this user")
    session.delete(expense)  # the DELETE is sent at flush or commit


def import_expenses(session: Session, user_id: int, rows: Sequence[ImportRow]) -> int:
    """Save every row or none. Missing categories are created first (sent to the database at once, for
    their ids); an error in any later row makes the caller's transaction roll all of it back."""
    wanted = {row.category for row in rows}
    known = category_ids(session, user_id, wanted)
    new = [Category(user_id=user_id, name=name) for name in sorted(wanted - known.keys())]
    session.add_all(new)
    session.flush()
    known.update({category.name: category.id for category in new})
    for number, row in enumerate(rows, start=1):
        try:
            cents = parse_amount(row.amount)
        except ValueError as error:
            raise ValueError(f"row {number}: {error}") from error
        session.add(
            Expense(
                user_id=user_id,
                category_id=known[row.category],
                amount_cents=cents,
                spent_on=row.spent_on,
                description=row.description,
            )
        )
    session.flush()
    return len(rows)


def monthly_summary(session: Session, user_id: int, month: date) -> list[CategoryTotal]:
    """Spending per category in one GROUP BY query; categories with nothing spent are included (0)."""
    start, end = month_bounds(month)
    in_month = and_(Expense.category_id == Category.id, Expense.spent_on >= start, Expense.spent_on < end)
    query = (
        select(
            Category.name,
            func.count(Expense.id),
            # PostgreSQL's SUM of a bigint is a numeric (a Decimal in Python): cast it back to whole cents.
            cast(func.coalesce(func.sum(Expense.amount_cents), 0), BigInteger),
        )
        .outerjoin(Expense, in_month)
        .where(Category.user_id == user_id)
        .group_by(Category.id, Category.name)
        .order_by(Category.name)
    )
    return [CategoryTotal(*row) for row in session.execute(query)]


def users_with_categories(session: Session) -> list[tuple[str, list[str]]]:
    """Every user with their category names in two queries (users, then all their categories), however
    many users there are."""
    users = session.scalars(select(User).options(selectinload(User.categories)).order_by(User.name))
    return [(user.name, [category.name for category in user.categories]) for user in users]


def counts(session: Session, user_id: int) -> tuple[int, int]:
    """How many categories and expenses a user has."""
    categories = select(func.count()).select_from(Category).where(Category.user_id == user_id)
    expenses = select(func.count()).select_from(Expense).where(Expense.user_id == user_id)
    return session.execute(categories).scalar_one(), session.execute(expenses).scalar_one()


def delete_user(session: Session, user_id: int) -> None:
    """One DELETE; the database's ON DELETE CASCADE removes the user's categories and expenses."""
    session.execute(delete(User).where(User.id == user_id))


def add_march_rent(session: Session, user_id: int) -> int:
    """A write that may be repeated: the idempotency key makes the second call find the first one's row."""
    return add_expense(
        session,
        user_id,
        category="Rent",
        amount="1200.00",
        spent_on=date(2026, 3, 1),
        description="March rent",
        idempotency_key="rent-2026-03",
    )


# --- The app: each step is one unit of work, `with Session.begin()`; only plain values leave a session ----


def run(engine: Engine) -> None:
    Base.metadata.create_all(engine)  # fine for a demo; a real app migrates (references/neon-deployment.md)
    Session = sessionmaker(engine)

    with Session.begin() as session:
        alice = create_user(session, "alice", ["Food", "Rent", "Transport"])
        bob = create_user(session, "bob", ["Books"])
    print("Created alice (Food, Rent, Transport) and bob (Books).")

    with Session.begin() as session:
        add_march_rent(session, alice)
        groceries = add_expense(
            session, alice, category="Food", amount="23.40", spent_on=date(2026, 3, 2), description="Groceries"
        )
        taxi = add_expense(
            session, alice, category="Transport", amount="18.00", spent_on=date(2026, 3, 5), description="Taxi home"
        )
        add_expense(session, alice, category="Food", amount="6.80", spent_on=date(2026, 3, 9), description="Lunch")
        add_expense(
            session, alice, category="Rent", amount="1200.00", spent_on=date(2026, 4, 1), description="April rent"
        )
        add_expense(session, bob, category="Books", amount="15.00", spent_on=date(2026, 3, 3), description="Novel")
    print("Added 5 expenses for alice (4 in March, 1 in April) and 1 for bob.")

    with Session.begin() as session:  # the same call again, as a retry after a lost COMMIT answer would make it
        add_march_rent(session, alice)
    with Session() as session:
        rents = session.execute(
            select(func.count()).select_from(Expense).where(Expense.idempotency_key == "rent-2026-03")
        ).scalar_one()
    print(f"Repeated the March rent with its idempotency key: {rents} saved, not 2.")

    with Session() as session:
        lines = list_expenses(session, alice, MARCH)
    print("alice, March 2026:")
    for line in lines:  # plain dataclasses: safe to use after the session closed
        print(f"  {line.spent_on}  {line.category:<10} {format_cents(line.amount_cents):>8}  {line.description}")

    with Session.begin() as session:
        old, new = update_amount(session, alice, groceries, "25.10")
    print(f"Updated Groceries: {format_cents(old)} -> {format_cents(new)}.")

    with Session.begin() as session:
        delete_expense(session, alice, taxi)
    print("Deleted Taxi home.")

    trip = [
        ImportRow(date(2026, 3, 20), "Travel", "Train to Lyon", "64.00"),
        ImportRow(date(2026, 3, 21), "Travel", "Hotel", "210.50"),
    ]
    with Session.begin() as session:
        imported = import_expenses(session, alice, trip)
    print(f"Imported {imported} expenses, creating the category Travel on the way.")

    gifts = [
        ImportRow(date(2026, 3, 24), "Gifts", "Flowers", "30.00"),
        ImportRow(date(2026, 3, 25), "Gifts", "Card", "4.50"),
        ImportRow(date(2026, 3, 26), "Gifts", "Chocolate", "9.999"),
    ]
    try:
        with Session.begin() as session:
            import_expenses(session, alice, gifts)
    except ValueError as error:  # expected here: the demo shows what the rollback left behind
        print(f"Import of {len(gifts)} rows failed ({error}); the whole transaction was rolled back:")
    with Session() as session:
        categories, expenses = counts(session, alice)
    print(f"  alice still has {categories} categories (no Gifts) and {expenses} expenses.")

    with Session() as session:
        summary = monthly_summary(session, alice, MARCH)
    print("Summary for alice, March 2026 (one GROUP BY query):")
    for total in summary:
        noun = "expense" if total.expenses == 1 else "expenses"
        print(f"  {total.category:<10} {total.expenses:>2} {noun:<8} {format_cents(total.amount_cents):>8}")
    spent = sum(total.amount_cents for total in summary)
    print(f"  {'Total':<10} {sum(total.expenses for total in summary):>2} {'expenses':<8} {format_cents(spent):>8}")

    with Session() as session:
        listing = users_with_categories(session)
    print("Users and their categories (selectinload):")
    for name, names in listing:
        print(f"  {name}: {', '.join(names)}")

    with Session.begin() as session:
        before = counts(session, bob)
        delete_user(session, bob)
        after = counts(session, bob)
    print(
        f"Deleted bob; ON DELETE CASCADE removed his {before[0]} category and {before[1]} expense "
        f"({after[0]} and {after[1]} left)."
    )

    with Session() as session:
        created_at = session.execute(select(Expense.created_at).limit(1)).scalar_one()
    print(f"Timestamps come back timezone-aware in UTC: {'yes' if created_at.tzinfo is UTC else 'no'}")


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
    if url.get_backend_name() != "sqlite":
        # pool_pre_ping replaces a connection the server closed (Neon suspends idle computes) before use.
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy decide when a transaction begins: the driver's own implicit BEGIN comes only before
        # the first write, so the reads of a unit of work would run outside it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")  # off by default: no foreign keys checked, no ON DELETE CASCADE
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


@contextmanager
def demo_database() -> Iterator[Engine]:
    """Demo scaffolding, not part of the pattern: an engine on a temporary SQLite file, or on DATABASE_URL
    with every table in a private schema that is dropped afterwards."""
    raw_url = os.environ.get("DATABASE_URL", "").strip()
    if not raw_url:
        with tempfile.TemporaryDirectory(prefix="budget-tracker-") as directory:
            path = Path(directory) / "budget.sqlite3"
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
    except (SQLAlchemyError, ValueError, LookupError) as error:
        print(f"budget_tracker.py failed: {describe(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
