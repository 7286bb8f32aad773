"""the category index also holds currency and amount: a category's count and totals come from the index alone

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NARROW = ["user_id", "category_id", "spent_on", "id"]


def upgrade() -> None:
    # The new index first: the old one serves queries until the new one is built (on PostgreSQL both in
    # this transaction; writers to expenses wait for it, a few seconds per million expenses).
    op.create_index("ix_expenses_by_category", "expenses", [*NARROW, "currency", "amount_minor"], unique=False)
    op.drop_index(op.f("ix_expenses_user_id_category_id_spent_on_id"), table_name="expenses")


def downgrade() -> None:
    op.create_index(op.f("ix_expenses_user_id_category_id_spent_on_id"), "expenses", NARROW, unique=False)
    op.drop_index("ix_expenses_by_category", table_name="expenses")
