"""The benchmark's data: seeded in bulk through the ORM tables (not through the tools), the totals it must
add up to, and the exact SQL one tool call runs, captured from the product's own code and replayed raw.

Expense ``i`` of the benchmark user is fully determined by ``i`` (category, amount, currency, day), so the
expected count and totals of any answer are known without asking the database.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, create_engine, event, insert, text
from sqlalchemy.orm import Session, sessionmaker

from budget_mcp.config import Settings
from budget_mcp.db import EngineOptions, make_engine, make_session_factory
from budget_mcp.models import Category, Expense, User
from budget_mcp.schemas import category_key
from budget_mcp.service import Caller
from budget_mcp.transactions import migrate, run_in_transaction

USER = "bench"
NEIGHBOUR = "neighbour"  # another user's expenses, in the same year: no answer may include them
NEIGHBOUR_ROWS = 1000
CATEGORIES = tuple(
    ["Groceries", "Rent", "Transport", "Eating out", "Utilities", "Health", "Clothes", "Travel", "Gifts", "Other"]
)
QUERIED = "Transport"  # query_expenses_by_category's category: a tenth of the expenses
WRITES = "Bench writes"  # create_expense's category, dated outside the summarised year
WRITE_DAY = date(2026, 1, 15)
YEAR_START, YEAR_END = date(2025, 1, 1), date(2025, 12, 31)
PAGE = 50  # query_expenses_by_category's default page
# The entry-order experiment (SQLite): the same expenses recorded in date order or not, and one more index.
ORDERS = ("recorded in date order", "recorded in no date order")
INDEXES = ("indexes as shipped", "plus a covering index (proposed)")
COVERING_INDEX = "CREATE INDEX bench_covering ON expenses (user_id, spent_on, currency, category_id, amount_minor)"


def expense_fields(i: int, size: int, scattered: bool = False) -> tuple[int, int, str, int]:
    """(category index, amount in cents, currency, day of 2025) of the i-th of ``size`` expenses of the
    benchmark user. Days follow the ids (expenses recorded in date order), unless ``scattered``: then the
    days jump about (expenses recorded in no particular order, as after importing several files)."""
    day = (i * 37) % 365 if scattered else i * 365 // size
    return i % 10, 100 + (i * 7919) % 99_900, "EUR" if i % 7 == 0 else "USD", day


@dataclass
class Expected:
    """What the seeded expenses add up to, kept while seeding."""

    count: int = 0
    by_currency: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    by_category: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def add(self, low: int, high: int) -> None:
        for i in range(low, high):
            category, cents, currency, _ = expense_fields(i, high)  # the day does not change a total
            per_currency = self.by_currency[currency]
            per_currency[0] += 1
            per_currency[1] += cents
            per_category = self.by_category[(CATEGORIES[category], currency)]
            per_category[0] += 1
            per_category[1] += cents
        self.count += high - low

    def category_totals(self, name: str) -> dict[str, tuple[int, int]]:
        return {cur: (n, cents) for (cat, cur), (n, cents) in self.by_category.items() if cat == name}


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


# --- the database -----------------------------------------------------------------------------------------


@dataclass
class Database:
    """One benchmark database (an SQLite file or a PostgreSQL database) holding ``size`` expenses of the
    benchmark user, migrated as the server does it."""

    backend: str  # "sqlite" or "postgresql"
    url: str
    size: int
    scattered: bool = False
    expected: Expected = field(default_factory=Expected)
    user_id: int = 0
    category_ids: dict[str, int] = field(default_factory=dict)
    seconds_seeding: float = 0.0

    @property
    def settings(self) -> Settings:
        return Settings(database_url=self.url, _env_file=None, user=USER, timezone="UTC")  # type: ignore[call-arg]

    def engine(self) -> Engine:
        """The product's engine (its pool, pragmas, BEGIN IMMEDIATE or SET LOCAL statement_timeout)."""
        return make_engine(self.settings.url, EngineOptions.from_settings(self.settings))

    def raw_engine(self) -> Engine:
        """A plain SQLAlchemy Core engine on the same database: no ORM, no product hooks (what raw SQL gets)."""
        url = self.settings.url
        if self.backend != "sqlite":
            return create_engine(url, isolation_level="AUTOCOMMIT")  # the replayed BEGIN opens the transaction
        engine = create_engine(url, connect_args={"timeout": 15})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # the replayed BEGIN IMMEDIATE opens the transaction
            dbapi_connection.execute("PRAGMA foreign_keys=ON")
            dbapi_connection.execute("PRAGMA busy_timeout=15000")

        return engine

    def seed(self) -> float:
        """Migrate (the server's own start-up path), add the users and categories and the expenses; return
        the seconds it took."""
        began = time.perf_counter()
        migrate(self.settings)
        engine = self.engine()
        try:
            with engine.begin() as connection:
                users = {}
                for name in (USER, NEIGHBOUR):
                    users[name] = connection.execute(insert(User).values(name=name).returning(User.id)).scalar_one()
                    for category in (*CATEGORIES, WRITES):
                        category_id = connection.execute(
                            insert(Category)
                            .values(user_id=users[name], name=category, name_key=category_key(category))
                            .returning(Category.id)
                        ).scalar_one()
                        if name == USER:
                            self.category_ids[category] = category_id
                        elif category == CATEGORIES[0]:
                            self._insert(connection, users[name], [category_id] * 10, 0, NEIGHBOUR_ROWS, NEIGHBOUR_ROWS)
                self.user_id = users[USER]
            categories = [self.category_ids[name] for name in CATEGORIES]
            step = 250_000
            for low in range(0, self.size, step):
                with engine.begin() as connection:
                    self._insert(connection, self.user_id, categories, low, min(self.size, low + step), self.size)
        finally:
            engine.dispose()
        self._settle()
        self.expected.add(0, self.size)
        self.seconds_seeding = time.perf_counter() - began
        return self.seconds_seeding

    def _insert(self, connection: Any, user_id: int, categories: Sequence[int], low: int, high: int, size: int) -> None:
        """Expenses ``low`` .. ``high - 1`` of ``size`` (see expense_fields)."""
        if self.backend == "postgresql":
            # One statement: the server makes the rows, with the same formulas as expense_fields().
            ids = ",".join(str(int(c)) for c in categories)
            day = "(i * 37) %% 365" if self.scattered else "(i::bigint * 365 / %(size)s)::int"
            connection.exec_driver_sql(
                "INSERT INTO expenses (user_id, category_id, amount_minor, currency, spent_on, description, "
                "merchant, created_at, updated_at) "
                f"SELECT %(user)s, (ARRAY[{ids}])[i %% 10 + 1], 100 + (i::bigint * 7919) %% 99900, "
                f"CASE WHEN i %% 7 = 0 THEN 'EUR' ELSE 'USD' END, DATE '2025-01-01' + {day}, "
                "'expense ' || i, 'Shop ' || (i %% 50), now(), now() "
                "FROM generate_series(%(low)s, %(high)s) AS i",
                {"user": user_id, "low": low, "high": high - 1, "size": size},
            )
            return
        # SQLite: executemany through the ORM table (its types convert the values), one transaction a chunk.
        now = datetime.now(UTC)
        days = [YEAR_START + timedelta(days=d) for d in range(365)]
        batch: list[dict[str, Any]] = []
        for i in range(low, high):
            category, cents, currency, day_number = expense_fields(i, size, self.scattered)
            batch.append(
                {
                    "user_id": user_id,
                    "category_id": categories[category],
                    "amount_minor": cents,
                    "currency": currency,
                    "spent_on": days[day_number],
                    "description": f"expense {i}",
                    "merchant": f"Shop {i % 50}",
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if len(batch) == 50_000:
                connection.execute(insert(Expense), batch)
                batch = []
        if batch:
            connection.execute(insert(Expense), batch)

    def _settle(self) -> None:
        """After a bulk load: PostgreSQL's planner statistics and visibility map (what autovacuum does on its
        own a little later); SQLite's write-ahead log checkpointed. SQLite gets no ANALYZE: the product never
        runs one, so a user's file has no statistics either."""
        engine = create_engine(self.settings.url)
        try:
            if self.backend == "postgresql":
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                    connection.exec_driver_sql("VACUUM ANALYZE expenses")
            else:
                with engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            engine.dispose()

    def server_version(self) -> str:
        engine = create_engine(self.settings.url)
        try:
            with engine.connect() as connection:
                if self.backend == "postgresql":
                    return str(connection.exec_driver_sql("SHOW server_version").scalar_one())
                return str(connection.exec_driver_sql("SELECT sqlite_version()").scalar_one())
        finally:
            engine.dispose()

    def count_rows(self, sql: str, **params: Any) -> tuple[int, int]:
        engine = create_engine(self.settings.url)
        try:
            with engine.connect() as connection:
                count, total = connection.execute(text(sql), params).one()
                return int(count), int(total or 0)
        finally:
            engine.dispose()

    @property
    def label(self) -> str:
        return "SQLite" if self.backend == "sqlite" else "PostgreSQL"


# --- the SQL of one tool call ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    sql: str
    params: Any
    many: bool


_REQUEST_KEY = re.compile(r"^[0-9a-f]{32}$")
_OPENING = re.compile(r"^(BEGIN[^;]*); (SET LOCAL statement_timeout = \d+); ")  # PostgreSQL: with the first statement


def statements_in(sql: str) -> list[str]:
    """The statements one execute sent: on PostgreSQL a transaction's first carries its BEGIN and SET LOCAL."""
    opening = _OPENING.match(sql)
    return [opening.group(1), opening.group(2), sql[opening.end() :]] if opening else [sql]


@dataclass
class CapturedCall:
    """Every statement one tool call sent to the database (from the transaction's BEGIN to its last query, not
    the COMMIT), as the driver received them; replaying them is the raw SQL the call cannot do without."""

    tool: str
    statements: list[Statement]
    result: Any
    idempotency_key: str | None = None

    def replay(self, engine: Engine) -> None:
        """Run the same statements with the same parameters through SQLAlchemy Core in one transaction,
        fetching every row, then commit. A write gets fresh unique keys (its request and idempotency keys)."""
        fresh: dict[str, str] = {}
        if self.idempotency_key is not None:
            fresh[self.idempotency_key] = f"raw-{uuid.uuid4().hex}"
        with engine.connect() as connection:
            for statement in self.statements:
                params = statement.params
                if fresh or "INSERT INTO changes" in statement.sql:
                    params = _substitute(params, fresh, "INSERT INTO changes" in statement.sql)
                result = connection.exec_driver_sql(statement.sql, params)
                if result.returns_rows:
                    result.fetchall()
            connection.exec_driver_sql("COMMIT")  # the tool's COMMIT (both drivers are in autocommit mode here)

    def statement(self, *needles: str) -> Statement:
        """The first statement whose SQL contains every one of ``needles`` (without a SET LOCAL sent with it)."""
        found = next(s for s in self.statements if all(needle in s.sql for needle in needles))
        return Statement(statements_in(found.sql)[-1], found.params, found.many)


def _substitute(params: Any, fresh: dict[str, str], request_key: bool) -> Any:
    def one(value: Any) -> Any:
        if isinstance(value, str):
            if value in fresh:
                return fresh[value]
            if request_key and _REQUEST_KEY.match(value):
                return uuid.uuid4().hex
        return value

    if isinstance(params, dict):
        return {k: one(v) for k, v in params.items()}
    if isinstance(params, (list, tuple)) and params and isinstance(params[0], (list, tuple, dict)):
        return [_substitute(p, fresh, request_key) for p in params]
    if isinstance(params, (list, tuple)):
        return type(params)(one(v) for v in params)
    return params


CALLER = Caller(user=USER, default_currency="USD", timezone=ZoneInfo("UTC"))


def service_call(factory: sessionmaker[Session], work: Callable[[Session, Caller], Any]) -> Any:
    """What a tool's function runs: the use case in one transaction (``run_in_transaction``), no MCP."""
    return run_in_transaction(factory, lambda session: work(session, CALLER))


def capture(database: Database, tool: str, work: Callable[[Any, Caller], Any], key: str | None = None) -> CapturedCall:
    """Run a use case as the server's tool does (one transaction through ``run_in_transaction`` on the
    product's engine) and record the statements it sends."""
    engine = database.engine()
    statements: list[Statement] = []
    try:
        with engine.connect():
            pass  # the dialect's first-connect queries are not the tool's

        @event.listens_for(engine, "before_cursor_execute")
        def _record(_conn: Any, _cursor: Any, sql: str, params: Any, _context: Any, many: bool) -> None:
            statements.append(Statement(sql, params, many))

        result = service_call(make_session_factory(engine), work)
    finally:
        engine.dispose()
    return CapturedCall(tool, statements, result, key)


def explain(database: Database, statement: Statement, analyze: bool) -> list[str]:
    """The plan of ``statement`` with its captured parameters: EXPLAIN QUERY PLAN on SQLite, EXPLAIN
    (ANALYZE when asked) on PostgreSQL."""
    engine = database.raw_engine()
    try:
        with engine.connect() as connection:
            if database.backend == "sqlite":
                rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement.sql, statement.params).all()
                depth: dict[int, int] = {0: -1}
                lines = []
                for node, parent, _, detail in rows:
                    depth[node] = depth.get(parent, -1) + 1
                    lines.append("  " * depth[node] + detail)
                return lines
            prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
            rows = connection.exec_driver_sql(prefix + statement.sql, statement.params).all()
            connection.rollback()
            return [row[0] for row in rows]
    finally:
        engine.dispose()
