"""A full disk where asyncmig writes its own files: a real file system that is full
(a small tmpfs, mounted for the test: root only, else skipped), never a mocked write.

- the log directory full from the start: the command refuses, in one line (exit 2);
- the log directory filling up during a run: the run goes on and succeeds, saying once
  that its log file and its rollback script's copy could not be written;
- the reject store full: the run fails in one line (exit 7) and the target keeps what
  it held, since a rejected row would otherwise have no record;
- the temporary directory full, or none at all: the run goes on without live counts;
  ``--snapshot``, which copies the source there, fails in one line (exit 7).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
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


def deep_check_passes(run_main: RunMain, source: Path, dsn: str, schema: str) -> None:
    checked = run_main("check", "--deep", "--sqlite", str(source), "--pg", dsn, "--schema", schema)
    assert checked.returncode == 0, checked.stdout + checked.stderr


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
    deep_check_passes(run_main, source, pg_dsn, "app")


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


TempOn = Callable[..., AbstractContextManager[Path]]


@pytest.fixture
def small_tmp(small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> TempOn:
    """``with small_tmp(leave=N) as disk``: the small disk filled to N free bytes is
    the temporary directory within the block (pytest's own capture needs a usable
    one at teardown)."""

    @contextmanager
    def on(*, leave: int) -> Iterator[Path]:
        fill(small_disk, leave)
        with monkeypatch.context() as patch:
            patch.setattr(tempfile, "tempdir", str(small_disk))
            yield small_disk

    return on


def public_tables(dsn: str, schema: str) -> list[str]:
    rows = fetch(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
    return [r[0] for r in rows]


def test_a_full_temporary_directory_costs_only_the_live_counts(
    run_main: RunMain, small_tmp: TempOn, tmp_path: Path, pg_dsn: str
) -> None:
    """The progress board is a small file in the temporary directory: with no room for
    it the run loads everything all the same and says once that live counts are off;
    nothing of the board is left behind, and the copy passes ``check --deep``."""
    source = tmp_path / "app.db"
    generate(source, 2000, seed=7)
    with small_tmp(leave=0) as small_disk:
        ran = run(run_main, source, pg_dsn, "app", "--log-dir", str(tmp_path / "logs"))
    assert ran.returncode == 0, ran.stderr
    (warning,) = [line for line in ran.stderr.splitlines() if "progress_unavailable" in line]
    assert "No space left on device" in warning
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
    deep_check_passes(run_main, source, pg_dsn, "app")


def test_a_snapshot_with_no_room_for_its_copy_fails_before_the_load(
    run_main: RunMain, small_tmp: TempOn, tmp_path: Path, pg_dsn: str
) -> None:
    """``--snapshot`` copies the source into the temporary directory first: a copy
    that does not fit is this side's disk (exit 7, one line), not a corrupt source
    (exit 3); the partial copy is removed and no table is created."""
    source = tmp_path / "app.db"
    generate(source, 2000, seed=8)
    with small_tmp(leave=4 * PAGE) as small_disk:
        ran = run(run_main, source, pg_dsn, "app", "--snapshot", "--log-dir", str(tmp_path / "l"))
    assert ran.returncode == 7, ran.stderr
    line = one_error_line(ran.stderr)
    assert "--snapshot cannot copy the source" in line and "disk is full" in line
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
    assert public_tables(pg_dsn, "app") == []


def test_no_temporary_directory_at_all(
    run_main: RunMain, tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container with a read-only root and no ``/tmp`` volume: ``run`` works without
    live counts; ``--snapshot`` says it needs a temporary directory (exit 7)."""
    source = tmp_path / "app.db"
    generate(source, 1000, seed=9)
    logs = ("--log-dir", str(tmp_path / "logs"))
    with monkeypatch.context() as patch:  # pytest's own capture needs one at teardown
        patch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
        refused = run(run_main, source, pg_dsn, "app", "--snapshot", *logs)
        assert refused.returncode == 7, refused.stderr
        assert "--snapshot cannot copy the source" in one_error_line(refused.stderr)
        assert public_tables(pg_dsn, "app") == []
        ran = run(run_main, source, pg_dsn, "app", *logs)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.count('"event":"progress_unavailable"') == 1
    assert sorted(public_tables(pg_dsn, "app")) == sorted(r[0] for r in _sqlite_tables(source))


def _sqlite_tables(source: Path) -> list[tuple[str]]:
    import sqlite3

    with sqlite3.connect(source) as conn:
        return conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
