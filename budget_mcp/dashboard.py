"""The spending dashboard: one month's budgets, its spending by category and the trend up to it, read in one
transaction by the existing reports, for the dashboard view (an MCP App) and ``budget-mcp report``."""

from __future__ import annotations

from sqlalchemy.orm import Session

from . import reports, service
from .errors import InvalidInput
from .periods import Month
from .schemas import DASHBOARD_MAX_MONTHS, GROUPS_MAX, PAGE_MAX, SpendingDashboard
from .service import Caller


def spending_dashboard(session: Session, caller: Caller, month: str | None, *, months: int) -> SpendingDashboard:
    """``month`` (YYYY-MM; None: the current month) with the ``months`` months up to it in the trend."""
    if not 1 <= months <= DASHBOARD_MAX_MONTHS:
        raise InvalidInput(f"months must be 1 to {DASHBOARD_MAX_MONTHS}, not {months}")
    today = Month.of(caller.today())
    this = Month.parse(month) if month is not None else today
    return SpendingDashboard(
        month=str(this),
        current_month=str(today),
        budget_status=reports.budget_status(session, caller, str(this), limit=PAGE_MAX, cursor=None),
        by_category=service.summarize_spending(
            session,
            caller,
            start=this.first_day,
            end=this.last_day,
            period=None,
            group_by="category",
            limit=GROUPS_MAX,
            cursor=None,
        ),
        trend=reports.spending_trend(session, caller, months=months, category=None, end_month=str(this)),
    )
