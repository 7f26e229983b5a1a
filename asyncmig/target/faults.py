"""Connection faults: telling a lost connection from a refusal, and retrying a table.

PostgreSQL ends a session for reasons that say nothing about the migration: an
administrator's ``pg_terminate_backend``, a server restart, a reset TCP connection,
a momentary "too many clients". Such a fault is reported as :class:`ConnectionLost`
("lost connection to PostgreSQL ..."), never as a bug; a table's load that meets one
is retried from a clean table a bounded number of times with growing pauses.
Everything else PostgreSQL says (syntax, permission, disk full) is permanent and
fails at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import asyncpg
import structlog

from asyncmig.errors import ConnectionLost, MigrationError, TargetError, first_error
from asyncmig.target import history, marks
from asyncmig.target.connect import Target, connect, hang_up

log = structlog.get_logger(__name__)

T = TypeVar("T")

# SQLSTATEs of a session the server ended or could not give: 08 (connection
# exception), 57P01-57P03 (terminated, crashed, starting up), 53300 (too many clients)
LOST_STATES = ("57P01", "57P02", "57P03", "53300")
RETRY_PAUSES = (0.5, 2.0, 5.0)  # seconds before each retry: three retries in all


def is_connection_fault(exc: BaseException) -> bool:
    """Did the connection break (rather than the server refusing the work)?"""
    if isinstance(exc, ConnectionLost):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state.startswith("08") or state in LOST_STATES
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        # "another operation is in progress": an operation the broken connection never
        # finished (its COPY, cut off by the termination) still holds it
        return (
            "closed" in str(exc)
            or "another operation" in str(exc)
            or isinstance(exc, asyncpg.ConnectionDoesNotExistError)
        )
    return isinstance(exc, (ConnectionError, TimeoutError))


def is_transient(exc: BaseException) -> bool:
    """A fault worth retrying: the connection broke, but not because the server froze."""
    if isinstance(exc, BaseExceptionGroup):
        exc = first_error(exc)
    if isinstance(exc, TargetError):
        return exc.transient
    return is_connection_fault(exc) and not timed_out(exc)


TIMEOUT_MESSAGE = "lost connection to PostgreSQL: no answer"


def timed_out(exc: BaseException) -> bool:
    """Did the client stop waiting for a server that did not answer (--statement-timeout),
    here, behind ``exc``, or in any task of a task group (at any depth)? asyncpg closes
    the connection then, so what surfaces is often the next call's "connection is
    closed", with the timeout as its context, or another task's error beside it: the
    first error of a group is not always the one that waited (under load, seen as a
    run frozen for 35 s instead of 13: its cleanup asked the frozen server again)."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, BaseExceptionGroup):
            return any(timed_out(inner) for inner in seen.exceptions)
        if isinstance(seen, TimeoutError) or (
            isinstance(seen, ConnectionLost) and seen.message.startswith(TIMEOUT_MESSAGE)
        ):
            return True
        if isinstance(seen, TargetError) and seen.frozen:  # a connection that never came
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def lost_connection(exc: BaseException) -> ConnectionLost:
    """The one-line error for a connection fault."""
    if isinstance(exc, ConnectionLost):
        return exc
    if isinstance(exc, TimeoutError):
        frozen = ConnectionLost(
            f"{TIMEOUT_MESSAGE} within --statement-timeout",
            hint="is the server (or the network to it) frozen? check it, "
            "then run the same command again to resume",
        )
        frozen.transient = False  # waiting again would only wait again
        return frozen
    reason = (str(exc).splitlines() or [""])[0] or type(exc).__name__
    return ConnectionLost(
        f"lost connection to PostgreSQL ({reason})",
        hint="check the server, then run the same command again (a run resumes from the "
        "tables it committed)",
    )


def as_error(exc: BaseException) -> BaseException:
    """``exc`` (or a task group's first error), a connection fault made one line.

    A terminated session surfaces in many shapes besides asyncpg's own: a cleanup's
    call on the dead connection ("released back to the pool", "the underlying
    connection is closed"), another task's "cannot switch to state ...; another
    operation is in progress". Unless a task reported a MigrationError (which explains
    the failure), any error with a connection fault behind it (its cause or context),
    or beside it in the same task group, is that fault."""
    group = exc
    if isinstance(exc, BaseExceptionGroup):
        exc = first_error(exc)
    if not isinstance(exc, Exception):  # a signal, a cancellation: never a fault's shape
        return exc
    fault: BaseException | None
    if isinstance(exc, MigrationError):  # the failure that explains it (ConnectionLost too)
        fault = exc if is_connection_fault(exc) else None
    else:
        fault = _fault_behind(exc) or _fault_in(group)  # the server's own words first
    if fault is None:
        return exc
    if timed_out(fault) or timed_out(exc) or timed_out(group):
        return lost_connection(TimeoutError())  # not transient: waiting again would wait
    return lost_connection(fault)


def _fault_in(exc: BaseException) -> BaseException | None:
    """A connection fault among a task group's errors (at any depth), or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _fault_in(inner)
            if found is not None:
                return found
        return None
    return exc if is_connection_fault(exc) else None


def _fault_behind(exc: BaseException) -> BaseException | None:
    """A connection fault that ``exc`` was raised while handling (cause or context)."""
    seen: BaseException | None = exc.__cause__ or exc.__context__
    for _ in range(6):
        if seen is None:
            return None
        found = _fault_in(seen)
        if found is not None:
            return found
        seen = seen.__cause__ or seen.__context__
    return None


async def retrying(action: Callable[[int], Awaitable[T]], what: str) -> T:
    """``action(attempt)``, retried after a connection fault; other errors pass at once.

    ``attempt`` counts from 1, so the action knows to start from a clean table.
    """
    for attempt, pause in enumerate((*RETRY_PAUSES, None), start=1):
        try:
            return await action(attempt)
        except Exception as exc:
            if pause is None or not is_transient(exc):
                raise
            log.warning(
                "retrying_after_connection_fault",
                table=what,
                attempt=attempt,
                pause_s=pause,
                error=str(as_error(exc)),
            )
            await anyio.sleep(pause)
    raise AssertionError("unreachable: the last attempt returns or raises")


async def usable(conn: asyncpg.Connection) -> bool:
    """Can ``conn`` still run statements (after a failure or a cancellation)?

    A cancelled statement or transaction can leave the connection mid-transaction or
    closed: roll back what is open, then ask the server.
    """
    if conn.is_closed():
        return False
    try:
        if conn.is_in_transaction():
            await conn.execute("ROLLBACK")
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        log.info("connection_unusable", error=str(exc))
        return False
    return True


@asynccontextmanager
async def cleanup_connection(
    target: Target, conn: asyncpg.Connection
) -> AsyncIterator[asyncpg.Connection]:
    """``conn`` if it still works, else a new connection (closed afterwards).

    The cleanup after a failure (undoing, the history record) must not depend on
    the connection the failure may have broken.
    """
    if await usable(conn):
        yield conn
        return
    fresh = await connect(target)
    try:
        yield fresh
    finally:
        await hang_up(fresh)


def one_line(exc: BaseException) -> str:
    """An error's first line (the first error of a group), for the history."""
    if isinstance(exc, BaseExceptionGroup):
        exc = first_error(exc)
    return (str(exc).splitlines() or [type(exc).__name__])[0]


START_WAIT = 10  # seconds the history's new row may take, shielded from a signal


async def record_started(
    conn: asyncpg.Connection, command: str, source: Path, schema: str, options: dict[str, Any]
) -> int:
    """A run's (or sync's) history row, its id. Shielded: a signal cancelling the INSERT
    after it committed left the row ``running``, with no id yet to record the
    interruption with; the cancellation takes effect at the caller's next await, which
    records it. A server that does not answer within START_WAIT seconds: a lost
    connection, nothing started."""
    run_id = None
    with anyio.move_on_after(START_WAIT, shield=True):
        run_id = await history.start_run(conn, command, source, schema, options)
    if run_id is None:
        raise lost_connection(TimeoutError())
    return run_id


async def record_ended(
    target: Target,
    conn: asyncpg.Connection,
    run_id: int,
    error: BaseException,
    stopped_by: str | None,
    log_file: str | None = None,
) -> None:
    """Record a run (or sync) ``interrupted`` by a signal, else ``failed``: shielded,
    time-boxed, on a new connection when the failure broke ``conn``. If PostgreSQL
    cannot be reached, the row stays ``running`` and the next run (or ``status``) sees
    that its lock is not held. Source marks stored under it (a sync commits them
    before its own transaction) are deleted: no sync reads a failed run's marks."""
    with anyio.move_on_after(15, shield=True):
        try:
            async with cleanup_connection(target, conn) as usable:
                await history.finish_run(
                    usable,
                    run_id,
                    status="interrupted" if stopped_by else "failed",
                    error=stopped_by or one_line(error),
                    error_class=None if stopped_by else type(error).__name__,
                    log_file=log_file,
                )
                await marks.forget_run(usable, run_id)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TargetError) as fault:
            log.error("history_not_recorded", run=run_id, error=str(fault))
