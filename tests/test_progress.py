"""What a person and a log collector see while a run works: live bars, JSON events."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jsonschema
import pytest
import structlog

from asyncmig.load import progress
from asyncmig.run import run_migration
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target, scrub
from tests.fix_cli import RunMain

EVENTS = json.loads(
    (Path(__file__).resolve().parent.parent / "docs" / "events.schema.json").read_text(
        encoding="utf-8"
    )
)


def build(path: Path, rows: int) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE big(id INTEGER PRIMARY KEY, body TEXT, n REAL);"
        "CREATE TABLE small(id INTEGER PRIMARY KEY, name TEXT);"
    )
    conn.executemany(
        "INSERT INTO big VALUES (?, ?, ?)",
        ((i, f"row {i} " + "x" * 40, i / 3) for i in range(1, rows + 1)),
    )
    conn.executemany("INSERT INTO small VALUES (?, ?)", [(i, f"s{i}") for i in range(1, 51)])
    conn.commit()
    conn.close()
    return path


class Recorder(progress.Reporter):
    """Keeps every reading of the board."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, tuple[int, int]]] = []
        self.phases: list[str] = []

    def phase(self, name: str) -> None:
        super().phase(name)
        self.phases.append(name)

    def show(self, counts: dict[str, tuple[int, int]]) -> None:
        self.seen.append(dict(counts))


@pytest.mark.parametrize("workers", ["inline", "process"])
async def test_counts_arrive_from_every_process(tmp_path: Path, pg_dsn: str, workers: str) -> None:
    """The board's last reading is exactly what each table loaded, worker processes too."""
    source = build(tmp_path / "a.db", 20_000)
    recorder = Recorder()
    progress.install(recorder)
    try:
        report = await run_migration(
            RunSettings(source, Target(pg_dsn, scrub(pg_dsn), "test"), workers=workers)
        )
    finally:
        progress.install(progress.Reporter())
    loaded = {t.table: t.rows for t in report.tables}
    assert loaded == {"big": 20_000, "small": 50}
    assert recorder.seen[-1] == {"big": (20_000, 0), "small": (50, 0)}
    assert [p for p in recorder.phases if p != "indexing"] == [
        "checking",
        "planning",
        "loading",
        "foreign keys",
        "verifying",
    ]
    assert recorder.run_id == report.run_id


async def test_json_events_for_log_collectors(tmp_path: Path, pg_dsn: str) -> None:
    source = build(tmp_path / "a.db", 5_000)
    progress.install(progress.EventReporter(interval=0))
    try:
        with structlog.testing.capture_logs() as events:
            report = await run_migration(RunSettings(source, Target(pg_dsn, scrub(pg_dsn), "test")))
    finally:
        progress.install(progress.Reporter())
    names = [e["event"] for e in events]
    phases = [(e["phase"], e["run_id"]) for e in events if e["event"] == "phase_started"]
    assert phases[:3] == [
        ("checking", None),
        ("planning", report.run_id),
        ("loading", report.run_id),
    ]
    started = next(e for e in events if e["event"] == "run_started")
    assert started["run_id"] == report.run_id
    assert names.index("run_started") < names.index("progress")
    ticks = [e for e in events if e["event"] == "progress"]
    last = {t["table"]: t["rows_done"] for t in ticks}
    assert last == {"big": 5_000, "small": 50}  # the final counts are always sent
    for tick in ticks:
        assert set(tick) >= {"phase", "table", "rows_done", "rows_total", "rows_per_s"}
        assert 0 < tick["rows_done"] <= tick["rows_total"]


def test_cli_emits_lifecycle_events_without_a_terminal(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    """A scheduled job's stderr: JSON lines from start to end, with run id and exit code."""
    source = build(tmp_path / "a.db", 2_000)
    result = run_main("run", "--sqlite", str(source), "--pg", pg_dsn)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    for event in events:
        jsonschema.validate(event, EVENTS)
    names = [e["event"] for e in events]
    assert names[0] == "phase_started" and "run_started" in names
    phases = [e["phase"] for e in events if e["event"] == "phase_started"]
    assert phases[:3] == ["checking", "planning", "loading"] and phases[-1] == "verifying"
    finished = events[-1]
    assert finished["event"] == "run_finished" and finished["exit_code"] == 0
    assert finished["run_id"] == 1 and finished["rows"] == 2_050


def test_cli_failure_event_carries_the_exit_code(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    source = build(tmp_path / "a.db", 10)
    assert run_main("run", "--sqlite", str(source), "--pg", pg_dsn).returncode == 0
    again = run_main("run", "--sqlite", str(source), "--pg", pg_dsn)  # tables exist
    assert again.returncode == 4
    events = [json.loads(line) for line in again.stderr.splitlines() if line.startswith("{")]
    for event in events:
        jsonschema.validate(event, EVENTS)
    failed = [e for e in events if e["event"] == "run_failed"]
    assert len(failed) == 1 and failed[0]["exit_code"] == 4
    assert "already exists" in failed[0]["message"]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_live_display_in_a_terminal(tmp_path: Path, pg_dsn: str) -> None:
    """In a real terminal (tmux), a bar with a rate shows while the big table loads."""
    build(tmp_path / "a.db", 300_000)
    session = f"asyncmig-{uuid.uuid4().hex[:8]}"
    done = tmp_path / "done"
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PG", "ASYNCMIG_")) and k != "DATABASE_URL"
    }
    command = (
        f"cd {shlex.quote(str(tmp_path))} && {shlex.quote(sys.executable)} -m asyncmig "
        f"run --sqlite a.db --pg {shlex.quote(pg_dsn)} --batch-size 2000; "
        f"echo $? > {shlex.quote(str(done))}"
    )
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "160",
            "-y",
            "40",
            "bash",
            "-c",
            command,
        ],
        check=True,
        env=environ,
    )
    screens = []
    try:
        deadline = time.monotonic() + 120
        while not done.exists() and time.monotonic() < deadline:
            shown = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            screens.append(shown)
            time.sleep(0.1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)
    assert done.exists() and done.read_text().strip() == "0", screens[-1:]
    live = [s for s in screens if "rows/s" in s and "big" in s]
    assert live, screens[-3:]
    assert any("loading" in s for s in live)
    assert not any("Traceback" in s for s in screens)
