"""Time `asyncmig sync` and `check --deep` against a full `asyncmig run`, as ratios.

All are measured in one script run, against one throw-away PostgreSQL cluster (see
:mod:`bench.run_bench`), on the generated 2Truths-1Lie database. Each round:

1. copies the generated database and migrates it in full (``run --replace``): the
   baseline, and the target the sync starts from;
2. checks the fresh copy with ``check --deep`` (timed: the deep check's ratio);
3. edits about ``--changed`` of the copy's rows (a third each inserted, updated,
   deleted, spread over all nine tables; :mod:`bench.edit_2truths`);
4. syncs it (``sync``, timed), and proves the result with ``check --deep``.

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
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.edit_2truths import changes_between, edit
from bench.run_bench import ROOT, cluster, generate, pg_bin, source_counts, tail

SCHEMA = "sync_bench"


@dataclass
class Round:
    full_seconds: float
    sync_seconds: float
    edits: dict[str, int]  # inserted / updated / deleted, by comparing the files
    found: dict[str, int]  # the same, as the sync reported them
    deep_seconds: float = 0.0  # check --deep of the fresh copy
    deep_check: str = "not run"  # check --deep of the fresh copy, then of the synced one
    northwind_full: float = 0.0
    northwind_deep: float = 0.0


@dataclass
class Report:
    rows: int
    changed_share: float
    server: str
    northwind_rows: int = 0
    rounds: list[Round] = field(default_factory=list)

    def median(self, what: str) -> float:
        return statistics.median(getattr(r, what) for r in self.rounds)

    def over(self, what: str, baseline: str) -> float:
        return round(self.median(what) / self.median(baseline), 3)

    @property
    def ratio(self) -> float:
        return self.over("sync_seconds", "full_seconds")


def asyncmig(
    *args: str, ok: tuple[int, ...] = (0, 8)
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """One asyncmig command as a child process: its wall time and result."""
    logs = tempfile.mkdtemp(prefix="asyncmig-sync-bench-logs-")
    cmd = [sys.executable, "-m", "asyncmig", *args, "--schema", SCHEMA]
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
    if out.returncode not in ok:
        raise RuntimeError(f"asyncmig {args[0]} failed (exit {out.returncode}): {tail(out.stderr)}")
    return seconds, out


def totals(per_table: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    return {k: sum(t[k] for t in per_table.values()) for k in ("inserted", "updated", "deleted")}


def deep(db: Path, dsn: str) -> tuple[float, str]:
    seconds, out = asyncmig("check", "--sqlite", str(db), "--pg", dsn, "--deep", ok=(0, 6))
    return seconds, "passed" if out.returncode == 0 else "FAILED"


def one_round(db: Path, work: Path, dsn: str, share: float, seed: int) -> Round:
    copy = work / "round.db"
    shutil.copyfile(db, copy)
    full, _ = asyncmig("run", "--sqlite", str(copy), "--pg", dsn, "--replace")
    deep_seconds, fresh = deep(copy, dsn)
    edit(copy, share, seed)
    wanted = totals(changes_between(db, copy))
    done, out = asyncmig("sync", "--sqlite", str(copy), "--pg", dsn, "--output", "json")
    found = totals({t["table"]: t for t in json.loads(out.stdout)["tables"]})
    _, synced = deep(copy, dsn)
    return Round(full, done, wanted, found, deep_seconds, f"{fresh}, {synced}")


def northwind_round(db: Path, dsn: str, result: Round) -> None:
    result.northwind_full, _ = asyncmig("run", "--sqlite", str(db), "--pg", dsn, "--replace")
    result.northwind_deep, outcome = deep(db, dsn)
    result.deep_check += f", northwind {outcome}"


def render(report: Report) -> str:
    head = (
        f"{report.rows} rows, {report.changed_share:.1%} changed, {report.server}, "
        f"{len(report.rounds)} round(s), medians:"
    )
    lines = [
        head,
        f"  full run       {report.median('full_seconds'):8.2f} s",
        f"  sync           {report.median('sync_seconds'):8.2f} s",
        f"  check --deep   {report.median('deep_seconds'):8.2f} s",
        f"  ratio sync / full run: {report.ratio:.2f}",
        f"  ratio check --deep / full run: {report.over('deep_seconds', 'full_seconds'):.2f}",
    ]
    if report.northwind_rows:
        lines += [
            (
                f"  Northwind-shaped, {report.northwind_rows} rows: full run "
                f"{report.median('northwind_full'):.2f} s, check --deep "
                f"{report.median('northwind_deep'):.2f} s, ratio "
                f"{report.over('northwind_deep', 'northwind_full'):.2f}"
            ),
        ]
    for number, r in enumerate(report.rounds, 1):
        lines.append(
            f"  round {number}: full {r.full_seconds:.2f} s, sync {r.sync_seconds:.2f} s,"
            f" check --deep {r.deep_seconds:.2f} s, edits {r.edits}, sync found {r.found},"
            f" check --deep {r.deep_check}"
            + (
                f", northwind full {r.northwind_full:.2f} s, deep {r.northwind_deep:.2f} s"
                if report.northwind_rows
                else ""
            )
        )
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
            "deep_ratio": report.over("deep_seconds", "full_seconds"),
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    ok = all(r.edits == r.found and "FAILED" not in r.deep_check for r in report.rounds)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
