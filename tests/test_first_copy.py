"""Before the first COPY, `run` reads no more than it must: tables are ordered by an
estimate that reads no table (the rowid bounds); a table planned from a sample keeps
the estimate and is counted exactly beside the load, where every check that compared
the load with the plan's count compares it with the exact one."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from asyncmig import run
from asyncmig.errors import VerificationError
from asyncmig.load.counts import SourceCounts
from asyncmig.load.pipeline import TableLoad
from asyncmig.load.tables import verify_count
from asyncmig.plan.builder import build_plan, introspect_file
from asyncmig.source import scan
from tests.fix_run import migrate


def build(path: Path) -> Path:
    """Rowids with holes (deleted rows) and negative ones, a WITHOUT ROWID table, a
    small table with holes, an empty table."""
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE holes(id INTEGER PRIMARY KEY, body TEXT);"
        "CREATE TABLE keyed(code TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID;"
        "CREATE TABLE few(id INTEGER PRIMARY KEY, x TEXT);"
        "CREATE TABLE empty(id INTEGER PRIMARY KEY, x TEXT);"
    )
    conn.executemany("INSERT INTO holes VALUES (?, ?)", ((i, f"b{i}") for i in range(-99, 5001)))
    # 1,019 rows left, rowids -95 to 5,000: the estimate (5,096) is no count
    conn.execute("DELETE FROM holes WHERE id % 5 <> 0 AND id > 0")
    conn.execute("DELETE FROM holes WHERE id < 0 AND id % 5 <> 0 OR id = 0")
    conn.executemany("INSERT INTO keyed VALUES (?, ?)", ((f"k{i:05d}", i) for i in range(1, 2501)))
    conn.executemany("INSERT INTO few VALUES (?, ?)", ((i * 7, f"x{i}") for i in range(1, 101)))
    conn.commit()
    conn.close()
    return path


EXACT = {"holes": 1_019, "keyed": 2_500, "few": 100, "empty": 0}


def test_the_estimate_reads_the_rowid_bounds_and_counts_without_rowid(tmp_path: Path) -> None:
    path = build(tmp_path / "a.db")
    catalog, _ = introspect_file(path)
    tables = {t.name: t for t in catalog.tables}
    conn = sqlite3.connect(path)
    try:
        assert {n: scan.count_rows(conn, t) for n, t in tables.items()} == EXACT
        assert scan.estimate_rows(conn, tables["holes"]) == 5_000 + 95 + 1  # at least the rows
        assert scan.estimate_rows(conn, tables["keyed"]) == 2_500  # counted
        assert scan.estimate_rows(conn, tables["few"]) == 694
        assert scan.estimate_rows(conn, tables["empty"]) == 0
    finally:
        conn.close()


def test_a_sampled_plan_keeps_the_estimate_and_says_so(tmp_path: Path) -> None:
    """`run`'s plan (sampled, proved by the load) does not count a table it samples:
    its row count is the estimate, marked as one; a table profiled whole (small by its
    estimate, or counted to be estimated) and every table of a plan made without a
    sample hold the exact count."""
    path = build(tmp_path / "a.db")
    sampled = build_plan(path, prove=True)
    assert {t.name: (t.row_count, t.rows_counted) for t in sampled.tables} == {
        "holes": (5_096, False),
        "keyed": (2_500, True),
        "few": (100, True),
        "empty": (0, True),
    }
    whole = build_plan(path, prove=False)
    assert {t.name: (t.row_count, t.rows_counted) for t in whole.tables} == {
        n: (rows, True) for n, rows in EXACT.items()
    }


async def test_the_load_checks_against_the_exact_count_taken_beside_it(
    tmp_path: Path, pg_dsn: str
) -> None:
    """The run's per-table check, its history and its recorded plan hold SQLite's exact
    count, not the estimate its plan was made with (which no load could match)."""
    source = build(tmp_path / "a.db")
    report = await migrate(source, pg_dsn)
    assert {t.table: t.rows for t in report.tables} == EXACT
    assert {t.name: (t.row_count, t.rows_counted) for t in report.plan.tables} == {
        n: (rows, True) for n, rows in EXACT.items()
    }
    conn = await asyncpg.connect(pg_dsn)
    try:
        recorded = await conn.fetch(
            "SELECT table_name, source_rows, loaded_rows FROM asyncmig.run_tables"
        )
        plan = await conn.fetchval("SELECT options -> 'plan' FROM asyncmig.runs")
    finally:
        await conn.close()
    assert {r["table_name"]: (r["source_rows"], r["loaded_rows"]) for r in recorded} == {
        n: (rows, rows) for n, rows in EXACT.items()
    }
    assert {t["name"]: t["row_count"] for t in json.loads(plan)["tables"]} == EXACT


async def test_the_exact_count_is_taken_once_and_a_wrong_load_still_fails(
    tmp_path: Path,
) -> None:
    """Counted on demand (or beside the load) once per table; a load whose rows do not
    add up to it fails the table's check, as a count made before the load did."""
    source = build(tmp_path / "a.db")
    holes = build_plan(source, prove=True).table("holes")
    counts = SourceCounts(source)
    assert await counts.exact(holes) == 1_019
    conn = sqlite3.connect(source)
    conn.execute("DELETE FROM holes WHERE id = 5")
    conn.commit()
    conn.close()
    assert await counts.exact(holes) == 1_019  # taken once: the run's own count
    assert await SourceCounts(source).exact(holes) == 1_018
    short = TableLoad("holes", 1_018, 1_018, 0.1, rows_committed=1_018)
    with pytest.raises(VerificationError, match="SQLite had 1019, read 1018"):
        verify_count(holes, short, await counts.exact(holes))
    whole = replace(short, rows_read=1_019, rows_copied=1_019, rows_committed=1_019)
    verify_count(holes, whole, 1_019)


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
