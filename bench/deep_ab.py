"""Compare ``check --deep`` of two asyncmig trees against a full run, in rounds.

One throw-away cluster (see :mod:`bench.run_bench`), one database per source. Each
round migrates the source afresh (``run --replace``, by the last tree given: the
baseline each check is measured against) and then runs each tree's ``check --deep``
on that copy, the trees taking turns going first (the first check after a run reads
tables whose rows nobody has read yet, and runs beside their autovacuum). Per
command: wall seconds and CPU seconds (the tree's processes and the server's, as
:mod:`bench.sync_bench` counts them), and each check's ratio to the run of its round.
The script fails when a check does not pass.

    python -m bench.deep_ab --db FILE [--db FILE2] --tree A=/path/to/old --tree B=.
                            [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench.run_bench import cluster, compile_tree, pg_bin
from bench.sync_ab import asyncmig


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.deep_ab", description=__doc__)
    parser.add_argument("--db", type=Path, action="append", required=True, help="a source")
    parser.add_argument("--tree", action="append", required=True, help="NAME=DIR, twice")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    trees = {n: Path(d).resolve() for n, d in (t.split("=", 1) for t in args.tree)}
    for tree in trees.values():
        compile_tree(tree)
    names = list(trees)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="asyncmig-deep-ab-") as work, cluster(pg_bin()) as base:
        for number, source in enumerate(args.db):
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE deep_{number}")
            dsn = base.replace("/postgres?", f"/deep_{number}?")
            for round_ in range(args.rounds):
                results += one_round(trees, names, dsn, Path(work), source, round_)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def one_round(
    trees: dict[str, Path], names: list[str], dsn: str, work: Path, source: Path, number: int
) -> list[dict[str, Any]]:
    """A fresh run by the last tree, then each tree's check, in turns."""
    src = str(source)
    run_wall, run_cpu, _, _ = asyncmig(trees[names[-1]], dsn, work, "run", "--sqlite", src,
                                       "--replace")  # fmt: skip
    out = []
    for name in names if number % 2 == 0 else names[::-1]:
        wall, cpu, stdout, _ = asyncmig(trees[name], dsn, work, "check", "--sqlite", src, "--deep")
        if ", 0 failed" not in stdout:
            raise RuntimeError(f"{name}'s check --deep of {source} failed: {stdout[-2000:]}")
        out.append(
            {
                "source": source.name,
                "round": number,
                "tree": name,
                "run": round(run_wall, 2),
                "run_cpu": round(run_cpu, 2),
                "deep": round(wall, 2),
                "deep_cpu": round(cpu, 2),
                "deep_over_run": round(wall / run_wall, 2),
                "cpu_over_run": round(cpu / run_cpu, 2),
                "load": round(os.getloadavg()[0], 1),
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


def report(results: list[dict[str, Any]]) -> None:
    for source in dict.fromkeys(r["source"] for r in results):
        for name in dict.fromkeys(r["tree"] for r in results):
            mine = [r for r in results if r["source"] == source and r["tree"] == name]
            print(
                f"{source} {name}: check --deep median {statistics.median(r['deep'] for r in mine):.2f} s"
                f" ({statistics.median(r['deep_cpu'] for r in mine):.2f} CPU-s), "
                f"{statistics.median(r['deep_over_run'] for r in mine):.2f}x the run's time, "
                f"{statistics.median(r['cpu_over_run'] for r in mine):.2f}x its CPU "
                f"(by round: {', '.join(str(r['deep_over_run']) for r in mine)})",
                file=sys.stdout,
            )


if __name__ == "__main__":
    raise SystemExit(main())
