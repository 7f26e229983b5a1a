"""Time `asyncmig sync` against a full `asyncmig run` of the same database, as a ratio.

Both are measured in one script run, against one throw-away PostgreSQL cluster (see
:mod:`bench.run_bench`), on the generated 2Truths-1Lie database. Each round:

1. copies the generated database and migrates it in full (``run --replace``): the
   baseline, and the target the sync starts from;
2. edits about ``--changed`` of the copy's rows (a third each inserted, updated,
   deleted, spread over all nine tables; :mod:`bench.edit_2truths`);
3. syncs it (``sync``), and in the first round proves the result with
   ``check --deep``.

The report gives each side's median seconds, the ratio sync / full run, and the
rows the sync found changed (which the edits' own counts must equal).

    python -m bench.sync_bench [--rows 300000] [--db FILE] [--changed 0.01]
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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.edit_2truths import changes_between, edit
from bench.run_bench import ROOT, cluster, pg_bin, prepare_db, source_counts, tail

SCHEMA = "sync_bench"


@dataclass
class Round:
    full_seconds: float
    sync_seconds: float
    edits: dict[str, int]  # inserted / updated / deleted, by comparing the files
    found: dict[str, int]  # the same, as the sync reported them
    deep_check: str = "not run"


@dataclass
class Report:
    rows: int
    changed_share: float
    server: str
    rounds: list[Round] = field(default_factory=list)

    def median(self, what: str) -> float:
        return statistics.median(getattr(r, what) for r in self.rounds)

    @property
    def ratio(self) -> float:
        return round(self.median("sync_seconds") / self.median("full_seconds"), 3)


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


def one_round(db: Path, work: Path, dsn: str, share: float, seed: int, deep: bool) -> Round:
    copy = work / "round.db"
    shutil.copyfile(db, copy)
    full, _ = asyncmig("run", "--sqlite", str(copy), "--pg", dsn, "--replace")
    edit(copy, share, seed)
    wanted = totals(changes_between(db, copy))
    done, out = asyncmig("sync", "--sqlite", str(copy), "--pg", dsn, "--output", "json")
    found = totals({t["table"]: t for t in json.loads(out.stdout)["tables"]})
    result = Round(full, done, wanted, found)
    if deep:
        _, checked = asyncmig("check", "--sqlite", str(copy), "--pg", dsn, "--deep", ok=(0, 6))
        result.deep_check = "passed" if checked.returncode == 0 else "FAILED"
    return result


def render(report: Report) -> str:
    head = (
        f"{report.rows} rows, {report.changed_share:.1%} changed, {report.server}, "
        f"{len(report.rounds)} round(s), medians:"
    )
    lines = [
        head,
        f"  full run  {report.median('full_seconds'):8.2f} s",
        f"  sync      {report.median('sync_seconds'):8.2f} s",
        f"  ratio sync / full run: {report.ratio:.2f}",
    ]
    for number, r in enumerate(report.rounds, 1):
        lines.append(
            f"  round {number}: full {r.full_seconds:.2f} s, sync {r.sync_seconds:.2f} s,"
            f" edits {r.edits}, sync found {r.found}, check --deep {r.deep_check}"
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
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are shown")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bindir = pg_bin()
    with tempfile.TemporaryDirectory(prefix="asyncmig-sync-bench-") as work:
        db = prepare_db(args, Path(work))
        report = Report(
            sum(source_counts(db).values()), args.changed, f"PostgreSQL {bindir.parent.name}"
        )
        with cluster(bindir) as dsn:
            for number in range(max(1, args.repeat)):
                report.rounds.append(
                    one_round(db, Path(work), dsn, args.changed, seed=number + 1, deep=number == 0)
                )
    print(render(report))
    if args.json is not None:
        args.json.write_text(json.dumps({**asdict(report), "ratio": report.ratio}, indent=2) + "\n")
    ok = all(r.edits == r.found and r.deep_check != "FAILED" for r in report.rounds)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
