"""Compare the sync by marks of two asyncmig trees, in interleaved rounds.

Each tree gets its own copy of the database and its own PostgreSQL database in one
throw-away cluster (see :mod:`bench.run_bench`), is migrated with ``run --replace
--sync-marks`` and synced once (warming up); then every round edits both copies alike
(the same seed: :mod:`bench.edit_2truths`) and syncs each, the trees taking turns going
first. Per sync: wall seconds, CPU seconds (the tree's processes and the server's,
as :mod:`bench.sync_bench` counts them), the load average after it, the CPU split of
the ``synced`` log line, and whether the rows it found changed equal the edits (the
script fails otherwise). Each tree's marks stay of its own kind, so each sync
compares with marks its own tree recorded.

    python -m bench.sync_ab --db FILE --tree A=/path/to/old --tree B=. [--rounds 4]
                            [--changed 0.01] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench.edit_2truths import changes_between, edit
from bench.run_bench import cluster, compile_tree, pg_bin, postmaster, settle, tree_environment
from bench.sync_bench import cpu_of, run_sampled, totals


def asyncmig(tree: Path, dsn: str, logs: Path, *args: str) -> tuple[float, float, str, str]:
    """One command of ``tree``'s asyncmig: wall, CPU (with the server's), stdout, stderr."""
    server = postmaster(dsn) or 0
    settle(dsn)
    env = {**tree_environment(tree), "ASYNCMIG_LOG_DIR": str(logs)}
    cmd = [sys.executable, "-P", "-m", "asyncmig", *args, "--pg", dsn, "--schema", "ab"]
    before = cpu_of(server)
    started = time.perf_counter()
    out, cpu = run_sampled(cmd, env)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} of {tree} failed: {out.stderr[-2000:]}")
    return wall, cpu + cpu_of(server) - before, out.stdout, out.stderr


def split(stderr: str) -> dict[str, float]:
    """The ``synced`` log line's CPU seconds: the main process and its children."""
    for line in stderr.splitlines():
        if '"synced"' in line:
            return dict(json.loads(line)["cpu_s"])
    return {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_ab", description=__doc__)
    parser.add_argument("--db", type=Path, required=True, help="the SQLite database to copy")
    parser.add_argument("--tree", action="append", required=True, help="NAME=DIR, twice")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--changed", type=float, default=0.01, help="share of rows edited")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    trees = {n: Path(d).resolve() for n, d in (t.split("=", 1) for t in args.tree)}
    for tree in trees.values():
        compile_tree(tree)
    work = Path(tempfile.mkdtemp(prefix="asyncmig-sync-ab-"))
    results: list[dict[str, Any]] = []
    try:
        with cluster(pg_bin()) as base:
            dsns = {}
            for number, name in enumerate(trees):
                with psycopg.connect(base, autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE ab_{number}")
                dsns[name] = base.replace("/postgres?", f"/ab_{number}?")
                (work / name).mkdir()
                shutil.copyfile(args.db, work / name / "src.db")
                src = str(work / name / "src.db")
                asyncmig(trees[name], dsns[name], work, "run", "--sqlite", src, "--replace",
                         "--sync-marks")  # fmt: skip
                edit(work / name / "src.db", args.changed, 7)
                asyncmig(trees[name], dsns[name], work, "sync", "--sqlite", src)
            names = list(trees)
            for number in range(args.rounds):
                for name in names:
                    shutil.copyfile(work / name / "src.db", work / name / "before.db")
                    edit(work / name / "src.db", args.changed, 100 + number)
                for name in names if number % 2 == 0 else names[::-1]:
                    results.append(one_sync(trees[name], dsns[name], work, name, number))
                    print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name in trees:
        mine = [r for r in results if r["tree"] == name]
        print(
            f"{name}: median {statistics.median(r['wall'] for r in mine):.2f} s, "
            f"{statistics.median(r['cpu'] for r in mine):.2f} CPU-s over {len(mine)} syncs"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def one_sync(tree: Path, dsn: str, work: Path, name: str, number: int) -> dict[str, Any]:
    src = work / name / "src.db"
    wall, cpu, out, err = asyncmig(
        tree, dsn, work, "sync", "--sqlite", str(src), "--output", "json",
        "--log-format", "json", "-v",
    )  # fmt: skip
    found = totals({t["table"]: t for t in json.loads(out)["tables"]})
    wanted = totals(changes_between(work / name / "before.db", src))
    if found != wanted:
        raise RuntimeError(f"{name} round {number}: found {found}, the edits made {wanted}")
    return {
        "tree": name,
        "round": number,
        "wall": round(wall, 2),
        "cpu": round(cpu, 2),
        "load": round(os.getloadavg()[0], 1),
        "split": split(err),
        "found": found,
    }


if __name__ == "__main__":
    raise SystemExit(main())
