"""Read-only use cases for spending conversations: budget status, trends, comparisons, top expenses and
search. Sums come from SQL; Python only lines them up (a few numbers per category, never rows)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy.orm import Session

from . import repository as repo
from .errors import InvalidInput
from .models import Budget
from .money import format_amount, minor_digits, normalize_currency
from .periods import DateRange, Month, comparison
from .schemas import (
    MAX_TREND_MONTHS,
    BudgetLine,
    BudgetStatus,
    BudgetTotal,
    ComparisonRow,
    ComparisonTotal,
    CurrencyTotal,
    MerchantTotal,
    MonthTotal,
    Pace,
    PeriodComparison,
    SearchResult,
    SpendingTrend,
    TopExpenses,
    TrendSeries,
    UnbudgetedSpending,
)
from .service import (
    Caller,
    bad_cursor,
    decode_cursor,
    encode_cursor,
    expense_out,
    expense_page,
    expenses_position,
    fingerprint,
    offset_position,
    percent,
    period_used,
    require_category,
    totals,
)

UNBUDGETED_SHOWN = 20


# --- budget status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Carry:
    """What earlier months roll into a budget: their limits and spending over an unbroken rollover chain."""

    first: Month
    limits_minor: int


def _rollover_chain(budget: Budget, history: list[Budget], month: Month) -> _Carry | None:
    """Follow the months before ``month`` back while each had a rollover budget in the same currency."""
    spans = sorted(history, key=lambda b: b.start_month, reverse=True)
    cursor = month.plus(-1)
    limits = 0
    first: Month | None = None
    for span in spans:
        start = Month.of(span.start_month)
        end = Month.of(span.end_month) if span.end_month is not None else None
        if start > cursor:
            continue
        if (end is not None and end < cursor) or not span.rollover or span.currency != budget.currency:
            break  # a gap, a month without rollover, or another currency ends the chain
        months = cursor.index() - start.index() + 1
        limits += span.amount_minor * months
        first = start
        cursor = start.plus(-1)
    return _Carry(first, limits) if first is not None else None


def budget_status(
    session: Session, caller: Caller, month: str | None, *, limit: int, cursor: str | None
) -> BudgetStatus:
    today = caller.today()
    this = Month.parse(month) if month is not None else Month.of(today)
    offset = offset_position(cursor, f"budget:{this}") if cursor else 0
    current = this == Month.of(today)
    elapsed = Decimal(today.day) / this.days if current else None
    empty = BudgetStatus(
        month=str(this),
        start_date=this.first_day,
        end_date=this.last_day,
        month_elapsed_percent=_pct(elapsed),
        budgets=[],
        budget_count=0,
        totals=[],
        spending=[],
        unbudgeted=[],
        unbudgeted_count=0,
        next_cursor=None,
    )
    user_id = repo.find_user_id(session, caller.user)
    if user_id is None:
        return empty
    budgets = repo.budgets_in_month(session, user_id, this.first_day)
    history: dict[int, list[Budget]] = defaultdict(list)
    for past in repo.budget_history(session, user_id, [b.category_id for b, _, _ in budgets], this.first_day):
        history[past.category_id].append(past)
    carries = {b.category_id: _rollover_chain(b, history[b.category_id], this) for b, _, _ in budgets}
    windows = [
        (b.category_id, b.currency, carry.first.first_day, this.plus(-1).last_day)
        for b, _, _ in budgets
        if (carry := carries[b.category_id]) is not None
    ]
    spent_before = repo.spent_in_windows(session, user_id, windows)
    spending = repo.sums_by_category(session, user_id, this.first_day, this.last_day)
    spent_now = {(s.category_id, s.currency): s.total_minor for s in spending}

    lines: list[BudgetLine] = []
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    covered: set[tuple[int, str]] = set()
    for budget, name, _ in budgets:
        carry = carries[budget.category_id]
        carried = carry.limits_minor - spent_before.get(budget.category_id, 0) if carry is not None else 0
        available = budget.amount_minor + carried
        spent = spent_now.get((budget.category_id, budget.currency), 0)
        covered.add((budget.category_id, budget.currency))
        sums[budget.currency][0] += available
        sums[budget.currency][1] += spent
        cur = budget.currency
        pace = None
        if elapsed is not None:
            expected = _round(Decimal(available) * elapsed)
            pace = Pace(
                expected_by_today=format_amount(expected, cur),
                projected_month_end=format_amount(_round(Decimal(spent) / elapsed), cur),
                on_track=spent <= expected,
            )
        lines.append(
            BudgetLine(
                category=name,
                currency=cur,
                limit=format_amount(budget.amount_minor, cur),
                carried_over=format_amount(carried, cur),
                available=format_amount(available, cur),
                spent=format_amount(spent, cur),
                remaining=format_amount(available - spent, cur),
                percent_used=percent(spent, available) if available > 0 else None,
                over=spent > available,
                rollover=budget.rollover,
                pace=pace,
            )
        )
    unbudgeted = sorted(  # per currency, largest first (amounts in different currencies do not compare)
        (s for s in spending if (s.category_id, s.currency) not in covered),
        key=lambda s: (s.currency, -s.total_minor, s.name),
    )
    by_currency: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in spending:
        by_currency[s.currency][0] += s.count
        by_currency[s.currency][1] += s.total_minor
    page = lines[offset : offset + limit]
    return empty.model_copy(
        update={
            "budgets": page,
            "budget_count": len(lines),
            "totals": [
                BudgetTotal(
                    currency=cur,
                    available=format_amount(available, cur),
                    spent=format_amount(spent, cur),
                    remaining=format_amount(available - spent, cur),
                )
                for cur, (available, spent) in sorted(sums.items())
            ],
            "spending": [
                CurrencyTotal(currency=cur, total=format_amount(total, cur), count=count)
                for cur, (count, total) in sorted(by_currency.items())
            ],
            "unbudgeted": [
                UnbudgetedSpending(
                    category=s.name, currency=s.currency, total=format_amount(s.total_minor, s.currency), count=s.count
                )
                for s in unbudgeted[:UNBUDGETED_SHOWN]
            ],
            "unbudgeted_count": len(unbudgeted),
            "next_cursor": encode_cursor(f"budget:{this}", offset + limit) if offset + limit < len(lines) else None,
        }
    )


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _pct(fraction: Decimal | None) -> str | None:
    return None if fraction is None else str((fraction * 100).quantize(Decimal("0.01")))


# --- trends and comparisons -----------------------------------------------------------------------------


def spending_trend(
    session: Session, caller: Caller, *, months: int, category: str | None, end_month: str | None
) -> SpendingTrend:
    if not 1 <= months <= MAX_TREND_MONTHS:
        raise InvalidInput(f"months must be 1 to {MAX_TREND_MONTHS}, not {months}")
    last = Month.parse(end_month) if end_month is not None else Month.of(caller.today())
    first = last.plus(-(months - 1))
    user_id = repo.find_user_id(session, caller.user)
    found = require_category(session, user_id, category) if category is not None else None
    rows = (
        repo.monthly_sums(session, user_id, first.first_day, last.last_day, found.id if found else None)
        if user_id is not None
        else []
    )
    by_currency: dict[str, dict[str, repo.GroupSum]] = defaultdict(dict)
    for row in rows:
        by_currency[row.currency][row.key or ""] = row
    if not by_currency:
        by_currency[caller.default_currency] = {}
    labels = [str(first.plus(i)) for i in range(months)]
    series = []
    for cur, found_months in sorted(by_currency.items()):
        total = sum(g.total_minor for g in found_months.values())
        series.append(
            TrendSeries(
                currency=cur,
                months=[
                    MonthTotal(
                        month=label,
                        total=format_amount(found_months[label].total_minor if label in found_months else 0, cur),
                        count=found_months[label].count if label in found_months else 0,
                    )
                    for label in labels
                ],
                total=format_amount(total, cur),
                average_per_month=format_amount(_round(Decimal(total) / months), cur),
            )
        )
    return SpendingTrend(
        start_month=str(first),
        end_month=str(last),
        start_date=first.first_day,
        end_date=last.last_day,
        category=found.name if found is not None else None,
        series=series,
    )


def compare_periods(
    session: Session,
    caller: Caller,
    *,
    current: tuple[date | None, date | None, str | None],
    baseline: tuple[date | None, date | None, str | None],
    limit: int,
    cursor: str | None,
) -> PeriodComparison:
    now = caller.range(*current, default="this_month")
    if now.start is None or now.end is None:
        raise InvalidInput("the period to compare needs both start_date and end_date, or a named period")
    if any(part is not None for part in baseline):
        then = caller.range(*baseline, prefix="baseline_")
        if then.start is None or then.end is None:
            raise InvalidInput("the baseline needs both baseline_start_date and baseline_end_date, or baseline_period")
    else:
        now, then = comparison(now, caller.today())
    kind = f"compare:{now.start}:{now.end}:{then.start}:{then.end}"
    offset = offset_position(cursor, kind) if cursor else 0
    user_id = repo.find_user_id(session, caller.user)
    rows: list[repo.Comparison] = []
    count = 0
    sums_now: list[repo.CurrencySum] = []
    sums_then: list[repo.CurrencySum] = []
    if user_id is not None:
        assert now.start is not None and now.end is not None and then.start is not None and then.end is not None
        rows, count = repo.compare_by_category(
            session, user_id, (now.start, now.end), (then.start, then.end), offset=offset, limit=limit
        )
        sums_now = repo.sums_by_currency(session, user_id, start=now.start, end=now.end)
        sums_then = repo.sums_by_currency(session, user_id, start=then.start, end=then.end)
    totals_now = {s.currency: s.total_minor for s in sums_now}
    totals_then = {s.currency: s.total_minor for s in sums_then}
    return PeriodComparison(
        current=period_used(now),
        baseline=period_used(then),
        rows=[
            ComparisonRow(
                category=r.name, currency=r.currency, **_change(r.baseline_minor, r.current_minor, r.currency)
            )
            for r in rows
        ],
        totals=[
            ComparisonTotal(currency=cur, **_change(totals_then.get(cur, 0), totals_now.get(cur, 0), cur))
            for cur in sorted(set(totals_now) | set(totals_then))
        ],
        row_count=count,
        next_cursor=encode_cursor(kind, offset + limit) if offset + limit < count else None,
    )


def _change(baseline: int, current: int, currency: str) -> dict[str, Any]:
    return {
        "baseline": format_amount(baseline, currency),
        "current": format_amount(current, currency),
        "change": format_amount(current - baseline, currency),
        "change_percent": percent(current - baseline, baseline) if baseline else None,
    }


# --- top expenses and search ----------------------------------------------------------------------------


def top_expenses(
    session: Session,
    caller: Caller,
    *,
    days: tuple[date | None, date | None, str | None],
    limit: int,
    category: str | None,
    currency: str | None,
    cursor: str | None,
) -> TopExpenses:
    used = caller.range(*days, default="this_month")
    user_id = repo.find_user_id(session, caller.user)
    found = require_category(session, user_id, category) if category is not None else None
    category_id = found.id if found is not None else None
    sums = (
        repo.sums_by_currency(session, user_id, start=used.start, end=used.end, category_id=category_id)
        if user_id is not None
        else []
    )
    if currency is None:  # the currency most of the period's spending is in (the default one on a tie)
        ranked = sorted(sums, key=lambda s: (-s.count, s.currency != caller.default_currency, s.currency))
        currency = ranked[0].currency if ranked else caller.default_currency
    kind = f"top:{fingerprint(used, category_id, currency)}"
    after = _top_position(cursor, kind) if cursor else None
    rows = (
        repo.top_expenses(
            session,
            user_id,
            start=used.start,
            end=used.end,
            currency=currency,
            category_id=category_id,
            after=after,
            limit=limit + 1,
        )
        if user_id is not None
        else []
    )
    merchants = (
        repo.top_merchants(
            session, user_id, start=used.start, end=used.end, currency=currency, category_id=category_id, limit=limit
        )
        if user_id is not None and cursor is None
        else []
    )
    page = rows[:limit]
    last = page[-1] if page else None
    return TopExpenses(
        period=period_used(used),
        currency=currency,
        category=found.name if found is not None else None,
        expenses=[expense_out(e, e.category.name) for e in page],
        merchants=[
            MerchantTotal(merchant=name, total=format_amount(total, currency), count=count)
            for name, count, total in merchants
        ],
        other_currencies=totals([s for s in sums if s.currency != currency]),
        next_cursor=(
            encode_cursor(kind, [last.amount_minor, last.id]) if last is not None and len(rows) > limit else None
        ),
    )


def _top_position(cursor: str, kind: str) -> tuple[int, int]:
    position = decode_cursor(cursor, kind)
    if not (isinstance(position, list) and len(position) == 2 and all(type(p) is int and p > 0 for p in position)):
        raise bad_cursor()
    return position[0], position[1]


def _bound(amount: Decimal, currency: str, rounding: str) -> int:
    return int(amount.scaleb(minor_digits(currency)).to_integral_value(rounding=rounding))


def search_expenses(
    session: Session,
    caller: Caller,
    *,
    text: str | None,
    category: str | None,
    merchant: str | None,
    currency: str | None,
    min_amount: Decimal | None,
    max_amount: Decimal | None,
    days: tuple[date | None, date | None, str | None],
    limit: int,
    cursor: str | None,
) -> SearchResult:
    used: DateRange = caller.range(*days)
    if min_amount is not None and max_amount is not None and min_amount > max_amount:
        raise InvalidInput(f"min_amount {min_amount} is above max_amount {max_amount}; swap them or fix one")
    currency = normalize_currency(currency) if currency is not None else None
    user_id = repo.find_user_id(session, caller.user)
    found = require_category(session, user_id, category) if category is not None else None
    kind = "search:" + fingerprint(text, found.id if found else None, merchant, currency, min_amount, max_amount, used)
    before = expenses_position(cursor, kind) if cursor else None
    if user_id is None:
        return SearchResult(period=period_used(used), expenses=[], count=0, totals=[], next_cursor=None)
    currencies = [currency] if currency is not None else repo.user_currencies(session, user_id)
    where = repo.SearchFilter(
        text=text,
        category_id=found.id if found is not None else None,
        merchant=merchant,
        currency=currency,
        min_minor={c: _bound(min_amount, c, ROUND_CEILING) for c in currencies} if min_amount is not None else None,
        max_minor={c: _bound(max_amount, c, ROUND_FLOOR) for c in currencies} if max_amount is not None else None,
        start=used.start,
        end=used.end,
    )
    rows = repo.search(session, user_id, where, before=before, limit=limit + 1)
    page, next_cursor = expense_page(rows, limit, kind)
    sums = repo.search_sums(session, user_id, where)
    return SearchResult(
        period=period_used(used),
        expenses=page,
        count=sum(s.count for s in sums),
        totals=totals(sums),
        next_cursor=next_cursor,
    )
