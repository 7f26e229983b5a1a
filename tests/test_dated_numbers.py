"""Numbers in date columns are read as SQLite's own date functions read them.

SQLite's ``julianday()`` writes REAL Julian day numbers and ``datetime(x)`` reads them
back; numbers beyond 5373484.5 are Unix times. Each value is read on its own (a column
may hold seconds and milliseconds), a column whose numbers have no reading keeps them
as numbers with a warning, and ``check --deep`` computes the dates inside SQLite, so a
value the load read differently is a difference.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from asyncmig.check.deep import deep_check
from asyncmig.cli import commands, render
from asyncmig.cli.settings import DeepCheck
from asyncmig.load.transforms import TRANSFORMS
from asyncmig.plan import datenums
from asyncmig.run import make_plan
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target
from tests.compare import assert_all_equal
from tests.fix_pg import fetch_async
from tests.fix_run import from_profile, migrate

UTC = dt.UTC
EIGHT_AM = dt.datetime(2024, 1, 1, 8, 0, tzinfo=UTC)


def build(path: Path, script: str) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()
    return path


JULIAN = """
CREATE TABLE e(id INTEGER PRIMARY KEY, at DATETIME, day DATE, whole DATE);
INSERT INTO e(at, day, whole) VALUES (julianday('2024-01-01 08:00:00'),
    julianday('2024-01-01 08:00:00'), julianday('2024-01-01'));
INSERT INTO e(at, day, whole) VALUES (julianday('1999-12-31 23:59:59.250'),
    julianday('2000-02-29 12:30:00'), julianday('2000-02-29'));
"""


def sqlite_rows(source: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(source)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_julian_days_in_datetime_and_date_columns(tmp_path: Path, pg_dsn: str) -> None:
    """The issue's reproduction: 2024-01-01 08:00:00+00, not 1970-01-29, in both columns;
    a DATE column of whole Julian days stays a date; every value is what SQLite's own
    datetime() reads."""
    source = build(tmp_path / "julian.db", JULIAN)
    report = await migrate(source, pg_dsn)
    table = report.plan.table("e")
    assert [(c.target_type, c.transform) for c in table.columns[1:]] == [
        ("timestamptz", "sqlite_timestamptz"),
        ("timestamptz", "sqlite_timestamptz"),
        ("date", "sqlite_date"),
    ]
    assert "2 Julian day numbers" in table.column("at").evidence
    assert any("carry a time of day" in w for w in table.column("day").warnings)
    rows = await fetch_async(pg_dsn, "SELECT at, day, whole FROM e ORDER BY id")
    assert [tuple(r) for r in rows] == [
        (EIGHT_AM, EIGHT_AM, dt.date(2024, 1, 1)),
        (
            dt.datetime(1999, 12, 31, 23, 59, 59, 250000, tzinfo=UTC),
            dt.datetime(2000, 2, 29, 12, 30, tzinfo=UTC),
            dt.date(2000, 2, 29),
        ),
    ]
    sqlite_says = sqlite_rows(
        source,
        "SELECT strftime('%Y-%m-%d %H:%M:%f', at), "
        "strftime('%Y-%m-%d %H:%M:%f', day), date(whole) FROM e ORDER BY id",
    )
    pg_says = await fetch_async(
        pg_dsn,
        "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), "
        "to_char(day AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), "
        "whole::text FROM e ORDER BY id",
    )
    assert [tuple(r) for r in pg_says] == sqlite_says
    assert await assert_all_equal(source, pg_dsn, report.plan) == 2
    assert all(
        r.ok
        for r in await commands.check(
            RunSettings(source, Target(pg_dsn, pg_dsn, "test")), DeepCheck()
        )
    )


async def test_the_plan_shows_the_evidence(tmp_path: Path) -> None:
    """`plan` names how the numbers are read, before anything is loaded."""
    source = build(tmp_path / "julian.db", JULIAN)
    plan = await make_plan(RunSettings(source, Target(None, "", "none")))
    text = render.plan_text(plan)
    assert "DATETIME -> timestamptz" in text
    assert "numbers read as SQLite's date functions read them: 2 Julian day numbers" in text


SEVERAL_UNITS = """
CREATE TABLE s(id INTEGER PRIMARY KEY, at DATETIME);
INSERT INTO s VALUES (1, 1700000000), (2, 1700000000123), (3, 1700000000123456),
    (4, 1700000000.5), (5, 2460310.5), (6, NULL);
"""


async def test_each_value_is_read_in_its_own_unit(tmp_path: Path, pg_dsn: str) -> None:
    """1700000000 is seconds and 1700000000123 milliseconds in one column: neither shifts."""
    source = build(tmp_path / "units.db", SEVERAL_UNITS)
    report = await migrate(source, pg_dsn)
    column = report.plan.table("s").column("at")
    assert column.target_type == "timestamptz"
    assert "2 Unix seconds, 1 Unix milliseconds, 1 Unix microseconds" in column.evidence
    assert any("several kinds" in w for w in column.warnings)
    base = dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    rows = await fetch_async(pg_dsn, "SELECT at FROM s ORDER BY id")
    assert [r[0] for r in rows] == [
        base,
        base + dt.timedelta(microseconds=123000),
        base + dt.timedelta(microseconds=123456),
        base + dt.timedelta(microseconds=500000),
        dt.datetime(2024, 1, 1, tzinfo=UTC),
        None,
    ]
    assert await assert_all_equal(source, pg_dsn, report.plan) == 6  # the tests' own oracle
    # SQLite's own reading of the seconds and of the Julian day agrees
    assert sqlite_rows(source, "SELECT datetime(at, 'auto') FROM s WHERE id IN (1, 5)") == [
        ("2023-11-14 22:13:20",),
        ("2024-01-01 00:00:00",),
    ]


async def test_ambiguous_numbers_stay_numbers_with_a_warning(tmp_path: Path, pg_dsn: str) -> None:
    """0 is a Julian day before year 1 by SQLite's rule, or 1970 as a Unix time: the
    column keeps its numbers, unchanged, and the plan says why."""
    source = build(
        tmp_path / "ambiguous.db",
        """
        CREATE TABLE a(id INTEGER PRIMARY KEY, at DATETIME);
        INSERT INTO a VALUES (1, 0), (2, 1700000000);""",
    )
    report = await migrate(source, pg_dsn)
    column = report.plan.table("a").column("at")
    assert column.target_type == "bigint"
    assert any("no date reading" in w and "ambiguous" in w for w in report.warnings)
    assert [r[0] for r in await fetch_async(pg_dsn, "SELECT at FROM a ORDER BY id")] == [
        0,
        1700000000,
    ]


async def test_deep_check_passes_and_catches_a_changed_date(tmp_path: Path, pg_dsn: str) -> None:
    """Correct conversions pass; one millisecond changed behind the tool's back fails."""
    source = build(tmp_path / "units.db", SEVERAL_UNITS + JULIAN)
    report = await migrate(source, pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert all(r.ok for r in await deep_check(report.plan, conn, source))
        await conn.execute("UPDATE e SET at = at + interval '1 millisecond' WHERE id = 1")
        results = await deep_check(report.plan, conn, source, explain=True)
    finally:
        await conn.close()
    assert [(r.table, r.ok) for r in results] == [("s", True), ("e", False)] or [
        (r.table, r.ok) for r in results
    ] == [("e", False), ("s", True)]
    assert "id=1: at differs" in next(r.found for r in results if r.table == "e")


async def test_deep_check_reads_dates_in_sqlite_not_with_the_loads_conversion(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A load that read Julian days as Unix seconds (the old 1970-01-29 bug, forced here by
    a profile) is caught: `check --deep` re-plans and lets SQLite read the numbers."""
    source = build(tmp_path / "julian.db", JULIAN)
    wrong = {"tables": {"e": {"columns": {"at": {"type": "timestamptz", "epoch": "s"}}}}}
    await migrate(source, pg_dsn, overrides=from_profile(wrong))
    rows = await fetch_async(pg_dsn, "SELECT at FROM e ORDER BY id")
    assert rows[0][0].date() == dt.date(1970, 1, 29)  # the wrong reading is in PostgreSQL
    results = await commands.check(
        RunSettings(source, Target(pg_dsn, pg_dsn, "test")), DeepCheck(explain=True)
    )
    failed = [r for r in results if not r.ok]
    assert [(r.check, r.table) for r in failed] == [("checksum", "e")]
    assert "at differs" in failed[0].found


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2460310.5, "2024-01-01 00:00:00.000000"),
        (5373484.4, "9999-12-31 21:36:00.000000"),
        (5373484.5, "1970-03-04 04:38:04.500000"),
        (9999999999, "2286-11-20 17:46:39.000000"),
        (10000000000, "1970-04-26 17:46:40.000000"),
        (31622400000, "1971-01-02 00:00:00.000000"),  # Prisma's milliseconds, not 2972
        (1700000000123.25, "2023-11-14 22:13:20.123250"),
        (10**13, "1970-04-26 17:46:40.000000"),
    ],
)
def test_python_and_sqlite_read_every_range_alike(value: float, expected: str) -> None:
    """The load's reading (Python) and check --deep's (SQLite's strftime) at each boundary."""
    conn = sqlite3.connect(":memory:")
    try:
        in_sqlite = conn.execute(
            f"SELECT {datenums.sql_reading('v')} FROM (SELECT ? AS v)", (value,)
        ).fetchone()[0]
    finally:
        conn.close()
    loaded = TRANSFORMS["sqlite_timestamp"](value)  # type: ignore[misc]
    assert in_sqlite == expected == loaded.isoformat(sep=" ", timespec="microseconds")


@pytest.mark.parametrize("value", [0, 1, 1721425.4, -1, 1e17])
def test_numbers_without_a_reading_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="no date reading"):
        TRANSFORMS["sqlite_timestamptz"](value)  # type: ignore[misc]
