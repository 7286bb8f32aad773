"""Settings: how the environment and a .env file become one validated, secret-keeping Settings object."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import hypothesis
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from budget_mcp.config import TLS_SSLMODES, Settings, is_loopback, normalize_database_url, redact_url

PASSWORD = "s3cret-Pa55word"
NEON_URL = f"postgresql://alex:{PASSWORD}@ep-cool-123-pooler.eu-central-1.aws.neon.tech/neondb?sslmode=require"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the machine running the tests, and no stray .env is near."""
    for name in list(os.environ):
        if name == "DATABASE_URL" or name.startswith("BUDGET_MCP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def load(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def rejection(**values: object) -> str:
    with pytest.raises(ValidationError) as caught:
        load(**values)
    return str(caught.value)


# --- DATABASE_URL -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2"])
def test_postgres_urls_use_the_psycopg2_driver(scheme: str) -> None:
    url = load(database_url=f"{scheme}://alex:{PASSWORD}@db.example.com:5433/budget?sslmode=require").url
    assert url.drivername == "postgresql+psycopg2"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "alex",
        PASSWORD,
        "db.example.com",
        5433,
        "budget",
    )
    assert dict(url.query) == {"sslmode": "require"}


def test_database_url_is_read_from_the_plain_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", NEON_URL)
    assert Settings(_env_file=None).url.host == "ep-cool-123-pooler.eu-central-1.aws.neon.tech"  # type: ignore[call-arg]


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg", "pg8000"])
def test_other_postgresql_drivers_are_refused_without_echoing_the_url(driver: str) -> None:
    message = rejection(database_url=f"postgresql+{driver}://alex:{PASSWORD}@db.example.com/budget")
    assert f"driver {driver!r} is not supported" in message
    assert PASSWORD not in message


def test_unsupported_schemes_are_refused_without_echoing_the_url() -> None:
    message = rejection(database_url=f"mysql://root:{PASSWORD}@localhost/budget")
    assert "scheme 'mysql' is not supported" in message
    assert PASSWORD not in message


def test_text_that_is_not_a_url_is_refused_without_echoing_it() -> None:
    message = rejection(database_url=f"alex:{PASSWORD}@db.example.com")
    assert "not a valid database URL" in message
    assert PASSWORD not in message


def test_a_url_missing_its_host_is_refused_without_echoing_the_password() -> None:
    message = rejection(database_url=f"postgresql://alex:{PASSWORD}/neondb")
    assert "DATABASE_URL" in message
    assert PASSWORD not in message


# The settings check a URL with the standard library (SQLAlchemy's import would slow every start); the
# database is opened with SQLAlchemy's reading of it. The two must agree on well-formed URLs, and where a
# malformed one reads differently, nothing may connect without TLS.

URL_PASSWORDS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
URL_HOSTS = st.sampled_from(
    ["localhost", "127.0.0.1", "[::1]", "", "db.example.com", "10.0.0.5", "ep-a-1-pooler.aws.neon.tech", "127.x.io"]
)
URL_QUERIES = st.lists(
    st.sampled_from(
        [
            "sslmode=require",
            "sslmode=disable",
            "sslmode=verify-full",
            "sslmode=prefer",
            "host=/run/pg",
            "host=db.example.com",
            "application_name=x",
            "password=p%40ss",
        ]
    ),
    max_size=3,
)
URL_SCHEMES = st.sampled_from(
    ["postgresql", "postgres", "postgresql+psycopg2", "postgresql+asyncpg", "POSTGRESQL", "sqlite", "mysql", "pg sql"]
)


def sqlalchemy_verdict(raw: str) -> str:
    """What the checks said when they read the URL with SQLAlchemy (before start-up stopped importing it)."""
    try:
        url = normalize_database_url(raw)
    except ValueError:
        return "invalid"
    if url.get_backend_name() == "postgresql" and not is_loopback(url):
        return "tls" if url.query.get("sslmode") in TLS_SSLMODES else "refused: no TLS"
    return "ok"


def settings_verdict(raw: str) -> str:
    try:
        settings = load(database_url=raw)
    except ValidationError as error:
        return "refused: no TLS" if "without TLS" in str(error) else "invalid"
    try:
        url = settings.url  # what opening the database reads
    except ValueError as error:
        return "refused when opened: no TLS" if "without TLS" in str(error) else "invalid when opened"
    if url.get_backend_name() == "postgresql" and not is_loopback(url):
        return "tls"
    return "ok"


@hypothesis.settings(max_examples=300, deadline=None)
@given(URL_SCHEMES, st.text(alphabet="abcxyz_-.", max_size=6), URL_PASSWORDS, URL_HOSTS, URL_QUERIES)
def test_settings_read_a_well_formed_url_exactly_as_sqlalchemy_does(
    scheme: str, user: str, password: str, host: str, query: list[str]
) -> None:
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user or password else ""
    raw = f"{scheme}://{userinfo}{host}/budget" + ("?" + "&".join(query) if query else "")
    if scheme == "sqlite":
        raw = f"sqlite:///budget-{quote(password, safe='')}.sqlite3"
    assert settings_verdict(raw) == sqlalchemy_verdict(raw), raw


@hypothesis.settings(max_examples=300, deadline=None)
@given(st.sampled_from(["postgresql", "postgres"]), URL_PASSWORDS, URL_HOSTS, URL_QUERIES)
@example("postgresql", "p@ss?sslmode=require", "db.example.com", [])
@example("postgresql", "p#w/x", "db.example.com", ["sslmode=require"])
@example("postgresql", "a@localhost", "db.example.com", [])
def test_a_malformed_url_never_connects_without_tls_whichever_way_it_is_read(
    scheme: str, password: str, host: str, query: list[str]
) -> None:
    raw = f"{scheme}://alex:{password}@{host}/budget" + ("?" + "&".join(query) if query else "")  # not encoded
    verdict = settings_verdict(raw)
    if sqlalchemy_verdict(raw) == "refused: no TLS":
        assert verdict.startswith(("refused", "invalid")), raw
    if verdict == "ok":
        assert sqlalchemy_verdict(raw) == "ok", raw


def test_reading_the_settings_does_not_import_sqlalchemy(tmp_path: Path) -> None:
    probe = (
        "import sys; from budget_mcp.config import Settings; "
        "s = Settings(_env_file=None, database_url=sys.argv[1]); "
        "print(s.database_url is not None, 'sqlalchemy' in sys.modules)"
    )
    for url in (f"postgresql://alex:{PASSWORD}@db.example.com/budget?sslmode=require", "sqlite:///b.sqlite3"):
        done = subprocess.run(
            [sys.executable, "-c", probe, url], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=True
        )
        assert done.stdout.split() == ["True", "False"]


def test_a_relative_sqlite_path_becomes_absolute_against_the_working_directory(tmp_path: Path) -> None:
    url = load(database_url="sqlite:///data/budget.sqlite3").url
    assert url.drivername == "sqlite+pysqlite"
    assert url.database == str(tmp_path.resolve() / "data" / "budget.sqlite3")


def test_a_sqlite_path_under_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    url = load(database_url="sqlite:///~/budget.sqlite3").url
    assert url.database == str((tmp_path / "home" / "budget.sqlite3").resolve())


def test_an_absolute_sqlite_path_is_kept(tmp_path: Path) -> None:
    path = tmp_path.resolve() / "elsewhere" / "b.sqlite3"
    assert load(database_url=f"sqlite:///{path}").url.database == str(path)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite:///:memory:"])
def test_an_in_memory_sqlite_database_is_refused(url: str) -> None:
    assert "in-memory database would lose your data" in rejection(database_url=url)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_DATA_HOME is the Linux convention")
def test_the_default_database_is_an_absolute_file_in_the_per_user_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    settings = load()
    assert settings.database_url is None
    url = settings.url
    assert url.drivername == "sqlite+pysqlite"
    assert url.database is not None and Path(url.database).is_absolute()
    assert Path(url.database) == tmp_path / "xdg-data" / "budget-mcp" / "budget.sqlite3"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="~/.local/share is the Linux convention")
def test_the_default_database_lives_under_home_when_xdg_data_home_is_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    database = load().url.database
    assert database == str(tmp_path / ".local" / "share" / "budget-mcp" / "budget.sqlite3")


# --- secrets ------------------------------------------------------------------------------------------


def test_redacted_url_hides_the_password() -> None:
    redacted = load(database_url=NEON_URL).redacted_url
    assert PASSWORD not in redacted
    assert redacted == (
        "postgresql+psycopg2://alex:***@ep-cool-123-pooler.eu-central-1.aws.neon.tech/neondb?sslmode=require"
    )


@pytest.mark.parametrize("key", ["password", "PASSWORD", "sslpassword"])
def test_redacted_url_hides_passwords_given_as_query_parameters(key: str) -> None:
    settings = load(database_url=f"postgresql://alex@db.example.com/budget?sslmode=require&{key}={PASSWORD}")
    assert settings.url.query[key] == PASSWORD  # still used to connect
    redacted = settings.redacted_url
    assert PASSWORD not in redacted
    assert make_url(redacted).query[key] == "***"
    assert "sslmode=require" in redacted


def test_redact_url_masks_a_url_given_as_text_and_refuses_to_echo_unparseable_text() -> None:
    assert redact_url(f"postgresql://alex:{PASSWORD}@h/db") == "postgresql://alex:***@h/db"
    assert redact_url(f"alex:{PASSWORD}@h") == "<unparseable database URL>"


def test_repr_and_dumps_of_settings_never_contain_the_password() -> None:
    settings = load(database_url=f"{NEON_URL}&password={PASSWORD}")
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)
    assert PASSWORD not in settings.model_dump_json()
    assert PASSWORD not in str(settings.model_dump())


# --- the other settings -------------------------------------------------------------------------------


def test_blank_environment_values_mean_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "BUDGET_MCP_USER",
        "BUDGET_MCP_DEFAULT_CURRENCY",
        "BUDGET_MCP_TIMEZONE",
        "BUDGET_MCP_LOG_LEVEL",
    ):
        monkeypatch.setenv(name, "  ")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url is None
    assert settings.user == getpass.getuser()
    assert settings.default_currency == "USD"
    assert settings.timezone is None
    assert settings.log_level == "WARNING"


def test_values_are_trimmed_and_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGET_MCP_USER", "  sam ")
    monkeypatch.setenv("BUDGET_MCP_DEFAULT_CURRENCY", " eur ")
    monkeypatch.setenv("BUDGET_MCP_TIMEZONE", " Europe/Berlin ")
    monkeypatch.setenv("BUDGET_MCP_LOG_LEVEL", "debug")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.user, settings.default_currency, settings.timezone, settings.log_level) == (
        "sam",
        "EUR",
        "Europe/Berlin",
        "DEBUG",
    )
    assert settings.tz() == ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "Europe/"])
def test_an_unknown_time_zone_is_refused_with_an_example(zone: str) -> None:
    message = rejection(timezone=zone)
    assert "unknown time zone" in message
    assert "Europe/Berlin" in message


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="needs time.tzset (POSIX)")
def test_without_a_time_zone_today_follows_the_machine() -> None:
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"  # +05:30 all year: no daylight saving to trip over
    time.tzset()
    try:
        settings = load()
        assert settings.timezone is None
        assert settings.tz().utcoffset(datetime.now()) == timedelta(hours=5, minutes=30)
        assert settings.today() == datetime.now(timezone(timedelta(hours=5, minutes=30))).date()
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()


def test_a_configured_time_zone_decides_today() -> None:
    settings = load(timezone="Pacific/Kiritimati")  # UTC+14: often a day ahead of UTC
    assert settings.today() == datetime.now(ZoneInfo("Pacific/Kiritimati")).date()


@pytest.mark.parametrize("code", ["XYZ", "US", "XXX"])
def test_an_unknown_or_unspendable_default_currency_is_refused(code: str) -> None:
    message = rejection(default_currency=code)
    assert "currency" in message


def test_an_unknown_log_level_is_refused() -> None:
    assert "log_level" in rejection(log_level="LOUD")


def test_a_user_name_with_control_characters_is_refused() -> None:
    assert "control characters" in rejection(user="eve\x1b[31m")


def test_settings_are_frozen() -> None:
    settings = load()
    with pytest.raises(ValidationError):
        settings.user = "mallory"  # type: ignore[misc]


# --- sources ------------------------------------------------------------------------------------------


def test_a_dotenv_file_is_read_when_passed(tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text(
        "DATABASE_URL=sqlite:///from-file.sqlite3\n"
        "BUDGET_MCP_USER=fromfile\n"
        "BUDGET_MCP_DEFAULT_CURRENCY=jpy\n"
        "BUDGET_MCP_TIMEZONE=Asia/Tokyo\n"
        "BUDGET_MCP_LOG_LEVEL=info\n"
        "UNRELATED_SETTING=ignored\n"
    )
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.url.database == str(tmp_path.resolve() / "from-file.sqlite3")
    assert (settings.user, settings.default_currency, settings.timezone, settings.log_level) == (
        "fromfile",
        "JPY",
        "Asia/Tokyo",
        "INFO",
    )


def test_a_dotenv_file_in_the_working_directory_is_not_read_unless_passed(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BUDGET_MCP_USER=fromfile\nBUDGET_MCP_DEFAULT_CURRENCY=EUR\n")
    settings = Settings()
    assert settings.user != "fromfile"
    assert settings.default_currency == "USD"


def test_the_environment_beats_the_dotenv_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("BUDGET_MCP_USER=fromfile\nBUDGET_MCP_DEFAULT_CURRENCY=EUR\nDATABASE_URL=sqlite:///file.db\n")
    monkeypatch.setenv("BUDGET_MCP_USER", "fromenv")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///env.db")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.user == "fromenv"
    assert settings.url.database == str(tmp_path.resolve() / "env.db")
    assert settings.default_currency == "EUR"  # not in the environment: the file's value


def test_an_invalid_value_in_the_dotenv_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"DATABASE_URL=mysql://root:{PASSWORD}@localhost/budget\n")
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert "not supported" in str(caught.value)
    assert PASSWORD not in str(caught.value)
