"""`check` right after a successful `run` expects what the run's --orphans policy produced.

SQLite keeps orphaned foreign keys unless told otherwise; `run --orphans keep` loads
them and leaves the key NOT VALID. A later `check` must then expect the source's own
orphan count (counted by SQLite), not "0 orphans, validated" -- and still notice an
orphan added behind the tool's back.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg

from asyncmig.check.verify import CheckResult
from asyncmig.cli import commands
from asyncmig.plan.overrides import Overrides
from asyncmig.run import run_migration
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target
from tests.fix_cli import RunMain

ISSUE_SQL = """
CREATE TABLE p(id INTEGER PRIMARY KEY);
CREATE TABLE c(id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id));
INSERT INTO p VALUES (1);
INSERT INTO c VALUES (1,1),(2,99);
"""


def orphaned(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(ISSUE_SQL)
    conn.commit()
    conn.close()
    return path


def foreign_key_rows(results: list[CheckResult]) -> list[tuple[str, str, bool]]:
    return [(r.expected, r.found, r.ok) for r in results if r.check == "foreign key"]


def test_check_after_run_with_kept_orphans_passes(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    """The issue's reproduction through the command line: run exits 0, check exits 0."""
    source = orphaned(tmp_path / "orphans.db")
    run = run_main("run", "--sqlite", str(source), "--pg", pg_dsn, "--log-dir", str(tmp_path))
    assert run.returncode == 0, run.stderr
    check = run_main("check", "--sqlite", str(source), "--pg", pg_dsn)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "1 orphan (as in SQLite), NOT VALID" in check.stdout


async def test_an_orphan_added_behind_the_back_fails(tmp_path: Path, pg_dsn: str) -> None:
    """The expectation is the source's count, so one more orphan in PostgreSQL is a failure."""
    source = orphaned(tmp_path / "orphans.db")
    settings = RunSettings(source, Target(pg_dsn, pg_dsn, "test"))
    await run_migration(settings)
    assert foreign_key_rows(await commands.check(settings)) == [
        ("1 orphan (as in SQLite), NOT VALID", "1 orphan, NOT VALID", True)
    ]
    conn = await asyncpg.connect(pg_dsn)
    try:
        # behind the tool's back: foreign-key triggers off, as a restore tool would do
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("INSERT INTO c VALUES (3, 77)")
    finally:
        await conn.close()
    assert foreign_key_rows(await commands.check(settings)) == [
        ("1 orphan (as in SQLite), NOT VALID", "2 orphans, NOT VALID", False)
    ]


async def test_check_expects_the_policy_the_run_used(tmp_path: Path, pg_dsn: str) -> None:
    """A run with --orphans null left no orphan: check (without the option) expects that,
    read from the run's history, and the cleared reference is NULL in PostgreSQL."""
    source = orphaned(tmp_path / "orphans.db")
    target = Target(pg_dsn, pg_dsn, "test")
    await run_migration(RunSettings(source, target, overrides=Overrides(orphans="null")))
    results = await commands.check(RunSettings(source, target))
    assert foreign_key_rows(results) == [("0 orphans, validated", "0 orphans, validated", True)]
    assert all(r.ok for r in results)
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetch("SELECT id, p_id FROM c ORDER BY id") == [(1, 1), (2, None)]
    finally:
        await conn.close()
