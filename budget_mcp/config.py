"""Settings: one typed, frozen object read from the environment and an optional ``.env`` file."""

from __future__ import annotations

import getpass
import ipaddress
import threading
import unicodedata
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from platformdirs import user_data_path
from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .money import normalize_currency

if TYPE_CHECKING:  # SQLAlchemy is imported where a URL is used, not to read the settings (see _url_facts)
    from sqlalchemy.engine import URL

_LOADING_SQLALCHEMY = threading.RLock()


def load_sqlalchemy() -> None:
    """Import SQLAlchemy (its core and ORM), one thread at a time; call it before any import of it. budget-mcp
    imports it when first needed, in whichever thread needs it (a server answers the handshake without it),
    and on Python 3.11 two threads importing it at once can see one of its modules half loaded ("partially
    initialized module"), which then stays broken for the life of the process. Once loaded, this costs a
    lock and a lookup."""
    with _LOADING_SQLALCHEMY:
        import sqlalchemy.orm  # noqa: F401  (the package first, then its ORM)


APP_NAME = "budget-mcp"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# Query parameters that may carry a secret in a libpq/SQLAlchemy URL.
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})
# libpq sslmode values that never fall back to plaintext.
TLS_SSLMODES = frozenset({"require", "verify-ca", "verify-full"})


def env_var(field: str) -> str:
    """The environment variable that sets a Settings field (DATABASE_URL, BUDGET_MCP_USER, ...)."""
    return field.upper() if field.startswith("database_url") else f"BUDGET_MCP_{field.upper()}"


def default_database_path() -> Path:
    """The embedded database: an absolute per-user path (clients start servers in arbitrary directories)."""
    return user_data_path(APP_NAME, appauthor=False) / "budget.sqlite3"


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name, e.g. a container running as an unnamed uid
        return "default"


class Settings(BaseSettings):
    """Everything the server is configured with. Environment variables win over the ``.env`` file."""

    model_config = SettingsConfigDict(
        env_prefix="BUDGET_MCP_",
        env_file=None,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        hide_input_in_errors=True,  # a rejected DATABASE_URL must not be echoed with its password
    )

    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("database_url", "DATABASE_URL"),
        description="SQLAlchemy/libpq URL; empty means the embedded SQLite file.",
    )
    user: str = Field(default_factory=_default_user, min_length=1, max_length=100)
    default_currency: str = "USD"
    timezone: str | None = Field(default=None, description="IANA zone for 'today'; empty: the machine's.")
    log_level: LogLevel = "WARNING"
    read_only: bool = Field(default=False, description="true: offer no tool that changes data.")
    database_url_unpooled: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("database_url_unpooled", "DATABASE_URL_UNPOOLED"),
        description="Direct (not pooled) URL of the same database, used for schema migrations.",
    )
    pooled: bool | None = Field(
        default=None, description="The URL goes through a transaction pooler (PgBouncer); empty: a -pooler host."
    )
    allow_insecure_database: bool = Field(
        default=False, description="true: allow a remote PostgreSQL URL without sslmode=require."
    )
    pool_size: int = Field(default=5, ge=1, le=100, description="Connections kept per server process.")
    statement_timeout: float = Field(default=30, gt=0, le=3600, description="Seconds one SQL statement may run.")
    database_wait: float = Field(
        default=20, ge=0, le=600, description="Seconds a call waits for an unavailable database before failing."
    )

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_url_means_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url", "database_url_unpooled")
    @classmethod
    def _url_is_supported(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _url_facts(value.get_secret_value())
        return value

    @field_validator("pooled", mode="before")
    @classmethod
    def _empty_means_auto(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _remote_databases_use_tls(self) -> Settings:
        if self.allow_insecure_database or (self.database_url is None and self.database_url_unpooled is None):
            return self
        urls = (("DATABASE_URL", self.database_url), ("DATABASE_URL_UNPOOLED", self.database_url_unpooled))
        facts = {name: _url_facts(url.get_secret_value()) for name, url in urls if url is not None}
        for name, fact in facts.items():
            _require_tls(name, fact.backend, fact.hosts, fact.sslmode)
        if "DATABASE_URL_UNPOOLED" in facts and facts.get("DATABASE_URL", _SQLITE_FACTS).backend != "postgresql":
            raise ValueError("DATABASE_URL_UNPOOLED is only used with a PostgreSQL DATABASE_URL")
        return self

    @field_validator("user", mode="before")
    @classmethod
    def _empty_user_means_default(cls, value: object) -> object:
        return _default_user() if isinstance(value, str) and not value.strip() else value

    @field_validator("user")
    @classmethod
    def _user_is_printable(cls, value: str) -> str:
        value = value.strip()
        if not value or any(unicodedata.category(ch).startswith("C") for ch in value):
            raise ValueError("BUDGET_MCP_USER must be a non-empty name without control characters")
        return value

    @field_validator("default_currency")
    @classmethod
    def _currency_is_iso(cls, value: str) -> str:
        return normalize_currency(value)

    @field_validator("timezone", mode="before")
    @classmethod
    def _timezone_is_known(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str):
            try:
                ZoneInfo(value.strip())
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}; use an IANA name like Europe/Berlin") from None
            return value.strip()
        return value

    @field_validator("log_level", "default_currency", mode="before")
    @classmethod
    def _blank_means_default(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and not value.strip():
            return cls.model_fields[info.field_name or ""].default
        return value.strip().upper() if isinstance(value, str) and info.field_name == "log_level" else value

    @property
    def url(self) -> URL:
        """The database URL to connect with, normalised (psycopg2 for PostgreSQL, absolute SQLite path)."""
        if self.database_url is None:
            load_sqlalchemy()
            from sqlalchemy.engine import URL

            return URL.create("sqlite+pysqlite", database=str(default_database_path()))
        return self._checked("DATABASE_URL", normalize_database_url(self.database_url.get_secret_value()))

    def _checked(self, name: str, url: URL) -> URL:
        """The TLS rule again on SQLAlchemy's reading of the URL, which is what connects: the settings were
        checked on the standard library's reading, and the two must not disagree to anyone's cost."""
        if not self.allow_insecure_database:
            sslmode = url.query.get("sslmode")  # a tuple when given twice: no single mode to trust
            _require_tls(name, url.get_backend_name(), _hosts(url), sslmode if isinstance(sslmode, str) else None)
        return url

    @property
    def redacted_url(self) -> str:
        """The database URL with every secret masked: the only form of it that may be logged or shown."""
        return redact_url(self.url)

    @property
    def is_pooled(self) -> bool:
        """Whether DATABASE_URL goes through a transaction pooler (Neon's ``-pooler`` hosts do)."""
        if self.url.get_backend_name() != "postgresql":
            return False
        return self.pooled if self.pooled is not None else is_neon_pooler_host(self.url.host)

    @property
    def migration_url(self) -> URL:
        """Where schema migrations run: DATABASE_URL_UNPOOLED; else, for a Neon ``-pooler`` host, the same
        host without ``-pooler`` (Neon's direct endpoint); else DATABASE_URL itself."""
        if self.database_url_unpooled is not None:
            raw = self.database_url_unpooled.get_secret_value()
            return self._checked("DATABASE_URL_UNPOOLED", normalize_database_url(raw))
        url = self.url
        if self.pooled is not False and is_neon_pooler_host(url.host):
            assert url.host is not None
            return url.set(host=url.host.replace("-pooler.", ".", 1))
        return url

    def tz(self) -> tzinfo:
        """The zone that decides what "today" is."""
        if self.timezone:
            return ZoneInfo(self.timezone)
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local

    def today(self) -> date:
        return datetime.now(self.tz()).date()


def max_connections(pool_size: int) -> int:
    """The most database connections one server process opens: its pool plus as many again under load."""
    return pool_size * 2


_INVALID_URL = (
    "DATABASE_URL is not a valid database URL; expected postgresql://user:password@host/db "
    "or sqlite:////absolute/path/budget.sqlite3"
)


class _UrlFacts(NamedTuple):
    backend: str
    hosts: tuple[str, ...]
    sslmode: str | None


_SQLITE_FACTS = _UrlFacts("sqlite", (), None)


def _url_facts(raw: str) -> _UrlFacts:
    """Check a database URL as the settings are read, with the standard library: importing SQLAlchemy would
    add a tenth of a second to every server start before it can answer. The same rules as
    normalize_database_url, which parses the URL again (with SQLAlchemy) when the database is opened."""
    raw = raw.strip()
    name, sep, _ = raw.partition("://")
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number (e.g. a stray password)
    except ValueError:
        raise ValueError(_INVALID_URL) from None
    if not sep or not name or not all(ch.isalnum() or ch in "_+" for ch in name):
        raise ValueError(_INVALID_URL)
    backend, _, driver = name.partition("+")
    query = parse_qs(parts.query)
    if backend in {"postgres", "postgresql"}:
        if driver not in {"", "psycopg2"}:
            raise ValueError(f"DATABASE_URL driver {driver!r} is not supported; use postgresql:// (psycopg2)")
        hosts = tuple(query.get("host", [])) if not parts.hostname else (unquote(parts.hostname),)
        modes = query.get("sslmode", [])
        sslmode = modes[0] if len(modes) == 1 else None  # given twice: no single mode to trust, as above
        return _UrlFacts("postgresql", hosts or ("",), sslmode)
    if backend == "sqlite":
        if driver not in {"", "pysqlite"}:
            raise ValueError(f"DATABASE_URL driver {driver!r} is not supported; use sqlite:///path")
        database = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not database or database == ":memory:":
            raise ValueError("DATABASE_URL must name a SQLite file; an in-memory database would lose your data")
        try:
            Path(unquote(database)).expanduser().resolve()
        except (ValueError, OSError):  # e.g. a NUL byte in the path
            raise ValueError(_INVALID_URL) from None
        return _SQLITE_FACTS
    raise ValueError(f"DATABASE_URL scheme {backend!r} is not supported; use postgresql:// or sqlite:///")


def _require_tls(name: str, backend: str, hosts: tuple[str, ...], sslmode: str | None) -> None:
    """A PostgreSQL URL must stay on this machine or insist on TLS."""
    if backend == "postgresql" and not all(_is_local_host(h) for h in hosts) and sslmode not in TLS_SSLMODES:
        raise ValueError(
            f"{name} points at {', '.join(hosts)} without TLS, so your password and data would cross the "
            "network in the clear; add ?sslmode=require (or verify-full) to the URL, or set "
            "BUDGET_MCP_ALLOW_INSECURE_DATABASE=true if that network is trusted"
        )


def normalize_database_url(raw: str) -> URL:
    """Parse a user's URL; ``postgres://`` and ``postgresql://`` use psycopg2 (safe behind PgBouncer)."""
    load_sqlalchemy()
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw.strip())
    except (ArgumentError, ValueError):  # ValueError: e.g. no host, so the password is read as the port
        raise ValueError(_INVALID_URL) from None
    backend, _, driver = url.drivername.partition("+")
    if backend in {"postgres", "postgresql"}:
        if driver not in {"", "psycopg2"}:
            raise ValueError(f"DATABASE_URL driver {driver!r} is not supported; use postgresql:// (psycopg2)")
        return url.set(drivername="postgresql+psycopg2")
    if backend == "sqlite":
        if driver not in {"", "pysqlite"}:
            raise ValueError(f"DATABASE_URL driver {driver!r} is not supported; use sqlite:///path")
        if not url.database or url.database == ":memory:":
            raise ValueError("DATABASE_URL must name a SQLite file; an in-memory database would lose your data")
        return url.set(drivername="sqlite+pysqlite", database=str(Path(url.database).expanduser().resolve()))
    raise ValueError(f"DATABASE_URL scheme {backend!r} is not supported; use postgresql:// or sqlite:///")


def is_neon_pooler_host(host: str | None) -> bool:
    """Neon names a pooled endpoint ``ep-name-123-pooler.region.aws.neon.tech``."""
    first_label = (host or "").split(".", 1)[0]
    return first_label.endswith("-pooler")


def is_loopback(url: URL) -> bool:
    """The URL's server is on this machine (a loopback address, ``localhost`` or a Unix socket)."""
    return all(_is_local_host(h) for h in _hosts(url))


def _hosts(url: URL) -> tuple[str, ...]:
    host = url.host or url.query.get("host") or ""
    return host if isinstance(host, tuple) else (host,)  # several hosts: repeated query parameters


def _is_local_host(host: str) -> bool:
    if not host or host.startswith("/") or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name such as 127.example.com: not known to stay on this machine
        return False


def redact_url(url: URL | str) -> str:
    """Render a URL for logs and messages with its password (also one given as a query parameter) masked."""
    if isinstance(url, str):
        load_sqlalchemy()
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(url)
        except (ArgumentError, ValueError):
            return "<unparseable database URL>"
    query = {key: ("***" if key.lower() in _SECRET_QUERY_KEYS else value) for key, value in url.query.items()}
    # Masked query values are rendered URL-quoted; show them as plainly as the masked password.
    return url.set(query=query).render_as_string(hide_password=True).replace("=%2A%2A%2A", "=***")
