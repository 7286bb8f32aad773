"""The MCP adapter: tool declarations over the service functions. The only module that imports ``mcp``.

Each tool is its annotations, one transaction, one service call and the translation of domain errors
into ``ToolError`` (the only exception whose text SDK v2 shows the client).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field, ValidationError
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from . import __version__, service
from .config import Settings
from .db import make_engine, make_session_factory, upgrade_schema
from .errors import BudgetError
from .schemas import (
    Amount,
    CategoryList,
    CategoryName,
    ClearableField,
    CurrencyCode,
    Cursor,
    Description,
    Expense,
    ExpenseChanges,
    ExpenseId,
    ExpensePage,
    GroupBy,
    GroupLimit,
    IsoDate,
    Merchant,
    NewExpense,
    Notes,
    PageLimit,
    SpendingSummary,
)
from .schemas import Category as CategoryOut
from .service import Caller

logger = logging.getLogger(__name__)
T = TypeVar("T")

INSTRUCTIONS = """\
budget-mcp keeps one person's or household's expenses and answers questions about them with exact,
database-computed numbers. Amounts are decimal strings in the currency's minor digits ("12.30");
different currencies are never added together. Dates are YYYY-MM-DD and ranges are inclusive.
Start with list_categories to learn the category names; create_expense files an expense under one;
summarize_spending answers "where did my money go?"; query_expenses_by_category lists the expenses behind
a number. Lists are paged: when next_cursor is not null, call again with cursor=next_cursor."""


@dataclass(frozen=True)
class AppState:
    """What lives as long as the server: the session factory over a pooled engine, and whom it serves."""

    session_factory: sessionmaker[Session]
    caller: Caller


AppContext = Context[AppState]


def _run(ctx: AppContext, use_case: Callable[[Session, Caller], T]) -> T:
    """Run one use case in one transaction, committed on success and rolled back on any error."""
    state = ctx.request_context.lifespan_context
    try:
        with state.session_factory.begin() as session:
            return use_case(session, state.caller)
    except BudgetError as error:
        raise ToolError(str(error)) from error
    except ValidationError as error:  # a service-level model rejected a value the tool schema let through
        raise ToolError(_validation_message(error)) from error
    except IntegrityError as error:
        logger.warning("integrity error, rolled back: %s", error.orig)
        raise ToolError(
            "the change clashes with data written at the same time; nothing was changed, try again"
        ) from error
    except SQLAlchemyError as error:
        logger.exception("database error, rolled back")
        raise ToolError(
            "the database could not complete the request; nothing was changed, try again shortly"
        ) from error


def _validation_message(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'input'}: {problem['msg'].removeprefix('Value error, ')}"
        for problem in error.errors(include_input=False, include_url=False)
    )


def build_server(settings: Settings) -> MCPServer[AppState]:
    """The budget-mcp server for ``settings``. Nothing connects until the server starts (its lifespan)."""

    @asynccontextmanager
    async def lifespan(_server: MCPServer[AppState]) -> AsyncIterator[AppState]:
        engine = make_engine(settings.url)
        logger.info("database %s", settings.redacted_url)
        try:
            await anyio.to_thread.run_sync(upgrade_schema, engine)
            caller = Caller(user=settings.user, default_currency=settings.default_currency, timezone=settings.tz())
            yield AppState(session_factory=make_session_factory(engine), caller=caller)
        finally:
            engine.dispose()

    refuse_unknown_arguments = _RefuseUnknownArguments()
    server: MCPServer[AppState] = MCPServer(
        "budget-mcp",
        title="Budget",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
        middleware=[refuse_unknown_arguments],
    )
    _register_tools(server)
    refuse_unknown_arguments.server = server
    return server


class _RefuseUnknownArguments:
    """Refuse a tool call with an argument the tool does not have (say ``merchnat``): the SDK would drop
    it silently, and the expense would be stored without what the agent meant to record."""

    def __init__(self) -> None:
        self.server: MCPServer[AppState] | None = None
        self._parameters: dict[str, frozenset[str]] | None = None

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params if ctx.method == "tools/call" else None
        if isinstance(params, Mapping) and isinstance(params.get("arguments"), Mapping):
            if self._parameters is None:
                assert self.server is not None, "build_server() sets the server before it can serve"
                tools = await self.server.list_tools()
                self._parameters = {t.name: frozenset(t.input_schema.get("properties", {})) for t in tools}
            tool, arguments = params.get("name"), params["arguments"]
            known = self._parameters.get(tool) if isinstance(tool, str) else None
            unknown = sorted(set(arguments) - known) if known is not None else []
            if unknown:
                message = (
                    f"Error executing tool {tool}: unknown argument{'s' if len(unknown) > 1 else ''} "
                    f"{', '.join(map(repr, unknown))}; {tool} takes {', '.join(sorted(known or ()))}"
                )
                return CallToolResult(content=[TextContent(text=message)], is_error=True)
        return await call_next(ctx)


def _annotations(*, read_only: bool, destructive: bool = False, idempotent: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


def _register_tools(server: MCPServer[AppState]) -> None:
    @server.tool(title="Record an expense", annotations=_annotations(read_only=False))
    def create_expense(
        amount: Amount,
        description: Description,
        category: CategoryName,
        ctx: AppContext,
        spent_on: Annotated[IsoDate | None, Field(description="Day of the purchase; default today.")] = None,
        currency: Annotated[CurrencyCode | None, Field(description="Default: the configured currency.")] = None,
        merchant: Merchant | None = None,
        notes: Notes | None = None,
    ) -> Expense:
        """Record one expense and return it as stored (with its id).

        The category must already exist (see list_categories; create_category adds one); an unknown name
        is refused with the closest existing names. Amounts are exact: pass 12.30 or "12.30".
        """
        new = NewExpense(
            amount=amount,
            description=description,
            category=category,
            spent_on=spent_on,
            currency=currency,
            merchant=merchant,
            notes=notes,
        )
        return _run(ctx, lambda session, caller: service.create_expense(session, caller, new))

    @server.tool(title="Expenses in a category", annotations=_annotations(read_only=True, idempotent=True))
    def query_expenses_by_category(
        category: CategoryName,
        ctx: AppContext,
        start_date: Annotated[IsoDate | None, Field(description="First day included; default: no limit.")] = None,
        end_date: Annotated[IsoDate | None, Field(description="Last day included; default: no limit.")] = None,
        limit: PageLimit = 50,
        cursor: Cursor | None = None,
    ) -> ExpensePage:
        """List one category's expenses, newest first, with the count and per-currency total of ALL matches.

        Use it to show the expenses behind a number; for totals per category, month or merchant use
        summarize_spending instead. When next_cursor is not null, call again with cursor=next_cursor.
        """
        return _run(
            ctx,
            lambda session, caller: service.query_expenses_by_category(
                session, caller, category, start=start_date, end=end_date, limit=limit, cursor=cursor
            ),
        )

    @server.tool(title="Summarise spending", annotations=_annotations(read_only=True, idempotent=True))
    def summarize_spending(
        start_date: Annotated[IsoDate, Field(description="First day included, YYYY-MM-DD.")],
        end_date: Annotated[IsoDate, Field(description="Last day included, YYYY-MM-DD.")],
        ctx: AppContext,
        group_by: Annotated[GroupBy, Field(description="How to group the totals.")] = "category",
        limit: GroupLimit = 100,
        cursor: Cursor | None = None,
    ) -> SpendingSummary:
        """Answer "where did my money go?": totals for a period grouped by category, month, week, day or
        merchant, each with its count and share of the total, plus the grand total.

        Everything is summed by the database, exactly, and per currency: different currencies are never
        added together. Categories and merchants come largest first; months, weeks and days in date order.
        """
        return _run(
            ctx,
            lambda session, caller: service.summarize_spending(
                session, caller, start=start_date, end=end_date, group_by=group_by, limit=limit, cursor=cursor
            ),
        )

    @server.tool(title="Get an expense", annotations=_annotations(read_only=True, idempotent=True))
    def get_expense(expense_id: ExpenseId, ctx: AppContext) -> Expense:
        """Return one expense by its id, with every field as stored.

        Ids come from create_expense and query_expenses_by_category; to find expenses by category or
        period use query_expenses_by_category instead.
        """
        return _run(ctx, lambda session, caller: service.get_expense(session, caller, expense_id))

    @server.tool(title="Change an expense", annotations=_annotations(read_only=False, idempotent=True))
    def update_expense(
        expense_id: ExpenseId,
        ctx: AppContext,
        amount: Amount | None = None,
        description: Description | None = None,
        category: CategoryName | None = None,
        spent_on: IsoDate | None = None,
        currency: CurrencyCode | None = None,
        merchant: Merchant | None = None,
        notes: Notes | None = None,
        clear: Annotated[
            list[ClearableField], Field(description='Optional fields to empty, e.g. ["notes"].', max_length=2)
        ] = [],  # noqa: B006 (pydantic copies defaults)
    ) -> Expense:
        """Change some fields of an expense and return it as stored. Fields left out stay as they are.

        Changing only the currency keeps the number (12.30 USD becomes 12.30 EUR).
        """
        changes = ExpenseChanges(
            amount=amount,
            description=description,
            category=category,
            spent_on=spent_on,
            currency=currency,
            merchant=merchant,
            notes=notes,
            clear=frozenset(clear),
        )
        return _run(ctx, lambda session, caller: service.update_expense(session, caller, expense_id, changes))

    @server.tool(
        title="Delete an expense",
        annotations=_annotations(read_only=False, destructive=True, idempotent=True),
    )
    def delete_expense(expense_id: ExpenseId, ctx: AppContext) -> Expense:
        """Delete one expense for good and return what was deleted (so it can be recorded again).

        This cannot be undone: confirm with the user first. To fix a mistake, prefer update_expense.
        """
        return _run(ctx, lambda session, caller: service.delete_expense(session, caller, expense_id))

    @server.tool(title="List categories", annotations=_annotations(read_only=True, idempotent=True))
    def list_categories(ctx: AppContext, limit: PageLimit = 100, cursor: Cursor | None = None) -> CategoryList:
        """List the spending categories, alphabetically, each with how many expenses it holds.

        Call it before create_expense to use an existing name. When next_cursor is not null, call again
        with cursor=next_cursor for the rest.
        """
        return _run(ctx, lambda session, caller: service.list_categories(session, caller, limit=limit, cursor=cursor))

    @server.tool(title="Create a category", annotations=_annotations(read_only=False, idempotent=True))
    def create_category(name: CategoryName, ctx: AppContext) -> CategoryOut:
        """Create a spending category and return it. Names are unique regardless of case ("Food" and
        "food" are one); creating an existing name is refused, and the existing category can be used as is.
        """
        return _run(ctx, lambda session, caller: service.create_category(session, caller, name))
