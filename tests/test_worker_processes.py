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
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil

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


def test_worker_processes_exit_cleanly_and_quietly(tmp_path: Path, pg_dsn: str) -> None:
    path = tmp_path / "three.db"
    conn = sqlite3.connect(path)
    for name in ("a", "b", "c"):
        conn.execute(f"CREATE TABLE {name}(id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany(f"INSERT INTO {name}(v) VALUES (?)", [(f"{name}{i}",) for i in range(500)])
    conn.commit()
    conn.close()
    env = {**os.environ, "PYTHONASYNCIODEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, pg_dsn, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "1500 ['a', 'b', 'c']"
    assert "Unknown child process" not in result.stderr
    exits = re.findall(r"process \d+ exited with returncode (-?\d+)", result.stderr)
    assert exits, "the run used no worker process"
    assert set(exits) == {"0"}, exits  # left on their own, not killed at shutdown


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
