"""Bad input: a clear error, nothing changed.

Every tool answers a bad call with an error result whose message tells the model how to fix the call,
never leaks SQL, driver text or a traceback, and leaves every table exactly as it was.

Most tests here only make calls that must be refused, so they share one seeded database per backend
(a fresh SQLite file, and a database of its own on the test PostgreSQL) instead of migrating and seeding
hundreds of times. Each call still compares a snapshot of every table before and after, and if a test
leaves the shared database changed anyway (a product bug), it is wiped and seeded again for the next one.
Tests that need to write use the ordinary per-test ``client``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from mcp import Client
from sqlalchemy import Engine, text

from budget_mcp.db import Base, make_engine
from budget_mcp.server import build_server

from conftest import BACKENDS, connect_as, make_settings
from helpers import LUNCH, as_stored, fails, ok, seed_categories, snapshot

pytestmark = pytest.mark.anyio

# Text that must never reach the model: SQL, driver or ORM names, stack traces.
INTERNALS = re.compile(
    r"SELECT |INSERT INTO|DELETE FROM|UPDATE \w+ SET| WHERE |\[SQL:|psycopg|sqlite3|sqlalchemy|Traceback"
    r"|OverflowError|IntegrityError|DataError|StringDataRightTruncation",
)
# The bare text the SDK sends when a tool raises something other than ToolError: it says nothing useful.
UNEXPLAINED = re.compile(r"^Error executing tool \w+$")

CURSOR_HINT = "cursor is not valid here"


def assert_helpful(message: str) -> None:
    """An error an agent can act on: no internals, and more than the bare "Error executing tool x"."""
    assert not INTERNALS.search(message), f"error leaks internals: {message!r}"
    assert not UNEXPLAINED.match(message.strip()), f"error says nothing about the cause: {message!r}"


async def refused(client: Client, db: Engine, tool: str, /, **arguments: Any) -> str:
    """Call ``tool`` expecting an error result that is helpful and changed no row; return its message."""
    before = snapshot(db)
    message = await fails(client, tool, **arguments)
    assert_helpful(message)
    assert snapshot(db) == before, f"{tool} failed ({message!r}) but changed the database"
    return message


def forged_cursor(kind: str, position: Any) -> str:
    """A cursor in the server's own encoding, with a position the server would never hand out."""
    raw = json.dumps([kind, position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _expense_args(**overrides: Any) -> dict[str, Any]:
    return {"amount": "5", "description": "tea", "category": "Food", "spent_on": "2026-03-14"} | overrides


# --- the shared, seeded database ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope, so that the shared client below can live across tests


@pytest.fixture(scope="module", params=BACKENDS)
def shared_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('validation') / 'budget.sqlite3'}"
        return
    postgres = request.getfixturevalue("postgres")
    postgres.drop_database("budget_validation")
    url = connect_as(request, request.param, postgres.create_database("budget_validation"))
    try:
        yield url
    finally:
        postgres.drop_database("budget_validation")


@dataclass
class Seeded:
    """A connected client on a database holding four categories and three expenses."""

    client: Client
    db: Engine
    backend: str
    expense: dict[str, Any]  # Food, 12.30 USD on 2026-03-14, with merchant and notes
    pristine: dict[str, list[tuple[Any, ...]]]

    async def refuse(self, tool: str, /, **arguments: Any) -> str:
        return await refused(self.client, self.db, tool, **arguments)

    async def seed(self) -> None:
        await seed_categories(self.client, "Food", "Fuel", "Gifts", "Rent")
        self.expense = await ok(self.client, "create_expense", **LUNCH)
        for day in ("2026-03-01", "2026-04-01"):
            await ok(self.client, "create_expense", **_expense_args(category="Fuel", spent_on=day))
        self.pristine = snapshot(self.db)

    async def reseed(self) -> None:
        with self.db.begin() as connection:
            if self.backend == "postgresql":
                tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
                connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            else:
                for table in reversed(Base.metadata.sorted_tables):
                    connection.execute(table.delete())
        await self.seed()


@pytest.fixture(scope="module")
async def shared(shared_url: str) -> AsyncIterator[Seeded]:
    settings = make_settings(shared_url)
    engine = make_engine(settings.url)
    try:
        async with Client(build_server(settings)) as client:
            backend = "postgresql" if shared_url.startswith("postgres") else "sqlite"
            seeded = Seeded(client=client, db=engine, backend=backend, expense={}, pristine={})
            await seeded.seed()
            yield seeded
    finally:
        engine.dispose()


@pytest.fixture
async def seeded(shared: Seeded) -> AsyncIterator[Seeded]:
    """The shared database, as seeded; put back if the test (through a product bug) changed it."""
    yield shared
    if snapshot(shared.db) != shared.pristine:
        await shared.reseed()


# --- amounts ------------------------------------------------------------------------------------------

BAD_AMOUNTS = [
    pytest.param(0, "greater than 0", id="zero"),
    pytest.param("0.00", "greater than 0", id="zero-string"),
    pytest.param(-5, "greater than 0", id="negative"),
    pytest.param("-0.01", "greater than 0", id="negative-cent"),
    pytest.param("NaN", "finite number", id="NaN"),
    pytest.param("Infinity", "finite number", id="Infinity"),
    pytest.param("-Infinity", "finite number", id="minus-Infinity"),
    pytest.param("abc", "valid decimal", id="word"),
    pytest.param("12,30", "valid decimal", id="decimal-comma"),
    pytest.param("$5", "valid decimal", id="currency-sign"),
    pytest.param("", "valid decimal", id="empty-string"),
    pytest.param(True, "should be an integer, float, string or Decimal", id="boolean"),
    pytest.param([5], "should be an integer, float, string or Decimal", id="list"),
    pytest.param("1e30", "less than or equal to 1000000000", id="1e30"),
    pytest.param(10**12, "less than or equal to 1000000000", id="10**12"),
    pytest.param("1e400", "less than or equal to 1000000000", id="1e400"),
    pytest.param("1000000000.01", "less than or equal to 1000000000", id="just-over-the-maximum"),
]


@pytest.mark.parametrize(
    ("amount", "phrase"),
    [*BAD_AMOUNTS, pytest.param(None, "should be an integer, float, string or Decimal", id="null")],
)
async def test_create_expense_refuses_an_amount_that_is_not_a_positive_finite_number_in_range(
    seeded: Seeded, amount: Any, phrase: str
) -> None:
    message = await seeded.refuse("create_expense", **_expense_args(amount=amount))
    assert "amount" in message
    assert phrase in message


@pytest.mark.parametrize(("amount", "phrase"), BAD_AMOUNTS)  # (null means "leave unchanged" here)
async def test_update_expense_refuses_the_same_bad_amounts(seeded: Seeded, amount: Any, phrase: str) -> None:
    message = await seeded.refuse("update_expense", expense_id=seeded.expense["id"], amount=amount)
    assert "amount" in message
    assert phrase in message


TOO_PRECISE = [
    pytest.param("USD", "1.234", "USD allows at most 2 decimal places", id="USD-1.234"),
    pytest.param("USD", 1.234, "USD allows at most 2 decimal places", id="USD-1.234-as-number"),
    pytest.param("USD", 0.30000000000000004, "USD allows at most 2 decimal places", id="USD-float-noise"),
    pytest.param("USD", "0.001", "USD allows at most 2 decimal places", id="USD-a-tenth-of-a-cent"),
    pytest.param("JPY", "0.5", "JPY allows no decimals", id="JPY-0.5"),
    pytest.param("JPY", "100.1", "JPY allows no decimals", id="JPY-100.1"),
    pytest.param("KWD", "1.2345", "KWD allows at most 3 decimal places", id="KWD-1.2345"),
    pytest.param("EUR", "1e-2000", "EUR allows at most 2 decimal places", id="EUR-tiny-exponent"),
    # Decimal arithmetic rounds to 28 significant digits: these are silently rounded to a valid amount.
    pytest.param(
        "USD",
        "1.0000000000000000000000000001",
        "USD allows at most 2 decimal places",
        id="USD-29-significant-digits",
    ),
    pytest.param(
        "USD",
        "999999999.99999999999999999999",
        "USD allows at most 2 decimal places",
        id="USD-rounded-up-to-the-maximum",
    ),
    pytest.param(
        "USD",
        "1e-999999999",
        "USD allows at most 2 decimal places",
        id="USD-underflows-to-zero",
    ),
]


@pytest.mark.parametrize(("currency", "amount", "phrase"), TOO_PRECISE)
async def test_an_amount_with_more_decimals_than_its_currency_has_is_refused(
    seeded: Seeded, currency: str, amount: Any, phrase: str
) -> None:
    message = await seeded.refuse("create_expense", **_expense_args(amount=amount, currency=currency))
    assert "too many decimals" in message
    assert phrase in message


@pytest.mark.parametrize(("currency", "amount", "phrase"), TOO_PRECISE)
async def test_update_expense_refuses_an_amount_its_currency_cannot_hold(
    seeded: Seeded, currency: str, amount: Any, phrase: str
) -> None:
    expense_id = seeded.expense["id"]
    message = await seeded.refuse("update_expense", expense_id=expense_id, amount=amount, currency=currency)
    assert phrase in message


async def test_an_amount_that_trips_the_databases_own_check_is_refused_without_sql_or_driver_text(
    seeded: Seeded,
) -> None:
    # Today this amount slips past validation (see USD-underflows-to-zero above) and reaches the CHECK
    # constraint amount_minor > 0, so it exercises the server's translation of database errors.
    message = await seeded.refuse("create_expense", **_expense_args(amount="1e-999999999"))
    assert "ck_expenses" not in message and "CHECK" not in message and "constraint" not in message


# --- currencies ---------------------------------------------------------------------------------------

BAD_CURRENCIES = [
    pytest.param("ABC", "unknown currency 'ABC'; use a three-letter ISO 4217 code", id="unknown-ABC"),
    pytest.param("XXX", "XXX is not a spendable currency", id="no-currency-XXX"),
    pytest.param("XAU", "XAU is not a spendable currency", id="gold-XAU"),
    pytest.param("usd1", "at most 3 characters", id="four-characters"),
    pytest.param("US", "at least 3 characters", id="two-letters"),
    pytest.param("", "at least 3 characters", id="empty"),
    pytest.param("12$", "should match pattern", id="not-letters"),
    pytest.param(840, "valid string", id="numeric-code"),
]


@pytest.mark.parametrize(("currency", "phrase"), BAD_CURRENCIES)
async def test_create_expense_refuses_a_currency_that_is_not_a_spendable_iso_code(
    seeded: Seeded, currency: Any, phrase: str
) -> None:
    message = await seeded.refuse("create_expense", **_expense_args(currency=currency))
    assert "currency" in message
    assert phrase in message


@pytest.mark.parametrize(("currency", "phrase"), BAD_CURRENCIES)
async def test_update_expense_refuses_a_currency_that_is_not_a_spendable_iso_code(
    seeded: Seeded, currency: Any, phrase: str
) -> None:
    message = await seeded.refuse("update_expense", expense_id=seeded.expense["id"], currency=currency)
    assert "currency" in message
    assert phrase in message


# --- dates --------------------------------------------------------------------------------------------

BAD_DATES = [
    pytest.param("2026-02-30", "2026-02-30 is not a real calendar date", id="february-30"),
    pytest.param("2026-13-01", "2026-13-01 is not a real calendar date", id="month-13"),
    pytest.param("0000-01-01", "0000-01-01 is not a real calendar date", id="year-zero"),
    pytest.param("yesterday", "expected a date written YYYY-MM-DD", id="yesterday"),
    pytest.param("14/03/2026", "expected a date written YYYY-MM-DD", id="day-month-year"),
    pytest.param("2026-3-14", "expected a date written YYYY-MM-DD", id="unpadded"),
    pytest.param("2026-03-14T09:30:00", "expected a date written YYYY-MM-DD", id="timestamp"),
    pytest.param(20260314, "expected a date written YYYY-MM-DD", id="number"),
    pytest.param("", "expected a date written YYYY-MM-DD", id="empty"),
]

# Every place a date goes in: (tool, argument, the other arguments of a call that is otherwise fine).
DATE_SLOTS = [
    pytest.param("create_expense", "spent_on", _expense_args(), id="create_expense.spent_on"),
    pytest.param("update_expense", "spent_on", {}, id="update_expense.spent_on"),
    pytest.param("summarize_spending", "start_date", {"end_date": "2026-12-31"}, id="summarize.start_date"),
    pytest.param("summarize_spending", "end_date", {"start_date": "2026-01-01"}, id="summarize.end_date"),
    pytest.param("query_expenses_by_category", "start_date", {"category": "Food"}, id="query.start_date"),
    pytest.param("query_expenses_by_category", "end_date", {"category": "Food"}, id="query.end_date"),
    pytest.param("search_expenses", "start_date", {}, id="search.start_date"),
    pytest.param("search_expenses", "end_date", {}, id="search.end_date"),
    pytest.param("top_expenses", "start_date", {"end_date": "2026-12-31"}, id="top.start_date"),
    pytest.param("compare_periods", "end_date", {"start_date": "2026-01-01"}, id="compare.end_date"),
    pytest.param(
        "compare_periods",
        "baseline_start_date",
        {"baseline_end_date": "2026-12-31"},
        id="compare.baseline_start_date",
    ),
]


def _call(seeded: Seeded, tool: str, others: dict[str, Any], **values: Any) -> dict[str, Any]:
    """The arguments of an otherwise fine call to ``tool`` with ``values`` put in."""
    arguments = others | values
    if tool == "update_expense":
        arguments["expense_id"] = seeded.expense["id"]
    return arguments


@pytest.mark.parametrize(("value", "phrase"), BAD_DATES)
@pytest.mark.parametrize(("tool", "field", "others"), DATE_SLOTS)
async def test_every_tool_refuses_a_date_that_is_not_a_real_yyyy_mm_dd_day(
    seeded: Seeded, tool: str, field: str, others: dict[str, Any], value: Any, phrase: str
) -> None:
    message = await seeded.refuse(tool, **_call(seeded, tool, others, **{field: value}))
    assert field in message
    assert phrase in message


def _in_other_digits(zero: str, iso: str) -> str:
    """``iso`` written in another script's digits, given that script's zero."""
    return "".join(chr(ord(zero) + int(ch)) if ch.isdigit() else ch for ch in iso)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(_in_other_digits("\u0660", "2026-03-14"), id="arabic-indic"),
        pytest.param(_in_other_digits("\uff10", "2026-03-14"), id="full-width"),
    ],
)
async def test_a_date_in_non_ascii_digits_is_refused_asking_for_yyyy_mm_dd(seeded: Seeded, value: str) -> None:
    message = await seeded.refuse("create_expense", **_expense_args(spent_on=value))
    assert "expected a date written YYYY-MM-DD" in message


@pytest.mark.parametrize(
    ("tool", "others"),
    [
        pytest.param("summarize_spending", {}, id="summarize_spending"),
        pytest.param("query_expenses_by_category", {"category": "Food"}, id="query_expenses_by_category"),
    ],
)
async def test_a_period_that_ends_before_it_starts_is_refused_with_a_hint_to_swap(
    seeded: Seeded, tool: str, others: dict[str, Any]
) -> None:
    message = await seeded.refuse(tool, start_date="2026-03-15", end_date="2026-03-14", **others)
    assert "start_date 2026-03-15 is after end_date 2026-03-14; swap them" in message


async def test_a_one_day_period_is_not_mistaken_for_a_reversed_one(seeded: Seeded) -> None:
    summary = await ok(seeded.client, "summarize_spending", start_date="2026-03-14", end_date="2026-03-14")
    assert summary["count"] == 1


# --- text ---------------------------------------------------------------------------------------------

# Every single-line text input: (tool, argument, its maximum length, the rest of an otherwise fine call).
SINGLE_LINE_SLOTS = [
    pytest.param("create_expense", "description", 500, _expense_args(), id="create_expense.description"),
    pytest.param("create_expense", "merchant", 200, _expense_args(), id="create_expense.merchant"),
    pytest.param("create_expense", "category", 64, _expense_args(), id="create_expense.category"),
    pytest.param("update_expense", "description", 500, {}, id="update_expense.description"),
    pytest.param("update_expense", "merchant", 200, {}, id="update_expense.merchant"),
    pytest.param("update_expense", "category", 64, {}, id="update_expense.category"),
    pytest.param("create_category", "name", 64, {}, id="create_category.name"),
    pytest.param("query_expenses_by_category", "category", 64, {}, id="query.category"),
]
MULTI_LINE_SLOTS = [
    pytest.param("create_expense", "notes", 2000, _expense_args(), id="create_expense.notes"),
    pytest.param("update_expense", "notes", 2000, {}, id="update_expense.notes"),
]

BAD_TEXT_ANYWHERE = [
    pytest.param("", "at least 1 character", id="empty"),
    pytest.param("   ", "must not be empty or only white space", id="spaces"),
    pytest.param(" \t\n\u3000 ", "must not be empty or only white space", id="mixed-white-space"),
    pytest.param("a\x00b", "must not contain control characters (found U+0000)", id="NUL"),
    pytest.param("a\x07b", "must not contain control characters (found U+0007)", id="BEL"),
    pytest.param("a\x1b[31mred", "must not contain control characters (found U+001B)", id="ANSI-escape"),
    pytest.param("a\x7fb", "must not contain control characters (found U+007F)", id="DEL"),
    pytest.param("a\rb", "must not contain control characters (found U+000D)", id="lone-CR"),
    pytest.param("a\ud800b", "valid string", id="lone-surrogate"),
]
BAD_TEXT_SINGLE_LINE = [
    pytest.param("line\nbreak", "(found U+000A); use one line of plain text", id="newline"),
    pytest.param("tab\tseparated", "(found U+0009); use one line of plain text", id="tab"),
    pytest.param("line\u2028separator", "(found U+2028); use one line of plain text", id="line-separator"),
    pytest.param("para\u2029separator", "(found U+2029); use one line of plain text", id="paragraph-separator"),
]


@pytest.mark.parametrize(("value", "phrase"), BAD_TEXT_ANYWHERE + BAD_TEXT_SINGLE_LINE)
@pytest.mark.parametrize(("tool", "field", "maximum", "others"), SINGLE_LINE_SLOTS)
async def test_single_line_text_must_be_one_non_blank_line_without_control_characters(
    seeded: Seeded, tool: str, field: str, maximum: int, others: dict[str, Any], value: str, phrase: str
) -> None:
    message = await seeded.refuse(tool, **_call(seeded, tool, others, **{field: value}))
    assert field in message
    assert phrase in message


@pytest.mark.parametrize(("value", "phrase"), BAD_TEXT_ANYWHERE)
@pytest.mark.parametrize(("tool", "field", "maximum", "others"), MULTI_LINE_SLOTS)
async def test_notes_must_not_be_blank_or_contain_control_characters_other_than_newline_and_tab(
    seeded: Seeded, tool: str, field: str, maximum: int, others: dict[str, Any], value: str, phrase: str
) -> None:
    message = await seeded.refuse(tool, **_call(seeded, tool, others, **{field: value}))
    assert field in message
    assert phrase in message


@pytest.mark.parametrize(("tool", "field", "maximum", "others"), SINGLE_LINE_SLOTS + MULTI_LINE_SLOTS)
async def test_text_longer_than_its_limit_is_refused_naming_the_limit(
    seeded: Seeded, tool: str, field: str, maximum: int, others: dict[str, Any]
) -> None:
    too_long = "é" * (maximum + 1)  # characters, not bytes, are counted
    message = await seeded.refuse(tool, **_call(seeded, tool, others, **{field: too_long}))
    assert field in message
    assert f"at most {maximum} characters" in message


async def test_text_exactly_at_each_limit_is_stored_whole(client: Client) -> None:
    category = "C" * 63 + "é"
    await seed_categories(client, category)
    created = await ok(
        client,
        "create_expense",
        amount=1,
        category=category,
        description="d" * 499 + "€",
        merchant="m" * 199 + "ß",
        notes=("n" * 99 + "\n") * 20,  # 2000 characters; the last newline is trimmed
    )
    fetched = await ok(client, "get_expense", expense_id=created["id"])
    assert fetched == as_stored(created)
    assert fetched["category"] == category
    assert (len(fetched["description"]), len(fetched["merchant"]), len(fetched["notes"])) == (500, 200, 1999)


async def test_notes_may_span_several_lines_and_keep_their_tabs(client: Client) -> None:
    await seed_categories(client, "Food")
    notes = "split with Sam\n\tSam paid the tip\nreceipt in the drawer"
    created = await ok(client, "create_expense", amount=1, description="dinner", category="Food", notes=notes)
    assert created["notes"] == notes
    updated = await ok(client, "update_expense", expense_id=created["id"], notes="first\r\nsecond")
    assert updated["notes"] == "first\nsecond"  # Windows line ends are kept as plain newlines
    assert (await ok(client, "get_expense", expense_id=created["id"]))["notes"] == "first\nsecond"


async def test_outer_white_space_is_trimmed_rather_than_refused(client: Client) -> None:
    await seed_categories(client, "  Food  ")
    created = await ok(client, "create_expense", amount=1, description="  tea ", category=" food", merchant=" Deli ")
    assert (created["category"], created["description"], created["merchant"]) == ("Food", "tea", "Deli")


async def test_a_category_name_that_grows_too_long_when_normalised_is_refused_on_every_backend(
    client: Client, db: Engine
) -> None:
    # U+FDFA is one character that NFKC spells with 18: 64 of them would make a 1152-character name_key.
    await seed_categories(client, "Food")
    before = snapshot(db)
    message = await fails(client, "create_category", name="\ufdfa" * 64)
    assert_helpful(message)
    assert "too long once normalised" in message
    assert snapshot(db) == before


# --- categories ---------------------------------------------------------------------------------------

CATEGORY_SLOTS = [
    pytest.param("create_expense", _expense_args(), id="create_expense"),
    pytest.param("update_expense", {}, id="update_expense"),
    pytest.param("query_expenses_by_category", {}, id="query_expenses_by_category"),
    pytest.param("search_expenses", {}, id="search_expenses"),
    pytest.param("top_expenses", {}, id="top_expenses"),
    pytest.param("spending_trend", {}, id="spending_trend"),
    pytest.param("set_budget", {"amount": 100}, id="set_budget"),
    pytest.param("delete_budget", {}, id="delete_budget"),
    pytest.param("recategorize_expenses", {"expense_ids": [1]}, id="recategorize_expenses"),
    pytest.param("rename_category", {"new_name": "Eating out"}, id="rename_category"),
    pytest.param("delete_category", {}, id="delete_category"),
    pytest.param("delete_category", {"name": "Gifts"}, id="delete_category.move_to"),
    pytest.param("merge_categories", {"target": "Gifts"}, id="merge_categories.source"),
    pytest.param("merge_categories", {"source": "Gifts"}, id="merge_categories.target"),
]


def _category_call(seeded: Seeded, tool: str, others: dict[str, Any], name: str) -> dict[str, Any]:
    """A call to ``tool`` whose one unknown category is ``name``, in whichever argument is left open."""
    slot = next((a for a in _CATEGORY_SLOTS_OF.get(tool, ()) if a not in others), "category")
    return _call(seeded, tool, others, **{slot: name})


_CATEGORY_SLOTS_OF = {
    "rename_category": ("name",),
    "delete_category": ("name", "move_to"),
    "merge_categories": ("source", "target"),
}


@pytest.mark.parametrize(("tool", "others"), CATEGORY_SLOTS)
async def test_an_unknown_category_is_refused_with_the_closest_existing_names(
    seeded: Seeded, tool: str, others: dict[str, Any]
) -> None:
    message = await seeded.refuse(tool, **_category_call(seeded, tool, others, "Fod"))
    assert "no category 'Fod'; did you mean Food?" in message
    assert "Rent" not in message  # only the close ones
    assert "create_category" in message


@pytest.mark.parametrize(("tool", "others"), CATEGORY_SLOTS)
async def test_an_unknown_category_with_no_close_match_lists_the_known_ones(
    seeded: Seeded, tool: str, others: dict[str, Any]
) -> None:
    message = await seeded.refuse(tool, **_category_call(seeded, tool, others, "Holidays"))
    assert "no category 'Holidays'; known: Food, Fuel, Gifts, Rent" in message


async def test_creating_a_category_that_exists_in_another_case_is_refused(seeded: Seeded) -> None:
    message = await seeded.refuse("create_category", name="FOOD")
    assert "category 'Food' already exists; use it as it is" in message


# --- expense ids --------------------------------------------------------------------------------------

ID_TOOLS = [
    pytest.param("get_expense", {}, id="get_expense"),
    pytest.param("update_expense", {"amount": "1"}, id="update_expense"),
    pytest.param("delete_expense", {}, id="delete_expense"),
]


@pytest.mark.parametrize(("tool", "others"), ID_TOOLS)
async def test_an_unknown_expense_id_is_refused_saying_where_ids_come_from(
    seeded: Seeded, tool: str, others: dict[str, Any]
) -> None:
    message = await seeded.refuse(tool, expense_id=4242, **others)
    assert "no expense with id 4242; search_expenses finds expenses and their ids" in message


@pytest.mark.parametrize(("tool", "others"), ID_TOOLS)
async def test_another_users_expense_id_looks_exactly_like_an_unknown_one(
    database_url: str, db: Engine, tool: str, others: dict[str, Any]
) -> None:
    async with Client(build_server(make_settings(database_url, user="alice"))) as alice:
        await seed_categories(alice, "Food")
        mine = await ok(alice, "create_expense", amount="9.99", description="pizza", category="Food")
    async with Client(build_server(make_settings(database_url, user="bob"))) as bob:
        await seed_categories(bob, "Food")
        await ok(bob, "create_expense", amount="1", description="gum", category="Food")
        message = await refused(bob, db, tool, expense_id=mine["id"], **others)
        unknown = await refused(bob, db, tool, expense_id=4242, **others)
    assert message == unknown.replace("4242", str(mine["id"]))
    async with Client(build_server(make_settings(database_url, user="alice"))) as alice:
        assert await ok(alice, "get_expense", expense_id=mine["id"]) == as_stored(mine)


@pytest.mark.parametrize(
    ("expense_id", "phrase"),
    [
        pytest.param(0, "greater than or equal to 1", id="zero"),
        pytest.param(-1, "greater than or equal to 1", id="negative"),
        pytest.param(2**31, "less than or equal to 2147483647", id="beyond-32-bits"),
        pytest.param(10**30, "less than or equal to 2147483647", id="huge"),
        pytest.param("abc", "valid integer", id="word"),
        pytest.param(1.5, "fractional part", id="fraction"),
        pytest.param(None, "valid integer", id="null"),
        pytest.param(
            True,
            "valid integer",
            id="boolean",
        ),
    ],
)
@pytest.mark.parametrize(("tool", "others"), ID_TOOLS)
async def test_an_expense_id_that_is_not_a_positive_32_bit_integer_is_refused(
    seeded: Seeded, tool: str, others: dict[str, Any], expense_id: Any, phrase: str
) -> None:
    message = await seeded.refuse(tool, expense_id=expense_id, **others)
    assert "expense_id" in message
    assert phrase in message


# --- update_expense specifics -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "phrase"),
    [
        pytest.param({"clear": ["description"]}, "Input should be 'merchant' or 'notes'", id="clear-a-required-field"),
        pytest.param({"clear": ["notes", "merchant", "notes"]}, "at most 2 items", id="clear-too-many"),
        pytest.param({"clear": "notes"}, "valid list", id="clear-not-a-list"),
        pytest.param({"notes": "n", "clear": ["notes"]}, "notes is both set and cleared", id="set-and-clear"),
        pytest.param({}, "nothing to update: pass at least one of amount", id="no-changes"),
    ],
)
async def test_update_expense_refuses_contradictory_or_empty_changes(
    seeded: Seeded, arguments: dict[str, Any], phrase: str
) -> None:
    message = await seeded.refuse("update_expense", expense_id=seeded.expense["id"], **arguments)
    assert phrase in message


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"amount": "1.001"}, id="bad-amount"),
        pytest.param({"category": "Nope"}, id="unknown-category"),
        pytest.param({"currency": "JPY"}, id="currency-that-cannot-hold-12.30"),
        pytest.param({"spent_on": "2026-02-29"}, id="impossible-day"),
    ],
)
async def test_an_update_with_one_bad_field_applies_none_of_the_good_ones(seeded: Seeded, bad: dict[str, Any]) -> None:
    good = {"description": "soup", "merchant": "Cafe", "clear": ["notes"]}
    await seeded.refuse("update_expense", expense_id=seeded.expense["id"], **good, **bad)
    assert await ok(seeded.client, "get_expense", expense_id=seeded.expense["id"]) == as_stored(seeded.expense)


# --- missing and unknown arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "missing"),
    [
        pytest.param("create_expense", {"description": "x", "category": "Food"}, "amount", id="create-no-amount"),
        pytest.param("create_expense", {"amount": 1, "category": "Food"}, "description", id="create-no-description"),
        pytest.param("create_expense", {"amount": 1, "description": "x"}, "category", id="create-no-category"),
        pytest.param("get_expense", {}, "expense_id", id="get-no-id"),
        pytest.param("update_expense", {"amount": 1}, "expense_id", id="update-no-id"),
        pytest.param("delete_expense", {}, "expense_id", id="delete-no-id"),
        pytest.param("query_expenses_by_category", {}, "category", id="query-no-category"),
        pytest.param("create_category", {}, "name", id="create-category-no-name"),
    ],
)
async def test_a_missing_required_argument_is_named(
    seeded: Seeded, tool: str, arguments: dict[str, Any], missing: str
) -> None:
    message = await seeded.refuse(tool, **arguments)
    assert f"{tool}: {missing}: Field required" in message
    assert "input_value" not in message and "pydantic" not in message  # what to fix, not a library's dump


async def test_a_misspelt_argument_is_refused_rather_than_silently_dropped(seeded: Seeded) -> None:
    message = await seeded.refuse("create_expense", **_expense_args(merchnat="Deli"))
    assert "unknown argument 'merchnat'" in message
    assert "merchant" in message  # the list of real arguments shows the right spelling


async def test_an_unknown_tool_is_refused_by_name(seeded: Seeded) -> None:
    message = await seeded.refuse("drop_everything")
    assert "Unknown tool: drop_everything" in message


# --- paging -------------------------------------------------------------------------------------------

PERIOD = {"start_date": "2026-01-01", "end_date": "2026-12-31"}
PAGED_TOOLS = [
    pytest.param("list_categories", {}, id="list_categories"),
    pytest.param("query_expenses_by_category", {"category": "Fuel"}, id="query_expenses_by_category"),
    pytest.param("summarize_spending", PERIOD, id="summarize_spending"),
    pytest.param("search_expenses", {}, id="search_expenses"),
    pytest.param("top_expenses", PERIOD, id="top_expenses"),
    pytest.param("compare_periods", PERIOD, id="compare_periods"),
    pytest.param("budget_status", {}, id="budget_status"),
    pytest.param("list_changes", {}, id="list_changes"),
]


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("garbage", id="word"),
        pytest.param("!!!not base64!!!", id="not-base64"),
        pytest.param(base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(), id="base64-of-binary"),
        pytest.param(base64.urlsafe_b64encode(b'{"a": 1}').decode(), id="base64-of-an-object"),
        pytest.param(base64.urlsafe_b64encode(b"null").decode(), id="base64-of-null"),
        pytest.param(forged_cursor("other", 1), id="unknown-kind"),
    ],
)
@pytest.mark.parametrize(("tool", "others"), PAGED_TOOLS)
async def test_a_garbage_cursor_is_refused_with_how_to_page(
    seeded: Seeded, tool: str, others: dict[str, Any], cursor: str
) -> None:
    message = await seeded.refuse(tool, cursor=cursor, **others)
    assert CURSOR_HINT in message
    assert "pass the next_cursor from the previous result of the same tool" in message


async def _real_cursors(client: Client) -> dict[str, str]:
    """A genuine next_cursor from each paged tool, and from two summary groupings."""
    summary = {**PERIOD, "limit": 1}
    cursors = {
        "list_categories": (await ok(client, "list_categories", limit=1))["next_cursor"],
        "query": (await ok(client, "query_expenses_by_category", category="Fuel", limit=1))["next_cursor"],
        "summary:category": (await ok(client, "summarize_spending", group_by="category", **summary))["next_cursor"],
        "summary:month": (await ok(client, "summarize_spending", group_by="month", **summary))["next_cursor"],
    }
    assert all(cursors.values()), cursors
    return cursors


@pytest.mark.parametrize(
    ("source", "tool", "others"),
    [
        pytest.param("list_categories", "query_expenses_by_category", {"category": "Fuel"}, id="categories->query"),
        pytest.param("list_categories", "summarize_spending", PERIOD, id="categories->summarize"),
        pytest.param("query", "list_categories", {}, id="query->categories"),
        pytest.param("query", "summarize_spending", PERIOD, id="query->summarize"),
        pytest.param("summary:category", "list_categories", {}, id="summarize->categories"),
        pytest.param("summary:category", "query_expenses_by_category", {"category": "Fuel"}, id="summarize->query"),
        pytest.param("summary:category", "summarize_spending", {**PERIOD, "group_by": "month"}, id="category->month"),
        pytest.param("summary:month", "summarize_spending", {**PERIOD, "group_by": "category"}, id="month->category"),
    ],
)
async def test_a_cursor_from_another_tool_or_grouping_is_refused(
    seeded: Seeded, source: str, tool: str, others: dict[str, Any]
) -> None:
    cursors = await _real_cursors(seeded.client)
    message = await seeded.refuse(tool, cursor=cursors[source], **others)
    assert CURSOR_HINT in message


async def test_a_real_cursor_is_accepted_by_the_tool_that_issued_it(seeded: Seeded) -> None:
    cursors = await _real_cursors(seeded.client)
    client = seeded.client
    assert (await ok(client, "list_categories", limit=1, cursor=cursors["list_categories"]))["categories"]
    assert (await ok(client, "query_expenses_by_category", category="Fuel", limit=1, cursor=cursors["query"]))[
        "expenses"
    ]
    month = await ok(client, "summarize_spending", group_by="month", limit=1, cursor=cursors["summary:month"], **PERIOD)
    assert month["groups"]


@pytest.mark.parametrize(
    ("cursor", "phrase"),
    [
        pytest.param("", "at least 1 character", id="empty"),
        pytest.param("A" * 501, "at most 500 characters", id="oversized"),
        pytest.param(42, "valid string", id="number"),
    ],
)
@pytest.mark.parametrize(("tool", "others"), PAGED_TOOLS)
async def test_a_cursor_of_the_wrong_shape_is_refused_by_the_schema(
    seeded: Seeded, tool: str, others: dict[str, Any], cursor: Any, phrase: str
) -> None:
    message = await seeded.refuse(tool, cursor=cursor, **others)
    assert "cursor" in message and phrase in message


@pytest.mark.parametrize(
    ("tool", "others", "position"),
    [
        pytest.param("summarize_spending", PERIOD, 10**30, id="summary-offset-beyond-64-bits"),
        pytest.param("summarize_spending", PERIOD, -1, id="summary-negative-offset"),
        pytest.param(
            "query_expenses_by_category",
            {"category": "Fuel"},
            ["2026-03-14", 10**30],
            id="expenses-id-beyond-64-bits",
        ),
        pytest.param(
            "query_expenses_by_category", {"category": "Fuel"}, ["2026-02-30", 1], id="expenses-impossible-day"
        ),
        pytest.param("search_expenses", {}, ["2026-03-14", 0], id="search-id-zero"),
        pytest.param("list_changes", {}, 0, id="changes-id-zero"),
        pytest.param("list_categories", {}, "a\x00b", id="categories-NUL-position"),
    ],
)
async def test_a_tampered_cursor_is_refused_with_the_cursor_hint(
    seeded: Seeded, tool: str, others: dict[str, Any], position: Any
) -> None:
    """A cursor the server could never have issued (a real one's kind, a forged position) is refused,
    never answered with a bare "Error executing tool" or "try again shortly"."""
    real = (await ok(seeded.client, tool, limit=1, **others))["next_cursor"]
    kind, _ = json.loads(base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)))
    message = await seeded.refuse(tool, cursor=forged_cursor(kind, position), **others)
    assert_helpful(message)
    assert CURSOR_HINT in message, message


LIMITS = [
    pytest.param("list_categories", {}, 0, "greater than or equal to 1", id="list_categories-0"),
    pytest.param("list_categories", {}, 201, "less than or equal to 200", id="list_categories-201"),
    pytest.param("list_categories", {}, -1, "greater than or equal to 1", id="list_categories-negative"),
    pytest.param("list_categories", {}, "ten", "valid integer", id="list_categories-word"),
    pytest.param("list_categories", {}, 2.5, "fractional part", id="list_categories-fraction"),
    pytest.param("query_expenses_by_category", {"category": "Food"}, 0, "greater than or equal to 1", id="query-0"),
    pytest.param("query_expenses_by_category", {"category": "Food"}, 201, "less than or equal to 200", id="query-201"),
    pytest.param("summarize_spending", PERIOD, 0, "greater than or equal to 1", id="summarize-0"),
    pytest.param("summarize_spending", PERIOD, 1001, "less than or equal to 1000", id="summarize-1001"),
    pytest.param(
        "list_categories",
        {},
        True,
        "valid integer",
        id="list_categories-boolean",
    ),
]


@pytest.mark.parametrize(("tool", "others", "limit", "phrase"), LIMITS)
async def test_a_page_size_out_of_range_is_refused_naming_the_range(
    seeded: Seeded, tool: str, others: dict[str, Any], limit: Any, phrase: str
) -> None:
    message = await seeded.refuse(tool, limit=limit, **others)
    assert "limit" in message and phrase in message


@pytest.mark.parametrize("group_by", ["year", "Category", "", "category,month", None, 1])
async def test_summarize_refuses_an_unknown_grouping_listing_the_choices(seeded: Seeded, group_by: Any) -> None:
    message = await seeded.refuse("summarize_spending", group_by=group_by, **PERIOD)
    assert "group_by" in message
    assert "'category', 'month', 'week', 'day' or 'merchant'" in message


# --- months, periods, keys, id lists ----------------------------------------------------------------------

BAD_MONTHS = [
    pytest.param("2026-13", "2026-13 is not a month", id="month-13"),
    pytest.param("2026-00", "2026-00 is not a month", id="month-0"),
    pytest.param("2026-1", "expected a month written YYYY-MM", id="unpadded"),
    pytest.param("26-01", "expected a month written YYYY-MM", id="two-digit-year"),
    pytest.param("2026-01-01", "expected a month written YYYY-MM", id="a-date"),
    pytest.param("March", "expected a month written YYYY-MM", id="a-name"),
    pytest.param(202601, "expected a month written YYYY-MM", id="number"),
    pytest.param("0999-01", "out of range", id="year-999"),
]
MONTH_SLOTS = [
    pytest.param("set_budget", "month", {"category": "Food", "amount": 100}, id="set_budget.month"),
    pytest.param("set_budget", "through_month", {"category": "Food", "amount": 100}, id="set_budget.through_month"),
    pytest.param("delete_budget", "month", {"category": "Food"}, id="delete_budget.month"),
    pytest.param("budget_status", "month", {}, id="budget_status.month"),
    pytest.param("spending_trend", "end_month", {}, id="spending_trend.end_month"),
]


@pytest.mark.parametrize(("value", "phrase"), BAD_MONTHS)
@pytest.mark.parametrize(("tool", "field", "others"), MONTH_SLOTS)
async def test_every_tool_refuses_a_month_that_is_not_a_real_yyyy_mm_month(
    seeded: Seeded, tool: str, field: str, others: dict[str, Any], value: Any, phrase: str
) -> None:
    message = await seeded.refuse(tool, **others, **{field: value})
    assert field in message
    assert phrase in message


PERIOD_TOOLS = [
    pytest.param("summarize_spending", {}, id="summarize_spending"),
    pytest.param("query_expenses_by_category", {"category": "Food"}, id="query_expenses_by_category"),
    pytest.param("search_expenses", {}, id="search_expenses"),
    pytest.param("top_expenses", {}, id="top_expenses"),
    pytest.param("compare_periods", {}, id="compare_periods"),
]


@pytest.mark.parametrize(("tool", "others"), PERIOD_TOOLS)
async def test_an_unknown_period_name_is_refused_listing_the_known_ones(
    seeded: Seeded, tool: str, others: dict[str, Any]
) -> None:
    message = await seeded.refuse(tool, period="last_week", **others)
    assert "period" in message
    assert "this_month" in message and "year_to_date" in message


@pytest.mark.parametrize(("tool", "others"), PERIOD_TOOLS)
async def test_a_period_together_with_dates_is_refused(seeded: Seeded, tool: str, others: dict[str, Any]) -> None:
    message = await seeded.refuse(tool, period="this_month", start_date="2026-01-01", **others)
    assert "either period or start_date/end_date" in message


@pytest.mark.parametrize(
    ("key", "phrase"),
    [
        pytest.param("", "at least 1 character", id="empty"),
        pytest.param("has space", "pattern", id="space"),
        pytest.param("tab\tkey", "pattern", id="tab"),
        pytest.param("ключ", "pattern", id="non-ascii"),
        pytest.param("k" * 101, "at most 100 characters", id="too-long"),
        pytest.param(42, "valid string", id="number"),
    ],
)
async def test_an_idempotency_key_must_be_printable_ascii_without_spaces(seeded: Seeded, key: Any, phrase: str) -> None:
    message = await seeded.refuse("create_expense", **_expense_args(idempotency_key=key))
    assert "idempotency_key" in message
    assert phrase in message


@pytest.mark.parametrize(
    ("ids", "phrase"),
    [
        pytest.param([], "at least 1 item", id="empty"),
        pytest.param(list(range(1, 502)), "at most 500 items", id="too-many"),
        pytest.param([0], "greater than or equal to 1", id="zero"),
        pytest.param([True], "not a boolean", id="boolean"),
        pytest.param("1,2", "valid list", id="a-string"),
    ],
)
async def test_recategorize_refuses_an_id_list_that_is_empty_too_long_or_not_ids(
    seeded: Seeded, ids: Any, phrase: str
) -> None:
    message = await seeded.refuse("recategorize_expenses", expense_ids=ids, category="Food")
    assert "expense_ids" in message
    assert phrase in message


@pytest.mark.parametrize("change_id", [0, -1, 2**31, True, "one"])
async def test_undo_refuses_a_change_id_that_is_not_a_positive_32_bit_integer(seeded: Seeded, change_id: Any) -> None:
    message = await seeded.refuse("undo_change", change_id=change_id)
    assert "change_id" in message


async def test_undo_of_an_unknown_change_points_to_list_changes(seeded: Seeded) -> None:
    message = await seeded.refuse("undo_change", change_id=999_999)
    assert "no change with id 999999; list_changes shows the recent ones" in message


@pytest.mark.parametrize(
    ("arguments", "phrase"),
    [
        pytest.param({"through_month": "2026-01", "month": "2026-03"}, "is before month", id="reversed"),
        pytest.param({"through_month": "2026-05", "ongoing": True}, "not both", id="range-and-ongoing"),
        pytest.param({"month": "2026-01", "through_month": "2036-01"}, "at most 120 months", id="too-long"),
        pytest.param({"amount": "10.001"}, "too many decimals", id="too-precise"),
        pytest.param({"amount": "10.5", "currency": "JPY"}, "JPY allows no decimals", id="yen-decimals"),
        pytest.param({"amount": 0}, "greater than 0", id="zero"),
    ],
)
async def test_set_budget_refuses_impossible_spans_and_amounts(
    seeded: Seeded, arguments: dict[str, Any], phrase: str
) -> None:
    message = await seeded.refuse("set_budget", **({"category": "Food", "amount": 100} | arguments))
    assert phrase in message


@pytest.mark.parametrize(
    ("tool", "arguments", "phrase"),
    [
        pytest.param("spending_trend", {"months": 0}, "greater than or equal to 1", id="trend-zero-months"),
        pytest.param("spending_trend", {"months": 121}, "less than or equal to 120", id="trend-too-many-months"),
        pytest.param("top_expenses", {"limit": 101}, "less than or equal to 100", id="top-limit"),
        pytest.param("search_expenses", {"min_amount": 50, "max_amount": 5}, "swap them", id="min-above-max"),
        pytest.param("merge_categories", {"source": "Food", "target": "food"}, "the same category", id="merge-self"),
        pytest.param("delete_category", {"name": "Food", "move_to": "FOOD"}, "being deleted", id="move-to-self"),
        pytest.param("rename_category", {"name": "Food", "new_name": "Rent"}, "merge_categories", id="rename-onto"),
        pytest.param("delete_category", {"name": "Food"}, "move_to", id="delete-non-empty"),
        pytest.param("delete_budget", {"category": "Food"}, "has no budget", id="delete-missing-budget"),
    ],
)
async def test_reports_and_category_tools_refuse_calls_that_cannot_work(
    seeded: Seeded, tool: str, arguments: dict[str, Any], phrase: str
) -> None:
    message = await seeded.refuse(tool, **arguments)
    assert phrase in message
