"""`run` plans a large table from its declared types and a sample; the load proves it.

No whole-table scan happens before the first COPY: each row is read once, by the load,
whose SELECT carries the sample plan's conditions. A row the plan does not fit (text
that is not a UUID in a column the sample saw as all UUIDs, a NULL in a text primary
key) refutes it: the run drops what it made, profiles that table over every row, and
starts again, so the result is the one a full profile gives.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from asyncmig.errors import TargetError
from asyncmig.plan.builder import build_plan
from asyncmig.run import run_migration
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target

ROWS = 3000
ODD = 1700  # beyond the sample (the first and last 500 rows)


def build(path: Path, *, odd_uuid: bool = False, null_key: bool = False) -> Path:
    """``items``: a TEXT column of UUIDs and a text primary key; optionally one value
    in the middle that breaks what the sample shows."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items(code TEXT PRIMARY KEY, ref TEXT, n INTEGER)")
    rows: list[tuple[str | None, str, int]] = [
        (f"k{i}", str(uuid.UUID(int=i)), i) for i in range(ROWS)
    ]
    if odd_uuid:
        rows[ODD] = (f"k{ODD}", "not-a-uuid", ODD)
    if null_key:
        rows[ODD] = (None, str(uuid.UUID(int=ODD)), ODD)
    conn.executemany("INSERT INTO items VALUES (?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return path


def settings(path: Path, dsn: str) -> RunSettings:
    return RunSettings(path, Target(dsn, dsn, "test"), schema="proved", jobs=1)


async def column_types(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'proved' AND table_name = 'items'"
        )
        return {r[0]: r[1] for r in rows}
    finally:
        await conn.close()


def test_run_plans_large_tables_from_the_sample_and_plan_scans_them(tmp_path: Path) -> None:
    """With ``prove`` the large table carries the load's conditions and no scan result;
    without it (`plan`, `schema`) it is profiled over every row, as before."""
    path = build(tmp_path / "s.db", odd_uuid=True)
    proved = build_plan(path, prove=True).table("items")
    scanned = build_plan(path).table("items")
    assert proved.column("ref").target_type == "uuid"  # the sample's choice
    assert (
        "asyncmig_refuted" in proved.proof
        and "checked by the load" in proved.column("ref").evidence
    )
    assert scanned.column("ref").target_type == "text" and scanned.proof == ""
    rescanned = build_plan(path, prove=True, scan=frozenset({"items"})).table("items")
    assert rescanned.column("ref").target_type == "text" and rescanned.proof == ""


async def test_a_row_the_sample_missed_refutes_the_plan_and_the_run_starts_again(
    tmp_path: Path, pg_dsn: str
) -> None:
    """The non-UUID in the middle sends the table back: it ends as text, every value
    kept, and the refutation is logged."""
    path = build(tmp_path / "s.db", odd_uuid=True)
    with capture_logs() as logs:
        report = await run_migration(settings(path, pg_dsn))
    assert [e["column"] for e in logs if e["event"] == "plan_refuted"] == ["ref"]
    assert report.rows == ROWS and report.plan.table("items").column("ref").target_type == "text"
    assert (await column_types(pg_dsn))["ref"] == "text"
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert (
            await conn.fetchval("SELECT ref FROM proved.items WHERE code = $1", f"k{ODD}")
            == "not-a-uuid"
        )
        assert await conn.fetchval("SELECT ref FROM proved.items WHERE n = 5") == str(
            uuid.UUID(int=5)
        )
        # the run is recorded once, as succeeded
        runs = await conn.fetch("SELECT status FROM asyncmig.runs")
        assert [r[0] for r in runs] == ["succeeded"]
    finally:
        await conn.close()


async def test_a_null_in_a_text_primary_key_found_by_the_load(tmp_path: Path, pg_dsn: str) -> None:
    """The sample shows no NULL key; the load finds one, and the re-planned table gets
    a unique index instead of a primary key, as a full profile decides."""
    path = build(tmp_path / "s.db", null_key=True)
    report = await run_migration(settings(path, pg_dsn))
    table = report.plan.table("items")
    assert table.primary_key == () and report.rows == ROWS
    assert (await column_types(pg_dsn))["ref"] == "uuid"
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM proved.items WHERE code IS NULL") == 1
    finally:
        await conn.close()


async def test_a_clean_large_table_loads_once_with_the_sampled_types(
    tmp_path: Path, pg_dsn: str
) -> None:
    path = build(tmp_path / "s.db")
    with capture_logs() as logs:
        report = await run_migration(settings(path, pg_dsn))
    assert not [e for e in logs if e["event"] == "plan_refuted"]
    assert report.rows == ROWS
    assert await column_types(pg_dsn) == {"code": "text", "ref": "uuid", "n": "bigint"}


async def test_existing_tables_stop_the_run_before_anything_is_loaded(
    tmp_path: Path, pg_dsn: str
) -> None:
    """The cheap failure comes first: the table exists, the run says so and loads nothing."""
    path = build(tmp_path / "s.db")
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE SCHEMA proved; CREATE TABLE proved.items (x int)")
        with pytest.raises(TargetError, match="already exists"):
            await run_migration(settings(path, pg_dsn))
        assert await conn.fetchval("SELECT count(*) FROM proved.items") == 0
    finally:
        await conn.close()
