"""Failure paths, for real: a run cancelled mid-table, a source that breaks mid-stream, a
refused COPY on a pooled connection, a worker process killed mid-table.

Each fault is injected at a known moment, when the big table's first batch is in
(the progress board says so), so the tests do not depend on timing. After each, the
target must be as it was before the run, and nothing may be left running or connected.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import anyio
import asyncpg
import pytest

from asyncmig.errors import MigrationError, SourceError, TargetError, first_error
from asyncmig.load import progress
from asyncmig.load.pipeline import PipelineSettings, load_table
from asyncmig.load.split import SPLIT_MIN_ROWS
from asyncmig.run import make_plan, run_migration
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target, connect, create_pool, scrub

BIG = 60_000


def build(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE big(id INTEGER PRIMARY KEY, body TEXT, n INTEGER);"
        "CREATE TABLE small(id INTEGER PRIMARY KEY, name TEXT);"
    )
    conn.executemany(
        "INSERT INTO big VALUES (?, ?, ?)",
        ((i, f"row {i} " + "x" * 200, i) for i in range(1, BIG + 1)),
    )
    conn.executemany("INSERT INTO small VALUES (?, ?)", [(i, f"s{i}") for i in range(1, 11)])
    conn.commit()
    conn.close()
    return path


class OnFirstBatch(progress.Reporter):
    """Calls ``fault`` once, when the big table's first batch is in PostgreSQL's hands."""

    def __init__(self, fault: Callable[[], None]):
        super().__init__()
        self.fault = fault
        self.fired = False

    def show(self, counts: dict[str, tuple[int, int]]) -> None:
        rows, _ = counts.get("big", (0, 0))
        if 0 < rows < BIG and not self.fired:
            self.fired = True
            self.fault()


async def run_with(reporter: OnFirstBatch, settings: RunSettings) -> None:
    """Run with ``reporter`` reading the board every 5 ms: a quiet machine loads the big
    table in well under a second, and the fault must land while it is still loading."""
    progress.install(reporter)
    tick = progress.TICK
    progress.TICK = 0.005
    try:
        await run_migration(settings)
    finally:
        progress.TICK = tick
        progress.install(progress.Reporter())


async def assert_left_as_before(dsn: str) -> None:
    """No table of the run, no run still 'running', no session of asyncmig's left."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert [r[0] for r in tables] == []
        if await conn.fetchval("SELECT to_regclass('asyncmig.runs') IS NOT NULL"):
            statuses = [r[0] for r in await conn.fetch("SELECT status FROM asyncmig.runs")]
            assert "running" not in statuses and "succeeded" not in statuses, statuses
        for _ in range(100):  # backends end a moment after their clients close
            left = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND application_name = 'asyncmig'"
            )
            if not left:
                break
            await anyio.sleep(0.1)
        assert not left, f"{left} session(s) of asyncmig still connected"
    finally:
        await conn.close()


def settings_for(source: Path, dsn: str, **kwargs: object) -> RunSettings:
    pipeline = PipelineSettings(batch_size=200)  # many batches: many moments to land on
    return RunSettings(source, Target(dsn, scrub(dsn), "test"), pipeline=pipeline, **kwargs)  # type: ignore[arg-type]


async def test_cancel_mid_table_leaves_nothing(tmp_path: Path, pg_dsn: str) -> None:
    source = build(tmp_path / "a.db")
    with anyio.CancelScope() as scope:
        reporter = OnFirstBatch(scope.cancel)
        await run_with(reporter, settings_for(source, pg_dsn, workers="inline"))
    assert scope.cancelled_caught
    assert reporter.fired
    await assert_left_as_before(pg_dsn)


async def test_source_breaking_mid_stream(tmp_path: Path, pg_dsn: str) -> None:
    """The file is damaged while the big table is read: one SourceError, nothing kept."""
    source = build(tmp_path / "a.db")

    def damage() -> None:
        size = source.stat().st_size
        with source.open("r+b") as stream:  # the test writes the file, asyncmig never does
            stream.seek(int(size * 0.6) // 4096 * 4096)
            stream.write(b"\xff" * 4096 * 8)

    with pytest.raises(SourceError) as caught:
        await run_with(OnFirstBatch(damage), settings_for(source, pg_dsn, workers="inline"))
    assert caught.value.exit_code == 3
    assert (
        "malformed" in str(caught.value)
        or "corrupt" in str(caught.value)
        or "changed" in str(caught.value)
    )
    await assert_left_as_before(pg_dsn)


async def test_refused_copy_leaves_the_pooled_connection_usable(
    tmp_path: Path, pg_dsn: str
) -> None:
    """PostgreSQL refuses a row mid-COPY (a CHECK the table has): the connection recovers."""
    source = build(tmp_path / "a.db")
    settings = settings_for(source, pg_dsn)
    plan = await make_plan(settings)
    big = next(t for t in plan.tables if t.name == "big")
    fail_fast = big.__class__(
        **{
            **big.__dict__,
            "columns": tuple(
                c.__class__(**{**c.__dict__, "on_error": "fail"}) for c in big.columns
            ),
        }
    )
    target = Target(pg_dsn, scrub(pg_dsn), "test")
    admin = await connect(target)
    await admin.execute("CREATE TABLE big (id bigint, body text, n bigint CHECK (n < 30000))")
    pool = await create_pool(target, size=1)
    try:
        async with pool.acquire() as conn:
            with pytest.raises(BaseExceptionGroup) as group:
                await load_table(source, "public", fail_fast, conn, settings.pipeline)
            refused = first_error(group.value)
            assert isinstance(refused, TargetError), refused
            assert "violates check constraint" in refused.message
            assert await conn.fetchval("SELECT 41 + 1") == 42  # the same connection
            assert not conn.is_in_transaction()
        async with pool.acquire() as again:
            assert await again.fetchval("SELECT count(*) FROM big") == 0  # rolled back
    finally:
        await pool.close()
        await admin.close()


def children() -> list[int]:
    """This process's child processes (the worker pool's), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == os.getpid():
            found.append(int(entry))
    return found


async def test_worker_killed_mid_table(tmp_path: Path, pg_dsn: str) -> None:
    """SIGKILL to the worker loading the big table: a one-line error, nothing left."""
    source = build(tmp_path / "a.db")
    killed: list[int] = []

    def kill_workers() -> None:
        for pid in children():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    with pytest.raises(MigrationError) as caught:
        await run_with(OnFirstBatch(kill_workers), settings_for(source, pg_dsn, workers="process"))
    assert killed
    assert "worker process" in caught.value.message and "\n" not in caught.value.message
    await assert_left_as_before(pg_dsn)


class OnSplitBatch(progress.Reporter):
    """Calls ``fault`` once, when the split table has rows in but not all of them."""

    def __init__(self, fault: Callable[[], None], table: str, rows: int):
        super().__init__()
        self.fault, self.table, self.rows = fault, table, rows
        self.fired = False

    def show(self, counts: dict[str, tuple[int, int]]) -> None:
        done, _ = counts.get(self.table, (0, 0))
        if 0 < done < self.rows and not self.fired:
            self.fired = True
            self.fault()


async def test_worker_killed_mid_split_table(tmp_path: Path, pg_dsn: str) -> None:
    """SIGKILL to the workers loading a table split into rowid ranges: the same one-line
    error naming the table, nothing left."""
    rows = SPLIT_MIN_ROWS + 10_000
    source = tmp_path / "split.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE wide(id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany(
        "INSERT INTO wide VALUES (?, ?)", ((i, f"row {i} " + "y" * 40) for i in range(1, rows + 1))
    )
    conn.commit()
    conn.close()
    killed: list[int] = []

    def kill_workers() -> None:
        for pid in children():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    reporter = OnSplitBatch(kill_workers, "wide", rows)
    progress.install(reporter)
    tick = progress.TICK
    progress.TICK = 0.005
    try:
        with pytest.raises(MigrationError) as caught:
            await run_migration(settings_for(source, pg_dsn, workers="process", jobs=2))
    finally:
        progress.TICK = tick
        progress.install(progress.Reporter())
    assert reporter.fired and killed
    assert "worker process loading wide" in caught.value.message
    assert "\n" not in caught.value.message
    await assert_left_as_before(pg_dsn)


async def test_a_refused_statement_is_one_line_with_the_servers_hint(pg_dsn: str) -> None:
    """PostgreSQL's error text carries its HINT (and DETAIL) on lines of their own ("No
    space left on device" comes with "HINT: Check free disk space."): the message stays
    one line and the server's hint becomes the error's hint."""
    from asyncmig.target.statements import execute_one, refused

    conn = await asyncpg.connect(pg_dsn)
    try:
        statement = "SELECT no_such_function(1)"
        with pytest.raises(asyncpg.PostgresError) as caught:
            await execute_one(conn, statement)
    finally:
        await conn.close()
    assert "\n" in str(caught.value)  # what asyncpg gives
    error = refused(statement, caught.value)
    assert "\n" not in error.message
    assert error.message.startswith("PostgreSQL refused: SELECT no_such_function(1): function ")
    assert error.hint is not None and "explicit type casts" in error.hint
