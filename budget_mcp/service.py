"""Use cases. Each takes an open Session and the Caller, validates, works through the repository and
returns schemas. None of them commits: the caller owns the transaction (one per tool call)."""

from __future__ import annotations

import base64
import binascii
import difflib
import json
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from . import repository as repo
from .errors import Conflict, InvalidInput, NotFound
from .models import Category, Expense
from .money import format_amount, from_minor_units, to_minor_units
from .schemas import (
    MAX_ID,
    NAME_KEY_MAX,
    CategoryList,
    CurrencyTotal,
    ExpenseChanges,
    ExpensePage,
    GroupBy,
    NewExpense,
    SpendingGroup,
    SpendingSummary,
    category_key,
    parse_iso_date,
)
from .schemas import Category as CategoryOut
from .schemas import Expense as ExpenseOut

MAX_CATEGORIES = 1000
MAX_OFFSET = 10**9
SUGGESTIONS = 5


@dataclass(frozen=True)
class Caller:
    """Who a call acts for: the user whose rows it may see and change, and that user's defaults."""

    user: str
    default_currency: str
    timezone: tzinfo

    def today(self) -> date:
        return datetime.now(self.timezone).date()


# --- categories ---------------------------------------------------------------------------------------


def create_category(session: Session, caller: Caller, name: str) -> CategoryOut:
    user_id = repo.ensure_user(session, caller.user)
    key = category_key(name)
    existing = repo.find_category(session, user_id, key)
    if existing is not None:
        raise Conflict(f"category {existing.name!r} already exists; use it as it is")
    if repo.count_categories(session, user_id) >= MAX_CATEGORIES:
        raise Conflict(f"a user may have at most {MAX_CATEGORIES} categories; reuse an existing one")
    repo.add_category(session, user_id, name, key)
    return CategoryOut(name=name, expense_count=0)


def list_categories(session: Session, caller: Caller, *, limit: int, cursor: str | None) -> CategoryList:
    user_id = repo.find_user_id(session, caller.user)
    if user_id is None:
        return CategoryList(categories=[], count=0, next_cursor=None)
    after = _categories_position(cursor) if cursor else None
    rows = repo.categories_with_counts(session, user_id, after_key=after, limit=limit + 1)
    page = rows[:limit]
    return CategoryList(
        categories=[CategoryOut(name=category.name, expense_count=count) for category, count in page],
        count=repo.count_categories(session, user_id),
        next_cursor=_encode_cursor("categories", page[-1][0].name_key) if len(rows) > limit else None,
    )


def _require_category(session: Session, user_id: int | None, name: str) -> Category:
    """The user's category called ``name`` (any case), or NotFound naming the closest existing ones."""
    category = repo.find_category(session, user_id, category_key(name)) if user_id is not None else None
    if category is not None:
        return category
    known = repo.category_names(session, user_id, MAX_CATEGORIES) if user_id is not None else []
    if not known:
        raise NotFound(f"no category {name!r}: there are no categories yet; create one with create_category")
    by_key = {category_key(n): n for n in known}
    close = difflib.get_close_matches(category_key(name), list(by_key), n=SUGGESTIONS, cutoff=0.5)
    if close:
        hint = "did you mean " + ", ".join(by_key[k] for k in close) + "?"
    else:
        shown = known[:20]
        hint = "known: " + ", ".join(shown) + (f" and {len(known) - len(shown)} more" if len(known) > 20 else "")
    raise NotFound(f"no category {name!r}; {hint} (create_category adds a new one)")


# --- expenses -----------------------------------------------------------------------------------------


def _expense_out(expense: Expense, category_name: str) -> ExpenseOut:
    return ExpenseOut(
        id=expense.id,
        amount=format_amount(expense.amount_minor, expense.currency),
        currency=expense.currency,
        category=category_name,
        spent_on=expense.spent_on,
        description=expense.description,
        merchant=expense.merchant,
        notes=expense.notes,
        created_at=expense.created_at,
        updated_at=expense.updated_at,
    )


def create_expense(session: Session, caller: Caller, new: NewExpense) -> ExpenseOut:
    currency = new.currency or caller.default_currency
    amount_minor = to_minor_units(new.amount, currency)
    user_id = repo.ensure_user(session, caller.user)
    category = _require_category(session, user_id, new.category)
    expense = Expense(
        user_id=user_id,
        category_id=category.id,
        amount_minor=amount_minor,
        currency=currency,
        spent_on=new.spent_on or caller.today(),
        description=new.description,
        merchant=new.merchant,
        notes=new.notes,
    )
    session.add(expense)
    session.flush()
    return _expense_out(expense, category.name)


def _require_expense(session: Session, caller: Caller, expense_id: int) -> Expense:
    user_id = repo.find_user_id(session, caller.user)
    expense = repo.get_expense(session, user_id, expense_id) if user_id is not None else None
    if expense is None:
        raise NotFound(
            f"no expense with id {expense_id}; find ids with query_expenses_by_category or summarize_spending"
        )
    return expense


def get_expense(session: Session, caller: Caller, expense_id: int) -> ExpenseOut:
    expense = _require_expense(session, caller, expense_id)
    return _expense_out(expense, expense.category.name)


def update_expense(session: Session, caller: Caller, expense_id: int, changes: ExpenseChanges) -> ExpenseOut:
    if changes.is_empty():
        raise InvalidInput(
            "nothing to update: pass at least one of amount, description, category, spent_on, currency, "
            "merchant, notes or clear"
        )
    for name in changes.clear:
        if getattr(changes, name) is not None:
            raise InvalidInput(f"{name} is both set and cleared; pass one or the other")
    expense = _require_expense(session, caller, expense_id)
    category = expense.category
    if changes.category is not None:
        category = _require_category(session, expense.user_id, changes.category)
    currency = changes.currency or expense.currency
    if changes.amount is not None or currency != expense.currency:
        amount: Decimal = (
            changes.amount if changes.amount is not None else from_minor_units(expense.amount_minor, expense.currency)
        )
        expense.amount_minor = to_minor_units(amount, currency)
        expense.currency = currency
    expense.category_id = category.id
    if changes.spent_on is not None:
        expense.spent_on = changes.spent_on
    if changes.description is not None:
        expense.description = changes.description
    for name in ("merchant", "notes"):
        value = getattr(changes, name)
        if value is not None:
            setattr(expense, name, value)
        elif name in changes.clear:
            setattr(expense, name, None)
    session.flush()
    return _expense_out(expense, category.name)


def delete_expense(session: Session, caller: Caller, expense_id: int) -> ExpenseOut:
    expense = _require_expense(session, caller, expense_id)
    deleted = _expense_out(expense, expense.category.name)
    session.delete(expense)
    session.flush()
    return deleted


# --- queries and reports ------------------------------------------------------------------------------


def _check_period(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and start > end:
        raise InvalidInput(f"start_date {start} is after end_date {end}; swap them or fix one")


def _totals(sums: list[repo.CurrencySum]) -> list[CurrencyTotal]:
    return [
        CurrencyTotal(currency=s.currency, total=format_amount(s.total_minor, s.currency), count=s.count) for s in sums
    ]


def query_expenses_by_category(
    session: Session,
    caller: Caller,
    category: str,
    *,
    start: date | None,
    end: date | None,
    limit: int,
    cursor: str | None,
) -> ExpensePage:
    _check_period(start, end)
    position = _expenses_position(cursor) if cursor else None
    user_id = repo.find_user_id(session, caller.user)
    found = _require_category(session, user_id, category)
    rows = repo.expenses_in_category(
        session, found.user_id, found.id, start=start, end=end, before=position, limit=limit + 1
    )
    page = rows[:limit]
    sums = repo.sums_by_currency(session, found.user_id, start=start, end=end, category_id=found.id)
    last = page[-1] if page else None
    return ExpensePage(
        category=found.name,
        start_date=start,
        end_date=end,
        expenses=[_expense_out(expense, found.name) for expense in page],
        count=sum(s.count for s in sums),
        totals=_totals(sums),
        next_cursor=(
            _encode_cursor("expenses", [last.spent_on.isoformat(), last.id])
            if last is not None and len(rows) > limit
            else None
        ),
    )


def summarize_spending(
    session: Session,
    caller: Caller,
    *,
    start: date,
    end: date,
    group_by: GroupBy,
    limit: int,
    cursor: str | None,
) -> SpendingSummary:
    _check_period(start, end)
    offset = _summary_position(cursor, group_by) if cursor else 0
    user_id = repo.find_user_id(session, caller.user)
    if user_id is None:
        return SpendingSummary(
            start_date=start,
            end_date=end,
            group_by=group_by,
            groups=[],
            totals=[],
            count=0,
            group_count=0,
            next_cursor=None,
        )
    sums = repo.sums_by_currency(session, user_id, start=start, end=end)
    groups, group_count = repo.spending_groups(
        session, user_id, start=start, end=end, group_by=group_by, offset=offset, limit=limit
    )
    currency_totals = {s.currency: s.total_minor for s in sums}
    return SpendingSummary(
        start_date=start,
        end_date=end,
        group_by=group_by,
        groups=[
            SpendingGroup(
                key=g.key,
                currency=g.currency,
                total=format_amount(g.total_minor, g.currency),
                count=g.count,
                share_percent=_percent(g.total_minor, currency_totals[g.currency]),
            )
            for g in groups
        ],
        totals=_totals(sums),
        count=sum(s.count for s in sums),
        group_count=group_count,
        next_cursor=(_encode_cursor(f"summary:{group_by}", offset + limit) if offset + limit < group_count else None),
    )


def _percent(part: int, whole: int) -> str:
    return f"{(Decimal(100) * part / whole).quantize(Decimal('0.01'))}" if whole else "0.00"


# --- cursors: opaque to callers, checked on the way back in ---------------------------------------------


def _encode_cursor(kind: str, position: Any) -> str:
    raw = json.dumps([kind, position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, kind: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found_kind, position = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise _bad_cursor() from None
    if found_kind != kind:
        raise _bad_cursor()
    return position


def _categories_position(cursor: str) -> str:
    key = _decode_cursor(cursor, "categories")
    if not isinstance(key, str) or not 0 < len(key) <= NAME_KEY_MAX or not key.isprintable():
        raise _bad_cursor()
    return key


def _expenses_position(cursor: str) -> tuple[date, int]:
    position = _decode_cursor(cursor, "expenses")
    if not (isinstance(position, list) and len(position) == 2 and isinstance(position[0], str)):
        raise _bad_cursor()
    day, expense_id = position
    if type(expense_id) is not int or not 0 < expense_id <= MAX_ID:
        raise _bad_cursor()
    try:
        return parse_iso_date(day), expense_id
    except InvalidInput:
        raise _bad_cursor() from None


def _summary_position(cursor: str, group_by: str) -> int:
    offset = _decode_cursor(cursor, f"summary:{group_by}")
    if type(offset) is not int or not 0 <= offset <= MAX_OFFSET:
        raise _bad_cursor()
    return offset


def _bad_cursor() -> InvalidInput:
    return InvalidInput(
        "cursor is not valid here; pass the next_cursor from the previous result of the same tool, "
        "unchanged, or leave it out to start from the first page"
    )
