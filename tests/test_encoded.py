"""Values handed to the COPY already in PostgreSQL's binary form (asyncmig.load.codecs)
arrive exactly as asyncpg's own codecs send them: compared value by value through a
real server, and end to end against the plain path and the tests' own oracle."""

from __future__ import annotations

import datetime as dt
import math
import random
import sqlite3
import struct
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from asyncmig.cli.commands import check
from asyncmig.cli.settings import DeepCheck
from asyncmig.load import codecs, transforms
from asyncmig.load.pipeline import PipelineSettings
from asyncmig.plan.model import ColumnPlan, Plan, TablePlan
from asyncmig.quoting import quote_ident
from asyncmig.run import run_migration
from asyncmig.runstate import RunSettings
from asyncmig.target import sync
from asyncmig.target.connect import Target
from tests.compare import assert_all_equal

NUMBERS: list[Any] = [
    Decimal(0),
    Decimal("0.000"),
    Decimal("-0.0"),
    Decimal(1),
    Decimal("1.0"),
    Decimal("-12.50"),
    Decimal(9999),
    Decimal(10000),
    Decimal("10000.0001"),
    Decimal("0.00001"),
    Decimal("123456789012345678901234567890.123456789"),
    Decimal("1E+100"),
    Decimal("-4.2E-50"),
    Decimal("NaN"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
    0,
    7,
    -(2**63),
    10**40,
    0.1,
    -1e-7,
    1.5e300,
    "3.14159",
]

MOMENTS: list[Any] = [
    dt.datetime(2025, 3, 1, 12, 0),
    dt.datetime(2025, 3, 1, 12, 0, 0, 123456),
    dt.datetime(1999, 12, 31, 23, 59, 59, 999999),
    dt.datetime(1, 1, 2),
    dt.datetime(9999, 12, 30, 1, 2, 3),
    dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC),
    codecs.INFINITY,
    codecs.NEGATIVE_INFINITY,
    dt.date(2024, 2, 29),
]


async def _plain(dsn: str, sql: str, value: Any) -> Any:
    """``sql`` run with ``value`` through asyncpg's own codecs."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, value)
    finally:
        await conn.close()


async def _ours(dsn: str, sql: str, value: Any, kind: str) -> Any:
    """``sql`` run with ``value`` through the load's codec for ``kind``."""
    conn = await asyncpg.connect(dsn)
    try:
        async with codecs.encoded_values(conn, {kind}):
            return await conn.fetchval(sql, value)
    finally:
        await conn.close()


async def _both(dsn: str, sql: str, value: Any, kind: str) -> tuple[Any, Any]:
    return await _plain(dsn, sql, value), await _ours(dsn, sql, value, kind)


@pytest.mark.parametrize("value", NUMBERS, ids=repr)
async def test_numeric_encoding_is_asyncpgs(value: Any, pg_dsn: str) -> None:
    """Same value, same scale, whether asyncpg or the load encodes it."""
    sql = "SELECT $1::numeric::text"
    expected, got = await _both(pg_dsn, sql, value, "numeric")
    assert got == expected
    assert await _ours(pg_dsn, sql, codecs.numeric_bytes(value), "numeric") == expected


@pytest.mark.parametrize("value", NUMBERS, ids=repr)
async def test_numeric_decoding_is_asyncpgs(value: Any, pg_dsn: str) -> None:
    expected, got = await _both(pg_dsn, "SELECT $1::text::numeric", str(value), "numeric")
    assert str(got) == str(expected)


def doubles(count: int) -> list[float]:
    """Edge doubles, then ``count`` drawn over every spelling ``repr`` has: prices,
    any 64 bits, wide exponents, long fractions."""
    rng = random.Random(12)
    found = [0.0, -0.0, 1.0, -1.0, 5.0, 100.0, 10000.0, 0.1, 0.05, 0.0001, -0.00012345]
    found += [1e-05, 12345678.5, 1e15, 9999999999999998.0, 1e16, 123456789012345.6]
    found += [math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308, 79.19]
    for _ in range(count):
        kind = rng.randrange(4)
        if kind == 0:
            found.append(round(rng.uniform(-1e6, 1e6), rng.randint(0, 6)))
        elif kind == 1:
            found.append(struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0])
        elif kind == 2:
            found.append(rng.uniform(-10, 10) * 10 ** rng.randint(-8, 18))
        else:
            found.append(rng.randint(-(10**17), 10**17) / 10 ** rng.randint(0, 17))
    return found


def test_a_doubles_numeric_from_its_repr_is_the_decimal_routes() -> None:
    """The shortcut from ``repr`` gives, byte for byte, what the Decimal of the repr
    gives (and asyncpg sends for that Decimal, above), for every double drawn."""
    for value in doubles(200_000):
        expected = codecs.numeric_bytes(Decimal(repr(value)))
        assert codecs.float_numeric_bytes(value) == expected, repr(value)


async def test_doubles_through_the_server_read_as_their_repr(pg_dsn: str) -> None:
    """PostgreSQL reads the shortcut's bytes as the double's repr, digits and scale, as
    it reads asyncpg's own encoding of that repr's Decimal."""
    values = [v for v in doubles(2000) if math.isfinite(v)]
    sql = (
        "SELECT array_agg(v::text ORDER BY n) FROM unnest($1::numeric[]) WITH ORDINALITY AS u(v, n)"
    )
    expected = await _plain(pg_dsn, sql, [Decimal(repr(v)) for v in values])
    got = await _ours(pg_dsn, sql, [codecs.float_numeric_bytes(v) for v in values], "numeric")
    assert got == expected
    assert [Decimal(text) for text in got] == [Decimal(repr(v)) for v in values]


ADDRESSES = [
    "192.168.1.10",
    "0.0.0.0",
    "255.255.255.255",
    "10.0.0.0/8",
    "10.1.2.3/16",
    "::1",
    "fe80::3:2",
    "2001:db8::ff00:42:8329",
    "::ffff:1.2.3.4",
    "2001:db8::/32",
    "1::1.2.3.4",
]


@pytest.mark.parametrize("value", ADDRESSES)
async def test_inet_encoding_is_asyncpgs(value: str, pg_dsn: str) -> None:
    """The text asyncpg sends (through ``ipaddress``), the load's codec for anything
    not yet bytes, and the transform's bytes (``inet_pton``) all arrive as the same
    inet; read back, the load's decoder gives asyncpg's object."""
    sql = "SELECT $1::inet::text"
    expected, got = await _both(pg_dsn, sql, value, "inet")
    assert got == expected
    assert await _ours(pg_dsn, sql, codecs.inet_bytes(value), "inet") == expected
    if "/" not in value:
        assert type(codecs.inet_bytes(value)) is bytes
    expected, got = await _both(pg_dsn, "SELECT $1::text::inet", value, "inet")
    assert got == expected and type(got) is type(expected)


def test_inet_spellings_inet_pton_refuses_are_left_to_the_codec() -> None:
    for text in ("01.2.3.4", "fe80::1%eth0", "1.2.3", "1.2.3.4/24", "x"):
        assert codecs.inet_bytes(text) == text


async def _loaded_both(source: Path, dsn: str, pipeline: PipelineSettings) -> Plan:
    """``source`` migrated twice, into schema ``fast`` (values encoded by the transform)
    and ``plain`` (asyncpg's own codecs); the plan."""
    for schema, encode in (("fast", True), ("plain", False)):
        settings = RunSettings(
            source,
            Target(dsn, dsn, "test"),
            schema=schema,
            pipeline=replace(pipeline, encode=encode),
        )
        report = await run_migration(settings)
    return report.plan


async def _both_tables(dsn: str, table: TablePlan) -> list[list[tuple[Any, ...]]]:
    """Every value of ``table`` in ``fast`` and in ``plain``, as text, in key order."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET TimeZone = 'UTC'")
        columns = ", ".join(f"{quote_ident(c.name)}::text" for c in table.columns)
        return [
            [
                tuple(r)
                for r in await conn.fetch(
                    f"SELECT {columns} FROM {schema}.{quote_ident(table.name)} ORDER BY 1"
                )
            ]
            for schema in ("fast", "plain")
        ]
    finally:
        await conn.close()


def _addresses(path: Path, rows: int = 2000) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE hits (id INTEGER PRIMARY KEY, ip TEXT, note TEXT)")
    conn.executemany(
        "INSERT INTO hits VALUES (?, ?, ?)",
        [
            (i, None if i % 13 == 0 else ADDRESSES[i % len(ADDRESSES)], f"n{i}")
            for i in range(1, rows + 1)
        ],
    )
    conn.commit()
    conn.close()
    return path


async def test_encoded_addresses_load_as_the_plain_path_and_the_oracle(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A table whose only work is its addresses: encoded by the transform (no other
    column needs one), loaded the same as through asyncpg's own codec."""
    source = _addresses(tmp_path / "hits.db")
    plan = await _loaded_both(source, pg_dsn, PipelineSettings(batch_size=100))
    table = plan.table("hits")
    assert {c.name: (c.target_type, c.transform) for c in table.columns}["ip"] == ("inet", "inet")
    assert transforms.build_batch_transform(table, encode=True) is not None
    assert transforms.build_batch_transform(table, encode=False) is None
    assert await assert_all_equal(source, pg_dsn, plan) == 2000
    fast, plain = await _both_tables(pg_dsn, table)
    assert fast == plain
    assert sum(r[1] is None for r in fast) == 2000 // 13


async def test_numeric_refusals_are_asyncpgs() -> None:
    """What asyncpg cannot encode raises the same ValueError here."""
    with pytest.raises(ValueError, match="exponent is too small"):
        codecs.numeric_bytes(Decimal("1E-20000"))


@pytest.mark.parametrize("value", MOMENTS, ids=repr)
async def test_timestamptz_encoding_is_asyncpgs(value: Any, pg_dsn: str) -> None:
    """As asyncpg, except that the two instants asyncpg sends as -infinity and infinity
    are those instants (year 1 is .NET's default date; SQLite has no infinity)."""
    sql = "SELECT ($1::timestamptz AT TIME ZONE 'UTC')::text"
    expected, got = await _both(pg_dsn, sql, value, "timestamptz")
    if value in (codecs.INFINITY, codecs.NEGATIVE_INFINITY):
        assert expected in ("infinity", "-infinity")
        assert got == value.isoformat(sep=" ")
        return
    assert got == expected
    round_trip = await _both(pg_dsn, "SELECT $1::timestamptz", value, "timestamptz")
    assert round_trip[1] == round_trip[0]


@pytest.mark.parametrize("value", [m for m in MOMENTS if type(m) is dt.datetime and not m.tzinfo])
async def test_naive_timestamps_encode_as_utc(value: dt.datetime, pg_dsn: str) -> None:
    """The load's fast form (naive = UTC) is the instant asyncpg sends for the UTC value."""
    sql = "SELECT ($1::timestamptz AT TIME ZONE 'UTC')::text"
    if value in (codecs.INFINITY, codecs.NEGATIVE_INFINITY):
        return
    expected = await _plain(pg_dsn, sql, value.replace(tzinfo=dt.UTC))
    assert await _ours(pg_dsn, sql, codecs.timestamptz_micros(value), "timestamptz") == expected


def _prices(path: Path, rows: int = 3000) -> Path:
    """NUMERIC prices (REAL, INTEGER and text, repeating, zeros of both signs) and naive
    ISO timestamps, some batches with an offset or an edge year among them."""
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE prices (id INTEGER PRIMARY KEY, price NUMERIC, qty NUMERIC, "
        "paid_at TIMESTAMP)"
    )
    values = []
    for i in range(rows):
        price: Any = [9.99, 14.0, 0.0, -0.0, 1, 1.0, 1e-7, 123456.789, "12.50", None][i % 10]
        stamp = f"2025-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:00:{i % 60:02d}"
        if i % 7 == 0:
            stamp += f".{i % 1000000:06d}"
        if i == 1234:
            stamp += "+02:00"
        if i == 2222:
            stamp = "9999-12-31 23:59:58"
        values.append((i + 1, price, i % 97 + 0.25, None if i % 11 == 0 else stamp))
    conn.executemany("INSERT INTO prices VALUES (?, ?, ?, ?)", values)
    conn.commit()
    conn.close()
    return path


async def test_encoded_load_equals_plain_load_and_the_oracle(tmp_path: Path, pg_dsn: str) -> None:
    source = _prices(tmp_path / "prices.db")
    plan = await _loaded_both(source, pg_dsn, PipelineSettings(batch_size=100))
    table = plan.table("prices")
    assert {c.name: c.transform for c in table.columns} == {
        "id": "none",
        "price": "numeric",
        "qty": "numeric",
        "paid_at": "timestamptz",
    }
    assert await assert_all_equal(source, pg_dsn, plan) == 3000
    fast, plain = await _both_tables(pg_dsn, table)
    assert fast == plain


def _stamps_table() -> TablePlan:
    return TablePlan(
        name="t",
        source_name="t",
        columns=(
            ColumnPlan("id", "id", "", "bigint", "none"),
            ColumnPlan("price", "price", "", "numeric", "numeric"),
            ColumnPlan("seen", "seen", "", "timestamptz", "timestamptz"),
        ),
        primary_key=("id",),
    )


def test_the_fast_form_hands_over_bytes() -> None:
    transform = transforms.build_batch_transform(_stamps_table(), encode=True)
    assert transform is not None
    batch = [(1, 9.5, "2025-01-01 10:00:00.5"), (2, 3, None), (3, "1.50", "0001-01-02 00:00:00")]
    out, _ = transform((batch, batch))
    assert out[0] == (
        1,
        codecs.numeric_bytes(Decimal("9.5")),
        codecs.timestamptz_micros(dt.datetime(2025, 1, 1, 10, 0, 0, 500000)),
    )
    assert out[1] == (2, codecs.numeric_bytes(3), None)
    # an edge year takes the checked path: an aware datetime, encoded by the codec
    assert out[2] == (3, codecs.numeric_bytes(Decimal("1.50")), dt.datetime(1, 1, 2, tzinfo=dt.UTC))


def test_a_batch_the_fast_form_cannot_take_gets_the_plain_one() -> None:
    """A timestamp with an offset: the whole batch as without ``encode``."""
    table = _stamps_table()
    batch = [(1, 9.5, "2025-01-01 10:00:00"), (2, 1.0, "2025-01-01 10:00:00+02:00")]
    fast, plain = (transforms.build_batch_transform(table, encode=e) for e in (True, False))
    assert fast is not None and plain is not None
    assert fast((batch, batch)) == plain((batch, batch))
    assert fast((batch, batch))[0][1][2] == dt.datetime(2025, 1, 1, 8, tzinfo=dt.UTC)


def test_the_numeric_cache_keeps_integers_and_reals_apart() -> None:
    """1 and 1.0 are equal dict keys but different numerics (scale 0 and 1)."""
    transform = transforms.build_batch_transform(_stamps_table(), encode=True)
    assert transform is not None
    batch = [(1, 1, None), (2, 1.0, None), (3, 1, None), (4, -0.0, None), (5, 0.0, None)]
    prices = [row[1] for row in transform((batch, batch))[0]]
    assert prices == [
        codecs.numeric_bytes(1),
        codecs.numeric_bytes(Decimal("1.0")),
        codecs.numeric_bytes(1),
        codecs.numeric_bytes(Decimal("-0.0")),
        codecs.numeric_bytes(Decimal("0.0")),
    ]


async def test_year_1_and_year_9999_arrive_as_written(tmp_path: Path, pg_dsn: str) -> None:
    """``0001-01-01 00:00:00`` (.NET's default date, which Entity Framework writes) and
    the last microsecond of 9999 in a DATETIME column: loaded as those instants (they
    were refused, as asyncpg would have sent -infinity and infinity), passing
    ``check --deep``; a sync then carries a new row holding one the same way."""
    source = tmp_path / "edge.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE e (id INTEGER PRIMARY KEY, at DATETIME NOT NULL)")
        conn.executemany(
            "INSERT INTO e VALUES (?, ?)",
            [
                (1, "0001-01-01 00:00:00"),
                (2, "9999-12-31 23:59:59.999999"),
                (3, "2024-05-06 07:08:09"),
            ],
        )
    settings = RunSettings(source, Target(pg_dsn, pg_dsn, "test"))
    report = await run_migration(settings)
    assert [(t.rows, t.rejected) for t in report.tables] == [(3, 0)]
    with sqlite3.connect(source) as conn:
        conn.execute("INSERT INTO e VALUES (4, '0001-01-01 00:00:00')")
    await sync.sync(settings)
    texts = await _texts(pg_dsn, "SELECT (at AT TIME ZONE 'UTC')::text FROM e ORDER BY id")
    assert texts == [
        "0001-01-01 00:00:00",
        "9999-12-31 23:59:59.999999",
        "2024-05-06 07:08:09",
        "0001-01-01 00:00:00",
    ]
    assert [r for r in await check(settings, DeepCheck()) if not r.ok] == []


async def _texts(dsn: str, sql: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r[0] for r in await conn.fetch(sql)]
    finally:
        await conn.close()
