"""create_expense with an idempotency_key: a retry returns the first expense, once, on SQLite and PostgreSQL,
including retries racing each other through the server's real transaction path."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest
from mcp import Client
from sqlalchemy import Engine, event, text

from budget_mcp import service
from budget_mcp.config import Settings
from budget_mcp.db import make_engine, make_session_factory
from budget_mcp.schemas import NewExpense
from budget_mcp.server import build_server
from budget_mcp.transactions import migrate

from conftest import make_settings
from helpers import LUNCH, fails, ok, seed_categories, snapshot, statements_in

pytestmark = pytest.mark.anyio

KEY = "0b6a4f1e-retry-lunch"


def stored_with_key(engine: Engine, key: str = KEY) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT e.id, u.name FROM expenses e JOIN users u ON u.id = e.user_id "
                "WHERE e.idempotency_key = :key ORDER BY e.id"
            ),
            {"key": key},
        )
        return [tuple(row) for row in found]


def logged_creations(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM changes WHERE tool = 'create_expense'")).scalar_one()


async def test_the_same_key_twice_returns_the_first_expense_and_stores_it_once(client: Client, db: Engine) -> None:
    await seed_categories(client, "Food")
    first = await ok(client, "create_expense", **LUNCH, idempotency_key=KEY)
    again = await ok(client, "create_expense", **LUNCH, idempotency_key=KEY)
    assert again == first
    assert stored_with_key(db) == [(first["id"], "alice")]
    assert logged_creations(db) == 1
    assert [c["tool"] for c in (await ok(client, "list_changes"))["changes"]] == ["create_expense", "create_category"]


@pytest.mark.parametrize(
    "same",
    [
        {"spent_on": None},
        {"amount": 12.3},
        {"amount": "12.30", "currency": "usd"},
        {"category": "FOOD"},
    ],
    ids=["spent_on-omitted", "amount-as-number", "currency-spelled-out", "category-in-another-case"],
)
async def test_a_retry_that_asks_for_the_same_expense_in_other_words_still_matches(
    client: Client, db: Engine, same: dict[str, Any]
) -> None:
    await seed_categories(client, "Food")
    first = await ok(client, "create_expense", **LUNCH, idempotency_key=KEY)
    retry = {k: v for k, v in ({**LUNCH, **same}).items() if v is not None}
    before = snapshot(db)
    assert await ok(client, "create_expense", **retry, idempotency_key=KEY) == first
    assert snapshot(db) == before
    assert first["spent_on"] == LUNCH["spent_on"]


@pytest.mark.parametrize(
    "different",
    [
        {"amount": "12.31"},
        {"description": "Dinner"},
        {"category": "Fun"},
        {"spent_on": "2026-03-15"},
        {"currency": "EUR"},
        {"merchant": "Other Deli"},
        {"notes": "alone"},
    ],
    ids=lambda d: next(iter(d)),
)
async def test_the_same_key_with_different_details_is_refused_naming_the_first_expense(
    client: Client, db: Engine, different: dict[str, Any]
) -> None:
    await seed_categories(client, "Food", "Fun")
    first = await ok(client, "create_expense", **LUNCH, idempotency_key=KEY)
    before = snapshot(db)
    message = await fails(client, "create_expense", **{**LUNCH, **different}, idempotency_key=KEY)
    assert f"idempotency_key {KEY!r} was already used for a different expense (id {first['id']}:" in message
    assert "12.30 USD 'Lunch' on 2026-03-14" in message and "use a new key" in message
    assert snapshot(db) == before


async def test_the_key_is_per_user(client: Client, database_url: str, db: Engine) -> None:
    await seed_categories(client, "Food")
    alices = await ok(client, "create_expense", **LUNCH, idempotency_key=KEY)
    async with Client(build_server(make_settings(database_url, user="bob"))) as bob:
        await seed_categories(bob, "Food")
        bobs = await ok(bob, "create_expense", **{**LUNCH, "amount": "99"}, idempotency_key=KEY)
        assert await ok(bob, "create_expense", **{**LUNCH, "amount": "99"}, idempotency_key=KEY) == bobs
    assert bobs["id"] != alices["id"]
    assert stored_with_key(db) == [(alices["id"], "alice"), (bobs["id"], "bob")]
    assert await ok(client, "create_expense", **LUNCH, idempotency_key=KEY) == alices


async def test_without_a_key_the_same_call_records_a_second_expense(client: Client, db: Engine) -> None:
    await seed_categories(client, "Food")
    first = await ok(client, "create_expense", **LUNCH)
    second = await ok(client, "create_expense", **LUNCH)
    assert first["id"] != second["id"]
    assert logged_creations(db) == 2


async def test_after_the_first_expense_is_deleted_its_key_records_a_new_one(client: Client, db: Engine) -> None:
    await seed_categories(client, "Food")
    first = await ok(client, "create_expense", **LUNCH, idempotency_key=KEY)
    await ok(client, "delete_expense", expense_id=first["id"])
    second = await ok(client, "create_expense", **LUNCH, idempotency_key=KEY)
    assert second["id"] != first["id"]
    assert stored_with_key(db) == [(second["id"], "alice")]


RACERS = 8


async def test_concurrent_retries_with_one_key_store_one_expense_and_all_get_it(
    client: Client, settings: Settings, db: Engine
) -> None:
    await seed_categories(client, "Food")  # the server has migrated the database and created alice
    engine = make_engine(settings.url)
    factory = make_session_factory(engine)
    caller = service.Caller(user="alice", default_currency="USD", timezone=ZoneInfo("UTC"))
    new = NewExpense(
        amount=Decimal("12.30"), description="Lunch", category="Food", spent_on="2026-03-14", merchant="Deli"
    )
    start = threading.Barrier(RACERS, timeout=60)

    def retry() -> int:
        start.wait()
        with factory.begin() as session:  # what the server's _transaction does for one tool call
            return service.create_expense(session, caller, new, KEY).id

    try:
        with ThreadPoolExecutor(max_workers=RACERS) as pool:
            futures = [pool.submit(retry) for _ in range(RACERS)]
            ids = [future.result(timeout=120) for future in futures]
    finally:
        engine.dispose()
    assert len(set(ids)) == 1
    assert stored_with_key(db) == [(ids[0], "alice")]
    assert logged_creations(db) == 1
    fetched = await ok(client, "get_expense", expense_id=ids[0])
    assert (fetched["amount"], fetched["description"], fetched["merchant"]) == ("12.30", "Lunch", "Deli")


async def test_a_new_key_costs_one_read_and_a_repeated_one_no_failed_statement_or_savepoint(
    client: Client, settings: Settings, db: Engine
) -> None:
    await seed_categories(client, "Food")
    engine = make_engine(settings.url)
    sent: list[str] = []
    failed: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        sent.extend(statement.split()[0].upper() for statement in statements_in(sql))

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        failed.append(str(context.original_exception))

    caller = service.Caller(user="alice", default_currency="USD", timezone=ZoneInfo("UTC"))
    calls: list[list[str]] = []
    try:
        for _ in range(2):
            sent.clear()
            with make_session_factory(engine).begin() as session:
                answer = service.create_expense(session, caller, NewExpense(**LUNCH), KEY)
            calls.append([verb for verb in sent if verb not in ("BEGIN", "SET")])
    finally:
        engine.dispose()
    first, repeat = calls
    if settings.url.get_backend_name() == "postgresql":  # one round trip each: a remote database is far away
        assert first == ["WITH", "WITH"]  # the category found and the expense inserted; the change and its item
        assert repeat == ["WITH", "SELECT", "SELECT"]  # the insert did nothing: then the first expense and its change
    else:
        assert first == ["SELECT", "INSERT", "INSERT", "INSERT"]  # the category (user joined in); no search for the key
        assert repeat == ["SELECT", "INSERT", "SELECT", "SELECT"]
    assert "SAVEPOINT" not in first + repeat and not failed  # ON CONFLICT DO NOTHING: no error to recover from
    assert stored_with_key(db) == [(answer.id, "alice")]
    assert logged_creations(db) == 1


def test_without_returning_as_on_sqlite_before_3_35_a_key_still_stores_one_expense(
    settings: Settings, db: Engine
) -> None:
    migrate(settings)
    engine = make_engine(settings.url)
    engine.dialect.insert_returning = False  # what SQLAlchemy sets for SQLite < 3.35 (and RHEL 9's Python links 3.34)
    caller = service.Caller(user="alice", default_currency="USD", timezone=ZoneInfo("UTC"))
    try:
        with make_session_factory(engine).begin() as session:
            service.create_category(session, caller, "Food")
        answers = []
        for _ in range(2):
            with make_session_factory(engine).begin() as session:
                answers.append(service.create_expense(session, caller, NewExpense(**LUNCH), KEY))
        with make_session_factory(engine).begin() as session:
            plain = service.create_expense(session, caller, NewExpense(**LUNCH))
    finally:
        engine.dispose()
    first, again = answers
    assert again == first and first.change_id is not None and (first.amount, first.description) == ("12.30", "Lunch")
    assert stored_with_key(db) == [(first.id, "alice")]
    assert plain.id != first.id and logged_creations(db) == 2


async def test_concurrent_retries_through_the_protocol_store_one_expense(client: Client, db: Engine) -> None:
    await seed_categories(client, "Food")
    results: list[dict[str, Any]] = []

    async def retry() -> None:
        results.append(await ok(client, "create_expense", **LUNCH, idempotency_key=KEY))

    async with anyio.create_task_group() as group:
        for _ in range(RACERS):
            group.start_soon(retry)
    assert len({r["id"] for r in results}) == 1 and len(results) == RACERS
    assert stored_with_key(db) == [(results[0]["id"], "alice")]
    assert logged_creations(db) == 1
