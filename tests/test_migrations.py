"""Alembic migrations build exactly the models' schema, and the database itself enforces the data rules,
on a fresh SQLite file and on a fresh PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, insert, inspect, select, text
from sqlalchemy.exc import DataError, IntegrityError

from budget_mcp import models
from budget_mcp.config import Settings
from budget_mcp.db import MIGRATIONS_DIR, SCHEMA_HEAD, Base, make_engine, upgrade_schema
from budget_mcp.errors import DatabaseUnavailable
from budget_mcp.schemas import category_key

from conftest import BACKENDS, connect_as
from pgserver import PostgresInstance

TABLES = {
    "users",
    "categories",
    "expenses",
    "budgets",
    "changes",
    "change_items",
    "api_tokens",
    "imports",
    "imported_rows",
    "category_rules",
}


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine, configured as the server configures it, on a brand-new empty database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        name = None
    else:
        postgres: PostgresInstance = request.getfixturevalue("postgres")
        name = f"migrations_{uuid.uuid4().hex[:12]}"
        url = connect_as(request, request.param, postgres.create_database(name))
    engine = make_engine(Settings(database_url=url, _env_file=None).url)  # type: ignore[call-arg]
    try:
        yield engine
    finally:
        engine.dispose()
        if name is not None:
            postgres.drop_database(name)


@pytest.fixture
def migrated(engine: Engine) -> Engine:
    upgrade_schema(engine)
    return engine


def alembic(engine: Engine, action: str, revision: str) -> None:
    """Run ``alembic upgrade|downgrade revision`` on ``engine`` the way the application does."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def schema_differences(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, Base.metadata))


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


# --- rows to write ------------------------------------------------------------------------------------


def add_user(connection: Connection, name: str) -> int:
    return connection.execute(insert(models.User).values(name=name).returning(models.User.id)).scalar_one()


def add_category(connection: Connection, user_id: int, name: str) -> int:
    return connection.execute(
        insert(models.Category)
        .values(user_id=user_id, name=name, name_key=category_key(name))
        .returning(models.Category.id)
    ).scalar_one()


def add_expense(connection: Connection, user_id: int, category_id: int, **overrides: Any) -> int:
    values: dict[str, Any] = {
        "user_id": user_id,
        "category_id": category_id,
        "amount_minor": 1230,
        "currency": "USD",
        "spent_on": date(2026, 3, 14),
        "description": "lunch",
    }
    values.update(overrides)
    return connection.execute(insert(models.Expense).values(**values).returning(models.Expense.id)).scalar_one()


def count(engine: Engine, model: type[Base]) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(model)).scalar_one()


# --- migrations ---------------------------------------------------------------------------------------


def test_upgrading_an_empty_database_yields_exactly_the_models_schema(engine: Engine) -> None:
    assert table_names(engine) == set()
    upgrade_schema(engine)
    assert table_names(engine) == TABLES | {"alembic_version"}
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []


def test_upgrading_twice_is_harmless_and_keeps_the_data(migrated: Engine) -> None:
    with migrated.begin() as connection:
        user_id = add_user(connection, "alice")
        add_expense(connection, user_id, add_category(connection, user_id, "Food"))
    upgrade_schema(migrated)
    assert current_revision(migrated) == head_revision()
    assert schema_differences(migrated) == []
    assert (count(migrated, models.User), count(migrated, models.Category), count(migrated, models.Expense)) == (
        1,
        1,
        1,
    )


def test_the_schema_head_that_start_up_checks_is_the_newest_migration() -> None:
    assert head_revision() == SCHEMA_HEAD


def test_a_database_newer_than_this_budget_mcp_is_refused_with_the_fix_and_left_alone(migrated: Engine) -> None:
    with migrated.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    before = table_names(migrated)
    with pytest.raises(DatabaseUnavailable) as refused:
        upgrade_schema(migrated)
    assert str(refused.value).startswith(
        f"the database's schema is at revision 0999, newer than this budget-mcp knows ({SCHEMA_HEAD}): "
        "upgrade budget-mcp"
    )
    assert (table_names(migrated), current_revision(migrated)) == (before, "0999")


def test_downgrading_to_base_removes_the_schema_and_upgrading_rebuilds_it(migrated: Engine) -> None:
    alembic(migrated, "downgrade", "base")
    assert table_names(migrated) - {"alembic_version"} == set()
    assert current_revision(migrated) is None
    alembic(migrated, "upgrade", "head")
    assert current_revision(migrated) == head_revision()
    assert schema_differences(migrated) == []


# --- what the database enforces by itself -------------------------------------------------------------


def test_an_expense_in_a_missing_category_is_refused_by_a_foreign_key(migrated: Engine) -> None:
    with migrated.begin() as connection:
        user_id = add_user(connection, "alice")
    with pytest.raises(IntegrityError), migrated.begin() as connection:
        add_expense(connection, user_id, category_id=999)
    assert count(migrated, models.Expense) == 0


def test_an_expense_of_a_missing_user_is_refused_by_a_foreign_key(migrated: Engine) -> None:
    with migrated.begin() as connection:
        category_id = add_category(connection, add_user(connection, "alice"), "Food")
    with pytest.raises(IntegrityError), migrated.begin() as connection:
        add_expense(connection, 999, category_id)


def test_a_category_in_use_cannot_be_deleted(migrated: Engine) -> None:
    with migrated.begin() as connection:
        user_id = add_user(connection, "alice")
        category_id = add_category(connection, user_id, "Food")
        add_expense(connection, user_id, category_id)
    with pytest.raises(IntegrityError), migrated.begin() as connection:
        connection.execute(models.Category.__table__.delete().where(models.Category.id == category_id))
    assert count(migrated, models.Category) == 1


@pytest.mark.parametrize("amount_minor", [0, -1, -1230])
def test_the_database_refuses_amounts_that_are_not_positive(migrated: Engine, amount_minor: int) -> None:
    with migrated.begin() as connection:
        user_id = add_user(connection, "alice")
        category_id = add_category(connection, user_id, "Food")
        add_expense(connection, user_id, category_id, amount_minor=1)  # the smallest amount is fine
    with pytest.raises(IntegrityError, match="amount_positive"), migrated.begin() as connection:
        add_expense(connection, user_id, category_id, amount_minor=amount_minor)
    assert count(migrated, models.Expense) == 1


@pytest.mark.parametrize("currency", ["US", "EURO", ""])
def test_the_database_refuses_currency_codes_that_are_not_three_letters(migrated: Engine, currency: str) -> None:
    with migrated.begin() as connection:
        user_id = add_user(connection, "alice")
        category_id = add_category(connection, user_id, "Food")
    # SQLite relies on the CHECK; PostgreSQL's varchar(3) already refuses longer codes (DataError).
    with pytest.raises((IntegrityError, DataError)), migrated.begin() as connection:
        add_expense(connection, user_id, category_id, currency=currency)


def test_an_expense_cannot_reference_another_users_category(migrated: Engine) -> None:
    with migrated.begin() as connection:
        alice = add_user(connection, "alice")
        bob = add_user(connection, "bob")
        alices_food = add_category(connection, alice, "Food")
        bobs_food = add_category(connection, bob, "Food")
        add_expense(connection, alice, alices_food)
    with pytest.raises(IntegrityError), migrated.begin() as connection:
        add_expense(connection, alice, bobs_food)
    assert count(migrated, models.Expense) == 1


@pytest.mark.parametrize(("first", "second"), [("Food", "food"), ("Food", "FOOD"), ("Straße", "STRASSE")])
def test_category_names_are_unique_per_user_regardless_of_case(migrated: Engine, first: str, second: str) -> None:
    with migrated.begin() as connection:
        alice = add_user(connection, "alice")
        bob = add_user(connection, "bob")
        add_category(connection, alice, first)
        add_category(connection, bob, second)  # another user may have the same name
    with pytest.raises(IntegrityError), migrated.begin() as connection:
        add_category(connection, alice, second)
    assert count(migrated, models.Category) == 2


def test_user_names_are_unique(migrated: Engine) -> None:
    with migrated.begin() as connection:
        add_user(connection, "alice")
    with pytest.raises(IntegrityError), migrated.begin() as connection:
        add_user(connection, "alice")


# --- 0002: budgets, the audit log, idempotency keys ---------------------------------------------------


def test_upgrading_a_0001_database_with_data_keeps_every_row_and_never_reuses_an_id(engine: Engine) -> None:
    alembic(engine, "upgrade", "0001")
    with engine.begin() as connection:  # rows written by the first release, through its schema
        user_id = connection.execute(
            text("INSERT INTO users (name, created_at) VALUES ('alice', '2026-01-01') RETURNING id")
        ).scalar_one()
        connection.execute(
            text(
                "INSERT INTO categories (user_id, name, name_key, created_at) VALUES (:u, 'Food', 'food', '2026-01-01')"
            ),
            {"u": user_id},
        )
        category_id = connection.execute(text("SELECT id FROM categories")).scalar_one()
        for amount in (100, 200, 300):
            connection.execute(
                text(
                    "INSERT INTO expenses (user_id, category_id, amount_minor, currency, spent_on, description,"
                    " created_at, updated_at) VALUES (:u, :c, :a, 'USD', '2026-03-14', 'x', '2026-01-01', '2026-01-01')"
                ),
                {"u": user_id, "c": category_id, "a": amount},
            )
    with engine.connect() as connection:
        before = connection.execute(text("SELECT id, amount_minor FROM expenses ORDER BY id")).all()

    upgrade_schema(engine)

    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []
    with engine.begin() as connection:
        assert connection.execute(text("SELECT id, amount_minor FROM expenses ORDER BY id")).all() == before
        newest = before[-1][0]
        connection.execute(text("DELETE FROM expenses WHERE id = :id"), {"id": newest})
        again = add_expense(connection, user_id, category_id)
    assert again > newest  # the deleted row's id stays its own: undo can put the row back under it


def test_an_idempotency_key_is_unique_per_user(migrated: Engine) -> None:
    with migrated.begin() as connection:
        alice, bob = add_user(connection, "alice"), add_user(connection, "bob")
        food_a, food_b = add_category(connection, alice, "Food"), add_category(connection, bob, "Food")
        add_expense(connection, alice, food_a, idempotency_key="k-1")
        add_expense(connection, bob, food_b, idempotency_key="k-1")  # another user's key space
        add_expense(connection, alice, food_a)  # no key: any number of them
        add_expense(connection, alice, food_a)
    with pytest.raises(IntegrityError), migrated.begin() as connection:
        add_expense(connection, alice, food_a, idempotency_key="k-1")


def test_the_database_refuses_a_budget_that_ends_before_it_starts_or_is_not_positive(migrated: Engine) -> None:
    with migrated.begin() as connection:
        alice = add_user(connection, "alice")
        food = add_category(connection, alice, "Food")
    good = {
        "user_id": alice,
        "category_id": food,
        "start_month": date(2026, 3, 1),
        "end_month": None,
        "amount_minor": 40000,
        "currency": "USD",
        "rollover": False,
    }
    for bad in ({"end_month": date(2026, 2, 1)}, {"amount_minor": 0}):
        with pytest.raises(IntegrityError), migrated.begin() as connection:
            connection.execute(insert(models.Budget).values(**{**good, **bad}))
    with migrated.begin() as connection:
        connection.execute(insert(models.Budget).values(**good))
    with pytest.raises(IntegrityError), migrated.begin() as connection:  # one span per category and start month
        connection.execute(insert(models.Budget).values(**good))


# --- 0004: statement imports and category rules -----------------------------------------------------------


def test_upgrading_a_0003_database_with_data_keeps_every_row_and_adds_imports_and_rules(engine: Engine) -> None:
    alembic(engine, "upgrade", "0003")
    with engine.begin() as connection:  # rows written by release 0003, through its schema
        user_id = connection.execute(
            text("INSERT INTO users (name, created_at) VALUES ('alice', '2026-01-01') RETURNING id")
        ).scalar_one()
        category_id = connection.execute(
            text(
                "INSERT INTO categories (user_id, name, name_key, created_at)"
                " VALUES (:u, 'Food', 'food', '2026-01-01') RETURNING id"
            ),
            {"u": user_id},
        ).scalar_one()
        for amount, key in ((100, "k-1"), (200, None), (300, None)):
            connection.execute(
                text(
                    "INSERT INTO expenses (user_id, category_id, amount_minor, currency, spent_on, description,"
                    " idempotency_key, created_at, updated_at)"
                    " VALUES (:u, :c, :a, 'USD', '2026-03-14', 'x', :k, '2026-01-01', '2026-01-01')"
                ),
                {"u": user_id, "c": category_id, "a": amount, "k": key},
            )
        connection.execute(
            text("INSERT INTO changes (user_id, changed_at, tool, summary) VALUES (:u, '2026-01-01', 't', 's')"),
            {"u": user_id},
        )
    with engine.connect() as connection:
        before = connection.execute(text("SELECT id, amount_minor, idempotency_key FROM expenses ORDER BY id")).all()

    upgrade_schema(engine)

    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []
    with engine.begin() as connection:
        assert (
            connection.execute(text("SELECT id, amount_minor, idempotency_key FROM expenses ORDER BY id")).all()
            == before
        )
        assert connection.execute(text("SELECT count(*) FROM expenses WHERE import_id IS NULL")).scalar_one() == 3
        change_id = connection.execute(text("SELECT id FROM changes")).scalar_one()
        import_id = connection.execute(
            insert(models.StatementImport)
            .values(
                user_id=user_id, source="checking", added=1, duplicates=0, rejected=0, credits=0, change_id=change_id
            )
            .returning(models.StatementImport.id)
        ).scalar_one()
        newest = before[-1][0]
        connection.execute(text("DELETE FROM expenses WHERE id = :id"), {"id": newest})
        imported = add_expense(connection, user_id, category_id, import_id=import_id)
        connection.execute(
            insert(models.ImportedRow).values(
                user_id=user_id, fingerprint="f" * 64, import_id=import_id, expense_id=imported
            )
        )
        connection.execute(
            insert(models.CategoryRule).values(
                user_id=user_id, pattern="Deli", pattern_key="deli", category_id=category_id
            )
        )
    assert imported > newest  # the rebuilt expenses table still never reuses an id


def test_a_statement_row_is_imported_once_per_user_and_its_fingerprint_outlives_its_expense(migrated: Engine) -> None:
    with migrated.begin() as connection:
        alice, bob = add_user(connection, "alice"), add_user(connection, "bob")
        food_a, food_b = add_category(connection, alice, "Food"), add_category(connection, bob, "Food")
        imports = {
            user: connection.execute(
                insert(models.StatementImport)
                .values(user_id=user, source="s", added=1, duplicates=0, rejected=0, credits=0)
                .returning(models.StatementImport.id)
            ).scalar_one()
            for user in (alice, bob)
        }
        expense = add_expense(connection, alice, food_a, import_id=imports[alice])
        for user, category in ((alice, food_a), (bob, food_b)):  # another user's fingerprints are their own
            connection.execute(
                insert(models.ImportedRow).values(
                    user_id=user,
                    fingerprint="a" * 64,
                    import_id=imports[user],
                    expense_id=expense if user == alice else add_expense(connection, bob, category),
                )
            )
    with pytest.raises(IntegrityError), migrated.begin() as connection:
        connection.execute(
            insert(models.ImportedRow).values(user_id=alice, fingerprint="a" * 64, import_id=imports[alice])
        )
    with migrated.begin() as connection:
        connection.execute(models.Expense.__table__.delete().where(models.Expense.id == expense))
        kept = connection.execute(
            select(models.ImportedRow.expense_id).where(models.ImportedRow.user_id == alice)
        ).scalar_one()
    assert kept is None  # the fingerprint stays (a re-import does not bring the expense back); the link goes


def test_a_category_rule_is_unique_per_pattern_and_keeps_its_category_from_being_deleted(migrated: Engine) -> None:
    with migrated.begin() as connection:
        alice = add_user(connection, "alice")
        food = add_category(connection, alice, "Food")
        connection.execute(
            insert(models.CategoryRule).values(user_id=alice, pattern="Deli", pattern_key="deli", category_id=food)
        )
    with pytest.raises(IntegrityError), migrated.begin() as connection:
        connection.execute(
            insert(models.CategoryRule).values(user_id=alice, pattern="DELI", pattern_key="deli", category_id=food)
        )
    with pytest.raises(IntegrityError), migrated.begin() as connection:
        connection.execute(models.Category.__table__.delete().where(models.Category.id == food))


# --- 0005: the category index holds currency and amount --------------------------------------------------

COVERING = ["user_id", "category_id", "spent_on", "id", "currency", "amount_minor"]


def test_upgrading_a_0004_database_keeps_every_expense_and_widens_the_category_index(engine: Engine) -> None:
    alembic(engine, "upgrade", "0004")
    with engine.begin() as connection:
        user_id = add_user(connection, "alice")
        food, rent = add_category(connection, user_id, "Food"), add_category(connection, user_id, "Rent")
        for category_id, amount, currency in ((food, 1230, "USD"), (food, 450, "EUR"), (rent, 90000, "USD")):
            add_expense(connection, user_id, category_id, amount_minor=amount, currency=currency)
    with engine.connect() as connection:
        before = connection.execute(text("SELECT * FROM expenses ORDER BY id")).all()

    upgrade_schema(engine)

    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []
    indexes = {index["name"]: index["column_names"] for index in inspect(engine).get_indexes("expenses")}
    assert indexes["ix_expenses_by_category"] == COVERING
    assert "ix_expenses_user_id_category_id_spent_on_id" not in indexes  # replaced, not kept beside it
    with engine.connect() as connection:
        assert connection.execute(text("SELECT * FROM expenses ORDER BY id")).all() == before
    alembic(engine, "downgrade", "0004")
    indexes = {index["name"]: index["column_names"] for index in inspect(engine).get_indexes("expenses")}
    assert indexes["ix_expenses_user_id_category_id_spent_on_id"] == COVERING[:4]
    assert "ix_expenses_by_category" not in indexes


def test_on_sqlite_a_categorys_totals_are_read_from_the_index_alone(tmp_path: Path) -> None:
    engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'b.sqlite3'}", _env_file=None).url)  # type: ignore[call-arg]
    try:
        upgrade_schema(engine)
        with engine.connect() as connection:
            plan = connection.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT currency, count(*), sum(amount_minor) FROM expenses"
                    " WHERE user_id = 1 AND category_id = 2 GROUP BY currency"
                )
            ).all()
        assert any("COVERING INDEX ix_expenses_by_category" in row[-1] for row in plan), plan
    finally:
        engine.dispose()
