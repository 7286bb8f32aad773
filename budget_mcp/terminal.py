"""``budget-mcp report``: the spending dashboard drawn for a person at a terminal with rich (tables, bar charts,
budget progress bars). Colour only where the console supports it: piped output is plain text (rich drops
styles when stdout is not a terminal, and honours NO_COLOR).

Amounts are the exact decimal strings of :class:`~budget_mcp.schemas.SpendingDashboard`, grouped for reading;
bar lengths are the only approximations (a bar is a picture, not a number)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import dashboard
from .config import Settings
from .db import EngineOptions, make_engine, make_session_factory
from .periods import Month
from .schemas import BudgetLine, SpendingDashboard
from .service import Caller
from .transactions import migrate, run_in_transaction

BAR = 24  # characters of the longest bar
PROGRESS = 12  # characters of a budget's progress bar (100% used)
FULL, EMPTY, OVER = "█", "░", "▓"


MONTH_PERIODS = ("this_month", "last_month")  # the named periods that are one calendar month


def load_dashboard(
    settings: Settings, *, month: str | None = None, period: str | None = None, months: int = 6
) -> SpendingDashboard:
    """The dashboard of ``month`` (YYYY-MM) or of a period in :data:`MONTH_PERIODS` (neither: the current month)
    for the settings' user, read in one transaction."""
    caller = Caller(user=settings.user, default_currency=settings.default_currency, timezone=settings.tz())
    if period == "last_month":
        month = str(Month.of(caller.today()).plus(-1))
    migrate(settings)
    engine = make_engine(settings.url, EngineOptions.from_settings(settings))
    try:
        return run_in_transaction(
            make_session_factory(engine, read_only=True),
            lambda session: dashboard.spending_dashboard(session, caller, month, months=months),
        )
    finally:
        engine.dispose()


def render(board: SpendingDashboard, console: Console) -> None:
    """Print the dashboard: spending by category, budgets with their progress, then the trend."""
    title = f"Spending in {_month_name(board.month)}"
    status = board.budget_status
    if board.month == board.current_month and status.month_elapsed_percent is not None:
        title += f" (so far: {status.month_elapsed_percent}% of the month has passed)"
    console.print(Text(title, style="bold"))
    console.print()
    _spending(board, console)
    _budgets(board, console)
    _trend(board, console)


def _spending(board: SpendingDashboard, console: Console) -> None:
    summary = board.by_category
    if not summary.groups:
        console.print(Text(f"Nothing spent in {_month_name(board.month)}.", style="dim"))
        console.print()
        return
    for total in summary.totals:
        groups = [g for g in summary.groups if g.currency == total.currency]
        largest = max(Decimal(g.total) for g in groups)
        table = Table(title=f"Spending by category, {total.currency}", title_justify="left", expand=False)
        table.add_column("Category")
        table.add_column(f"Spent, {total.currency}", justify="right")
        table.add_column("Share", justify="right")
        table.add_column("", no_wrap=True)
        for group in groups:
            table.add_row(
                group.key or "",
                _amount(group.total),
                f"{group.share_percent}%",
                Text(_bar(Decimal(group.total), largest), style="cyan"),
            )
        table.add_section()
        table.add_row(Text("Total", style="bold"), Text(_amount(total.total), style="bold"), "", _expenses(total.count))
        console.print(table)
        console.print()


def _budgets(board: SpendingDashboard, console: Console) -> None:
    status = board.budget_status
    if not status.budgets:
        console.print(Text(f"No budgets for {_month_name(board.month)}.", style="dim"))
        console.print()
    else:
        table = Table(title="Budgets", title_justify="left")
        table.add_column("Category")
        table.add_column("Spent / available", justify="right")
        table.add_column("Used", no_wrap=True)
        table.add_column("Status", no_wrap=True)
        paced = any(line.pace is not None for line in status.budgets)
        if paced:
            table.add_column("Pace", no_wrap=True)
        for line in status.budgets:
            cells: list[str | Text] = [line.category, _spent_of(line), _progress(line), _verdict(line)]
            table.add_row(*cells, *([_pace(line)] if paced else []))
        console.print(table)
        if paced:
            console.print(Text("| marks an even pace; ahead -> where the month ends at this pace.", style="dim"))
        if status.next_cursor is not None:
            console.print(Text(f"{len(status.budgets)} of {status.budget_count} budgets shown.", style="dim"))
        console.print()
    if status.unbudgeted:
        others = ", ".join(f"{u.category} {_amount(u.total)} {u.currency}" for u in status.unbudgeted)
        console.print(Text(f"Not covered by a budget: {others}"))
        console.print()


def _trend(board: SpendingDashboard, console: Console) -> None:
    for series in board.trend.series:
        largest = max((Decimal(m.total) for m in series.months), default=Decimal(0))
        table = Table(
            title=f"Last {len(series.months)} months, {series.currency}",
            title_justify="left",
            caption=f"total {_amount(series.total)}, average {_amount(series.average_per_month)} a month",
            caption_justify="left",
        )
        table.add_column("Month")
        table.add_column(f"Spent, {series.currency}", justify="right")
        table.add_column("", no_wrap=True)
        for month in series.months:
            style = "bold magenta" if month.month == board.month else "magenta"
            label = f"{month.month} <" if month.month == board.month else month.month
            table.add_row(label, _amount(month.total), Text(_bar(Decimal(month.total), largest), style=style))
        console.print(table)
        console.print()


def _expenses(count: int) -> str:
    return f"{count} expense{'' if count == 1 else 's'}"


def _spent_of(line: BudgetLine) -> str:
    return f"{_amount(line.spent)} / {_amount(line.available)} {line.currency}"


def _progress(line: BudgetLine) -> Text:
    """A bar of the budget used (a full bar at 100%; beyond it the bar is drawn in the over-budget style), with
    the even-pace point marked | for the current month."""
    used = Decimal(line.percent_used) if line.percent_used is not None else Decimal(100 if line.over else 0)
    width = PROGRESS
    filled = _cells(min(used, Decimal(100)), Decimal(100), width)
    cells = [FULL] * filled + [EMPTY] * (width - filled)
    if line.pace is not None and Decimal(line.available) > 0:
        mark = min(_cells(Decimal(line.pace.expected_by_today), Decimal(line.available), width), width - 1)
        cells[mark] = "|"
    style = "red" if line.over else "yellow" if used >= 90 else "green"
    bar = Text("".join(cells).replace(FULL, OVER) if line.over else "".join(cells), style=style)
    bar.append(f" {line.percent_used}%" if line.percent_used is not None else " -")
    return bar


def _verdict(line: BudgetLine) -> Text:
    if line.over:
        return Text(f"OVER by {_amount(line.remaining.removeprefix('-'))}", style="bold red")
    return Text(f"{_amount(line.remaining)} left", style="green")


def _pace(line: BudgetLine) -> Text:
    if line.pace is None:
        return Text("")
    if line.pace.on_track:
        return Text("on pace", style="green")
    return Text(f"ahead -> {_amount(line.pace.projected_month_end)}", style="yellow")


def _amount(text: str) -> str:
    """An exact decimal string grouped in thousands: "1234.50" -> "1,234.50" (digits unchanged)."""
    return f"{Decimal(text):,}"


def _cells(part: Decimal, whole: Decimal, width: int) -> int:
    if whole <= 0 or part <= 0:
        return 0
    return max(1, int((part * width / whole).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)))


def _bar(part: Decimal, largest: Decimal) -> str:
    return FULL * _cells(part, largest, BAR)


def _month_name(month: str) -> str:
    parsed = Month.parse(month)
    return f"{parsed.first_day:%B %Y}"
