"""Typed inputs and outputs. Field descriptions are read by the language model that calls the tools."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from .errors import InvalidInput
from .money import MAX_AMOUNT, normalize_currency

NAME_MAX = 64
DESCRIPTION_MAX = 500
MERCHANT_MAX = 200
NOTES_MAX = 2000
MAX_ID = 2**31 - 1
PAGE_MAX = 200
GROUPS_MAX = 1000
NAME_KEY_MAX = NAME_MAX * 3  # room for case folding and compatibility forms of a 64-character name

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


# --- validators: one place for each rule -------------------------------------------------------------


def _check_text(value: str, *, multiline: bool) -> str:
    """Strip outer white space; refuse empty text and control characters (kept literally otherwise)."""
    if multiline:
        value = value.replace("\r\n", "\n")
    value = value.strip()
    if not value:
        raise InvalidInput("must not be empty or only white space")
    allowed = {"\n", "\t"} if multiline else set()
    for ch in value:
        if ch in allowed:
            continue
        kind = unicodedata.category(ch)
        if kind in {"Cc", "Cs"} or (not multiline and kind in {"Zl", "Zp"}):
            raise InvalidInput(
                f"must not contain control characters (found U+{ord(ch):04X})"
                + ("" if multiline else "; use one line of plain text")
            )
    return value


def _single_line(value: str) -> str:
    return _check_text(value, multiline=False)


def _multi_line(value: str) -> str:
    return _check_text(value, multiline=True)


def parse_iso_date(value: object) -> date:
    """The one date parser: a real calendar date written YYYY-MM-DD."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value.strip()):
        raise InvalidInput(f"expected a date written YYYY-MM-DD (e.g. 2026-03-14), got {value!r}")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"{value.strip()} is not a real calendar date") from None


def _not_a_boolean(value: object) -> object:
    """Integers stay lax ("5" and 5.0 are 5), but a JSON true must not become id 1 or a page of one."""
    if isinstance(value, bool):
        raise InvalidInput("Input should be a valid integer, not a boolean")
    return value


def category_key(name: str) -> str:
    """How category names compare: case-insensitively and by Unicode compatibility ("Food" == "FOOD")."""
    return unicodedata.normalize("NFKC", name).casefold()


def _comparable_name(value: str) -> str:
    if len(category_key(value)) > NAME_KEY_MAX:  # a few ligatures expand many times over when normalised
        raise InvalidInput(f"is too long once normalised; use at most {NAME_MAX} ordinary letters")
    return value


# --- input types --------------------------------------------------------------------------------------

Amount = Annotated[
    Decimal,
    Field(
        gt=0,
        le=MAX_AMOUNT,
        allow_inf_nan=False,
        description=(
            'How much was spent, in major units, as a JSON number or a decimal string: 12.3 or "12.30". '
            "Positive, with no more decimals than the currency has (2 for USD/EUR, 0 for JPY)."
        ),
    ),
]
CurrencyCode = Annotated[
    str,
    Field(min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code, e.g. USD, EUR."),
    AfterValidator(normalize_currency),
]
IsoDate = Annotated[
    date,
    BeforeValidator(parse_iso_date),
    WithJsonSchema({"type": "string", "format": "date", "description": "A date written YYYY-MM-DD."}),
]
CategoryName = Annotated[
    str,
    Field(min_length=1, max_length=NAME_MAX, description="Category name; matched case-insensitively."),
    AfterValidator(_single_line),
    AfterValidator(_comparable_name),
]
Description = Annotated[
    str,
    Field(min_length=1, max_length=DESCRIPTION_MAX, description="What was bought, one line."),
    AfterValidator(_single_line),
]
Merchant = Annotated[
    str,
    Field(min_length=1, max_length=MERCHANT_MAX, description="Where it was bought (shop, payee)."),
    AfterValidator(_single_line),
]
Notes = Annotated[
    str,
    Field(min_length=1, max_length=NOTES_MAX, description="Free-form notes; may span several lines."),
    AfterValidator(_multi_line),
]
ExpenseId = Annotated[
    int,
    Field(ge=1, le=MAX_ID, description="An expense's id, as returned by other tools."),
    BeforeValidator(_not_a_boolean),
]
PageLimit = Annotated[
    int, Field(ge=1, le=PAGE_MAX, description=f"Page size, 1 to {PAGE_MAX}."), BeforeValidator(_not_a_boolean)
]
GroupLimit = Annotated[
    int,
    Field(ge=1, le=GROUPS_MAX, description=f"Most groups to return, 1 to {GROUPS_MAX}."),
    BeforeValidator(_not_a_boolean),
]
Cursor = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        description="Pass the next_cursor of the previous result, unchanged, to get the next page.",
    ),
]
GroupBy = Literal["category", "month", "week", "day", "merchant"]
ClearableField = Literal["merchant", "notes"]


class NewExpense(BaseModel):
    """What create_expense stores. The currency's decimals are checked by the service."""

    model_config = ConfigDict(frozen=True)

    amount: Amount
    description: Description
    category: CategoryName
    spent_on: IsoDate | None = None
    currency: CurrencyCode | None = None
    merchant: Merchant | None = None
    notes: Notes | None = None


class ExpenseChanges(BaseModel):
    """What update_expense changes: every field left out (None) stays as it is."""

    model_config = ConfigDict(frozen=True)

    amount: Amount | None = None
    description: Description | None = None
    category: CategoryName | None = None
    spent_on: IsoDate | None = None
    currency: CurrencyCode | None = None
    merchant: Merchant | None = None
    notes: Notes | None = None
    clear: frozenset[ClearableField] = frozenset()

    def is_empty(self) -> bool:
        return not self.clear and all(
            getattr(self, name) is None for name in type(self).model_fields if name != "clear"
        )


# --- outputs ------------------------------------------------------------------------------------------

MoneyText = Annotated[
    str,
    Field(
        pattern=r"^\d+(\.\d+)?$",
        description='An exact amount as a decimal string with the currency\'s minor digits, e.g. "12.30".',
    ),
]


class Expense(BaseModel):
    """One stored expense."""

    id: int
    amount: MoneyText
    currency: str = Field(description="ISO 4217 code of the amount.")
    category: str
    spent_on: date = Field(description="The day the money was spent.")
    description: str
    merchant: str | None
    notes: str | None
    created_at: datetime = Field(description="When it was recorded (UTC).")
    updated_at: datetime = Field(description="When it was last changed (UTC).")


class CurrencyTotal(BaseModel):
    """A sum in one currency. Different currencies are never added together."""

    currency: str
    total: MoneyText
    count: int = Field(description="How many expenses the total covers.")


class ExpensePage(BaseModel):
    """One page of a category's expenses, newest first, with totals over every match (not just this page)."""

    category: str
    start_date: date | None
    end_date: date | None
    expenses: list[Expense]
    count: int = Field(description="How many expenses match in all, across every page.")
    totals: list[CurrencyTotal] = Field(description="Sum of every match, one entry per currency.")
    next_cursor: str | None = Field(
        description="Null when this is the last page; otherwise pass it as cursor to get the next page."
    )


class SpendingGroup(BaseModel):
    """Spending of one group (a category, month, week, day or merchant) in one currency."""

    key: str | None = Field(
        description=(
            "The group: a category name, a month YYYY-MM, the Monday YYYY-MM-DD starting a week, "
            "a day YYYY-MM-DD, or a merchant (null for expenses without one)."
        )
    )
    currency: str
    total: MoneyText
    count: int
    share_percent: str = Field(description="This group's share of the period's total in this currency, in %.")


class SpendingSummary(BaseModel):
    """Spending in a period, grouped, with grand totals per currency."""

    start_date: date
    end_date: date
    group_by: GroupBy
    groups: list[SpendingGroup]
    totals: list[CurrencyTotal] = Field(description="Grand total of the period, one entry per currency.")
    count: int = Field(description="How many expenses the period holds.")
    group_count: int = Field(description="How many groups there are in all, across every page.")
    next_cursor: str | None = Field(
        description="Null when every group is listed; otherwise pass it as cursor to get more groups."
    )


class Category(BaseModel):
    """A spending category."""

    name: str
    expense_count: int = Field(description="How many expenses are filed under it.")


class CategoryList(BaseModel):
    """The user's categories in alphabetical order."""

    categories: list[Category]
    count: int = Field(description="How many categories exist in all.")
    next_cursor: str | None = Field(
        description="Null when every category is listed; otherwise pass it as cursor for the rest."
    )
