"""How soon a run starts copying, and how soon a doomed run says so, before and after.

    python -m bench.first_copy --db 1m.db --db 10m.db [--baseline DIR] [--repeat 5]
                               [--jobs 2] [--cold] [--json OUT]

Against one throw-away cluster (as ``run_bench``), each round runs, for every
database and every tree (``--baseline DIR``, another checkout of asyncmig, and this
one; interleaved, so both see the same machine load, which of the two goes first
alternating from round to round):

- ``start``: ``asyncmig run`` into an empty schema (the stage a stopped run keeps for
  resuming is dropped first). A poller watches
  ``pg_stat_activity`` every 10 ms; the first COPY the server runs ends the
  measurement (seconds from the process's start), and the run is stopped by SIGTERM
  (it rolls back). From the run's JSON log: ``configured`` (first event: interpreter,
  imports, settings), ``planned`` and ``loading`` (the load phase starts), each in
  seconds from the process's start.
- ``refused``: ``asyncmig run`` into a schema where one of its tables exists: seconds
  until the process exits (exit 4 expected), and whether its log shows a table
  counted, sampled or scanned before the refusal (``scanned``).

With ``--cold``, the source file's pages are dropped from the operating system's page
cache before each run (``posix_fadvise(DONTNEED)``), as for a file not read since the
machine started: what a run reads before its first COPY then comes from the disk.

Prints medians per database and tree, the ratio this tree / baseline, and the ratio
10x-rows / 1x-rows within each tree (first and last ``--db``). No timing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import asyncpg

from bench import meter
from bench.run_bench import (
    ROOT,
    asyncmig_run,
    cluster,
    compile_tree,
    pg_bin,
    psql,
    qi,
    tree_environment,
)

STARTED_SCHEMA = "first_copy_bench"
REFUSED_SCHEMA = "refused_bench"
SCANS = {"profile_started", "table_profiled", "column_planned", "planned"}
# the stopped run's stage (kept so that the same command resumes) and split-load
# schemas: without them the next run starts from nothing, as the first did
DROP_LEFTOVERS = """
DO $$
DECLARE s text;
BEGIN
    FOR s IN SELECT nspname FROM pg_namespace
             WHERE nspname LIKE 'asyncmig\\_stage\\_%' OR nspname LIKE 'asyncmig\\_load\\_%'
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', s);
    END LOOP;
END$$;
"""
COPY_RUNNING = (
    "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
    "AND starts_with(query, 'COPY ') AND state = 'active')"
)


@dataclass
class Round:
    tree: str
    db: str
    first_copy: float | None = None
    cpu: float | None = None  # CPU seconds of the run's process tree at its first COPY
    marks: dict[str, float] = field(default_factory=dict)
    refused: float | None = None
    refused_exit: int | None = None
    scanned: bool | None = None


class CopyWatch:
    """A thread that notes when the server first runs a COPY."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.seen: float | None = None
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.poll()), daemon=True)

    async def poll(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            self.ready.set()
            while not self.stop.is_set():
                if await conn.fetchval(COPY_RUNNING):
                    self.seen = time.perf_counter()
                    return
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    def __enter__(self) -> Self:
        self.thread.start()
        self.ready.wait(30)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def placed(tree: Path) -> dict[str, Any]:
    """Where and how a child runs ``tree``'s asyncmig: ``-m`` puts the working directory
    first on the path, so the child starts in ``tree``."""
    return {"env": tree_environment(tree), "cwd": tree}


def events(logs: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for path in sorted(logs.glob("*.log"))
        for line in path.read_text().splitlines()
        if line.startswith("{")
    ]


def marks_of(found: list[dict[str, object]], wall: float) -> dict[str, float]:
    """Seconds from the process's start to its first event, plan and load phase."""
    marks: dict[str, float] = {}
    names = {"planned": "planned"}
    for event in found:
        name = str(event.get("event"))
        key = "loading" if event.get("phase") == "loading" else names.get(name)
        if not marks:
            marks["configured"] = round(meter._when(event) - wall, 3)
        if key and key not in marks:
            marks[key] = round(meter._when(event) - wall, 3)
    return marks


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (those no process maps)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def start(tree: Path, db: Path, dsn: str, jobs: int, result: Round, *, cold: bool = False) -> None:
    """Time to the first COPY; the run is then stopped (SIGTERM: it rolls back)."""
    psql(pg_bin(), dsn, f"DROP SCHEMA IF EXISTS {qi(STARTED_SCHEMA)} CASCADE")
    psql(pg_bin(), dsn, DROP_LEFTOVERS)  # a stage kept for resuming: this run starts afresh
    if cold:
        evict(db)
    with tempfile.TemporaryDirectory(prefix="first-copy-logs-") as logs:
        with CopyWatch(dsn) as watch:
            wall, began = time.time(), time.perf_counter()
            child = subprocess.Popen(
                asyncmig_run(db, dsn, STARTED_SCHEMA, jobs, Path(logs)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                **placed(tree),
            )
            while watch.seen is None and child.poll() is None:
                time.sleep(0.005)
            if watch.seen is not None:
                result.cpu = round(meter.tree_cpu(child.pid), 3)
                result.first_copy = round(watch.seen - began, 3)
            child.send_signal(signal.SIGTERM)
            child.wait(120)
        result.marks = marks_of(events(Path(logs)), wall)


def refused(tree: Path, db: Path, dsn: str, jobs: int, table: str, result: Round) -> None:
    """Time until a run into a schema where one of its tables exists gives up."""
    with tempfile.TemporaryDirectory(prefix="first-copy-logs-") as logs:
        began = time.perf_counter()
        child = subprocess.run(
            asyncmig_run(db, dsn, REFUSED_SCHEMA, jobs, Path(logs)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **placed(tree),
            check=False,
        )
        result.refused = round(time.perf_counter() - began, 3)
        result.refused_exit = child.returncode
        result.scanned = bool(SCANS & {str(e.get("event")) for e in events(Path(logs))})


def first_table(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name LIMIT 1"
        ).fetchone()
    return str(row[0])


def median(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return round(statistics.median(found), 3) if found else None


def per_round(rounds: list[Round], db: Path) -> list[float]:
    """This tree's first COPY over the baseline's, round by round (the same load)."""
    mine = [r for r in rounds if r.db == str(db)]
    pairs = zip(
        [r for r in mine if r.tree == "baseline"],
        [r for r in mine if r.tree == "this"],
        strict=True,
    )
    return [
        round(this.first_copy / base.first_copy, 2)
        for base, this in pairs
        if this.first_copy and base.first_copy
    ]


def summary(rounds: list[Round], trees: dict[str, Path], dbs: list[Path]) -> list[str]:
    header = "db | tree | first COPY s | CPU s at first COPY | configured | planned | loading"
    lines = [f"{header} | refused s (exit, scanned)"]
    medians: dict[tuple[str, str], dict[str, float | None]] = {}
    for db in dbs:
        for tree in trees:
            mine = [r for r in rounds if r.tree == tree and r.db == str(db)]
            m = {
                "first_copy": median([r.first_copy for r in mine]),
                "cpu": median([r.cpu for r in mine]),
                "refused": median([r.refused for r in mine]),
                **{
                    k: median([r.marks.get(k) for r in mine])
                    for k in ("configured", "planned", "loading")
                },
            }
            medians[(str(db), tree)] = m
            spread = [r.first_copy for r in mine if r.first_copy is not None]
            lines.append(
                f"{db.name} | {tree} | {m['first_copy']} ({min(spread, default=0)}-"
                f"{max(spread, default=0)}) | {m['cpu']} | {m['configured']} | {m['planned']} | "
                f"{m['loading']} | {m['refused']} ({sorted({r.refused_exit or 0 for r in mine})}, "
                f"{any(r.scanned for r in mine)})"
            )
    if "baseline" in trees:
        for db in dbs:
            for key in ("first_copy", "cpu", "refused"):
                after, before = medians[(str(db), "this")][key], medians[(str(db), "baseline")][key]
                if after and before:
                    lines.append(f"{db.name}: {key} this/baseline = {after / before:.2f}")
            lines.append(f"{db.name}: first_copy this/baseline per round = {per_round(rounds, db)}")
    if len(dbs) > 1:
        for tree in trees:
            small, large = medians[(str(dbs[0]), tree)], medians[(str(dbs[-1]), tree)]
            if small["first_copy"] and large["first_copy"]:
                lines.append(
                    f"{tree}: first COPY {dbs[-1].name} / {dbs[0].name} = "
                    f"{large['first_copy'] / small['first_copy']:.2f}"
                )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.first_copy", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--db", type=Path, action="append", required=True)
    parser.add_argument("--baseline", type=Path, help="another asyncmig checkout to compare")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="each run from an uncached file")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    trees = {"this": ROOT}
    if args.baseline:
        trees = {"baseline": args.baseline.resolve(), **trees}
    for tree in trees.values():
        compile_tree(tree)
    rounds: list[Round] = []
    with cluster(pg_bin()) as dsn:
        for round_number in range(max(1, args.repeat)):
            for db in args.db:
                table = first_table(db)
                psql(pg_bin(), dsn, f"DROP SCHEMA IF EXISTS {qi(REFUSED_SCHEMA)} CASCADE")
                psql(
                    pg_bin(),
                    dsn,
                    f"CREATE SCHEMA {qi(REFUSED_SCHEMA)}; "
                    f"CREATE TABLE {qi(REFUSED_SCHEMA)}.{qi(table)} (x int)",
                )
                order = list(trees.items())
                if round_number % 2:  # who runs first alternates: no tree always follows
                    order.reverse()
                for name, tree in order:
                    result = Round(name, str(db))
                    start(tree, db, dsn, args.jobs, result, cold=args.cold)
                    refused(tree, db, dsn, args.jobs, table, result)
                    rounds.append(result)
                    print(f"round {round_number + 1}: {asdict(result)}", file=sys.stderr)
    for line in summary(rounds, trees, args.db):
        print(line)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rounds], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
