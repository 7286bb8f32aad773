"""Command line: ``budget-mcp`` serves MCP over stdio; subcommands manage the database and show settings.

stdout belongs to the MCP protocol while serving, so everything here logs to stderr.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, quote_plus, unquote, urlsplit

from . import __version__

if TYPE_CHECKING:  # imported where used: `budget-mcp --help` and the MCP handshake stay quick
    from sqlalchemy import Engine
    from sqlalchemy.exc import SQLAlchemyError

    from .config import Settings
    from .schemas import ImportResult

logger = logging.getLogger("budget_mcp")

DESCRIPTION = """\
An MCP server that keeps and analyses your spending with exact money.
With no command it serves MCP over stdio: what Claude Code, Claude Desktop and other clients launch.

`budget-mcp serve --transport http` serves streamable HTTP (stateless, bearer tokens) instead.
`budget-mcp import FILE` imports a bank statement CSV; `budget-mcp export` writes expenses as CSV or JSON.

Settings come from the environment or a .env file (see .env.example):
  DATABASE_URL                 PostgreSQL/Neon URL or sqlite:////path; default: a per-user SQLite file
  DATABASE_URL_UNPOOLED        direct URL for migrations (default: the -pooler host without -pooler)
  BUDGET_MCP_USER              whose budget this server keeps (default: your login name; HTTP: per token)
  BUDGET_MCP_DEFAULT_CURRENCY  ISO 4217 code used when a call names none (default: USD)
  BUDGET_MCP_TIMEZONE          IANA zone that decides "today" (default: the machine's)
  BUDGET_MCP_LOG_LEVEL         DEBUG, INFO, WARNING (default), ERROR or CRITICAL; logs go to stderr
  BUDGET_MCP_READ_ONLY         true: offer no tool that changes data (default: false)
  BUDGET_MCP_POOLED            true/false: DATABASE_URL is a transaction pooler (default: a -pooler host)
  BUDGET_MCP_ALLOW_INSECURE_DATABASE  true: allow a remote PostgreSQL without TLS (default: false)
  BUDGET_MCP_POOL_SIZE         database connections kept per process (default: 5)
  BUDGET_MCP_STATEMENT_TIMEOUT seconds one SQL statement may run (default: 30)
  BUDGET_MCP_DATABASE_WAIT     seconds to wait for a database that is down or waking up (default: 20)
"""

LOOPBACK_BINDS = frozenset({"127.0.0.1", "localhost", "::1"})


class _MaskSecrets(logging.Filter):
    """Last line of defence: no log line may carry the database password, whoever wrote it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings
        self._secrets: list[str] | None = None  # found on the first line logged (see _secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if secrets is None:  # threads logging at once may each find them: the same list, no lock held meanwhile
            secrets = self._secrets = _secrets(self._settings)
        if secrets:
            message = record.getMessage()
            for secret in secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


def _configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_MaskSecrets(settings))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)


def _secrets(settings: Settings) -> list[str]:
    """Every password in the database URLs, as written and URL-encoded, as the standard library and as
    SQLAlchemy read them. Found when first needed, not at start-up: parsing a URL with SQLAlchemy imports
    it, which a quiet start-up does without (the default SQLite file has no secret)."""
    raw = [url.get_secret_value() for url in (settings.database_url, settings.database_url_unpooled) if url]
    if not raw:
        return []
    values: list[str | None] = []
    for text in raw:
        parts = urlsplit(text.strip())
        values += [
            parts.password,
            *(v for k, vs in parse_qs(parts.query).items() if "password" in k.lower() for v in vs),
        ]
    try:
        parsed = [settings.url, settings.migration_url]
    except Exception:  # SQLAlchemy cannot read it (the database cannot be opened) or not load: the above masks
        parsed = []  # what it can, and a log filter must never fail the call that logs (say, an error reply)
    for url in parsed:
        values += [url.password, *(v for k, v in url.query.items() if "password" in k.lower() and isinstance(v, str))]
    found: set[str] = set()
    for value in values:
        if value:
            found |= {value, unquote(value), quote(value, safe=""), quote_plus(value)}
    return sorted(found, key=len, reverse=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="budget-mcp", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="PATH",
        help="read settings from this file (default: .env in the current directory, if present)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve MCP over stdio (the default when no command is given) or streamable HTTP",
        description="Serve MCP. stdio (the default) serves BUDGET_MCP_USER to the one client that started it. "
        "http serves streamable HTTP in stateless mode, so any number of processes behind a load balancer can "
        "share one PostgreSQL/Neon database; every request needs a bearer token (`budget-mcp token create`), "
        "which decides whose data it sees.",
    )
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="default: stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP: address to bind (default: 127.0.0.1, loopback)")
    serve.add_argument("--port", type=int, default=8000, help="HTTP: port (default: 8000); the endpoint is /mcp")
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="HTTP: a Host header to accept (repeatable), e.g. budget.example.com; required when --host is not "
        "loopback (protection against DNS rebinding stays on)",
    )
    db = commands.add_parser("db", help="manage the database")
    db_commands = db.add_subparsers(dest="db_command", metavar="{upgrade}", required=True)
    db_commands.add_parser("upgrade", help="bring the database schema up to date (the server also does it on start)")
    commands.add_parser("info", help="show the settings in effect, with secrets masked")
    report = commands.add_parser(
        "report",
        help="print a month's spending, budgets and trend as tables with bar charts",
        description="Prints BUDGET_MCP_USER's spending for a month: by category with bars, each budget's progress "
        "(over budget marked; for the current month the pace) and the months up to it. Colours only on a terminal: "
        "none when piped or with NO_COLOR.",
    )
    which = report.add_mutually_exclusive_group()
    which.add_argument("--month", metavar="YYYY-MM", help="the month to show (default: the current one)")
    which.add_argument("--period", choices=["this_month", "last_month"], help="a named month instead of --month")
    report.add_argument("--months", type=int, default=6, metavar="N", help="months in the trend, 1-24 (default: 6)")
    commands.add_parser(
        "doctor",
        help="check the settings and the database connection, and say how to fix what is wrong",
        description="Checks, with secrets masked: the settings in effect and where each came from, that the "
        "database is reachable, TLS, server version, pooled or direct, migration state and round-trip latency. "
        "Exits 1 when something needs fixing.",
    )
    skills = commands.add_parser("skills", help="install the Claude Code skills that ship with budget-mcp")
    skills_commands = skills.add_subparsers(dest="skills_command", metavar="{install}", required=True)
    skills_install = skills_commands.add_parser(
        "install",
        help="copy the skills into ~/.claude/skills (or a project's .claude/skills)",
        description="Copies budget-analyst and database-deployment into ~/.claude/skills/, or with --project DIR "
        "into DIR/.claude/skills/. Running it again upgrades them; a copy you changed is kept unless --force.",
    )
    skills_install.add_argument("--project", type=Path, metavar="DIR", help="install into DIR/.claude/skills instead")
    skills_install.add_argument("--force", action="store_true", help="replace copies that were changed after install")
    setup = commands.add_parser(
        "install",
        help="add budget-mcp to Claude Desktop's or Claude Code's MCP configuration",
        description="Adds this budget-mcp, by absolute path and with the settings in effect now (environment, "
        ".env or --env-file), to the client's JSON config. Other servers are kept, the previous file is backed "
        "up, an entry of the same name that differs is refused unless --force, and a file that is not valid JSON "
        "is left alone.",
    )
    clients = setup.add_subparsers(dest="client", metavar="{claude-desktop,claude-code}", required=True)
    for client, where in (
        ("claude-desktop", "claude_desktop_config.json (restart Claude Desktop afterwards)"),
        ("claude-code", "~/.claude.json (user scope), or DIR/.mcp.json with --project"),
    ):
        target = clients.add_parser(client, help=f"add it to {where}")
        target.add_argument("--name", default="budget", help="the server's name in the client (default: budget)")
        target.add_argument(
            "--config", type=Path, metavar="PATH", help="the config file to change (default: where the client keeps it)"
        )
        if client == "claude-code":
            target.add_argument(
                "--project",
                type=Path,
                metavar="DIR",
                help="add it to DIR/.mcp.json, shared with the project; a database password is written as "
                "${DATABASE_URL}",
            )
        target.add_argument("--force", action="store_true", help="replace an entry of the same name that differs")
        target.add_argument(
            "--print", dest="print_only", action="store_true", help="print the JSON snippet and write nothing"
        )
        target.add_argument(
            "--show-secrets", action="store_true", help="with --print: show the database password instead of ***"
        )
    demo = commands.add_parser(
        "demo",
        help="see it work: a year of sample spending and an agent's session with the real server",
        description="Fills a throwaway SQLite database with a year of sample spending, runs a short scripted "
        "session against the real server over stdio and prints each call and what the agent sees. Your own "
        "settings and data are not touched.",
    )
    demo.add_argument("--keep", action="store_true", help="keep the demo database and print where it is")
    _add_import_export(commands)
    token = commands.add_parser("token", help="manage the HTTP server's bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", metavar="{create,list,revoke}", required=True)
    create = token_commands.add_parser("create", help="create a token for a user and print it (shown only once)")
    create.add_argument("--user", required=True, help="whose data the token gives access to")
    create.add_argument("--label", help="a note to recognise the token by, e.g. the client or machine")
    token_commands.add_parser("list", help="list tokens (never the tokens themselves)")
    revoke = token_commands.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", type=int, help="the token's id, from `budget-mcp token list`")
    return parser


STATEMENT_COLUMNS = ("date", "amount", "debit", "credit", "description", "merchant", "category", "currency", "notes")


def _add_import_export(commands: Any) -> None:
    from .periods import PERIOD_NAMES

    statement = commands.add_parser(
        "import",
        help="import a bank statement CSV as expenses (--dry-run: preview only)",
        description="Imports the expenses of a bank's CSV export for BUDGET_MCP_USER, all or nothing, as one "
        "change that undo_change reverts. The format (delimiter, encoding, header, dates, decimals, signs) is "
        "detected; when something is ambiguous the error says which option settles it. Rows imported before "
        "from the same --source are skipped, as are credits (money in). Rows are filed by the category rules "
        "(add_category_rule), else by the file's category column when that category exists, else into "
        "Uncategorized. Exits 1, changing nothing, when the file cannot be imported.",
    )
    statement.add_argument("file", type=Path, help="the CSV file")
    statement.add_argument(
        "--source", default="import", help="the account it is from (default: import); duplicates are per source"
    )
    statement.add_argument("--currency", help="ISO 4217 code for rows that name none (default: the configured one)")
    statement.add_argument("--date-order", choices=["iso", "day_first", "month_first"])
    statement.add_argument("--decimal-separator", choices=[".", ","])
    statement.add_argument("--sign-convention", choices=["negative_is_expense", "positive_is_expense"])
    statement.add_argument("--dry-run", action="store_true", help="show what would be imported, save nothing")
    statement.add_argument(
        "--skip-rejected", action="store_true", help="import the other rows when some cannot be read (default: refuse)"
    )
    for column in (*STATEMENT_COLUMNS, "direction"):
        statement.add_argument(
            f"--{column}-column", metavar="HEADER", help=f"the header cell of the {column} column, if not detected"
        )
    export = commands.add_parser(
        "export",
        help="write expenses as CSV or JSON to a file or stdout (streamed)",
        description="Writes BUDGET_MCP_USER's expenses, oldest first, as CSV (the columns import_expenses_csv "
        "reads back: date,amount,currency,category,description,merchant,notes,id) or as a JSON array. Rows are "
        "streamed from the database, so memory stays flat for any number of expenses. Without dates: all time.",
    )
    export.add_argument("--format", choices=["csv", "json"], default="csv", help="default: csv")
    export.add_argument("--output", type=Path, metavar="FILE", help="write to FILE (default: stdout)")
    export.add_argument("--start-date", metavar="YYYY-MM-DD", help="first day included")
    export.add_argument("--end-date", metavar="YYYY-MM-DD", help="last day included")
    export.add_argument("--period", choices=PERIOD_NAMES, help="a named period instead of dates")
    export.add_argument("--category", help="only this category (any case)")
    export.add_argument("--currency", help="only this currency")


def _load_settings(env_file: Path | None) -> Settings:
    from pydantic import ValidationError

    from .config import Settings

    if env_file is not None and not env_file.is_file():
        raise SystemExit(f"budget-mcp: --env-file {env_file}: no such file")
    path = env_file if env_file is not None else Path(".env")
    try:
        return Settings(_env_file=path if path.is_file() else None)  # type: ignore[call-arg]
    except ValidationError as error:
        problems = "\n".join(
            f"  {_env_name(e['loc'])}{e['msg'].removeprefix('Value error, ')}"
            for e in error.errors(include_input=False, include_url=False)
        )
        raise SystemExit(f"budget-mcp: invalid settings:\n{problems}") from None


def _env_name(loc: tuple[int | str, ...]) -> str:
    from .config import env_var

    return f"{env_var(str(loc[0]))}: " if loc else ""  # a check of several settings names them itself


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from .server import build_server  # importing the MCP SDK is slow; only serving needs it

    if getattr(args, "transport", "stdio") == "stdio":
        logger.info("budget-mcp %s serving user %r over stdio", __version__, settings.user)
        server = build_server(settings)
        _started()
        server.run("stdio")
        return 0
    return _serve_http(settings, args)


def _serve_http(settings: Settings, args: argparse.Namespace) -> int:
    from .server import run_http

    host, port = args.host, args.port
    if not 0 < port < 65536:
        raise SystemExit(f"budget-mcp: --port {port}: use a port between 1 and 65535")
    if host not in LOOPBACK_BINDS and not args.allowed_host:
        raise SystemExit(
            f"budget-mcp: --host {host} is reachable from other machines; name the host names clients use "
            "with --allowed-host (e.g. --allowed-host budget.example.com), so DNS-rebinding protection can "
            "stay on"
        )
    allowed = list(args.allowed_host) + (["127.0.0.1", "localhost", "[::1]"] if host in LOOPBACK_BINDS else [])
    _started()
    run_http(settings, host=host, port=port, allowed_hosts=allowed)
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from . import tokens
    from .db import EngineOptions, make_engine, make_session_factory
    from .errors import BudgetError
    from .transactions import migrate  # the schema must hold the tokens table

    migrate(settings)
    engine = make_engine(settings.url, EngineOptions.from_settings(settings))
    try:
        with make_session_factory(engine).begin() as session:
            if args.token_command == "create":
                token, info = tokens.create_token(session, args.user, args.label)
            elif args.token_command == "revoke":
                info = tokens.revoke_token(session, args.id)
            else:
                rows = tokens.list_tokens(session)
    except BudgetError as error:
        raise SystemExit(f"budget-mcp: {error}") from None
    finally:
        engine.dispose()
    if args.token_command == "create":
        print(token)
        print(
            f"token {info.id} for user {info.user!r}; it is shown only this once. Clients send it as the header "
            "`Authorization: Bearer <token>`.",
            file=sys.stderr,
        )
    elif args.token_command == "revoke":
        print(f"token {info.id} of user {info.user!r} is revoked")
    else:
        if not rows:
            print("no tokens; create one with `budget-mcp token create --user NAME`")
        for row in rows:
            state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}Z" if row.revoked_at else "active"
            print(f"{row.id:>4}  {row.user:<20}  {row.created_at:%Y-%m-%d %H:%M}Z  {state:<24}  {row.label or ''}")
    return 0


@contextmanager
def _database(settings: Settings) -> Iterator[Engine]:
    """The user's database, its schema up to date, for one command."""
    from .db import EngineOptions, make_engine
    from .transactions import migrate

    migrate(settings)
    engine = make_engine(settings.url, EngineOptions.from_settings(settings))
    try:
        yield engine
    finally:
        engine.dispose()


def _import(settings: Settings, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from . import imports
    from .db import make_session_factory
    from .errors import BudgetError
    from .schemas import PREVIEW_MAX, ColumnNames, StatementOptions
    from .service import Caller
    from .transactions import run_in_transaction

    try:
        options = StatementOptions(
            source=args.source,
            currency=args.currency,
            date_order=args.date_order,
            decimal_separator=args.decimal_separator,
            sign_convention=args.sign_convention,
            columns=ColumnNames(**{c: getattr(args, f"{c}_column") for c in (*STATEMENT_COLUMNS, "direction")}),
        )
    except ValidationError as error:
        problems = "; ".join(
            f"--{'-'.join(str(p) for p in e['loc'][-1:])}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors(include_input=False, include_url=False)
        )
        raise SystemExit(f"budget-mcp: {problems}") from None
    caller = Caller(user=settings.user, default_currency=settings.default_currency, timezone=settings.tz())
    try:
        statement = imports.read_statement_file(args.file.absolute())
        with _database(settings) as engine, _progress_bar() as progress:
            result = run_in_transaction(
                make_session_factory(engine),
                lambda session: imports.import_statement(
                    session,
                    caller,
                    statement,
                    options,
                    dry_run=args.dry_run,
                    skip_rejected=args.skip_rejected,
                    preview_limit=PREVIEW_MAX,
                    preview_status="rejected",
                    progress=progress,
                ),
                dry_run=args.dry_run,
            )
    except BudgetError as error:
        raise SystemExit(f"budget-mcp: {_as_options(str(error))}") from None
    _print_import(result, args.file.name)
    return 0


def _as_options(message: str) -> str:
    """An error written for the tool's arguments, in this command's options: date_order='day_first' reads
    --date-order day_first."""
    import re

    message = re.sub(
        r"\b(date_order|decimal_separator|sign_convention|default_currency)=?'([^']*)'",
        lambda m: f"--{'currency' if m[1] == 'default_currency' else m[1].replace('_', '-')} {m[2]}",
        message,
    )
    return message.replace(
        "call again with skip_rejected=true to import the other rows (a preview, dry_run=true with "
        "preview_status='rejected', lists every rejected row)",
        "run again with --skip-rejected to import the other rows (--dry-run lists every rejected row)",
    )


@contextmanager
def _progress_bar() -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr while rows go in, when stderr is a terminal (not in logs or pipes)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("import", total=None)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield report


def _print_import(result: ImportResult, file_name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    found = result.format
    console.print(
        f"{file_name}: {found.encoding}, delimiter {found.delimiter!r}, header on line {found.header_line}, "
        f"dates {found.date_order}, decimal separator {found.decimal_separator!r}"
        + (f", {found.sign_convention}" if found.sign_convention else "")
    )
    console.print("columns: " + ", ".join(f"{name}={header!r}" for name, header in found.columns.items()))
    counts = Table(title="Import preview (nothing saved)" if result.dry_run else "Imported")
    for column in ("rows", "added", "imported before", "credits skipped", "rejected"):
        counts.add_column(column, justify="right")
    counts.add_row(*map(str, (result.rows, result.added, result.duplicates, result.credits_skipped, result.rejected)))
    console.print(counts)
    if result.totals:
        money = Table("currency", "total", "expenses")
        for total in result.totals:
            money.add_row(total.currency, total.total, str(total.count))
        console.print(money)
    if result.categories:
        categories = Table("category", "expenses")
        for name, count in result.categories.items():
            categories.add_row(name, str(count))
        console.print(categories)
    if result.preview:
        rejected = Table("line", "rejected because", title=f"Rejected rows ({result.rejected})")
        for row in result.preview:
            rejected.add_row(str(row.line), row.note or "")
        console.print(rejected)
        if result.rejected > len(result.preview):
            console.print(f"... and {result.rejected - len(result.preview)} more rejected rows")
    if result.dry_run:
        console.print("Preview only: nothing was saved. Run again without --dry-run to import.")
    elif result.change_id is not None:
        console.print(
            f"Saved as import {result.import_id}, change {result.change_id} in the audit log; from an MCP client, "
            f"undo_change with change_id={result.change_id} removes the whole import."
        )
    else:
        console.print("Nothing new to import; nothing was changed.")


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from . import imports
    from .db import make_session_factory
    from .errors import BudgetError
    from .schemas import parse_iso_date
    from .service import Caller

    caller = Caller(user=settings.user, default_currency=settings.default_currency, timezone=settings.tz())
    output = args.output
    partial = output.with_name(f".{output.name}.part") if output is not None else None
    try:
        days = (
            parse_iso_date(args.start_date) if args.start_date else None,
            parse_iso_date(args.end_date) if args.end_date else None,
            args.period,
        )
        with _database(settings) as engine, make_session_factory(engine, read_only=True).begin() as session:
            query = imports.export_query(
                session, caller, format=args.format, days=days, category=args.category, currency=args.currency
            )
            chunks = imports.stream_export(session, query, args.format)
            if partial is None:
                for chunk in chunks:
                    sys.stdout.write(chunk)
                sys.stdout.flush()
            else:
                # Written beside the target and renamed at the end: an interrupted export leaves no half file.
                with partial.open("w", encoding="utf-8", newline="") as handle:
                    handle.writelines(chunks)
                partial.replace(output)
    except BudgetError as error:
        raise SystemExit(f"budget-mcp: {error}") from None
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 0
    except OSError as error:
        raise SystemExit(f"budget-mcp: cannot write {output}: {error.strerror or error}") from None
    finally:
        if partial is not None and partial.exists():
            partial.unlink()
    return 0


def _report(settings: Settings, args: argparse.Namespace) -> int:
    from rich.console import Console

    from .errors import BudgetError
    from .terminal import load_dashboard, render

    try:
        board = load_dashboard(settings, month=args.month, period=args.period, months=args.months)
    except BudgetError as error:
        raise SystemExit(f"budget-mcp: {error}") from None
    render(board, Console(highlight=False))
    return 0


def _install_skills(project: Path | None, *, force: bool) -> int:
    from .skills import install_skills, skills_source, skills_target

    if project is not None and not project.is_dir():
        raise SystemExit(f"budget-mcp: --project {project}: no such directory")
    try:
        results = install_skills(skills_source(), skills_target(project), force=force)
    except OSError as error:
        raise SystemExit(f"budget-mcp: cannot install the skills: {error}") from None
    for result in results:
        note = " (changed since it was installed; --force replaces it)" if result.outcome == "kept" else ""
        print(f"{result.skill:<22} {result.outcome:<11} {result.path}{note}")
    return 1 if any(result.outcome == "kept" for result in results) else 0


def _doctor(settings: Settings, env_file: Path | None) -> int:
    from .doctor import run_doctor

    return run_doctor(settings, setting_sources(env_file), sys.stdout)


def setting_sources(env_file: Path | None) -> dict[str, str]:
    """Where each setting's value came from: the environment, the .env file, or the default."""
    from dotenv import dotenv_values

    from .config import Settings, env_var

    path = env_file if env_file is not None else Path(".env")
    in_file = {k.upper() for k in dotenv_values(path)} if path.is_file() else set()
    environment = {k.upper() for k in os.environ}
    sources = {}
    for field in Settings.model_fields:
        name = env_var(field)
        sources[name] = "environment" if name in environment else str(path) if name in in_file else "default"
    return sources


def _db_upgrade(settings: Settings) -> int:
    from .transactions import migrate  # imported when needed: keeps --help and --version quick

    migrate(settings)
    print(f"database schema is up to date: {settings.redacted_url}")
    return 0


def _info(settings: Settings) -> int:
    from .config import redact_url
    from .db import EngineOptions, engine_profile

    rows = {
        "version": __version__,
        "database": settings.redacted_url,
        "connection": {
            "sqlite": "embedded SQLite file",
            "postgresql": "PostgreSQL, direct",
            "pooled": "PostgreSQL through a transaction pooler",
        }[engine_profile(settings.url, EngineOptions.from_settings(settings))],
        "migrations on": redact_url(settings.migration_url),
        "user": settings.user,
        "default currency": settings.default_currency,
        "timezone": settings.timezone or f"{settings.tz()} (machine)",
        "log level": settings.log_level,
    }
    width = max(map(len, rows))
    for name, value in rows.items():
        print(f"{name:<{width}}  {value}")
    return 0


def _database_error(raised: BaseException) -> SQLAlchemyError | None:
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(raised, SQLAlchemyError):
        return raised
    if isinstance(raised, BaseExceptionGroup):
        for inner in raised.exceptions:
            if (found := _database_error(inner)) is not None:
                return found
    return None


@contextmanager
def _starting() -> Iterator[None]:
    """Start-up imports modules and builds schemas: thousands of long-lived objects that the cyclic garbage
    collector would scan again and again for nothing. It is off until the work is done (see :func:`_started`)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _started() -> None:
    """The server is built: keep what start-up made out of future collections, and collect again."""
    gc.freeze()
    gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    with _starting():
        return _main(argv)


# What ``build_parser().parse_args([])`` gives (a test holds them equal): clients start the server with no
# arguments, and building the parser for every subcommand would delay the handshake for nothing.
NO_ARGUMENTS = argparse.Namespace(env_file=None, command=None)


def _main(argv: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv) if argv else argparse.Namespace(**vars(NO_ARGUMENTS))
    if args.command == "skills":  # needs no settings or database
        return _install_skills(args.project, force=args.force)
    if args.command == "demo":  # uses only its own throwaway settings
        from .demo import run_demo

        return run_demo(keep=args.keep).exit_code
    settings = _load_settings(args.env_file)
    _configure_logging(settings)
    try:
        if args.command == "db":
            return _db_upgrade(settings)
        if args.command == "info":
            return _info(settings)
        if args.command == "doctor":
            return _doctor(settings, args.env_file)
        if args.command == "token":
            return _token(settings, args)
        if args.command == "report":
            return _report(settings, args)
        if args.command == "import":
            return _import(settings, args)
        if args.command == "export":
            return _export(settings, args)
        if args.command == "install":  # the settings in effect are what it installs
            from .install import run_install

            return run_install(
                args.client,
                settings,
                name=args.name,
                config=args.config,
                project=getattr(args, "project", None),
                force=args.force,
                print_only=args.print_only,
                show_secrets=args.show_secrets,
            )
        return _serve(settings, args)
    except Exception as raised:
        error = _database_error(raised)
        if error is None:
            raise
        logger.debug("database error", exc_info=True)
        detail = str(getattr(error, "orig", None) or type(error).__name__).strip().splitlines()
        logger.error(
            "cannot use the database %s: %s. Check DATABASE_URL and that the server is reachable "
            "(BUDGET_MCP_LOG_LEVEL=DEBUG shows details).",
            settings.redacted_url,
            detail[0] if detail else "",
        )
        return 1
    except KeyboardInterrupt:
        return 130
