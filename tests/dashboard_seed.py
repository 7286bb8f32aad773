"""A household's first quarter of 2026, seeded through the tools, and what the database says it spent: the
data the dashboard tests (browser view, terminal report, Inspector) show and check against."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from mcp import Client
from sqlalchemy import Engine, text

from helpers import ok

TODAY = "2026-03-15T12:00:00+00:00"  # the seeded month, March 2026, is the current one: its budgets have a pace
MONTH = "2026-03"

EXPENSES: list[dict[str, Any]] = [
    {"amount": "1200.00", "description": "March rent", "category": "Rent", "spent_on": "2026-03-01"},
    {"amount": "120.50", "description": "Weekly shop", "category": "Groceries", "spent_on": "2026-03-02"},
    {"amount": "98.25", "description": "Weekly shop", "category": "Groceries", "spent_on": "2026-03-09"},
    {
        "amount": "233.35",
        "description": "Big shop",
        "category": "Groceries",
        "spent_on": "2026-03-12",
        "merchant": "Costco",
    },
    {"amount": "45.00", "description": "Pizza night", "category": "Dining", "spent_on": "2026-03-06"},
    {"amount": "85.00", "description": "Birthday dinner", "category": "Dining", "spent_on": "2026-03-13"},
    {
        "amount": "80.00",
        "description": "Museum tickets",
        "category": "Travel",
        "spent_on": "2026-03-10",
        "currency": "EUR",
    },
    {"amount": "1200.00", "description": "February rent", "category": "Rent", "spent_on": "2026-02-01"},
    {"amount": "310.00", "description": "Groceries", "category": "Groceries", "spent_on": "2026-02-14"},
    {"amount": "60.00", "description": "Lunch out", "category": "Dining", "spent_on": "2026-02-20"},
    {"amount": "1200.00", "description": "January rent", "category": "Rent", "spent_on": "2026-01-01"},
    {"amount": "280.40", "description": "Groceries", "category": "Groceries", "spent_on": "2026-01-17"},
    {"amount": "99.99", "description": "New year's eve", "category": "Dining", "spent_on": "2025-12-31"},
]
BUDGETS = {"Groceries": "400", "Dining": "100", "Rent": "1200"}  # from January 2026 on


async def seed_quarter(client: Client) -> None:
    for name in ("Groceries", "Rent", "Dining", "Travel"):
        await ok(client, "create_category", name=name)
    for expense in EXPENSES:
        await ok(client, "create_expense", **expense)
    for category, amount in BUDGETS.items():
        await ok(client, "set_budget", category=category, amount=amount, month="2026-01", ongoing=True)


SPENT = text(
    "SELECT c.name, e.currency, SUM(e.amount_minor), COUNT(*) FROM expenses e JOIN categories c ON c.id = e.category_id"
    " WHERE e.spent_on BETWEEN :first AND :last GROUP BY c.name, e.currency"
)
LIMITS = text(
    "SELECT c.name, b.currency, b.amount_minor FROM budgets b JOIN categories c ON c.id = b.category_id"
    " WHERE b.start_month <= :first AND (b.end_month IS NULL OR b.end_month >= :first)"
)


def month_days(month: str) -> tuple[str, str]:
    year, number = map(int, month.split("-"))
    following = f"{year + number // 12:04d}-{number % 12 + 1:02d}-01"
    return f"{month}-01", (date.fromisoformat(following) - timedelta(days=1)).isoformat()


def spent_by_category(db: Engine, month: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(category, currency) -> (total in minor units, number of expenses), as the database sums them."""
    first, last = month_days(month)
    with db.connect() as connection:
        rows = connection.execute(SPENT, {"first": first, "last": last})
        return {(name, currency): (int(total), int(count)) for name, currency, total, count in rows}


def budget_limits(db: Engine, month: str) -> dict[str, tuple[str, int]]:
    """category -> (currency, the month's limit in minor units)."""
    first, _ = month_days(month)
    with db.connect() as connection:
        return {name: (currency, int(minor)) for name, currency, minor in connection.execute(LIMITS, {"first": first})}


def decimal_of(minor: int) -> Decimal:
    """Cents as the exact amount (every currency seeded here has two minor digits)."""
    return Decimal(minor).scaleb(-2)
