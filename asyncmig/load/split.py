"""One large table loaded by several worker processes, invisible until it is whole.

A table holding more rows than its share of the workers (all rows / ``--jobs``, and at
least :data:`SPLIT_MIN_ROWS`) would keep one core busy while the others wait. It is cut
into ``--jobs`` rowid ranges; each range is read, converted and encoded by its own
worker process and COPYed on its own connection, in its own transaction. So that no
other session ever sees part of it, the bare (empty) table is moved into a schema of
this run (``asyncmig_load_<run id>``) before the load, the ranges load there,
and once every range has committed, one transaction moves it back (``ALTER TABLE ... SET
SCHEMA`` moves the table and its identity sequence without copying a row) and records
it in the history. A failed run drops that schema with the rest.

    create_tables ── CREATE TABLE s.t;  then: CREATE SCHEMA load; ALTER TABLE s.t SET SCHEMA load
    range 1 ── worker ── COPY load.t (rowid lo1..hi1) ── COMMIT ┐
    range 2 ── worker ── COPY load.t (rowid lo2..hi2) ── COMMIT ┴─ ALTER TABLE load.t
                                                                   SET SCHEMA s + history
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_process
import asyncpg
import structlog

from asyncmig.errors import TargetError
from asyncmig.load import progress
from asyncmig.load.counts import recorded_rows
from asyncmig.load.pipeline import TableLoad
from asyncmig.load.policy import (
    Accounts,
    check_rejects,
    combine,
    reject_path,
    rejects_unwritable,
)
from asyncmig.plan.model import Plan, TablePlan
from asyncmig.quoting import qualified, quote_ident, quote_sqlite_ident
from asyncmig.source.sqlite import open_sync, source_error
from asyncmig.target import files, history
from asyncmig.target.files import safe_name

if TYPE_CHECKING:
    from asyncmig.runstate import RunSettings

SPLIT_MIN_ROWS = 200_000
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Staging:
    """Where this run's split tables load, and which tables those are."""

    schema: str
    tables: frozenset[str] = frozenset()


def staging_schema(run_id: int) -> str:
    return f"asyncmig_load_{run_id}"


def plan_staging(settings: RunSettings, plan: Plan, run_id: int, *, in_processes: bool) -> Staging:
    """The tables to split: rowid tables with more rows than a worker's share."""
    jobs = settings.jobs
    if not in_processes or jobs < 2:
        return Staging(staging_schema(run_id))
    share = sum(t.row_count for t in plan.tables) / jobs
    return Staging(
        staging_schema(run_id),
        frozenset(
            t.name
            for t in plan.tables
            if not t.without_rowid and t.row_count >= max(SPLIT_MIN_ROWS, share)
        ),
    )


async def stage_tables(conn: asyncpg.Connection, plan: Plan, staging: Staging) -> Staging:
    """Move the split tables' bare (empty) tables into the staging schema, in one
    transaction. Without the right to create a schema, nothing is split: returns the
    staging actually in use."""
    if not staging.tables:
        return staging
    try:
        async with conn.transaction():
            await conn.execute(f"CREATE SCHEMA {quote_ident(staging.schema)}")
            for name in sorted(staging.tables):
                await conn.execute(
                    f"ALTER TABLE {qualified(plan.schema, name)} "
                    f"SET SCHEMA {quote_ident(staging.schema)}"
                )
    except asyncpg.InsufficientPrivilegeError:
        return replace(staging, tables=frozenset())
    return staging


def drop_staging_sql(run_id: int) -> str:
    return f"DROP SCHEMA IF EXISTS {quote_ident(staging_schema(run_id))} CASCADE"


def rowid_bounds(source: Path, table: TablePlan) -> tuple[int, int] | None:
    """The table's lowest and highest rowid (None when empty): the b-tree gives them at
    once."""
    conn = open_sync(source)
    try:
        low, high = conn.execute(
            f"SELECT min(rowid), max(rowid) FROM {quote_sqlite_ident(table.source_name)}"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise source_error(source, exc) from exc
    finally:
        conn.close()
    return None if low is None else (int(low), int(high))


def rowid_ranges(source: Path, table: TablePlan, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous rowid ranges covering the table (by rowid, not by rows:
    rowids are dense in most tables)."""
    bounds_found = rowid_bounds(source, table)
    if bounds_found is None:
        return [(0, 0)]
    low, high = bounds_found
    step = max(1, (high - low + 1) // parts)
    bounds = [low + i * step for i in range(parts)] + [high + 1]
    return [(a, b - 1) for a, b in itertools.pairwise(bounds) if b > a]


async def load_split(
    settings: RunSettings,
    plan: Plan,
    table: TablePlan,
    staging: Staging,
    pool: asyncpg.Pool,
    load_slots: anyio.CapacityLimiter,
    run_id: int | None,
    slot: progress.Slot | None,
    *,
    clean: bool = False,
) -> TableLoad:
    """Load ``table`` range by range in worker processes, then move it into place.

    ``clean`` (a retry): the staged table is emptied once, before any range starts.
    """
    from asyncmig.load.worker import WORKER_DIED, load_in_process, worker_died

    started = time.perf_counter()
    if clean:
        async with pool.acquire() as conn:
            await conn.execute(f"TRUNCATE {qualified(staging.schema, table.name)}")
    ranges = await anyio.to_thread.run_sync(rowid_ranges, settings.source, table, settings.jobs)
    log.info("table_split", table=table.name, ranges=ranges)
    reject_dir = settings.pipeline.reject_dir
    loads: list[TableLoad | None] = [None] * len(ranges)

    async def one(number: int, bounds: tuple[int, int]) -> None:
        part = replace(table, rowid_range=bounds)
        pipeline = (
            settings.pipeline
            if reject_dir is None
            else replace(
                settings.pipeline, reject_dir=reject_dir / f".{safe_name(table.name)}.part{number}"
            )
        )
        try:
            loads[number] = await anyio.to_process.run_sync(
                load_in_process,
                settings.source,
                staging.schema,
                part,
                settings.target,
                pipeline,
                None,
                slot if number == 0 else None,
                False,
                os.getpid(),
                cancellable=True,
                limiter=load_slots,
            )
        except WORKER_DIED:
            raise worker_died(f"{table.name} (rowids {bounds[0]} to {bounds[1]})") from None

    async with anyio.create_task_group() as tg:
        for number, bounds in enumerate(ranges):
            tg.start_soon(one, number, bounds)
    done = [load for load in loads if load is not None]
    accounts = merge_accounts([load.accounts for load in done], table, reject_dir)
    check_rejects(table.name, accounts, settings.pipeline.max_rejects)
    merged = TableLoad(
        table.name,
        sum(d.rows_read for d in done),
        sum(d.rows_copied for d in done),
        time.perf_counter() - started,
        accounts=accounts,
    )
    async with pool.acquire() as conn:
        return await move_into_place(conn, plan, table, staging, merged, run_id)


async def move_into_place(
    conn: asyncpg.Connection,
    plan: Plan,
    table: TablePlan,
    staging: Staging,
    load: TableLoad,
    run_id: int | None,
) -> TableLoad:
    """One transaction: the whole table appears in the target schema, recorded."""
    try:
        async with conn.transaction():
            await conn.execute(
                f"ALTER TABLE {qualified(staging.schema, table.name)} "
                f"SET SCHEMA {quote_ident(plan.schema)}"
            )
            if run_id is not None:
                await history.record_table(
                    conn,
                    run_id,
                    table.name,
                    recorded_rows(table, load.rows_read),
                    load.rows_copied,
                    load.accounts,
                    load.seconds,
                )
    except asyncpg.PostgresError as exc:
        raise TargetError(
            f"cannot move {table.name} into {plan.schema} after its load: {exc}"
        ) from exc
    committed = int(
        await conn.fetchval(f"SELECT count(*) FROM {qualified(plan.schema, table.name)}")
    )
    return replace(load, rows_committed=committed)


def merge_accounts(
    parts: Sequence[Accounts], table: TablePlan, reject_dir: Path | None
) -> Accounts:
    """The ranges' accounts as the table's; their reject files joined into the table's."""
    merged = combine(parts)
    merged.reject_file = None
    ranges = [Path(p.reject_file) for p in parts if p.reject_file]
    if ranges and reject_dir is not None:
        target = reject_path(reject_dir, table.name)
        try:
            with files.append(target) as out:  # private, as every reject file
                for path in ranges:
                    out.write(path.read_bytes())
        except OSError as exc:  # the ranges' files are kept: the only record of their rows
            raise rejects_unwritable(target, exc, table.name) from None
        for path in ranges:  # only once all of them are in the table's file
            path.unlink()
            path.parent.rmdir()
        merged.reject_file = str(target)
    return merged
