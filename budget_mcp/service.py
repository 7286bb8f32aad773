"""Use cases. Each takes an open Session and the Caller, validates, works through the repository and
returns schemas. None of them commits: the caller owns the transaction (one per tool call)."""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from . import audit
from . import repository as repo
from .errors import Conflict, InvalidInput, NotFound
from .models import Budget, Category, CategoryRule, Change, Expense
from .money import format_amount, from_minor_units, to_minor_units
from .periods import DateRange, Month, MonthSpan, overlap, resolve_range, subtract
from .schemas import (
    MAX_ID,
    NAME_KEY_MAX,
    BudgetChange,
    BudgetSpan,
    CategoryCreated,
    CategoryList,
    CategoryRemoved,
    CategoryRenamed,
    ChangeDetail,
    ChangeList,
    ChangeOut,
    CurrencyTotal,
    ExpenseChanges,
    ExpenseDeleted,
    ExpensePage,
    ExpenseSaved,
    GroupBy,
    NewExpense,
    PeriodUsed,
    Recategorized,
    SpendingGroup,
    SpendingSummary,
    Undone,
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
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), compare=False)

    def today(self) -> date:
        """Today in the user's time zone (the clock is injectable, so tests can fix it)."""
        return self.clock().astimezone(self.timezone).date()

    def range(
        self,
        start: date | None,
        end: date | None,
        period: str | None,
        default: str | None = None,
        *,
        prefix: str = "",
    ) -> DateRange:
        """The days a call asks for: a named period, explicit dates, ``default`` or no limit.
        ``prefix`` names the arguments in messages ("baseline_" for baseline_start_date, ...)."""
        found = resolve_range(
            start,
            end,
            period,
            self.today(),
            default=default,
            names=(f"{prefix}period", f"{prefix}start_date", f"{prefix}end_date"),
        )
        return found if found is not None else DateRange(None, None)


def month_range(caller: Caller, month: str | None) -> DateRange:
    """The days of a month written YYYY-MM (None: the current month)."""
    found = Month.parse(month) if month is not None else Month.of(caller.today())
    return DateRange(found.first_day, found.last_day)


def period_used(days: DateRange) -> PeriodUsed:
    return PeriodUsed(start_date=days.start, end_date=days.end, period=days.period)


def receipt(change_id: int | None, dry_run: bool) -> dict[str, Any]:
    """The audit fields of a write's answer (a dry run is rolled back, so its change never existed)."""
    return {"change_id": None if dry_run else change_id, "dry_run": dry_run}


# --- categories ---------------------------------------------------------------------------------------


def create_category(session: Session, caller: Caller, name: str) -> CategoryCreated:
    user_id = repo.ensure_user(session, caller.user)
    key = category_key(name)
    existing = repo.find_category(session, user_id, key)
    if existing is not None:
        raise Conflict(f"category {existing.name!r} already exists; use it as it is")
    if repo.count_categories(session, user_id) >= MAX_CATEGORIES:
        raise Conflict(f"a user may have at most {MAX_CATEGORIES} categories; reuse an existing one")
    category = repo.add_category(session, user_id, name, key)
    change_id = audit.record(
        session, user_id, "create_category", f"created category {name!r}", [audit.created(category)]
    )
    return CategoryCreated(name=name, expense_count=0, change_id=change_id)


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
        next_cursor=encode_cursor("categories", page[-1][0].name_key) if len(rows) > limit else None,
    )


def require_own_category(session: Session, caller: Caller, name: str) -> Category:
    """The caller's category called ``name`` (any case), in one query with the user joined in; if there is
    none, NotFound from :func:`require_category`, naming the closest existing ones."""
    category = repo.find_users_category(session, caller.user, category_key(name))
    if category is not None:
        return category
    return require_category(session, repo.find_user_id(session, caller.user), name)


def own_category_ref(session: Session, caller: Caller, name: str) -> repo.CategoryRef:
    """:func:`require_own_category` for calls that only need the category's id and name (no ORM object)."""
    found = repo.users_category_ref(session, caller.user, category_key(name))
    if found is not None:
        return found
    category = require_own_category(session, caller, name)  # NotFound, naming the closest ones
    return repo.CategoryRef(category.id, category.user_id, category.name)  # pragma: no cover - created meanwhile


def require_category(session: Session, user_id: int | None, name: str) -> Category:
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


def _expense_fields(expense: Expense | Row[Any], category_name: str) -> dict[str, Any]:
    return {
        "id": expense.id,
        "amount": format_amount(expense.amount_minor, expense.currency),
        "currency": expense.currency,
        "category": category_name,
        "spent_on": expense.spent_on,
        "description": expense.description,
        "merchant": expense.merchant,
        "notes": expense.notes,
        "created_at": expense.created_at,
        "updated_at": expense.updated_at,
    }


def expense_out(expense: Expense | Row[Any], category_name: str) -> ExpenseOut:
    return ExpenseOut(**_expense_fields(expense, category_name))


def expense_saved(expense: Expense | Row[Any], category_name: str, change_id: int | None) -> ExpenseSaved:
    """A write's answer: the expense as stored and the change that stored it (None: nothing changed)."""
    return ExpenseSaved(**_expense_fields(expense, category_name), change_id=change_id)


def create_expense(
    session: Session, caller: Caller, new: NewExpense, idempotency_key: str | None = None
) -> ExpenseSaved:
    """Store an expense. With an idempotency key, a repeat of the same call returns the first expense:
    the database's unique key decides, so retries racing each other still store exactly one row."""
    currency = new.currency or caller.default_currency
    amount_minor = to_minor_units(new.amount, currency)
    filed = repo.file_expense(
        session,
        caller.user,
        category_key(new.category),
        amount_minor=amount_minor,
        currency=currency,
        spent_on=new.spent_on or caller.today(),
        description=new.description,
        merchant=new.merchant,
        notes=new.notes,
        idempotency_key=idempotency_key,
    )
    if filed is None:
        require_own_category(session, caller, new.category)  # NotFound, naming the closest ones
        raise Conflict(  # pragma: no cover - the category was created between these two statements
            f"category {new.category!r} was created while this call ran; nothing was recorded, call again"
        )
    category, expense = filed
    user_id = category.user_id
    if expense is None:  # the key was used before, by a retry of this call or by another call
        assert idempotency_key is not None
        first = repo.expense_by_idempotency_key(session, user_id, idempotency_key)
        if first is None:  # pragma: no cover - another call deleted it between these two statements
            raise Conflict(
                f"the expense first recorded with idempotency_key {idempotency_key!r} was deleted while this call "
                "ran; nothing was recorded, call again to record it anew"
            )
        return _replay(session, first, new, currency, amount_minor, category, idempotency_key)
    change_id = audit.record(
        session,
        user_id,
        "create_expense",
        f"recorded expense {expense.id}: {_describe(expense)} in {category.name}",
        [audit.inserted("expense", expense)],
    )
    return expense_saved(expense, category.name, change_id)


def _replay(
    session: Session,
    first: Expense,
    new: NewExpense,
    currency: str,
    amount_minor: int,
    category: repo.CategoryRef,
    key: str,
) -> ExpenseSaved:
    """The first call's answer, if this call asks for the same expense as the first one with its key: the
    expense (as it is now) and the change that recorded it."""
    same = (
        first.amount_minor == amount_minor
        and first.currency == currency
        and first.category_id == category.id
        and first.description == new.description
        and first.merchant == new.merchant
        and first.notes == new.notes
        and (new.spent_on is None or first.spent_on == new.spent_on)
    )
    if not same:
        raise Conflict(
            f"idempotency_key {key!r} was already used for a different expense (id {first.id}: "
            f"{_describe(first)}); use a new key for a new expense"
        )
    created = audit.first_change_of(session, first.user_id, "expense", first.id)
    return expense_saved(first, first.category.name, created.id if created is not None else None)


def _describe(expense: Expense | Row[Any]) -> str:
    return (
        f"{format_amount(expense.amount_minor, expense.currency)} {expense.currency} "
        f"{expense.description!r} on {expense.spent_on.isoformat()}"
    )


def _require_expense(session: Session, caller: Caller, expense_id: int) -> Expense:
    user_id = repo.find_user_id(session, caller.user)
    expense = repo.get_expense(session, user_id, expense_id) if user_id is not None else None
    if expense is None:
        gone = audit.last_change_of(session, user_id, "expense", expense_id) if user_id is not None else None
        if gone is not None and gone.tool != "create_expense":
            raise NotFound(
                f"expense {expense_id} was removed by change {gone.id} ({gone.tool}); "
                f"undo_change with change_id={gone.id} brings it back"
            )
        raise NotFound(f"no expense with id {expense_id}; search_expenses finds expenses and their ids")
    return expense


def get_expense(session: Session, caller: Caller, expense_id: int) -> ExpenseOut:
    expense = _require_expense(session, caller, expense_id)
    return expense_out(expense, expense.category.name)


def update_expense(session: Session, caller: Caller, expense_id: int, changes: ExpenseChanges) -> ExpenseSaved:
    if changes.is_empty():
        raise InvalidInput(
            "nothing to update: pass at least one of amount, description, category, spent_on, currency, "
            "merchant, notes or clear"
        )
    for name in changes.clear:
        if getattr(changes, name) is not None:
            raise InvalidInput(f"{name} is both set and cleared; pass one or the other")
    expense = _require_expense(session, caller, expense_id)
    before = audit.snapshot(expense)
    category = expense.category
    if changes.category is not None:
        category = require_category(session, expense.user_id, changes.category)
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
    item = audit.updated(before, expense)
    changed = sorted(
        _FIELD_NAMES.get(k, k) for k in item.after or {} if (item.before or {}).get(k) != (item.after or {}).get(k)
    )
    change_id = None
    if changed:
        change_id = audit.record(
            session,
            expense.user_id,
            "update_expense",
            f"changed {', '.join(changed)} of expense {expense.id} ({_describe(expense)})",
            [item],
        )
    return expense_saved(expense, category.name, change_id)


_FIELD_NAMES = {"amount_minor": "amount", "category_id": "category", "spent_on": "day"}


def delete_expense(session: Session, caller: Caller, expense_id: int, *, dry_run: bool) -> ExpenseDeleted:
    expense = _require_expense(session, caller, expense_id)
    deleted = expense_out(expense, expense.category.name)
    before = audit.snapshot(expense)
    session.delete(expense)
    session.flush()
    change_id = audit.record(
        session,
        expense.user_id,
        "delete_expense",
        f"deleted expense {expense_id}: {_describe(expense)} from {deleted.category}",
        [audit.deleted(before, Expense)],
    )
    return ExpenseDeleted(expense=deleted, **receipt(change_id, dry_run))


def recategorize_expenses(
    session: Session, caller: Caller, expense_ids: Sequence[int], category: str, *, dry_run: bool
) -> Recategorized:
    """Move many expenses into one category: all of them, or (one id unknown) none."""
    ids = list(dict.fromkeys(expense_ids))
    target = require_own_category(session, caller, category)
    rows = {e.id: e for e in repo.expenses_by_ids(session, target.user_id, ids)}
    missing = [i for i in ids if i not in rows]
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise NotFound(
            f"no expense with id {shown} ({len(missing)} of {len(ids)}); nothing was moved. "
            "Drop those ids or find the right ones with search_expenses"
        )
    moving = [rows[i] for i in ids if rows[i].category_id != target.id]
    moving_ids = {e.id for e in moving}
    items = []
    for expense in moving:
        before = audit.snapshot(expense)
        expense.category_id = target.id
        items.append(audit.updated(before, expense))
    session.flush()
    change_id = None
    if items:
        change_id = audit.record(
            session,
            target.user_id,
            "recategorize_expenses",
            f"moved {len(items)} expense(s) to {target.name}: ids {', '.join(str(e.id) for e in moving[:20])}"
            + (" ..." if len(moving) > 20 else ""),
            items,
        )
    return Recategorized(
        category=target.name,
        moved=[e.id for e in moving],
        already_there=[i for i in ids if i not in moving_ids],
        **receipt(change_id, dry_run),
    )


# --- categories: rename, merge, delete ----------------------------------------------------------------


def rename_category(session: Session, caller: Caller, name: str, new_name: str) -> CategoryRenamed:
    category = require_own_category(session, caller, name)
    key = category_key(new_name)
    other = repo.find_category(session, category.user_id, key)
    if other is not None and other.id != category.id:
        raise Conflict(
            f"category {other.name!r} already exists; to combine the two use merge_categories "
            f"(source={category.name!r}, target={other.name!r})"
        )
    if category.name == new_name:
        raise InvalidInput(f"category {category.name!r} already has that name; nothing to change")
    old = category.name
    before = audit.snapshot(category)
    category.name, category.name_key = new_name, key
    session.flush()
    change_id = audit.record(
        session,
        category.user_id,
        "rename_category",
        f"renamed category {old!r} to {new_name!r}",
        [audit.updated(before, category)],
    )
    return CategoryRenamed(old_name=old, name=new_name, **receipt(change_id, False))


def merge_categories(session: Session, caller: Caller, source: str, target: str, *, dry_run: bool) -> CategoryRemoved:
    """Move every expense and budget of ``source`` into ``target``, then remove ``source``."""
    user_id = repo.find_user_id(session, caller.user)
    src = require_category(session, user_id, source)
    dst = require_category(session, user_id, target)
    if src.id == dst.id:
        raise InvalidInput(f"source and target are the same category ({src.name!r}); name two different ones")
    return _remove_category(session, src, dst, "merge_categories", dry_run=dry_run)


def delete_category(
    session: Session, caller: Caller, name: str, *, move_to: str | None, dry_run: bool
) -> CategoryRemoved:
    user_id = repo.find_user_id(session, caller.user)
    category = require_category(session, user_id, name)
    target = require_category(session, user_id, move_to) if move_to is not None else None
    if target is not None and target.id == category.id:
        raise InvalidInput(f"move_to names the category being deleted ({category.name!r}); name another one")
    if target is None:
        count = repo.count_expenses_in(session, category.user_id, category.id)
        if count:
            raise Conflict(
                f"category {category.name!r} still holds {count} expense(s); pass move_to=<another category> "
                "to move them there first (or use merge_categories); nothing was deleted"
            )
    return _remove_category(session, category, target, "delete_category", dry_run=dry_run)


def _remove_category(
    session: Session, source: Category, target: Category | None, tool: str, *, dry_run: bool
) -> CategoryRemoved:
    items: list[audit.Item] = []
    moved_expenses = 0
    if target is not None:
        for expense in repo.expenses_in(session, source.user_id, source.id):
            before = audit.snapshot(expense)
            expense.category_id = target.id
            items.append(audit.updated(before, expense))
            moved_expenses += 1
        session.flush()
    moved: list[BudgetSpan] = []
    dropped: list[BudgetSpan] = []
    target_spans = [_span(b) for b in repo.budgets_of(session, source.user_id, target.id)] if target else []
    for budget in repo.budgets_of(session, source.user_id, source.id):
        before = audit.snapshot(budget)
        span = _span(budget)
        remains = [span]
        for taken in target_spans:
            remains = [piece for r in remains for piece in subtract(r, taken)]
        if target is None or not remains:
            dropped.append(_span_out(budget, source.name))
            session.delete(budget)
            session.flush()
            items.append(audit.deleted(before, Budget))
            continue
        if remains != [span]:
            dropped.append(_span_out(budget, source.name))
        first, *rest = remains
        _set_span(budget, first)
        budget.category_id = target.id
        session.flush()
        items.append(audit.updated(before, budget))
        moved.append(_span_out(budget, target.name))
        for piece in rest:
            extra = _copy_budget(budget, piece)
            session.add(extra)
            session.flush()
            items.append(audit.created(extra))
            moved.append(_span_out(extra, target.name))
    rules_moved: list[str] = []
    rules_removed: list[str] = []
    for rule in repo.rules_of_category(session, source.user_id, source.id):  # they follow the expenses
        before = audit.snapshot(rule)
        if target is not None:
            rule.category_id = target.id
            session.flush()
            items.append(audit.updated(before, rule))
            rules_moved.append(rule.pattern)
        else:
            session.delete(rule)
            session.flush()
            items.append(audit.deleted(before, CategoryRule))
            rules_removed.append(rule.pattern)
    before = audit.snapshot(source)
    session.delete(source)
    session.flush()
    items.append(audit.deleted(before, Category))
    into = f" into {target.name!r}" if target is not None else ""
    rules = len(rules_moved) + len(rules_removed)
    change_id = audit.record(
        session,
        source.user_id,
        tool,
        f"{'merged' if target is not None else 'deleted'} category {source.name!r}{into}: "
        f"{moved_expenses} expense(s) and {len(moved)} budget span(s) moved"
        + (f", {rules} category rule(s) {'moved' if target is not None else 'removed'}" if rules else ""),
        items,
    )
    return CategoryRemoved(
        removed=source.name,
        moved_to=target.name if target is not None else None,
        expenses_moved=moved_expenses,
        budgets_moved=moved,
        budgets_removed=dropped,
        rules_moved=rules_moved,
        rules_removed=rules_removed,
        **receipt(change_id, dry_run),
    )


# --- budgets: spans of months with one limit ---------------------------------------------------------------


def _span(budget: Budget) -> MonthSpan:
    start = Month.of(budget.start_month).index()
    return (start, Month.of(budget.end_month).index() if budget.end_month is not None else None)


def _set_span(budget: Budget, span: MonthSpan) -> None:
    budget.start_month = Month.from_index(span[0]).first_day
    budget.end_month = Month.from_index(span[1]).first_day if span[1] is not None else None


def _copy_budget(budget: Budget, span: MonthSpan) -> Budget:
    copy = Budget(
        user_id=budget.user_id,
        category_id=budget.category_id,
        amount_minor=budget.amount_minor,
        currency=budget.currency,
        rollover=budget.rollover,
    )
    _set_span(copy, span)
    return copy


def _span_out(budget: Budget, category: str) -> BudgetSpan:
    return BudgetSpan(
        category=category,
        from_month=str(Month.of(budget.start_month)),
        through_month=str(Month.of(budget.end_month)) if budget.end_month is not None else None,
        amount=format_amount(budget.amount_minor, budget.currency),
        currency=budget.currency,
        rollover=budget.rollover,
    )


def _months(caller: Caller, month: str | None, through_month: str | None, ongoing: bool) -> MonthSpan:
    first = Month.parse(month) if month is not None else Month.of(caller.today())
    if ongoing and through_month is not None:
        raise InvalidInput("pass either through_month or ongoing=true, not both")
    if ongoing:
        return (first.index(), None)
    last = Month.parse(through_month) if through_month is not None else first
    if last < first:
        raise InvalidInput(f"through_month {last} is before month {first}; swap them or fix one")
    if last.index() - first.index() >= 120:
        raise InvalidInput("a budget span may cover at most 120 months; use ongoing=true for every month on")
    return (first.index(), last.index())


def _carve(session: Session, category: Category, span: MonthSpan) -> tuple[list[BudgetSpan], list[audit.Item]]:
    """Take the months of ``span`` out of the category's budgets; what was there, and the audit items."""
    replaced: list[BudgetSpan] = []
    items: list[audit.Item] = []
    for budget in repo.budgets_of(session, category.user_id, category.id):
        own = _span(budget)
        if overlap(own, span) is None:
            continue
        replaced.append(_span_out(budget, category.name))
        before = audit.snapshot(budget)
        remains = subtract(own, span)
        if not remains:
            session.delete(budget)
            session.flush()
            items.append(audit.deleted(before, Budget))
            continue
        first, *rest = remains
        _set_span(budget, first)
        session.flush()
        items.append(audit.updated(before, budget))
        for piece in rest:
            extra = _copy_budget(budget, piece)
            session.add(extra)
            session.flush()
            items.append(audit.created(extra))
    return replaced, items


def set_budget(
    session: Session,
    caller: Caller,
    category: str,
    amount: Decimal,
    *,
    month: str | None,
    through_month: str | None,
    ongoing: bool,
    currency: str | None,
    rollover: bool,
    dry_run: bool,
) -> BudgetChange:
    span = _months(caller, month, through_month, ongoing)
    currency = currency or caller.default_currency
    amount_minor = to_minor_units(amount, currency)
    found = require_own_category(session, caller, category)
    user_id = found.user_id
    replaced, items = _carve(session, found, span)
    budget = Budget(
        user_id=user_id, category_id=found.id, amount_minor=amount_minor, currency=currency, rollover=rollover
    )
    _set_span(budget, span)
    session.add(budget)
    session.flush()
    items.append(audit.created(budget))
    out = _span_out(budget, found.name)
    through = out.through_month or "every month on"
    change_id = audit.record(
        session,
        user_id,
        "set_budget",
        f"budget for {found.name}: {out.amount} {currency} a month, {out.from_month} to {through}"
        + (" with rollover" if rollover else ""),
        items,
    )
    return BudgetChange(
        category=found.name,
        from_month=out.from_month,
        through_month=out.through_month,
        budget=out,
        replaced=replaced,
        **receipt(change_id, dry_run),
    )


def delete_budget(
    session: Session,
    caller: Caller,
    category: str,
    *,
    month: str | None,
    through_month: str | None,
    ongoing: bool,
    dry_run: bool,
) -> BudgetChange:
    span = _months(caller, month, through_month, ongoing)
    found = require_own_category(session, caller, category)
    replaced, items = _carve(session, found, span)
    first = str(Month.from_index(span[0]))
    last = str(Month.from_index(span[1])) if span[1] is not None else None
    if not replaced:
        raise NotFound(
            f"category {found.name!r} has no budget in {first}"
            + ("" if last == first else f" to {last}" if last else " or later")
            + "; budget_status shows a month's budgets"
        )
    change_id = audit.record(
        session,
        found.user_id,
        "delete_budget",
        f"removed the budget of {found.name} from {first} to {last or 'every month on'}",
        items,
    )
    return BudgetChange(
        category=found.name,
        from_month=first,
        through_month=last,
        budget=None,
        replaced=replaced,
        **receipt(change_id, dry_run),
    )


# --- the audit log ------------------------------------------------------------------------------------


def _change_out(change: Change, rows: int) -> ChangeOut:
    return ChangeOut(
        id=change.id,
        at=change.changed_at,
        tool=change.tool,
        summary=change.summary,
        rows=rows,
        undoes=change.undoes_id,
        undone_by=change.undone_by_id,
    )


CHANGE_DETAILS = 20  # rows shown per change with details=true


def list_changes(
    session: Session, caller: Caller, *, limit: int, cursor: str | None, details: bool = False
) -> ChangeList:
    before = _id_position(cursor, "changes") if cursor else None
    user_id = repo.find_user_id(session, caller.user)
    if user_id is None:
        return ChangeList(changes=[], next_cursor=None)
    rows = audit.recent_changes(session, user_id, before_id=before, limit=limit + 1)
    page = rows[:limit]
    changes = [_change_out(change, count) for change, count in page]
    if details:
        for out in changes:
            out.details = [
                ChangeDetail(table=i.entity, row_id=i.entity_id, before=i.before, after=i.after)  # type: ignore[arg-type]
                for i in audit.items_of(session, out.id, limit=CHANGE_DETAILS)
            ]
    return ChangeList(
        changes=changes,
        next_cursor=encode_cursor("changes", page[-1][0].id) if len(rows) > limit else None,
    )


def undo_change(session: Session, caller: Caller, change_id: int, *, dry_run: bool) -> Undone:
    user_id = repo.find_user_id(session, caller.user)
    change = audit.require_change(session, user_id, change_id)
    if change.undone_by_id is not None:
        raise Conflict(f"change {change.id} was already undone by change {change.undone_by_id}")
    items = audit.items_of(session, change.id)
    if not items:
        raise InvalidInput(f"change {change.id} changed no rows; there is nothing to undo")
    inverse = audit.revert(session, change, items)
    summary = f"undid change {change.id}: {change.summary}"
    undo = audit.record(session, change.user_id, "undo_change", summary, inverse, undoes=change.id)
    change.undone_by_id = undo
    session.flush()
    undone = _change_out(change, len(items))
    if dry_run:  # rolled back: the undo never happened
        undone.undone_by = None
    return Undone(undone=undone, rows=len(items), **receipt(undo, dry_run))


# --- queries and reports ------------------------------------------------------------------------------


def totals(sums: list[repo.CurrencySum]) -> list[CurrencyTotal]:
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
    period: str | None,
    limit: int,
    cursor: str | None,
) -> ExpensePage:
    days = caller.range(start, end, period)
    found = own_category_ref(session, caller, category)
    kind = "expenses:" + fingerprint(found.id, days.start, days.end)
    position = expenses_position(cursor, kind) if cursor else None
    where = repo.SearchFilter(category_id=found.id, start=days.start, end=days.end)
    rows = repo.search(session, found.user_id, where, before=position, limit=limit + 1)
    page, next_cursor = expense_page(rows, limit, kind)
    sums = repo.search_sums(session, found.user_id, where)
    return ExpensePage(
        category=found.name,
        start_date=days.start,
        end_date=days.end,
        period=days.period,
        expenses=page,
        count=sum(s.count for s in sums),
        totals=totals(sums),
        next_cursor=next_cursor,
    )


def expense_page(rows: Sequence[Row[Any]], limit: int, kind: str) -> tuple[list[ExpenseOut], str | None]:
    """The first ``limit`` of ``rows`` (:data:`repository.EXPENSE_COLUMNS`, fetched newest first, one extra)
    and the cursor to the rest."""
    page = rows[:limit]
    last = page[-1] if page else None
    more = last is not None and len(rows) > limit
    return (
        [expense_out(e, e.category) for e in page],
        encode_cursor(kind, [last.spent_on.isoformat(), last.id]) if more and last is not None else None,
    )


def summarize_spending(
    session: Session,
    caller: Caller,
    *,
    start: date | None,
    end: date | None,
    period: str | None,
    group_by: GroupBy,
    limit: int,
    cursor: str | None,
) -> SpendingSummary:
    days = caller.range(start, end, period, default="this_month")
    if days.start is None or days.end is None:
        raise InvalidInput("give both start_date and end_date, or a period such as this_month")
    start, end = days.start, days.end
    kind = f"summary:{group_by}:" + fingerprint(start, end)
    offset = offset_position(cursor, kind) if cursor else 0
    user_id = repo.find_user_id(session, caller.user)
    if user_id is None:
        return SpendingSummary(
            start_date=start,
            end_date=end,
            period=days.period,
            group_by=group_by,
            groups=[],
            totals=[],
            count=0,
            group_count=0,
            next_cursor=None,
        )
    page = repo.spending_groups(session, user_id, start=start, end=end, group_by=group_by, offset=offset, limit=limit)
    groups, group_count = page.groups, page.group_count
    sums = page.sums if page.sums is not None else repo.sums_by_currency(session, user_id, start=start, end=end)
    currency_totals = {s.currency: s.total_minor for s in sums}
    return SpendingSummary(
        start_date=start,
        end_date=end,
        period=days.period,
        group_by=group_by,
        groups=[
            SpendingGroup(
                key=g.key,
                currency=g.currency,
                total=format_amount(g.total_minor, g.currency),
                count=g.count,
                share_percent=percent(g.total_minor, currency_totals[g.currency]),
            )
            for g in groups
        ],
        totals=totals(sums),
        count=sum(s.count for s in sums),
        group_count=group_count,
        next_cursor=(encode_cursor(kind, offset + limit) if offset + limit < group_count else None),
    )


def percent(part: int, whole: int) -> str:
    return f"{(Decimal(100) * part / whole).quantize(Decimal('0.01'))}" if whole else "0.00"


# --- cursors: opaque to callers, checked on the way back in ---------------------------------------------


def fingerprint(*parts: object) -> str:
    """A short digest of a query's filters, kept in its cursors so a cursor only continues its own query."""
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]


def encode_cursor(kind: str, position: Any) -> str:
    raw = json.dumps([kind, position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found_kind, position = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise bad_cursor() from None
    if found_kind != kind:
        raise bad_cursor()
    return position


def _categories_position(cursor: str) -> str:
    key = decode_cursor(cursor, "categories")
    if not isinstance(key, str) or not 0 < len(key) <= NAME_KEY_MAX or not key.isprintable():
        raise bad_cursor()
    return key


def expenses_position(cursor: str, kind: str) -> tuple[date, int]:
    position = decode_cursor(cursor, kind)
    if not (isinstance(position, list) and len(position) == 2 and isinstance(position[0], str)):
        raise bad_cursor()
    day, expense_id = position
    if type(expense_id) is not int or not 0 < expense_id <= MAX_ID:
        raise bad_cursor()
    try:
        return parse_iso_date(day), expense_id
    except InvalidInput:
        raise bad_cursor() from None


def _id_position(cursor: str, kind: str) -> int:
    position = decode_cursor(cursor, kind)
    if type(position) is not int or not 0 < position <= MAX_ID:
        raise bad_cursor()
    return position


def offset_position(cursor: str, kind: str) -> int:
    offset = decode_cursor(cursor, kind)
    if type(offset) is not int or not 0 <= offset <= MAX_OFFSET:
        raise bad_cursor()
    return offset


def bad_cursor() -> InvalidInput:
    return InvalidInput(
        "cursor is not valid here; pass the next_cursor from the previous result of the same tool, "
        "unchanged, or leave it out to start from the first page"
    )
