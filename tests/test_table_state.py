"""The per-table state a run records for rollback: scanned by several connections in one
snapshot, it is exactly what one connection finds."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import asyncpg

from asyncmig.target import tablestate
from tests.fix_cli import Cli
from tests.fix_pg import fetch


async def test_helpers_find_the_same_states_in_the_same_snapshot(pg_dsn: str) -> None:
    conn, helper = await asyncpg.connect(pg_dsn), await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            "CREATE SCHEMA s; "
            "CREATE TABLE s.a (id bigint PRIMARY KEY, at timestamptz, doc jsonb); "
            "CREATE TABLE s.b (k text, n numeric); CREATE TABLE s.c (id int PRIMARY KEY); "
            "INSERT INTO s.a SELECT g, '2025-01-01'::timestamptz + g * interval '1 s', "
            "jsonb_build_object('g', g) FROM generate_series(1, 500) g; "
            "INSERT INTO s.b SELECT 'k' || g, g / 7.0 FROM generate_series(1, 300) g"
        )
        tables = ["b", "a", "c"]
        xid, alone = await tablestate.capture(conn, "s", tables)
        xid2, shared = await tablestate.capture(conn, "s", tables, [helper])
    finally:
        await conn.close()
        await helper.close()
    assert shared == alone and xid2 > xid
    assert [s.table for s in shared] == tables
    assert [(s.rows, s.max_key) for s in shared] == [(300, None), (500, 500), (0, None)]


def test_a_run_takes_its_states_after_the_orphans_and_before_the_cut_over(
    cli: Cli, tmp_path: Path, pg_dsn: str
) -> None:
    """The states a rollback compares against are scanned once the orphans are settled
    (here cleared: rows rewritten), beside the keys and the checks, and the cut-over
    waits for them: what the history holds is the tables as the run left them, and
    `rollback --check` finds nothing written since."""
    source = tmp_path / "app.db"
    conn = sqlite3.connect(source)
    conn.executescript(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE child (id INTEGER PRIMARY KEY, "
        "parent_id INTEGER REFERENCES parent(id), note TEXT);"
    )
    conn.executemany("INSERT INTO parent VALUES (?, ?)", [(i, f"p{i}") for i in range(1, 51)])
    conn.executemany(  # every fifth child's parent is missing
        "INSERT INTO child VALUES (?, ?, ?)",
        [(i, i % 50 + 1 if i % 5 else 1000 + i, f"n{i}") for i in range(1, 401)],
    )
    conn.commit()
    conn.close()
    ran = cli(
        "run", "--sqlite", str(source), "--pg", pg_dsn, "--orphans", "null",
        "--log-format", "json", "-v", log_dir=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    events = [json.loads(line)["event"] for line in ran.stderr.splitlines() if line[:1] == "{"]
    assert events.index("state_taken") < events.index("cut_over") < events.index("state_recorded")
    nulled = fetch(pg_dsn, "SELECT count(*) FROM child WHERE parent_id IS NULL")[0][0]
    assert nulled == 80
    recorded = {
        r[0]: (r[1], Decimal(r[2]), r[3], r[4])
        for r in fetch(
            pg_dsn,
            "SELECT table_name, final_rows, checksum, max_key, checksum_kind "
            "FROM asyncmig.run_tables",
        )
    }

    async def now() -> list[tablestate.TableState]:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return (await tablestate.capture(conn, "public", ["child", "parent"]))[1]
        finally:
            await conn.close()

    assert {s.table: (s.rows, s.checksum, s.max_key, s.kind) for s in asyncio.run(now())} == (
        recorded
    )
    check = cli("rollback", "--pg", pg_dsn, "--run", "1", "--check", log_dir=tmp_path)
    assert check.stdout.rstrip().endswith("safe to roll back: yes"), check.stdout
