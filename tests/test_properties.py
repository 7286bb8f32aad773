"""Properties that hold for every input, not just the examples we thought of (hypothesis, both backends).

Hypothesis drives synchronous test functions, so each property opens ONE in-memory MCP client for its whole
run through an anyio blocking portal and calls the tools through it. Bad-input properties compare a
snapshot of every table around each call; the others delete what they create, or give every example its
own stretch of days, so that examples never see each other's rows.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import hypothesis
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st
from mcp import Client
from mcp.types import CallToolResult
from sqlalchemy import Engine, text

from budget_mcp.config import Settings
from budget_mcp.money import format_amount, from_minor_units, minor_digits
from budget_mcp.server import build_server

from helpers import LUNCH, as_stored, snapshot

PROPERTY = hypothesis.settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,  # nothing written to .hypothesis/; a failure prints its falsifying example
)

# Text that must never reach the model (see test_validation.py): SQL, driver names, tracebacks.
INTERNALS = re.compile(r"SELECT |INSERT INTO|DELETE FROM| WHERE |\[SQL:|psycopg|sqlite3|sqlalchemy|Traceback")
UNEXPLAINED = re.compile(r"^Error executing tool \w+$")

DIGITS = {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3}
MAX_AMOUNT = Decimal(10**9)


@dataclass
class Tools:
    """Synchronous access to one connected client, for use inside hypothesis examples."""

    portal: BlockingPortal
    client: Client
    db: Engine
    expense: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # hypothesis prints the arguments of a falsifying example
        return f"Tools({self.db.url.get_backend_name()})"

    def call(self, tool: str, /, **arguments: Any) -> CallToolResult:
        return self.portal.call(self.client.call_tool, tool, arguments)

    def ok(self, tool: str, /, **arguments: Any) -> dict[str, Any]:
        result = self.call(tool, **arguments)
        message = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        assert not result.is_error, f"{tool}({arguments!r}) failed: {message}"
        assert result.structured_content is not None
        return result.structured_content

    def refused(self, tool: str, /, **arguments: Any) -> str:
        """``tool`` must answer with a helpful error result and leave every row as it was."""
        before = snapshot(self.db)
        result = self.call(tool, **arguments)
        message = result.content[0].text  # type: ignore[union-attr]
        assert result.is_error, f"{tool}({arguments!r}) should have been refused, returned {message}"
        assert not INTERNALS.search(message), f"error leaks internals: {message!r}"
        assert not UNEXPLAINED.match(message), f"error says nothing about the cause: {message!r}"
        assert snapshot(self.db) == before, f"{tool}({arguments!r}) was refused but changed the database"
        return message


@pytest.fixture
def tools(settings: Settings, db: Engine) -> Iterator[Tools]:
    """One client for a whole property run, on a database holding the category Food and one expense."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Client(build_server(settings))) as client,
    ):
        connected = Tools(portal=portal, client=client, db=db)
        connected.ok("create_category", name="Food")
        connected.expense = connected.ok("create_expense", **LUNCH)
        yield connected


# --- strategies: amounts -------------------------------------------------------------------------------


def _decimal(minor: int, places: int) -> Decimal:
    """minor * 10**-places, exactly, written with exactly ``places`` decimals."""
    return Decimal(minor).scaleb(-places)


def _python_decimal_accepts(value: str) -> bool:
    try:
        Decimal(value)
    except (InvalidOperation, ValueError):
        return False
    return True


@st.composite
def too_precise(draw: st.DrawFn, currency: str, max_places: int = 12) -> str:
    """An amount in range with at least one decimal more than ``currency`` has (at most 13 significant
    digits; the property at the end covers amounts longer than Decimal's 28-digit context)."""
    digits = DIGITS[currency]
    places = draw(st.integers(digits + 1, max_places))
    minor = draw(st.integers(1, 10**12).filter(lambda n: n % 10 ** (places - digits) != 0))
    return str(_decimal(minor, places))


non_positive_amounts = st.one_of(
    st.builds(lambda n, p: str(_decimal(n, p)), st.integers(-(10**12), 0), st.integers(0, 6)),
    st.integers(-(10**15), 0),
    st.floats(max_value=0, allow_nan=False, allow_infinity=False),
)
non_finite_amounts = st.sampled_from(
    ["NaN", "nan", "-NaN", "sNaN", "NaN123", "Infinity", "-Infinity", "inf", "-inf", "INF", "+Infinity"]
)
too_large_amounts = st.one_of(
    st.builds(lambda n: str(_decimal(n, 2)), st.integers(10**11 + 1, 10**30)),
    st.integers(10**9 + 1, 10**40),
    st.floats(min_value=1e9, exclude_min=True, allow_infinity=False),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(1, 999), st.integers(10, 10**6)),
)
non_numeric_amounts = st.one_of(  # each filtered to what Python's Decimal itself refuses to parse
    st.from_regex(r"\$[0-9]{1,4}(\.[0-9]{2})?", fullmatch=True),
    st.from_regex(r"[0-9]{1,4},[0-9]{2}", fullmatch=True),
    st.from_regex(r"[0-9]{1,4} ?(USD|EUR|dollars|€)", fullmatch=True),
    st.from_regex(r"[0-9]+\.[0-9]+\.[0-9]+", fullmatch=True),
    st.from_regex(r"0x[0-9a-f]{1,6}", fullmatch=True),
    st.sampled_from(["", " ", ".", "-", "+", "e5", "1e", "1.2.3", "twelve", "12-30", "1/2", "½"]),
    st.text(max_size=20),
).filter(lambda s: not _python_decimal_accepts(s))
wrong_type_amounts = st.one_of(
    st.booleans(),
    st.lists(st.integers(1, 9), max_size=2),
    st.dictionaries(st.sampled_from(["value", "amount"]), st.integers(1, 9), max_size=1),
)

# (amount, currency or None for the default USD)
bad_amounts = st.one_of(
    st.tuples(st.one_of(non_positive_amounts, non_finite_amounts, too_large_amounts), st.none()),
    st.tuples(st.one_of(non_numeric_amounts, wrong_type_amounts), st.none()),
    st.tuples(too_precise("USD"), st.sampled_from([None, "USD", "usd"])),
    st.tuples(too_precise("JPY", 6), st.just("JPY")),
    st.tuples(too_precise("KWD"), st.just("KWD")),
)


@st.composite
def valid_amounts(draw: st.DrawFn, currency: str) -> tuple[Decimal, int]:
    """A Decimal from 0.01 to 1e9 with at most the currency's decimals, and its exact minor units."""
    digits = DIGITS[currency]
    places = draw(st.integers(0, digits))
    smallest = max(1, 10**places // 100)  # 0.01 (or 1 for a currency without decimals)
    minor = draw(st.integers(smallest, 10**9 * 10**places))
    value = _decimal(minor, places)
    return value, minor * 10 ** (digits - places)


def _as_sent(value: Decimal, form: str, digits: int) -> Any:
    """How a client might write ``value``: a short string, a padded string, or a JSON number."""
    if form == "string":
        return str(value)
    if form == "padded":
        return f"{value:.{digits}f}"
    as_int = int(value)
    return as_int if as_int == value else float(value)  # <= 13 significant digits: floats are exact here


# --- strategies: dates ---------------------------------------------------------------------------------

_ASCII_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _is_valid_date(value: Any) -> bool:
    """The documented rule, written independently of the product: a real day written YYYY-MM-DD."""
    if not isinstance(value, str) or not _ASCII_DATE.fullmatch(value.strip()):
        return False
    year, month, day = (int(part) for part in value.strip().split("-"))
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


bad_dates = st.one_of(
    st.builds(
        lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}",
        st.integers(0, 9999),
        st.integers(0, 99),
        st.integers(0, 99),
    ).filter(lambda s: not _is_valid_date(s)),
    st.from_regex(r"\d{4}-\d{2}-\d{2}", fullmatch=True).filter(lambda s: not _is_valid_date(s)),  # any digits
    st.from_regex(r"[0-9]{1,2}[/.][0-9]{1,2}[/.][0-9]{2,4}", fullmatch=True),
    st.from_regex(r"[0-9]{4}/[0-9]{2}/[0-9]{2}|[0-9]{8}|[0-9]{4}-[0-9]-[0-9]{1,2}", fullmatch=True),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?Z?", fullmatch=True),
    st.sampled_from(["today", "yesterday", "tomorrow", "last monday", "March 14, 2026", "14 Mar 2026", ""]),
    st.text(max_size=20).filter(lambda s: not _is_valid_date(s)),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(st.integers(1, 31), min_size=3, max_size=3),
)

DATE_SLOTS = [
    ("create_expense", "spent_on"),
    ("update_expense", "spent_on"),
    ("summarize_spending", "start_date"),
    ("summarize_spending", "end_date"),
    ("query_expenses_by_category", "start_date"),
    ("query_expenses_by_category", "end_date"),
]


# --- strategies: text ----------------------------------------------------------------------------------

WHITE_SPACE = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u2000", "\u2028", "\u3000"]
letters = st.characters(categories=["L", "N"])  # never white space, never a control character
words = st.text(letters, min_size=1, max_size=8)


@dataclass(frozen=True)
class TextSlot:
    tool: str
    name: str
    maximum: int
    multiline: bool


TEXT_SLOTS = [
    TextSlot("create_expense", "description", 500, False),
    TextSlot("create_expense", "merchant", 200, False),
    TextSlot("create_expense", "notes", 2000, True),
    TextSlot("update_expense", "description", 500, False),
    TextSlot("update_expense", "notes", 2000, True),
    TextSlot("create_category", "name", 64, False),
    TextSlot("query_expenses_by_category", "category", 64, False),
]


def bad_text(slot: TextSlot) -> st.SearchStrategy[str]:
    """Blank text, text with a forbidden character inside, or text one or more characters too long."""
    blank = st.text(st.sampled_from(WHITE_SPACE), min_size=1, max_size=10)
    forbidden = st.one_of(
        st.characters(categories=["Cc"], exclude_characters="\n\t" if slot.multiline else ""),
        st.characters(categories=["Cs"]),
        *([] if slot.multiline else [st.sampled_from(["\u2028", "\u2029", "\n", "\t"])]),
    )
    inside = st.builds(lambda a, ch, b: a + ch + b, words, forbidden, words)
    too_long = st.builds(
        lambda ch, extra, tail: (ch * (slot.maximum + extra))[: slot.maximum + extra - len(tail)] + tail,
        letters,
        st.integers(1, 50),
        st.text(letters, max_size=1),
    )
    return st.one_of(blank, inside, too_long)


bad_texts = st.sampled_from(TEXT_SLOTS).flatmap(lambda slot: st.tuples(st.just(slot), bad_text(slot)))


# --- bad input: an error, and nothing changed -------------------------------------------------------------


@PROPERTY
@given(case=bad_amounts, tool=st.sampled_from(["create_expense", "update_expense"]))
def test_every_bad_amount_is_refused_and_changes_nothing(tools: Tools, case: tuple[Any, str | None], tool: str) -> None:
    amount, currency = case
    arguments: dict[str, Any] = {"amount": amount} | ({"currency": currency} if currency else {})
    if tool == "create_expense":
        arguments |= {"description": "tea", "category": "Food"}
    else:
        arguments["expense_id"] = tools.expense["id"]
    message = tools.refused(tool, **arguments)
    assert "amount" in message


@PROPERTY
@given(value=bad_dates, slot=st.sampled_from(DATE_SLOTS))
def test_every_bad_date_is_refused_and_changes_nothing(tools: Tools, value: Any, slot: tuple[str, str]) -> None:
    tool, name = slot
    arguments: dict[str, Any] = {
        "create_expense": {"amount": "1", "description": "tea", "category": "Food"},
        "update_expense": {"expense_id": tools.expense["id"]},
        "summarize_spending": {"start_date": "2026-01-01", "end_date": "2026-12-31"},
        "query_expenses_by_category": {"category": "Food"},
    }[tool]
    message = tools.refused(tool, **(arguments | {name: value}))
    assert name in message
    assert "YYYY-MM-DD" in message or "is not a real calendar date" in message


@PROPERTY
@given(case=bad_texts)
def test_every_bad_text_is_refused_and_changes_nothing(tools: Tools, case: tuple[TextSlot, str]) -> None:
    slot, value = case
    arguments: dict[str, Any] = {
        "create_expense": {"amount": "1", "description": "tea", "category": "Food"},
        "update_expense": {"expense_id": tools.expense["id"]},
        "create_category": {},
        "query_expenses_by_category": {},
    }[slot.tool]
    message = tools.refused(slot.tool, **(arguments | {slot.name: value}))
    assert slot.name in message


# --- exact money ------------------------------------------------------------------------------------------


@PROPERTY
@given(
    case=st.sampled_from(["USD", "JPY", "KWD"]).flatmap(lambda c: st.tuples(st.just(c), valid_amounts(c))),
    form=st.sampled_from(["string", "padded", "number"]),
)
@example(case=("USD", (Decimal("0.1"), 10)), form="number")  # 0.1 has no exact binary float
@example(case=("USD", (Decimal("999999999.99"), 99999999999)), form="number")
@example(case=("KWD", (Decimal("1000000000"), 1000000000000)), form="string")
def test_every_valid_amount_round_trips_exactly_and_is_stored_as_exact_minor_units(
    tools: Tools, case: tuple[str, tuple[Decimal, int]], form: str
) -> None:
    currency, (value, minor) = case
    digits = DIGITS[currency]
    expected = f"{value:.{digits}f}"
    created = tools.ok(
        "create_expense",
        amount=_as_sent(value, form, digits),
        currency=currency,
        description="round trip",
        category="Food",
    )
    try:
        assert (created["amount"], created["currency"]) == (expected, currency)
        fetched = tools.ok("get_expense", expense_id=created["id"])
        assert fetched == as_stored(created)
        with tools.db.connect() as connection:
            stored = connection.execute(
                text("SELECT amount_minor, currency FROM expenses WHERE id = :id"), {"id": created["id"]}
            ).one()
        assert (int(stored[0]), stored[1]) == (minor, currency)
    finally:
        tools.ok("delete_expense", expense_id=created["id"])


_windows = itertools.count()


def _own_week() -> tuple[date, date]:
    """Seven days no other example uses (starting in 2001, far from the fixture's expense)."""
    start = date(2001, 1, 1) + timedelta(days=7 * next(_windows))
    return start, start + timedelta(days=6)


def _spend(tools: Tools, amount: Decimal | int, currency: str, day: date) -> None:
    tools.ok(
        "create_expense",
        amount=str(amount),
        currency=currency,
        description="spend",
        category="Food",
        spent_on=day.isoformat(),
    )


@PROPERTY
@given(
    spends=st.lists(
        st.tuples(valid_amounts("USD"), st.integers(0, 6)),
        min_size=1,
        max_size=10,
    ),
)
def test_summarize_spending_totals_are_the_exact_decimal_sum_and_match_sql(
    tools: Tools, spends: list[tuple[tuple[Decimal, int], int]]
) -> None:
    start, end = _own_week()
    for (value, _), day in spends:
        _spend(tools, value, "USD", start + timedelta(days=day))
    exact = sum((value for (value, _), _ in spends), Decimal(0))
    summary = tools.ok(
        "summarize_spending", start_date=start.isoformat(), end_date=end.isoformat(), group_by="day", limit=7
    )
    assert summary["totals"] == [{"currency": "USD", "total": f"{exact:.2f}", "count": len(spends)}]
    assert summary["count"] == len(spends)
    assert sum(Decimal(g["total"]) for g in summary["groups"]) == exact
    with tools.db.connect() as connection:
        in_sql = connection.execute(
            text("SELECT SUM(amount_minor) FROM expenses WHERE spent_on BETWEEN :start AND :end"),
            {"start": start, "end": end},
        ).scalar_one()
    assert Decimal(int(in_sql)).scaleb(-2) == exact
    assert int(in_sql) == sum(minor for (_, minor), _ in spends)


@PROPERTY
@given(
    spends=st.lists(
        st.sampled_from(["USD", "EUR", "JPY", "KWD"]).flatmap(
            lambda currency: st.tuples(st.just(currency), valid_amounts(currency))
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_totals_are_exact_per_currency_and_never_mix_currencies(
    tools: Tools, spends: list[tuple[str, tuple[Decimal, int]]]
) -> None:
    start, end = _own_week()
    for currency, (value, _) in spends:
        _spend(tools, value, currency, start)
    expected: dict[str, tuple[Decimal, int]] = {}
    for currency, (value, _) in spends:
        total, count = expected.get(currency, (Decimal(0), 0))
        expected[currency] = (total + value, count + 1)
    summary = tools.ok("summarize_spending", start_date=start.isoformat(), end_date=end.isoformat())
    assert summary["totals"] == [
        {"currency": currency, "total": f"{total:.{DIGITS[currency]}f}", "count": count}
        for currency, (total, count) in sorted(expected.items())
    ]
    page = tools.ok(
        "query_expenses_by_category", category="Food", start_date=start.isoformat(), end_date=end.isoformat()
    )
    assert page["totals"] == summary["totals"]


@PROPERTY
@given(
    spends=st.lists(
        st.tuples(st.sampled_from(["USD", "EUR", "JPY"]), st.integers(1, 10**6), st.integers(0, 6)),
        min_size=1,
        max_size=8,
    ),
    limit=st.integers(1, 10),
)
def test_a_summarys_totals_do_not_depend_on_how_many_groups_fit_on_its_page(
    tools: Tools, spends: list[tuple[str, int, int]], limit: int
) -> None:
    start, end = _own_week()
    for currency, units, day in spends:
        _spend(tools, units, currency, start + timedelta(days=day))
    expected: dict[str, tuple[int, int]] = {}
    for currency, units, _ in spends:
        total, count = expected.get(currency, (0, 0))
        expected[currency] = (total + units, count + 1)
    want = [
        {"currency": currency, "total": f"{Decimal(total):.{DIGITS[currency]}f}", "count": count}
        for currency, (total, count) in sorted(expected.items())
    ]
    span = {"start_date": start.isoformat(), "end_date": end.isoformat(), "group_by": "day"}
    summary = tools.ok("summarize_spending", **span, limit=limit)
    assert (summary["totals"], summary["count"]) == (want, len(spends))
    while summary["next_cursor"] is not None:  # later pages repeat the same grand totals
        summary = tools.ok("summarize_spending", **span, limit=limit, cursor=summary["next_cursor"])
        assert summary["totals"] == want


# --- precision beyond Decimal's 28 digits -----------------------------------------------------------------------------


@PROPERTY
@given(
    whole=st.integers(1, 10**9 - 1),
    extra=st.integers(1, 9),
    zeros=st.integers(0, 40),
)
@example(whole=1, extra=1, zeros=26)
def test_too_many_decimals_are_refused_however_many_digits_the_amount_has(
    tools: Tools, whole: int, extra: int, zeros: int
) -> None:
    amount = f"{whole}.00{'0' * zeros}{extra}"  # always a nonzero digit beyond the cents
    message = tools.refused("create_expense", amount=amount, description="tea", category="Food")
    assert "USD allows at most 2 decimal places" in message


# --- how a stored amount is shown -----------------------------------------------------------------------------------


@given(minor=st.integers(-(10**20), 10**20), currency=st.sampled_from(["USD", "JPY", "KWD", "EUR", "CLF"]))
@example(minor=0, currency="USD")
@example(minor=-5, currency="USD")
@example(minor=-1, currency="KWD")
def test_a_stored_amount_is_shown_as_the_exact_decimal_with_the_currencys_minor_digits(
    minor: int, currency: str
) -> None:
    digits = minor_digits(currency)
    assert format_amount(minor, currency) == f"{from_minor_units(minor, currency):.{digits}f}"
    assert Decimal(format_amount(minor, currency)).scaleb(digits) == minor
