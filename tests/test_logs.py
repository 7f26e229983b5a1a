"""Warnings logged through the standard library (asyncio, asyncpg) come out as the
configured events: JSON lines on a job's console and in the run's log file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import logging, sys
from pathlib import Path
from asyncmig.cli import logs
stream = logs.configure(log_format="json", log_file=Path(sys.argv[1]))
logs.configure(log_format="json", log_file=Path(sys.argv[1]))  # again: one handler
logging.getLogger("asyncio").warning("Unknown child process pid %d, will report returncode 255", 42)
logging.getLogger("asyncio").info("below the forwarded level")
stream.close()
"""


def _run(script: str, tmp_path: Path) -> tuple[str, list[dict[str, str]]]:
    """The script's console (stderr) and the events of its log file."""
    log = tmp_path / "run.log"
    done = subprocess.run(
        [sys.executable, "-c", script, str(log)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr, [json.loads(line) for line in log.read_text().splitlines()]


def test_standard_library_warnings_are_json_lines_in_the_console_and_the_file(
    tmp_path: Path,
) -> None:
    stderr, in_file = _run(SCRIPT, tmp_path)
    console = [json.loads(line) for line in stderr.splitlines()]  # JSON, every line
    expected = "Unknown child process pid 42, will report returncode 255"
    assert [(e["event"], e["logger"], e["level"]) for e in console] == [
        (expected, "asyncio", "warning")
    ]
    assert [e["event"] for e in in_file] == [expected]


AFTER_CLOSE = """
import logging, sys, threading
from pathlib import Path
from asyncmig.cli import logs
stream = logs.configure(log_format="json", log_file=Path(sys.argv[1]))
logging.getLogger("asyncio").warning("while the command runs")
stream.close()  # the command has ended
# asyncio's child watcher, reaping a worker after the loop closed, logs from its thread
late = threading.Thread(
    target=logging.getLogger("asyncio").warning, args=("Loop %r that handles pid %r is closed", 1, 2)
)
late.start()
late.join()
"""


def test_an_event_logged_after_the_log_file_closed_goes_to_the_console_only(
    tmp_path: Path,
) -> None:
    """Not a "--- Logging error ---" traceback (seen after a SIGINT at a random moment)."""
    stderr, in_file = _run(AFTER_CLOSE, tmp_path)
    assert "Traceback" not in stderr and "Logging error" not in stderr
    console = [json.loads(line)["event"] for line in stderr.splitlines()]
    assert console == ["while the command runs", "Loop 1 that handles pid 2 is closed"]
    assert [e["event"] for e in in_file] == ["while the command runs"]
