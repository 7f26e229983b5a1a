"""Time `asyncmig run --chunk-rows N` against the same run without chunks, as a ratio.

Chunks cost a transaction, a history row and a rowid-range query per chunk, and a
chunked table is loaded by one worker instead of being split over ``--jobs``. This
measures what that costs, in one script run against one throw-away PostgreSQL cluster
(see :mod:`bench.run_bench`), on the generated 2Truths-1Lie and Northwind-shaped
databases. Each round runs every setting once, in turn (interleaved, so a change in
the machine's load hits all of them alike), each into a fresh schema.

    python -m bench.chunk_bench [--rows 1000000] [--chunk-rows 0,100000,1000000]
                                [--repeat 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.run_bench import ROOT, cluster, generate, pg_bin, tail


def timed_run(db: Path, dsn: str, schema: str, chunk_rows: int, jobs: int) -> float:
    """One `asyncmig run` into ``schema`` (dropped first); its wall time."""
    logs = tempfile.mkdtemp(prefix="asyncmig-chunk-bench-logs-")
    cmd = [sys.executable, "-P", "-m", "asyncmig", "run", "--sqlite", str(db), "--pg", dsn]
    cmd += ["--schema", schema, "--replace", "--jobs", str(jobs), "--quiet"]
    cmd += ["--chunk-rows", str(chunk_rows)]
    started = time.perf_counter()
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ASYNCMIG_LOG_DIR": logs},
    )
    seconds = time.perf_counter() - started
    shutil.rmtree(logs, ignore_errors=True)
    if out.returncode not in (0, 8):
        raise RuntimeError(f"asyncmig run failed (exit {out.returncode}): {tail(out.stderr)}")
    return seconds


def measure(
    dbs: dict[str, Path], dsn: str, settings: list[int], repeat: int, jobs: int
) -> dict[str, dict[int, list[float]]]:
    """Per workload, per --chunk-rows, the seconds of each round."""
    times: dict[str, dict[int, list[float]]] = {w: {n: [] for n in settings} for w in dbs}
    for _ in range(repeat):
        for workload, db in dbs.items():
            for n in settings:
                times[workload][n].append(timed_run(db, dsn, f"bench_{workload}", n, jobs))
    return times


def summary(times: dict[str, dict[int, list[float]]]) -> dict[str, dict[str, object]]:
    """Median seconds per setting and the ratio of each to the unchunked run (0)."""
    result: dict[str, dict[str, object]] = {}
    for workload, per in times.items():
        base = statistics.median(per[0])
        result[workload] = {}
        for n, seconds in per.items():
            result[workload][f"median_s[{n}]"] = round(statistics.median(seconds), 2)
            ratios = [s / b for s, b in zip(seconds, per[0], strict=True)]
            result[workload][f"ratio[{n}]"] = round(statistics.median(seconds) / base, 3)
            result[workload][f"round_ratios[{n}]"] = [round(r, 3) for r in ratios]
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chunk_bench", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per generated database")
    parser.add_argument("--chunk-rows", default="0,100000,1000000", help="settings, 0 first")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    settings = [int(n) for n in args.chunk_rows.split(",")]
    if settings[0] != 0:
        settings.insert(0, 0)
    bindir = pg_bin()
    with tempfile.TemporaryDirectory(prefix="asyncmig-chunk-bench-") as work:
        dbs = {
            "2truths": generate(
                "bench.gen_2truths", Path(work) / "2t.db", "--rows", str(args.rows)
            ),
            "northwind": generate(
                "bench.gen_northwind", Path(work) / "nw.db", "--rows", str(args.rows)
            ),
        }
        with cluster(bindir) as dsn:
            result = summary(measure(dbs, dsn, settings, max(1, args.repeat), args.jobs))
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
