"""``--chunk-rows``: a large table committed in rowid ranges, each one recorded.

Each chunk is one transaction: the COPY of the rows whose rowid is in its range, then
its record in ``asyncmig.run_chunks`` (rows, rejects, replaced values); the last
chunk's transaction also writes the table's history row. A crash therefore costs at
most the chunk in flight, and the table holds exactly the recorded chunks: a run that
resumes it (or a retry after a lost connection) continues after the last recorded
chunk. The table is in the run's stage until the cut-over, so no reader sees it
partial; the row count checked at the end is the whole table's.

    rowid  lo ─────────── chunk 1 ── COMMIT + record ┐
           ...            chunk 2 ── COMMIT + record ├─ last: + the table's history row
           hi ─────────── chunk n ── COMMIT + record ┘

Only rowid tables are chunked (an INTEGER PRIMARY KEY is the rowid); WITHOUT ROWID
tables load in one transaction, as do tables of at most ``--chunk-rows`` rows.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import anyio
import asyncpg
import structlog

from asyncmig.load import split
from asyncmig.load.counts import recorded_rows
from asyncmig.load.pipeline import PipelineSettings, Recorder, TableLoad, load_rows
from asyncmig.load.policy import Accounts, check_rejects, combine
from asyncmig.load.progress import Counter, Slot
from asyncmig.plan.model import TablePlan
from asyncmig.target import history

log = structlog.get_logger(__name__)


def chunked(table: TablePlan, settings: PipelineSettings) -> bool:
    """Is this table loaded in chunks?"""
    rows = settings.chunk_rows
    return rows > 0 and not table.without_rowid and table.row_count > rows


def chunk_ranges(
    source: Path, table: TablePlan, rows: int, after: int | None
) -> list[tuple[int, int]]:
    """Rowid ranges of about ``rows`` rows each (by rowid span, as the split loader cuts:
    the b-tree gives the bounds at once), those past ``after`` only. The same source
    gives the same ranges, so a resumed run continues on the interrupted run's grid."""
    bounds = split.rowid_bounds(source, table)
    if bounds is None:
        return []
    low, high = bounds
    step = max(1, math.ceil((high - low + 1) * rows / max(1, table.row_count)))
    starts = range(low, high + 1, step)
    return [(a, min(a + step - 1, high)) for a in starts if after is None or a > after]


async def load_chunked(
    source: Path,
    schema: str,
    table: TablePlan,
    conn: asyncpg.Connection,
    settings: PipelineSettings,
    run_id: int,
    slot: Slot | None,
) -> TableLoad:
    """Load ``table`` chunk by chunk, after the chunks already recorded for this run."""
    with slot.counter() if slot is not None else nullcontext() as counter:
        return await _load_chunks(source, schema, table, conn, settings, run_id, counter)


async def _load_chunks(
    source: Path,
    schema: str,
    table: TablePlan,
    conn: asyncpg.Connection,
    settings: PipelineSettings,
    run_id: int,
    counter: Counter | None,
) -> TableLoad:
    started = time.perf_counter()
    done = await history.recorded_chunks(conn, run_id, table.name)
    total = combine([c.accounts for c in done])
    read = copied = sum(c.rows for c in done)
    read += total.rejected
    if counter is not None and copied:
        counter.add(copied, total.rejected)
    after = done[-1].last_key if done else None
    ranges = await anyio.to_thread.run_sync(chunk_ranges, source, table, settings.chunk_rows, after)
    log.info("table_chunked", table=table.name, chunks=len(ranges), recorded=len(done))
    for number, (low, high) in enumerate(ranges):
        last = number == len(ranges) - 1
        budget = settings.max_rejects
        pipeline = replace(
            settings,
            append_rejects=bool(done) or number > 0,
            max_rejects=None if budget is None else max(0, budget - total.rejected),
        )

        record = _recorder(table, run_id, (low, high), (copied, total) if last else None, started)
        part = replace(table, rowid_range=(low, high))
        load = await load_rows(source, schema, part, conn, pipeline, counter, record)
        read += load.rows_read
        copied += load.rows_copied
        total = combine([total, load.accounts])
        check_rejects(table.name, total, settings.max_rejects)
    return TableLoad(table.name, read, copied, time.perf_counter() - started, accounts=total)


def _recorder(
    table: TablePlan,
    run_id: int,
    bounds: tuple[int, int],
    before: tuple[int, Accounts] | None,
    started: float,
) -> Recorder:
    """What a chunk's transaction records before it commits: the chunk; for the last
    one (``before``: the rows and accounts of the chunks before it) the table too."""

    async def record(
        conn: asyncpg.Connection, rows: int, accounts: Accounts, seconds: float
    ) -> None:
        low, high = bounds
        await history.record_chunk(conn, run_id, table.name, low, high, rows, accounts, seconds)
        if before is not None:
            copied, total = before
            whole = combine([total, accounts])
            await history.record_table(
                conn,
                run_id,
                table.name,
                recorded_rows(table, copied + rows + whole.rejected),
                copied + rows,
                whole,
                time.perf_counter() - started,
            )

    return record
