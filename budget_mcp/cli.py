"""Command line: ``budget-mcp`` serves MCP over stdio; subcommands manage the database and show settings.

stdout belongs to the MCP protocol while serving, so everything here logs to stderr.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus

from . import __version__

if TYPE_CHECKING:  # imported where used: `budget-mcp --help` and the MCP handshake stay quick
    from sqlalchemy.exc import SQLAlchemyError

    from .config import Settings

logger = logging.getLogger("budget_mcp")

DESCRIPTION = """\
An MCP server that keeps and analyses your spending with exact money.
With no command it serves MCP over stdio: what Claude Code, Claude Desktop and other clients launch.

`budget-mcp serve --transport http` serves streamable HTTP (stateless, bearer tokens) instead.

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

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            for secret in self._secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


def _configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_MaskSecrets(_secrets(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)


def _secrets(settings: Settings) -> list[str]:
    """Every password in the database URLs, as written and URL-encoded."""
    found: list[str] = []
    for url in (settings.url, settings.migration_url):
        values = [url.password] + [v for k, v in url.query.items() if "password" in k.lower()]
        for value in values:
            if isinstance(value, str) and value:
                found += [value, quote(value, safe=""), quote_plus(value)]
    return sorted(set(found), key=len, reverse=True)


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
    token = commands.add_parser("token", help="manage the HTTP server's bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", metavar="{create,list,revoke}", required=True)
    create = token_commands.add_parser("create", help="create a token for a user and print it (shown only once)")
    create.add_argument("--user", required=True, help="whose data the token gives access to")
    create.add_argument("--label", help="a note to recognise the token by, e.g. the client or machine")
    token_commands.add_parser("list", help="list tokens (never the tokens themselves)")
    revoke = token_commands.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", type=int, help="the token's id, from `budget-mcp token list`")
    return parser


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


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
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
