"""ORM tables: users, their categories, expenses, budgets, the audit log, statement imports and category
rules. Constraints and indexes live here; logic does not."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, utcnow
from .schemas import (
    DESCRIPTION_MAX,
    FILE_NAME_MAX,
    IDEMPOTENCY_KEY_MAX,
    MERCHANT_MAX,
    NAME_KEY_MAX,
    NAME_MAX,
    NOTES_MAX,
    RULE_PATTERN_KEY_MAX,
    RULE_PATTERN_MAX,
    SOURCE_MAX,
)

USER_NAME_MAX = 100
REQUEST_KEY_LENGTH = 32
FINGERPRINT_LENGTH = 64  # a statement row's sha256, in hex
# Ids are never reused (SQLite would otherwise hand a deleted row's id to the next insert): the audit log
# names rows by id, and undoing a delete puts the row back under its old id.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class User(Base):
    """Whose budget a row belongs to. Every query is scoped to one user."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(USER_NAME_MAX), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Category(Base):
    """A user's spending category. ``name_key`` is the case-folded name that makes names unique per user."""

    __tablename__ = "categories"
    __table_args__ = (
        UniqueConstraint("user_id", "name_key"),
        # Lets expenses reference (user_id, id), so an expense can never point at another user's category.
        UniqueConstraint("user_id", "id"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    name_key: Mapped[str] = mapped_column(String(NAME_KEY_MAX))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Expense(Base):
    """One purchase. ``amount_minor`` is in the currency's minor units (cents): exact on every database."""

    __tablename__ = "expenses"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("length(currency) = 3", name="currency_code"),
        ForeignKeyConstraint(
            ["user_id", "category_id"],
            ["categories.user_id", "categories.id"],
            ondelete="RESTRICT",
        ),
        # Newest-first listings and date-range reports for one user, with or without a category. The category
        # index also holds currency and amount, so a category's count and totals per currency (asked with
        # every page of query_expenses_by_category) are read from the index alone, not from every row.
        Index(None, "user_id", "spent_on", "id"),
        Index("ix_expenses_by_category", "user_id", "category_id", "spent_on", "id", "currency", "amount_minor"),
        # A retried create_expense finds its first attempt; concurrent retries cannot both insert.
        UniqueConstraint("user_id", "idempotency_key"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    category_id: Mapped[int]
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    spent_on: Mapped[date] = mapped_column(Date)
    description: Mapped[str] = mapped_column(String(DESCRIPTION_MAX))
    merchant: Mapped[str | None] = mapped_column(String(MERCHANT_MAX))
    notes: Mapped[str | None] = mapped_column(String(NOTES_MAX))
    idempotency_key: Mapped[str | None] = mapped_column(String(IDEMPOTENCY_KEY_MAX))
    # The statement import that added it, if any: undoing the import finds its expenses by this column.
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    category: Mapped[Category] = relationship(
        primaryjoin="and_(Expense.category_id == Category.id, Expense.user_id == Category.user_id)",
        foreign_keys="[Expense.user_id, Expense.category_id]",
        lazy="joined",
        viewonly=True,
    )


class Budget(Base):
    """A monthly spending limit for one category in one currency, over a span of months.

    Months are stored as their first day. ``end_month`` None means "every month from ``start_month`` on".
    A category's spans never overlap (the service carves old spans when a new limit is set).
    """

    __tablename__ = "budgets"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("length(currency) = 3", name="currency_code"),
        CheckConstraint("end_month IS NULL OR end_month >= start_month", name="months_ordered"),
        ForeignKeyConstraint(
            ["user_id", "category_id"],
            ["categories.user_id", "categories.id"],
            ondelete="RESTRICT",
        ),
        UniqueConstraint("user_id", "category_id", "start_month"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    category_id: Mapped[int]
    start_month: Mapped[date] = mapped_column(Date)
    end_month: Mapped[date | None] = mapped_column(Date)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    rollover: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Change(Base):
    """One entry of the audit log: a tool call that changed data, written in the same transaction."""

    __tablename__ = "changes"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    tool: Mapped[str] = mapped_column(String(50))
    summary: Mapped[str] = mapped_column(String(500))
    undoes_id: Mapped[int | None] = mapped_column(ForeignKey("changes.id"))
    undone_by_id: Mapped[int | None] = mapped_column(ForeignKey("changes.id"))
    # The tool call that wrote this change: after a connection drop during COMMIT, finding the key
    # proves the change was saved, so the call is answered instead of repeated (a double write).
    request_key: Mapped[str | None] = mapped_column(String(REQUEST_KEY_LENGTH), unique=True)


class ApiToken(Base):
    """A bearer token for the HTTP server, mapped to a user. Only its SHA-256 is stored: the token itself
    is shown once, when created."""

    __tablename__ = "api_tokens"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(NAME_MAX))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class ChangeItem(Base):
    """One row a change touched: its state before and after (None: it did not exist)."""

    __tablename__ = "change_items"
    __table_args__ = (
        Index(None, "entity", "entity_id", "change_id"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id", ondelete="CASCADE"), index=True)
    entity: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int]
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class StatementImport(Base):
    """One bank statement imported by import_expenses_csv: where it came from and what it did. Its change
    in the audit log undoes it as a whole."""

    __tablename__ = "imports"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(SOURCE_MAX))
    file_name: Mapped[str | None] = mapped_column(String(FILE_NAME_MAX))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    added: Mapped[int]
    duplicates: Mapped[int]
    rejected: Mapped[int]
    credits: Mapped[int]
    change_id: Mapped[int | None] = mapped_column(ForeignKey("changes.id"))


class ImportedRow(Base):
    """The fingerprint of a statement row once imported: a unique key, so a row is imported at most once.
    It outlives its expense (a re-import does not bring back what the user deleted); undoing the import
    removes it (a re-import after an undo adds the rows again)."""

    __tablename__ = "imported_rows"
    __table_args__ = (UniqueConstraint("user_id", "fingerprint"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(FINGERPRINT_LENGTH))
    import_id: Mapped[int] = mapped_column(ForeignKey("imports.id", ondelete="CASCADE"), index=True)
    # Indexed: deleting an expense looks up the row that names it.
    expense_id: Mapped[int | None] = mapped_column(ForeignKey("expenses.id", ondelete="SET NULL"), index=True)


class CategoryRule(Base):
    """Files imported rows whose merchant or description contains ``pattern`` (any case) under a category.
    ``pattern_key`` is the case-folded pattern: one rule per pattern and user."""

    __tablename__ = "category_rules"
    __table_args__ = (
        UniqueConstraint("user_id", "pattern_key"),
        ForeignKeyConstraint(
            ["user_id", "category_id"],
            ["categories.user_id", "categories.id"],
            ondelete="RESTRICT",
        ),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    pattern: Mapped[str] = mapped_column(String(RULE_PATTERN_MAX))
    pattern_key: Mapped[str] = mapped_column(String(RULE_PATTERN_KEY_MAX))
    category_id: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
