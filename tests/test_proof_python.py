"""The proof's conditions checked in Python (asyncmig.load.proof) say exactly what
SQLite says of the same values, and a row that fails one refutes the plan as before."""

from __future__ import annotations

import math
import random
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from asyncmig.load import proof
from asyncmig.load.policy import lenient_text
from asyncmig.plan.builder import build_plan
from asyncmig.plan.model import ColumnPlan, TablePlan
from asyncmig.run import run_migration
from asyncmig.runstate import RunSettings
from asyncmig.source.scan import acceptance, register_functions
from asyncmig.target.connect import Target

# stored with their storage class; ("blob-as-text", b) is a TEXT value of raw bytes
VALUES: list[Any] = [
    None,
    0,
    1,
    2,
    -1,
    2**63 - 1,
    -(2**63),
    0.0,
    1.0,
    -2.5,
    float("inf"),
    float("-inf"),
    "",
    "text",
    "a\x00b",
    "\x00",
    str(uuid.UUID(int=7)),
    uuid.UUID(int=7).hex,
    uuid.UUID(int=7).hex.upper(),
    str(uuid.UUID(int=7))[:35] + "\x00",
    uuid.UUID(int=7).hex + "\x00tail",
    "é" * 32,
    "😀" * 36,
    "x" * 33,
    b"\x00\x01",
    b"",
    ("text", b"\xff" * 32),
    ("text", b"\xc3" + b"a" * 31),
    ("text", b"\xe2\x82" + b"a" * 34),
    ("text", b"ab\x00cd"),
    ("text", b"\x80" * 36),
    # dates and timestamps: the spellings the fast test takes, and their neighbours
    "2024-01-15",
    "2024-01-15 10:30",
    "2024-01-15 10:30:59",
    "2024-01-15T10:30:00.123456",
    "2024-01-15 10:30:00.1234567",
    "2024-01-15 10:30:00.",
    "2024-01-15T10:30Z",
    "2024-01-15 10:30:00z",
    "2024-01-15 10:30:00+14:00",
    "2024-01-15 10:30:00-14:59",
    "2024-01-15 10:30:00+15:00",
    "2024-01-15 10:30:00 +01:00",
    "2024-01-15 10:30:00.123456+05:30",
    "2024-01-15Z",
    "2024-02-30",
    "2024-13-01",
    "2024-00-10",
    "2024-01-32",
    "2024-01-15 24:00:00",
    "2024-01-15 23:60:00",
    "2024-01-15 23:59:60",
    "0999-01-15",
    "9999-12-31 23:59:59.999999",
    "2024-1-5",
    " 2024-01-15",
    "2024-01-15 ",
    "2024-01-15  10:30",
    "2024-01-15x10:30",
    "２０２４-０１-１５",
    "\u0662\u0660\u0662\u0664-\u0660\u0661-\u0661\u0665",
    "2024-01-15\x00",
    "2024-01-15 10:30:00\n",
    "2460000.5",
    "10:30:00",
    ("text", b"2024-01-15 10:30:00\xff"),
    # JSON: documents, repeated keys (jsonb keeps the last), what orjson and SQLite weigh
    '{"a": 1, "b": [1, 2, {"c": null}]}',
    '{"a":1,"a":2}',
    '[{"a":1},{"a":2}]',
    '{"a":{"b":1,"b":2}}',
    '{"x":"a:b","y":"c:d"}',
    '{"a\\u003a":1,"a:":2}',
    '{"a":1,"\\u0061":2}',
    '{"caf\\u00e9":1}',
    '{"n":123456789012345678901234567890123,"n":1}',
    '{"big": 1e400}',
    '"just a string"',
    "17",
    "[1, 2,]",
    "{'a': 1}",
    '{"a": NaN}',
    '{"nul": "\\u0000"}',
    '["\\ud800"]',
    "[" * 950 + "]" * 950,
    "[" * 1001 + "]" * 1001,
    ("text", b'{"a": "\xff"}'),
]


def _source(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE v (n INTEGER PRIMARY KEY, x)")  # no affinity: kept as given
    for n, value in enumerate(VALUES):
        if isinstance(value, tuple):
            conn.execute("INSERT INTO v VALUES (?, CAST(? AS TEXT))", (n, value[1]))
        else:
            conn.execute("INSERT INTO v VALUES (?, ?)", (n, value))
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("kind", sorted(proof.ACCEPTED))
def test_python_and_sqlite_agree_on_every_value(kind: str, tmp_path: Path) -> None:
    conn = sqlite3.connect(_source(tmp_path / "v.db"))
    register_functions(conn)  # as the reader does: the conditions call them
    conn.text_factory = lenient_text  # as the reader does once text is not UTF-8
    condition = proof.ACCEPTED[kind].format(c="x")
    fast = eval(f"lambda x: {proof.FAST[kind].format(v='x')}", {"_inf": math.inf, **proof.SPELLED})
    exact = proof.exact_test(kind)
    for n in range(len(VALUES)):
        (value,) = conn.execute("SELECT x FROM v WHERE n = ?", (n,)).fetchone()
        try:
            (sqlite_says,) = conn.execute(
                f"SELECT coalesce(({condition}), 1) FROM v WHERE n = ?", (n,)
            ).fetchone()
        except sqlite3.OperationalError as exc:
            # abs(-2**63) overflows in SQLite, which stopped the load; Python accepts
            # the integer, as the profile's numeric type does
            assert (kind, value, str(exc)) == ("numeric", -(2**63), "integer overflow")
            assert exact(value) and fast(value)
            continue
        assert exact(value) is bool(sqlite_says), (kind, value)
        assert not fast(value) or sqlite_says, (kind, value)  # fast true => true


def test_the_recognised_forms_are_the_ones_the_plan_writes() -> None:
    """If asyncmig.source.scan.acceptance changed, the terms would stay in SQLite:
    this says when that would silently happen."""
    c = '"x"'
    assert acceptance("bigint", "none", c) == proof.ACCEPTED["integer"].format(c=c)
    assert acceptance("double precision", "none", c) == proof.ACCEPTED["real"].format(c=c)
    assert acceptance("numeric", "numeric", c) == proof.ACCEPTED["numeric"].format(c=c)
    assert acceptance("boolean", "bool_int", c) == proof.ACCEPTED["boolean"].format(c=c)
    assert acceptance("text", "none", c) == proof.ACCEPTED["text"].format(c=c)
    assert acceptance("uuid", "uuid", c) == proof.ACCEPTED["uuid"].format(c=c)
    for kind, transform in [
        ("date", "date"),
        ("timestamp", "timestamp"),
        ("timestamptz", "timestamptz"),
        ("timestamptz", "timestamptz_checked"),
    ]:
        assert acceptance(kind, transform, c) == proof.ACCEPTED[kind].format(c=c)


def test_sqlite_length_counts_as_sqlite_does(tmp_path: Path) -> None:
    conn = sqlite3.connect(_source(tmp_path / "v.db"))
    conn.text_factory = lenient_text
    rows = conn.execute("SELECT x, length(x) FROM v WHERE typeof(x) = 'text'").fetchall()
    assert rows
    for value, length in rows:
        assert proof.sqlite_length(value) == length, value


def _items(path: Path, odd: tuple[int, Any] | None = None) -> Path:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, ref TEXT, n INTEGER, ok BOOLEAN, "
        "price NUMERIC, note TEXT, at TIMESTAMP)"
    )
    rows = [
        [i, str(uuid.UUID(int=i)), i * 3, i % 2, i + 0.5, f"note {i}", "2025-01-02 03:04:05"]
        for i in range(3000)
    ]
    if odd is not None:
        rows[1700][odd[0]] = odd[1]
    conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return path


def test_the_simple_conditions_move_to_python_the_others_stay(tmp_path: Path) -> None:
    table = build_plan(_items(tmp_path / "i.db"), prove=True).table("items")
    split = proof.Proof(table)
    assert [(table.columns[n].name, kind) for n, kind in split.python] == [
        ("id", "not null"),
        ("id", "integer"),
        ("ref", "uuid"),
        ("n", "integer"),
        ("ok", "boolean"),
        ("price", "numeric"),
        ("note", "text"),
        ("at", "timestamptz"),
    ]
    assert split.where == ""


@pytest.mark.parametrize(
    ("column", "value", "name"),
    [
        (1, "ab\x00" + "c" * 33, "ref"),
        (2, "12a", "n"),
        (3, 2, "ok"),
        (4, "n/a", "price"),
        (5, b"blob", "note"),
        (5, "nul\x00inside", "note"),
    ],
)
async def test_a_value_python_refuses_refutes_the_plan(
    column: int, value: Any, name: str, tmp_path: Path, pg_dsn: str
) -> None:
    """The run re-plans the table over every row, as when SQLite refused the row."""
    source = _items(tmp_path / "i.db", (column, value))
    assert proof.Proof(build_plan(source, prove=True).table("items")).python
    with capture_logs() as logs:
        report = await run_migration(
            RunSettings(source, Target(pg_dsn, pg_dsn, "test"), schema="p", jobs=1)
        )
    refuted = [e for e in logs if e["event"] == "plan_refuted"]
    assert [(e["table"], e["column"]) for e in refuted] == [("items", name)]
    assert sum(t.rows + t.rejected for t in report.tables) == 3000


def test_a_batch_that_passes_says_nothing() -> None:
    table = TablePlan(
        name="t",
        source_name="t",
        columns=(ColumnPlan("a", "a", "", "bigint", "none"),),
        primary_key=("a",),
        proof_terms=(
            (0, '"a" IS NOT NULL'),
            (0, 'coalesce(("a" IS NULL OR typeof("a") = \'integer\'), 1)'),
        ),
    )
    check = proof.Proof(table)
    assert check.where == "" and check.python == [(0, "not null"), (0, "integer")]
    assert check.refuted([(1,), (2,)]) is None
    assert check.refuted([(1,), (None,)]) == 0
    assert check.refuted([(1,), ("2",)]) == 0


def near_misses(seed: int, seeds: list[str], chars: str, count: int = 6000) -> Iterator[str]:
    """``count`` texts, each one of ``seeds`` with up to three characters changed,
    dropped or inserted (from ``chars``)."""
    rng = random.Random(seed)
    for _ in range(count):
        text = list(rng.choice(seeds))
        for _ in range(rng.randint(0, 3)):
            at = rng.randrange(len(text))
            change = rng.randrange(3)
            if change == 0:
                text[at] = rng.choice(chars)
            elif change == 1:
                del text[at]
            else:
                text.insert(at, rng.choice(chars))
        yield "".join(text)


@pytest.mark.parametrize("kind", proof.DATED)
def test_the_dated_fast_tests_take_only_what_julianday_takes(kind: str) -> None:
    """Thousands of near-misses of a timestamp (a character changed, dropped or
    doubled): whatever the fast test takes, SQLite's condition takes, and the exact test
    says what SQLite says."""
    conn = sqlite3.connect(":memory:")
    condition = f"SELECT coalesce(({proof.ACCEPTED[kind].format(c='?1')}), 1)"
    fast = eval(f"lambda x: {proof.FAST[kind].format(v='x')}", dict(proof.SPELLED))
    exact = proof.exact_test(kind)
    chars = "0123456789-:. TZz+\u0661"
    taken = 0
    for value in near_misses(12, ["2024-01-15", "1999-12-31 23:59:59.999999+14:00"], chars):
        says = bool(conn.execute(condition, (value,)).fetchone()[0])
        assert exact(value) is says, value
        if fast(value):
            taken += 1
            assert says, value
    assert taken > 500  # the fast test does take the common spellings


def test_the_json_fast_test_takes_only_what_sqlite_takes() -> None:
    """Thousands of near-misses of JSON documents (a character changed, dropped or
    doubled; keys renamed into one another): whatever the fast test takes, SQLite's
    condition takes (valid, no object repeating a key), and the exact test says what
    SQLite says."""
    conn = sqlite3.connect(":memory:")
    register_functions(conn)
    condition = f"SELECT coalesce(({proof.ACCEPTED['jsonb'].format(c='?1')}), 1)"
    fast = eval(f"lambda x: {proof.FAST['jsonb'].format(v='x')}", dict(proof.SPELLED))
    exact = proof.exact_test("jsonb")
    chars = 'ab{}[]:,"\\u0 1e.-'
    seeds = ['{"a": 1, "b": {"a": [1, "x:y"]}}', '[{"ab": true}, {"ab": null, "b": 2.50}]']
    taken = repeated = 0
    for value in near_misses(13, seeds, chars):
        (sqlite_says,) = conn.execute(condition, (value,)).fetchone()
        assert exact(value) is bool(sqlite_says), value
        assert not fast(value) or sqlite_says, value
        taken += bool(fast(value))
        (valid,) = conn.execute("SELECT json_valid(?1)", (value,)).fetchone()
        repeated += bool(valid and not sqlite_says)
    assert taken > 500 and repeated > 5  # both sides of the condition were exercised


@pytest.mark.parametrize("declared", ["TEXT", "JSON"])
async def test_a_document_repeating_a_key_keeps_its_column_text(
    declared: str, tmp_path: Path, pg_dsn: str
) -> None:
    """jsonb keeps a repeated key's last value; SQLite's json functions read the first:
    ``{"a": 1, "a": 2}`` would mean 2 in PostgreSQL where the application read 1. A
    row far from the sample holding one refutes the jsonb plan in the load (Python's
    test), and the table is re-planned: the column is text, every document exactly as
    written (it was collapsed to {"a": 2}, exit 0, and check --deep passed)."""
    source = tmp_path / "j.db"
    with sqlite3.connect(source) as conn:
        conn.execute(f"CREATE TABLE docs (id INTEGER PRIMARY KEY, doc {declared})")
        rows = [(i, f'{{"a": {i}, "tags": ["x", "y"]}}') for i in range(3000)]
        rows[1700] = (1700, '{"a": 1, "b": {"c": 2, "c": 3}}')
        conn.executemany("INSERT INTO docs VALUES (?, ?)", rows)
    planned = build_plan(source, prove=True).table("docs")
    assert planned.column("doc").target_type == "jsonb"  # from the sample
    assert [kind for _, kind in proof.Proof(planned).python if kind == "jsonb"] == ["jsonb"]
    with capture_logs() as logs:
        report = await run_migration(
            RunSettings(source, Target(pg_dsn, pg_dsn, "test"), schema="j", jobs=1)
        )
    refuted = [e for e in logs if e["event"] == "plan_refuted"]
    assert [(e["table"], e["column"]) for e in refuted] == [("docs", "doc")]
    assert report.plan.table("docs").column("doc").target_type == "text"
    if declared == "JSON":  # the plan says why a declared JSON column is text
        assert any("docs.doc: declared JSON but 1 value(s)" in w for w in report.plan.warnings)
    conn2 = await asyncpg.connect(pg_dsn)
    try:
        copied = await conn2.fetch("SELECT id, doc FROM j.docs ORDER BY id")
    finally:
        await conn2.close()
    assert [tuple(r) for r in copied] == rows
