"""The command line run in-process: ``run_main`` (a fixture) calls ``asyncmig.cli.main.main``
with a clean environment and returns (exit code, stdout, stderr). ``run_cli`` runs it as a
process instead, for what needs one (signals, the entry point, worker processes).

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
from typing import Any

import jsonschema
import pytest
import structlog

from asyncmig.cli.main import main
from asyncmig.cli.output import SCHEMA_VERSION, package_version

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "output.schema.json").read_text(encoding="utf-8"))

RunMain = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run_main(capfd: pytest.CaptureFixture[str]) -> Iterator[RunMain]:
    def call(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        code = main(list(args), environ=env or {})
        out, err = capfd.readouterr()
        return code, out, err

    try:
        yield call
    finally:
        structlog.reset_defaults()


def one_error_line(err: str) -> str:
    """The only line of ``err``, which must be an asyncmig error."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("asyncmig: error: ")
    return lines[0]


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
    environ["ASYNCMIG_LOG_DIR"] = tempfile.mkdtemp(prefix="asyncmig-logs-")
    environ.update(env or {})
    return environ


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = cli_environment(env)
    return subprocess.run(
        [sys.executable, "-m", "asyncmig", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


def valid(text: str) -> dict[str, Any]:
    """The one JSON document in ``text``, checked against the schema."""
    data: dict[str, Any] = json.loads(text)
    jsonschema.validate(data, SCHEMA)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["asyncmig_version"] == package_version()
    return data
