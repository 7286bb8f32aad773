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

Extension point: a ``PgBouncer`` helper (transaction mode) can later be added next to
:class:`_Cluster`.  It would reuse :func:`_free_port`, :meth:`_Cluster.run_as_server_user`,
:meth:`_Cluster.write_file` and the TLS key/cert pair (``PostgresInstance.cafile`` /
``PostgresInstance.keyfile``) that live in ``PostgresInstance.base_dir``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

__all__ = ["PostgresInstance", "PostgresUnavailable", "running_postgres"]

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

    def terminate_backends(self) -> None:
        """Terminate every client backend except this admin connection's own.

        Waits (up to 5 s per backend) until each one is gone, so clients see a dropped
        connection on their next use -- like Neon's compute suspending.
        """
        _admin_sql(
            self,
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )


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


# --------------------------------------------------------------------------- internals


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

    def _stop(self) -> None:
        """``pg_ctl -m immediate stop``; if that fails, kill the postmaster from its pid file."""
        try:
            self.run_as_server_user(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
                what="pg_ctl stop",
                log=self.log_file,
            )
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
