"""A throwaway, Neon-like PostgreSQL 15 on loopback for the test suite.

Usage::

    with running_postgres() as pg:
        engine = create_engine(pg.url())          # app role, TLS required
        url = pg.create_database("scratch")       # owned by the app role
        pg.drop_database("scratch")

What makes it "Neon-like": TLS is mandatory on TCP (``hostnossl ... reject``), every login is
SCRAM-SHA-256, the application uses a non-superuser role that owns its database, and
``max_connections`` is 104 (Neon's 0.25 CU).  Durability is switched off for speed.

The server binaries (initdb, pg_ctl, postgres) refuse to run as root, so when the test process is
root they run as the ``postgres`` OS user via ``runuser``, inside a ``tempfile.mkdtemp()``
directory chown'ed to that user.  Otherwise they run as the current user.

The "Neon lab" puts a PgBouncer in transaction mode in front (like Neon's ``-pooler`` endpoint)::

    with running_neon_lab() as lab:
        lab.create_database("scratch")
        pooled = lab.pooled_url("scratch")       # through PgBouncer (TLS, SCRAM, transaction mode)
        direct = lab.direct_url("scratch")       # straight to PostgreSQL
        lab.terminate_backends()                 # Neon closing idle connections
        lab.suspend(); lab.resume()              # scale to zero and back, same ports
        lab.pooler.restart()                     # a pooler restart: pooled clients are dropped
        lab.pooler.add_database("scratch", pool_size=1)   # one server connection for all clients

:func:`running_pgbouncer` alone puts a PgBouncer in front of any :func:`running_postgres` cluster.
PgBouncer also refuses to run as root, so it runs as the ``postgres`` OS user too (as a child
process in its own session).  See ``tests/faultproxy.py`` for dropping connections at will.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg2
from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

__all__ = [
    "NeonLab",
    "PgBouncerInstance",
    "PostgresInstance",
    "PostgresUnavailable",
    "running_neon_lab",
    "running_pgbouncer",
    "running_postgres",
]

SERVER_OS_USER = "postgres"
"""OS user the server binaries run as when the test process is root."""

DRIVER = "postgresql+psycopg2"
HOST = "127.0.0.1"
MAX_CONNECTIONS = 104
_STEP_TIMEOUT = 60.0  # seconds, for any single subprocess step
_TAIL_LINES = 30
_PORT_ATTEMPTS = 3
_MIN_SHM_FREE = 1 << 30  # bytes free on /dev/shm before we put a cluster there (Docker's is 64 MB)


class PostgresUnavailable(RuntimeError):
    """The throwaway PostgreSQL could not be set up (missing binaries, initdb/start failure, ...)."""


@dataclass(frozen=True)
class PostgresInstance:
    """Connection facts for a running throwaway cluster (see :func:`running_postgres`).

    ``cafile`` is the server's self-signed certificate, usable as ``sslrootcert`` for
    ``sslmode=verify-full`` (its SAN covers ``localhost`` and ``127.0.0.1``).
    """

    host: str
    port: int
    admin_user: str
    admin_password: str = field(repr=False)
    app_user: str
    app_password: str = field(repr=False)
    database: str
    cafile: str
    keyfile: str = field(default="", repr=False)
    """Private key matching ``cafile`` (for a later PgBouncer's client-side TLS)."""
    base_dir: str = ""
    """The cluster's temporary directory (data dir, socket, log, TLS files)."""
    _cluster: _Cluster | None = field(default=None, repr=False, compare=False)
    """The cluster this instance runs on (for :meth:`stop` / :meth:`start` and PgBouncer)."""

    def url(self, database: str | None = None, *, admin: bool = False) -> str:
        """SQLAlchemy URL for ``database`` (default: the app database) over TLS.

        As the app role unless ``admin`` is true.  The password is URL-quoted, e.g.
        ``postgresql+psycopg2://app:pw@127.0.0.1:PORT/budget?sslmode=require``.
        """
        user, password = (self.admin_user, self.admin_password) if admin else (self.app_user, self.app_password)
        return URL.create(
            DRIVER,
            username=user,
            password=password,
            host=self.host,
            port=self.port,
            database=self.database if database is None else database,
            query={"sslmode": "require"},
        ).render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name OWNER app`` (as admin, autocommit); return the app URL for it."""
        _admin_sql(self, f"CREATE DATABASE {_quote_ident(name)} OWNER {_quote_ident(self.app_user)}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """``DROP DATABASE IF EXISTS name WITH (FORCE)``, terminating its connections."""
        _admin_sql(self, f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def terminate_backends(self) -> list[int]:
        """Terminate every client backend except this admin connection's own; return their pids.

        Waits (up to 10 s) until they are all gone, so clients see a dropped connection on their
        next use -- like Neon's compute suspending.  (Polls itself: ``pg_terminate_backend(pid,
        timeout)`` would sleep in 100 ms steps.)
        """
        conn = _admin_connect(self)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                )
                pids = [int(row[0]) for row in cur.fetchall()]
                cur.execute("SELECT pid FROM unnest(%s::int[]) AS pid WHERE pg_terminate_backend(pid)", (pids,))
                terminated = sorted(int(row[0]) for row in cur.fetchall())
                deadline = time.monotonic() + 10
                while True:
                    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (terminated,))
                    (left,) = cur.fetchone()
                    if not left:
                        return terminated
                    if time.monotonic() > deadline:
                        raise PostgresUnavailable(f"{left} terminated backend(s) still running after 10 s")
                    time.sleep(0.002)
        finally:
            conn.close()

    # -- lifecycle (Neon's compute suspending and waking up) ----------------------------

    @property
    def running(self) -> bool:
        """Whether the server is started (as far as :meth:`stop` / :meth:`start` know)."""
        return self._require_cluster().started

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl -m <mode> stop`` (fast, smart or immediate); a no-op if already stopped.

        ``fast`` is what a Neon compute suspend looks like to clients: every connection is
        closed (``terminating connection due to administrator command``) and new ones are refused.
        """
        if mode not in {"fast", "smart", "immediate"}:
            raise ValueError(f"unknown pg_ctl stop mode: {mode!r}")
        cluster = self._require_cluster()
        if cluster.started:
            cluster.stop_server(mode)

    def start(self) -> None:
        """Start the stopped server again on the same port; return once it accepts connections.

        A no-op if it is running.
        """
        cluster = self._require_cluster()
        if not cluster.started:
            cluster.restart_server()

    def _require_cluster(self) -> _Cluster:
        if self._cluster is None:
            raise RuntimeError("this PostgresInstance was not made by running_postgres(): no cluster to control")
        return self._cluster


@contextmanager
def running_postgres(
    *,
    database: str = "budget",
    app_user: str = "app",
    admin_user: str = "postgres",
) -> Iterator[PostgresInstance]:
    """Start a throwaway cluster; stop it (pg_ctl -m immediate stop) and delete its directory
    afterwards, even on error.

    Raises :class:`PostgresUnavailable` (with the failing step's stderr / server log tail)
    if the cluster cannot be created or started.
    """
    cluster = _Cluster.create()
    try:
        yield cluster.start(database=database, app_user=app_user, admin_user=admin_user)
    finally:
        cluster.destroy()


# --------------------------------------------------------------------------- PgBouncer


class PgBouncerInstance:
    """A PgBouncer in transaction mode in front of one cluster (see :func:`running_pgbouncer`).

    Like Neon's pooled endpoint: TLS required from clients and to the server, SCRAM-SHA-256 with
    the verifiers copied from ``pg_authid`` (no plaintext on disk), ``max_client_conn`` 10000,
    a wildcard ``*`` database entry (databases created later just work), and no support for the
    ``options`` startup parameter.  Its directory (config, auth file, ``pgbouncer.log``) is a
    subdirectory of the cluster's, so it goes away with the cluster.
    """

    def __init__(self, pg: PostgresInstance, *, default_pool_size: int = 20) -> None:
        self.postgres = pg
        self.host = HOST
        self.port = 0
        """Listening port; fixed by the first :meth:`start` and kept across restarts."""
        self.default_pool_size = default_pool_size
        self._cluster = pg._require_cluster()
        self._exe = _find_pgbouncer()
        self._databases: dict[str, int] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            self.dir = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir=self._cluster.base_dir))
        except OSError as exc:
            raise PostgresUnavailable(f"could not make PgBouncer's directory: {exc}") from exc
        self._cluster.chown(self.dir)
        self.config_file = self.dir / "pgbouncer.ini"
        self.auth_file = self.dir / "userlist.txt"
        self.log_file = self.dir / "pgbouncer.log"
        self._stderr_file = self.dir / "pgbouncer.stderr"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"PgBouncerInstance(host={self.host!r}, port={self.port}, {state}, postgres port={self.postgres.port})"

    # -- connecting ----------------------------------------------------------------------

    def url(self, database: str | None = None, *, admin: bool = False) -> str:
        """Pooled SQLAlchemy URL, e.g. ``postgresql+psycopg2://app:pw@127.0.0.1:PORT/budget?sslmode=require``.

        Same users, passwords and databases as :meth:`PostgresInstance.url`, on the pooler's port.
        """
        pg = self.postgres
        user, password = (pg.admin_user, pg.admin_password) if admin else (pg.app_user, pg.app_password)
        return URL.create(
            DRIVER,
            username=user,
            password=password,
            host=self.host,
            port=self.port,
            database=pg.database if database is None else database,
            query={"sslmode": "require"},
        ).render_as_string(hide_password=False)

    def admin_console(self, command: str) -> list[dict[str, Any]]:
        """Run one admin console command (``SHOW POOLS``, ``RELOAD``, ...) as the superuser.

        Returns the rows as dicts (empty for commands without a result set).
        """
        pg = self.postgres
        conn = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=pg.admin_user,
            password=pg.admin_password,
            dbname="pgbouncer",
            sslmode="require",
            connect_timeout=10,
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(command)
                if cur.description is None:
                    return []
                names = [col.name for col in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            conn.close()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start PgBouncer (on the same port as before, if it ran before); return once it listens.

        A no-op if it is running.  The cluster must be running.
        """
        if self.running:
            return
        self._proc = None
        if not self.auth_file.exists():
            self._write_auth_file()
        if self.port:
            self._spawn_and_wait(self.port, retry_bind=True)
            return
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = _free_port()
            if self._spawn_and_wait(port, retry_bind=False):
                return
            if attempt == _PORT_ATTEMPTS:
                raise PostgresUnavailable("PgBouncer could not bind a port" + self._log_suffix())
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop PgBouncer at once (SIGTERM, an immediate shutdown in 1.18; SIGKILL if it lingers).

        Clients' connections drop; new ones are refused.  A no-op if it is not running.
        """
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=_STEP_TIMEOUT)

    def restart(self) -> None:
        """A pooler restart: stop and start again on the same port (clients' connections drop)."""
        self.stop()
        self.start()

    def add_database(self, name: str, pool_size: int) -> None:
        """Add (or change) an explicit ``[databases]`` entry for ``name`` with its own ``pool_size``,
        then reload PgBouncer.  ``pool_size=1`` forces all clients of a user onto one server connection.
        """
        if not _PGBOUNCER_NAME.fullmatch(name):
            raise ValueError(f"database name not supported in pgbouncer.ini here: {name!r}")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._databases[name] = pool_size
        self.reload()

    def reload(self) -> None:
        """Rewrite the config and auth file (roles added since are picked up), then ``RELOAD``."""
        self._write_auth_file()
        self._write_config(self.port)
        if self.running:
            self.admin_console("RELOAD")

    def close(self) -> None:
        """Stop PgBouncer (the directory goes with the cluster's)."""
        self.stop()

    # -- internals -----------------------------------------------------------------------

    def _write_auth_file(self) -> None:
        """``"role" "SCRAM-SHA-256$..."`` for every login role with a password, from ``pg_authid``."""
        try:
            rows = _admin_query(
                self.postgres,
                "SELECT rolname, rolpassword FROM pg_authid "
                "WHERE rolcanlogin AND rolpassword IS NOT NULL ORDER BY rolname",
            )
        except psycopg2.Error as exc:
            raise PostgresUnavailable(f"reading pg_authid for PgBouncer's auth_file failed: {exc}") from exc
        lines = [f"{_pgbouncer_quote(name)} {_pgbouncer_quote(secret)}\n" for name, secret in rows]
        self._cluster.write_file(self.auth_file, "".join(lines), 0o600)

    def _write_config(self, port: int) -> None:
        pg = self.postgres
        server = f"host={pg.host} port={pg.port}"
        databases = "".join(
            f"{name} = {server} dbname={name} pool_size={size}\n" for name, size in self._databases.items()
        )
        settings = {
            "listen_addr": HOST,
            "listen_port": str(port),
            "unix_socket_dir": "",
            "auth_type": "scram-sha-256",
            "auth_file": str(self.auth_file),
            "admin_users": pg.admin_user,
            "pool_mode": "transaction",
            "default_pool_size": str(self.default_pool_size),
            "max_client_conn": "10000",
            "client_tls_sslmode": "require",
            "client_tls_cert_file": str(self._cluster.certfile),
            "client_tls_key_file": str(self._cluster.keyfile),
            "server_tls_sslmode": "require",
            # Retry a failed server login after 1 s, not 15 s: the lab restarts PostgreSQL a lot.
            "server_login_retry": "1",
            "logfile": str(self.log_file),
        }
        body = (
            "; throwaway PgBouncer (tests/pgserver.py)\n[databases]\n"
            + databases
            + f"* = {server}\n\n[pgbouncer]\n"
            + "".join(f"{key} = {value}\n" for key, value in settings.items())
        )
        self._cluster.write_file(self.config_file, body, 0o600)

    def _spawn_and_wait(self, port: int, *, retry_bind: bool) -> bool:
        """Start PgBouncer on ``port`` and wait until it accepts TCP connections.

        Returns False if the port was taken (unless ``retry_bind``: then keep trying, e.g. while
        a killed predecessor's socket is released); raises PostgresUnavailable on other failures.
        """
        self._write_config(port)
        deadline = time.monotonic() + 30
        while True:
            marks = self._log_marks()
            proc = self._spawn()
            outcome = self._wait_listening(proc, port, deadline, marks)
            if outcome == "up":
                self._proc = proc
                self.port = port
                return True
            _reap(proc)
            if outcome == "port taken" and not retry_bind:
                return False
            if outcome == "port taken" and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise PostgresUnavailable(f"PgBouncer did not start on {HOST}:{port} ({outcome})" + self._log_suffix(marks))

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self._stderr_file.open("ab") as stderr:
            try:
                return self._cluster.popen_as_server_user(
                    [str(self._exe), str(self.config_file)], cwd=self.dir, stderr=stderr
                )
            except OSError as exc:
                raise PostgresUnavailable(f"could not start PgBouncer: {exc}") from exc

    def _wait_listening(self, proc: subprocess.Popen[bytes], port: int, deadline: float, marks: dict[Path, int]) -> str:
        """``up``, ``port taken``, ``exited with N`` or ``timed out``.

        Up means: this process logged ``process up`` (after binding its sockets) and the port
        accepts connections.  A bare connect test is not enough: if another program holds the
        port, connecting succeeds while PgBouncer is on its way to "Address already in use".
        """
        while True:
            if proc.poll() is not None:
                taken = "Address already in use" in self._log_since(marks)
                return "port taken" if taken else f"exited with {proc.returncode}"
            if "process up" in self._log_since(marks):
                try:
                    with socket.create_connection((HOST, port), timeout=1):
                        pass
                except OSError:
                    pass
                else:
                    if proc.poll() is None:
                        return "up"
                    continue
            if time.monotonic() > deadline:
                proc.kill()
                return "timed out"
            time.sleep(0.005)

    def _log_since(self, marks: dict[Path, int]) -> str:
        """What the log file and stderr got since ``marks``."""
        parts = []
        for path in (self.log_file, self._stderr_file):
            try:
                with path.open("rb") as fh:
                    fh.seek(marks.get(path, 0))
                    parts.append(fh.read().decode(errors="replace"))
            except OSError:
                continue
        return "\n".join(parts)

    def _log_marks(self) -> dict[Path, int]:
        """Current sizes of the log and stderr files, to read only what a new process writes."""
        marks = {}
        for path in (self.log_file, self._stderr_file):
            try:
                marks[path] = path.stat().st_size
            except OSError:
                marks[path] = 0
        return marks

    def _log_suffix(self, marks: dict[Path, int] | None = None) -> str:
        """The log's tail (since ``marks``); else stderr's (errors before the log file is opened)."""
        for path in (self.log_file, self._stderr_file):
            try:
                with path.open("rb") as fh:
                    fh.seek((marks or {}).get(path, 0))
                    tail = _tail(fh.read().decode(errors="replace"))
            except OSError:
                continue
            if tail:
                return f"\n--- {path.name} (tail) ---\n{tail}"
        return ""


@contextmanager
def running_pgbouncer(pg: PostgresInstance, *, default_pool_size: int = 20) -> Iterator[PgBouncerInstance]:
    """Start a PgBouncer (transaction mode) in front of ``pg`` (made by :func:`running_postgres`);
    always stop it afterwards.  Raises :class:`PostgresUnavailable` (with its log tail) on failure.
    """
    bouncer = PgBouncerInstance(pg, default_pool_size=default_pool_size)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.close()


# --------------------------------------------------------------------------- Neon lab


@dataclass(frozen=True)
class NeonLab:
    """PostgreSQL (TLS + SCRAM) with PgBouncer in transaction mode in front: a local stand-in for
    a Neon project's direct and pooled endpoints (see :func:`running_neon_lab`)."""

    postgres: PostgresInstance
    pooler: PgBouncerInstance

    def pooled_url(self, database: str | None = None, *, admin: bool = False) -> str:
        """Through PgBouncer (like Neon's ``-pooler`` host)."""
        return self.pooler.url(database, admin=admin)

    def direct_url(self, database: str | None = None, *, admin: bool = False) -> str:
        """Straight to PostgreSQL (like Neon's direct host: migrations, DDL, session features)."""
        return self.postgres.url(database, admin=admin)

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name OWNER app``; return ``name`` (reachable pooled and direct at once)."""
        self.postgres.create_database(name)
        return name

    def suspend(self) -> None:
        """Scale to zero: stop the pooler, then ``pg_ctl -m fast stop``.  Every connection drops and
        both ports refuse connections until :meth:`resume`."""
        self.pooler.stop()
        self.postgres.stop("fast")

    def resume(self) -> None:
        """Wake up: start PostgreSQL, then the pooler, on the same ports as before."""
        self.postgres.start()
        self.pooler.start()

    def terminate_backends(self) -> list[int]:
        """Terminate every PostgreSQL client backend (direct connections and the pooler's server
        connections), like Neon closing idle connections; return their pids.

        Direct clients see a dropped connection on next use.  Pooled clients outside a transaction
        keep their connection to the pooler; this waits until the pooler has noticed and dropped its
        dead server connections, so their next transaction gets a fresh one.
        """
        pids = set(self.postgres.terminate_backends())
        if pids and self.pooler.running:
            deadline = time.monotonic() + 10
            while any(row.get("remote_pid") in pids for row in self.pooler.admin_console("SHOW SERVERS")):
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(
                        "PgBouncer kept server connections to terminated backends" + self.pooler._log_suffix()
                    )
                time.sleep(0.005)
        return sorted(pids)


@contextmanager
def running_neon_lab(*, database: str = "budget", default_pool_size: int = 20) -> Iterator[NeonLab]:
    """Start a throwaway cluster and a PgBouncer in front of it; tear both down afterwards, even on
    error.  Raises :class:`PostgresUnavailable` (with the log tail) if either cannot start."""
    with (
        running_postgres(database=database) as pg,
        running_pgbouncer(pg, default_pool_size=default_pool_size) as pooler,
    ):
        yield NeonLab(postgres=pg, pooler=pooler)


# --------------------------------------------------------------------------- internals

_PGBOUNCER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
"""Database names usable unquoted in pgbouncer.ini (and in its connect strings)."""


def _find_pgbouncer() -> Path:
    """``$PGBOUNCER``, ``pgbouncer`` on PATH, or Debian's ``/usr/sbin/pgbouncer``."""
    candidates = [os.environ.get("PGBOUNCER"), shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"]
    for cand in candidates:
        if cand and os.access(cand, os.X_OK):
            return Path(cand)
    raise PostgresUnavailable("pgbouncer not found (apt-get install pgbouncer, or set PGBOUNCER)")


def _pgbouncer_quote(value: str) -> str:
    """A double-quoted auth_file field."""
    return '"' + value.replace('"', '""') + '"'


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Make sure ``proc`` is gone and waited for."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=_STEP_TIMEOUT)


def _quote_ident(name: str) -> str:
    """Always-quoted SQL identifier (so the name is used verbatim, case included)."""
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    """SQL string literal (standard_conforming_strings is on)."""
    if "\x00" in value:
        raise ValueError("NUL byte in SQL literal")
    return "'" + value.replace("'", "''") + "'"


def scram_sha256_verifier(password: str, *, iterations: int = 4096) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (as in ``pg_authid.rolpassword``).

    Used so that ``CREATE ROLE ... PASSWORD`` never carries the plaintext (which would otherwise
    show up in error messages and the server log).  ASCII passwords only (no SASLprep needed).
    """
    if not password.isascii():
        raise ValueError("only ASCII passwords are supported")
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _conf_string(value: str) -> str:
    """A postgresql.conf string value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _admin_sql(pg: PostgresInstance, *statements: str) -> None:
    """Run ``statements`` in autocommit mode as the superuser on the ``postgres`` database.

    Sent verbatim (``exec_driver_sql`` without parameters): ``text()`` would treat ``:name``
    -- e.g. inside a SCRAM verifier -- as a bind parameter.
    """
    engine = create_engine(
        pg.url("postgres", admin=True),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 10},
    )
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def _admin_connect(pg: PostgresInstance) -> Any:
    """A psycopg2 connection as the superuser to the ``postgres`` database (over TLS)."""
    return psycopg2.connect(
        host=pg.host,
        port=pg.port,
        user=pg.admin_user,
        password=pg.admin_password,
        dbname="postgres",
        sslmode="require",
        connect_timeout=10,
    )


def _admin_query(pg: PostgresInstance, statement: str) -> list[tuple[Any, ...]]:
    """Rows of one statement run as the superuser on the ``postgres`` database (autocommit)."""
    conn = _admin_connect(pg)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
            return list(cur.fetchall())
    finally:
        conn.close()


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(text_or_path: str | Path, lines: int = _TAIL_LINES) -> str:
    """Last ``lines`` lines of a string or of a file (empty if the file is missing)."""
    if isinstance(text_or_path, Path):
        try:
            content = text_or_path.read_text(errors="replace")
        except OSError:
            return ""
    else:
        content = text_or_path
    return "\n".join(content.strip().splitlines()[-lines:])


def _find_bindir() -> Path:
    """Directory holding initdb/pg_ctl/postgres: ``$PG_BINDIR``, ``pg_config --bindir``, or Debian's."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                check=True,
                timeout=_STEP_TIMEOUT,
            ).stdout.strip()
            candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates.append(Path("/usr/lib/postgresql/15/bin"))
    candidates = list(dict.fromkeys(candidates))  # de-duplicate, keep order
    for cand in candidates:
        if all(os.access(cand / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return cand
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; looked in "
        + ", ".join(str(c) for c in candidates)
        + " (install postgresql-15 or set PG_BINDIR)"
    )


def _traversable_by_others(path: Path) -> bool:
    """True if every directory from ``/`` down to ``path`` is world-searchable (o+x)."""
    path = path.resolve()
    for part in (path, *path.parents):
        try:
            if not part.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _parent_dir(*, as_root: bool) -> str:
    """Where to make the cluster directory.

    ``$PGSERVER_TMPDIR`` if set; else ``/dev/shm`` when it is a roomy writable tmpfs (initdb is
    about twice as fast there as on a disk, even with --no-sync); else the usual temp dir -- or
    ``/tmp`` if, as root, the usual one is not reachable by the postgres user.
    """
    override = os.environ.get("PGSERVER_TMPDIR")
    if override:
        return override
    shm = Path("/dev/shm")
    try:
        st = os.statvfs(shm)
        roomy = st.f_bavail * st.f_frsize >= _MIN_SHM_FREE
    except OSError:
        roomy = False
    if roomy and os.access(shm, os.W_OK | os.X_OK) and _traversable_by_others(shm):
        return str(shm)
    default = tempfile.gettempdir()
    if as_root and not _traversable_by_others(Path(default)):
        return "/tmp"
    return default


def _subprocess_env() -> dict[str, str]:
    """Environment for the server tools: no stray PG* variables, C locale, UTC."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["TZ"] = "UTC"  # initdb then skips probing the system time zone
    return env


@dataclass
class _Cluster:
    """One cluster's temp directory and the way to run server tools in it (internal)."""

    base_dir: Path
    bindir: Path
    run_prefix: tuple[str, ...]
    """``("runuser", "-u", "postgres", "--")`` as root, else empty."""
    owner: tuple[int, int] | None
    """(uid, gid) to chown files to when root, else None."""
    env: dict[str, str] = field(default_factory=_subprocess_env)
    started: bool = False

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def certfile(self) -> Path:
        return self.base_dir / "server.crt"

    @property
    def keyfile(self) -> Path:
        return self.base_dir / "server.key"

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def create(cls) -> _Cluster:
        """Locate the binaries and make a temp directory the server user owns."""
        bindir = _find_bindir()
        if shutil.which("openssl") is None:
            raise PostgresUnavailable("openssl not found (needed for the server's TLS certificate)")
        run_prefix: tuple[str, ...] = ()
        owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise PostgresUnavailable("running as root but runuser(1) is not available")
            try:
                pw = pwd.getpwnam(SERVER_OS_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root but there is no {SERVER_OS_USER!r} OS user to run PostgreSQL as"
                ) from None
            run_prefix = (runuser, "-u", SERVER_OS_USER, "--")
            owner = (pw.pw_uid, pw.pw_gid)
        base_dir = Path(tempfile.mkdtemp(prefix="pgtest-", dir=_parent_dir(as_root=owner is not None)))
        if owner is not None:
            os.chown(base_dir, *owner)
        return cls(base_dir=base_dir, bindir=bindir, run_prefix=run_prefix, owner=owner)

    def start(self, *, database: str, app_user: str, admin_user: str) -> PostgresInstance:
        """Certificate + initdb (in parallel), configure, ``pg_ctl -w start``, create role and db."""
        admin_password = secrets.token_urlsafe(24)
        app_password = secrets.token_urlsafe(24)
        cert_proc = self._start_certificate()
        try:
            self._initdb(admin_user, admin_password)
        finally:
            cert_out, cert_err = cert_proc.communicate(timeout=_STEP_TIMEOUT)
        if cert_proc.returncode != 0:
            raise PostgresUnavailable(f"openssl failed (exit {cert_proc.returncode}):\n{_tail(cert_err or cert_out)}")
        self.chown(self.certfile)
        self.chown(self.keyfile)
        os.chmod(self.keyfile, 0o600)
        os.chmod(self.certfile, 0o644)
        self._configure()
        port = self._start_server()
        pg = PostgresInstance(
            host=HOST,
            port=port,
            admin_user=admin_user,
            admin_password=admin_password,
            app_user=app_user,
            app_password=app_password,
            database=database,
            cafile=str(self.certfile),
            keyfile=str(self.keyfile),
            base_dir=str(self.base_dir),
            _cluster=self,
        )
        self._create_app(pg)
        return pg

    def destroy(self) -> None:
        """``pg_ctl -m immediate stop`` (if started), then remove the directory."""
        try:
            if self.started:
                self._stop()
        finally:
            try:
                shutil.rmtree(self.base_dir)
            except FileNotFoundError:
                pass
            except OSError as exc:
                warnings.warn(f"could not remove {self.base_dir}: {exc}", stacklevel=2)

    # -- helpers usable by a later PgBouncer --------------------------------------------

    def run_as_server_user(
        self, argv: Sequence[str], *, what: str, log: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as the server user, quietly; raise PostgresUnavailable on failure.

        The error message includes the command's stderr/stdout tail and, if given, ``log``'s tail.
        """
        cmd = [*self.run_prefix, *argv]
        try:
            proc = subprocess.run(
                cmd,
                check=False,
                cwd=self.base_dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_STEP_TIMEOUT,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise PostgresUnavailable(f"{what} failed: {exc}" + self._log_suffix(log)) from exc
        if proc.returncode != 0:
            output = _tail(proc.stderr) or _tail(proc.stdout)
            raise PostgresUnavailable(
                f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{output}" + self._log_suffix(log)
            )
        return proc

    def popen_as_server_user(self, argv: Sequence[str], *, cwd: Path, stderr: IO[bytes]) -> subprocess.Popen[bytes]:
        """Start a long-running server program as the server user, in its own session.

        As root this switches user in the child (``user=``/``group=``), so the returned process is
        the program itself (not a ``runuser`` wrapper) and can be signalled directly.
        """
        kwargs: dict[str, Any] = {}
        if self.owner is not None:
            kwargs = {"user": self.owner[0], "group": self.owner[1], "extra_groups": []}
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            **kwargs,
        )

    def write_file(self, path: Path, content: str, mode: int = 0o600) -> None:
        """Write ``content`` to ``path``, readable by the server user."""
        path.write_text(content)
        os.chmod(path, mode)
        self.chown(path)

    def chown(self, path: Path) -> None:
        """Give ``path`` to the server user (no-op when not root)."""
        if self.owner is not None:
            os.chown(path, *self.owner)

    # -- steps ---------------------------------------------------------------------------

    def _log_suffix(self, log: Path | None) -> str:
        if log is None:
            return ""
        tail = _tail(log)
        return f"\n--- {log.name} (tail) ---\n{tail}" if tail else ""

    def _start_certificate(self) -> subprocess.Popen[str]:
        """Launch openssl for a self-signed P-256 cert for localhost/127.0.0.1 (runs as us)."""
        try:
            return subprocess.Popen(
                [
                    "openssl", "req", "-x509",
                    "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "7", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(self.keyfile), "-out", str(self.certfile),
                ],
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        except OSError as exc:
            raise PostgresUnavailable(f"openssl failed to start: {exc}") from exc

    def _initdb(self, admin_user: str, admin_password: str) -> None:
        pwfile = self.base_dir / "pwfile"
        self.write_file(pwfile, admin_password + "\n")
        try:
            self.run_as_server_user(
                [
                    str(self.bindir / "initdb"),
                    "-D", str(self.data_dir),
                    "-U", admin_user,
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "-E", "UTF8",
                    "--no-locale",
                    "--no-sync",
                    "--no-instructions",
                ],
                what="initdb",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)

    def _configure(self) -> None:
        """Point postgresql.conf at our settings file and replace pg_hba.conf."""
        settings = {
            "listen_addresses": _conf_string(HOST),
            "unix_socket_directories": _conf_string(str(self.base_dir)),
            "max_connections": str(MAX_CONNECTIONS),
            "ssl": "on",
            "ssl_cert_file": _conf_string(str(self.certfile)),
            "ssl_key_file": _conf_string(str(self.keyfile)),
            "password_encryption": _conf_string("scram-sha-256"),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "timezone": _conf_string("UTC"),
        }
        body = "".join(f"{key} = {value}\n" for key, value in settings.items())
        self.write_file(self.base_dir / "neonlike.conf", body, 0o644)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# throwaway test cluster (tests/pgserver.py)\n"
                f"include = {_conf_string(str(self.base_dir / 'neonlike.conf'))}\n"
                f"include_if_exists = {_conf_string(str(self.base_dir / 'port.conf'))}\n"
            )
        hba = (
            "# TYPE     DATABASE  USER  ADDRESS       METHOD\n"
            "local      all       all                 scram-sha-256\n"
            "hostssl    all       all   127.0.0.1/32  scram-sha-256\n"
            "hostnossl  all       all   127.0.0.1/32  reject\n"
        )
        (self.data_dir / "pg_hba.conf").write_text(hba)  # existing file: owner kept

    def _start_server(self) -> int:
        """``pg_ctl -w start`` on a free port; retry with a new port if it was taken meanwhile."""
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = _free_port()
            self.write_file(self.base_dir / "port.conf", f"port = {port}\n", 0o644)
            self.started = True  # from here on, destroy() must try to stop it
            try:
                self.run_as_server_user(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D", str(self.data_dir),
                        "-l", str(self.log_file),
                        "-w", "-t", "30",
                        "start",
                    ],
                    what="pg_ctl start",
                    log=self.log_file,
                )  # fmt: skip
                return port
            except PostgresUnavailable:
                port_taken = "could not bind" in _tail(self.log_file)
                if not port_taken or attempt == _PORT_ATTEMPTS:
                    raise
                self.log_file.unlink(missing_ok=True)
        raise AssertionError("unreachable")

    def _create_app(self, pg: PostgresInstance) -> None:
        """Create the (non-superuser) app role and its database, over TLS as the superuser."""
        try:
            _admin_sql(
                pg,
                f"CREATE ROLE {_quote_ident(pg.app_user)} LOGIN NOSUPERUSER "
                f"PASSWORD {_quote_literal(scram_sha256_verifier(pg.app_password))}",
                f"CREATE DATABASE {_quote_ident(pg.database)} OWNER {_quote_ident(pg.app_user)}",
            )
        except Exception as exc:
            raise PostgresUnavailable(
                f"creating role/database failed: {exc}" + self._log_suffix(self.log_file)
            ) from exc

    def stop_server(self, mode: str) -> None:
        """``pg_ctl -m <mode> -w stop``; raise PostgresUnavailable if that fails."""
        self.run_as_server_user(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
            what=f"pg_ctl stop -m {mode}",
            log=self.log_file,
        )
        self.started = False

    def restart_server(self) -> None:
        """``pg_ctl -w start`` again, on the port already written to ``port.conf``."""
        self.started = True  # from here on, destroy() must try to stop it
        self.run_as_server_user(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "30",
                "start",
            ],
            what="pg_ctl start",
            log=self.log_file,
        )

    def _stop(self) -> None:
        """``pg_ctl -m immediate stop``; if that fails, kill the postmaster from its pid file."""
        try:
            self.stop_server("immediate")
        except PostgresUnavailable as exc:
            pid_file = self.data_dir / "postmaster.pid"
            try:
                pid = int(pid_file.read_text().split("\n", 1)[0])
            except (OSError, ValueError):
                return  # never started, or already gone
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            except OSError:
                warnings.warn(f"could not stop PostgreSQL (pid {pid}): {exc}", stacklevel=3)
        finally:
            self.started = False
