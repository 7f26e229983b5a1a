"""``check --deep``: a fresh copy's checksums match; one changed value fails its table.

The renderings are also compared with the server itself (floats, numerics, jsonb,
inet, timestamps): each side of a checksum must spell every value identically, and
only PostgreSQL can say what PostgreSQL's side is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import random
import sqlite3
import struct
from dataclasses import replace
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncmig.check.deep import (
    CHECKSUM,
    deep_check,
    jsonb_text,
    numeric_text,
    rendering,
    source_work,
)
from asyncmig.plan.model import ColumnPlan, TablePlan
from tests.fix_run import Migrated, failures, migrated_copy

# --- a fresh copy ---------------------------------------------------------------------


async def test_every_table_of_a_fresh_copy_matches(migrated: Migrated) -> None:
    results = await migrated.deep_check(explain=True)
    assert failures(results) == []
    assert [r.table for r in results] == [t.name for t in migrated.plan.tables]
    assert {(r.check, r.subject) for r in results} == {(CHECKSUM, "")}
    for result in results:
        assert len(result.expected) == 16
        assert result.found == result.expected
        int(result.expected, 16)


# --- one value changed behind the tool's back -----------------------------------------

DAMAGE = [
    # (statement, table, what explain must say)
    ("UPDATE \"values\" SET body = body || '!' WHERE id = 3", "values", "id=3: body differs"),
    ('UPDATE "values" SET ratio = 1700000003.2 WHERE id = 1', "values", "id=1: ratio differs"),
    ('UPDATE "values" SET ratio = 1e-323 WHERE id = 4', "values", "id=4: ratio differs"),
    (
        "UPDATE \"values\" SET ratio = '-0' WHERE id = 5",
        "values",
        "id=5: ratio differs",
    ),  # 0.0 -> -0.0
    (
        'UPDATE "values" SET doc = doc || \'{"added": 1}\' WHERE id = 1',
        "values",
        "id=1: doc differs",
    ),
    (
        (
            'UPDATE "values" SET doc = \'{"a": [1, 2.5, 12345678901234567890], "b": 1}\' '
            "WHERE id = 1"
        ),
        "values",
        "id=1: doc differs",
    ),  # 2.50 -> 2.5
    (
        "UPDATE \"user\" SET created_at = created_at + interval '1 microsecond' WHERE id = 2",
        "user",
        "id=2: created_at differs",
    ),
    ('UPDATE "user" SET is_active = NOT is_active WHERE id = 5', "user", "id=5: is_active differs"),
    (
        "UPDATE \"values\" SET uid = '0f8fad5b-d9cb-469f-a165-70867728950f' WHERE id = 1",
        "values",
        "id=1: uid differs",
    ),
    ('UPDATE "values" SET price = 12.51 WHERE id = 1', "values", "id=1: price differs"),
    ("UPDATE \"values\" SET payload = '\\x0001fe' WHERE id = 1", "values", "id=1: payload differs"),
    ("UPDATE \"values\" SET ip = '::ffff:1.2.3.5' WHERE id = 4", "values", "id=4: ip differs"),
    (
        'UPDATE "values" SET epoch_ms = epoch_ms + 1 WHERE id = 2',
        "values",
        "id=2: epoch_ms differs",
    ),
    ('UPDATE "values" SET label = NULL WHERE id = 2', "values", "id=2: label differs"),
    # what asyncpg once made of date.min: a value that prints, but is not the source's
    ("UPDATE \"values\" SET born = '-infinity' WHERE id = 4", "values", "id=4: born differs"),
    ('UPDATE "values" SET big = 2, flag = true WHERE id = 5', "values", "id=5: big, flag differ"),
    (
        'UPDATE "group" SET "Name ""quoted""" = \'root "2"\' WHERE "group id" = 1',
        "group",
        'group id=1: Name "quoted" differs',
    ),
    (
        "UPDATE membership SET role = 'admin' WHERE user_id = 2 AND group_id = 2",
        "membership",
        "user_id=2, group_id=2: role differs",
    ),
]


@pytest.mark.parametrize(("statement", "table", "explained"), DAMAGE, ids=[d[2] for d in DAMAGE])
async def test_one_changed_value_fails_exactly_its_table(
    migrated: Migrated, statement: str, table: str, explained: str
) -> None:
    await migrated.conn.execute(statement)
    failed = failures(await migrated.deep_check())
    assert [r.table for r in failed] == [table]
    assert failed[0].found != failed[0].expected
    explained_results = failures(await migrated.deep_check(explain=True))
    assert [r.table for r in explained_results] == [table]
    assert explained_results[0].found.endswith(f"first differing key {explained}")


async def test_worker_processes_catch_one_changed_value_in_postgresql_and_in_sqlite(
    migrated: Migrated,
) -> None:
    """The source side rendered in worker processes (as for large sources, SQLite
    computing the canonical text) passes a fresh copy and catches one value changed on
    either side behind the tool's back."""
    deep = partial(deep_check, migrated.plan, migrated.conn, migrated.source, processes=True)
    assert failures(await deep()) == []
    await migrated.conn.execute("UPDATE \"values\" SET body = body || '!' WHERE id = 3")
    assert [r.table for r in failures(await deep())] == ["values"]
    await migrated.conn.execute('UPDATE "values" SET body = left(body, -1) WHERE id = 3')
    source = sqlite3.connect(migrated.source)
    source.execute("UPDATE \"user\" SET created_at = '2025-01-02 11:30:00.000001' WHERE id = 2")
    source.commit()
    source.close()
    assert [r.table for r in failures(await deep())] == ["user"]


async def test_a_deleted_row_fails_its_table(migrated: Migrated) -> None:
    await migrated.conn.execute("DELETE FROM egg WHERE id = 2")
    failed = failures(await migrated.deep_check(explain=True))
    assert [r.table for r in failed] == ["egg"]
    assert "(1 row, 2 in SQLite)" in failed[0].found
    assert failed[0].found.endswith("first differing key id=2: row missing in PostgreSQL")


async def test_an_added_row_fails_its_table(migrated: Migrated) -> None:
    await migrated.conn.execute("INSERT INTO empty_auto (id, note) VALUES (7, 'x')")
    failed = failures(await migrated.deep_check(explain=True))
    assert [r.table for r in failed] == ["empty_auto"]
    assert failed[0].found.endswith("first differing key id=7: row not in SQLite")


async def test_values_swapped_between_rows_fail(migrated: Migrated) -> None:
    """The sums are order-independent, but every row's text holds its key."""
    await migrated.conn.execute(
        'UPDATE "values" v SET body = o.body FROM "values" o WHERE (v.id, o.id) IN ((1, 2), (2, 1))'
    )
    assert [r.table for r in failures(await migrated.deep_check())] == ["values"]


async def test_rows_rejected_by_the_load_can_be_skipped(migrated: Migrated) -> None:
    await migrated.conn.execute('DELETE FROM "values" WHERE id = 4')
    await migrated.conn.execute("DELETE FROM membership WHERE user_id = 2 AND group_id = 1")
    assert [r.table for r in failures(await migrated.deep_check())] == ["values", "membership"]
    results = await migrated.deep_check(skip_rows={"values": {4}, "membership": {(2, 1)}})
    assert failures(results) == []


async def test_a_dropped_table_is_a_failure_not_an_exception(migrated: Migrated) -> None:
    await migrated.conn.execute("DROP TABLE egg CASCADE")
    failed = failures(await migrated.deep_check(explain=True))
    assert [(r.table, r.found) for r in failed] == [("egg", "missing")]


async def test_a_type_without_a_rendering_fails_instead_of_passing(migrated: Migrated) -> None:
    table = migrated.plan.table("egg")
    odd = replace(
        table, columns=(table.columns[0], replace(table.columns[1], target_type="int4range"))
    )
    plan = replace(migrated.plan, tables=(odd,))
    [result] = await deep_check(plan, migrated.conn, migrated.source)
    assert not result.ok
    assert result.found == "cannot checksum column chicken_id (int4range)"


# --- sampling ---------------------------------------------------------------------------


async def test_sampled_key_ranges(migrated: Migrated) -> None:
    results = {r.table: r for r in await migrated.deep_check(sample_ranges=2)}
    assert failures(list(results.values())) == []
    # ids 1..5, two ranges one key wide: [1, 1] and [3, 3]
    assert results["values"].subject == "sampled 2 key ranges"
    assert results["membership"].subject == ""  # a composite key: the full check
    assert results["empty_auto"].subject == ""  # no keys at all
    await migrated.conn.execute("UPDATE \"values\" SET body = 'x' WHERE id = 2")
    assert failures(await migrated.deep_check(sample_ranges=2)) == []  # outside the sample
    assert [r.table for r in failures(await migrated.deep_check())] == ["values"]
    await migrated.conn.execute("UPDATE \"values\" SET body = 'x' WHERE id = 3")
    failed = failures(await migrated.deep_check(sample_ranges=2, explain=True))
    assert [(r.table, r.subject) for r in failed] == [("values", "sampled 2 key ranges")]
    assert failed[0].found.endswith("first differing key id=3: body differs")


# --- explain on a table larger than one bucket --------------------------------------------


async def test_explain_descends_to_the_changed_row(tmp_path: Path, pg_dsn: str) -> None:
    source = tmp_path / "many.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, score REAL)")
    conn.executemany(
        "INSERT INTO item VALUES (?, ?, ?)", [(i, f"item {i}", i / 7) for i in range(1, 3001)]
    )
    conn.execute("CREATE TABLE tag (label TEXT, weight INTEGER)")  # no primary key
    conn.executemany("INSERT INTO tag VALUES (?, ?)", [("a", 1), ("a", 1), ("b", 2)])
    conn.commit()
    conn.close()
    copy = await migrated_copy(source, pg_dsn)
    try:
        assert failures(await copy.deep_check()) == []
        await copy.conn.execute("UPDATE item SET score = score + 1e-12 WHERE id = 2345")
        await copy.conn.execute("UPDATE tag SET weight = 3 WHERE label = 'b'")
        failed = {r.table: r for r in failures(await copy.deep_check(explain=True))}
        assert set(failed) == {"item", "tag"}
        assert failed["item"].found.endswith("first differing key id=2345: score differs")
        assert (
            "first differing key label='b', weight=2: row missing in PostgreSQL"
            in failed["tag"].found
        )
        await copy.conn.execute(
            "DELETE FROM tag WHERE ctid IN (SELECT ctid FROM tag WHERE label = 'a' LIMIT 1)"
        )
        await copy.conn.execute("UPDATE tag SET weight = 2 WHERE label = 'b'")
        await copy.conn.execute("UPDATE item SET score = score - 1e-12 WHERE id = 2345")
        [tag] = failures(await copy.deep_check(explain=True))  # a duplicate row lost: the count
        assert tag.found.endswith(
            "first differing key label='a', weight=1: row missing in PostgreSQL"
        )
    finally:
        await copy.conn.close()


# --- the renderings, against the server ---------------------------------------------------


def column(target_type: str) -> ColumnPlan:
    return ColumnPlan("c", "c", "", target_type, "none")


def render(target_type: str, value: Any) -> str:
    found = rendering(column(target_type))
    assert found is not None
    return found.python(value)


async def server_renders(dsn: str, target_type: str, values: list[Any]) -> list[str]:
    """What the server's side of the checksum makes of each value, sent as the load sends it."""
    found = rendering(column(target_type))
    assert found is not None
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE TEMP TABLE t (n int, c {target_type})")
        await conn.executemany("INSERT INTO t VALUES ($1, $2)", list(enumerate(values)))
        rows = await conn.fetch(f"SELECT {found.sql.format(c='c')} FROM t ORDER BY n")
    finally:
        await conn.close()
    return [r[0] for r in rows]


FLOATS = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    1e16,
    1e15,
    1e-5,
    0.1,
    1.7976931348623157e308,
    float("inf"),
    float("-inf"),
    1700000003.1,
    1700000003.2,
    2.2250738585072014e-308,
    123456789012345678.0,
    -1.5,
]


async def test_float_renderings_match_the_server(pg_dsn: str) -> None:
    rng = random.Random(20261125)
    samples = [struct.unpack(">d", rng.randbytes(8))[0] for _ in range(2000)]
    values = [*FLOATS, *(v for v in samples if not math.isnan(v))]  # SQLite has no NaN
    assert await server_renders(pg_dsn, "double precision", values) == [
        render("double precision", v) for v in values
    ]
    singles = [*FLOATS[:3], 0.1, 3.4e38, 1e-45]
    assert await server_renders(pg_dsn, "real", singles) == [render("real", v) for v in singles]


NUMERICS: list[Decimal | int] = [
    Decimal("12.5"),
    Decimal("12.50"),
    Decimal("0.01"),
    Decimal("1E+3"),
    Decimal("-0"),
    Decimal("-0.00"),
    Decimal("99999.99"),
    Decimal("1.5E-7"),
    Decimal("1e-20"),
    Decimal("123456789012345678901234567890.123456789"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
    0,
    42,
    -9223372036854775808,
]


async def test_numeric_renderings_match_the_server(pg_dsn: str) -> None:
    assert await server_renders(pg_dsn, "numeric", NUMERICS) == [
        render("numeric", v) for v in NUMERICS
    ]
    finite = [
        Decimal(v) for v in NUMERICS if Decimal(v).is_finite() and abs(Decimal(v)) < 100_000_000
    ]
    finite += [Decimal("0.125"), Decimal("-0.125"), Decimal("0.135"), Decimal("2.004999")]
    assert await server_renders(pg_dsn, "numeric(12, 2)", finite) == [
        render("numeric(12, 2)", v) for v in finite
    ]
    assert numeric_text(Decimal("-0.0")) == "0.0"


INETS = [
    "192.168.0.1",
    "10.0.0.0/8",
    "10.0.0.5/8",
    "2001:db8::1",
    "2001:db8::/32",
    "::ffff:1.2.3.4",
    "::1",
    "0.0.0.0/0",
    "fe80::1:2/64",
]


async def test_inet_and_uuid_renderings_match_the_server(pg_dsn: str) -> None:
    assert await server_renders(pg_dsn, "inet", INETS) == [render("inet", v) for v in INETS]
    uuids = ["0f8fad5b-d9cb-469f-a165-70867728950e", "6BA7B8109DAD11D180B400C04FD430C8"]
    assert await server_renders(pg_dsn, "uuid", uuids) == [render("uuid", v) for v in uuids]


STAMPS = [
    dt.datetime(2025, 3, 1, 12, 0, 0, 123456),
    dt.datetime(1970, 1, 1),
    dt.datetime(1, 1, 1, 0, 0, 1),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999998),
    dt.datetime(2025, 3, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
]


async def test_temporal_renderings_match_the_server(pg_dsn: str) -> None:
    aware = [s if s.tzinfo else s.replace(tzinfo=dt.UTC) for s in STAMPS]
    assert await server_renders(pg_dsn, "timestamptz", aware) == [
        render("timestamptz", s) for s in STAMPS
    ]  # naive is UTC, as the load sends it
    naive = [s.replace(tzinfo=None) for s in STAMPS]
    assert await server_renders(pg_dsn, "timestamp", naive) == [
        render("timestamp", s) for s in naive
    ]
    days = [dt.date(2024, 2, 29), dt.date(1, 1, 2), dt.date(1999, 12, 31), dt.date(2000, 1, 1)]
    assert await server_renders(pg_dsn, "date", days) == [render("date", d) for d in days]
    times = [dt.time(0), dt.time(23, 59, 59, 999999), dt.time(12, 30, 1, 5)]
    assert await server_renders(pg_dsn, "time", times) == [render("time", t) for t in times]


JSON_DOCUMENTS = [
    '{"b": 1, "a": [1, 2.50, 12345678901234567890]}',
    '{"aa": 1, "b": 2, "c": {"zz": [], "y": {}}}',  # shorter keys first, then bytes
    '{"a": 1, "a": 2}',  # the last duplicate wins
    '{"bb": 1, "a": 2, "ab": -3, "B": 4, "c": {"yy": 1, "xx": 2.0, "x": -0}}',  # ASCII keys
    '{"é": 1, "z": 2, "\\u00e9x": 3}',  # é is two bytes long
    "[1.0, 1e3, 1E-2, -0, -0.0, 1.50e1, 12345678901234567890123, 0.1e-10, -1.5E+2]",
    '"\\u00e9\\n\\t\\u001f\\u007f/\\/ \\b\\f\\r \\"q\\" \\\\"',
    '"\\ud83d\\ude00 and 😀"',
    ' { "spaces" : [ 1 , 2 ] ,"x":{ } } ',
    "null",
    "true",
    "false",
    "0",
    '""',
    "[]",
    "{}",
    '{"": 0}',
    "1e400",
    '{"nested": {"x": null, "u": "\\u00e9"}}',
    "[[[[[[[]]]]]]]",
]

json_characters = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(json_characters),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(json_characters, max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


async def server_jsonb(dsn: str, documents: list[str]) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [await conn.fetchval("SELECT $1::jsonb::text", d) for d in documents]
    finally:
        await conn.close()


async def test_jsonb_renderings_match_the_server(pg_dsn: str) -> None:
    documents = [*JSON_DOCUMENTS, "1" * 5000, "[" + "1" * 5000 + ".5, -0.0e5, 2]"]
    assert await server_jsonb(pg_dsn, documents) == [jsonb_text(d) for d in documents]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, ascii_only=st.booleans())
def test_generated_jsonb_renderings_match_the_server(
    pg_server: str, value: Any, ascii_only: bool
) -> None:
    document = json.dumps(value, ensure_ascii=ascii_only)
    [server] = asyncio.run(server_jsonb(pg_server, [document]))
    assert jsonb_text(document) == server


def test_the_source_side_takes_the_tables_with_most_bytes_first() -> None:
    """Rows and bytes, not rows alone: 60,000 rows of JSON documents took longer to
    render than 440,000 small rows (see source_work)."""
    key = (ColumnPlan("id", "id", "INTEGER", "bigint", "none"),)
    wide = TablePlan("wide", "wide", key, row_count=60_000, row_bytes=650)
    narrow = TablePlan("narrow", "narrow", key, row_count=440_000, row_bytes=20)
    small = TablePlan("small", "small", key, row_count=20_000, row_bytes=100)
    ranked = sorted([narrow, small, wide], key=source_work, reverse=True)
    assert [t.name for t in ranked] == ["wide", "narrow", "small"]
    assert source_work(wide) > source_work(TablePlan("w", "w", key, row_count=60_000))


async def test_a_repeated_json_document_changed_in_one_row_fails_its_table(
    tmp_path: Path, pg_dsn: str
) -> None:
    """The source side remembers the rendering of documents it has seen (applications
    repeat theirs): one row of 300 holding the same document, changed in PostgreSQL
    (a key added) or in SQLite (a number spelled otherwise), still fails the table,
    and a document longer than the memo keeps is rendered every time."""
    source = tmp_path / "docs.db"
    long = json.dumps({"items": list(range(200))})  # past what the memo keeps
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body JSON, big JSON)")
        conn.executemany(
            "INSERT INTO docs VALUES (?, ?, ?)",
            [(i, '{"b": [1, 2.50], "a": "x"}', long) for i in range(1, 301)],
        )
    migrated = await migrated_copy(source, pg_dsn)
    try:
        assert not failures(await migrated.deep_check())
        await migrated.conn.execute("UPDATE docs SET body = body || '{\"c\": 1}' WHERE id = 150")
        assert [r.table for r in failures(await migrated.deep_check())] == ["docs"]
        await migrated.conn.execute("UPDATE docs SET body = body - 'c' WHERE id = 150")
        assert not failures(await migrated.deep_check())
        with sqlite3.connect(source) as conn:
            conn.execute('UPDATE docs SET body = \'{"b": [1, 2.5], "a": "x"}\' WHERE id = 7')
            conn.execute("UPDATE docs SET big = ? WHERE id = 9", (long.replace("199", "198"),))
        failed = failures(await migrated.deep_check(explain=True))
        assert [r.table for r in failed] == ["docs"]
    finally:
        await migrated.conn.close()


async def test_rejected_rows_of_a_table_without_a_key_are_left_out_by_their_values(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A table with no primary key (or one whose text key holds NULLs, which the plan
    cannot keep as a key) is keyed by its whole rows: its rejected rows are found by all
    their values, as the reject file kept them (blobs, floats and invalid UTF-8 text
    included). ``check --deep`` failed on a correct copy of such a table."""
    from asyncmig.cli.commands import check
    from asyncmig.cli.settings import DeepCheck
    from asyncmig.run import run_migration
    from asyncmig.runstate import RunSettings
    from asyncmig.target.connect import Target

    source = tmp_path / "keyless.db"
    with sqlite3.connect(source) as conn:
        conn.executescript("""
            CREATE TABLE c (name TEXT, n INTEGER, blob BLOB, f REAL);
            CREATE TABLE k (id TEXT PRIMARY KEY, n INTEGER);
        """)
        conn.executemany(
            "INSERT INTO c VALUES (?, ?, ?, ?)",
            [
                ("a", 1, b"\x00\x01", 0.1),
                ("b", "x", b"\xff", 1e300 * 10),  # rejected: n; inf in f
                ("not yet", "y", None, 2.5),
                ("c", 3, None, None),
                ("a", 1, b"\x00\x01", 0.1),  # a duplicate of a kept row
            ],
        )
        conn.execute("UPDATE c SET name = CAST(X'C328' AS TEXT) WHERE n = 'y'")  # not UTF-8
        conn.executemany(
            "INSERT INTO k VALUES (?, ?)", [("p", 1), (None, 2), ("q", "bad"), ("r", 4)]
        )
    settings = RunSettings(source, Target(pg_dsn, pg_dsn, "test"), rejects_dir=tmp_path)
    report = await run_migration(settings)
    assert report.plan.table("c").primary_key == () and report.plan.table("k").primary_key == ()
    conn2 = await asyncpg.connect(pg_dsn)
    try:
        assert await conn2.fetchval("SELECT count(*) FROM c") == 3
        assert await conn2.fetchval("SELECT count(*) FROM k") == 3
    finally:
        await conn2.close()
    results = await check(settings, DeepCheck())
    assert [r for r in results if not r.ok] == []
    assert {r.table for r in results if r.check == "checksum"} >= {"c", "k"}
