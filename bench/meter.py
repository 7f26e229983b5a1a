"""What a benchmark measures besides wall time: the whole process tree's memory, the CPU
time of a tool and of the server, and asyncmig's phases read back from its JSON log.

A tool's peak RSS is the peak of the *sum* over its process tree (main process, worker
processes, pipes), sampled from ``/proc`` every 50 ms: ``wait4``'s ``ru_maxrss`` only
knows one process, and a tree of workers peaks together. RSS includes file pages
mapped in (SQLite's ``mmap_size``), as a container's memory accounting does.

CPU seconds (user + system) do not depend on what else runs on the machine the way
wall time does: a tool's are those of its reaped process tree (``RUSAGE_CHILDREN``),
the server's those of its postmaster, its exited backends (reaped, so counted in the
postmaster's children time) and the live ones.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
INTERVAL = 0.05


def _parents() -> dict[int, int]:
    """pid -> parent pid for every process we can see."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields follow the last ')'
        found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def tree_rss(root: int, *, include_root: bool = True) -> int:
    """Bytes resident in ``root`` and all its descendants right now."""
    own = _rss(root) if include_root else 0
    return own + sum(_rss(pid) for pid in descendants(root))


class PeakSampler:
    """Samples a process tree's RSS in a thread; ``peak_mb`` once stopped."""

    def __init__(self, root: int, *, include_root: bool = True) -> None:
        self.root, self.include_root = root, include_root
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.root, include_root=self.include_root))
            self._stop.wait(INTERVAL)

    def start(self) -> PeakSampler:
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


@contextmanager
def sampling(root: int, *, include_root: bool = True) -> Iterator[PeakSampler]:
    sampler = PeakSampler(root, include_root=include_root).start()
    try:
        yield sampler
    finally:
        sampler.stop()


def process_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children it has reaped (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / TICKS  # utime stime cutime cstime


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by ``root`` and its live descendants (and those they
    reaped)."""
    return sum(process_cpu(pid) for pid in [root, *descendants(root)])


def server_cpu(postmaster: int) -> float:
    """CPU seconds the server has used so far: postmaster, exited and live backends."""
    live = [pid for pid, parent in _parents().items() if parent == postmaster]
    return process_cpu(postmaster) + sum(process_cpu(pid) for pid in live)


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


@dataclass
class CpuUse:
    """Seconds of CPU a tool's processes and the server used meanwhile (set on exit)."""

    tool: float = 0.0
    server: float = 0.0


@contextmanager
def cpu_used(postmaster: int | None) -> Iterator[CpuUse]:
    """CPU used by the children this process reaps meanwhile, and by the server (whose
    backends must have exited by the end to be counted whole, as a tool's do)."""
    use = CpuUse()
    tool, server = _children_cpu(), server_cpu(postmaster) if postmaster else 0.0
    try:
        yield use
    finally:
        use.tool = round(_children_cpu() - tool, 2)
        if postmaster:
            use.server = round(server_cpu(postmaster) - server, 2)


def _when(event: dict[str, object]) -> float:
    return dt.datetime.fromisoformat(str(event["timestamp"])).timestamp()


def asyncmig_phases(log_dir: Path, started: float) -> dict[str, float]:
    """Seconds per phase of one asyncmig run, from its JSON log in ``log_dir``.

    ``started`` is the wall-clock time the process was started (``time.time()``).
    first_copy: start to the load phase (tables created, COPY begins); profile: the
    planning phase (introspection, row counts, samples or scans); load: the load phase
    up to the last table's data (each table's indexes overlap the other loads);
    indexes: the per-table index seconds summed; fks: orphans, foreign keys, views;
    checks: the final check, history and rollback script.
    """
    events: list[dict[str, object]] = [
        json.loads(line)
        for path in sorted(log_dir.glob("*.log"))
        for line in path.read_text().splitlines()
        if line.startswith("{")
    ]
    marks: dict[str, float] = {}
    for event in events:
        name = str(event.get("event"))
        key = f"{name}:{event.get('phase')}" if name == "phase_started" else name
        marks.setdefault(key, _when(event))  # the first: a re-planned run starts again
    phases = {}
    pairs = {
        "profile": ("phase_started:planning", "planned"),
        "load": ("phase_started:loading", "data_loaded"),
        "fks": ("phase_started:foreign keys", "phase_started:verifying"),
        "checks": ("phase_started:verifying", "run_finished"),
    }
    for phase, (start, end) in pairs.items():
        if start in marks and end in marks:
            phases[phase] = round(marks[end] - marks[start], 2)
    if "phase_started:loading" in marks:
        phases["first_copy"] = round(marks["phase_started:loading"] - started, 2)
    phases["indexes"] = round(
        sum(float(str(e.get("index_s", 0))) for e in events if e.get("event") == "table_loaded"), 2
    )
    refuted = sum(1 for e in events if e.get("event") == "plan_refuted")
    if refuted:
        phases["replans"] = refuted
    return phases
