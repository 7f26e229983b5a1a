"""The benchmark's results: per workload and tool, the rounds, their median and spread,
the phases and the ratios, as a table and as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Protocol


class Measured(Protocol):
    tool: str
    ok: bool
    seconds: float
    rows: int
    peak_rss_mb: float
    note: str
    phases: dict[str, float]
    cpu_s: float
    server_cpu_s: float

    @property
    def rows_per_s(self) -> float: ...


@dataclass
class Workload:
    """One database and every tool's rounds on it (rounds interleave the tools)."""

    name: str
    rows: int
    counts: dict[str, int]
    runs: dict[str, list[Measured]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, measure: Measured) -> None:
        self.runs.setdefault(measure.tool, []).append(measure)


@dataclass
class Report:
    jobs: int
    server: str
    workloads: list[Workload] = field(default_factory=list)
    # asyncmig on the dirty database over asyncmig on its clean twin, per round
    dirty_ratios: list[float] = field(default_factory=list)
    # the same for --baseline's tree, in the same rounds; each round's load average
    baseline_dirty_ratios: list[float] = field(default_factory=list)
    dirty_loads: list[float] = field(default_factory=list)


def median_of(runs: list[Measured]) -> Measured | None:
    """The run with the median time among the successful ones (a real run, not a blend)."""
    good = sorted((m for m in runs if m.ok), key=lambda m: m.seconds)
    return good[(len(good) - 1) // 2] if good else (runs[-1] if runs else None)


def spread(runs: list[Measured]) -> str:
    good = [m.seconds for m in runs if m.ok]
    return f"{min(good):.1f}-{max(good):.1f}" if len(good) > 1 else ""


def ratios(work: Workload, tool: str, baseline: str) -> list[float]:
    """Per round, tool seconds over baseline seconds (both measured in that round)."""
    pairs = zip(work.runs.get(tool, []), work.runs.get(baseline, []), strict=False)
    return [round(a.seconds / b.seconds, 2) for a, b in pairs if a.ok and b.ok]


def cpu_ratios(work: Workload, tool: str, baseline: str) -> list[float]:
    """Per round, the CPU seconds (tool + server) of tool over those of baseline: what
    the wall-time ratio would be on a machine whose cores each side keeps busy."""
    pairs = zip(work.runs.get(tool, []), work.runs.get(baseline, []), strict=False)
    return [
        round((a.cpu_s + a.server_cpu_s) / (b.cpu_s + b.server_cpu_s), 2)
        for a, b in pairs
        if a.ok and b.ok and b.cpu_s + b.server_cpu_s > 0
    ]


def _ratio_line(work: Workload, tool: str, baseline: str, *, cpu: bool = False) -> str | None:
    found = (cpu_ratios if cpu else ratios)(work, tool, baseline)
    if not found:
        return None
    ordered = sorted(found)
    median = ordered[(len(ordered) - 1) // 2]
    rounds = ", ".join(f"{r:.2f}" for r in found)
    return f"  {tool}/{baseline}{' CPU' if cpu else ''}: {median:.2f} (rounds: {rounds})"


def render_workload(work: Workload) -> list[str]:
    lines = [
        f"{work.name}: {work.rows:,} rows in {len(work.counts)} tables",
        (
            f"  {'tool':<16}{'seconds':>9}{'spread':>12}{'rows/s':>10}{'RSS MB':>8}"
            f"{'CPU s':>12}  phases"
        ),
    ]
    for tool, runs in work.runs.items():
        m = median_of(runs)
        if m is None:
            continue
        shown = f"{m.seconds:>9.2f}" if m.ok else f"{'failed':>9}"
        phases = " ".join(f"{k}={v:g}" for k, v in m.phases.items())
        cpu = f"{m.cpu_s:.1f}+{m.server_cpu_s:.1f}"
        lines.append(
            f"  {tool:<16}{shown}{spread(runs):>12}{m.rows_per_s:>10,.0f}"
            f"{m.peak_rss_mb:>8.0f}{cpu:>12}  {phases} {m.note}".rstrip()
        )
    for baseline in ("sqlite3 | psql", "pgloader"):
        for cpu_line in (False, True):
            line = _ratio_line(work, "asyncmig", baseline, cpu=cpu_line)
            if line:
                lines.append(line)
    lines += [f"  problem: {p}" for p in work.problems]
    return lines


def render(report: Report) -> str:
    lines = [
        (
            f"--jobs {report.jobs}, {report.server}; time ratios below 1: asyncmig faster; "
            f"load average {os.getloadavg()[0]:.1f}; CPU s: the tool's + the server's"
        )
    ]
    for work in report.workloads:
        lines += render_workload(work)
    if report.dirty_ratios:
        lines.append("asyncmig dirty/clean: " + ", ".join(f"{r:.2f}" for r in report.dirty_ratios))
    if report.baseline_dirty_ratios:
        lines.append(
            "baseline dirty/clean: " + ", ".join(f"{r:.2f}" for r in report.baseline_dirty_ratios)
        )
    if report.dirty_loads:
        lines.append(
            "load average after each dirty round: "
            + ", ".join(f"{r:.1f}" for r in report.dirty_loads)
        )
    return "\n".join(lines)


def to_json(report: Report) -> str:
    doc = {
        "jobs": report.jobs,
        "server": report.server,
        "dirty_ratios": report.dirty_ratios,
        "baseline_dirty_ratios": report.baseline_dirty_ratios,
        "dirty_loads": report.dirty_loads,
        "workloads": [],
    }
    for work in report.workloads:
        runs = {
            tool: [
                {**asdict(m), "rows_per_s": round(m.rows_per_s, 1)}  # type: ignore[call-overload]
                for m in measures
            ]
            for tool, measures in work.runs.items()
        }
        doc["workloads"].append(
            {  # type: ignore[attr-defined]
                "name": work.name,
                "rows": work.rows,
                "counts": work.counts,
                "runs": runs,
                "problems": work.problems,
                "ratio_asyncmig_over_c": ratios(work, "asyncmig", "sqlite3 | psql"),
                "ratio_asyncmig_over_pgloader": ratios(work, "asyncmig", "pgloader"),
                "cpu_ratio_asyncmig_over_c": cpu_ratios(work, "asyncmig", "sqlite3 | psql"),
                "cpu_ratio_asyncmig_over_pgloader": cpu_ratios(work, "asyncmig", "pgloader"),
            }
        )
    return json.dumps(doc, indent=2)


def ok(report: Report) -> bool:
    return all(
        m.ok for w in report.workloads for runs in w.runs.values() for m in runs
    ) and not any(w.problems for w in report.workloads)
