"""Domain errors: each message tells the caller (often a language model) how to fix its call."""

from __future__ import annotations


class BudgetError(Exception):
    """Base of every error a caller can act on. The message is safe to show: no SQL, driver text or secrets."""


class InvalidInput(BudgetError, ValueError):
    """The call's arguments are wrong. Also a ``ValueError`` so pydantic validators can raise it directly."""


class NotFound(BudgetError):
    """The named thing does not exist for this user."""


class Conflict(BudgetError):
    """The change would clash with existing data (a duplicate name, a category still in use, ...)."""


class DatabaseUnavailable(BudgetError):
    """The database could not be reached or answered with an error that is not the caller's fault."""
