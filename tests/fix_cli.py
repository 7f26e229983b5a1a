"""The command line run in-process: ``run_main`` (a fixture) calls ``asyncmig.cli.main.main``
with a clean environment, in a new working directory (where logs go by default), and
returns a :class:`Ran` (exit code, stdout, stderr). ``run_cli`` runs it as a process
instead, for what needs one: signals, the entry point, libpq's environment (``PGSERVICE``,
``PGPASSFILE``: read from the process environment), the process's time zone. A process
costs about a second to start; the in-process call, nothing.

``main`` runs its own event loop, so ``run_main`` is called from tests that are not
``async`` (their async fixtures still work).

``main`` configures structlog to write to the ``sys.stderr`` of the moment, which
pytest's capture replaces per test; the fixture resets structlog afterwards so a later
test (calling the library directly) does not log into a closed capture stream.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema
import pytest
import structlog

from asyncmig.cli.main import main
from asyncmig.cli.output import SCHEMA_VERSION, package_version

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "output.schema.json").read_text(encoding="utf-8"))
# One folder per test process holds every command's log folder; it is removed when the
# process exits, so thousands of command runs leave nothing behind in the temp dir.
_LOGS = tempfile.TemporaryDirectory(prefix="asyncmig-test-logs-")


class Ran(NamedTuple):
    """A command's exit code and output, from either runner (it unpacks as a tuple)."""

    returncode: int
    stdout: str
    stderr: str


RunMain = Callable[..., Ran]


@pytest.fixture
def run_main(
    capfd: pytest.CaptureFixture[str],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[RunMain]:
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))

    def call(*args: str, env: dict[str, str] | None = None) -> Ran:
        capfd.readouterr()  # what the test printed before is not the command's
        code = main(list(args), environ=env or {})
        out, err = capfd.readouterr()
        return Ran(code, out, err)

    try:
        yield call
    finally:
        structlog.reset_defaults()


Cli = Callable[..., Ran]


@pytest.fixture
def cli(run_main: RunMain) -> Cli:
    """``run_main`` for the commands that write files: ``cli(*args, log_dir=...)`` puts
    their logs, rollback scripts and rejects in ``log_dir``."""

    def call(*args: str, log_dir: Path) -> Ran:
        return run_main(*args, env={"ASYNCMIG_LOG_DIR": str(log_dir)})

    return call


def one_error_line(err: str) -> str:
    """The only line of ``err`` but the run's JSON events, which must be an asyncmig error
    without a traceback."""
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, err
    assert lines[0].startswith("asyncmig: error: ")
    assert "Traceback" not in err
    return lines[0]


def assert_one_line_error(result: Ran, code: int, text: str) -> None:
    """``result`` failed with exit ``code`` and one error line saying ``text``."""
    assert result.returncode == code, result.stderr
    assert text in one_error_line(result.stderr)


def write_source(path: Path) -> Path:
    """A small SQLite source with non-ASCII names in its values."""
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
        "INSERT INTO item VALUES (1, 'pen'), (2, '筆'), (3, '🖊');"
    )
    conn.close()
    return path


def cli_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The tests' environment without any target of the developer's, logs in a new folder."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PG", "ASYNCMIG_")) and k != "DATABASE_URL"
    }
    environ["ASYNCMIG_LOG_DIR"] = tempfile.mkdtemp(prefix="logs-", dir=_LOGS.name)
    environ.update(env or {})
    return environ


def run_cli(*args: str, env: dict[str, str] | None = None) -> Ran:
    """``python -m asyncmig`` with ``args``, as a process (see the module docstring)."""
    environ = cli_environment(env)
    done = subprocess.run(
        [sys.executable, "-m", "asyncmig", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def valid(text: str) -> dict[str, Any]:
    """The one JSON document in ``text``, checked against the schema."""
    data: dict[str, Any] = json.loads(text)
    jsonschema.validate(data, SCHEMA)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["asyncmig_version"] == package_version()
    return data
