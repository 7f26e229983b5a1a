"""Time `asyncmig sync` and `check --deep` against a full `asyncmig run`, as ratios.

All are measured in one script run, against one throw-away PostgreSQL cluster (see
:mod:`bench.run_bench`), on the generated 2Truths-1Lie database. Each round:

1. copies the generated database and migrates it in full (``run --replace``): the
   baseline, and the target the sync starts from;
2. checks the fresh copy with ``check --deep`` (timed: the deep check's ratio);
3. edits about ``--changed`` of the copy's rows (a third each inserted, updated,
   deleted, spread over all nine tables; :mod:`bench.edit_2truths`) and syncs it (the
   *first sync*, timed: the plain run recorded no source marks, so it compares every
   row, and records them);
4. edits another ``--changed`` and syncs again (the *sync*, timed: by the first sync's
   marks, the nightly case), and proves the result with ``check --deep``; the rows it
   found changed must equal the edit's own counts;
5. migrates the original again with ``run --replace --sync-marks`` (timed: what
   recording the marks costs a run), edits, syncs (timed) and checks.

With ``--northwind-rows N`` each round also migrates a Northwind-shaped database of N
rows and times ``check --deep`` on it. The report gives each median, the ratios
sync / full run and check --deep / full run, and the rows the sync found changed
(which the edits' own counts must equal).

    python -m bench.sync_bench [--rows 300000] [--db FILE] [--changed 0.01]
                               [--northwind-rows N] [--repeat 3] [--json OUT]
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
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.edit_2truths import changes_between, edit
from bench.meter import _parents
from bench.run_bench import (
    ROOT,
    cluster,
    compile_tree,
    generate,
    pg_bin,
    settle,
    source_counts,
    tail,
    tree_environment,
)

SCHEMA = "sync_bench"


@dataclass
class Timed:
    seconds: float  # wall
    cpu: float  # CPU seconds of asyncmig's process tree and of the server's processes


@dataclass
class Round:
    full: Timed  # plain `run`: the baseline
    sync: Timed  # a sync after a sync: compared with the first sync's source marks
    edits: dict[str, int]  # of the second edit: inserted / updated / deleted, by the files
    found: dict[str, int]  # the same, as the timed sync reported them
    deep: Timed  # check --deep of the fresh copy
    first_sync: Timed | None = None  # the first sync after a plain run: every row compared
    marked_full: Timed | None = None  # `run --sync-marks`
    after_marked: Timed | None = None  # a sync right after `run --sync-marks`
    compared: str = ""  # how the timed syncs compared their tables
    deep_check: str = "not run"  # check --deep of the fresh copy, then after each sync
    northwind_full: Timed | None = None
    northwind_deep: Timed | None = None


@dataclass
class Report:
    rows: int
    changed_share: float
    server: str
    northwind_rows: int = 0
    rounds: list[Round] = field(default_factory=list)

    def median(self, what: str, measure: str = "seconds") -> float:
        return float(
            statistics.median(
                getattr(getattr(r, what), measure) for r in self.rounds if getattr(r, what)
            )
        )

    def over(self, what: str, baseline: str, measure: str = "seconds") -> float:
        return round(self.median(what, measure) / self.median(baseline, measure), 3)

    @property
    def ratio(self) -> float:
        return self.over("sync", "full")


TICK = os.sysconf("SC_CLK_TCK")
SERVER: list[int] = []  # the cluster's postmaster, once known


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def cpu_of(pid: int) -> float:
    """CPU seconds of ``pid``, its reaped children and its live children (a server's
    backends): with the tool's own, what a command cost whatever the machine's load."""
    live = [child for child, parent in _parents().items() if parent == pid]
    total = 0
    for number, proc in enumerate([pid, *live]):
        fields = _stat(proc)
        total += sum(int(f) for f in fields[11 : 15 if number == 0 else 13])
    return total / TICK


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, todo = [root], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def run_sampled(
    cmd: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``cmd``; sample its process tree's CPU every 0.1 s (worker processes a
    tool does not wait for would escape getrusage): the result and CPU seconds."""
    seen: dict[int, int] = {}
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        outputs: list[str] = []
        reader = threading.Thread(target=lambda: outputs.extend(proc.communicate()))
        reader.start()
        while reader.is_alive():
            for pid in descendants(proc.pid):
                fields = _stat(pid)
                if fields:
                    seen[pid] = max(seen.get(pid, 0), int(fields[11]) + int(fields[12]))
            reader.join(0.1)
    done = subprocess.CompletedProcess(cmd, proc.returncode, outputs[0], outputs[1])
    return done, sum(seen.values()) / TICK


def server_pid(dsn: str) -> int:
    """The postmaster: the parent of a backend."""
    with psycopg.connect(dsn) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        return int(Path(f"/proc/{backend[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])


def asyncmig(
    *args: str, ok: tuple[int, ...] = (0, 8)
) -> tuple[Timed, subprocess.CompletedProcess[str]]:
    """One asyncmig command as a child process: its wall time, CPU time (its process
    tree and the server's) and result."""
    settle(args[args.index("--pg") + 1])
    logs = tempfile.mkdtemp(prefix="asyncmig-sync-bench-logs-")
    cmd = [sys.executable, "-P", "-m", "asyncmig", *args, "--schema", SCHEMA]
    server = cpu_of(SERVER[0]) if SERVER else 0.0
    started = time.perf_counter()
    out, cpu = run_sampled(cmd, {**tree_environment(ROOT), "ASYNCMIG_LOG_DIR": logs})
    seconds = time.perf_counter() - started
    cpu += (cpu_of(SERVER[0]) if SERVER else 0.0) - server
    shutil.rmtree(logs, ignore_errors=True)
    if out.returncode not in ok:
        raise RuntimeError(f"asyncmig {args[0]} failed (exit {out.returncode}): {tail(out.stderr)}")
    return Timed(round(seconds, 2), round(cpu, 2)), out


def totals(per_table: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    return {k: sum(t[k] for t in per_table.values()) for k in ("inserted", "updated", "deleted")}


def deep(db: Path, dsn: str) -> tuple[Timed, str]:
    timed, out = asyncmig("check", "--sqlite", str(db), "--pg", dsn, "--deep", ok=(0, 6))
    return timed, "passed" if out.returncode == 0 else "FAILED"


def one_round(db: Path, work: Path, dsn: str, share: float, seed: int) -> Round:
    """run; check --deep; edit, first sync (every row); edit, sync (by marks); check
    --deep; then run --sync-marks; edit, sync (by marks); check --deep."""
    copy = work / "round.db"
    shutil.copyfile(db, copy)
    full, _ = asyncmig("run", "--sqlite", str(copy), "--pg", dsn, "--replace")
    fresh_deep, fresh = deep(copy, dsn)
    edit(copy, share, seed)
    first, _ = timed_sync(copy, dsn)
    before = work / "before.db"
    shutil.copyfile(copy, before)
    edit(copy, share, seed + 1000)
    wanted = totals(changes_between(before, copy))
    done, report = timed_sync(copy, dsn)
    found = totals({t["table"]: t for t in report["tables"]})
    _, synced = deep(copy, dsn)
    shutil.copyfile(db, copy)
    marked, _ = asyncmig("run", "--sqlite", str(copy), "--pg", dsn, "--replace", "--sync-marks")
    edit(copy, share, seed + 2000)
    after, again = timed_sync(copy, dsn)
    _, marked_check = deep(copy, dsn)
    return Round(
        full,
        done,
        wanted,
        found,
        fresh_deep,
        first,
        marked,
        after,
        f"{ways(report)}; after run --sync-marks {ways(again)}",
        f"{fresh}, {synced}, {marked_check}",
    )


def timed_sync(db: Path, dsn: str) -> tuple[Timed, dict[str, Any]]:
    done, out = asyncmig("sync", "--sqlite", str(db), "--pg", dsn, "--output", "json")
    return done, json.loads(out.stdout)


def ways(report: dict[str, Any]) -> str:
    """How many tables the sync compared by marks."""
    tables = report["tables"]
    return f"{sum(t.get('compared') == 'marks' for t in tables)}/{len(tables)} by marks"


def northwind_round(db: Path, dsn: str, result: Round) -> None:
    result.northwind_full, _ = asyncmig("run", "--sqlite", str(db), "--pg", dsn, "--replace")
    result.northwind_deep, outcome = deep(db, dsn)
    result.deep_check += f", northwind {outcome}"


def _line(report: Report, label: str, what: str) -> str:
    return (
        f"  {label:<14} {report.median(what):8.2f} s wall, {report.median(what, 'cpu'):8.2f} s CPU"
    )


def render(report: Report) -> str:
    head = (
        f"{report.rows} rows, {report.changed_share:.1%} changed, {report.server}, "
        f"{len(report.rounds)} round(s), medians (CPU: asyncmig's processes and the server's):"
    )
    lines = [
        head,
        _line(report, "full run", "full"),
        _line(report, "first sync", "first_sync"),
        _line(report, "sync", "sync"),
        _line(report, "run --sync-marks", "marked_full"),
        _line(report, "sync after it", "after_marked"),
        _line(report, "check --deep", "deep"),
        (
            f"  ratio sync / full run: {report.ratio:.2f} wall, "
            f"{report.over('sync', 'full', 'cpu'):.2f} CPU (a sync after a sync: by marks)"
        ),
        (
            f"  ratio first sync / full run: {report.over('first_sync', 'full'):.2f} wall, "
            f"{report.over('first_sync', 'full', 'cpu'):.2f} CPU (after a plain run: every row)"
        ),
        (
            f"  ratio run --sync-marks / run: {report.over('marked_full', 'full'):.2f} wall, "
            f"{report.over('marked_full', 'full', 'cpu'):.2f} CPU; the sync after it / run: "
            f"{report.over('after_marked', 'full'):.2f} wall"
        ),
        (
            f"  ratio check --deep / full run: {report.over('deep', 'full'):.2f} wall, "
            f"{report.over('deep', 'full', 'cpu'):.2f} CPU"
        ),
    ]
    if report.northwind_rows:
        lines += [
            f"  Northwind-shaped, {report.northwind_rows} rows:",
            _line(report, "full run", "northwind_full"),
            _line(report, "check --deep", "northwind_deep"),
            (
                f"  ratio check --deep / full run: "
                f"{report.over('northwind_deep', 'northwind_full'):.2f} wall, "
                f"{report.over('northwind_deep', 'northwind_full', 'cpu'):.2f} CPU"
            ),
        ]
    lines += [
        f"  round {number}: edits {r.edits}, sync found {r.found} ({r.compared}), "
        f"check --deep {r.deep_check}"
        for number, r in enumerate(report.rounds, 1)
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync_bench", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=300_000,
        help="rows in the generated database (ignored with --db)",
    )
    parser.add_argument("--db", type=Path, help="use this SQLite file instead of generating")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--changed", type=float, default=0.01, help="share of rows edited")
    parser.add_argument(
        "--northwind-rows", type=int, default=0, help="also a Northwind-shaped database (0: none)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are shown")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bindir = pg_bin()
    compile_tree(ROOT)
    with tempfile.TemporaryDirectory(prefix="asyncmig-sync-bench-") as work:
        db = args.db or generate(
            "bench.gen_2truths", Path(work) / "2truths.db", "--rows", str(args.rows)
        )
        northwind = (
            generate(
                "bench.gen_northwind", Path(work) / "nw.db", "--rows", str(args.northwind_rows)
            )
            if args.northwind_rows
            else None
        )
        report = Report(
            sum(source_counts(db).values()),
            args.changed,
            f"PostgreSQL {bindir.parent.name}",
            sum(source_counts(northwind).values()) if northwind else 0,
        )
        with cluster(bindir) as dsn:
            SERVER[:] = [server_pid(dsn)]
            for number in range(max(1, args.repeat)):
                result = one_round(db, Path(work), dsn, args.changed, seed=number + 1)
                if northwind is not None:
                    northwind_round(northwind, dsn, result)
                report.rounds.append(result)
    print(render(report))
    if args.json is not None:
        data = {
            **asdict(report),
            "ratio": report.ratio,
            "deep_ratio": report.over("deep", "full"),
            "first_sync_ratio": report.over("first_sync", "full"),
            "marked_run_ratio": report.over("marked_full", "full"),
            "sync_after_marked_run_ratio": report.over("after_marked", "full"),
            "cpu_ratios": {
                "sync": report.over("sync", "full", "cpu"),
                "deep": report.over("deep", "full", "cpu"),
            },
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    ok = all(r.edits == r.found and "FAILED" not in r.deep_check for r in report.rounds)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
