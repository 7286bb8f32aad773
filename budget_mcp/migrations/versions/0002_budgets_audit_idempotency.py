"""budgets, the audit log (changes, change_items), idempotency keys; ids never reused on SQLite

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # SQLite reuses the largest id after a delete unless the table is AUTOINCREMENT, which only a
        # rebuild can add (db.upgrade_schema turns foreign keys off around rebuilds, then checks them).
        with op.batch_alter_table("categories", recreate="always", table_kwargs=NEVER_REUSE_IDS):
            pass
    with op.batch_alter_table(
        "expenses", recreate="always" if sqlite else "auto", table_kwargs=NEVER_REUSE_IDS
    ) as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=100), nullable=True))
        batch.create_unique_constraint(batch.f("uq_expenses_user_id_idempotency_key"), ["user_id", "idempotency_key"])

    op.create_table(
        "budgets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("start_month", sa.Date(), nullable=False),
        sa.Column("end_month", sa.Date(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("rollover", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_budgets_amount_positive")),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_budgets_currency_code")),
        sa.CheckConstraint("end_month IS NULL OR end_month >= start_month", name=op.f("ck_budgets_months_ordered")),
        sa.ForeignKeyConstraint(
            ["user_id", "category_id"],
            ["categories.user_id", "categories.id"],
            name=op.f("fk_budgets_user_id_category_id_categories"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_budgets_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
        sa.UniqueConstraint(
            "user_id", "category_id", "start_month", name=op.f("uq_budgets_user_id_category_id_start_month")
        ),
        **NEVER_REUSE_IDS,
    )
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tool", sa.String(length=50), nullable=False),
        sa.Column("summary", sa.String(length=500), nullable=False),
        sa.Column("undoes_id", sa.Integer(), nullable=True),
        sa.Column("undone_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["undoes_id"], ["changes.id"], name=op.f("fk_changes_undoes_id_changes")),
        sa.ForeignKeyConstraint(["undone_by_id"], ["changes.id"], name=op.f("fk_changes_undone_by_id_changes")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_changes_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
        **NEVER_REUSE_IDS,
    )
    op.create_index(op.f("ix_changes_user_id"), "changes", ["user_id"], unique=False)
    op.create_table(
        "change_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["change_id"], ["changes.id"], name=op.f("fk_change_items_change_id_changes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_items")),
        **NEVER_REUSE_IDS,
    )
    op.create_index(op.f("ix_change_items_change_id"), "change_items", ["change_id"], unique=False)
    op.create_index(
        op.f("ix_change_items_entity_entity_id_change_id"),
        "change_items",
        ["entity", "entity_id", "change_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_change_items_entity_entity_id_change_id"), table_name="change_items")
    op.drop_index(op.f("ix_change_items_change_id"), table_name="change_items")
    op.drop_table("change_items")
    op.drop_index(op.f("ix_changes_user_id"), table_name="changes")
    op.drop_table("changes")
    op.drop_table("budgets")
    with op.batch_alter_table("expenses") as batch:
        batch.drop_constraint(batch.f("uq_expenses_user_id_idempotency_key"), type_="unique")
        batch.drop_column("idempotency_key")
