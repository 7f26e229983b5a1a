"""A run with worker processes leaves no stray line on stderr (issue 8 item 11).

anyio kills the worker processes it still holds when the event loop shuts down; the
second kill reaps a worker the first one killed, and asyncio's child watcher then
prints "Unknown child process pid N, will report returncode 255". The run now lets its
workers exit (exit status 0) and reaps them before the loop ends. The test runs a real
migration in a child Python process with asyncio's debug log on, so every worker's exit
status is on stderr: each must be 0, and no "Unknown child process" line may appear.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.gen_2truths import generate
from tests.fix_faults import public_tables, start
from tests.fix_pg import fetch

SCRIPT = """
import logging, sys
from pathlib import Path
import anyio
from asyncmig.target.connect import Target
from asyncmig.runstate import RunSettings
from asyncmig.run import run_migration

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
dsn, path = sys.argv[1], Path(sys.argv[2])
settings = RunSettings(path, Target(dsn, dsn, "test"), jobs=2, workers="process")
report = anyio.run(run_migration, settings, backend="asyncio")
print(report.rows, sorted(t.table for t in report.tables))
"""


def three_tables(path: Path) -> Path:
    conn = sqlite3.connect(path)
    for name in ("a", "b", "c"):
        conn.execute(f"CREATE TABLE {name}(id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany(f"INSERT INTO {name}(v) VALUES (?)", [(f"{name}{i}",) for i in range(500)])
    conn.commit()
    conn.close()
    return path


def run_quietly(script: str, dsn: str, path: Path) -> str:
    """Run ``script`` in a child Python with asyncio's debug log on; check that every
    worker process it used exited 0 on its own and nothing was left to the garbage
    collector; return the script's last line of output."""
    env = {**os.environ, "PYTHONASYNCIODEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script, dsn, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Unknown child process" not in result.stderr
    assert "unclosed transport" not in result.stderr
    exits = re.findall(r"process \d+ exited with returncode (-?\d+)", result.stderr)
    assert exits, "no worker process was used"
    assert set(exits) == {"0"}, exits  # left on their own, not killed at shutdown
    return result.stdout.splitlines()[-1]


def test_worker_processes_exit_cleanly_and_quietly(tmp_path: Path, pg_dsn: str) -> None:
    last = run_quietly(SCRIPT, pg_dsn, three_tables(tmp_path / "three.db"))
    assert last == "1500 ['a', 'b', 'c']"


DEEP = """
import logging, sys
from pathlib import Path
import anyio, asyncpg
from asyncmig.check.deep import deep_check
from asyncmig.run import run_migration
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target

dsn, path = sys.argv[1], Path(sys.argv[2])

async def main() -> None:
    report = await run_migration(RunSettings(path, Target(dsn, dsn, "test"), jobs=1))
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
    conn = await asyncpg.connect(dsn)
    try:
        results = await deep_check(report.plan, conn, path, processes=True)
    finally:
        await conn.close()
    print(sorted((r.table, r.ok) for r in results))

anyio.run(main, backend="asyncio")
"""


SYNC = """
import logging, sqlite3, sys
from pathlib import Path
import anyio
from asyncmig.run import run_migration
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target
from asyncmig.target.sync import sync

dsn, path = sys.argv[1], Path(sys.argv[2])

async def main() -> None:
    await run_migration(RunSettings(path, Target(dsn, dsn, "test"), jobs=1))
    source = sqlite3.connect(path)
    source.execute("UPDATE b SET v = 'changed' WHERE id = 7")
    source.commit()
    source.close()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
    report = await sync(RunSettings(path, Target(dsn, dsn, "test"), jobs=2, workers="process"))
    print(report.changed)

anyio.run(main, backend="asyncio")
"""


@pytest.mark.parametrize(
    ("script", "expected"),
    [(DEEP, "[('a', True), ('b', True), ('c', True)]"), (SYNC, "1")],
    ids=["check --deep", "sync"],
)
def test_the_source_sides_worker_processes_exit_cleanly_and_quietly(
    tmp_path: Path, pg_dsn: str, script: str, expected: str
) -> None:
    """``check --deep`` and ``sync`` render the source in worker processes too; they
    left them for anyio's shutdown to kill, and an "Unknown child process pid N" line
    came on stderr in about one check in three (seen on the Northwind shape)."""
    assert run_quietly(script, pg_dsn, three_tables(tmp_path / "three.db")) == expected


# a worker started just before its parent died: it binds itself once the parent is gone
ORPHAN = """
import os, sys, time
from asyncmig.cli import signals
parent, mark = int(sys.argv[1]), sys.argv[2]
while os.getppid() == parent:  # until the parent has exited and we were adopted
    time.sleep(0.01)
open(mark, "w").write("adopted")
signals.bind_worker_to_parent(parent)
open(mark, "w").write("went on")
"""
STARTER = """
import subprocess, sys, os
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid()), sys.argv[2]])
print(child.pid, flush=True)
"""


def test_a_worker_whose_parent_died_before_it_was_bound_exits(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG only fires for a parent that dies after it is set: a worker that
    binds itself later (started for a table just before a kill -9) exits instead of
    loading its table behind the next run's back."""
    mark = tmp_path / "mark"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-c", STARTER, ORPHAN, str(mark)]
    started = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    psutil.Process(int(started.stdout.split()[0])).wait(timeout=60)
    assert mark.read_text() == "adopted"  # it got there, and went no further


def test_a_worker_killed_from_outside_ends_the_run_with_exit_11(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A worker process killed while it loads (as the kernel's out-of-memory killer
    does): exit 11 and one line naming the table and the likely cause, the target as
    before; it was exit 70, "internal error", which asks for a bug report."""
    source = tmp_path / "app.db"
    generate(source, 150_000, seed=12)
    process = start("run", "--sqlite", str(source), "--pg", pg_dsn, "--jobs", "2")
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and process.poll() is None:
        busy = [
            child
            for child in psutil.Process(process.pid).children()
            if b"anyio" in " ".join(child.cmdline()).encode() and child.cpu_percent(0.05) > 0
        ]
        if busy and _copying(pg_dsn):  # a table's COPY is under way: a worker holds it
            killed = busy[0].pid
            os.kill(killed, signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    if killed is None:
        pytest.skip("no worker was caught loading")
    assert process.returncode == 11, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("asyncmig: error: the worker process loading "), line
    assert "killed (out of memory?" in line and "internal error" not in stderr
    assert public_tables(pg_dsn) == []


def _copying(dsn: str) -> list[object]:
    return [r[0] for r in fetch(dsn, "SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY %'")]
