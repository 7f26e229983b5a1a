"""What a run keeps in the temporary directory (live counts; with ``--snapshot`` a copy
of the source) does not outlive a run killed outright past the next run: real
processes, killed with SIGKILL, and real runs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from asyncmig.load import progress
from asyncmig.target import scratch
from tests.fix_cli import cli_environment

HOLD = (
    "import sys, time\n"
    "from asyncmig.target.scratch import Scratch\n"
    "folder = Scratch(sys.argv[1])\n"
    "print(folder.path, flush=True)\n"
    "time.sleep(60)\n"
)


def holding(tmp_path: Path, prefix: str) -> tuple[subprocess.Popen[str], Path]:
    """A process holding a scratch folder under ``tmp_path``, and the folder."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, prefix],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    with process.stdout:
        return process, Path(process.stdout.readline().strip())


def aged(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_the_next_board_sweeps_the_folders_of_killed_runs_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 leaves no chance to remove a folder: the next run's board removes those
    whose owner's lock it can take, and keeps those of live processes, a folder still
    being set up (under a minute old), an unowned one under a day old (an earlier
    version's), and other kinds' folders."""
    prefix = progress.PREFIX
    dead, dead_folder = holding(tmp_path, prefix)
    live, live_folder = holding(tmp_path, prefix)
    fresh, fresh_folder = holding(tmp_path, prefix)
    other, other_folder = holding(tmp_path, "asyncmig-snapshot-")
    try:
        for process in (dead, fresh, other):
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        for folder in (dead_folder, live_folder, other_folder):
            aged(folder, 120)
        old_unowned = aged(Path(tempfile.mkdtemp(prefix=prefix, dir=tmp_path)), 2 * 86400)
        young_unowned = aged(Path(tempfile.mkdtemp(prefix=prefix, dir=tmp_path)), 3600)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        board = progress.Board(["a", "b"])
        try:
            assert board.folder is not None and board.folder.path.parent == tmp_path
            assert (board.folder.path / "board").exists()
            kept = {p.name for p in tmp_path.iterdir()} - {board.folder.path.name}
        finally:
            board.close()
        assert kept == {f.name for f in (live_folder, fresh_folder, other_folder, young_unowned)}
        assert not dead_folder.exists() and not old_unowned.exists()
        assert (live_folder / scratch.OWNER).exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    finally:
        live.kill()
        live.wait(10)


def test_a_snapshot_run_killed_outright_leaves_its_copy_only_until_the_next(
    tmp_path: Path, pg_dsn: str
) -> None:
    """`run --snapshot` copies the whole source into the temporary directory. Killed
    (SIGKILL) once the copy is there, it leaves the copy behind; the next `run
    --snapshot` removes it (once a minute old) and its own at its end."""
    source = tmp_path / "app.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", ((i, "x" * 200) for i in range(200_000)))
    conn.commit()
    conn.close()
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = cli_environment({"TMPDIR": str(temp)})
    command = [sys.executable, "-m", "asyncmig", "run", "--sqlite", str(source), "--pg", pg_dsn]
    command += ["--snapshot", "--replace"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    copies: list[Path] = []
    while first.poll() is None and time.monotonic() < deadline and not copies:
        copies = [p / "app.db" for p in temp.glob("asyncmig-snapshot-*") if (p / "app.db").exists()]
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    if first.returncode == 0:
        pytest.skip("the run had finished before the copy was seen")
    assert copies and copies[0].parent.exists()  # left behind
    aged(copies[0].parent, 120)
    again = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert again.returncode == 0, again.stderr
    assert list(temp.iterdir()) == [], list(temp.iterdir())
