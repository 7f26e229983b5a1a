"""How asyncmig's time, CPU and memory grow with the rows: the same run on 2Truths
databases of several sizes, as ratios to the smallest.

    python -m bench.scale_bench [--rows 1000000 --rows 10000000 --rows 20000000]
                                [--db FILE ...] [--workdir DIR] [--jobs 2] [--repeat 1]
                                [--option=--queue-size=2 ...] [--json OUT]

The databases are the ``--db`` files, or 2Truths databases of ``--rows`` rows made by
``bench.gen_2truths`` (into ``--workdir``, kept there and reused by the next run of
this script; without it into a temporary directory removed at the end). Against one
throw-away cluster (see :mod:`bench.run_bench`), each round runs asyncmig's ``run``
(default options, ``--jobs``, and each ``--option``) on every size into an empty schema, the sizes ascending
in odd rounds and descending in even ones, so that no size always runs first. Per run:

- wall seconds, the CPU seconds of asyncmig's process tree and of the server, and the
  peak RSS of the whole tree (sampled; :mod:`bench.meter`);
- the first COPY: seconds from the start until the server first runs a COPY
  (``pg_stat_activity`` polled every 10 ms until then), and the log's load phase start;
- the machine's load average (1 minute), sampled every 5 s during the run: the cores
  may be shared, and CPU seconds move less with the load than wall seconds do.

Every table's row count in PostgreSQL is compared with SQLite's afterwards. The report
gives every run, and per size its ratios to the smallest size: per round (runs made
minutes apart) and of the medians, with the issue's goals (peak RSS under 300 MB and
within 15 % of the smallest's; time at most 1.1x proportional to the rows).
No timing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.first_copy import DROP_LEFTOVERS, CopyWatch
from bench.run_bench import (
    ASYNCMIG_SCHEMA,
    Measure,
    cluster,
    generate,
    pg_bin,
    psql,
    qi,
    run_asyncmig,
    source_counts,
    verify_counts,
)

SIZES = (1_000_000, 10_000_000, 20_000_000)
LOAD_INTERVAL = 5.0
RSS_LIMIT_MB = 300
RSS_GROWTH = 1.15  # peak RSS at the largest size over the smallest's
TIME_PER_ROW = 1.1  # 10x the rows in at most 11x the time


@dataclass
class ScaleRun:
    """One asyncmig run on one size."""

    db: str
    rows: int
    round: int
    ok: bool = False
    seconds: float = 0.0
    cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    first_copy_s: float | None = None  # the server's first COPY, seen by the poller
    loading_s: float | None = None  # the log's load phase start
    load_average: list[float] = field(default_factory=list)  # 1-minute, sampled
    problems: list[str] = field(default_factory=list)

    @property
    def cpu_total(self) -> float:
        return self.cpu_s + self.server_cpu_s


class LoadSampler:
    """The machine's 1-minute load average every ``LOAD_INTERVAL`` seconds, in a thread."""

    def __init__(self) -> None:
        self.found = [round(os.getloadavg()[0], 2)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(LOAD_INTERVAL):
            self.found.append(round(os.getloadavg()[0], 2))

    @contextmanager
    def running(self) -> Iterator[LoadSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.found.append(round(os.getloadavg()[0], 2))


def measured_run(
    dsn: str, db: Path, jobs: int, result: ScaleRun, extra: Sequence[str] = ()
) -> None:
    """One ``run`` into an empty schema, watched for its first COPY."""
    bindir = pg_bin()
    psql(bindir, dsn, f"DROP SCHEMA IF EXISTS {qi(ASYNCMIG_SCHEMA)} CASCADE")
    psql(bindir, dsn, DROP_LEFTOVERS)  # a failed run's stage kept for resuming
    with LoadSampler().running() as load, CopyWatch(dsn) as watch:
        began = time.perf_counter()
        measure: Measure = run_asyncmig(db, dsn, jobs, result.rows, extra=extra)
    result.ok, result.seconds = measure.ok, round(measure.seconds, 2)
    result.cpu_s, result.server_cpu_s = measure.cpu_s, measure.server_cpu_s
    result.peak_rss_mb = round(measure.peak_rss_mb, 1)
    result.loading_s = measure.phases.get("first_copy")
    if watch.seen is not None:
        result.first_copy_s = round(watch.seen - began, 2)
    result.load_average = load.found


def sizes_in_turn(dbs: list[tuple[Path, int]], round_number: int) -> list[tuple[Path, int]]:
    """Ascending in odd rounds, descending in even ones."""
    ordered = sorted(dbs, key=lambda d: d[1])
    return ordered if round_number % 2 else ordered[::-1]


def median(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return round(statistics.median(found), 2) if found else None


def _median_row(runs: list[ScaleRun]) -> dict[str, float | None]:
    good = [r for r in runs if r.ok]
    return {
        "seconds": median([r.seconds for r in good]),
        "cpu_s": median([r.cpu_s for r in good]),
        "server_cpu_s": median([r.server_cpu_s for r in good]),
        "peak_rss_mb": median([r.peak_rss_mb for r in good]),
        "first_copy_s": median([r.first_copy_s for r in good]),
        "cpu_total": median([r.cpu_total for r in good]),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def run_lines(runs: list[ScaleRun]) -> list[str]:
    lines = [
        "round | rows | ok | wall s | asyncmig CPU s | server CPU s | peak RSS MB | "
        + "first COPY s (log: load phase) | load average (1 min) min-max"
    ]
    for r in runs:
        lines.append(
            f"{r.round} | {r.rows:,} | {r.ok} | {r.seconds} | {r.cpu_s} | {r.server_cpu_s} | "
            f"{r.peak_rss_mb} | {r.first_copy_s} ({r.loading_s}) | "
            f"{min(r.load_average, default=0)}-{max(r.load_average, default=0)}"
        )
        lines += [f"  problem: {p}" for p in r.problems]
    return lines


def ratio_lines(runs: list[ScaleRun], sizes: list[int]) -> list[str]:
    """Each size against the smallest: of the medians, and round by round."""
    by_size = {n: [r for r in runs if r.rows == n] for n in sizes}
    medians = {n: _median_row(by_size[n]) for n in sizes}
    small = sizes[0]
    lines = ["", "rows | median wall s | CPU s (asyncmig + server) | peak RSS MB | first COPY s"]
    for n in sizes:
        m = medians[n]
        lines.append(
            f"{n:,} | {m['seconds']} | {m['cpu_s']} + {m['server_cpu_s']} | "
            f"{m['peak_rss_mb']} | {m['first_copy_s']}"
        )
    for n in sizes[1:]:
        rows_ratio = n / small
        lines.append(
            f"{n:,} / {small:,} rows ({rows_ratio:g}x): wall "
            f"{_ratio(medians[n]['seconds'], medians[small]['seconds'])}, CPU "
            f"{_ratio(medians[n]['cpu_total'], medians[small]['cpu_total'])}, peak RSS "
            f"{_ratio(medians[n]['peak_rss_mb'], medians[small]['peak_rss_mb'])}, first COPY "
            f"{_ratio(medians[n]['first_copy_s'], medians[small]['first_copy_s'])}; "
            f"per round, wall {per_round(by_size[n], by_size[small], 'seconds')}, "
            f"CPU {per_round(by_size[n], by_size[small], 'cpu_total')}"
        )
    return lines + goal_lines(medians, sizes)


def per_round(large: list[ScaleRun], small: list[ScaleRun], key: str) -> list[float | None]:
    """The large size's figure over the small one's, in the same round."""
    small_by_round = {r.round: r for r in small if r.ok}
    return [
        _ratio(getattr(r, key), getattr(small_by_round[r.round], key))
        for r in large
        if r.ok and r.round in small_by_round
    ]


def goal_lines(medians: dict[int, dict[str, float | None]], sizes: list[int]) -> list[str]:
    small, large = sizes[0], sizes[-1]
    rss = [medians[n]["peak_rss_mb"] or 0.0 for n in sizes]
    growth = _ratio(medians[large]["peak_rss_mb"], medians[small]["peak_rss_mb"])
    lines = [
        "",
        f"goal: peak RSS under {RSS_LIMIT_MB} MB at every size: {max(rss) < RSS_LIMIT_MB}",
        f"goal: peak RSS within {RSS_GROWTH - 1:.0%} from the smallest to the largest: "
        + f"{growth is not None and growth <= RSS_GROWTH} ({growth})",
    ]
    for n in sizes[1:]:
        wall = _ratio(medians[n]["seconds"], medians[small]["seconds"])
        cpu = _ratio(medians[n]["cpu_total"], medians[small]["cpu_total"])
        allowed = TIME_PER_ROW * n / small
        lines.append(
            f"goal: {n / small:g}x the rows in at most {allowed:g}x the time: "
            f"{wall is not None and wall <= allowed} (wall {wall}x, CPU {cpu}x)"
        )
    return lines


def databases(args: argparse.Namespace, workdir: Path) -> list[tuple[Path, int]]:
    """(file, rows) per size: the ``--db`` files, or generated ones (reused if there)."""
    if args.db:
        return [(db, sum(source_counts(db).values())) for db in args.db]
    found = []
    for rows in args.rows or SIZES:
        db = workdir / f"2truths-{rows}.db"
        if not db.exists():
            print(f"generating {db} ...", file=sys.stderr)
            generate("bench.gen_2truths", db, "--rows", str(rows), "--seed", str(args.seed))
        found.append((db, sum(source_counts(db).values())))
    return found


def measure_all(
    dbs: list[tuple[Path, int]], jobs: int, repeat: int, extra: Sequence[str] = ()
) -> list[ScaleRun]:
    counts = {db: source_counts(db) for db, _ in dbs}
    runs = []
    with cluster(pg_bin()) as dsn:
        for round_number in range(1, max(1, repeat) + 1):
            for db, rows in sizes_in_turn(dbs, round_number):
                result = ScaleRun(str(db), rows, round_number)
                measured_run(dsn, db, jobs, result, extra)
                if result.ok:
                    result.problems = verify_counts(pg_bin(), dsn, counts[db], ASYNCMIG_SCHEMA)
                    result.ok = not result.problems
                print(f"run: {json.dumps(asdict(result))}", file=sys.stderr)
                runs.append(result)
    return runs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--rows",
        type=int,
        action="append",
        help="a size to generate (repeat; default 1M, 10M, 20M)",
    )
    parser.add_argument("--db", type=Path, action="append", help="use this file (repeat)")
    parser.add_argument("--workdir", type=Path, help="generate here and keep the files")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--jobs", type=int, default=2, help="asyncmig's --jobs")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over every size")
    parser.add_argument(
        "--option", action="append", default=[], help="an option for asyncmig run (repeat)"
    )
    parser.add_argument("--json", type=Path, help="also write every run here as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="asyncmig-scale-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        dbs = databases(args, workdir)
        runs = measure_all(dbs, args.jobs, args.repeat, args.option)
    sizes = sorted({rows for _, rows in dbs})
    print(
        f"--jobs {args.jobs} {' '.join(args.option)}, {os.cpu_count()} cores, "
        f"PostgreSQL {pg_bin().parent.name}"
    )
    for line in run_lines(runs) + ratio_lines(runs, sizes):
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1) + "\n")
    return 0 if runs and all(r.ok for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
