"""SQLite's canonical text (asyncmig.check.sqlcanon) equals the Python oracle's, value by value.

For every planned type SQLite renders, each value is stored in a column without a
declared type (so SQLite keeps it exactly as given: integer, real, text, blob, invalid
UTF-8), read back the way ``check --deep`` reads it, and the SQL rendering, where it
decides, must be the oracle's text (:func:`asyncmig.check.deep.cell`). Where it does
not decide, the oracle renders the value; whole tables then give equal digests both
ways, and with rows the load rejected left out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import itertools
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncmig.check import sqlcanon
from asyncmig.check.deep import (
    WORKERS,
    Digest,
    TableCheck,
    cell,
    rendering,
    source_in_processes,
    split_for_workers,
)
from asyncmig.load.policy import lenient_text
from asyncmig.plan.model import ColumnPlan, Plan, TablePlan

TYPES = [  # (target type, transform) pairs SQLite renders, and their neighbours
    ("bigint", "none"),
    ("integer", "int"),
    ("smallint", "int_strict"),
    ("text", "none"),
    ("text", "text"),
    ("text", "text_nul_check"),
    ("varchar(5)", "varchar_fit"),
    ("character(4)", "none"),
    ("boolean", "bool_int"),
    ("boolean", "bool"),
    ("uuid", "uuid"),
    ("uuid", "uuid_checked"),
    ("timestamptz", "timestamptz"),
    ("timestamptz", "timestamptz_checked"),
    ("timestamp", "timestamp"),
    ("timestamptz(3)", "timestamptz"),
    ("date", "date"),
    ("bytea", "none"),
    ("bytea", "bytes"),
    ("double precision", "none"),
    ("numeric", "numeric"),
    ("inet", "inet"),
    ("jsonb", "json_text"),
]

NASTY: list[Any] = [
    None,
    0,
    1,
    -1,
    2,
    9223372036854775807,
    -9223372036854775808,
    0.0,
    -0.0,
    1.5,
    1e308,
    float("inf"),
    float("-inf"),
    "",
    " ",
    "a",
    "'",
    "\\",
    "it's a \\ back'slash",
    "nul\x00inside",
    "trailing  ",
    "é日本🐧",
    "1",
    "0",
    "t",
    "TRUE",
    "False",
    "abcdef",
    b"",
    b"\x00\xff",
    b"0123456789abcdef",
    "4266856d-8a86-4650-a21b-3e4de5c439b0",
    "4266856D-8A86-4650-A21B-3E4DE5C439B0",
    "D429E4D23E4DE5C439B04A257AD01145",
    "4266856d-8a86-4650-a21b-3e4de5c439bz",
    "4266856d8a86-4650-a21b-3e4de5c439b0-",
    "{4266856d-8a86-4650-a21b-3e4de5c439b0}",
    "2025-03-01 12:00:00",
    "2025-03-01T12:00:00.123456",
    "2025-03-01 12:00:00.1",
    "2025-03-01 12:00:00.1234567",
    "2025-03-01 12:00:00.",
    "2025-03-01 12:00:00.12a",
    "2025-02-29 00:00:00",
    "2024-02-29 23:59:59.999999",
    "2025-02-30 00:00:00",
    "2025-04-31 00:00:00",
    "2025-13-01 00:00:00",
    "2025-00-10 00:00:00",
    "2025-03-00 00:00:00",
    "2025-03-01 24:00:00",
    "2025-03-01 23:60:00",
    "2025-03-01 23:59:60",
    "0000-01-01 00:00:00",
    "0001-01-01 00:00:00",
    "0002-01-01 00:00:00",
    "1969-12-31 23:59:59.999999",
    "9998-12-31 23:59:59.999999",
    "9999-12-31 23:59:59.999999",
    "2025-03-01 12:00:00+02:00",
    "2025-03-01 12:00:00Z",
    "2025-03-01",
    "2025-3-01",
    "1900-02-29",
    "2000-02-29",
    "0001-01-01",
    "9999-12-31",
    "192.168.0.1",
    "2001:db8::1",
    '{"b": 1, "a": [1, 2.50]}',
    "[1, 2",
]


def column(target_type: str, transform: str, on_error: str = "null") -> ColumnPlan:
    return ColumnPlan("v", "v", "", target_type, transform, on_error=on_error)


def sql_and_oracle(
    conn: sqlite3.Connection, col: ColumnPlan, values: list[Any]
) -> Iterator[tuple[Any, str | None, str]]:
    """(value, SQLite's field or None where it does not decide, the oracle's field)."""
    conn.execute("DROP TABLE IF EXISTS t")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(v,) for v in values])
    sql = sqlcanon.field_sql(col, '"v"')
    assert sql is not None
    render = rendering(col)
    assert render is not None
    oracle = cell(col, render)
    for raw, field, value in conn.execute(f"SELECT v, CAST({sql} AS BLOB), v FROM t ORDER BY id"):
        shown = None if field is None or not sqlcanon.utf8(field) else field.decode("utf-8")
        yield raw, shown, oracle(value)


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    connection.text_factory = lenient_text
    yield connection
    connection.close()


SQL_TYPES = [t for t in TYPES if sqlcanon.field_sql(column(*t), "v") is not None]


def test_the_oracle_alone_renders_uuids_times_floats_numerics_inet_and_json() -> None:
    alone = [t for t in TYPES if t not in SQL_TYPES]
    assert alone == [
        ("uuid", "uuid"),
        ("uuid", "uuid_checked"),
        ("timestamptz", "timestamptz"),
        ("timestamptz", "timestamptz_checked"),
        ("timestamp", "timestamp"),
        ("timestamptz(3)", "timestamptz"),
        ("double precision", "none"),
        ("numeric", "numeric"),
        ("inet", "inet"),
        ("jsonb", "json_text"),
    ]


@pytest.mark.parametrize(("target_type", "transform"), SQL_TYPES)
def test_sql_fields_equal_the_oracle_on_nasty_values(
    conn: sqlite3.Connection, target_type: str, transform: str
) -> None:
    col = column(target_type, transform)
    decided = 0
    for value, field, expected in sql_and_oracle(conn, col, NASTY):
        if field is not None:
            decided += 1
            assert field == expected, value
    assert decided >= 2  # NULL and at least one real value


def test_the_common_shapes_are_decided_by_sqlite(conn: sqlite3.Connection) -> None:
    """What the fast path is for: these never reach the oracle."""
    cases: dict[tuple[str, str], list[Any]] = {
        ("bigint", "none"): [5, None],
        ("text", "none"): ["it's", "a\\b", "日本"],
        ("boolean", "bool_int"): [0, 1],
        ("date", "date"): ["2000-02-29", "1999-12-31"],
        ("bytea", "none"): [b"", b"\x00\xff"],
    }
    for (target_type, transform), values in cases.items():
        found = list(sql_and_oracle(conn, column(target_type, transform), values))
        assert [f for _, f, _ in found] == [e for _, _, e in found], target_type


def test_values_sqlite_cannot_be_sure_of_are_left_to_the_oracle(conn: sqlite3.Connection) -> None:
    undecided: dict[tuple[str, str], list[Any]] = {
        ("date", "date"): ["2025-02-30", "0001-01-01", "2025-3-01"],
        ("text", "none"): ["nul\x00inside", b"blob"],
        ("boolean", "bool_int"): [2, "yes"],
        ("bigint", "none"): [1.5, "12"],
    }
    for (target_type, transform), values in undecided.items():
        found = list(sql_and_oracle(conn, column(target_type, transform), values))
        assert [f for _, f, _ in found] == [None] * len(values), target_type


def test_invalid_utf8_text_is_left_to_the_oracle(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v)")
    conn.execute("INSERT INTO t (v) VALUES (CAST(x'61ff62' AS TEXT))")
    sql = sqlcanon.field_sql(column("text", "none"), '"v"')
    [(field,)] = conn.execute(f"SELECT CAST({sql} AS BLOB) FROM t").fetchall()
    assert field == b"'a\xffb'" and not sqlcanon.utf8(field)  # so the row goes to the oracle


stamps = st.datetimes(min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 31))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stamp=stamps,
    sep=st.sampled_from([" ", "T"]),
    digits=st.integers(min_value=0, max_value=6),
)
def test_generated_timestamps_equal_the_oracle(stamp: dt.datetime, sep: str, digits: int) -> None:
    text = f"{stamp.year:04d}-" + stamp.strftime(f"%m-%d{sep}%H:%M:%S")
    if digits:
        text += "." + f"{stamp.microsecond:06d}"[:digits]
    for target_type, transform in [("timestamptz", "timestamptz"), ("timestamp", "timestamp")]:
        quick, general = quick_and_general(column(target_type, transform))
        assert quick(text) == general(text) != "INVALID"
    conn = sqlite3.connect(":memory:")
    [(_, day, expected_day)] = sql_and_oracle(conn, column("date", "date"), [text[:10]])
    assert day == expected_day


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.one_of(
        st.text(),
        st.binary(max_size=20),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False),
        st.uuids().map(str),
        st.uuids().map(lambda u: u.hex.upper()),
        st.text(alphabet="0123456789abcdefABCDEF-", min_size=30, max_size=38),
        st.text(alphabet="0123456789-: .T", min_size=10, max_size=27),
    ),
    kind=st.sampled_from(SQL_TYPES),
)
def test_generated_values_equal_the_oracle(value: Any, kind: tuple[str, str]) -> None:
    conn = sqlite3.connect(":memory:")
    conn.text_factory = lenient_text
    [(_, field, expected)] = sql_and_oracle(conn, column(*kind), [value])
    assert field is None or field == expected


# --- the oracle's quick paths equal its general path ----------------------------------

QUICK_TYPES = [
    ("uuid", "uuid"),
    ("uuid", "uuid_checked"),
    ("uuid", "none"),
    ("timestamptz", "timestamptz"),
    ("timestamptz", "timestamptz_checked"),
    ("timestamp", "timestamp"),
    ("timestamptz(6)", "timestamptz"),
    ("inet", "inet"),
    ("inet", "inet_checked"),
    ("inet", "none"),
    ("numeric", "numeric"),
    ("numeric", "none"),
]
ADDRESSES = [
    "0.0.0.0",
    "0.0.0.0/0",
    "255.255.255.255/32",
    "10.1.2.3/8",
    "10.1.2.3/08",
    "10.1.2.3/33",
    "10.1.2.3/",
    "10.1.2.3/ 8",
    "10.1.2.3/8.0",
    "010.1.2.3",
    "256.1.2.3",
    "1.2.3",
    "1.2.3.4.5",
    " 1.2.3.4",
    "1.2.3.4 ",
    "1.2.3.4/255.0.0.0",
    "::ffff:1.2.3.4",
    "1.2.3.4%eth0",
    "١.2.3.4",
    "1.2.3.4/٨",
    "unknown",
    "::",
    "::1",
    "::/0",
    "2001:DB8::1/64",
    "2001:db8:0:0:0:0:0:1/128",
    "2001:db8::1/129",
    "2001:db8::1/0064",
    "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
    "2001:db8::00001",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7::",
    "1::2::3",
    ":1:2:3:4:5:6:7",
    "fe80::1%eth0",
    "::ffff:01.2.3.4",
    "::ffff:1.2.3.4/96",
    "64:ff9b::192.0.2.33",
    "2001:db8::g",
    "2001:db8:: 1",
    "0123456789abcdef0123456789ABCDEF",
    "0123456789abcdef0123456789abcde",
    "0123456789abcdef0123456789abcdeg",
    " 0123456789abcdef0123456789abcdef",
]


def quick_and_general(col: ColumnPlan) -> tuple[Callable[[Any], str], Callable[[Any], str]]:
    render = rendering(col)
    assert render is not None
    return cell(col, render), cell(col, render, quick=False)


@pytest.mark.parametrize(("target_type", "transform"), QUICK_TYPES)
def test_quick_paths_equal_the_general_path_on_nasty_values(
    target_type: str, transform: str
) -> None:
    quick, general = quick_and_general(column(target_type, transform))
    values = [*NASTY, *ADDRESSES, "2025-03-01 12:00:00.123456", "2025-03-01T12:00"]
    rendered = [quick(v) for v in values]
    assert rendered == [general(v) for v in values]
    assert sum(r not in ("NULL", "INVALID") for r in rendered) >= 2  # some are rendered


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.one_of(
        st.text(),
        st.uuids().map(str),
        st.uuids().map(lambda u: str(u).upper()),
        st.text(alphabet="0123456789abcdefABCDEF-", min_size=34, max_size=38),
        st.text(alphabet="0123456789-: .T+Z", min_size=10, max_size=27),
        st.ip_addresses(v=4).map(str),
        st.tuples(st.ip_addresses(v=4), st.integers(0, 40)).map(lambda a: f"{a[0]}/{a[1]}"),
        st.text(alphabet="0123456789./", min_size=7, max_size=18),
        st.ip_addresses(v=6).map(lambda a: a.exploded if a.packed[0] % 2 else str(a)),
        st.tuples(st.ip_addresses(v=6), st.integers(0, 140)).map(lambda a: f"{a[0]}/{a[1]}"),
        st.text(alphabet="0123456789abcDEF:./", min_size=2, max_size=45),
        st.uuids().map(lambda u: u.hex if u.int % 2 else u.hex.upper()),
        st.text(alphabet="0123456789abcdefABCDEFg", min_size=31, max_size=33),
        st.floats(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
    ),
    kind=st.sampled_from(QUICK_TYPES),
)
def test_generated_values_take_the_quick_path_only_where_it_agrees(
    value: Any, kind: tuple[str, str]
) -> None:
    quick, general = quick_and_general(column(*kind))
    assert quick(value) == general(value)


# --- whole tables: the fast digest equals the oracle's ---------------------------------


def table_plan(path: Path) -> tuple[Plan, TablePlan]:
    columns = tuple(
        column(t, tr).__class__(f"c{i}", f"c{i}", "", t, tr, on_error="null")
        for i, (t, tr) in enumerate(TYPES)
    )
    key = ColumnPlan("id", "id", "INTEGER", "bigint", "none")
    table = TablePlan("t", "t", (key, *columns), primary_key=("id",), row_count=len(NASTY))
    return Plan(str(path), "public", (table,)), table


def write_table(path: Path) -> None:
    conn = sqlite3.connect(path)
    names = ", ".join(f"c{i}" for i in range(len(TYPES)))
    conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {names})")
    marks = ", ".join("?" for _ in TYPES)
    for number in range(len(NASTY)):
        row = [NASTY[(number + i) % len(NASTY)] for i in range(len(TYPES))]
        conn.execute(f"INSERT INTO t VALUES (?, {marks})", [number, *row])
    conn.execute("INSERT INTO t (id, c3) VALUES (1000, CAST(x'61ff62' AS TEXT))")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("skip", [set(), {3, 1000, 17}])
def test_table_digests_equal_the_oracle(tmp_path: Path, skip: set[object]) -> None:
    path = tmp_path / "nasty.db"
    write_table(path)
    plan, table = table_plan(path)
    conn = sqlite3.connect(path)
    conn.text_factory = lenient_text
    check = TableCheck(plan, table, set(skip))
    fast = sqlcanon.SourceRows(check, "rowid")
    assert fast.row.renders and len(fast.row.items) > 2  # segments and oracle columns mixed
    assert fast.digest(conn) == check.oracle_digest(conn)
    assert check.source_digest(conn).count == len(NASTY) + 1 - len(skip)


@pytest.mark.parametrize(
    ("declared", "kinds"),
    [
        # one segment: every value rendered by SQLite (the single-item comprehension)
        ("id INTEGER PRIMARY KEY, n INTEGER, t TEXT", [("bigint", "none"), ("text", "none")]),
        # no segment but the key: every other value rendered by the oracle
        (
            "id INTEGER PRIMARY KEY, u TEXT, r REAL",
            [("uuid", "uuid"), ("double precision", "none")],
        ),
    ],
)
@pytest.mark.parametrize("key_text", [False, True])
def test_generated_row_hashes_equal_the_oracle_row_by_row(
    tmp_path: Path, declared: str, kinds: list[tuple[str, str]], key_text: bool
) -> None:
    """The digest's generated comprehension (one per table) against the oracle, on rows
    with NULLs, a quote, a NUL, a value no quick path takes (a 32-hex UUID, -0.0) and
    a value SQLite leaves undecided (a real in the text column); ``key_text`` (the
    sync's rows) reads more items than the row's, which the digest leaves out."""
    path = tmp_path / "shapes.db"
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE t ({declared})")
    odd = [None, "it's", "a\x00b", 2.5, "0" * 32, -0.0, 7, str(uuid.UUID(int=9)), 1e300]
    rows = [(i, odd[i % len(odd)], odd[(i * 5 + 1) % len(odd)]) for i in range(6000)]
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    conn.commit()
    names = declared.split(", ")[1:]
    columns = (
        ColumnPlan("id", "id", "INTEGER", "bigint", "none"),
        *(
            ColumnPlan(n.split()[0], n.split()[0], "", t, tr, on_error="null")
            for n, (t, tr) in zip(names, kinds, strict=True)
        ),
    )
    table = TablePlan("t", "t", columns, primary_key=("id",), row_count=len(rows))
    check = TableCheck(Plan(str(path), "public", (table,)), table, {3, 4000})
    conn.text_factory = lenient_text
    fast = sqlcanon.SourceRows(check, "rowid", key_text=key_text)
    # the digest writes integers out in Python; sync's rows (key_text) leave them to SQLite
    assert ("typeof(\"id\") = 'integer'" in fast.sql) is key_text
    digest = fast.digest(conn)
    assert digest == check.oracle_digest(conn)
    assert digest.count == len(rows) - 2
    conn.execute("UPDATE t SET id = -id WHERE id = 5")  # one key changed: another digest
    assert fast.digest(conn) != digest


def test_text_that_is_not_utf8_has_the_table_read_again_leniently(tmp_path: Path) -> None:
    """sqlite3 decodes text first (no Python call per value); the undecodable value
    stops that reading, and the table is read again with the lenient factory, whose
    InvalidText the column's policy settles (NULL here), as the load did."""
    path = tmp_path / "bad.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, u, j)")
    rows = [(i, str(uuid.UUID(int=i)), f'{{"n": {i}.50}}') for i in range(3000)]
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    conn.commit()
    key = ColumnPlan("id", "id", "INTEGER", "bigint", "none")
    columns = (
        key,
        ColumnPlan("u", "u", "", "uuid", "uuid", on_error="null"),
        ColumnPlan("j", "j", "", "jsonb", "json_text", on_error="null"),
    )
    table = TablePlan("t", "t", columns, primary_key=("id",), row_count=len(rows))
    check = TableCheck(Plan(str(path), "public", (table,)), table)
    conn.text_factory = lenient_text
    clean = check.source_digest(conn)
    conn.execute("UPDATE t SET j = NULL WHERE id = 2500")
    nulled = check.source_digest(conn)
    assert nulled != clean
    conn.execute("UPDATE t SET j = CAST(x'7b226e223a2031ff7d' AS TEXT) WHERE id = 2500")
    assert check.source_digest(conn) == nulled
    assert conn.text_factory is lenient_text
    conn.text_factory = str
    with pytest.raises(sqlite3.OperationalError, match="decode"):
        check.oracle_digest(conn)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.binary(max_size=40), max_size=50))
def test_slice_sums_of_a_batch_equal_the_sums_row_by_row(texts: list[bytes]) -> None:
    digests = [hashlib.md5(t).digest() for t in texts]
    slices = [sqlcanon.md5_slices(t) for t in texts]
    assert sqlcanon.slice_sums(digests) == (sum(a for a, _ in slices), sum(b for _, b in slices))
    assert sqlcanon.slice_sums([b"\xff" * 16] * 3) == (3 * (2**60 - 1), 3 * (2**60 - 1))


def test_a_table_with_most_of_the_work_is_read_in_pieces_that_add_up(tmp_path: Path) -> None:
    """split_for_workers: the big table in WORKERS rowid pieces covering it once, read
    in worker processes; their digests add up to the whole table's, rows the load
    rejected left out as before. The small table and a WITHOUT ROWID one stay whole."""
    path = tmp_path / "pieces.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, u, t)")
    conn.execute("CREATE TABLE small (id INTEGER PRIMARY KEY, u, t)")
    conn.execute("CREATE TABLE keyed (k TEXT PRIMARY KEY, u, t) WITHOUT ROWID")
    rows = [(i * 3 - 50, str(uuid.UUID(int=i)), f"row {i}") for i in range(3001)]
    conn.executemany("INSERT INTO big VALUES (?, ?, ?)", rows)
    conn.executemany("INSERT INTO small VALUES (?, ?, ?)", rows[:10])
    conn.executemany(
        "INSERT INTO keyed VALUES (?, ?, ?)", [(str(r[0]), r[1], r[2]) for r in rows[:300]]
    )
    conn.execute("UPDATE big SET t = CAST(x'61ff62' AS TEXT) WHERE id = 4000")  # not UTF-8
    conn.commit()

    def plan_of(name: str, key: ColumnPlan, rows: int) -> TablePlan:
        columns = (
            key,
            ColumnPlan("u", "u", "", "uuid", "uuid", on_error="null"),
            ColumnPlan("t", "t", "", "text", "none", on_error="null"),
        )
        key_name = (key.name,)
        return TablePlan(name, name, columns, primary_key=key_name, row_count=rows, row_bytes=60)

    number = ColumnPlan("id", "id", "INTEGER", "bigint", "none")
    text_key = ColumnPlan("k", "k", "TEXT", "text", "none")
    tables = (
        plan_of("big", number, 3001),
        plan_of("small", number, 10),
        dataclasses.replace(plan_of("keyed", text_key, 300), without_rowid=True),
    )
    plan = Plan(str(path), "public", tables)
    skip: dict[str, set[object]] = {"big": {-50, 1000, 8950}}
    checks = [TableCheck(plan, t, skip.get(t.name, set())) for t in tables]
    pieces = split_for_workers(conn, checks)
    split = [p for p in pieces if p.table.name == "big"]
    assert len(split) == WORKERS and all(p.rowids is not None for p in split)
    bounds = sorted(p.rowids for p in split if p.rowids is not None)
    assert bounds[0][0] == -50 and bounds[-1][1] == 8950
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(bounds))
    assert [p.rowids for p in pieces if p.table.name != "big"] == [None, None]
    assert [p.rowids for p in split_for_workers(conn, checks[2:])] == [None]  # no rowid

    found = asyncio.run(source_in_processes(path, plan, pieces))
    conn.text_factory = lenient_text
    whole = {c.table.name: c.source_digest(conn) for c in checks}
    assert found == whole
    assert isinstance(whole["big"], Digest) and whole["big"].count == 3001 - 3
