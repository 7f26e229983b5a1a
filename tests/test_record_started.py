"""A run's history row is written whole, whatever arrives meanwhile (faults.record_started).

A signal cancelling the INSERT after it committed once left the row ``running`` with no
id to record the interruption with; a server that stops answering must not hold the
command for ever. Both against a real server: a cancellation arriving before the
INSERT, and an INSERT held by another session's lock past the wait.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import asyncpg
import pytest

from asyncmig.errors import ConnectionLost
from asyncmig.target import faults, history


async def test_a_cancellation_meanwhile_waits_for_the_row_then_takes_effect(
    pg_dsn: str, tmp_path: Path
) -> None:
    source = tmp_path / "app.db"
    source.write_bytes(b"")
    conn = await asyncpg.connect(pg_dsn)
    try:
        run_id = None
        after = False
        with anyio.CancelScope() as scope:
            scope.cancel()  # as a signal does: before the INSERT has begun
            run_id = await faults.record_started(conn, "run", source, "public", {"k": 1})
            await anyio.lowlevel.checkpoint()  # the next await: the cancellation is taken here
            after = True
        assert scope.cancelled_caught and not after
        assert run_id is not None
        row = await conn.fetchrow(
            f"SELECT status, command FROM {history.RUNS} WHERE id = $1", run_id
        )
        assert (row["status"], row["command"]) == ("running", "run")
    finally:
        await conn.close()


async def test_an_insert_held_past_the_wait_is_a_lost_connection(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "app.db"
    source.write_bytes(b"")
    conn = await asyncpg.connect(pg_dsn)
    holder = await asyncpg.connect(pg_dsn)
    try:
        await history.ensure(conn)
        await holder.execute("BEGIN")
        await holder.execute(f"LOCK TABLE {history.RUNS} IN ACCESS EXCLUSIVE MODE")
        monkeypatch.setattr(faults, "START_WAIT", 0.5)
        with pytest.raises(ConnectionLost, match="lost connection"):
            await faults.record_started(conn, "sync", source, "public", {})
        # the INSERT was cancelled while still held: the session answers again, and
        # once the lock is gone no row appears
        assert await conn.fetchval("SELECT 1") == 1
        await holder.execute("ROLLBACK")
        assert await holder.fetchval(f"SELECT count(*) FROM {history.RUNS}") == 0
    finally:
        await holder.close()
        await conn.close()
