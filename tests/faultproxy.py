"""A tiny fault-injecting TCP forwarder for tests (bytes only, so TLS passes straight through).

Usage::

    with FaultProxy(pg.host, pg.port) as proxy:
        url = pg.url().replace(f":{pg.port}/", f":{proxy.port}/")   # connect through the proxy
        ...
        proxy.freeze_replies()    # from now on the target's bytes are held back, never delivered
        ...                       # e.g. send COMMIT in a thread; wait until proxy.held_bytes() > 0
        proxy.cut()               # drop every current connection: the client sees a disconnect
        proxy.heal()              # normal forwarding again

One thread runs a ``selectors`` event loop that owns every socket (no thread per connection, no
busy loop: it sleeps in ``select`` until a socket or a control call wakes it).  Control calls run
*inside* that loop and return once done, so after ``cut()`` returns the connections are closed,
and after ``freeze_replies()`` returns no further reply byte reaches a client.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

__all__ = ["FaultProxy"]

_T = TypeVar("_T")
_CHUNK = 65536
_HIGH_WATER = 1 << 20  # bytes buffered for one direction before the proxy stops reading its source
_CONTROL_TIMEOUT = 10.0  # seconds a control call waits for the loop


class _Pair:
    """One client connection and its upstream connection to the target."""

    __slots__ = ("client", "client_eof", "connected", "held", "to_client", "to_upstream", "upstream", "upstream_eof")

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.connected = False
        self.to_upstream = bytearray()
        self.to_client = bytearray()
        self.held = bytearray()
        """Bytes from the target withheld while replies are frozen."""
        self.client_eof = False
        self.upstream_eof = False


class FaultProxy:
    """Forward TCP connections from ``host:port`` (127.0.0.1, a free port) to the target, with faults.

    ``freeze_replies()`` holds back everything the target sends (new connections included);
    ``cut()`` abruptly closes every current connection on both sides (held bytes are discarded);
    ``heal()`` forwards normally again (anything still held on an open connection is delivered).
    Starts listening at construction; use it as a context manager or call :meth:`close`.
    """

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._selector = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            self._listener.bind((host, 0))
            self._listener.listen(128)
            self._listener.setblocking(False)
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._selector.register(self._listener, selectors.EVENT_READ, None)
            self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        except BaseException:
            self._close_sockets()
            raise
        self.host: str = self._listener.getsockname()[0]
        self.port: int = self._listener.getsockname()[1]
        self._pairs: set[_Pair] = set()
        self._interest: dict[socket.socket, int] = {}
        self._frozen = False
        self._accepted = 0
        self._commands: deque[tuple[Callable[[], Any], _Result]] = deque()
        self._lock = threading.Lock()
        self._stopping = False
        self._crash: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"FaultProxy:{self.port}", daemon=True)
        self._thread.start()

    # -- context manager ----------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultProxy({self.host}:{self.port} -> {self.target[0]}:{self.target[1]})"

    # -- controls ------------------------------------------------------------------------

    def freeze_replies(self) -> None:
        """From now on, hold back every byte the target sends (on current and new connections)."""
        self._call(self._do_freeze)

    def cut(self, *, reset: bool = False) -> int:
        """Abruptly close every current client and upstream connection; return how many pairs.

        Held bytes are discarded.  Clients see EOF (``reset=True``: a TCP RST, "connection reset").
        Freezing, if on, stays on for later connections until :meth:`heal`.
        """
        return self._call(lambda: self._do_cut(reset))

    def heal(self) -> None:
        """Forward normally again; bytes still held on open connections are delivered in order."""
        self._call(self._do_heal)

    def connections(self) -> int:
        """How many client connections are currently open through the proxy."""
        return self._call(lambda: len(self._pairs))

    def accepted(self) -> int:
        """How many client connections the proxy has accepted in total."""
        return self._call(lambda: self._accepted)

    def held_bytes(self) -> int:
        """Bytes from the target currently held back (by :meth:`freeze_replies`)."""
        return self._call(lambda: sum(len(pair.held) for pair in self._pairs))

    def close(self) -> None:
        """Close every connection and the listener, and stop the loop thread.  Idempotent."""
        with self._lock:
            self._stopping = True
        self._wake()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=_CONTROL_TIMEOUT)
            if self._thread.is_alive():
                raise RuntimeError(f"{self!r}: loop thread did not stop")

    # -- loop ------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` in the loop thread and return its result."""
        result = _Result()
        with self._lock:
            if self._stopping or not self._thread.is_alive():
                raise RuntimeError(f"{self!r} is closed") from self._crash
            self._commands.append((fn, result))
        self._wake()
        if not result.done.wait(_CONTROL_TIMEOUT):
            raise RuntimeError(f"{self!r}: loop did not answer") from self._crash
        if result.error is not None:
            raise result.error
        return result.value  # type: ignore[no-any-return]

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: already woken (buffer full)
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        break
                for key, events in self._selector.select():
                    sock = key.fileobj
                    if sock is self._wake_r:
                        self._drain_wake()
                    elif sock is self._listener:
                        self._accept()
                    else:
                        pair, is_client = key.data
                        if pair in self._pairs:
                            self._service(pair, is_client, events)
                self._run_commands()
        except BaseException as exc:  # keep the failure for the next control call
            self._crash = exc
            raise
        finally:
            with self._lock:
                self._stopping = True
                pending = list(self._commands)
                self._commands.clear()
            for _, result in pending:
                result.fail(RuntimeError(f"{self!r} is closed"))
            for pair in list(self._pairs):
                self._close_pair(pair)
            self._close_sockets()

    def _close_sockets(self) -> None:
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _run_commands(self) -> None:
        while True:
            with self._lock:
                if not self._commands:
                    return
                fn, result = self._commands.popleft()
            try:
                result.succeed(fn())
            except Exception as exc:
                result.fail(exc)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ECONNABORTED):
                    return
                raise
            self._accepted += 1
            client.setblocking(False)
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            upstream.setblocking(False)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(client, upstream)
            self._pairs.add(pair)
            err = upstream.connect_ex(self.target)
            if err == 0:
                pair.connected = True
            elif err not in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                self._close_pair(pair)
                continue
            self._update(pair)

    def _service(self, pair: _Pair, is_client: bool, events: int) -> None:
        try:
            if is_client:
                if events & selectors.EVENT_WRITE:
                    self._flush(pair.client, pair.to_client)
                if events & selectors.EVENT_READ:
                    pair.client_eof = self._pull(pair.client, pair.to_upstream)
            else:
                if not pair.connected:
                    err = pair.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, "connect to target failed")
                    pair.connected = True
                elif events & selectors.EVENT_WRITE:
                    self._flush(pair.upstream, pair.to_upstream)
                if events & selectors.EVENT_READ:
                    sink = pair.held if self._frozen else pair.to_client
                    pair.upstream_eof = self._pull(pair.upstream, sink)
            # Push eagerly: saves a select round trip per message.
            if pair.connected and pair.to_upstream:
                self._flush(pair.upstream, pair.to_upstream)
            if pair.to_client:
                self._flush(pair.client, pair.to_client)
        except OSError:
            self._close_pair(pair)
            return
        if self._finished(pair):
            self._close_pair(pair)
        else:
            self._update(pair)

    @staticmethod
    def _pull(sock: socket.socket, sink: bytearray) -> bool:
        """Read what is available into ``sink``; True at EOF."""
        while len(sink) < _HIGH_WATER:
            try:
                data = sock.recv(_CHUNK)
            except (BlockingIOError, InterruptedError):
                return False
            if not data:
                return True
            sink += data
        return False

    @staticmethod
    def _flush(sock: socket.socket, buf: bytearray) -> None:
        while buf:
            try:
                sent = sock.send(buf)
            except (BlockingIOError, InterruptedError):
                return
            del buf[:sent]

    def _finished(self, pair: _Pair) -> bool:
        """Close a pair once one side has hung up and what it said was passed on.

        While replies are frozen the target hanging up is withheld from the client too.
        """
        if pair.client_eof and not pair.to_upstream:
            return True
        return pair.upstream_eof and not self._frozen and not pair.held and not pair.to_client

    def _update(self, pair: _Pair) -> None:
        """(Re-)register the pair's sockets for the events they now wait for."""
        client_events = 0
        if pair.connected and not pair.client_eof and len(pair.to_upstream) < _HIGH_WATER:
            client_events |= selectors.EVENT_READ
        if pair.to_client:
            client_events |= selectors.EVENT_WRITE
        upstream_events = 0
        if not pair.connected:
            upstream_events = selectors.EVENT_WRITE
        else:
            if not pair.upstream_eof and len(pair.to_client) + len(pair.held) < _HIGH_WATER:
                upstream_events |= selectors.EVENT_READ
            if pair.to_upstream:
                upstream_events |= selectors.EVENT_WRITE
        self._register(pair.client, client_events, (pair, True))
        self._register(pair.upstream, upstream_events, (pair, False))

    def _register(self, sock: socket.socket, events: int, data: tuple[_Pair, bool]) -> None:
        current = self._interest.get(sock, 0)
        if events == current:
            return
        if not current:
            self._selector.register(sock, events, data)
        elif not events:
            self._selector.unregister(sock)
        else:
            self._selector.modify(sock, events, data)
        if events:
            self._interest[sock] = events
        else:
            self._interest.pop(sock, None)

    def _close_pair(self, pair: _Pair, *, reset: bool = False) -> None:
        self._pairs.discard(pair)
        for sock in (pair.client, pair.upstream):
            if self._interest.pop(sock, 0):
                self._selector.unregister(sock)
            if reset:
                with contextlib.suppress(OSError):  # linger on, timeout 0: close() sends RST instead of FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

    # -- commands (run in the loop thread) -----------------------------------------------

    def _do_freeze(self) -> None:
        self._frozen = True

    def _do_cut(self, reset: bool) -> int:
        pairs = list(self._pairs)
        for pair in pairs:
            self._close_pair(pair, reset=reset)
        return len(pairs)

    def _do_heal(self) -> None:
        self._frozen = False
        for pair in list(self._pairs):
            pair.to_client += pair.held
            pair.held.clear()
            try:
                self._flush(pair.client, pair.to_client)
            except OSError:
                self._close_pair(pair)
                continue
            if self._finished(pair):
                self._close_pair(pair)
            else:
                self._update(pair)


class _Result:
    """A control call's outcome, handed from the loop thread to the caller."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def succeed(self, value: Any) -> None:
        self.value = value
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()
