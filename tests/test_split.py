"""A table larger than a worker's share loads in rowid ranges, in parallel worker
processes, and appears in the target only when every range has committed.

The split threshold is lowered for these tests (it is decided in the main process), so
small files exercise the same path as a 900k-row table.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from asyncmig.errors import DataError
from asyncmig.load import split
from asyncmig.plan.model import TablePlan
from asyncmig.plan.overrides import parse_overrides
from asyncmig.run import run_migration
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target

ROWS = 4000
BAD = (1500, 3500)  # positions of a value that is not an integer, one in each half


def build(path: Path, *, bad: bool = False) -> Path:
    """``big`` (4000 rows, rowids with a gap) and ``small`` (10 rows)."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE small(id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE big(id INTEGER PRIMARY KEY, n INTEGER, label TEXT);
    """)
    conn.executemany("INSERT INTO small VALUES (?, ?)", [(i, f"s{i}") for i in range(10)])
    ids = [i if i < 2000 else i + 10_000 for i in range(1, ROWS + 1)]  # a gap in rowids
    conn.executemany(
        "INSERT INTO big VALUES (?, ?, ?)",
        [(i, "oops" if bad and pos in BAD else i * 3, f"label {i}") for pos, i in enumerate(ids)],
    )
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def low_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "SPLIT_MIN_ROWS", 1000)


def settings(path: Path, dsn: str, tmp_path: Path, **extra: object) -> RunSettings:
    return RunSettings(
        path,
        Target(dsn, dsn, "test"),
        schema="parted",
        jobs=2,
        workers="process",
        rejects_dir=tmp_path / "rejects",
        **extra,  # type: ignore[arg-type]
    )


async def test_a_big_table_loads_in_ranges_and_every_value_arrives(
    tmp_path: Path, pg_dsn: str, low_threshold: None
) -> None:
    path = build(tmp_path / "s.db")
    with capture_logs() as logs:
        report = await run_migration(settings(path, pg_dsn, tmp_path))
    [event] = [e for e in logs if e["event"] == "table_split"]
    assert event["table"] == "big" and len(event["ranges"]) == 2
    assert {t.table: t.rows for t in report.tables} == {"big": ROWS, "small": 10}
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT id, n, label FROM parted.big ORDER BY id")
        source = sqlite3.connect(path)
        try:
            expected = source.execute("SELECT id, n, label FROM big ORDER BY id").fetchall()
        finally:
            source.close()
        assert [tuple(r) for r in rows] == expected
        # the staging schema is gone; the history has one row for the table
        assert not await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'asyncmig_load_%'"
        )
        recorded = await conn.fetch(
            "SELECT table_name, loaded_rows FROM asyncmig.run_tables WHERE table_name = 'big'"
        )
        assert [tuple(r) for r in recorded] == [("big", ROWS)]
        # the identity moved with the table: the next id follows the loaded ones
        assert (
            await conn.fetchval("INSERT INTO parted.big (n) VALUES (0) RETURNING id")
            == ROWS + 10_000 + 1
        )
    finally:
        await conn.close()


async def test_rejects_of_every_range_end_in_the_tables_one_file(
    tmp_path: Path, pg_dsn: str, low_threshold: None
) -> None:
    path = build(tmp_path / "s.db", bad=True)
    report = await run_migration(settings(path, pg_dsn, tmp_path))
    big = next(t for t in report.tables if t.table == "big")
    assert big.rows == ROWS - 2 and big.rejected == 2
    assert big.reject_file is not None
    keys = sorted(
        json.loads(line)["key"] for line in Path(big.reject_file).read_text().splitlines()
    )
    assert keys == [BAD[0] + 1, BAD[1] + 1 + 10_000]  # ids of those positions
    leftovers = [p.name for p in Path(big.reject_file).parent.iterdir()]
    assert leftovers == [Path(big.reject_file).name]
    assert Path(big.reject_file).stat().st_mode & 0o777 == 0o600  # private, whatever the umask


async def test_a_failing_range_leaves_nothing_behind(
    tmp_path: Path, pg_dsn: str, low_threshold: None
) -> None:
    """Policy `fail`: the second range stops the run; no table, no staging schema."""
    path = build(tmp_path / "s.db", bad=True)
    strict = parse_overrides({"on_error": "fail"}, "test")
    with pytest.raises(DataError):
        await run_migration(settings(path, pg_dsn, tmp_path, overrides=strict))
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'asyncmig_load_%'"
            )
            == 0
        )
        assert await conn.fetchval("SELECT to_regclass('parted.big')") is None
    finally:
        await conn.close()


def test_rowid_ranges_cover_the_table_without_overlap(tmp_path: Path) -> None:
    path = build(tmp_path / "s.db")
    table = TablePlan(name="big", source_name="big", columns=())
    ranges = split.rowid_ranges(path, table, 3)
    assert ranges[0][0] == 1 and ranges[-1][1] == ROWS + 10_000
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
