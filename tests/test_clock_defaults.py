"""Defaults that read SQLite's clock fill new PostgreSQL rows as SQLite fills its own.

One row is inserted without the clock columns in both databases after the migration,
and each value is compared with SQLite's: both must be set, text must have SQLite's
exact format (digits aside), and the instants they name must agree within the time
between the two inserts (allowed: two minutes; the times, not their speed, are tested).
Julian days and epoch seconds are compared as instants too; a time of day modulo a day.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg

from tests.fix_run import migrate

CLOCKS = """
CREATE TABLE ev (
  id INTEGER PRIMARY KEY,
  name TEXT,
  d1 DATE DEFAULT current_date,
  t1 TIME DEFAULT current_time,
  ts1 TIMESTAMP DEFAULT current_timestamp,
  ts2 DATETIME DEFAULT (datetime('now')),
  ts3 DATETIME DEFAULT (datetime('now','localtime')),
  week DATETIME DEFAULT (datetime('now', '+7 days')),
  e1 INTEGER DEFAULT (strftime('%s','now')),
  e2 INTEGER DEFAULT (unixepoch()),
  j1 REAL DEFAULT (julianday('now')),
  d2 TEXT DEFAULT (date('now')),
  txt1 TEXT DEFAULT CURRENT_TIMESTAMP,
  txt2 VARCHAR(30) DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  txt3 TEXT DEFAULT (strftime('%s','now')),
  txt4 TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
INSERT INTO ev (name) VALUES ('loaded');
"""
CLOCK_COLUMNS = [
    "d1",
    "t1",
    "ts1",
    "ts2",
    "ts3",
    "week",
    "e1",
    "e2",
    "j1",
    "d2",
    "txt1",
    "txt2",
    "txt3",
    "txt4",
]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def seconds(value: Any) -> float:
    """The instant a clock value names, as Unix seconds (a time of day: since midnight)."""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return (aware - EPOCH).total_seconds()
    if isinstance(value, dt.date):
        return seconds(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, dt.time):
        return value.hour * 3600 + value.minute * 60 + value.second
    if isinstance(value, float):  # a Julian day
        return (value - 2440587.5) * 86400
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return float(value)
    if re.fullmatch(r"\d\d:\d\d:\d\d", value):
        return seconds(dt.time.fromisoformat(value))
    return seconds(dt.datetime.fromisoformat(value))


def text_shape(value: Any) -> str | None:
    return re.sub(r"\d", "9", value) if isinstance(value, str) else None


async def test_clock_defaults_fill_new_rows_like_sqlite(tmp_path: Path, pg_dsn: str) -> None:
    """current_date/time/timestamp, datetime('now'[, 'localtime' | '+7 days']),
    strftime('%s'), unixepoch(), julianday('now'), date('now') into every column type."""
    source = tmp_path / "clocks.db"
    lite = sqlite3.connect(source)
    lite.executescript(CLOCKS)
    lite.commit()
    report = await migrate(source, pg_dsn)
    dropped = [s for s in report.plan.skipped if s.kind == "default"]
    assert dropped == []
    conn = await asyncpg.connect(pg_dsn)
    try:
        pg_row = await conn.fetchrow("INSERT INTO ev (name) VALUES ('new') RETURNING *")
    finally:
        await conn.close()
    lite.execute("INSERT INTO ev (name) VALUES ('new')")
    cursor = lite.execute(f"SELECT {', '.join(CLOCK_COLUMNS)} FROM ev WHERE name = 'new'")
    sqlite_row = dict(zip(CLOCK_COLUMNS, cursor.fetchone(), strict=True))
    lite.close()
    for column in CLOCK_COLUMNS:
        want, got = sqlite_row[column], pg_row[column]
        assert want is not None and got is not None, column
        if isinstance(got, str):
            assert text_shape(got) == text_shape(want), (column, got, want)
        difference = abs(seconds(got) - seconds(want))
        if column == "t1":
            difference = min(difference, 86400 - difference)
        limit = 86400 if column in ("d1", "d2") else 120  # a date may cross midnight
        assert difference <= limit, (column, got, want)
