"""Queries. Each takes a Session and the owning user's id, returns rows or scalars, and never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db import day_key, month_key, week_key
from .models import Category, Expense, User


@dataclass(frozen=True)
class CurrencySum:
    currency: str
    count: int
    total_minor: int


@dataclass(frozen=True)
class GroupSum:
    key: str | None
    currency: str
    count: int
    total_minor: int


# --- users --------------------------------------------------------------------------------------------


def find_user_id(session: Session, name: str) -> int | None:
    return session.scalar(select(User.id).where(User.name == name))


def ensure_user(session: Session, name: str) -> int:
    """The user's id, creating the user on first write. Safe when two calls race to create it."""
    user_id = find_user_id(session, name)
    if user_id is not None:
        return user_id
    try:
        with session.begin_nested():
            user = User(name=name)
            session.add(user)
        return user.id
    except IntegrityError:  # another transaction created it first; it is committed and visible now
        user_id = find_user_id(session, name)
        if user_id is None:
            raise
        return user_id


# --- categories ---------------------------------------------------------------------------------------


def find_category(session: Session, user_id: int, key: str) -> Category | None:
    return session.scalar(select(Category).where(Category.user_id == user_id, Category.name_key == key))


def category_names(session: Session, user_id: int, limit: int) -> list[str]:
    """Up to ``limit`` of the user's category names, alphabetically: enough to suggest the right one."""
    stmt = select(Category.name).where(Category.user_id == user_id).order_by(Category.name_key).limit(limit)
    return list(session.scalars(stmt))


def count_categories(session: Session, user_id: int) -> int:
    return session.scalar(select(func.count()).where(Category.user_id == user_id)) or 0


def add_category(session: Session, user_id: int, name: str, key: str) -> Category:
    category = Category(user_id=user_id, name=name, name_key=key)
    session.add(category)
    session.flush()
    return category


def categories_with_counts(
    session: Session, user_id: int, *, after_key: str | None, limit: int
) -> Sequence[tuple[Category, int]]:
    """A page of categories in name order, each with its number of expenses (one grouped query)."""
    stmt = (
        select(Category, func.count(Expense.id))
        .outerjoin(Expense, and_(Expense.category_id == Category.id, Expense.user_id == Category.user_id))
        .where(Category.user_id == user_id)
        .group_by(Category.id)
        .order_by(Category.name_key)
        .limit(limit)
    )
    if after_key is not None:
        stmt = stmt.where(Category.name_key > after_key)
    return [(category, count) for category, count in session.execute(stmt)]


# --- expenses -----------------------------------------------------------------------------------------


def get_expense(session: Session, user_id: int, expense_id: int) -> Expense | None:
    return session.scalar(select(Expense).where(Expense.user_id == user_id, Expense.id == expense_id))


def _in_period(start: date | None, end: date | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(Expense.spent_on >= start)
    if end is not None:
        conditions.append(Expense.spent_on <= end)
    return conditions


def expenses_in_category(
    session: Session,
    user_id: int,
    category_id: int,
    *,
    start: date | None,
    end: date | None,
    before: tuple[date, int] | None,
    limit: int,
) -> Sequence[Expense]:
    """Newest first (day, then id), starting after the keyset position ``before``; served by an index."""
    stmt = (
        select(Expense)
        .where(Expense.user_id == user_id, Expense.category_id == category_id, *_in_period(start, end))
        .order_by(Expense.spent_on.desc(), Expense.id.desc())
        .limit(limit)
    )
    if before is not None:
        day, expense_id = before
        stmt = stmt.where(or_(Expense.spent_on < day, and_(Expense.spent_on == day, Expense.id < expense_id)))
    return session.scalars(stmt).all()


def sums_by_currency(
    session: Session,
    user_id: int,
    *,
    start: date | None,
    end: date | None,
    category_id: int | None = None,
) -> list[CurrencySum]:
    """Count and total of the matching expenses, one row per currency."""
    stmt = (
        select(Expense.currency, func.count(), func.sum(Expense.amount_minor))
        .where(Expense.user_id == user_id, *_in_period(start, end))
        .group_by(Expense.currency)
        .order_by(Expense.currency)
    )
    if category_id is not None:
        stmt = stmt.where(Expense.category_id == category_id)
    return [CurrencySum(currency, count, int(total)) for currency, count, total in session.execute(stmt)]


_PERIOD_KEYS = {"day": day_key, "week": week_key, "month": month_key}


def _grouped_sums(user_id: int, start: date, end: date, group_by: str, *extra: ColumnElement[Any]) -> Select[Any]:
    """SELECT key, currency, count, total, *extra ... GROUP BY the group and currency, in display order:
    categories and merchants largest first within each currency, periods in date order."""
    total = func.sum(Expense.amount_minor)
    key: Any  # a mapped column or a SQL expression
    grouping: list[Any]
    order: list[Any]
    if group_by == "category":
        key, grouping, order = (
            Category.name,
            [Category.id, Category.name],
            [Expense.currency, total.desc(), Category.name_key],
        )
    elif group_by == "merchant":
        key = Expense.merchant
        grouping, order = [key], [Expense.currency, total.desc(), key]
    else:
        key = _PERIOD_KEYS[group_by](Expense.spent_on)
        grouping, order = [key], [key, Expense.currency]
    stmt = select(key.label("key"), Expense.currency, func.count(), total, *extra)
    if group_by == "category":
        stmt = stmt.join(Category, and_(Category.id == Expense.category_id, Category.user_id == Expense.user_id))
    return (
        stmt.where(Expense.user_id == user_id, *_in_period(start, end))
        .group_by(*grouping, Expense.currency)
        .order_by(*order)
    )


def spending_groups(
    session: Session, user_id: int, *, start: date, end: date, group_by: str, offset: int, limit: int
) -> tuple[list[GroupSum], int]:
    """A page of (group, currency) sums in the period, and how many such rows there are in all."""
    stmt = _grouped_sums(user_id, start, end, group_by, func.count().over()).offset(offset).limit(limit)
    rows = session.execute(stmt).all()
    groups = [GroupSum(key, currency, count, int(total)) for key, currency, count, total, _ in rows]
    if rows:
        return groups, rows[0][4]
    if offset == 0:
        return groups, 0
    # The page lies past the end (data changed between pages): count the rows on their own.
    counted = select(func.count()).select_from(_grouped_sums(user_id, start, end, group_by).subquery())
    return groups, session.scalar(counted) or 0
