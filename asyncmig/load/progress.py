"""What a person (or a log collector) sees while a run works: phases, rows, rates, rejects.

Counts come from wherever a table is loaded, worker processes included, through a
:class:`Board`: a small private memory-mapped file with two 64-bit counters per table
(rows copied, rows rejected). A writer adds to its table's slot after every batch; the
main process reads the whole board a few times a second. Nothing is pickled, nothing
waits: a worker never blocks on the display, and the board costs 16 bytes a table.

Where it goes is the :class:`Reporter` the command line installs:

* on a terminal, :class:`LiveReporter`: a live display on stderr (rich), the current
  phase, one bar per table in flight with rows, rows/s and time left, totals and the
  rejects so far;
* elsewhere (a container, a scheduled job), :class:`EventReporter`: JSON events
  (``phase_started``, ``progress`` every few seconds, ``run_started``,
  ``run_finished``, ``run_failed``) that a log collector can follow;
* a library caller gets the plain :class:`Reporter`, which only logs the phases.
"""

from __future__ import annotations

import mmap
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from asyncmig.target import files
from asyncmig.target.scratch import Scratch

log = structlog.get_logger(__name__)

PHASES = ("checking", "planning", "loading", "indexing", "foreign keys", "verifying")
_SLOT = struct.Struct("<qq")  # rows copied, rows rejected
EVENT_INTERVAL = 5.0  # seconds between JSON progress events
TICK = 0.25  # seconds between reads of the board
PREFIX = "asyncmig-progress-"  # the board's folder (asyncmig.target.scratch)


@dataclass(frozen=True)
class Slot:
    """One table's place on the board: picklable, opened where the table is loaded."""

    path: str
    index: int

    @contextmanager
    def counter(self) -> Iterator[Counter]:
        with open(self.path, "r+b") as stream, mmap.mmap(stream.fileno(), 0) as view:
            yield Counter(view, self.index * _SLOT.size)


class Counter:
    """Adds a table's progress to the board (the only writer of its slot)."""

    def __init__(self, view: mmap.mmap, offset: int):
        self.view = view
        self.offset = offset
        self.rows = self.rejected = 0

    def add(self, rows: int, rejected: int) -> None:
        self.rows += rows
        self.rejected = rejected
        _SLOT.pack_into(self.view, self.offset, self.rows, self.rejected)


class Board:
    """Per-table counters shared with worker processes through a private mapped file.

    The file lives in the temporary directory, in a folder of its own that the next
    run removes if this one is killed outright (:mod:`asyncmig.target.scratch`). Where
    there is no temporary directory to write (a read-only container without a
    ``/tmp`` volume, a full disk) the run goes on without live counts: a warning, and
    no slots (``slot`` gives None, ``read`` nothing)."""

    def __init__(self, tables: list[str]):
        self.tables = tables
        self.path: str | None = None
        self.folder: Scratch | None = None
        try:
            self.folder = Scratch(PREFIX)
            path = self.folder.path / "board"
            with files.create(path) as stream:
                stream.write(bytes(_SLOT.size * max(1, len(tables))))
            with path.open("rb") as stream:  # the mapping keeps its own descriptor
                self._view = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            log.warning("progress_unavailable", reason=f"{type(exc).__name__}: {exc}")
            self._remove()
            return
        self.path = str(path)

    def slot(self, table: str) -> Slot | None:
        return None if self.path is None else Slot(self.path, self.tables.index(table))

    def read(self) -> dict[str, tuple[int, int]]:
        if self.path is None:
            return {}
        return {
            name: _SLOT.unpack_from(self._view, i * _SLOT.size)
            for i, name in enumerate(self.tables)
        }

    def close(self) -> None:
        if self.path is not None:
            self._view.close()
        self._remove()

    def _remove(self) -> None:
        """The file and its folder, whatever of them was made."""
        if self.folder is not None:
            self.folder.close()
            self.folder = None


@dataclass
class TableState:
    total: int
    started: float | None = None
    finished: bool = False


class Reporter:
    """The quiet default: phases and the run's outcome in the log, nothing live."""

    def __init__(self) -> None:
        self.phase_name = ""
        self.run_id: int | None = None
        self.states: dict[str, TableState] = {}
        self.loading_since = time.monotonic()

    def phase(self, name: str) -> None:
        self.phase_name = name
        log.info("phase_started", phase=name, run_id=self.run_id)

    def run_started(self, run_id: int, command: str, source: str) -> None:
        self.run_id = run_id
        log.info("run_started", run_id=run_id, command=command, source=source)

    def tables(self, totals: dict[str, int]) -> None:
        self.states = {name: TableState(total) for name, total in totals.items()}
        self.loading_since = time.monotonic()

    def table_started(self, name: str) -> None:
        state = self.states[name]
        # a table first seen already loaded (between two ticks) started no later than
        # the load itself: its rate is then a lower bound, never a division by ~0
        state.started = self.loading_since if state.finished else time.monotonic()

    def table_finished(self, name: str) -> None:
        self.states[name].finished = True

    def table_counted(self, name: str, rows: int) -> None:
        """The exact count of a table whose total was an estimate (asyncmig.load.counts)."""
        if name in self.states:
            self.states[name].total = rows

    def table_indexing(self, name: str) -> None:
        """The first table whose data is in starts the index builds (they overlap loads)."""
        if self.phase_name == "loading":
            self.phase("indexing")

    def update(self, counts: dict[str, tuple[int, int]]) -> None:
        """Every tick, and once at the end of the load, with the board's counts."""
        for name, (rows, rejected) in counts.items():
            state = self.states.get(name)
            if state is not None and state.started is None and (rows or rejected):
                self.table_started(name)  # its first batch is in
        self.show(counts)

    def show(self, counts: dict[str, tuple[int, int]]) -> None:
        """What a reporter does with the counts."""

    def run_finished(self, exit_code: int, rows: int, rejected: int, warnings: list[str]) -> None:
        for warning in warnings:
            log.info("run_warning", run_id=self.run_id, message=warning)
        log.info(
            "run_finished",
            run_id=self.run_id,
            outcome="succeeded",
            exit_code=exit_code,
            rows=rows,
            rejected=rejected,
        )

    def run_failed(self, exit_code: int, error: BaseException, said: str | None = None) -> None:
        self.stop()
        message = said or (str(error).splitlines() or [type(error).__name__])[0]
        log.info(
            "run_failed",
            run_id=self.run_id,
            outcome="failed",
            exit_code=exit_code,
            error=type(error).__name__,
            message=message,
        )

    def stop(self) -> None:
        """The live part ends (the load is over); later phases are still reported."""


class EventReporter(Reporter):
    """JSON ``progress`` events every few seconds, for log collectors."""

    def __init__(self, interval: float = EVENT_INTERVAL):
        super().__init__()
        self.interval = interval
        self.last = time.monotonic()
        self.reported: dict[str, tuple[int, int]] = {}  # last counts sent, per table

    def show(self, counts: dict[str, tuple[int, int]]) -> None:
        now = time.monotonic()
        if now - self.last < self.interval and not self.all_finished():
            return
        self.last = now
        for name, state in self.states.items():
            rows, rejected = counts.get(name, (0, 0))
            if state.started is None or self.reported.get(name) == (rows, rejected):
                continue
            self.reported[name] = (rows, rejected)
            log.info(
                "progress",
                phase=self.phase_name,
                run_id=self.run_id,
                table=name,
                rows_done=rows,
                rows_total=state.total,
                rejected=rejected,
                rows_per_s=int(rows / max(now - state.started, 1e-6)),
            )

    def all_finished(self) -> bool:
        return all(state.finished for state in self.states.values())


class LiveReporter(Reporter):
    """A live display on a terminal: one bar per table in flight, totals, rejects."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.ids: dict[str, Any] = {}
        self.total_id: Any = None

    def phase(self, name: str) -> None:
        super().phase(name)
        self.console.print(f"[bold]{name}[/bold]", highlight=False)

    def tables(self, totals: dict[str, int]) -> None:
        super().tables(totals)
        self.total_id = self.bars.add_task("all tables", total=sum(totals.values()) or 1, rate="")
        self.bars.start()

    def table_started(self, name: str) -> None:
        super().table_started(name)
        if self.states[name].finished:  # loaded between two ticks: no bar to show
            return
        self.ids[name] = self.bars.add_task(
            f"  {name}", total=self.states[name].total or 1, rate=""
        )

    def table_finished(self, name: str) -> None:
        super().table_finished(name)
        task = self.ids.pop(name, None)
        if task is not None:
            self.bars.remove_task(task)

    def table_counted(self, name: str, rows: int) -> None:
        super().table_counted(name, rows)
        if name in self.ids:
            self.bars.update(self.ids[name], total=rows or 1)
        if self.total_id is not None:
            total = sum(state.total for state in self.states.values())
            self.bars.update(self.total_id, total=total or 1)

    def show(self, counts: dict[str, tuple[int, int]]) -> None:
        now = time.monotonic()
        rejected = sum(r for _, r in counts.values())
        for name, task in self.ids.items():
            rows, _ = counts.get(name, (0, 0))
            started = self.states[name].started or now
            rate = rows / max(now - started, 1e-6)
            self.bars.update(task, completed=rows, rate=f"{rate:,.0f} rows/s")
        done = sum(rows for rows, _ in counts.values())
        note = f"{rejected} rejected" if rejected else ""
        self.bars.update(self.total_id, completed=done, rate=note)

    def stop(self) -> None:
        if self.bars.live.is_started:
            self.bars.stop()


_current: Reporter = Reporter()


async def tick(board: Board, copying: anyio.Event | None = None) -> None:
    """Show the board every :data:`TICK` seconds until cancelled (the load is over);
    set ``copying`` once any table's first batch is in."""
    while True:
        counts = board.read()
        current().update(counts)
        if copying is not None and any(rows or rejected for rows, rejected in counts.values()):
            copying.set()
        await anyio.sleep(TICK)


def current() -> Reporter:
    return _current


def install(reporter: Reporter) -> None:
    global _current
    _current = reporter


def for_terminal(quiet: bool, json_console: bool) -> Reporter:
    """The reporter a command-line run gets: live on a terminal, events elsewhere."""
    import sys

    if quiet:
        return Reporter()
    if not json_console and sys.stderr.isatty() and sys.stdout.isatty():
        return LiveReporter()
    return EventReporter()
