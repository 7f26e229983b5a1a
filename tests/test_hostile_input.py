"""Hostile but legal input: each is refused in one line with its documented exit code,
or read as the tools it comes from read it, never an internal error or a hang."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tests.fix_cli import RunMain, assert_one_line_error, write_source
from tests.fix_pg import fetch


def test_a_pipe_given_as_the_source_is_refused_at_once(run_main: RunMain, tmp_path: Path) -> None:
    """Opening a FIFO waits for a writer, for ever, and ignored SIGTERM meanwhile."""
    fifo = tmp_path / "app.db"
    os.mkfifo(fifo)
    result = run_main("plan", "--sqlite", str(fifo))
    assert_one_line_error(result, 3, "not a regular file (a pipe or a device)")


def test_a_source_path_that_is_not_utf8_is_refused_before_anything(
    run_main: RunMain, tmp_path: Path
) -> None:
    """Legal on Linux; the run failed late, as an internal error, recording the path."""
    name = os.fsdecode(bytes(tmp_path) + b"/app\xff.db")
    write_source(Path(name))
    result = run_main("plan", "--sqlite", name)
    assert_one_line_error(result, 2, "--sqlite is not valid UTF-8 (")
    assert "app\\xff.db" in result.stderr


def test_numbers_beyond_what_an_option_can_mean_are_bad_options(
    run_main: RunMain, tmp_path: Path
) -> None:
    source = write_source(tmp_path / "app.db")
    huge = "99999999999999999999"  # beyond 64 bits: an internal error in the driver
    result = run_main("plan", "--sqlite", str(source), "--jobs", huge)
    assert_one_line_error(result, 2, f"--jobs is expected to be at most 256, got {huge}")
    result = run_main("run", "--sqlite", str(source), env={"ASYNCMIG_LOCK_TIMEOUT": huge})
    assert_one_line_error(result, 2, "ASYNCMIG_LOCK_TIMEOUT is expected to be at most 2147483")
    for url in ("postgresql://u:pw@127.0.0.1:99999/db", "host=127.0.0.1 port=70000 user=u"):
        result = run_main("status", "--pg", url)
        assert_one_line_error(result, 2, "is not a TCP port (1 to 65535)")
        assert "pw" not in result.stderr


def test_a_wal_database_closed_cleanly_is_read_without_files_beside_it(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    """An application's WAL database after it stopped: no -wal or -shm beside it. Opened
    read-only, SQLite made both next to the source and left them (on a read-only mount
    it could not open it at all)."""
    folder = tmp_path / "app"
    folder.mkdir()
    source = folder / "app.db"
    conn = sqlite3.connect(source)
    conn.execute("PRAGMA journal_mode = wal")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(1, 201)])
    conn.commit()
    conn.close()
    assert sorted(p.name for p in folder.iterdir()) == ["app.db"]
    before = source.read_bytes()
    result = run_main("run", "--sqlite", str(source), "--pg", pg_dsn)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["app.db"]
    assert source.read_bytes() == before
    rows = fetch(pg_dsn, "SELECT id, x FROM t ORDER BY id")
    assert [tuple(r) for r in rows] == [(i, f"v{i}") for i in range(1, 201)]
