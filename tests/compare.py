"""Compare every value of a migrated table with its SQLite source.

This is the tests' own oracle, written independently of asyncmig.load.transforms: it
says what each SQLite value must look like in PostgreSQL for each target type,
so a transform that changes a value fails here instead of agreeing with itself.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
import sqlite3
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from asyncmig.plan.model import ColumnPlan, Plan, TablePlan
from asyncmig.quoting import qualified, quote_ident, quote_sqlite_ident
from tests.fix_run import migrate

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DIVISOR = {"epoch_s": 1, "epoch_ms": 1000, "epoch_us": 1_000_000}


def expected(column: ColumnPlan, value: Any) -> Any:
    """What ``value`` from SQLite must be after migration into ``column``."""
    if value is None:
        return None
    base = column.target_type.split("(")[0].strip()
    if column.transform.startswith("sqlite_") and isinstance(value, int | float):
        return dated_number(column, value)
    if column.transform in EPOCH_DIVISOR:
        micros = Decimal(repr(value) if isinstance(value, float) else value) * (
            1_000_000 // EPOCH_DIVISOR[column.transform]
        )
        return EPOCH + dt.timedelta(microseconds=int(micros.to_integral_value()))
    if base in ("bigint", "integer", "smallint"):
        return int(value)
    if base == "double precision":
        return float(value)
    if base == "numeric":
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if base in ("text", "varchar", "character varying"):
        return repr(value) if isinstance(value, float) else str(value)
    if base == "bytea":
        return bytes(value) if isinstance(value, bytes) else str(value).encode()
    if base == "jsonb":
        return json.loads(value, parse_float=Decimal)
    if base == "uuid":
        return uuid.UUID(value)
    if base == "inet":
        return ipaddress.ip_interface(value)
    if base == "boolean":
        return value in (1, "1") or str(value).lower() in ("t", "true")
    if base == "timestamptz":
        parsed = dt.datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if base == "timestamp":
        return dt.datetime.fromisoformat(value)
    if base == "date":
        return dt.date.fromisoformat(value)
    if base == "time":
        return dt.time.fromisoformat(value)
    raise AssertionError(f"no oracle for target type {column.target_type}")


def dated_number(column: ColumnPlan, value: float) -> Any:
    """A number in a date column: a Julian day as SQLite's strftime() reads it, else a
    Unix time whose unit its magnitude says."""
    if value < 5373484.5:
        conn = sqlite3.connect(":memory:")
        try:
            text = conn.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', ?)", (value,)).fetchone()[0]
        finally:
            conn.close()
        stamp = dt.datetime.fromisoformat(text).replace(tzinfo=UTC)
    else:
        per_second = next(
            d for limit, d in ((1e10, 1), (1e13, 1000), (1e17, 10**6)) if value < limit
        )
        micros = Decimal(repr(value) if isinstance(value, float) else value) * (
            1_000_000 // per_second
        )
        stamp = EPOCH + dt.timedelta(microseconds=int(micros.to_integral_value()))
    if column.transform == "sqlite_date":
        return stamp.date()
    return stamp if column.transform == "sqlite_timestamptz" else stamp.replace(tzinfo=None)


def actual(column: ColumnPlan, value: Any) -> Any:
    """A PostgreSQL value in the form :func:`expected` produces."""
    if value is None:
        return None
    base = column.target_type.split("(")[0].strip()
    if base == "jsonb":
        return json.loads(value, parse_float=Decimal)
    if base == "uuid":
        return uuid.UUID(str(value))
    if base == "inet":
        return ipaddress.ip_interface(str(value))
    return value


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    return bool(type(a) is type(b) and a == b) or (
        isinstance(a, Decimal) and isinstance(b, Decimal) and a == b
    )


def _key(row: tuple[Any, ...]) -> str:
    return repr(row)


async def assert_table_equal(
    sqlite_path: Path, conn: asyncpg.Connection, plan: Plan, table: TablePlan
) -> int:
    """Every row of ``table`` is in PostgreSQL with every value as the oracle expects."""
    src = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        names = ", ".join(quote_sqlite_ident(c.source_name) for c in table.columns)
        source_rows = src.execute(
            f"SELECT {names} FROM {quote_sqlite_ident(table.source_name)}"
        ).fetchall()
    finally:
        src.close()
    cols = ", ".join(quote_ident(c.name) for c in table.columns)
    target_rows = await conn.fetch(f"SELECT {cols} FROM {qualified(plan.schema, table.name)}")
    want = sorted(
        (tuple(expected(c, v) for c, v in zip(table.columns, r, strict=True)) for r in source_rows),
        key=_key,
    )
    got = sorted(
        (tuple(actual(c, v) for c, v in zip(table.columns, r, strict=True)) for r in target_rows),
        key=_key,
    )
    assert len(want) == len(got), f"{table.name}: {len(want)} source rows, {len(got)} target rows"
    for w, g in zip(want, got, strict=True):
        for column, a, b in zip(table.columns, w, g, strict=True):
            assert same(a, b), f"{table.name}.{column.name}: expected {a!r}, got {b!r}"
    return len(want)


async def assert_all_equal(sqlite_path: Path, dsn: str, plan: Plan) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return sum([await assert_table_equal(sqlite_path, conn, plan, t) for t in plan.tables])
    finally:
        await conn.close()


ORDERED = frozenset({"Customer and Suppliers by City"})


def normalised(value: Any) -> Any:
    """``value`` as a view comparison sees it: numbers rounded, dates as naive datetimes."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | Decimal):
        return round(float(value), 6)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str) and len(value) >= 10 and value[4:5] == "-" and value[7:8] == "-":
        try:
            return normalised(dt.datetime.fromisoformat(value))
        except ValueError:
            return value
    return value


def rows_of(rows: list[tuple[Any, ...]], ordered: bool) -> list[tuple[Any, ...]]:
    result = [tuple(normalised(v) for v in row) for row in rows]
    return result if ordered else sorted(result, key=repr)


async def compare_views(
    source: Path, pg_dsn: str, expected_views: int, ordered: frozenset[str] = ORDERED
) -> dict[str, int]:
    """Run the migration, then every view's rows in both databases; row counts by view.

    Values compare after ``normalised`` (see tests/test_sample_views.py for why), rows as
    multisets except in the views named in ``ordered``.
    """
    report = await migrate(source, pg_dsn)
    assert [w for w in report.warnings if "view" in w] == []
    assert len(report.plan.views) == expected_views
    assert all(v.translated for v in report.plan.views), [
        (v.name, v.note) for v in report.plan.views if not v.translated
    ]
    lite = sqlite3.connect(source)
    conn = await asyncpg.connect(pg_dsn)
    counts = {}
    try:
        for view in report.plan.views:
            want = lite.execute(f"SELECT * FROM {quote_sqlite_ident(view.name)}").fetchall()
            got = [tuple(r) for r in await conn.fetch(f"SELECT * FROM {quote_ident(view.name)}")]
            in_order = view.name in ordered
            assert rows_of(got, in_order) == rows_of(want, in_order), view.name
            names = [
                d[0]
                for d in lite.execute(f"SELECT * FROM {quote_sqlite_ident(view.name)}").description
            ]
            pg_names = [
                a.name
                for a in (
                    await conn.prepare(f"SELECT * FROM {quote_ident(view.name)}")
                ).get_attributes()
            ]
            assert pg_names == names, view.name
            counts[view.name] = len(want)
    finally:
        lite.close()
        await conn.close()
    return counts
