"""One tool call, one transaction, and what to do when the connection drops under it.

Neon suspends idle computes, poolers restart and backends get terminated. A call must then either give the
correct answer or fail clearly, never half-apply a change:

- a failure before COMMIT was sent rolled everything back on the server: the whole unit of work runs again
  on a fresh connection (reads and writes alike);
- a failure *during* COMMIT leaves the outcome unknown. Every write stores its call's random request key
  with the change it records (a unique column), so the retry first asks whether that key was committed:
  if so, the answer computed before COMMIT is returned; if not, the unit of work runs again;
- a database that is down or waking up is retried with exponential backoff for a bounded time, then the
  call fails with :class:`~budget_mcp.errors.DatabaseUnavailable`.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Generic, NoReturn, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from . import audit
from .config import Settings
from .db import SQLITE_BUSY_TIMEOUT, WRITE_LOCK, make_migration_engine, upgrade_schema
from .errors import DatabaseUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")

# SQLSTATE 57014: the statement ran past statement_timeout (or was cancelled); running it again would too.
_QUERY_CANCELED = "57014"
# Connection failures that waiting will not cure (libpq gives them no SQLSTATE, only text): fail at once.
_PERMANENT = re.compile(
    r"authentication failed|does not exist|no pg_hba\.conf entry|SSL (is )?required|SSL off|"
    r"server does not support SSL|certificate|unsupported startup parameter|could not translate host name|"
    r"invalid (connection option|sslmode|port)|channel binding|permission denied",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How long a call waits for an unavailable database, in seconds; backoff doubles up to ``max_delay``.
    Setting ``stopping`` (the server shuts down) ends every wait at once."""

    wait: float = 20.0
    first_delay: float = 0.05
    max_delay: float = 2.0
    stopping: threading.Event = field(default_factory=threading.Event, compare=False)


class CommitOutcomeUnknown(Exception):
    """The connection dropped while COMMIT was in flight: the change may or may not have been saved."""


@dataclass
class _Unsettled(Generic[T]):
    """A write whose COMMIT got no answer: its request key and the answer to give if it was saved."""

    request_key: str
    result: T


def is_transient(error: BaseException) -> bool:
    """Whether running the same transaction again may succeed: the connection was lost or could not be
    made, the server is shutting down or starting, or it chose this transaction as a deadlock victim."""
    if isinstance(error, CommitOutcomeUnknown):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, InterfaceError):  # e.g. "connection already closed"
        return True
    if isinstance(error, OperationalError):
        if getattr(error.orig, "pgcode", None) == _QUERY_CANCELED:
            return False
        return not _PERMANENT.search(str(error.orig))
    return False


def run_in_transaction(
    session_factory: sessionmaker[Session],
    unit_of_work: Callable[[Session], T],
    *,
    dry_run: bool = False,
    policy: RetryPolicy | None = None,
) -> T:
    """Run ``unit_of_work`` in one transaction and commit it (roll it back for a dry run), retrying it
    whole on a transient failure as the module docstring describes. Other errors propagate unchanged
    after the rollback; running out of time raises :class:`DatabaseUnavailable`."""
    policy = policy or RetryPolicy()
    unsettled: list[_Unsettled[T]] = []

    def attempt() -> T:
        if unsettled:
            found = _committed(session_factory, unsettled[0].request_key)
            if found:
                logger.warning("the lost COMMIT had succeeded; answering with its result")
                return unsettled.pop().result
            unsettled.clear()
            logger.warning("the lost COMMIT had not happened; running the call again")
        return _attempt(session_factory, unit_of_work, dry_run, unsettled)

    try:
        return _retrying(policy)(attempt)
    except SQLAlchemyError as error:
        if not is_transient(error) and not unsettled:
            raise
        _give_up(error, unsettled)
    except CommitOutcomeUnknown as error:
        _give_up(error, unsettled)


def retry_transient(operation: Callable[[], T], policy: RetryPolicy | None = None) -> T:
    """Run ``operation`` (say, a schema upgrade at start-up), retrying transient database failures with
    backoff for ``policy.wait`` seconds; then the last failure propagates."""
    return _retrying(policy or RetryPolicy())(operation)


class _Stopping(stop_base):
    """Stop retrying once the server shuts down."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._stopping.is_set()


class _AtOnceForADeadConnection(wait_base):
    """No wait before the first retry of a call whose pooled connection turned out dead (the server closed it
    while it was idle): the pool has already dropped it and every older one, and a new connection is the cure.
    Any other failure, and any later one, backs off as ``then`` says."""

    def __init__(self, then: wait_base) -> None:
        self._then = then

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome is not None else None
        if retry_state.attempt_number == 1 and isinstance(error, DBAPIError) and error.connection_invalidated:
            return 0.0
        return self._then(retry_state)


def _retrying(policy: RetryPolicy) -> Retrying:
    backoff = wait_exponential_jitter(multiplier=policy.first_delay, max=policy.max_delay, jitter=policy.first_delay)
    return Retrying(
        stop=stop_any(stop_after_delay(policy.wait), _Stopping(policy.stopping)),
        sleep=policy.stopping.wait,  # type: ignore[arg-type]  # returns early, with a bool, when stopping
        wait=_AtOnceForADeadConnection(backoff),
        retry=retry_if_exception(is_transient),
        before_sleep=_log_retry,
        reraise=True,
    )


def _give_up(error: Exception, unsettled: list[_Unsettled[T]]) -> NoReturn:
    if unsettled:
        raise DatabaseUnavailable(
            "the connection to the database dropped while the change was being saved, and the database "
            "has not come back to confirm it; call list_changes to see whether it was saved before repeating it"
        ) from error
    raise DatabaseUnavailable(
        "the database is unavailable right now (it may be starting up or waking from sleep); "
        "nothing was changed, try again in a minute"
    ) from error


def _attempt(
    session_factory: sessionmaker[Session],
    unit_of_work: Callable[[Session], T],
    dry_run: bool,
    unsettled: list[_Unsettled[T]],
) -> T:
    request_key = uuid.uuid4().hex
    with session_factory() as session, _turn(session.info.get(WRITE_LOCK)):
        session.info[audit.REQUEST_KEY] = request_key
        transaction = session.begin()
        try:
            result = unit_of_work(session)
            if dry_run:  # the same work as the real call, then undone: the preview cannot differ from it
                transaction.rollback()
                return result
            session.flush()  # so that a failure from here on can only be the COMMIT itself
        except BaseException:
            with suppress(SQLAlchemyError):  # the connection may be gone; the server rolled back anyway
                transaction.rollback()
            raise
        wrote = audit.REQUEST_KEY not in session.info  # a change was recorded under the key
        try:
            transaction.commit()
        except DBAPIError as error:
            if wrote and is_transient(error):
                unsettled.append(_Unsettled(request_key, result))
                raise CommitOutcomeUnknown(str(error.orig)) from error
            raise
        return result


@contextmanager
def _turn(lock: threading.Lock | None) -> Iterator[None]:
    """Hold the session factory's write lock, if it has one, until the transaction has ended. A writer that
    waits longer than SQLite would goes on without it and meets SQLite's own lock (and its verdict)."""
    if lock is None:
        yield
        return
    held = lock.acquire(timeout=SQLITE_BUSY_TIMEOUT)
    try:
        yield
    finally:
        if held:
            lock.release()


def _committed(session_factory: sessionmaker[Session], request_key: str) -> bool:
    with session_factory.begin() as session:
        return audit.request_committed(session, request_key)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    detail = getattr(error, "orig", None) or error
    logger.warning(
        "database call failed (%s), retry %d in %.2f s",
        str(detail).strip().splitlines()[0] if str(detail).strip() else type(error).__name__,
        state.attempt_number,
        state.upcoming_sleep,
    )


def migrate(settings: Settings, policy: RetryPolicy | None = None) -> None:
    """Upgrade the schema over the direct endpoint, waiting (bounded) for a database that is waking up."""
    engine = make_migration_engine(settings.migration_url)
    try:
        retry_transient(lambda: upgrade_schema(engine), policy or RetryPolicy(wait=settings.database_wait))
    finally:
        engine.dispose()
