"""bank statement imports (imports, imported_rows, expenses.import_id) and category rules

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("change_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["change_id"], ["changes.id"], name=op.f("fk_imports_change_id_changes")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_imports_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
        **NEVER_REUSE_IDS,
    )
    op.create_index(op.f("ix_imports_user_id"), "imports", ["user_id"], unique=False)

    # SQLite adds a foreign key only by rebuilding the table (db.upgrade_schema turns foreign keys off
    # around rebuilds, then checks them); the rebuilt table keeps AUTOINCREMENT.
    with op.batch_alter_table(
        "expenses", recreate="always" if sqlite else "auto", table_kwargs=NEVER_REUSE_IDS
    ) as batch:
        batch.add_column(sa.Column("import_id", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_expenses_import_id"), ["import_id"], unique=False)
        batch.create_foreign_key(batch.f("fk_expenses_import_id_imports"), "imports", ["import_id"], ["id"])

    op.create_table(
        "imported_rows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("expense_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["expense_id"], ["expenses.id"], name=op.f("fk_imported_rows_expense_id_expenses"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["imports.id"], name=op.f("fk_imported_rows_import_id_imports"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_imported_rows_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imported_rows")),
        sa.UniqueConstraint("user_id", "fingerprint", name=op.f("uq_imported_rows_user_id_fingerprint")),
    )
    op.create_index(op.f("ix_imported_rows_expense_id"), "imported_rows", ["expense_id"], unique=False)
    op.create_index(op.f("ix_imported_rows_import_id"), "imported_rows", ["import_id"], unique=False)

    op.create_table(
        "category_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("pattern", sa.String(length=100), nullable=False),
        sa.Column("pattern_key", sa.String(length=300), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id", "category_id"],
            ["categories.user_id", "categories.id"],
            name=op.f("fk_category_rules_user_id_category_id_categories"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_category_rules_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_category_rules")),
        sa.UniqueConstraint("user_id", "pattern_key", name=op.f("uq_category_rules_user_id_pattern_key")),
        **NEVER_REUSE_IDS,
    )


def downgrade() -> None:
    op.drop_table("category_rules")
    op.drop_index(op.f("ix_imported_rows_import_id"), table_name="imported_rows")
    op.drop_index(op.f("ix_imported_rows_expense_id"), table_name="imported_rows")
    op.drop_table("imported_rows")
    with op.batch_alter_table("expenses") as batch:
        batch.drop_constraint(batch.f("fk_expenses_import_id_imports"), type_="foreignkey")
        batch.drop_index(batch.f("ix_expenses_import_id"))
        batch.drop_column("import_id")
    op.drop_index(op.f("ix_imports_user_id"), table_name="imports")
    op.drop_table("imports")
