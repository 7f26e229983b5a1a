"""The declared type is the application's contract (issue 8).

A column declared INTEGER that holds 998 integers and 2 texts stays bigint; the two
texts go through the value policy (the reject store by default), and `plan` and
`validate` say so, with counts and examples, before anything is loaded. `--widen` (or
`widen = true` for a column) restores the lossless value-driven type. Columns with no
declared type, or TEXT holding JSON, keep their value-driven types.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from asyncmig.check.preflight import validate
from asyncmig.cli import commands, render
from asyncmig.cli.settings import DeepCheck
from asyncmig.errors import DataError
from asyncmig.plan.builder import build_plan
from asyncmig.plan.contract import contract_type
from asyncmig.plan.model import Plan
from asyncmig.plan.overrides import Overrides, parse_overrides
from asyncmig.run import make_plan
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target
from tests.compare import assert_all_equal
from tests.fix_run import migrate

SCORES = 1000
BAD_SCORES = {17: "n/a", 500: "twelve"}


def build(path: Path) -> Path:
    """1000 rows: score INTEGER with two texts (one beyond the profile's sample), and a
    column of each other declared type with one value that does not fit it."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE t(id INTEGER PRIMARY KEY, score INTEGER, ratio REAL, ok BOOLEAN,
                       day DATE, at DATETIME, price NUMERIC(5,2), code VARCHAR(3),
                       raw BLOB, anything, doc TEXT);
    """)
    rows = [
        (
            i,
            BAD_SCORES.get(i, i),
            i / 4,
            i % 2,
            "2024-01-02",
            "2024-01-02 03:04:05",
            i / 100,
            f"c{i % 100}",
            b"\x00" + bytes([i % 256]),
            i,
            json.dumps({"i": i}),
        )
        for i in range(1, SCORES + 1)
    ]
    conn.executemany("INSERT INTO t VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    conn.executescript("""
        UPDATE t SET ratio = 'lots' WHERE id = 3;
        UPDATE t SET ok = 2 WHERE id = 4;
        UPDATE t SET day = 'soon' WHERE id = 5;
        UPDATE t SET at = 'yesterday' WHERE id = 6;
        UPDATE t SET price = 1.005 WHERE id = 7;
        UPDATE t SET price = 12345.5 WHERE id = 8;
        UPDATE t SET code = 'long!' WHERE id = 9;
        UPDATE t SET raw = 'text' WHERE id = 10;
        UPDATE t SET anything = 'mixed' WHERE id = 11;
    """)
    conn.commit()
    conn.close()
    return path


MISFIT_KEYS = {3, 4, 5, 6, 7, 8, 9, 10, *BAD_SCORES}
DECLARED = {
    "score": "bigint",
    "ratio": "double precision",
    "ok": "boolean",
    "day": "date",
    "at": "timestamptz",
    "price": "numeric(5,2)",
    "code": "varchar(3)",
    "raw": "bytea",
    "anything": "text",
    "doc": "jsonb",
}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return build(tmp_path / "contract.db")


def types(plan: Plan) -> dict[str, str]:
    return {c.name: c.target_type for c in plan.table("t").columns if c.name != "id"}


def test_plan_keeps_declared_types_and_counts_the_misfits(source: Path) -> None:
    """Before anything is loaded: each kept type, how many values do not fit, examples."""
    plan = build_plan(source)
    assert types(plan) == DECLARED
    table = plan.table("t")
    score = table.column("score")
    assert (score.misfits, score.misfit_examples) == (2, ("'n/a'", "'twelve'"))
    assert {c.name: c.misfits for c in table.columns if c.misfits} == {
        "score": 2,
        "ratio": 1,
        "ok": 1,
        "day": 1,
        "at": 1,
        "price": 2,
        "code": 1,
        "raw": 1,
    }
    assert table.column("price").misfit_examples == ("1.005", "12345.5")
    text = render.plan_text(plan)
    assert (
        "declared INTEGER but 2 value(s) do not fit bigint (e.g. 'n/a', 'twelve'): the "
        "declared type is kept and their rows go to the reject store"
    ) in text
    # an untyped column keeps its value-driven type, with the old warning
    assert any(
        "t.anything: declared no type but holds text and numbers" in w for w in plan.warnings
    )


async def test_misfits_go_to_the_reject_store_and_the_rest_arrives(
    source: Path, pg_dsn: str, tmp_path: Path
) -> None:
    """Exit 8's report: every misfit row in the reject store with its reason; every other
    row arrives value for value in columns of the declared types."""
    report = await migrate(source, pg_dsn, rejects_dir=tmp_path / "rejects")
    table = next(t for t in report.tables if t.table == "t")
    assert (table.rows, table.rejected) == (SCORES - len(MISFIT_KEYS), len(MISFIT_KEYS))
    assert report.rejected == len(MISFIT_KEYS)  # the CLI exits 8
    assert table.reject_file is not None
    rejects = {
        json.loads(line)["key"]: json.loads(line)
        for line in Path(table.reject_file).read_text().splitlines()
    }
    assert set(rejects) == MISFIT_KEYS
    assert rejects[17]["row"]["score"] == "n/a" and rejects[17]["column"] == "score"
    assert rejects[7]["column"] == "price" and "rounded" in rejects[7]["reason"]
    assert rejects[9]["column"] == "code" and "longer than 3" in rejects[9]["reason"]
    conn = await asyncpg.connect(pg_dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM t WHERE id = 2")
        above_five = await conn.fetchval("SELECT count(*) FROM t WHERE score > 5")
        assert above_five == len(set(range(6, SCORES + 1)) - MISFIT_KEYS)
    finally:
        await conn.close()
    assert dict(row) == {
        "id": 2,
        "score": 2,
        "ratio": 0.5,
        "ok": False,
        "day": dt.date(2024, 1, 2),
        "at": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "price": Decimal("0.02"),
        "code": "c2",
        "raw": b"\x00\x02",
        "anything": "2",
        "doc": '{"i": 2}',
    }
    assert all(c.ok for c in report.checks)


async def test_widen_restores_the_lossless_types(source: Path, pg_dsn: str, tmp_path: Path) -> None:
    """--widen: every value loads, in the wider value-driven types, nothing rejected."""
    report = await migrate(
        source, pg_dsn, overrides=Overrides(widen=True), rejects_dir=tmp_path / "rejects"
    )
    assert types(report.plan)["score"] == "text"
    assert types(report.plan)["price"] == "numeric"  # not numeric(5,2): 12345.5 fits
    assert report.rejected == 0
    assert await assert_all_equal(source, pg_dsn, report.plan) == SCORES


async def test_check_after_a_widened_run_plans_as_the_run_did(
    source: Path, pg_dsn: str, tmp_path: Path
) -> None:
    """check (without --widen) reads the run's --widen from the history: deep check passes."""
    await migrate(source, pg_dsn, overrides=Overrides(widen=True), rejects_dir=tmp_path / "rejects")
    results = await commands.check(RunSettings(source, Target(pg_dsn, pg_dsn, "test")), DeepCheck())
    assert [r for r in results if not r.ok] == []
    assert any(r.check == "checksum" for r in results)


def test_widen_per_column_in_a_profile(source: Path) -> None:
    overrides = parse_overrides({"tables": {"t": {"columns": {"score": {"widen": True}}}}}, "test")
    plan = build_plan(source, overrides=overrides)
    assert types(plan)["score"] == "text"
    assert types(plan)["ratio"] == "double precision"  # the others keep their contract


async def test_validate_reports_counts_and_examples(source: Path, pg_dsn: str) -> None:
    plan = await make_plan(RunSettings(source, Target(None, "", "none")))
    checks = [
        c
        for c in await validate(source, Target(pg_dsn, pg_dsn, "test"), plan)
        if c.name == "declared types"
    ]
    assert len(checks) == 8 and {c.status for c in checks} == {"warn"}
    score = next(c for c in checks if "t.score" in c.message)
    assert score.message == (
        "t.score declared INTEGER: 2 value(s) do not fit bigint, e.g. "
        "'n/a', 'twelve'; policy reject"
    )
    assert "--widen" in score.fix


async def test_policy_fail_stops_the_run_naming_the_value(
    source: Path, pg_dsn: str, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match=r"t\.ratio at key 3: value 'lots'"):
        await migrate(
            source, pg_dsn, overrides=Overrides(on_error="fail"), rejects_dir=tmp_path / "rejects"
        )
    plan = await make_plan(
        RunSettings(source, Target(None, "", "none"), overrides=Overrides(on_error="fail"))
    )
    checks = await validate(source, Target(pg_dsn, pg_dsn, "test"), plan)
    assert {c.status for c in checks if c.name == "declared types"} == {"fail"}


async def test_coerce_converts_what_it_can(tmp_path: Path, pg_dsn: str) -> None:
    """coerce: whole-number text becomes the integer; text it cannot convert is rejected."""
    path = tmp_path / "coerce.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER);"
        "INSERT INTO c VALUES (1, 5), (2, '7 '), (3, 'x'), (4, 2.5);"
    )
    conn.commit()
    conn.close()
    report = await migrate(
        path, pg_dsn, overrides=Overrides(on_error="coerce"), rejects_dir=tmp_path / "rejects"
    )
    assert report.plan.table("c").column("n").target_type == "bigint"
    conn2 = await asyncpg.connect(pg_dsn)
    try:
        assert [tuple(r) for r in await conn2.fetch("SELECT id, n FROM c ORDER BY id")] == [
            (1, 5),
            (2, 7),
        ]
    finally:
        await conn2.close()
    assert report.rejected == 2


@pytest.mark.parametrize(
    ("declared", "promised"),
    [
        ("INT(11)", "bigint"),
        ("BIGINT UNSIGNED", "bigint"),
        ("TINYINT(1)", "bigint"),
        ("DOUBLE PRECISION", "double precision"),
        ("DECIMAL(10,2)", "numeric(10,2)"),
        ("NUMERIC", "numeric"),
        ("NVARCHAR(160)", "varchar(160)"),
        ("DATETIME", "timestamptz"),
        ("BLOB", "bytea"),
        ("BOOLEAN", "boolean"),
        # no promise PostgreSQL can keep: value-driven, as before
        ("TEXT", None),
        ("", None),
        ("JSON", None),
        ("INTERVAL", None),
        ("POINT", None),
        ("NUMERIC(5,10)", "numeric"),  # a scale beyond the precision: plain numeric
    ],
)
def test_which_declarations_are_contracts(declared: str, promised: str | None) -> None:
    found = contract_type(declared)
    assert (found[0] if found else None) == promised


async def test_days_a_month_does_not_have_are_counted_before_the_load(
    tmp_path: Path, pg_dsn: str
) -> None:
    """February 30th passes julianday() (SQLite rolls it into March) but not the load's
    transform: ``plan`` and ``validate`` count it with the misfits (and more than six
    fraction digits), so the rows they announce are the rows the load rejects."""
    source = tmp_path / "cal.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, d DATETIME, e DATE)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?)",
            [
                (1, "2016-01-01 10:00:00", "2016-01-01"),
                (2, "2016-02-30 10:00:00", "2016-02-28"),
                (3, "2016-04-31", "2015-02-29"),
                (4, "2016-04-30 10:00:00.1234567", "2016-04-30"),
                (5, 2457448.5, "2016-02-29"),  # a Julian day number: read as a date
            ],
        )
    table = build_plan(source).table("t")
    assert (table.column("d").misfits, table.column("e").misfits) == (3, 1)
    report = await migrate(source, pg_dsn, rejects_dir=tmp_path / "rejects")
    loaded = next(t for t in report.tables if t.table == "t")
    assert (loaded.rows, loaded.rejected) == (2, 3)


def test_32_hex_digits_are_a_uuid_only_in_an_id_column(tmp_path: Path) -> None:
    """``hex(randomblob(16))`` in ``session_id`` is a UUID; an md5 in ``cache_key`` is a
    hash the application compares as text (as uuid it would read back with dashes):
    the ``key`` name hint made it a uuid."""
    import hashlib
    import uuid

    source = tmp_path / "h.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE h (id INTEGER PRIMARY KEY, session_id, cache_key, api_key)")
        conn.executemany(
            "INSERT INTO h (session_id, cache_key, api_key) VALUES (?, ?, ?)",
            [
                (
                    uuid.uuid4().hex.upper(),
                    hashlib.md5(str(i).encode()).hexdigest(),
                    uuid.uuid4().hex,
                )
                for i in range(50)
            ],
        )
    table = build_plan(source).table("h")
    assert [table.column(c).target_type for c in ("session_id", "cache_key", "api_key")] == [
        "uuid",
        "text",
        "text",
    ]


async def test_numbers_in_a_json_column_are_json_documents(tmp_path: Path, pg_dsn: str) -> None:
    """A column declared JSON has numeric affinity: SQLite stores an ORM's
    ``json.dumps(42)`` as the integer 42, which its json functions read as the document
    42. The column is jsonb, each number a JSON number (the whole column had become
    text); also where only rows outside the plan's sample hold numbers. Numbers are
    compared as decimals: jsonb prints 1e300 with its 300 zeros."""

    def exact(document: str) -> object:
        return json.loads(document, parse_float=Decimal, parse_int=Decimal)

    path = tmp_path / "json_numbers.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE small (id INTEGER PRIMARY KEY, doc JSON);
        INSERT INTO small (doc) VALUES ('{"theme": "dark"}'), ('[1, 2]'), ('42'), ('1.5'),
            ('"text"'), ('null'), ('0.1'), ('-7'), ('1e300'), (NULL);
        CREATE TABLE big (id INTEGER PRIMARY KEY, doc JSON);
        """
    )
    conn.executemany(
        "INSERT INTO big (id, doc) VALUES (?, ?)",
        [(i, str(i / 4) if 2000 <= i < 2010 else f'{{"n": {i}}}') for i in range(1, 5001)],
    )
    conn.commit()
    expected = {
        table: [
            (key, None if doc is None else exact(doc))
            for key, doc in conn.execute(f"SELECT id, json(doc) FROM {table} ORDER BY id")
        ]
        for table in ("small", "big")
    }
    assert conn.execute("SELECT typeof(doc) FROM small WHERE id = 3").fetchone() == ("integer",)
    conn.close()
    report = await migrate(path, pg_dsn, rejects_dir=tmp_path / "rejects")
    assert {t.name: t.column("doc").target_type for t in report.plan.tables} == {
        "small": "jsonb",
        "big": "jsonb",
    }
    assert report.rejected == 0
    pg = await asyncpg.connect(pg_dsn)
    try:
        for table, rows in expected.items():
            found = await pg.fetch(f"SELECT id, doc::text FROM {table} ORDER BY id")
            assert [(k, None if d is None else exact(d)) for k, d in found] == rows
        kinds = await pg.fetch("SELECT jsonb_typeof(doc) FROM small ORDER BY id")
    finally:
        await pg.close()
    assert [k for (k,) in kinds] == [
        "object",
        "array",
        "number",
        "number",
        "string",
        "null",
        "number",
        "number",
        "number",
        None,
    ]


@pytest.mark.parametrize("rows", [3000, 6000], ids=["profiled whole", "sampled"])
async def test_tinyint_1_of_zeros_and_ones_is_a_boolean(
    tmp_path: Path, pg_dsn: str, rows: int
) -> None:
    """MySQL's boolean, which Sequelize and Rails write into SQLite (pgloader casts it
    to boolean): a TINYINT(1) column of 0 and 1 becomes boolean, with its default, so
    the application's `WHERE active = true` works on the copy; one holding other
    numbers (a rating, or a single 2 past the sample, which refutes the sampled plan)
    stays an integer. Every value as SQLite holds it."""
    path = tmp_path / "sequelize.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name VARCHAR(255), "
            "active TINYINT(1) NOT NULL DEFAULT 1, rating TINYINT(1), flag tinyint( 1 ) "
            "DEFAULT 0, odd TINYINT(1))"
        )
        conn.executemany(
            "INSERT INTO users (name, active, rating, flag, odd) VALUES (?, ?, ?, ?, ?)",
            [
                (f"u{i}", i % 2, i % 6, None, 2 if i == rows // 2 else i % 2)
                for i in range(1, rows + 1)
            ],
        )
    plan = (await migrate(path, pg_dsn)).plan
    assert {c.name: c.target_type for c in plan.table("users").columns} == {
        "id": "bigint",
        "name": "varchar(255)",
        "active": "boolean",
        "rating": "bigint",
        "flag": "boolean",
        "odd": "bigint",
    }
    assert await assert_all_equal(path, pg_dsn, plan) == rows
    conn2 = await asyncpg.connect(pg_dsn)
    try:
        assert await conn2.fetchval("SELECT count(*) FROM users WHERE active = true") == rows // 2
        added = await conn2.fetchrow("INSERT INTO users (name) VALUES ('new') RETURNING *")
    finally:
        await conn2.close()
    assert (added["active"], added["flag"], added["rating"]) == (True, False, None)


INT64_MIN = -(2**63)


@pytest.mark.parametrize("rows", [20, 3000])  # profiled whole; sampled, the load proving
async def test_the_smallest_64_bit_integer_is_a_value_not_a_source_error(
    tmp_path: Path, pg_dsn: str, rows: int
) -> None:
    """SQLite's ``abs(-9223372036854775808)`` is an "integer overflow" error, even where
    a ``typeof()`` beside it already ruled the value out: the plan's conditions used
    ``abs()``, and such a value anywhere stopped the run with exit 3, "cannot read".
    Now it is a number like another: a misfit of DECIMAL(10,2), which goes to the
    reject store, and kept exactly where its column's type holds it (-2**63 is a
    double exactly)."""
    path = tmp_path / "edge.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, price DECIMAL(10,2), n NUMERIC, x DOUBLE)"
    )
    conn.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?)", [(i, i / 4, i, i * 0.5) for i in range(1, rows)]
    )
    conn.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (rows, INT64_MIN, INT64_MIN, 2.5))
    conn.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (rows + 1, 1.25, INT64_MIN, INT64_MIN))
    conn.commit()
    conn.close()
    report = await migrate(path, pg_dsn, rejects_dir=tmp_path / "rejects")
    table = next(t for t in report.tables if t.table == "t")
    target = await asyncpg.connect(pg_dsn)
    try:
        kept = [dict(r) for r in await target.fetch("SELECT * FROM t WHERE id >= $1", rows)]
    finally:
        await target.close()
    rejected = [json.loads(line) for line in Path(table.reject_file or "").read_text().splitlines()]
    assert [(r["key"], r["column"]) for r in rejected] == [(rows, "price")]
    assert len(kept) == 1 and kept[0]["id"] == rows + 1 and kept[0]["price"] == Decimal("1.25")
    assert kept[0]["n"] == INT64_MIN and kept[0]["x"] == float(INT64_MIN)
    assert all(c.ok for c in report.checks)


async def test_a_text_column_with_a_few_blobs_stays_text(tmp_path: Path, pg_dsn: str) -> None:
    """A column declared TEXT whose text is mixed with a few blobs became ``bytea`` for
    every row (the application then read bytes where it wrote strings); it stays
    ``text``, the blobs go through the value policy (the reject store here), and
    ``--widen`` restores the lossless ``bytea``. A column of blobs alone stays
    ``bytea``."""
    path = tmp_path / "notes.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE n (id INTEGER PRIMARY KEY, body TEXT, raw CLOB)")
    rows: list[tuple[int, str | bytes, bytes]] = [
        (i, f"note {i}", b"\x00\x01" * (i % 3 + 1)) for i in range(1, 50)
    ]
    rows += [(50, b"\xff\xfe", b"\x02"), (51, b"plain bytes", b"\x03")]
    conn.executemany("INSERT INTO n VALUES (?, ?, ?)", rows)
    conn.commit()
    conn.close()
    report = await migrate(path, pg_dsn, rejects_dir=tmp_path / "rejects")
    table = next(t for t in report.tables if t.table == "n")
    rejected = [json.loads(line) for line in Path(table.reject_file or "").read_text().splitlines()]
    assert sorted(r["key"] for r in rejected) == [50, 51]
    assert {r["column"] for r in rejected} == {"body"}
    target = await asyncpg.connect(pg_dsn)
    try:
        types = dict(
            await target.fetch(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'n'::regclass AND attnum > 0"
            )
        )
        got = [tuple(r) for r in await target.fetch("SELECT * FROM n ORDER BY id")]
        await target.execute("DROP TABLE n")
    finally:
        await target.close()
    assert (types["body"], types["raw"]) == ("text", "bytea")
    assert got == [r for r in rows if r[0] < 50]
    widened = await migrate(path, pg_dsn, overrides=Overrides(widen=True))
    body = next(c for c in widened.plan.table("n").columns if c.name == "body")
    assert body.target_type == "bytea" and widened.rejected == 0
