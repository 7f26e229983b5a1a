"""Many-trial fault injection: SIGTERM, SIGINT and SIGKILL at random moments of a run.

The test suite does a few trials (tests/test_interrupt.py); this runs as many as
asked against a PostgreSQL you name, and prints one JSON summary: per signal, how
many runs ended with the expected exit code, printed a traceback, left a process
behind, or left the history saying ``running`` (checked with ``status``, which shows
a dead run as ``interrupted``), and how a plain ``run --replace`` afterwards ended:
whether it resumed the interrupted run (its history's ``resumed_from``) and how many
tables it took over instead of loading them again.

    python -m bench.fault_trials --pg postgresql://localhost/scratch --trials 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from tests.fault_sources import build_fault_source

SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT, "SIGKILL": signal.SIGKILL}


# every run's logs (and rollback scripts) in a folder of its own under this one,
# removed when the script ends
LOGS = tempfile.TemporaryDirectory(prefix="asyncmig-trials-")


def asyncmig(*args: str, workers: str = "process") -> subprocess.Popen[str]:
    environ = dict(
        os.environ,
        ASYNCMIG_WORKERS=workers,
        ASYNCMIG_LOG_DIR=tempfile.mkdtemp(prefix="run-", dir=LOGS.name),
    )
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "asyncmig", *args],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def trial(source: Path, dsn: str, signum: int, delay: float) -> dict[str, object]:
    """One run, one signal after ``delay`` seconds, then a plain re-run."""
    previous = max((int(r["id"]) for r in history(dsn)), default=0)
    process = asyncmig("run", "--sqlite", str(source), "--pg", dsn, "--replace")
    time.sleep(delay)
    family = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    time.sleep(0.5)  # a worker killed with its parent (PR_SET_PDEATHSIG) is gone by now
    left = [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    runs = history(dsn)
    killed = next((r for r in runs if int(r["id"]) > previous), None)
    rerun = asyncmig("run", "--sqlite", str(source), "--pg", dsn, "--replace")
    _, rerun_err = rerun.communicate(timeout=300)
    latest = history(dsn)[:1]
    resumed = bool(latest) and latest[0].get("resumed_from") is not None
    return {
        "resumed": resumed,
        "tables_kept": sum(bool(t.get("taken_over")) for t in latest[0]["tables"])
        if resumed
        else 0,
        "not_resumed_because": None if resumed else why_not_resumed(killed, rerun_err),
        "delay": round(delay, 3),
        "exit": process.returncode,
        "traceback": "Traceback" in stderr,
        "processes_left": len(left),
        "stderr_tail": stderr[-2000:] if "Traceback" in stderr else "",
        "history_running": any(r["status"] == "running" for r in runs),
        "rerun_exit": rerun.returncode,
    }


def why_not_resumed(killed: dict[str, Any] | None, rerun_stderr: str) -> str:
    """Why the re-run started over, from the signalled run's history row and what the
    re-run logged (a stage it could not resume is logged as ``not_resumed``)."""
    if killed is None:
        return "stopped before its history row (starting up)"
    if killed["status"] == "succeeded":
        return "its history says succeeded (the signal came as it ended)"
    if killed.get("cascade_dropped") is not None:
        return "stopped after its cut-over committed: the target was complete"
    refused = [line for line in rerun_stderr.splitlines() if "not_resumed" in line]
    if refused:
        return refused[0][-300:]
    return "stopped before its stage existed (planning)"


def history(dsn: str) -> list[dict[str, Any]]:
    """The runs in the target's history, latest first (``status --output json``)."""
    status = subprocess.run(
        [sys.executable, "-P", "-m", "asyncmig", "status", "--pg", dsn, "--output", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    runs: list[dict[str, Any]] = json.loads(status.stdout).get("runs", [])
    return runs


def tally(reasons: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for reason in reasons:
        found[reason] = found.get(reason, 0) + 1
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pg", required=True, help="a scratch database (its public schema is replaced)"
    )
    parser.add_argument("--trials", type=int, default=20, help="per signal")
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--max-delay", type=float, default=2.0)
    args = parser.parse_args()
    rng = random.Random(10)
    source = build_fault_source(Path(tempfile.mkdtemp()) / "faults.db", rows=args.rows)
    summary: dict[str, object] = {}
    for name, signum in SIGNALS.items():
        results = [
            trial(source, args.pg, signum, rng.uniform(0.05, args.max_delay))
            for _ in range(args.trials)
        ]
        expected = {0, 128 + signum, -signum}
        summary[name] = {
            "trials": len(results),
            "expected_exit": sum(r["exit"] in expected for r in results),
            "finished_before_signal": sum(r["exit"] == 0 for r in results),
            "tracebacks": sum(bool(r["traceback"]) for r in results),
            "processes_left": sum(int(str(r["processes_left"])) for r in results),
            "history_running": sum(bool(r["history_running"]) for r in results),
            "rerun_ok": sum(r["rerun_exit"] == 0 for r in results),
            "rerun_resumed": sum(bool(r["resumed"]) for r in results),
            "not_resumed_because": tally(
                str(r["not_resumed_because"]) for r in results if not r["resumed"]
            ),
            "tables_kept": sum(int(str(r["tables_kept"])) for r in results),
            "results": results,
        }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
