"""Compare every value of a migrated table with its SQLite source.

This is the tests' own oracle, written independently of asyncmig.transforms: it
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

from asyncmig.plan import ColumnPlan, Plan, TablePlan
from asyncmig.quoting import qualified, quote_ident, quote_sqlite_ident

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
            1_000_000 // EPOCH_DIVISOR[column.transform])
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
        per_second = next(d for limit, d in ((1e11, 1), (1e14, 1000), (1e17, 10**6))
                          if value < limit)
        micros = Decimal(repr(value) if isinstance(value, float) else value) * (
            1_000_000 // per_second)
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
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return bool(type(a) is type(b) and a == b) or (
        isinstance(a, Decimal) and isinstance(b, Decimal) and a == b
    )


def _key(row: tuple[Any, ...]) -> str:
    return repr(row)


async def assert_table_equal(sqlite_path: Path, conn: asyncpg.Connection, plan: Plan,
                             table: TablePlan) -> int:
    """Every row of ``table`` is in PostgreSQL with every value as the oracle expects."""
    src = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        names = ", ".join(quote_sqlite_ident(c.source_name) for c in table.columns)
        source_rows = src.execute(f"SELECT {names} FROM {quote_sqlite_ident(table.source_name)}").fetchall()
    finally:
        src.close()
    cols = ", ".join(quote_ident(c.name) for c in table.columns)
    target_rows = await conn.fetch(f"SELECT {cols} FROM {qualified(plan.schema, table.name)}")
    want = sorted((tuple(expected(c, v) for c, v in zip(table.columns, r, strict=True))
                   for r in source_rows), key=_key)
    got = sorted((tuple(actual(c, v) for c, v in zip(table.columns, r, strict=True))
                  for r in target_rows), key=_key)
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
