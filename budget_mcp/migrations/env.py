"""Alembic environment. The server passes its own connection in; the ``alembic`` CLI builds one from Settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from budget_mcp import models  # noqa: F401  (registers the tables on Base.metadata)
from budget_mcp.db import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite rebuilds tables to alter them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Developer use (`alembic revision --autogenerate`): connect with the configured settings.
    from budget_mcp.config import Settings
    from budget_mcp.db import make_migration_engine

    engine = make_migration_engine(Settings(_env_file=".env").migration_url)  # type: ignore[call-arg]
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `budget-mcp db upgrade`")
run_migrations_online()
