"""Before the first COPY, `run` reads no more than it must: tables are ordered by an
estimate that reads no table (the largest rowid), and each table is counted exactly by
its own planning task, in parallel with the other tables' samples."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from asyncmig import run
from asyncmig.plan.builder import build_plan, introspect_file
from asyncmig.source import scan
from tests.fix_run import migrate


def build(path: Path) -> Path:
    """Rowids with holes (deleted rows), a WITHOUT ROWID table, an empty table."""
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE holes(id INTEGER PRIMARY KEY, body TEXT);"
        "CREATE TABLE keyed(code TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID;"
        "CREATE TABLE empty(id INTEGER PRIMARY KEY, x TEXT);"
    )
    conn.executemany("INSERT INTO holes VALUES (?, ?)", ((i, f"b{i}") for i in range(1, 5001)))
    conn.execute("DELETE FROM holes WHERE id % 5 <> 0")  # 1,000 rows left, max rowid 5,000
    conn.executemany("INSERT INTO keyed VALUES (?, ?)", ((f"k{i:05d}", i) for i in range(1, 2501)))
    conn.commit()
    conn.close()
    return path


def test_the_estimate_reads_the_largest_rowid_and_counts_without_rowid(tmp_path: Path) -> None:
    path = build(tmp_path / "a.db")
    catalog, _ = introspect_file(path)
    tables = {t.name: t for t in catalog.tables}
    conn = sqlite3.connect(path)
    try:
        assert scan.estimate_rows(conn, tables["holes"]) == 5_000  # not a count: 1,000
        assert scan.count_rows(conn, tables["holes"]) == 1_000
        assert scan.estimate_rows(conn, tables["keyed"]) == 2_500  # counted
        assert scan.estimate_rows(conn, tables["empty"]) == 0
    finally:
        conn.close()


def test_a_sampled_plan_holds_exact_counts(tmp_path: Path) -> None:
    """`run`'s plan (sampled, proved by the load) counts each table itself: the load's
    row-count check compares against these, never against the estimate."""
    path = build(tmp_path / "a.db")
    for prove in (True, False):
        plan = build_plan(path, prove=prove)
        counts = {t.name: t.row_count for t in plan.tables}
        assert counts == {"holes": 1_000, "keyed": 2_500, "empty": 0}, prove


def large_source(path: Path, rows: int) -> Path:
    """A source above run.HASH_AT_ONCE_BYTES (hashed once the load's first batch is in):
    ``rows`` rows of one table, the rest of the file free pages of a dropped one."""
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE filler(b BLOB); CREATE TABLE kept(id INTEGER PRIMARY KEY, body TEXT);"
    )
    conn.executemany("INSERT INTO filler VALUES (zeroblob(?))", [(1 << 20,)] * 20)
    conn.executemany("INSERT INTO kept VALUES (?, ?)", ((i, f"k{i}") for i in range(1, rows + 1)))
    conn.execute("DROP TABLE filler")  # no VACUUM: the file keeps its size
    conn.commit()
    conn.close()
    assert path.stat().st_size >= run.HASH_AT_ONCE_BYTES
    return path


@pytest.mark.parametrize("rows", [3_000, 0])
async def test_a_large_sources_digest_is_recorded_after_its_first_batch(
    tmp_path: Path, pg_dsn: str, rows: int
) -> None:
    """The digest of a large source waits for the load's first batch, and is still
    taken when no batch ever comes (every table empty)."""
    source = large_source(tmp_path / "large.db", rows)
    report = await migrate(source, pg_dsn)
    assert report.rows == rows
    conn = await asyncpg.connect(pg_dsn)
    try:
        found = await conn.fetch("SELECT source_sha256, status FROM asyncmig.runs")
    finally:
        await conn.close()
    assert [tuple(r) for r in found] == [
        (hashlib.sha256(source.read_bytes()).hexdigest(), "succeeded")
    ]
