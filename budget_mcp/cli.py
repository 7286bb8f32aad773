"""Command line: ``budget-mcp`` serves MCP over stdio; subcommands manage the database and show settings.

stdout belongs to the MCP protocol while serving, so everything here logs to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from . import __version__
from .config import Settings

logger = logging.getLogger("budget_mcp")

DESCRIPTION = """\
An MCP server that keeps and analyses your spending with exact money.
With no command it serves MCP over stdio: what Claude Code, Claude Desktop and other clients launch.

Settings come from the environment or a .env file (see .env.example):
  DATABASE_URL                 PostgreSQL/Neon URL or sqlite:////path; default: a per-user SQLite file
  BUDGET_MCP_USER              whose budget this server keeps (default: your login name)
  BUDGET_MCP_DEFAULT_CURRENCY  ISO 4217 code used when a call names none (default: USD)
  BUDGET_MCP_TIMEZONE          IANA zone that decides "today" (default: the machine's)
  BUDGET_MCP_LOG_LEVEL         DEBUG, INFO, WARNING (default), ERROR or CRITICAL; logs go to stderr
  BUDGET_MCP_READ_ONLY         true: offer no tool that changes data (default: false)
"""


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
    secrets = [settings.url.password or ""] + [v for k, v in settings.url.query.items() if "password" in k.lower()]
    handler.addFilter(_MaskSecrets([s for s in secrets if isinstance(s, str)]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)


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
    commands.add_parser("serve", help="serve MCP over stdio (the default when no command is given)")
    db = commands.add_parser("db", help="manage the database")
    db_commands = db.add_subparsers(dest="db_command", metavar="{upgrade}", required=True)
    db_commands.add_parser("upgrade", help="bring the database schema up to date (the server also does it on start)")
    commands.add_parser("info", help="show the settings in effect, with secrets masked")
    return parser


def _load_settings(env_file: Path | None) -> Settings:
    if env_file is not None and not env_file.is_file():
        raise SystemExit(f"budget-mcp: --env-file {env_file}: no such file")
    path = env_file if env_file is not None else Path(".env")
    try:
        return Settings(_env_file=path if path.is_file() else None)  # type: ignore[call-arg]
    except ValidationError as error:
        problems = "\n".join(
            f"  {_env_name(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors(include_input=False, include_url=False)
        )
        raise SystemExit(f"budget-mcp: invalid settings:\n{problems}") from None


def _env_name(loc: tuple[int | str, ...]) -> str:
    field = str(loc[0]) if loc else "settings"
    return "DATABASE_URL" if field == "database_url" else f"BUDGET_MCP_{field.upper()}"


def _serve(settings: Settings) -> int:
    from .server import build_server  # importing the MCP SDK is slow; only serving needs it

    logger.info("budget-mcp %s serving user %r on %s", __version__, settings.user, settings.redacted_url)
    build_server(settings).run("stdio")
    return 0


def _db_upgrade(settings: Settings) -> int:
    from .db import make_engine, upgrade_schema  # imported when needed: keeps --help and --version quick

    engine = make_engine(settings.url)
    try:
        upgrade_schema(engine)
    finally:
        engine.dispose()
    print(f"database schema is up to date: {settings.redacted_url}")
    return 0


def _info(settings: Settings) -> int:
    rows = {
        "version": __version__,
        "database": settings.redacted_url,
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
    if isinstance(raised, SQLAlchemyError):
        return raised
    if isinstance(raised, BaseExceptionGroup):
        for inner in raised.exceptions:
            if (found := _database_error(inner)) is not None:
                return found
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = _load_settings(args.env_file)
    _configure_logging(settings)
    try:
        if args.command == "db":
            return _db_upgrade(settings)
        if args.command == "info":
            return _info(settings)
        return _serve(settings)
    except (SQLAlchemyError, ExceptionGroup) as raised:
        # Serving, the SDK's task group hands a failed start-up (the lifespan) over inside a group.
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
