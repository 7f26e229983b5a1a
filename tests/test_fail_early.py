"""What fails cheaply fails before any table is counted, sampled or scanned.

The run's log file records every event in order: the planner logs ``profile_started``
before it counts the first row and ``table_profiled`` per table, so a refused run
whose log holds neither read no row. A successful run of the same source shows both
events, so their absence means something.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fix_cli import one_error_line, run_cli
from tests.fix_pg import as_user, fetch, role_without_create, with_database

SCANS = {"profile_started", "table_profiled", "column_planned", "planned"}


def build(path: Path, rows: int = 30_000) -> Path:
    """A source whose big table is sampled (more rows than a sample) and a small one."""
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE big(id INTEGER PRIMARY KEY, body TEXT, at TIMESTAMP);"
        "CREATE TABLE small(id INTEGER PRIMARY KEY, name TEXT);"
    )
    conn.executemany(
        "INSERT INTO big VALUES (?, ?, ?)",
        ((i, f"row {i}", f"2024-01-01 00:00:{i % 60:02d}") for i in range(1, rows + 1)),
    )
    conn.executemany("INSERT INTO small VALUES (?, ?)", [(i, f"s{i}") for i in range(1, 51)])
    conn.commit()
    conn.close()
    return path


def logged_events(log_dir: Path) -> list[dict[str, Any]]:
    """Every event of the runs logged in ``log_dir``, in order (one run per directory)."""
    files = sorted(log_dir.glob("migration_*.log"))
    assert len(files) == 1, files
    return [json.loads(line) for line in files[0].read_text().splitlines() if line]


def cli(log_dir: Path, *args: str) -> tuple[int, str, list[dict[str, Any]]]:
    done = run_cli(*args, "--log-format", "json", env={"ASYNCMIG_LOG_DIR": str(log_dir)})
    return done.returncode, done.stderr, logged_events(log_dir)


def refused_unread(events: list[dict[str, Any]], exit_code: int) -> dict[str, Any]:
    """The run failed with ``exit_code`` and logged no scan of any kind before it."""
    names = [e["event"] for e in events]
    assert names[-1] == "run_failed", names
    assert not SCANS & set(names), names
    assert "planning" not in [e.get("phase") for e in events if e["event"] == "phase_started"]
    failed = events[-1]
    assert failed["exit_code"] == exit_code
    return failed


def test_existing_tables_are_refused_before_any_table_scan(tmp_path: Path, pg_dsn: str) -> None:
    source = build(tmp_path / "a.db")
    code, stderr, events = cli(tmp_path / "first", "run", "--sqlite", str(source), "--pg", pg_dsn)
    assert code == 0, stderr
    names = [e["event"] for e in events]
    assert names.index("profile_started") < names.index("table_profiled") < names.index("planned")
    assert {e["table"] for e in events if e["event"] == "table_profiled"} == {"big", "small"}

    code, stderr, events = cli(tmp_path / "again", "run", "--sqlite", str(source), "--pg", pg_dsn)
    assert code == 4
    line = one_error_line(stderr.splitlines()[-1])
    assert '"public"."big", "public"."small": already exists in the target' in line
    failed = refused_unread(events, 4)
    assert "already exists" in failed["message"]
    runs = fetch(pg_dsn, "SELECT status, error_class FROM asyncmig.runs ORDER BY id")
    assert [tuple(r) for r in runs] == [("succeeded", None), ("failed", "TargetError")]
    assert fetch(pg_dsn, "SELECT count(*) FROM public.big")[0][0] == 30_000  # untouched


def test_existing_tables_with_replace_are_planned_and_replaced(tmp_path: Path, pg_dsn: str) -> None:
    """The early check refuses only what the run would refuse: --replace goes on."""
    source = build(tmp_path / "a.db", rows=2_000)
    assert cli(tmp_path / "first", "run", "--sqlite", str(source), "--pg", pg_dsn)[0] == 0
    code, stderr, events = cli(
        tmp_path / "again", "run", "--sqlite", str(source), "--pg", pg_dsn, "--replace"
    )
    assert code == 0, stderr
    assert "table_profiled" in [e["event"] for e in events]
    assert tuple(fetch(pg_dsn, "SELECT count(*), max(body) FROM public.big")[0]) == (
        2_000,
        "row 999",
    )


@pytest.fixture
async def no_create_role(pg_dsn: str) -> AsyncIterator[str]:
    """A LOGIN role that may keep the history but may not create tables in ``public``."""
    grants = ("CREATE SCHEMA asyncmig", "GRANT USAGE, CREATE ON SCHEMA asyncmig TO {role}")
    async with role_without_create(pg_dsn, "e", *grants) as role:
        yield role


def test_missing_create_privilege_is_refused_before_any_table_scan(
    tmp_path: Path, pg_dsn: str, no_create_role: str
) -> None:
    source = build(tmp_path / "a.db")
    dsn = as_user(pg_dsn, no_create_role)
    code, stderr, events = cli(tmp_path / "logs", "run", "--sqlite", str(source), "--pg", dsn)
    assert code == 4
    line = one_error_line(stderr.splitlines()[-1])
    assert f"{no_create_role} cannot create tables in schema " in line
    assert f'GRANT CREATE ON SCHEMA "public" TO "{no_create_role}"' in line  # the fix
    refused_unread(events, 4)
    assert fetch(pg_dsn, "SELECT to_regclass('public.big') IS NULL")[0][0]


def test_data_into_missing_tables_is_refused_before_any_table_scan(
    tmp_path: Path, pg_dsn: str
) -> None:
    source = build(tmp_path / "a.db")
    code, stderr, events = cli(tmp_path / "logs", "data", "--sqlite", str(source), "--pg", pg_dsn)
    assert code == 4
    line = one_error_line(stderr.splitlines()[-1])
    assert "cannot load data: " in line and "does not exist (and 1 more)" in line
    refused_unread(events, 4)


def logged_if_any(log_dir: Path) -> list[dict[str, Any]]:
    """The run's events, or none when it stopped before its log was opened."""
    return logged_events(log_dir) if list(log_dir.glob("migration_*.log")) else []


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--jobs", "0"), "--jobs is expected to be at least 1, got 0"),
        (("--workers", "bogus"), "--workers is expected to be one of auto, process, inline"),
        (("--batch-size", "many"), "--batch-size"),
    ],
)
def test_a_bad_option_is_refused_before_anything_is_read(
    tmp_path: Path, pg_dsn: str, option: tuple[str, str], message: str
) -> None:
    """Refused while the options are read: no log, no history, nothing made."""
    source = build(tmp_path / "a.db")
    log_dir = tmp_path / "logs"
    args = ("run", "--sqlite", str(source), "--pg", pg_dsn, *option)
    done = run_cli(*args, env={"ASYNCMIG_LOG_DIR": str(log_dir)})
    assert done.returncode == 2, done.stderr
    assert message in one_error_line(done.stderr)
    assert not SCANS & {e["event"] for e in logged_if_any(log_dir)}
    made = "SELECT to_regclass('asyncmig.runs') IS NULL AND to_regclass('public.big') IS NULL"
    assert fetch(pg_dsn, made)[0][0]


def test_a_profile_naming_a_missing_column_is_refused_before_any_table_scan(
    tmp_path: Path, pg_dsn: str
) -> None:
    source = build(tmp_path / "a.db")
    profile = tmp_path / "p.toml"
    profile.write_text('[tables.big.columns.nope]\ntype = "text"\n')
    code, stderr, events = cli(
        tmp_path / "logs", "run", "--sqlite", str(source), "--pg", pg_dsn, "--config", str(profile)
    )
    assert code == 2, stderr
    assert "names big.nope, which the source does not have" in one_error_line(stderr)
    refused_unread(events, 2)
    assert fetch(pg_dsn, "SELECT to_regclass('public.big') IS NULL")[0][0]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("postgresql://asyncmig@127.0.0.1:1/postgres", "Connect call failed"),
        ("no_such_database", "the database does not exist"),
    ],
)
def test_a_bad_dsn_is_refused_before_any_table_scan(
    tmp_path: Path, pg_dsn: str, target: str, message: str
) -> None:
    """A server that does not answer, a database that does not exist: exit 4 on
    connecting, before the plan."""
    source = build(tmp_path / "a.db")
    dsn = target if "://" in target else with_database(pg_dsn, target)
    code, stderr, events = cli(tmp_path / "logs", "run", "--sqlite", str(source), "--pg", dsn)
    assert code == 4, stderr
    line = one_error_line(stderr)
    assert line.startswith("asyncmig: error: cannot connect to ") and message in line
    refused_unread(events, 4)
