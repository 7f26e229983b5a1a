"""The per-table state a run records for rollback: scanned by several connections in one
snapshot, it is exactly what one connection finds."""

from __future__ import annotations

import asyncpg

from asyncmig.target import tablestate


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
