"""The Neon lab itself: PostgreSQL (TLS + SCRAM) behind PgBouncer in transaction mode, its fault
controls (kill backends, suspend/resume, pooler restart, a one-connection pool) and the fault proxy.

Read-only checks use the session's ``neon_lab``; tests that break things get this module's own lab.
No sleeping: every wait polls a condition against a deadline.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from faultproxy import FaultProxy
from pgserver import (
    NeonLab,
    PgBouncerInstance,
    PostgresInstance,
    PostgresUnavailable,
    running_neon_lab,
    running_pgbouncer,
)

pytestmark = pytest.mark.postgres

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
"""The 8 bytes a client sends first to ask for TLS; PostgreSQL answers one byte, ``S``."""


# --------------------------------------------------------------------------- helpers


def connect(url: str, **overrides: Any) -> Any:
    """A psycopg2 connection for a lab SQLAlchemy URL (TLS required unless overridden)."""
    parsed = make_url(url)
    params: dict[str, Any] = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
        "sslmode": "require",
        "connect_timeout": 5,
    }
    params.update(overrides)
    return psycopg2.connect(**params)


def via(proxy: FaultProxy, url: str) -> str:
    """``url`` rerouted through ``proxy``."""
    return make_url(url).set(host=proxy.host, port=proxy.port).render_as_string(hide_password=False)


def scalar(conn: Any, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.005)


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def pool(pooler: PgBouncerInstance, database: str) -> dict[str, Any]:
    """The app role's row of ``SHOW POOLS`` for ``database``."""
    app = pooler.postgres.app_user
    rows = [row for row in pooler.admin_console("SHOW POOLS") if (row["database"], row["user"]) == (database, app)]
    assert len(rows) == 1, rows
    return rows[0]


class InThread:
    """Run ``fn`` in a thread; ``result()`` joins and returns its value or re-raises its error."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:
            self._error = exc

    def result(self, timeout: float = 10.0) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the call did not finish"
        if self._error is not None:
            raise self._error
        return self._value


@pytest.fixture
def fresh_db(neon_lab: NeonLab) -> Iterator[str]:
    """A new database of the session lab, so its pooler pool starts empty."""
    name = neon_lab.create_database(f"lab_{uuid.uuid4().hex[:10]}")
    try:
        yield name
    finally:
        neon_lab.postgres.drop_database(name)


@pytest.fixture(scope="module")
def own_lab() -> Iterator[NeonLab]:
    """This module's own lab, for tests that kill, suspend or restart things.

    Its teardown checks the lab cleans up: processes gone, ports closed, directory removed."""
    try:
        with running_neon_lab() as lab:
            yield lab
    except PostgresUnavailable as error:
        pytest.fail(f"could not start a Neon lab: {error}", pytrace=False)
    assert not Path(lab.postgres.base_dir).exists()
    assert refuses_connections(lab.postgres.port)
    assert refuses_connections(lab.pooler.port)


# --------------------------------------------------------------------------- the pooled endpoint


def test_pooled_connections_use_tls_on_both_hops(neon_lab: NeonLab) -> None:
    with connect(neon_lab.pooled_url()) as conn:
        assert conn.info.ssl_in_use  # client -> PgBouncer
        assert scalar(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")  # PgBouncer -> PostgreSQL
        assert conn.info.port == neon_lab.pooler.port != neon_lab.postgres.port
    conn.close()
    engine = create_engine(neon_lab.pooled_url())  # SQLAlchemy's first-connect queries pass the pooler
    try:
        with engine.connect() as sa_conn:
            assert sa_conn.execute(text("SELECT current_user")).scalar_one() == neon_lab.postgres.app_user
    finally:
        engine.dispose()


@pytest.mark.parametrize("endpoint", ["pooled", "direct"])
def test_plaintext_connections_are_refused(neon_lab: NeonLab, endpoint: str) -> None:
    url = neon_lab.pooled_url() if endpoint == "pooled" else neon_lab.direct_url()
    with pytest.raises(psycopg2.OperationalError, match=r"SSL required|no encryption"):
        connect(url, sslmode="disable")


def test_pooler_rejects_the_options_startup_parameter_that_direct_accepts(neon_lab: NeonLab) -> None:
    with pytest.raises(psycopg2.OperationalError, match="unsupported startup parameter: options"):
        connect(neon_lab.pooled_url(), options="-c statement_timeout=1000")
    conn = connect(neon_lab.direct_url(), options="-c statement_timeout=1000")
    try:
        assert scalar(conn, "SHOW statement_timeout") == "1s"
    finally:
        conn.close()


def test_pooler_hands_out_server_connections_per_transaction(neon_lab: NeonLab, fresh_db: str) -> None:
    url = neon_lab.pooled_url(fresh_db)
    first, second = connect(url), connect(url)
    try:
        first_pid = scalar(first, "SELECT pg_backend_pid()")
        first.commit()  # the server connection goes back to the pool...
        assert scalar(second, "SELECT pg_backend_pid()") == first_pid  # ...and the other client gets it
        # With that backend busy in second's transaction, first's next transaction runs elsewhere.
        assert scalar(first, "SELECT pg_backend_pid()") != first_pid
        assert pool(neon_lab.pooler, fresh_db)["pool_mode"] == "transaction"
    finally:
        first.close()
        second.close()


def test_a_database_with_pool_size_one_puts_every_client_on_one_backend(neon_lab: NeonLab, fresh_db: str) -> None:
    neon_lab.pooler.add_database(fresh_db, pool_size=1)
    databases = {row["name"]: row for row in neon_lab.pooler.admin_console("SHOW DATABASES")}
    assert databases[fresh_db]["pool_size"] == 1
    url = neon_lab.pooled_url(fresh_db)
    holder, waiter = connect(url), connect(url)
    try:
        holder_pid = scalar(holder, "SELECT pg_backend_pid()")  # transaction open: the only backend is taken
        waiting = InThread(lambda: scalar(waiter, "SELECT pg_backend_pid()"))
        wait_until(lambda: pool(neon_lab.pooler, fresh_db)["cl_waiting"] == 1, "the second client queues")
        holder.commit()
        assert waiting.result() == holder_pid
    finally:
        holder.close()
        waiter.close()


def test_pooler_fixture_pools_the_session_postgres(pooler: PgBouncerInstance, postgres: PostgresInstance) -> None:
    name = f"lab_{uuid.uuid4().hex[:10]}"
    postgres.create_database(name)  # made after the pooler started: the wildcard entry covers it
    try:
        conn = connect(pooler.url(name))
        try:
            assert conn.info.port == pooler.port != postgres.port
            assert scalar(conn, "SELECT current_database()") == name
        finally:
            conn.close()
    finally:
        postgres.drop_database(name)


# --------------------------------------------------------------------------- breaking things (own lab)


def test_terminate_backends_drops_idle_direct_connections_and_the_pools_server_connections(
    own_lab: NeonLab,
) -> None:
    direct, pooled = connect(own_lab.direct_url()), connect(own_lab.pooled_url())
    direct.autocommit = pooled.autocommit = True
    try:
        direct_pid = scalar(direct, "SELECT pg_backend_pid()")
        pooled_pid = scalar(pooled, "SELECT pg_backend_pid()")
        assert {direct_pid, pooled_pid} <= set(own_lab.terminate_backends())
        with pytest.raises(psycopg2.OperationalError):
            scalar(direct, "SELECT 1")
        # An idle pooled client keeps its pooler connection; its next transaction gets a new backend.
        assert scalar(pooled, "SELECT pg_backend_pid()") != pooled_pid
    finally:
        direct.close()
        pooled.close()


def test_suspend_drops_everything_and_resume_serves_the_same_ports(own_lab: NeonLab) -> None:
    ports = (own_lab.postgres.port, own_lab.pooler.port)
    with connect(own_lab.direct_url()) as setup:
        scalar(
            setup,
            "CREATE TABLE IF NOT EXISTS survives_suspend (id int); INSERT INTO survives_suspend VALUES (1); SELECT 1",
        )
    setup.close()
    direct, pooled = connect(own_lab.direct_url()), connect(own_lab.pooled_url())
    try:
        own_lab.suspend()
        assert not own_lab.pooler.running
        assert not own_lab.postgres.running
        for conn in (direct, pooled):
            with pytest.raises(psycopg2.OperationalError):
                scalar(conn, "SELECT 1")
        for port in ports:
            assert refuses_connections(port)
        own_lab.resume()
    finally:
        direct.close()
        pooled.close()
        own_lab.resume()  # leave the module's lab running whatever happened
    assert (own_lab.postgres.port, own_lab.pooler.port) == ports
    for url in (own_lab.direct_url(), own_lab.pooled_url()):
        conn = connect(url)
        try:
            assert scalar(conn, "SELECT count(*) FROM survives_suspend") == 1
        finally:
            conn.close()


def test_pooler_restart_drops_pooled_clients_and_listens_on_the_same_port(own_lab: NeonLab) -> None:
    port = own_lab.pooler.port
    before = connect(own_lab.pooled_url())
    try:
        scalar(before, "SELECT 1")
        before.commit()
        own_lab.pooler.restart()
        with pytest.raises(psycopg2.OperationalError):
            scalar(before, "SELECT 1")
    finally:
        before.close()
    assert own_lab.pooler.port == port
    after = connect(own_lab.pooled_url())
    try:
        assert scalar(after, "SELECT 1") == 1
    finally:
        after.close()


def test_running_pgbouncer_stops_it_even_when_the_body_fails(own_lab: NeonLab) -> None:
    with pytest.raises(RuntimeError, match="boom"), running_pgbouncer(own_lab.postgres) as extra:
        port = extra.port
        conn = connect(extra.url())
        try:
            assert scalar(conn, "SELECT 1") == 1
        finally:
            conn.close()
        raise RuntimeError("boom")
    assert not extra.running
    assert refuses_connections(port)


def test_pgbouncer_failing_to_start_raises_postgres_unavailable_with_its_log(
    own_lab: NeonLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = PgBouncerInstance._write_config

    def broken_config(self: PgBouncerInstance, port: int) -> None:
        original(self, port)
        with self.config_file.open("a") as ini:
            ini.write("no_such_setting = 1\n")

    monkeypatch.setattr(PgBouncerInstance, "_write_config", broken_config)
    with (
        pytest.raises(PostgresUnavailable, match=r"(?s)did not start.*no_such_setting"),
        running_pgbouncer(own_lab.postgres),
    ):
        pass


# --------------------------------------------------------------------------- the fault proxy


def test_fault_proxy_forwards_tls_connections(neon_lab: NeonLab) -> None:
    with FaultProxy(neon_lab.postgres.host, neon_lab.postgres.port) as proxy:
        conn = connect(via(proxy, neon_lab.direct_url()))
        try:
            assert conn.info.ssl_in_use
            assert scalar(conn, "SELECT 40 + 2") == 42
            assert proxy.connections() == 1
        finally:
            conn.close()
        wait_until(lambda: proxy.connections() == 0, "the proxy notices the client left")
        assert proxy.accepted() == 1


def test_frozen_replies_are_held_back_until_cut_drops_the_connection(neon_lab: NeonLab) -> None:
    with FaultProxy(neon_lab.postgres.host, neon_lab.postgres.port) as proxy:
        with socket.create_connection((proxy.host, proxy.port), timeout=5) as client:
            client.sendall(SSL_REQUEST)
            assert client.recv(1) == b"S"  # forwarded both ways
        with socket.create_connection((proxy.host, proxy.port), timeout=5) as client:
            proxy.freeze_replies()
            client.sendall(SSL_REQUEST)
            wait_until(lambda: proxy.held_bytes() == 1, "the server's answer reaches the proxy")
            client.setblocking(False)
            with pytest.raises(BlockingIOError):
                client.recv(1)  # ...and stays there
            assert proxy.cut() == 1
            assert proxy.connections() == 0
            client.setblocking(True)
            assert client.recv(1) == b""  # the client sees the connection drop
        proxy.heal()
        with socket.create_connection((proxy.host, proxy.port), timeout=5) as client:
            client.sendall(SSL_REQUEST)
            assert client.recv(1) == b"S"


def test_heal_delivers_replies_held_on_open_connections(neon_lab: NeonLab) -> None:
    with FaultProxy(neon_lab.postgres.host, neon_lab.postgres.port) as proxy:
        proxy.freeze_replies()
        with socket.create_connection((proxy.host, proxy.port), timeout=5) as client:
            client.sendall(SSL_REQUEST)
            wait_until(lambda: proxy.held_bytes() == 1, "the server's answer reaches the proxy")
            proxy.heal()
            assert client.recv(1) == b"S"


def test_cut_with_reset_looks_like_a_connection_reset(neon_lab: NeonLab) -> None:
    with (
        FaultProxy(neon_lab.postgres.host, neon_lab.postgres.port) as proxy,
        socket.create_connection((proxy.host, proxy.port), timeout=5) as client,
    ):
        wait_until(lambda: proxy.connections() == 1, "the proxy accepts")
        proxy.cut(reset=True)
        with pytest.raises(ConnectionResetError):
            client.recv(1)


@pytest.mark.parametrize("endpoint", ["pooled", "direct"])
def test_a_disconnect_during_commit_can_hide_a_commit_that_happened(neon_lab: NeonLab, endpoint: str) -> None:
    target = neon_lab.pooler if endpoint == "pooled" else neon_lab.postgres
    url = neon_lab.pooled_url() if endpoint == "pooled" else neon_lab.direct_url()
    table = f"commit_{endpoint}"
    key = uuid.uuid4().hex
    setup = connect(neon_lab.direct_url())
    setup.autocommit = True
    try:
        scalar(setup, f"CREATE TABLE IF NOT EXISTS {table} (key text PRIMARY KEY); SELECT 1")
        with FaultProxy(target.host, target.port) as proxy:
            conn = connect(via(proxy, url))
            try:
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {table} VALUES (%s)", (key,))
                proxy.freeze_replies()
                committing = InThread(conn.commit)
                wait_until(lambda: proxy.held_bytes() > 0, "the server answers the COMMIT")
                proxy.cut()
                with pytest.raises(psycopg2.OperationalError):
                    committing.result()
                assert conn.closed
            finally:
                conn.close()
        assert scalar(setup, f"SELECT count(*) FROM {table} WHERE key = '{key}'") == 1
    finally:
        setup.close()


def test_fault_proxy_close_stops_its_thread_and_drops_clients(neon_lab: NeonLab) -> None:
    proxy = FaultProxy(neon_lab.postgres.host, neon_lab.postgres.port)
    thread_name = f"FaultProxy:{proxy.port}"
    with socket.create_connection((proxy.host, proxy.port), timeout=5) as client:
        wait_until(lambda: proxy.connections() == 1, "the proxy accepts")
        proxy.close()
        proxy.close()  # idempotent
        assert client.recv(1) == b""
    assert thread_name not in {thread.name for thread in threading.enumerate()}
    assert refuses_connections(proxy.port)
    with pytest.raises(RuntimeError, match="closed"):
        proxy.connections()


def test_fault_proxy_closes_the_client_when_the_target_is_down() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]  # bound, never listening: connections are refused
        with (
            FaultProxy("127.0.0.1", dead_port) as proxy,
            socket.create_connection((proxy.host, proxy.port), timeout=5) as client,
        ):
            assert client.recv(1) == b""
            wait_until(lambda: proxy.connections() == 0, "the proxy drops the pair")
