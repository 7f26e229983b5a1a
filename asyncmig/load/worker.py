"""What a worker process runs: one table's load, on its own connection and event loop.

Kept apart from :mod:`asyncmig.load.tables` so that a worker imports only the load
(pipeline, transforms, COPY) and not what the main process drives after it (indexes,
constraints, DDL): a worker is started, and imports this module, while the plan is
made, competing with it for the cores before the first COPY.
"""

from __future__ import annotations

import gc
import os
from dataclasses import replace
from pathlib import Path

import anyio
import asyncpg

from asyncmig.cli import logs, signals
from asyncmig.errors import WorkerLost
from asyncmig.load import chunks, progress
from asyncmig.load.pipeline import PipelineSettings, TableLoad, load_table
from asyncmig.plan.model import TablePlan
from asyncmig.quoting import qualified
from asyncmig.target import faults
from asyncmig.target.connect import Target, connect, hang_up

# how a worker process that died mid-job shows in the main process: anyio's error, or,
# when anyio kills a worker the event loop has already reaped, that kill's
# ProcessLookupError
WORKER_DIED = (anyio.BrokenWorkerProcess, ProcessLookupError)


def worker_died(what: str) -> WorkerLost:
    """The one-line error for a worker process that died loading ``what``."""
    return WorkerLost(
        f"the worker process loading {what} died before it finished; the run is rolled back",
        hint="was it killed (out of memory? see the kernel log)? rerun, or lower --jobs",
    )


def ready(parent: int) -> bool:
    """A warm worker's first job: bind it to the parent (pid ``parent``) now, not with
    its first table, so a parent killed outright (kill -9) while planning takes its idle
    workers along."""
    signals.bind_worker_to_parent(parent)
    return True


async def load_and_count(
    source: Path,
    schema: str,
    table: TablePlan,
    conn: asyncpg.Connection,
    pipeline: PipelineSettings,
    run_id: int | None,
    slot: progress.Slot | None = None,
    *,
    clean: bool = False,
) -> TableLoad:
    """Load one table (``clean``: emptied first) and count what PostgreSQL committed."""
    # durability comes from the synchronous commits of the final phase,
    # which flush the WAL of every earlier commit too
    await conn.execute("SET synchronous_commit = off")
    if run_id is not None and chunks.chunked(table, pipeline):  # a retry goes on after the last
        load = await chunks.load_chunked(source, schema, table, conn, pipeline, run_id, slot)
    else:
        load = await load_table(source, schema, table, conn, pipeline, run_id, slot, clean=clean)
    # not in a `finally`: after a failure the connection may be mid-transaction, and an
    # error here would hide the real one (the pool resets a released connection anyway)
    await conn.execute("RESET synchronous_commit")
    if table.rowid_range is not None:
        # a split table's range shares its table with the other ranges: the whole
        # table is counted once, when it moves into place (split.move_into_place)
        return load
    committed = int(await conn.fetchval(f"SELECT count(*) FROM {qualified(schema, table.name)}"))
    return replace(load, rows_committed=committed)


def load_in_process(
    source: Path,
    schema: str,
    table: TablePlan,
    target: Target,
    pipeline: PipelineSettings,
    run_id: int | None,
    slot: progress.Slot | None = None,
    clean: bool = False,
    parent: int | None = None,
) -> TableLoad:
    """A worker process's whole job: one table, on its own connection and event loop;
    ``parent``: the main process's pid (see signals.bind_worker_to_parent).

    The cyclic garbage collector is off meanwhile: the rows are acyclic tuples that
    reference counting frees, and its passes over each batch's young tuples cost 7 %
    of a worker's CPU (measured); anything cyclic is collected after the table.
    """
    # the worker's stdout carries its results to the main process: log to stderr only
    logs.configure(log_format="json")
    signals.bind_worker_to_parent(os.getppid() if parent is None else parent)

    async def run() -> TableLoad:
        conn = await connect(target)
        try:
            return await load_and_count(
                source, schema, table, conn, pipeline, run_id, slot, clean=clean
            )
        except BaseException as exc:  # one error, picklable, for the main process
            error = faults.as_error(exc)
            if error is exc:
                raise
            raise error from None
        finally:
            await hang_up(conn)

    gc.disable()
    try:
        return anyio.run(run)
    finally:
        gc.enable()
        gc.collect()
