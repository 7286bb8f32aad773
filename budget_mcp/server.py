"""The MCP adapter: tool declarations over the service functions. The only module that imports ``mcp``.

Each tool is its annotations, one transaction, one service call and the translation of domain errors
into ``ToolError`` (the only exception whose text SDK v2 shows the client).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio.from_thread
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.apps import Apps, ResourceCsp
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent, ToolAnnotations
from mcp.types import Tool as ListedTool
from pydantic import Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .config import Settings, load_sqlalchemy, max_connections
from .errors import BudgetError, DatabaseUnavailable
from .schemas import (
    DASHBOARD_MAX_MONTHS,
    EXPORT_MAX,
    MAX_TREND_MONTHS,
    PREVIEW_MAX,
    Amount,
    BudgetChange,
    BudgetStatus,
    CategoryCreated,
    CategoryList,
    CategoryName,
    CategoryRemoved,
    CategoryRenamed,
    CategoryRuleChange,
    CategoryRuleList,
    ChangeId,
    ChangeList,
    ClearableField,
    ColumnField,
    ColumnNames,
    CurrencyCode,
    Cursor,
    DateOrder,
    DecimalSeparator,
    Description,
    DryRun,
    Expense,
    ExpenseChanges,
    ExpenseDeleted,
    ExpenseExport,
    ExpenseId,
    ExpenseIds,
    ExpensePage,
    ExpenseSaved,
    ExportFormat,
    GroupBy,
    GroupLimit,
    IdempotencyKey,
    ImportResult,
    ImportStatus,
    IsoDate,
    Merchant,
    MonthArg,
    NewExpense,
    Notes,
    PageLimit,
    Period,
    PeriodComparison,
    Recategorized,
    RulePattern,
    SearchResult,
    SignConvention,
    SourceName,
    SpendingDashboard,
    SpendingSummary,
    SpendingTrend,
    StatementOptions,
    TopExpenses,
    Undone,
)
from .troubleshoot import connection_fix, driver_message


def _lazy_module(name: str) -> ModuleType:
    """Bind ``name`` now, import it on first use (the standard library's ``LazyLoader``).

    The database side (SQLAlchemy's ORM, the models, the use cases, Alembic) takes longer to import than the
    MCP SDK takes to start, and the handshake (``initialize``, ``tools/list``) needs none of it: the server
    answers the handshake first while :meth:`AppState.database` loads it in a worker thread. Every use of
    these modules goes through that method first, which loads them all under its lock, so no two threads
    race to load one.
    """
    if (module := sys.modules.get(name)) is not None:
        return module
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None, name
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


# Modules are per process, so is the lock that loads them (a process may hold several servers, as tests do).
_LAZY_LOAD_LOCK = threading.Lock()


def _load_lazy_modules() -> None:
    """Load every lazily bound module, under one lock: on Python 3.11 two threads touching a lazy module
    first at the same time can see it half loaded (say, two bearer tokens checked at once)."""
    with _LAZY_LOAD_LOCK:
        for module in (dashboard, imports, reports, service, tokens, transactions):
            getattr(module, "__name__")  # noqa: B009 - the attribute access is what loads it


if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from . import dashboard, imports, reports, service, tokens, transactions
    from .service import Caller
    from .transactions import RetryPolicy
else:
    dashboard = _lazy_module(f"{__package__}.dashboard")
    imports = _lazy_module(f"{__package__}.imports")
    reports = _lazy_module(f"{__package__}.reports")
    service = _lazy_module(f"{__package__}.service")
    tokens = _lazy_module(f"{__package__}.tokens")
    transactions = _lazy_module(f"{__package__}.transactions")


logger = logging.getLogger(__name__)
T = TypeVar("T")

INSTRUCTIONS = """\
budget-mcp keeps one person's or household's expenses and monthly budgets and answers questions about
them with exact, database-computed numbers. Amounts are decimal strings in the currency's minor digits
("12.30"); different currencies are never added together. Dates are YYYY-MM-DD, months YYYY-MM, ranges
inclusive; instead of dates, a named period (this_month, last_month, last_30_days, ...) may be given.
Start with list_categories; create_expense files an expense; summarize_spending answers "where did my
money go?"; budget_status compares a month with its budgets; search_expenses finds expenses.
Every change is logged: list_changes shows it and undo_change reverts it. Bulk and destructive tools
take dry_run=true to preview. Lists are paged: when next_cursor is not null, call again with
cursor=next_cursor."""


@dataclass(frozen=True)
class Database:
    """The database side of a running server: sessions over one pooled engine (a reader and a writer
    factory: reads take no write lock on SQLite), whom it serves, and how long a call waits for it."""

    writer: sessionmaker[Session]
    reader: sessionmaker[Session]
    caller: Caller
    policy: RetryPolicy


class AppState:
    """What lives as long as the server. The database opens once, in a worker thread: started right away
    by :meth:`warm_up`, waited for by the first call that needs it. If it cannot be opened (unreachable,
    wrong password), every call says what is wrong and the next one tries again: the server keeps running,
    so the fix takes effect without restarting the client."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] | None,
        per_token_user: bool,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.per_token_user = per_token_user
        self._clock = clock
        self._prepare = prepare
        self._lock = threading.Lock()
        self._warm_up_lock = threading.Lock()
        self._stopping = threading.Event()
        self._database: Database | None = None
        self._engine: Any = None
        self._warm_up: threading.Timer | None = None

    @property
    def ready(self) -> bool:
        return self._database is not None

    def warm_up(self, delay: float = 0.0) -> None:
        """Open the database in the background (once, after ``delay`` seconds), so the first call does
        not wait for it; first run ``prepare`` (the tools' registration, when the handshake did without)."""
        if self._warm_up is not None:  # every request asks; all but the first find it started
            return
        with self._warm_up_lock:
            if self._warm_up is None and not self._stopping.is_set():
                self._warm_up = threading.Timer(delay, self._try_open)
                self._warm_up.name, self._warm_up.daemon = "budget-mcp-open-database", True
                self._warm_up.start()

    def _try_open(self) -> None:
        if self._prepare is not None:
            self._prepare()
        with suppress(BudgetError):  # logged by database(); a call will try again and report it
            self.database()

    def database(self) -> Database:
        """The open database (blocking: call it in a worker thread); raises :class:`DatabaseUnavailable`."""
        with self._lock:
            if self._database is None:
                if self._stopping.is_set():
                    raise DatabaseUnavailable("the server is shutting down")
                self._database = self._open()
            return self._database

    def _open(self) -> Database:
        load_sqlalchemy()
        from .db import EngineOptions, make_engine, make_session_factory  # see _lazy_module

        _load_lazy_modules()
        settings = self.settings
        policy = transactions.RetryPolicy(wait=settings.database_wait, stopping=self._stopping)
        caller = service.Caller(user=settings.user, default_currency=settings.default_currency, timezone=settings.tz())
        if self._clock is not None:
            caller = replace(caller, clock=self._clock)
        try:
            transactions.migrate(settings, policy)
            if self._engine is None:
                self._engine = make_engine(settings.url, EngineOptions.from_settings(settings))
        except Exception as error:
            raise self._unavailable(error) from error
        logger.info("database %s ready", settings.redacted_url)
        return Database(
            writer=make_session_factory(self._engine),
            reader=make_session_factory(self._engine, read_only=True),
            caller=caller,
            policy=policy,
        )

    def _unavailable(self, error: Exception) -> DatabaseUnavailable:
        """Log what went wrong (driver detail included, password masked by the log filter) and the error a
        caller sees: what to fix, in plain words, without driver text, and for a shared HTTP server
        nothing about where its database is."""
        if isinstance(error, DatabaseUnavailable):
            logger.error("cannot use the database %s: %s", self.settings.redacted_url, error)
            return error
        detail = driver_message(error)
        setting = "DATABASE_URL"
        fix = connection_fix(detail, setting=setting, address=_address(self.settings))
        logger.error("cannot use the database %s: %s. Fix: %s", self.settings.redacted_url, detail, fix)
        logger.debug("database error", exc_info=error)
        if self.per_token_user:
            return DatabaseUnavailable("the database is unavailable right now; try again in a minute")
        return DatabaseUnavailable(
            f"cannot use the database: {fix}. Nothing was changed; call again once that is fixed (no restart needed)"
        )

    def close(self) -> None:
        """End waits in progress, let the warm-up finish, close every connection."""
        self._stopping.set()
        with self._warm_up_lock:
            warm_up = self._warm_up
        if warm_up is not None:
            warm_up.cancel()
            warm_up.join()
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()

    def caller_now(self, database: Database) -> Caller:
        if not self.per_token_user:
            return database.caller
        token = get_access_token()
        if token is None:  # the SDK's RequireAuthMiddleware answers 401 before a handler runs
            raise BudgetError("this server needs a bearer token (Authorization: Bearer ...)")
        return replace(database.caller, user=token.client_id)


def _address(settings: Settings) -> str:
    url = settings.url
    return f"{url.host or 'localhost'}:{url.port or 5432}"


AppContext = Context[AppState]


def _run(ctx: AppContext, use_case: Callable[[Session, Caller], T], *, dry_run: bool = False) -> T:
    """Run one use case in one transaction: committed on success, rolled back on any error or dry run."""
    return _transaction(ctx.request_context.lifespan_context, use_case, dry_run=dry_run, error=ToolError)


def _read(ctx: AppContext, use_case: Callable[[Session, Caller], T]) -> T:
    """Run one use case that only reads, in one transaction."""
    return _transaction(ctx.request_context.lifespan_context, use_case, read_only=True, error=ToolError)


def _transaction(
    state: AppState,
    use_case: Callable[[Session, Caller], T],
    *,
    dry_run: bool = False,
    read_only: bool = False,
    error: type[Exception] = ToolError,
) -> T:
    try:
        database = state.database()
    except BudgetError as failure:
        raise error(str(failure)) from failure
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError  # loaded by state.database() (load_sqlalchemy)

    try:
        caller = state.caller_now(database)
        return transactions.run_in_transaction(
            database.reader if read_only else database.writer,
            lambda session: use_case(session, caller),
            dry_run=dry_run,
            policy=database.policy,
        )
    except BudgetError as failure:
        raise error(str(failure)) from failure
    except ValidationError as failure:  # a service-level model rejected a value the tool schema let through
        raise error(_validation_message(failure)) from failure
    except IntegrityError as failure:
        logger.warning("integrity error, rolled back: %s", failure.orig)
        raise error(
            "the change clashes with data written at the same time; nothing was changed, try again"
        ) from failure
    except SQLAlchemyError as failure:
        logger.exception("database error, rolled back")
        raise error("the database could not complete the request; nothing was changed, try again shortly") from failure


def _validation_message(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'input'}: {problem['msg'].removeprefix('Value error, ')}"
        for problem in error.errors(include_input=False, include_url=False)
    )


class _Running:
    """The state of a running server, for the handlers the SDK gives no context (static resources)."""

    def __init__(self) -> None:
        self.state: AppState | None = None

    def get(self) -> AppState:
        if self.state is None:
            raise ResourceError("the server is still starting; try again")
        return self.state


class _TokenVerifier:
    """Checks the HTTP server's bearer tokens against the database (see :mod:`budget_mcp.tokens`)."""

    def __init__(self, running: _Running) -> None:
        self._running = running

    async def verify_token(self, token: str) -> AccessToken | None:
        state = self._running.state
        if state is None:
            return None

        def check() -> str | None:
            database = state.database()  # loads the database layer (SQLAlchemy) first, under its lock
            from sqlalchemy.exc import SQLAlchemyError

            try:
                return transactions.run_in_transaction(
                    database.reader, lambda session: tokens.user_for_token(session, token), policy=database.policy
                )
            except SQLAlchemyError as error:
                raise _unchecked(error) from error

        try:
            user = await anyio.to_thread.run_sync(check)
        except BudgetError as error:
            raise _unchecked(error) from error
        return AccessToken(token=token, client_id=user, scopes=[]) if user is not None else None


class _TokenCheckUnavailable(Exception):
    """The database could not say whether a bearer token is valid."""


def _unchecked(error: Exception) -> _TokenCheckUnavailable:
    # Not the token's fault: answering 401 would tell the client to throw a good token away.
    logger.warning("could not check a bearer token: %s", error)
    return _TokenCheckUnavailable()


class _AnswerUnavailable:
    """ASGI middleware: a token that could not be checked gets 503 and Retry-After, not 401 or 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except _TokenCheckUnavailable:
            response = JSONResponse(
                {
                    "error": "temporarily_unavailable",
                    "error_description": "the database is unavailable right now; try again in a minute",
                },
                status_code=503,
                headers={"Retry-After": "30"},
            )
            await response(scope, receive, send)


def build_server(
    settings: Settings,
    *,
    clock: Callable[[], datetime] | None = None,
    token_auth_url: str | None = None,
    shipped_tools_list: bool = True,
) -> MCPServer[AppState]:
    """The budget-mcp server for ``settings``. Nothing connects until the server starts (its lifespan).

    ``clock`` returns the current instant (timezone-aware); tests pass a fixed one. ``token_auth_url``
    (the HTTP server's own URL) requires a bearer token on every request and serves the token's user.
    ``shipped_tools_list``: over stdio, answer ``tools/list`` from the copy shipped in the package (when it
    was made by these very sources and versions) and register the tools after the handshake (see
    :class:`_DeferredTools`); false registers them now.
    """
    running = _Running()
    deferred = _DeferredTools()

    @asynccontextmanager
    async def lifespan(_server: MCPServer[AppState]) -> AsyncIterator[AppState]:
        # Tools run in worker threads, one connection each: as many workers as the pool has connections,
        # so a burst of calls queues for a worker instead of timing out waiting for a connection.
        anyio.to_thread.current_default_thread_limiter().total_tokens = max_connections(settings.pool_size)
        state = AppState(settings, clock=clock, per_token_user=token_auth_url is not None, prepare=deferred.register)
        if token_auth_url is not None:  # over HTTP, be ready (/healthz) before the first request
            state.warm_up()
        running.state = state
        try:
            yield state
        finally:
            running.state = None
            await anyio.to_thread.run_sync(state.close)

    refuse_unknown_arguments = _RefuseUnknownArguments()
    auth: dict[str, Any] = {}
    if token_auth_url is not None:
        auth = {
            "token_verifier": _TokenVerifier(running),
            "auth": AuthSettings(issuer_url=token_auth_url, resource_server_url=None),  # type: ignore[arg-type]
        }
    server: MCPServer[AppState] = _Server(
        "budget-mcp",
        deferred=deferred,
        title="Budget",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
        middleware=[deferred, _open_database_after_handshake, refuse_unknown_arguments],
        extensions=[_dashboard_app()],
        **auth,
    )
    if token_auth_url is not None:
        _register_health_check(server, running)

    def register_tools() -> None:
        _register_read_tools(server)
        _register_dashboard(server)
        if not settings.read_only:
            _register_write_tools(server)
        _compact_tool_schemas(server)

    # Over HTTP every tool is registered now: the server answers /healthz only once it is ready anyway, and
    # the SDK looks tools up (Mcp-Param headers) before any middleware could register them.
    listed = shipped_tools(settings.read_only) if shipped_tools_list and token_auth_url is None else None
    deferred.setup(register_tools, listed)
    _register_resources(server, running)
    _register_prompts(server, read_only=settings.read_only)
    refuse_unknown_arguments.server = server
    return server


# --- tools/list before the tools exist ------------------------------------------------------------------

TOOLS_LIST_FILE = "tools_list.json"
# The modules a tool's declaration (its schema, description, annotations) is made of: what importing this
# module loads from the package. tests/test_contract.py holds the list to that.
TOOL_SOURCES = ("__init__", "config", "errors", "money", "periods", "schemas", "server", "troubleshoot")


class _DeferredTools:
    """Registering the tools makes the SDK build a JSON schema per tool, a good part of a cold start. Over
    stdio the handshake needs only their ``tools/list`` entries, so the server answers it from the copy
    shipped in the package (``tools_list.json``, made by ``tests/test_contract.py`` from the registered
    tools and used only when the sources and versions that made it are the ones running) and registers
    the tools after the handshake, in the worker thread that opens the database. A call that comes sooner
    registers them itself; after that, every request reaches the real tools."""

    def __init__(self) -> None:
        self._register: Callable[[], None] | None = None
        self._listed: list[dict[str, Any]] | None = None
        self._tools: list[ListedTool] | None = None
        self._lock = threading.Lock()

    def setup(self, register: Callable[[], None], listed: list[dict[str, Any]] | None) -> None:
        self._register, self._listed = register, listed
        if listed is None:
            self.register()

    def register(self) -> None:
        with self._lock:
            if self._register is not None:
                self._register()
                self._register = None  # registered: every request now reaches the real tools
                self._listed = None

    def listed(self) -> list[ListedTool] | None:
        """The shipped entries while the tools are not registered yet; None once they are."""
        listed = self._listed
        if self._register is None or listed is None:
            return None
        if self._tools is None:
            self._tools = [ListedTool.model_validate(tool) for tool in listed]
        return self._tools

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if self._register is not None and ctx.method == "tools/call":  # nothing else needs the tools
            await anyio.to_thread.run_sync(self.register)
        return await call_next(ctx)


class _Server(MCPServer[AppState]):
    """The SDK's server, listing the shipped tools/list entries until the tools are registered."""

    def __init__(self, *args: Any, deferred: _DeferredTools, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred = deferred

    async def list_tools(self) -> list[ListedTool]:
        listed = self._deferred.listed()
        return list(listed) if listed is not None else await super().list_tools()


def tools_list_key() -> dict[str, str]:
    """What a tools/list answer depends on: the tools' sources and the Python, SDK and pydantic that run."""
    from hashlib import sha256
    from importlib.metadata import version
    from pathlib import Path

    import pydantic

    digest = sha256()
    for name in TOOL_SOURCES:
        digest.update((Path(__file__).parent / f"{name}.py").read_bytes())
    return {
        "python": "{}.{}".format(*sys.version_info[:2]),
        "mcp": version("mcp"),
        "pydantic": pydantic.VERSION,
        "sources": digest.hexdigest(),
    }


def shipped_tools(read_only: bool) -> list[dict[str, Any]] | None:
    """The shipped tools/list entries for this mode, or None when they were made by other sources or
    versions (then the tools are registered at start-up, as without a shipped copy)."""
    from importlib.resources import files

    try:
        shipped = json.loads(files(__package__).joinpath(TOOLS_LIST_FILE).read_text(encoding="utf-8"))
        if shipped["made_by"] != tools_list_key():
            logger.debug("%s was made by other sources or versions: registering the tools now", TOOLS_LIST_FILE)
            return None
        listed: list[dict[str, Any]] = shipped["tools"]
        if read_only:
            names = set(shipped["read_only"])
            listed = [tool for tool in listed if tool["name"] in names]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return listed


def _refuse_standalone_streams(app: Starlette) -> None:
    """Put :class:`_NoStandaloneStream` behind the token check of /mcp, so a request without a valid token
    still gets 401 first (the SDK wraps the endpoint in ``RequireAuthMiddleware``, whose ``app`` is it)."""
    for route in app.routes:
        endpoint: Any = getattr(route, "app", None)
        if isinstance(route, Route) and route.path == "/mcp" and hasattr(endpoint, "app"):
            endpoint.app = _NoStandaloneStream(endpoint.app)
            return
    raise RuntimeError("the SDK's HTTP app has no authenticated /mcp route to guard")


class _NoStandaloneStream:
    """ASGI middleware: a stateless server can never push on a standalone GET stream, so it refuses one
    (405, which the spec allows) instead of holding an idle connection open per client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            response = JSONResponse(
                {"error": "method_not_allowed", "error_description": "this server is stateless: POST requests only"},
                status_code=405,
                headers={"Allow": "POST"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _register_health_check(server: MCPServer[AppState], running: _Running) -> None:
    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(_request: Request) -> Response:
        """For load balancers: 200 once the process has started (schema migrated), 503 before. No token
        needed; the database is not queried (one slow database must not take every process out of rotation)."""
        ready = running.state is not None and running.state.ready
        return JSONResponse(
            {"status": "ok" if ready else "starting", "version": __version__}, status_code=200 if ready else 503
        )


def run_http(settings: Settings, *, host: str, port: int, allowed_hosts: Sequence[str]) -> None:
    """Serve streamable HTTP at /mcp, stateless (any process can answer any request, so processes scale
    out behind a load balancer), bearer tokens required, DNS-rebinding protection on for ``allowed_hosts``
    (names as clients write them in the Host header, with or without a port)."""
    patterns = sorted({pattern for name in allowed_hosts for pattern in _host_patterns(name)})
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=patterns,
        allowed_origins=[f"{scheme}://{h}" for h in patterns for scheme in ("http", "https")],
    )
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    logger.info("budget-mcp %s serving %s/mcp on %s", __version__, url, settings.redacted_url)
    import uvicorn  # only the HTTP server needs it

    app = build_server(settings, token_auth_url=url).streamable_http_app(
        stateless_http=True, transport_security=security, host=host
    )
    app.add_middleware(_AnswerUnavailable)
    _refuse_standalone_streams(app)
    # log_config=None: uvicorn logs through the root logger, so to stderr through the secret-masking
    # handler; no access log (a mistaken token in a query string would land in it).
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)


def _host_patterns(name: str) -> list[str]:
    """Host header values to accept for ``name``: as given if it names a port, else with any port or none."""
    has_port = name.rsplit("]", 1)[-1].count(":") == 1 if name.startswith("[") else name.count(":") == 1
    return [name] if has_port else [name, f"{name}:*"]


def _compact_tool_schemas(server: MCPServer[AppState]) -> None:
    """Keep tools/list small, since every client sends it to the model on every turn: drop generated
    titles ("Start Date") and descriptions an outer description repeats, and dedent docstrings."""
    for tool in server._tool_manager.list_tools():  # private: the SDK has no public hook for this
        tool.description = inspect.cleandoc(tool.description or "")
        _compact_schema(tool.parameters)
        if tool.fn_metadata.output_schema is not None:
            _compact_schema(tool.fn_metadata.output_schema)
            tool.fn_metadata.output_schema = flatten_output_schema(tool.fn_metadata.output_schema)


def _compact_schema(schema: Any) -> None:
    if not isinstance(schema, dict):
        return
    if isinstance(schema.get("title"), str):
        del schema["title"]
    for key in ("properties", "$defs"):
        for sub in schema.get(key, {}).values():
            _compact_schema(sub)
    for key in ("anyOf", "allOf", "oneOf"):
        for sub in schema.get(key, []):
            if "description" in schema and isinstance(sub, dict):
                sub.pop("description", None)
            _compact_schema(sub)
    _compact_schema(schema.get("items"))


# Keywords that constrain one type of value only: null passes each of them. So {"anyOf": [X, {"type": "null"}]}
# accepts exactly what X with "type": [X's type, "null"] accepts, when X is made of these alone.
_FOR_ONE_TYPE = frozenset(
    {
        "type", "format", "pattern", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "multipleOf", "items", "minItems", "maxItems", "properties", "required",
        "additionalProperties", "description",
    }
)  # fmt: skip
_NULL = {"type": "null"}
_DEFS = "#/$defs/"


def flatten_output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The same output schema, cheaper for a client to check each answer against (the Python SDK's check of
    a page of 50 expenses takes about a third less): a model used once is written where its ``$ref`` was,
    and "X or null" becomes X with the type list [X's type, "null"]. It accepts exactly the answers the
    original accepts (tests/test_contract.py holds that with generated changes of real answers)."""
    defs: dict[str, Any] = schema.get("$defs", {})
    uses: dict[str, int] = {}
    _count_refs(schema, uses)

    def walk(node: Any, inside: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, inside) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and len(node) == 1 and ref.startswith(_DEFS):
            name = ref[len(_DEFS) :]
            if name in defs and uses.get(ref) == 1 and name not in inside:
                return walk(defs[name], (*inside, name))
        node = {key: walk(value, inside) for key, value in node.items() if key != "$defs"}
        branches = node.get("anyOf")
        if isinstance(branches, list) and len(branches) == 2 and _NULL in branches:
            other = branches[1] if branches[0] == _NULL else branches[0]
            rest = {key: value for key, value in node.items() if key != "anyOf"}
            if (
                isinstance(other, dict)
                and isinstance(other.get("type"), str)
                and other["type"] != "null"
                and set(other) <= _FOR_ONE_TYPE
                and not set(other) & set(rest)
            ):
                return {**rest, **other, "type": [other["type"], "null"]}
        return node

    flat: dict[str, Any] = walk(schema, ())
    kept: dict[str, Any] = {}  # the models still referred to, from the schema or from each other
    wanted: dict[str, int] = {}
    _count_refs(flat, wanted)
    while wanted:
        ref, _ = wanted.popitem()
        name = ref[len(_DEFS) :]
        if ref.startswith(_DEFS) and name in defs and name not in kept:
            kept[name] = walk(defs[name], (name,))
            _count_refs(kept[name], wanted)
    return {**flat, "$defs": kept} if kept else flat


def _count_refs(node: Any, uses: dict[str, int]) -> None:
    if isinstance(node, list):
        for item in node:
            _count_refs(item, uses)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                uses[value] = uses.get(value, 0) + 1
            elif key != "$defs":
                _count_refs(value, uses)


# Clients list tools, prompts and resources right after initialize; then they wait for the user.
HANDSHAKE_SECONDS = 0.2


async def _open_database_after_handshake(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Start opening the database shortly after the client's first request past ``initialize`` (usually
    ``tools/list``): the handshake does not share the CPU with loading the database layer, and the database
    is ready by the time an agent makes its first call (which, if it comes sooner, opens it itself)."""
    if ctx.method != "initialize" and isinstance(ctx.lifespan_context, AppState):
        ctx.lifespan_context.warm_up(delay=HANDSHAKE_SECONDS)
    return await call_next(ctx)


class _RefuseUnknownArguments:
    """Refuse a tool call with an argument the tool does not have (say ``merchnat``): the SDK would drop
    it silently, and the expense would be stored without what the agent meant to record. Arguments the
    schema rejects are answered here too, as "name: what is wrong" lines instead of pydantic's dump
    (model names, input values, documentation URLs) that the SDK would send."""

    def __init__(self) -> None:
        self.server: MCPServer[AppState] | None = None
        self._parameters: dict[str, frozenset[str]] | None = None

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "prompts/get" and isinstance(ctx.params, Mapping):
            await self._check_prompt(ctx.params)
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
            found = self.server._tool_manager.get_tool(tool) if self.server and isinstance(tool, str) else None
            result = await call_next(ctx)
            if found is not None and _is_error_result(result):
                # The SDK validated the arguments (once: a call that succeeds pays nothing here). If that is
                # what failed, the same validation fails again, and its errors are told in plain lines.
                try:
                    found.fn_metadata.validate_arguments(dict(arguments))
                except ValidationError as error:
                    message = f"Error executing tool {tool}: {_validation_message(error)}"
                    return CallToolResult(content=[TextContent(text=message)], is_error=True)
            return result
        return await call_next(ctx)

    async def _check_prompt(self, params: Mapping[str, Any]) -> None:
        """An unknown prompt or a missing argument is the client's mistake: answer it as invalid params
        (-32602) with what would be right, instead of the SDK's code 0 and an error logged with a traceback."""
        assert self.server is not None, "build_server() sets the server before it can serve"
        prompts = {prompt.name: prompt for prompt in await self.server.list_prompts()}
        name = params.get("name")
        prompt = prompts.get(name) if isinstance(name, str) else None
        if prompt is None:
            raise MCPError(INVALID_PARAMS, f"no prompt {name!r}; known: {', '.join(sorted(prompts))}")
        given = params.get("arguments") or {}
        missing = [
            a for a in prompt.arguments or [] if a.required and not (isinstance(given, Mapping) and a.name in given)
        ]
        if missing:
            needs = "; ".join(f"{a.name} ({a.description})" if a.description else a.name for a in missing)
            raise MCPError(INVALID_PARAMS, f"prompt {prompt.name} needs {needs}")


def _is_error_result(result: HandlerResult) -> bool:
    """Whether a tools/call answer is an error result (the SDK hands middleware its JSON form)."""
    if isinstance(result, CallToolResult):
        return result.is_error
    return isinstance(result, Mapping) and result.get("isError") is True


def _annotations(*, read_only: bool, destructive: bool = False, idempotent: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


# Shared parameter types: a description written once, reused by every tool that takes the parameter.
StartDate = Annotated[IsoDate | None, Field(description="First day included (YYYY-MM-DD).")]
EndDate = Annotated[IsoDate | None, Field(description="Last day included (YYYY-MM-DD).")]
Month = Annotated[MonthArg | None, Field(description="YYYY-MM; default: the current month.")]
OptionalCategory = Annotated[CategoryName | None, Field(description="Only this category (any case).")]


# The dashboard view (an MCP App): hosts that render Apps show it inline for these tools' results; the results
# themselves (text and structured content) are the same for every client.
DASHBOARD_URI = "ui://budget-mcp/dashboard.html"
DASHBOARD_VIEW: dict[str, Any] = {"ui": {"resourceUri": DASHBOARD_URI}}


def _dashboard_app() -> Apps:
    """The dashboard's HTML, self-contained (inline CSS and JS, no URL): it reaches no network, only the
    host's bridge to this server's tools, so its CSP allows no domain at all."""
    from importlib.resources import files

    apps = Apps()
    apps.add_html_resource(
        DASHBOARD_URI,
        files(__package__).joinpath("apps", "dashboard.html").read_text(encoding="utf-8"),
        name="spending-dashboard",
        title="Spending dashboard",
        description="Budgets, spending by category and the trend of a month, interactive.",
        csp=ResourceCsp(connect_domains=[], resource_domains=[], frame_domains=[], base_uri_domains=[]),
        prefers_border=True,
    )
    return apps


def _register_dashboard(server: MCPServer[AppState]) -> None:
    @server.tool(
        title="Spending dashboard", annotations=_annotations(read_only=True, idempotent=True), meta=DASHBOARD_VIEW
    )
    def spending_dashboard(
        ctx: AppContext,
        month: Month = None,
        months: Annotated[
            int,
            Field(ge=1, le=DASHBOARD_MAX_MONTHS, description=f"Trend months up to month, 1-{DASHBOARD_MAX_MONTHS}."),
        ] = 6,
    ) -> SpendingDashboard:
        """A month at a glance: its budget_status, summarize_spending by category and the spending_trend up
        to it, in one call (fields as those tools describe them). Shown as an interactive dashboard where
        the client supports MCP Apps.
        """
        return _read(ctx, lambda session, caller: dashboard.spending_dashboard(session, caller, month, months=months))

    # Its parts are described (and their amounts' patterns given) in the three tools' schemas; repeated here
    # they would only make tools/list longer for every request.
    tool = server._tool_manager.get_tool("spending_dashboard")
    if tool is not None and tool.fn_metadata.output_schema is not None:
        _outline(tool.fn_metadata.output_schema)


def _outline(schema: Any) -> None:
    """Drop descriptions and string patterns from a JSON schema, keeping its structure and types."""
    if isinstance(schema, dict):
        for key in ("description", "pattern"):
            if isinstance(schema.get(key), str):
                del schema[key]
        for value in schema.values():
            _outline(value)
    elif isinstance(schema, list):
        for value in schema:
            _outline(value)


def _register_read_tools(server: MCPServer[AppState]) -> None:
    read = _annotations(read_only=True, idempotent=True)

    @server.tool(title="Summarise spending", annotations=read, meta=DASHBOARD_VIEW)
    def summarize_spending(
        ctx: AppContext,
        start_date: StartDate = None,
        end_date: EndDate = None,
        period: Period | None = None,
        group_by: Annotated[GroupBy, Field(description="How to group the totals.")] = "category",
        limit: GroupLimit = 100,
        cursor: Cursor | None = None,
    ) -> SpendingSummary:
        """Answer "where did my money go?": totals for a period (default this_month) grouped by category,
        month, week, day or merchant, each with its count and share, plus grand totals per currency.

        Summed by the database, exactly; currencies are never added together. Categories and merchants
        come largest first, periods in date order. For the expenses behind a number use search_expenses.
        """
        return _read(
            ctx,
            lambda session, caller: service.summarize_spending(
                session,
                caller,
                start=start_date,
                end=end_date,
                period=period,
                group_by=group_by,
                limit=limit,
                cursor=cursor,
            ),
        )

    @server.tool(title="Expenses in a category", annotations=read)
    def query_expenses_by_category(
        category: CategoryName,
        ctx: AppContext,
        start_date: StartDate = None,
        end_date: EndDate = None,
        period: Period | None = None,
        limit: PageLimit = 50,
        cursor: Cursor | None = None,
    ) -> ExpensePage:
        """List one category's expenses, newest first, with the count and per-currency total of ALL matches
        (no dates: all time). For other filters (text, merchant, amounts) use search_expenses.
        """
        return _read(
            ctx,
            lambda session, caller: service.query_expenses_by_category(
                session,
                caller,
                category,
                start=start_date,
                end=end_date,
                period=period,
                limit=limit,
                cursor=cursor,
            ),
        )

    @server.tool(title="Search expenses", annotations=read)
    def search_expenses(
        ctx: AppContext,
        text: Annotated[
            Description | None,
            Field(description="Text found as written (one phrase, any case) in description, merchant or notes."),
        ] = None,
        category: OptionalCategory = None,
        merchant: Annotated[Merchant | None, Field(description="Exactly this merchant (any case).")] = None,
        min_amount: Annotated[Amount | None, Field(description="Smallest amount included.")] = None,
        max_amount: Annotated[Amount | None, Field(description="Largest amount included.")] = None,
        currency: Annotated[CurrencyCode | None, Field(description="Only this currency.")] = None,
        start_date: StartDate = None,
        end_date: EndDate = None,
        period: Period | None = None,
        limit: PageLimit = 50,
        cursor: Cursor | None = None,
    ) -> SearchResult:
        """Find expenses by any mix of filters, newest first, with the count and totals of ALL matches.
        Every filter given must match. Use it to find ids for update_expense or recategorize_expenses.
        """
        return _read(
            ctx,
            lambda session, caller: reports.search_expenses(
                session,
                caller,
                text=text,
                category=category,
                merchant=merchant,
                currency=currency,
                min_amount=min_amount,
                max_amount=max_amount,
                days=(start_date, end_date, period),
                limit=limit,
                cursor=cursor,
            ),
        )

    @server.tool(title="Get an expense", annotations=read)
    def get_expense(expense_id: ExpenseId, ctx: AppContext) -> Expense:
        """Return one expense by its id, with every field as stored."""
        return _read(ctx, lambda session, caller: service.get_expense(session, caller, expense_id))

    @server.tool(title="List categories", annotations=read)
    def list_categories(ctx: AppContext, limit: PageLimit = 100, cursor: Cursor | None = None) -> CategoryList:
        """List the spending categories, alphabetically, each with how many expenses it holds.
        Call it before create_expense to use an existing name.
        """
        return _read(ctx, lambda session, caller: service.list_categories(session, caller, limit=limit, cursor=cursor))

    @server.tool(title="Budget status", annotations=read, meta=DASHBOARD_VIEW)
    def budget_status(
        ctx: AppContext, month: Month = None, limit: PageLimit = 100, cursor: Cursor | None = None
    ) -> BudgetStatus:
        """A month's budgets against its spending: per budgeted category the limit (with rollover), spent,
        remaining, percent used and whether it is over; for the current month the pace. Also the month's
        totals and the spending no budget covers. To set limits use set_budget.
        """
        return _read(
            ctx, lambda session, caller: reports.budget_status(session, caller, month, limit=limit, cursor=cursor)
        )

    @server.tool(title="Spending trend", annotations=read)
    def spending_trend(
        ctx: AppContext,
        months: Annotated[int, Field(ge=1, le=MAX_TREND_MONTHS, description="How many months, 1-120.")] = 6,
        category: OptionalCategory = None,
        end_month: Annotated[MonthArg | None, Field(description="Last month, YYYY-MM; default: this month.")] = None,
    ) -> SpendingTrend:
        """Monthly totals over the last months, one row per month (zero when nothing was spent), per
        currency, with the total and monthly average: the data to describe a trend.
        """
        return _read(
            ctx,
            lambda session, caller: reports.spending_trend(
                session, caller, months=months, category=category, end_month=end_month
            ),
        )

    @server.tool(title="Compare two periods", annotations=read)
    def compare_periods(
        ctx: AppContext,
        start_date: StartDate = None,
        end_date: EndDate = None,
        period: Period | None = None,
        baseline_start_date: Annotated[IsoDate | None, Field(description="First day of the baseline.")] = None,
        baseline_end_date: Annotated[IsoDate | None, Field(description="Last day of the baseline.")] = None,
        baseline_period: Period | None = None,
        limit: PageLimit = 50,
        cursor: Cursor | None = None,
    ) -> PeriodComparison:
        """Spending per category in a period (default this_month) next to a baseline (default: the period
        just before, e.g. last month), with the absolute and relative change, largest change first. Without a
        baseline, a period still under way (this_month, this_year, year_to_date) is compared so far: its
        first day to today against the same days of the month or year before, never half a month against a
        whole one. Both answers' dates say exactly which days were compared.
        """
        return _read(
            ctx,
            lambda session, caller: reports.compare_periods(
                session,
                caller,
                current=(start_date, end_date, period),
                baseline=(baseline_start_date, baseline_end_date, baseline_period),
                limit=limit,
                cursor=cursor,
            ),
        )

    @server.tool(title="Top expenses and merchants", annotations=read)
    def top_expenses(
        ctx: AppContext,
        start_date: StartDate = None,
        end_date: EndDate = None,
        period: Period | None = None,
        limit: Annotated[int, Field(ge=1, le=100, description="How many, 1-100.")] = 10,
        category: OptionalCategory = None,
        currency: Annotated[
            CurrencyCode | None,
            Field(description="Rank in this currency; default: the one with the most expenses in the period."),
        ] = None,
        cursor: Cursor | None = None,
    ) -> TopExpenses:
        """The largest expenses of a period (default this_month) and the merchants with the largest totals,
        in one currency (others are listed in other_currencies).
        """
        return _read(
            ctx,
            lambda session, caller: reports.top_expenses(
                session,
                caller,
                days=(start_date, end_date, period),
                limit=limit,
                category=category,
                currency=currency,
                cursor=cursor,
            ),
        )

    @server.tool(title="Recent changes", annotations=read)
    def list_changes(
        ctx: AppContext,
        limit: PageLimit = 20,
        cursor: Cursor | None = None,
        details: Annotated[bool, Field(description="True: include each change's rows before and after.")] = False,
    ) -> ChangeList:
        """The audit log, newest first: every change made through the tools, with what it did.
        undo_change reverts one by its id.
        """
        return _read(
            ctx,
            lambda session, caller: service.list_changes(session, caller, limit=limit, cursor=cursor, details=details),
        )

    @server.tool(title="Export expenses", annotations=read)
    def export_expenses(
        ctx: AppContext,
        format: Annotated[
            ExportFormat, Field(description="csv (imports back with import_expenses_csv) or json.")
        ] = "csv",
        start_date: StartDate = None,
        end_date: EndDate = None,
        period: Period | None = None,
        category: OptionalCategory = None,
        currency: Annotated[CurrencyCode | None, Field(description="Only this currency.")] = None,
        limit: Annotated[int, Field(ge=1, le=EXPORT_MAX, description=f"Expenses per page, 1 to {EXPORT_MAX}.")] = 500,
        cursor: Cursor | None = None,
    ) -> ExpenseExport:
        """Export expenses (no dates: all time) as CSV or JSON text, oldest first, a page at a time; each page
        is complete text. To save everything in one file the user can run `budget-mcp export --output FILE`.
        """
        return _read(
            ctx,
            lambda session, caller: imports.export_expenses(
                session,
                caller,
                format=format,
                days=(start_date, end_date, period),
                category=category,
                currency=currency,
                limit=limit,
                cursor=cursor,
            ),
        )

    @server.tool(title="List category rules", annotations=read)
    def list_category_rules(ctx: AppContext, limit: PageLimit = 100, cursor: Cursor | None = None) -> CategoryRuleList:
        """The rules import_expenses_csv files rows by (pattern -> category), by pattern."""
        return _read(
            ctx, lambda session, caller: imports.list_category_rules(session, caller, limit=limit, cursor=cursor)
        )


def _progress(ctx: AppContext) -> Callable[[int, int], None]:
    """Progress notifications for a long call. The tool body runs in a worker thread: each report is handed
    to the event loop and waited for; the SDK sends it only if the client asked (gave a progress token)."""
    sent = [-1]

    def report(done: int, total: int) -> None:
        if done > sent[0]:  # a retried transaction starts again: progress never goes back
            sent[0] = done
            anyio.from_thread.run(ctx.report_progress, done, total, f"{done:,} of {total:,} rows added")

    return report


def _register_write_tools(server: MCPServer[AppState]) -> None:
    write = _annotations(read_only=False)
    destructive = _annotations(read_only=False, destructive=True)

    # Not idempotent as such: only a call that repeats an idempotency_key is (a plain repeat records twice).
    @server.tool(title="Record an expense", annotations=write)
    def create_expense(
        amount: Amount,
        description: Description,
        category: CategoryName,
        ctx: AppContext,
        spent_on: Annotated[IsoDate | None, Field(description="Day of the purchase; default today.")] = None,
        currency: Annotated[CurrencyCode | None, Field(description="Default: the configured currency.")] = None,
        merchant: Merchant | None = None,
        notes: Notes | None = None,
        idempotency_key: IdempotencyKey | None = None,
    ) -> ExpenseSaved:
        """Record one expense and return it as stored (with its id, and the change_id that undo_change takes).

        The category must exist (list_categories; create_category adds one). Amounts are exact: 12.30 or
        "12.30". Pass an idempotency_key so a retried call never records the expense twice.
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
        return _run(ctx, lambda session, caller: service.create_expense(session, caller, new, idempotency_key))

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
    ) -> ExpenseSaved:
        """Change some fields of an expense and return it as stored, with the change_id that undoes the change.
        Fields left out stay as they are.
        Changing only the currency keeps the number. To move many expenses use recategorize_expenses.
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
        title="Delete an expense", annotations=_annotations(read_only=False, destructive=True, idempotent=True)
    )
    def delete_expense(expense_id: ExpenseId, ctx: AppContext, dry_run: DryRun = False) -> ExpenseDeleted:
        """Delete one expense and return what was deleted. Confirm with the user first; undo_change with
        the returned change_id brings it back. To fix a mistake, prefer update_expense.
        """
        return _run(
            ctx,
            lambda session, caller: service.delete_expense(session, caller, expense_id, dry_run=dry_run),
            dry_run=dry_run,
        )

    @server.tool(title="Move expenses to a category", annotations=write)
    def recategorize_expenses(
        expense_ids: ExpenseIds, category: CategoryName, ctx: AppContext, dry_run: DryRun = False
    ) -> Recategorized:
        """Move many expenses into one category at once: all of them or, if any id is unknown, none."""
        return _run(
            ctx,
            lambda session, caller: service.recategorize_expenses(
                session, caller, expense_ids, category, dry_run=dry_run
            ),
            dry_run=dry_run,
        )

    @server.tool(title="Create a category", annotations=_annotations(read_only=False, idempotent=True))
    def create_category(name: CategoryName, ctx: AppContext) -> CategoryCreated:
        """Create a spending category. Names are unique regardless of case ("Food" and "food" are one);
        an existing name is refused, and the existing category can be used as is.
        """
        return _run(ctx, lambda session, caller: service.create_category(session, caller, name))

    @server.tool(title="Rename a category", annotations=_annotations(read_only=False, idempotent=True))
    def rename_category(name: CategoryName, new_name: CategoryName, ctx: AppContext) -> CategoryRenamed:
        """Rename a category; its expenses and budgets follow. To combine two categories use merge_categories."""
        return _run(ctx, lambda session, caller: service.rename_category(session, caller, name, new_name))

    @server.tool(title="Merge two categories", annotations=destructive)
    def merge_categories(
        source: Annotated[CategoryName, Field(description="The category to merge away.")],
        target: Annotated[CategoryName, Field(description="The category that receives everything.")],
        ctx: AppContext,
        dry_run: DryRun = False,
    ) -> CategoryRemoved:
        """Move every expense, budget and category rule of source into target, then remove source. Where
        both have a budget for a month, target's is kept. Preview with dry_run=true first.
        """
        return _run(
            ctx,
            lambda session, caller: service.merge_categories(session, caller, source, target, dry_run=dry_run),
            dry_run=dry_run,
        )

    @server.tool(title="Delete a category", annotations=destructive)
    def delete_category(
        name: CategoryName,
        ctx: AppContext,
        move_to: Annotated[
            CategoryName | None, Field(description="Where its expenses and budgets go; required if it has expenses.")
        ] = None,
        dry_run: DryRun = False,
    ) -> CategoryRemoved:
        """Delete a category. Refused while it holds expenses unless move_to names where they go.
        Its budgets and category rules move too (or are removed without move_to).
        """
        return _run(
            ctx,
            lambda session, caller: service.delete_category(session, caller, name, move_to=move_to, dry_run=dry_run),
            dry_run=dry_run,
        )

    @server.tool(title="Set a monthly budget", annotations=_annotations(read_only=False, idempotent=True))
    def set_budget(
        category: CategoryName,
        amount: Annotated[Amount, Field(description='The monthly limit, e.g. 400 or "400.00".')],
        ctx: AppContext,
        month: Month = None,
        through_month: Annotated[
            MonthArg | None, Field(description="Apply the same limit through this month (YYYY-MM) too.")
        ] = None,
        ongoing: Annotated[bool, Field(description="True: apply to every month from month on.")] = False,
        currency: Annotated[CurrencyCode | None, Field(description="Default: the configured currency.")] = None,
        rollover: Annotated[
            bool, Field(description="True: each month's unspent (or overspent) amount carries into the next.")
        ] = False,
        dry_run: DryRun = False,
    ) -> BudgetChange:
        """Set a category's spending limit for a month (default this month), a range of months
        (through_month) or every month on (ongoing=true). Replaces any limit those months had.
        """
        return _run(
            ctx,
            lambda session, caller: service.set_budget(
                session,
                caller,
                category,
                amount,
                month=month,
                through_month=through_month,
                ongoing=ongoing,
                currency=currency,
                rollover=rollover,
                dry_run=dry_run,
            ),
            dry_run=dry_run,
        )

    @server.tool(title="Remove a budget", annotations=destructive)
    def delete_budget(
        category: CategoryName,
        ctx: AppContext,
        month: Month = None,
        through_month: Annotated[MonthArg | None, Field(description="Remove through this month too.")] = None,
        ongoing: Annotated[bool, Field(description="True: remove from month on, for good.")] = False,
        dry_run: DryRun = False,
    ) -> BudgetChange:
        """Remove a category's budget for a month (default this month), a range, or every month on."""
        return _run(
            ctx,
            lambda session, caller: service.delete_budget(
                session,
                caller,
                category,
                month=month,
                through_month=through_month,
                ongoing=ongoing,
                dry_run=dry_run,
            ),
            dry_run=dry_run,
        )

    @server.tool(title="Import a bank statement", annotations=_annotations(read_only=False, idempotent=True))
    def import_expenses_csv(
        ctx: AppContext,
        csv_text: Annotated[str | None, Field(description="The CSV export's contents.")] = None,
        path: Annotated[str | None, Field(description="Or the file's absolute path (stdio servers only).")] = None,
        source: SourceName = "import",
        currency: Annotated[CurrencyCode | None, Field(description="For rows naming none.")] = None,
        date_order: DateOrder | None = None,
        decimal_separator: DecimalSeparator | None = None,
        sign_convention: SignConvention | None = None,
        columns: Annotated[
            dict[ColumnField, str] | None,
            Field(description='Header cells of columns not detected, e.g. {"date": "Valuta", "amount": "Betrag"}.'),
        ] = None,
        dry_run: Annotated[bool, Field(description="True: preview, save nothing.")] = True,
        skip_rejected: Annotated[bool, Field(description="Import the other rows when some are unreadable.")] = False,
        preview_limit: Annotated[int, Field(ge=1, le=PREVIEW_MAX)] = 20,
        preview_status: Annotated[ImportStatus | None, Field(description="Preview only these rows.")] = None,
        cursor: Cursor | None = None,
    ) -> ImportResult:
        """Import a bank statement CSV's expenses. Its format is detected; an error names the argument that
        settles a doubt. dry_run (default) previews: show the user, then call with dry_run=false. All or
        nothing; undo_change reverts it whole. Rows imported before (same source) and credits are skipped.
        Filing: longest add_category_rule match, else the file's category if it exists, else Uncategorized.
        """
        allow_path = not ctx.request_context.lifespan_context.per_token_user
        options = StatementOptions(
            source=source,
            currency=currency,
            date_order=date_order,
            decimal_separator=decimal_separator,
            sign_convention=sign_convention,
            columns=ColumnNames(**(columns or {})),
        )
        progress = _progress(ctx)
        return _run(
            ctx,
            lambda session, caller: imports.import_statement(
                session,
                caller,
                imports.statement_from(csv_text, path, allow_path=allow_path),
                options,
                dry_run=dry_run,
                skip_rejected=skip_rejected,
                preview_limit=preview_limit,
                preview_status=preview_status,
                cursor=cursor,
                progress=progress,
            ),
            dry_run=dry_run,
        )

    @server.tool(title="Add a category rule", annotations=_annotations(read_only=False, idempotent=True))
    def add_category_rule(
        pattern: RulePattern, category: CategoryName, ctx: AppContext, dry_run: DryRun = False
    ) -> CategoryRuleChange:
        """File imported rows whose merchant or description contains pattern (any case) under category; the
        longest matching pattern wins. A rule for the same pattern is pointed at the new category.
        """
        return _run(
            ctx,
            lambda session, caller: imports.add_category_rule(session, caller, pattern, category, dry_run=dry_run),
            dry_run=dry_run,
        )

    @server.tool(
        title="Delete a category rule", annotations=_annotations(read_only=False, destructive=True, idempotent=True)
    )
    def delete_category_rule(pattern: RulePattern, ctx: AppContext, dry_run: DryRun = False) -> CategoryRuleChange:
        """Delete the category rule for pattern (any case); imported expenses keep their category."""
        return _run(
            ctx,
            lambda session, caller: imports.delete_category_rule(session, caller, pattern, dry_run=dry_run),
            dry_run=dry_run,
        )

    @server.tool(title="Undo a change", annotations=destructive)
    def undo_change(change_id: ChangeId, ctx: AppContext, dry_run: DryRun = False) -> Undone:
        """Revert one change from list_changes (a deleted expense comes back, a move is moved back, ...).
        Refused, changing nothing, if a later change touched the same rows: undo that one first.
        """
        return _run(
            ctx,
            lambda session, caller: service.undo_change(session, caller, change_id, dry_run=dry_run),
            dry_run=dry_run,
        )


def _json(model: Any) -> str:
    return json.dumps(model.model_dump(mode="json"), indent=1)


def _resource_month(month: str) -> str | None:
    return None if month == "current" else month


def _register_resources(server: MCPServer[AppState], running: _Running) -> None:
    def read(state: AppState, use_case: Callable[[Session, Caller], Any]) -> str:
        return _json(_transaction(state, use_case, read_only=True, error=ResourceError))

    @server.resource(
        "budget://categories",
        title="Categories",
        description="Every spending category with its number of expenses.",
        mime_type="application/json",
    )
    async def categories() -> str:
        state = running.get()
        return await anyio.to_thread.run_sync(
            read, state, lambda session, caller: service.list_categories(session, caller, limit=1000, cursor=None)
        )

    @server.resource(
        "budget://months/{month}/summary",
        title="Month summary",
        description="A month's spending by category (month: YYYY-MM or current).",
        mime_type="application/json",
    )
    async def month_summary(month: str, ctx: AppContext) -> str:
        state = ctx.request_context.lifespan_context
        wanted = _resource_month(month)

        def summary(session: Session, caller: Caller) -> Any:
            days = service.month_range(caller, wanted)
            return service.summarize_spending(
                session,
                caller,
                start=days.start,
                end=days.end,
                period=None,
                group_by="category",
                limit=1000,
                cursor=None,
            )

        return await anyio.to_thread.run_sync(read, state, summary)

    @server.resource(
        "budget://months/{month}/budget",
        title="Month budget status",
        description="A month's budgets against its spending (month: YYYY-MM or current).",
        mime_type="application/json",
    )
    async def month_budget(month: str, ctx: AppContext) -> str:
        state = ctx.request_context.lifespan_context
        wanted = _resource_month(month)
        return await anyio.to_thread.run_sync(
            read,
            state,
            lambda session, caller: reports.budget_status(session, caller, wanted, limit=1000, cursor=None),
        )


def _register_prompts(server: MCPServer[AppState], *, read_only: bool) -> None:
    @server.prompt(title="Monthly review")
    def monthly_review(month: str) -> str:
        """Review one month's spending and budgets (month: YYYY-MM)."""
        return (
            f"Review my spending for {month}.\n"
            f"1. Call budget_status with month={month!r}: which budgets are over, which are close, the pace.\n"
            f"2. Call summarize_spending for that month (group_by category) for where the money went.\n"
            f"3. Call compare_periods for that month against the month before: what changed most.\n"
            f"4. Call top_expenses for that month: the largest expenses and merchants.\n"
            "Present a short report: a table per currency with exact amounts as the tools return them "
            "(never add different currencies), then two or three concrete observations."
        )

    @server.prompt(title="Budget check-up")
    def budget_checkup() -> str:
        """Check this month's budgets and suggest adjustments."""
        return (
            "Check my budgets for this month.\n"
            "1. Call budget_status (no month: the current one). Note every budget that is over or not on "
            "track by its pace, and spending that no budget covers.\n"
            "2. Call spending_trend with months=6 for the categories that stand out, to tell a one-off "
            "from a habit.\n"
            "3. Suggest budget changes with exact amounts, and ask me before calling set_budget."
        )

    if read_only:
        return

    @server.prompt(title="Clean up expenses")
    def cleanup_expenses() -> str:
        """Find uncategorised, misfiled or odd expenses and fix them with confirmation."""
        return (
            "Help me clean up my expenses.\n"
            "1. Call list_categories; look for near-duplicate names (merge_categories) and catch-alls such "
            "as Other, and Uncategorized, where imported bank statement rows go when no rule matches.\n"
            "2. Call search_expenses in the catch-all categories, and top_expenses for last_30_days to spot "
            "unusual amounts or likely duplicates (same amount, day and merchant).\n"
            "3. Propose the fixes as a list. Preview bulk changes with dry_run=true (recategorize_expenses, "
            "merge_categories, delete_category) and apply them only after I confirm. For merchants that "
            "recur, propose add_category_rule (see list_category_rules) so future imports file them.\n"
            "4. Finish with list_changes so I can see, and undo_change if needed, what was done."
        )
