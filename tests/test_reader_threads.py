"""A reader's SQLite connection runs on a worker thread of its own that is not a
daemon: one left open keeps the process from exiting. A SIGTERM that cancelled a
reader while its connection was being opened and tuned left ``asyncmig run`` alive
after its last line, waiting for that thread (found by sending SIGTERM at random
moments). Every cancellation point of the opening must end the thread: a process
that cancels it at 200 moments exits at once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

CANCELLED_WHILE_OPENING = """
import sys
from pathlib import Path

import anyio

from asyncmig.source.sqlite import open_async


async def main() -> None:
    opened = cancelled = 0
    kept = []  # each cancellation, with its frames, as a run's error report keeps them
    for step in range(200):  # cancelled after 0, 25, 50 ... microseconds
        with anyio.move_on_after(step * 25e-6) as scope:
            try:
                conn = await open_async(Path(sys.argv[1]))
            except BaseException as exc:
                kept.append(exc)
                raise
            opened += 1
            await conn.close()
        cancelled += scope.cancelled_caught
    print(opened, cancelled, flush=True)


anyio.run(main)
"""


def test_a_reader_cancelled_while_it_opens_leaves_no_thread(tmp_path: Path) -> None:
    source = tmp_path / "app.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (x)")
    process = subprocess.Popen(
        [sys.executable, "-c", CANCELLED_WHILE_OPENING, str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("the process did not exit: a reader's thread outlived it") from None
    assert process.returncode == 0, err
    opened, cancelled = map(int, out.split())
    assert opened and cancelled  # both ends of the range were reached
