"""Queries. Each takes a Session and the owning user's id, returns rows or scalars, and never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    Row,
    Select,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db import day_key, month_key, table_of, unicode_lower, utcnow, week_key
from .models import Budget, Category, CategoryRule, Expense, ImportedRow, User

# The models' tables, for the queries every call makes: a statement that names a mapped class or attribute
# runs through the ORM's execution machinery even when it returns plain rows, which costs more than the
# SQL of a small query. Their rows read the same.
_categories, _users, _expenses = table_of(Category), table_of(User), table_of(Expense)
_C, _U, _E = _categories.c, _users.c, _expenses.c


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


_USER_ID = select(_U.id).where(_U.name == bindparam("name"))


def find_user_id(session: Session, name: str) -> int | None:
    return session.scalar(_USER_ID, {"name": name})


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


def find_users_category(session: Session, user_name: str, key: str) -> Category | None:
    """The named user's category with this key, found in one query (the user and the category at once)."""
    stmt = (
        select(Category).join(User, User.id == Category.user_id).where(User.name == user_name, Category.name_key == key)
    )
    return session.scalar(stmt)


class CategoryRef(NamedTuple):
    """A category as the calls that only file under it or read it need it: no ORM object to load."""

    id: int
    user_id: int
    name: str


_USERS_CATEGORY_REF = (
    select(_C.id, _C.user_id, _C.name)
    .join_from(_categories, _users, _U.id == _C.user_id)
    .where(_U.name == bindparam("user_name"), _C.name_key == bindparam("key"))
)


def users_category_ref(session: Session, user_name: str, key: str) -> CategoryRef | None:
    """:func:`find_users_category` for the hot paths: one Core statement, built once, read as a tuple."""
    row = session.execute(_USERS_CATEGORY_REF, {"user_name": user_name, "key": key}).first()
    return CategoryRef(*row) if row is not None else None


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


# SQLite's (PostgreSQL files an expense with :data:`_FILE_EXPENSE_PG`)
_INSERT_EXPENSE = sqlite.insert(_expenses).on_conflict_do_nothing(index_elements=[_E.user_id, _E.idempotency_key])
_INSERT_EXPENSE_RETURNING = _INSERT_EXPENSE.returning(*_E)


def _file_expense_in_one_statement() -> Select[Any]:
    """PostgreSQL: :data:`_USERS_CATEGORY_REF` and the INSERT in one statement (data-modifying CTEs), so one
    round trip to a remote database instead of two. No row: no such category (nothing inserted); the
    expense's columns all null: the idempotency key was taken (nothing inserted)."""
    category = _USERS_CATEGORY_REF.cte("category")
    given = [c for c in _E if c.key not in {"id", "user_id", "category_id", "import_id"}]
    insert_one = (
        postgresql.insert(_expenses)
        .from_select(
            ["user_id", "category_id", *(c.key for c in given)],
            select(category.c.user_id, category.c.id, *(bindparam(c.key, type_=c.type) for c in given)),
        )
        .on_conflict_do_nothing(index_elements=[_E.user_id, _E.idempotency_key])
        .returning(*_E)
        .cte("inserted")
    )
    return select(
        *insert_one.c,
        category.c.id.label("category_ref_id"),
        category.c.user_id.label("category_ref_user_id"),
        category.c.name.label("category_ref_name"),
    ).select_from(category.outerjoin(insert_one, true()))


_FILE_EXPENSE_PG = _file_expense_in_one_statement()


def file_expense(
    session: Session, user_name: str, category_key: str, **values: Any
) -> tuple[CategoryRef, Row[Any] | None] | None:
    """Insert an expense into the named user's category: None when the user has no such category (nothing is
    inserted), else the category and the expense as stored (a row with its table's columns), or None for the
    expense when the user's ``idempotency_key`` in ``values`` is taken: then the INSERT does nothing (ON
    CONFLICT DO NOTHING), so a repeated key costs no failed statement and no savepoint, and concurrent
    repeats still store exactly one row (the unique key decides).

    Core statements built once: the ORM's bookkeeping for a new object costs several times the INSERT, and
    nothing here needs the object. On PostgreSQL the category is found in the same statement."""
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        now = utcnow()
        params = {"created_at": now, "updated_at": now, **values, "user_name": user_name, "key": category_key}
        row = session.execute(_FILE_EXPENSE_PG, params).first()
        if row is None:
            return None
        found = CategoryRef(row.category_ref_id, row.category_ref_user_id, row.category_ref_name)
        return found, row if row.id is not None else None
    category = users_category_ref(session, user_name, category_key)
    if category is None:
        return None
    values.update(user_id=category.user_id, category_id=category.id)
    if dialect.insert_returning:
        return category, session.execute(_INSERT_EXPENSE_RETURNING, values).one_or_none()
    return category, _add_expense_without_returning(session, values)


def _add_expense_without_returning(session: Session, values: dict[str, Any]) -> Row[Any] | None:
    """SQLite before 3.35 has no RETURNING (Python 3.11 on RHEL 9 links 3.34): read the new row by its id."""
    result = session.execute(_INSERT_EXPENSE, values)
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    new_id = result.inserted_primary_key[0]  # type: ignore[attr-defined]
    return session.execute(select(*_E).where(_E.id == new_id)).one()


def expense_by_idempotency_key(session: Session, user_id: int, key: str) -> Expense | None:
    return session.scalar(select(Expense).where(Expense.user_id == user_id, Expense.idempotency_key == key))


def expenses_by_ids(session: Session, user_id: int, ids: Sequence[int]) -> Sequence[Expense]:
    return session.scalars(select(Expense).where(Expense.user_id == user_id, Expense.id.in_(ids))).all()


def count_expenses_in(session: Session, user_id: int, category_id: int) -> int:
    stmt = select(func.count()).where(Expense.user_id == user_id, Expense.category_id == category_id)
    return session.scalar(stmt) or 0


def expenses_in(session: Session, user_id: int, category_id: int) -> Sequence[Expense]:
    """Every expense of a category (for moving them all, with an audit record of each)."""
    stmt = select(Expense).where(Expense.user_id == user_id, Expense.category_id == category_id).order_by(Expense.id)
    return session.scalars(stmt).all()


def _in_period(start: date | None, end: date | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(_E.spent_on >= start)
    if end is not None:
        conditions.append(_E.spent_on <= end)
    return conditions


def sums_by_currency(
    session: Session,
    user_id: int,
    *,
    start: date | None,
    end: date | None,
    category_id: int | None = None,
) -> list[CurrencySum]:
    """Count and total of the matching expenses, one row per currency."""
    return search_sums(session, user_id, SearchFilter(category_id=category_id, start=start, end=end))


_PERIOD_KEYS = {"day": day_key, "week": week_key, "month": month_key}


def _grouped_sums(user_id: Any, start: Any, end: Any, group_by: str, *extra: ColumnElement[Any]) -> Select[Any]:
    """SELECT key, currency, count, total, *extra ... GROUP BY the group and currency, in display order:
    categories and merchants largest first within each currency, periods in date order."""
    total = func.sum(_E.amount_minor)
    key: Any  # a mapped column or a SQL expression
    grouping: list[Any]
    order: list[Any]
    if group_by == "category":
        key, grouping, order = (
            _C.name,
            [_C.id, _C.name],
            [_E.currency, total.desc(), _C.name_key],
        )
    elif group_by == "merchant":
        key = _E.merchant
        grouping, order = [key], [_E.currency, total.desc(), key]
    else:
        key = _PERIOD_KEYS[group_by](_E.spent_on)
        grouping, order = [key], [key, _E.currency]
    stmt = select(key.label("key"), _E.currency, func.count(), total, *extra)
    if group_by == "category":
        stmt = stmt.join_from(_expenses, _categories, and_(_C.id == _E.category_id, _C.user_id == _E.user_id))
    return stmt.where(_E.user_id == user_id, *_in_period(start, end)).group_by(*grouping, _E.currency).order_by(*order)


@dataclass(frozen=True)
class GroupPage:
    groups: list[GroupSum]
    group_count: int  # (group, currency) rows in all, on every page
    sums: list[CurrencySum] | None  # the period's count and total per currency, if this page could tell them


@cache  # one statement per way of grouping, built once (the summary is the call agents make most)
def _group_page(group_by: str) -> Select[Any]:
    by_currency = (_E.currency,)
    stmt = _grouped_sums(
        bindparam("user_id"),
        bindparam("start"),
        bindparam("end"),
        group_by,
        func.count().over(),
        func.sum(func.count()).over(partition_by=by_currency),
        func.sum(func.sum(_E.amount_minor)).over(partition_by=by_currency),
    )
    return stmt.offset(bindparam("offset", type_=Integer)).limit(bindparam("limit", type_=Integer))


def spending_groups(
    session: Session, user_id: int, *, start: date, end: date, group_by: str, offset: int, limit: int
) -> GroupPage:
    """A page of (group, currency) sums in the period and how many such rows there are in all. When the
    page holds every row (the usual first page), also the period's count and total per currency: window
    sums over all the groups, so the summary reads the expenses once instead of twice."""
    page = {"user_id": user_id, "start": start, "end": end, "offset": offset, "limit": limit}
    rows = session.execute(_group_page(group_by), page).all()
    groups = [GroupSum(row[0], row[1], row[2], int(row[3])) for row in rows]
    if rows:
        sums = None
        if offset == 0 and rows[0][4] <= len(rows):  # every group is on this page, so every currency is
            by_code = {row[1]: CurrencySum(row[1], int(row[5]), int(row[6])) for row in rows}
            sums = [by_code[code] for code in sorted(by_code)]
        return GroupPage(groups, rows[0][4], sums)
    if offset == 0:
        return GroupPage(groups, 0, [])  # nothing was spent in the period
    # The page lies past the end (data changed between pages): count the rows on their own.
    counted = select(func.count()).select_from(_grouped_sums(user_id, start, end, group_by).subquery())
    return GroupPage(groups, session.scalar(counted) or 0, None)


# --- budgets ------------------------------------------------------------------------------------------


def budgets_of(session: Session, user_id: int, category_id: int) -> Sequence[Budget]:
    stmt = (
        select(Budget).where(Budget.user_id == user_id, Budget.category_id == category_id).order_by(Budget.start_month)
    )
    return session.scalars(stmt).all()


def budgets_in_month(session: Session, user_id: int, first_day: date) -> Sequence[tuple[Budget, str, str]]:
    """The budget spans covering a month, with their category's name and sort key, by name."""
    stmt = (
        select(Budget, Category.name, Category.name_key)
        .join(Category, and_(Category.id == Budget.category_id, Category.user_id == Budget.user_id))
        .where(
            Budget.user_id == user_id,
            Budget.start_month <= first_day,
            or_(Budget.end_month.is_(None), Budget.end_month >= first_day),
        )
        .order_by(Category.name_key)
    )
    return [(budget, name, key) for budget, name, key in session.execute(stmt)]


def budget_history(session: Session, user_id: int, category_ids: Sequence[int], before: date) -> Sequence[Budget]:
    """The spans of these categories that start before a month (to follow rollover chains back)."""
    if not category_ids:
        return []
    stmt = (
        select(Budget)
        .where(Budget.user_id == user_id, Budget.category_id.in_(category_ids), Budget.start_month < before)
        .order_by(Budget.category_id, Budget.start_month)
    )
    return session.scalars(stmt).all()


def spent_in_windows(session: Session, user_id: int, windows: Sequence[tuple[int, str, date, date]]) -> dict[int, int]:
    """For each (category, currency, first day, last day) window, the sum spent: one grouped query."""
    if not windows:
        return {}
    matches = [
        and_(
            Expense.category_id == category_id,
            Expense.currency == currency,
            Expense.spent_on >= start,
            Expense.spent_on <= end,
        )
        for category_id, currency, start, end in windows
    ]
    stmt = (
        select(Expense.category_id, func.sum(Expense.amount_minor))
        .where(Expense.user_id == user_id, or_(*matches))
        .group_by(Expense.category_id)
    )
    return {category_id: int(total) for category_id, total in session.execute(stmt)}


@dataclass(frozen=True)
class CategorySum:
    category_id: int
    name: str
    currency: str
    count: int
    total_minor: int


def sums_by_category(session: Session, user_id: int, start: date, end: date) -> list[CategorySum]:
    """Spending per (category, currency) in a range, largest first."""
    total = func.sum(Expense.amount_minor)
    stmt = (
        select(Category.id, Category.name, Expense.currency, func.count(), total)
        .join(Category, and_(Category.id == Expense.category_id, Category.user_id == Expense.user_id))
        .where(Expense.user_id == user_id, *_in_period(start, end))
        .group_by(Category.id, Category.name, Expense.currency)
        .order_by(total.desc(), Category.name_key, Expense.currency)
    )
    return [CategorySum(cid, name, cur, count, int(t)) for cid, name, cur, count, t in session.execute(stmt)]


# --- reports ------------------------------------------------------------------------------------------


def monthly_sums(session: Session, user_id: int, start: date, end: date, category_id: int | None) -> list[GroupSum]:
    """Spending per (month, currency) in a range, in month order; months without spending are absent."""
    stmt = _grouped_sums(user_id, start, end, "month")
    if category_id is not None:
        stmt = stmt.where(Expense.category_id == category_id)
    return [GroupSum(k, currency, count, int(total)) for k, currency, count, total in session.execute(stmt)]


@dataclass(frozen=True)
class Comparison:
    name: str
    currency: str
    baseline_minor: int
    current_minor: int


def compare_by_category(
    session: Session,
    user_id: int,
    current: tuple[date, date],
    baseline: tuple[date, date],
    *,
    offset: int,
    limit: int,
) -> tuple[list[Comparison], int]:
    """Per (category, currency): the sums in both periods, largest absolute change first; and the row count."""
    in_current = and_(Expense.spent_on >= current[0], Expense.spent_on <= current[1])
    in_baseline = and_(Expense.spent_on >= baseline[0], Expense.spent_on <= baseline[1])
    now = func.coalesce(func.sum(case((in_current, Expense.amount_minor), else_=literal(0))), 0)
    then = func.coalesce(func.sum(case((in_baseline, Expense.amount_minor), else_=literal(0))), 0)
    stmt = (
        select(Category.name, Expense.currency, then, now, func.count().over())
        .join(Category, and_(Category.id == Expense.category_id, Category.user_id == Expense.user_id))
        .where(Expense.user_id == user_id, or_(in_current, in_baseline))
        .group_by(Category.id, Category.name, Category.name_key, Expense.currency)
        .order_by(func.abs(now - then).desc(), Category.name_key, Expense.currency)
        .offset(offset)
        .limit(limit)
    )
    rows = session.execute(stmt).all()
    found = [Comparison(name, currency, int(b), int(c)) for name, currency, b, c, _ in rows]
    return found, (rows[0][4] if rows else 0)


def top_expenses(
    session: Session,
    user_id: int,
    *,
    start: date | None,
    end: date | None,
    currency: str,
    category_id: int | None,
    after: tuple[int, int] | None,
    limit: int,
) -> Sequence[Expense]:
    """Largest first (then newest id), from the keyset position ``after`` (amount, id)."""
    stmt = (
        select(Expense)
        .where(Expense.user_id == user_id, Expense.currency == currency, *_in_period(start, end))
        .order_by(Expense.amount_minor.desc(), Expense.id.desc())
        .limit(limit)
    )
    if category_id is not None:
        stmt = stmt.where(Expense.category_id == category_id)
    if after is not None:
        amount, expense_id = after
        stmt = stmt.where(
            or_(Expense.amount_minor < amount, and_(Expense.amount_minor == amount, Expense.id < expense_id))
        )
    return session.scalars(stmt).all()


def top_merchants(
    session: Session,
    user_id: int,
    *,
    start: date | None,
    end: date | None,
    currency: str,
    category_id: int | None,
    limit: int,
) -> list[tuple[str, int, int]]:
    """(merchant, count, total) largest total first."""
    total = func.sum(Expense.amount_minor)
    stmt = (
        select(Expense.merchant, func.count(), total)
        .where(
            Expense.user_id == user_id,
            Expense.currency == currency,
            Expense.merchant.is_not(None),
            *_in_period(start, end),
        )
        .group_by(Expense.merchant)
        .order_by(total.desc(), Expense.merchant)
        .limit(limit)
    )
    if category_id is not None:
        stmt = stmt.where(Expense.category_id == category_id)
    return [(merchant or "", count, int(t)) for merchant, count, t in session.execute(stmt)]


def user_currencies(session: Session, user_id: int) -> list[str]:
    stmt = select(Expense.currency).where(Expense.user_id == user_id).distinct().order_by(Expense.currency)
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class SearchFilter:
    """What search_expenses matches; every condition given must hold."""

    text: str | None = None
    category_id: int | None = None
    merchant: str | None = None
    currency: str | None = None
    min_minor: dict[str, int] | None = None  # per currency: the smallest amount in minor units
    max_minor: dict[str, int] | None = None
    start: date | None = None
    end: date | None = None

    def by_category_and_period_only(self) -> bool:
        """Whether this is query_expenses_by_category's filter: a category, dates or none, nothing else."""
        return (
            self.category_id is not None
            and (self.text, self.merchant, self.currency) == (None, None, None)
            and (self.min_minor is None and self.max_minor is None)
        )

    def bound(self, user_id: int, **more: Any) -> dict[str, Any]:
        """The bind parameters of a category and period filter's statements."""
        return {"user_id": user_id, "category_id": self.category_id, "start": self.start, "end": self.end, **more}

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = list(_in_period(self.start, self.end))
        if self.text is not None:
            words = self.text.lower()
            found.append(
                or_(
                    *(
                        unicode_lower(column).contains(words, autoescape=True)
                        for column in (_E.description, _E.merchant, _E.notes)
                    )
                )
            )
        if self.category_id is not None:
            found.append(_E.category_id == self.category_id)
        if self.merchant is not None:
            found.append(unicode_lower(_E.merchant) == self.merchant.lower())
        if self.currency is not None:
            found.append(_E.currency == self.currency)
        for bounds, above in ((self.min_minor, True), (self.max_minor, False)):
            if bounds is None:
                continue
            per_currency = [
                and_(_E.currency == cur, _E.amount_minor >= v if above else _E.amount_minor <= v)
                for cur, v in bounds.items()
            ]
            found.append(or_(*per_currency) if per_currency else literal(False))
        return found


# The columns an expense is shown with, its category's name included: pages of expenses are read as plain
# rows (no ORM objects to track, no second query for the category).
EXPENSE_COLUMNS = (
    _E.id,
    _E.amount_minor,
    _E.currency,
    _E.spent_on,
    _E.description,
    _E.merchant,
    _E.notes,
    _E.created_at,
    _E.updated_at,
    _C.name.label("category"),
)


def search(
    session: Session, user_id: int, where: SearchFilter, *, before: tuple[date, int] | None, limit: int
) -> Sequence[Row[*tuple[Any, ...]]]:
    """Newest first (day, then id), starting after the keyset position ``before``, as rows of
    :data:`EXPENSE_COLUMNS`; a category and period filter is served by an index."""
    if where.by_category_and_period_only():  # query_expenses_by_category: a statement built once
        day, before_id = before if before is not None else (None, None)
        params = where.bound(user_id, limit=limit, day=day, before_id=before_id)
        page = _category_page(where.start is not None, where.end is not None, before is not None)
        return session.execute(page, params).all()
    stmt = _newest_first(_E.user_id == user_id, *where.conditions()).limit(limit)
    if before is not None:
        stmt = stmt.where(_before(*before))
    return session.execute(stmt).all()


def _expense_rows(*conditions: ColumnElement[bool]) -> Select[Any]:
    """Rows of :data:`EXPENSE_COLUMNS` (the category's name joined in) matching ``conditions``."""
    return (
        select(*EXPENSE_COLUMNS)
        .join_from(_expenses, _categories, and_(_C.user_id == _E.user_id, _C.id == _E.category_id))
        .where(*conditions)
    )


def _newest_first(*conditions: ColumnElement[bool]) -> Select[Any]:
    return _expense_rows(*conditions).order_by(_E.spent_on.desc(), _E.id.desc())


def _before(day: Any, expense_id: Any) -> ColumnElement[bool]:
    """Older than the keyset position (day, id) in newest-first order."""
    return or_(_E.spent_on < day, and_(_E.spent_on == day, _E.id < expense_id))


def search_sums(session: Session, user_id: int, where: SearchFilter) -> list[CurrencySum]:
    if where.by_category_and_period_only():
        found = session.execute(_category_sums(where.start is not None, where.end is not None), where.bound(user_id))
    else:
        found = session.execute(_sums_by_currency(_E.user_id == user_id, *where.conditions()))
    return [CurrencySum(currency, count, int(total)) for currency, count, total in found]


def _sums_by_currency(*conditions: ColumnElement[bool]) -> Select[Any]:
    return (
        select(_E.currency, func.count(), func.sum(_E.amount_minor))
        .where(*conditions)
        .group_by(_E.currency)
        .order_by(_E.currency)
    )


def _bound_conditions(start: bool, end: bool) -> list[ColumnElement[bool]]:
    """:meth:`SearchFilter.conditions` of a category and period filter, as bind parameters."""
    found = [_E.user_id == bindparam("user_id"), _E.category_id == bindparam("category_id")]
    if start:
        found.append(_E.spent_on >= bindparam("start"))
    if end:
        found.append(_E.spent_on <= bindparam("end"))
    return found


@cache  # built once per shape: every query_expenses_by_category call runs this and the next
def _category_page(start: bool, end: bool, before: bool) -> Select[Any]:
    stmt = _newest_first(*_bound_conditions(start, end)).limit(bindparam("limit", type_=Integer))
    if before:
        stmt = stmt.where(_before(bindparam("day", type_=Date), bindparam("before_id")))
    return stmt


@cache
def _category_sums(start: bool, end: bool) -> Select[Any]:
    return _sums_by_currency(*_bound_conditions(start, end))


def expenses_in_date_order(
    user_id: int, where: SearchFilter, *, after: tuple[date, int] | None
) -> Select[*tuple[Any, ...]]:
    """Oldest first (day, then id), after the keyset position ``after``, as rows of :data:`EXPENSE_COLUMNS`:
    the query behind exports, paged (add a limit) or streamed."""
    stmt = _expense_rows(_E.user_id == user_id, *where.conditions()).order_by(_E.spent_on, _E.id)
    if after is not None:
        day, expense_id = after
        stmt = stmt.where(or_(_E.spent_on > day, and_(_E.spent_on == day, _E.id > expense_id)))
    return stmt


# --- statement imports --------------------------------------------------------------------------------

LOOKUP_CHUNK = 900  # values per IN (...) list: under SQLite's old limit of 999 bound parameters


def imported_fingerprints(session: Session, user_id: int, fingerprints: Sequence[str]) -> dict[str, int | None]:
    """Which of these statement rows were imported before, each with the expense it became (None: the
    expense was deleted since): one query per chunk."""
    found: dict[str, int | None] = {}
    for start in range(0, len(fingerprints), LOOKUP_CHUNK):
        chunk = fingerprints[start : start + LOOKUP_CHUNK]
        stmt = select(ImportedRow.fingerprint, ImportedRow.expense_id).where(
            ImportedRow.user_id == user_id, ImportedRow.fingerprint.in_(chunk)
        )
        found.update((found_print, expense_id) for found_print, expense_id in session.execute(stmt))
    return found


def reserve_expense_ids(session: Session, count: int) -> list[int]:
    """Ids for ``count`` expenses about to be inserted in bulk. With the ids in hand an executemany needs no
    RETURNING, whose order SQLite does not promise (SQLAlchemy would then insert one row at a time)."""
    if session.get_bind().dialect.name == "sqlite":
        # This transaction holds SQLite's write lock (BEGIN IMMEDIATE), so no one else takes ids meanwhile;
        # AUTOINCREMENT continues after the largest id the table ever had (kept in sqlite_sequence).
        used = session.scalar(text("SELECT max(seq) FROM sqlite_sequence WHERE name = 'expenses'")) or 0
        start = max(used, session.scalar(select(func.max(Expense.id))) or 0)
        return list(range(start + 1, start + count + 1))
    sequence = func.pg_get_serial_sequence(Expense.__tablename__, Expense.id.key)
    return list(session.scalars(select(func.nextval(sequence)).select_from(func.generate_series(1, count))))


def insert_expenses(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert expenses given as column values (ids included), in few statements (executemany)."""
    session.connection().execute(insert(Expense), rows)  # Core: plain rows, nothing for the ORM to track


def insert_imported_rows(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    session.connection().execute(insert(ImportedRow), rows)


def categories_by_key(session: Session, user_id: int) -> dict[str, tuple[int, str]]:
    """Every category of the user: name key -> (id, name)."""
    stmt = select(Category.name_key, Category.id, Category.name).where(Category.user_id == user_id)
    return {key: (category_id, name) for key, category_id, name in session.execute(stmt)}


# --- category rules -----------------------------------------------------------------------------------


def rules_with_categories(session: Session, user_id: int) -> list[tuple[CategoryRule, str]]:
    """Every rule of the user with its category's name, by id."""
    stmt = (
        select(CategoryRule, Category.name)
        .join(Category, and_(Category.user_id == CategoryRule.user_id, Category.id == CategoryRule.category_id))
        .where(CategoryRule.user_id == user_id)
        .order_by(CategoryRule.id)
    )
    return [(rule, name) for rule, name in session.execute(stmt)]


def rules_page(session: Session, user_id: int, *, after_key: str | None, limit: int) -> list[tuple[CategoryRule, str]]:
    stmt = (
        select(CategoryRule, Category.name)
        .join(Category, and_(Category.user_id == CategoryRule.user_id, Category.id == CategoryRule.category_id))
        .where(CategoryRule.user_id == user_id)
        .order_by(CategoryRule.pattern_key)
        .limit(limit)
    )
    if after_key is not None:
        stmt = stmt.where(CategoryRule.pattern_key > after_key)
    return [(rule, name) for rule, name in session.execute(stmt)]


def count_rules(session: Session, user_id: int) -> int:
    return session.scalar(select(func.count()).where(CategoryRule.user_id == user_id)) or 0


def find_rule(session: Session, user_id: int, key: str) -> CategoryRule | None:
    return session.scalar(select(CategoryRule).where(CategoryRule.user_id == user_id, CategoryRule.pattern_key == key))


def rules_of_category(session: Session, user_id: int, category_id: int) -> Sequence[CategoryRule]:
    stmt = (
        select(CategoryRule)
        .where(CategoryRule.user_id == user_id, CategoryRule.category_id == category_id)
        .order_by(CategoryRule.pattern_key)
    )
    return session.scalars(stmt).all()
