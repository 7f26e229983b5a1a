"""A full disk where asyncmig writes its own files: a real file system that is full
(a small tmpfs, mounted for the test: root only, else skipped), never a mocked write.

- the log directory full from the start: the command refuses, in one line (exit 2);
- the log directory filling up during a run: the run goes on and succeeds, saying once
  that its log file and its rollback script's copy could not be written;
- the reject store full: the run fails in one line (exit 7) and the target keeps what
  it held, since a rejected row would otherwise have no record.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.gen_2truths import generate
from bench.gen_dirty import generate_dirty
from tests.fix_cli import Ran, RunMain, one_error_line
from tests.fix_pg import fetch

PAGE = 4096


def _mount(where: Path, pages: int) -> bool:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={pages * PAGE},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16-page file system, its own; the test fills it as it needs."""
    where = tmp_path / "small"
    if not _mount(where, 16):
        pytest.skip("mounting a tmpfs needs root (and the mount capability)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` until ``leave`` bytes are free (in whole pages)."""
    with (disk / "filler").open("wb") as out:
        while True:
            free = _free(disk)
            if free <= leave:
                return
            try:
                out.write(b"\0" * min(PAGE, free - leave))
                out.flush()
            except OSError:
                return


def _free(disk: Path) -> int:
    import os

    stats = os.statvfs(disk)
    return stats.f_bavail * stats.f_frsize


def run(run_main: RunMain, source: Path, dsn: str, schema: str, *more: str) -> Ran:
    return run_main(
        "run",
        *("--sqlite", str(source), "--pg", dsn, "--schema", schema, "--log-format", "json"),
        *more,
    )


def contents(dsn: str, schema: str) -> dict[str, str]:
    """Each table's rows, hashed in one order: a table that changed in any value differs."""
    tables = [
        r[0]
        for r in fetch(
            dsn, "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1", schema
        )
    ]
    return {
        t: fetch(
            dsn,
            f"SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY r::text), '')) FROM \"{schema}\".\"{t}\" r",
        )[0][0]
        for t in tables
    }


def test_a_full_log_directory_stops_the_command_before_it_does_anything(
    run_main: RunMain, small_disk: Path, tmp_path: Path, pg_dsn: str
) -> None:
    source = tmp_path / "app.db"
    generate(source, 2000, seed=3)
    fill(small_disk, 0)
    ran = run(run_main, source, pg_dsn, "app", "--log-dir", str(small_disk))
    assert ran.returncode == 2, ran.stderr
    line = one_error_line(ran.stderr)
    assert f"cannot write the log file in {small_disk}: No space left on device" in line
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no empty log left
    assert fetch(pg_dsn, "SELECT to_regclass('asyncmig.runs') IS NULL")[0][0]  # nothing done


def test_a_log_directory_filling_up_mid_run_lets_the_run_finish(
    run_main: RunMain, small_disk: Path, tmp_path: Path, pg_dsn: str
) -> None:
    """Room for the log's first events, not for the rest nor for the rollback script:
    the run succeeds, its copy passes ``check --deep``, and the history still holds
    the rollback ``asyncmig rollback`` reads."""
    source = tmp_path / "app.db"
    generate(source, 2000, seed=4)
    fill(small_disk, 2 * PAGE)
    ran = run(run_main, source, pg_dsn, "app", "--log-dir", str(small_disk))
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.count('"event":"log_file_failed"') == 1
    assert '"event":"rollback_script_not_written"' in ran.stderr
    assert "Traceback" not in ran.stderr and "asyncmig: error" not in ran.stderr
    assert not list(small_disk.glob("asyncmig_rollback_*"))  # no script cut short
    (log,) = small_disk.glob("migration_*.log")
    assert log.read_bytes().startswith(b'{"command":"run"')
    status, script, sql = fetch(
        pg_dsn, "SELECT status, rollback_script, rollback_sql FROM asyncmig.runs"
    )[0]
    assert (status, script) == ("succeeded", None)
    assert "DROP TABLE" in sql
    checked = run_main(
        "check", "--deep", "--sqlite", str(source), "--pg", pg_dsn, "--schema", "app"
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_full_reject_store_fails_the_run_and_keeps_the_target(
    run_main: RunMain, small_disk: Path, tmp_path: Path, pg_dsn: str
) -> None:
    """The reject file is a rejected row's only record: with no room for it the run
    fails in one line (exit 7) rather than load the table without it, and the copy an
    earlier run made is left exactly as it was."""
    source = tmp_path / "dirty.db"
    generate_dirty(source, 3000, seed=5, faults=4)
    logs = tmp_path / "logs"
    first = run(run_main, source, pg_dsn, "shop", "--log-dir", str(logs))
    assert first.returncode == 8, first.stderr  # loaded, with rows in the reject store
    # the table whose sampled plan the load refuted was rolled back quietly: the
    # rollback of its cancelled COPY is not cut short by the cancellation
    assert "Resetting connection" not in first.stderr
    before = contents(pg_dsn, "shop")
    fill(small_disk, 0)
    ran = run(
        run_main,
        source,
        pg_dsn,
        "shop",
        "--replace",
        *("--log-dir", str(logs), "--rejects", str(small_disk / "rejects")),
    )
    assert ran.returncode == 7, ran.stderr
    line = one_error_line(ran.stderr)
    assert "cannot write the reject file" in line and "No space left on device" in line
    assert contents(pg_dsn, "shop") == before
    runs = fetch(pg_dsn, "SELECT status FROM asyncmig.runs ORDER BY id")
    assert [r[0] for r in runs] == ["succeeded", "failed"]
    stages = fetch(pg_dsn, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'asyncmig_stage%'")
    assert stages[0][0] == 0


def test_a_backup_that_cannot_be_written_rolls_nothing_back(
    run_main: RunMain, small_disk: Path, tmp_path: Path, pg_dsn: str
) -> None:
    """``rollback --backup-dir`` on a full disk: exit 7 in one line, no backup cut short
    left to pass for one, and the run's tables where they were."""
    source = tmp_path / "app.db"
    generate(source, 2000, seed=6)
    ran = run(run_main, source, pg_dsn, "app", "--log-dir", str(tmp_path / "logs"))
    assert ran.returncode == 0, ran.stderr
    before = contents(pg_dsn, "app")
    fill(small_disk, 0)
    back = run_main(
        *("rollback", "--pg", pg_dsn, "--run", "1", "--backup-dir", str(small_disk)),
        "--force",
    )
    assert back.returncode == 7, back.stdout + back.stderr
    line = one_error_line(back.stderr)
    assert "cannot write the backup" in line and "nothing was rolled back" in line
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
    assert contents(pg_dsn, "app") == before
    assert fetch(pg_dsn, "SELECT status FROM asyncmig.runs")[0][0] == "succeeded"
