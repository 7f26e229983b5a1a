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

from pathlib import Path

from tests.compare import compare_views
from tests.sources import build_northwind, build_sakila


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
    assert counts == {
        "customer_list": 4,
        "film_list": 8,
        "staff_list": 2,
        "sales_by_store": 2,
        "sales_by_film_category": 3,
    }
