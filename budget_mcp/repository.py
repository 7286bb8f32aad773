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


_GROUP_KEYS: dict[str, Any] = {
    "day": day_key(Expense.spent_on),
    "week": week_key(Expense.spent_on),
    "month": month_key(Expense.spent_on),
    "merchant": Expense.merchant,
}


def spending_groups(
    session: Session,
    user_id: int,
    *,
    start: date,
    end: date,
    group_by: str,
    offset: int,
    limit: int,
) -> tuple[list[GroupSum], int]:
    """A page of (group, currency) sums in the period and the number of such rows in all (GROUP BY in SQL).

    Categories and merchants come largest first within each currency; periods in date order.
    """
    total = func.sum(Expense.amount_minor)
    stmt: Select[Any]
    if group_by == "category":
        key = Category.name.label("key")
        stmt = select(key, Expense.currency, func.count(), total, func.count().over()).join(
            Category, and_(Category.id == Expense.category_id, Category.user_id == Expense.user_id)
        )
        stmt = stmt.group_by(Category.id, Category.name, Expense.currency)
        stmt = stmt.order_by(Expense.currency, total.desc(), Category.name_key)
    else:
        key = _GROUP_KEYS[group_by].label("key")
        stmt = select(key, Expense.currency, func.count(), total, func.count().over())
        stmt = stmt.group_by(key, Expense.currency)
        if group_by == "merchant":
            stmt = stmt.order_by(Expense.currency, total.desc(), key)
        else:
            stmt = stmt.order_by(key, Expense.currency)
    stmt = stmt.where(Expense.user_id == user_id, *_in_period(start, end)).offset(offset).limit(limit)
    rows = session.execute(stmt).all()
    groups = [GroupSum(row[0], row[1], row[2], int(row[3])) for row in rows]
    group_count = rows[0][4] if rows else 0
    return groups, group_count


def count_spending_groups(session: Session, user_id: int, *, start: date, end: date, group_by: str) -> int:
    """How many (group, currency) rows a summary has; used when a page lies past the end."""
    if group_by == "category":
        inner = select(Expense.category_id, Expense.currency).group_by(Expense.category_id, Expense.currency)
    else:
        key = _GROUP_KEYS[group_by].label("key")
        inner = select(key, Expense.currency).group_by(key, Expense.currency)
    inner = inner.where(Expense.user_id == user_id, *_in_period(start, end))
    return session.scalar(select(func.count()).select_from(inner.subquery())) or 0
