"""One run at a time per target schema: a PostgreSQL session-level advisory lock.

Two runs into the same schema would drop, create and load the same tables under
each other. The lock is taken with ``pg_try_advisory_lock`` on the run's own
connection and held for the whole run; PostgreSQL releases it when that session
ends, however it ends (even ``kill -9`` of the process, or a lost connection), so a
``running`` history row whose lock nobody holds belongs to a run that died.
"""

from __future__ import annotations

import zlib

import asyncpg

from asyncmig.errors import RunInProgress, TargetError
from asyncmig.target.connect import Target, connect, hang_up

# the two 32-bit halves of the lock's key: asyncmig's own class, then the schema
LOCK_CLASS = 0x61736D67  # "asmg"
HELD_SQL = (
    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND classid = $1::bigint::oid AND objsubid = 2"
)


def schema_key(schema: str) -> int:
    """The schema's half of the key (positive, so pg_locks shows it as is)."""
    return zlib.crc32(schema.encode()) & 0x7FFFFFFF


async def acquire(conn: asyncpg.Connection, schema: str) -> None:
    """Take the schema's lock for this session, or say at once which run holds it."""
    if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, schema_key(schema)):
        return
    raise RunInProgress(
        f"cannot start: {await holder(conn, schema)} is in progress into schema {schema}",
        hint="wait for it to end (asyncmig status shows it), or stop it; its lock goes "
        "when its session ends",
    )


async def holder(conn: asyncpg.Connection, schema: str) -> str:
    """The run holding the lock, as its history shows it, else its server process."""
    if await conn.fetchval("SELECT to_regclass('asyncmig.runs') IS NOT NULL"):
        row = await conn.fetchrow(
            "SELECT id, host, pid, started_at FROM asyncmig.runs WHERE target_schema = $1 "
            "AND status = 'running' ORDER BY id DESC LIMIT 1",
            schema,
        )
        if row is not None:
            return (
                f"run {row['id']} ({row['host'] or '?'}, pid {row['pid'] or '?'}, "
                f"started at {row['started_at']:%Y-%m-%d %H:%M:%S %Z})"
            )
    backend = await conn.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = "
        "$1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 2",
        LOCK_CLASS,
        schema_key(schema),
    )
    return f"another run (PostgreSQL backend pid {backend})"


async def held(conn: asyncpg.Connection) -> set[int]:
    """The schema keys whose lock some session holds now."""
    return {int(r[0]) for r in await conn.fetch(HELD_SQL, LOCK_CLASS)}


# sessions holding a lock on a relation of the schema (other than the run's own)
HOLDERS_SQL = """
SELECT DISTINCT a.pid, a.usename, a.application_name, a.state,
       extract(epoch FROM now() - a.xact_start)::int AS open_s
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE n.nspname = $1 AND l.granted AND l.pid <> ALL($2::int[])
ORDER BY a.pid LIMIT 3
"""


def lock_wait(exc: BaseException) -> asyncpg.LockNotAvailableError | None:
    """The lock timeout behind ``exc`` (itself, its cause or its context), if any."""
    seen = exc
    for _ in range(4):
        if isinstance(seen, asyncpg.LockNotAvailableError):
            return seen
        if seen.__cause__ is None and seen.__context__ is None:
            return None
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    return None


async def explain_lock_wait(
    target: Target, schema: str, exc: BaseException, own_pid: int
) -> TargetError | None:
    """For a statement that gave up waiting for a lock (--lock-timeout): an error
    naming the sessions that hold locks in the schema (pid, user, application, state,
    how long its transaction has been open), else None. Not their queries: the error
    reaches the log and the history, and an application's SQL holds its data.

    Asked on a new connection once the wait has ended, so it shows the holders still
    there (an application's open transaction typically is).
    """
    if lock_wait(exc) is None:
        return None
    conn = await connect(target)
    try:
        rows = await conn.fetch(HOLDERS_SQL, schema, [own_pid, conn.get_server_pid()])
    finally:
        await hang_up(conn)
    holders = "; ".join(
        f"pid {r['pid']} ({r['usename']}, {r['application_name'] or 'no application name'}, "
        f"{r['state']}"
        + (f", transaction open {r['open_s']} s" if r["open_s"] is not None else "")
        + ")"
        for r in rows
    )
    return TargetError(
        f"cannot change schema {schema}: a lock was not granted within --lock-timeout; "
        f"held by {holders or 'a session no longer visible'}",
        hint="end that session's transaction (or pg_terminate_backend(pid)), then run the "
        "same command again; nothing was changed",
    )
