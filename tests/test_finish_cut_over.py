"""A run killed after its cut-over committed: the plain re-run finishes its job.

The state is forced as a kill between the cut-over and the run's last steps leaves it
(tests/test_kill_anywhere.py reaches it by kill -9): the history row ``interrupted``,
with its cut-over recorded but no final state, rollback or plan. Real server, real
SQLite file; every claim is read back from the history.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from asyncmig.target.history import ABANDONED
from tests.fault_sources import build_fault_source
from tests.fix_cli import RunMain
from tests.fix_faults import EVERYTHING, public_tables
from tests.fix_pg import fetch

N = 2_000
ROWS = {"parent": N, "child": 3 * N, "tag": N // 4}  # what build_fault_source makes


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fault_source(tmp_path_factory.mktemp("cut") / "app.db", rows=N)


@pytest.fixture
def source(built: Path, tmp_path: Path) -> Path:
    """A copy of its own: a test may write to it."""
    return Path(shutil.copy2(built, tmp_path / "app.db"))


def killed_after_cut_over(dsn: str, run_id: int) -> None:
    """The succeeded run ``run_id`` as a kill -9 right after its cut-over left it: the
    tables in place, its cut-over recorded, nothing after it (the next run then marks it
    interrupted, as it does)."""
    fetch(
        dsn,
        "UPDATE asyncmig.runs SET status = 'running', finished_at = NULL, rows_loaded = NULL, "
        "seconds = NULL, rollback_sql = NULL, rollback_script = NULL, finish_xid = NULL, "
        "dependents = NULL, options = options - 'plan' - 'planned_from' WHERE id = $1",
        run_id,
    )
    fetch(
        dsn,
        "UPDATE asyncmig.run_tables SET final_rows = NULL, checksum = NULL, max_key = NULL "
        "WHERE run_id = $1",
        run_id,
    )


def run(run_main: RunMain, source: Path, dsn: str, *extra: str) -> tuple[int, str, str]:
    return run_main("run", "--sqlite", str(source), "--pg", dsn, *extra)


def table_oids(dsn: str) -> dict[str, int]:
    """The target's tables by identity: loading again would put new tables in place."""
    rows = fetch(
        dsn,
        "SELECT relname, oid::bigint FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relkind = 'r'",
    )
    return {r[0]: int(r[1]) for r in rows}


def test_rerun_finishes_a_run_killed_after_its_cut_over(
    source: Path, pg_dsn: str, run_main: RunMain, tmp_path: Path
) -> None:
    """The plain re-run checks the target against the source, loads nothing, and records
    for the killed run what it did not: its final state, its rollback and the status
    ``succeeded``; the re-run itself succeeds with resumed_from = the killed run and no
    table of its own. `check --deep` passes, and `rollback --run N` undoes the killed run."""
    code, _, stderr = run(run_main, source, pg_dsn)
    assert code == 0, stderr
    killed_after_cut_over(pg_dsn, 1)
    before = table_oids(pg_dsn)
    code, stdout, stderr = run(run_main, source, pg_dsn)
    assert code == 0, stderr
    assert "run 1 had completed its cut-over; finished it: state and rollback recorded" in stdout
    assert table_oids(pg_dsn) == before  # nothing loaded again
    first, second = fetch(pg_dsn, "SELECT * FROM asyncmig.runs ORDER BY id")
    assert (first["status"], first["error"], first["rows_loaded"]) == (
        "succeeded",
        None,
        sum(ROWS.values()),
    )
    assert "asyncmig rollback for run 1" in first["rollback_sql"]
    assert first["finish_xid"] is not None and "plan" in first["options"]
    assert (second["status"], second["resumed_from"], second["rows_loaded"]) == ("succeeded", 1, 0)
    assert second["rollback_sql"] is None
    state = fetch(
        pg_dsn, "SELECT run_id, table_name, final_rows, checksum FROM asyncmig.run_tables"
    )
    assert {r["table_name"]: r["final_rows"] for r in state} == ROWS
    assert {r["run_id"] for r in state} == {1} and all(r["checksum"] is not None for r in state)
    code, _, stderr = run_main("check", "--sqlite", str(source), "--pg", pg_dsn, "--deep")
    assert code == 0, stderr
    code, stdout, stderr = run_main("status", "--pg", pg_dsn)
    assert code == 0 and "  finished run 1 (killed after its cut-over)" in stdout, stderr
    code, _, stderr = run_main("rollback", "--pg", pg_dsn, "--run", "1", "--check")
    assert code == 0, stderr  # safe: the re-run wrote nothing
    code, _, stderr = run_main(
        "rollback", "--pg", pg_dsn, "--run", "1", "--backup-dir", str(tmp_path)
    )
    assert code == 0, stderr
    assert public_tables(pg_dsn) == []
    assert fetch(pg_dsn, "SELECT status FROM asyncmig.runs WHERE id = 1")[0][0] == "rolled back"


def test_changed_source_or_options_keep_the_refusal(
    source: Path, pg_dsn: str, run_main: RunMain
) -> None:
    """Other data options, or a source written since: not the killed run's job, so the
    re-run refuses as before, naming the killed run, and records nothing for it."""
    code, _, stderr = run(run_main, source, pg_dsn)
    assert code == 0, stderr
    killed_after_cut_over(pg_dsn, 1)
    code, _, stderr = run(run_main, source, pg_dsn, "--max-rejects", "7")
    assert code == 4 and "run 1 was interrupted after its cut-over committed" in stderr, stderr
    with sqlite3.connect(source) as db:
        db.execute("DELETE FROM tag WHERE rowid = (SELECT max(rowid) FROM tag)")
    db.close()
    code, _, stderr = run(run_main, source, pg_dsn)
    assert code == 4 and "run 1 was interrupted after its cut-over committed" in stderr, stderr
    first = fetch(pg_dsn, "SELECT status, rollback_sql, error FROM asyncmig.runs WHERE id = 1")[0]
    assert (first["status"], first["rollback_sql"], first["error"]) == (
        "interrupted",
        None,
        ABANDONED,
    )
    assert public_tables(pg_dsn) == EVERYTHING
