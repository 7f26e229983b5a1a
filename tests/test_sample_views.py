"""Northwind's 17 views and Sakila's 5, created in PostgreSQL and returning SQLite's rows.

The schemas and view definitions are the real ones (tests/data/*.sql, verbatim); the
rows are a few written the way those databases hold them (tests/sources.py). Each view
is read in both databases and compared value by value after one normalisation:

* numbers (int, float, Decimal) compare as floats rounded to 6 decimals: SQLite's REAL
  arithmetic and PostgreSQL's numeric give the same sums up to the last binary digits;
* a SQLite text value that is an ISO date or timestamp compares as a naive datetime,
  as does PostgreSQL's timestamptz in UTC (its dates at midnight), since the copy
  stores such text as timestamps;
* booleans compare as 0/1.

Rows compare as multisets, except for a view whose query ends in ORDER BY, whose order
must be the same.

One difference is known and left out of the rows: SQLite compares a date column with
``DATETIME('1997-01-01')`` as text, so a value written without a time, '1997-01-01',
sorts before '1997-01-01 00:00:00' and falls outside ``BETWEEN DATETIME('1997-01-01')
AND ...``; in PostgreSQL both are the same timestamp and inside. The rows here hold
'1997-12-31' at the upper bound, where both agree.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from asyncmig.connect import Target
from asyncmig.migrate import RunSettings, run_migration
from asyncmig.quoting import quote_ident, quote_sqlite_ident
from tests.sources import build_northwind, build_sakila

ORDERED = frozenset({"Customer and Suppliers by City"})


def normalised(value: Any) -> Any:
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


async def compare_views(source: Path, pg_dsn: str, expected_views: int,
                        ordered: frozenset[str] = ORDERED) -> dict[str, int]:
    """Run the migration, then every view's rows in both databases; row counts by view."""
    report = await run_migration(RunSettings(source, Target(pg_dsn, pg_dsn, "test")))
    assert [w for w in report.warnings if "view" in w] == []
    assert len(report.plan.views) == expected_views
    assert all(v.translated for v in report.plan.views), [
        (v.name, v.note) for v in report.plan.views if not v.translated]
    lite = sqlite3.connect(source)
    conn = await asyncpg.connect(pg_dsn)
    counts = {}
    try:
        for view in report.plan.views:
            want = lite.execute(f"SELECT * FROM {quote_sqlite_ident(view.name)}").fetchall()
            got = [tuple(r) for r in await conn.fetch(f"SELECT * FROM {quote_ident(view.name)}")]
            in_order = view.name in ordered
            assert rows_of(got, in_order) == rows_of(want, in_order), view.name
            names = [d[0] for d in lite.execute(
                f"SELECT * FROM {quote_sqlite_ident(view.name)}").description]
            pg_names = [a.name for a in (await conn.prepare(
                f"SELECT * FROM {quote_ident(view.name)}")).get_attributes()]
            assert pg_names == names, view.name
            counts[view.name] = len(want)
    finally:
        lite.close()
        await conn.close()
    return counts


async def test_northwind_views_return_sqlites_rows(tmp_path: Path, pg_dsn: str) -> None:
    """All 17 Northwind views exist in PostgreSQL and return exactly SQLite's rows."""
    counts = await compare_views(build_northwind(tmp_path / "northwind.db"), pg_dsn, 17)
    # the idioms each make a difference in these rows (nothing compares empty with empty)
    assert counts["Current Product List"] == 4  # Discontinued (text) = 0
    assert counts["Products by Category"] == 4  # Discontinued <> 1
    assert counts["Quarterly Orders"] == 4  # OrderDate BETWEEN DATETIME(...) AND DATETIME(...)
    assert counts["Category Sales for 1997"] == 3  # a view over a view with dates
    assert counts["Sales by Category"] == 4  # a view over a view
    assert counts["Invoices"] == 24  # FirstName + ' ' + LastName is a number in SQLite
    assert min(counts.values()) > 0


async def test_sakila_views_return_sqlites_rows(tmp_path: Path, pg_dsn: str) -> None:
    """All 5 Sakila views exist in PostgreSQL and return exactly SQLite's rows."""
    counts = await compare_views(build_sakila(tmp_path / "sakila.db"), pg_dsn, 5)
    assert counts == {"customer_list": 4, "film_list": 8, "staff_list": 2,
                      "sales_by_store": 2, "sales_by_film_category": 3}
