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


def test_standard_library_warnings_are_json_lines_in_the_console_and_the_file(
    tmp_path: Path,
) -> None:
    log = tmp_path / "run.log"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    console = [json.loads(line) for line in done.stderr.splitlines()]  # JSON, every line
    expected = "Unknown child process pid 42, will report returncode 255"
    assert [(e["event"], e["logger"], e["level"]) for e in console] == [
        (expected, "asyncio", "warning")
    ]
    in_file = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in in_file] == [expected]
