"""Phase 2: every table's data through the pipeline, in worker processes for large sources,
each table's post-data work as soon as it commits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import anyio
import anyio.to_process
import asyncpg
import structlog

from asyncmig import ddl
from asyncmig.cli import signals
from asyncmig.errors import (
    VerificationError,
)
from asyncmig.finish.indexes import IndexResult, add_constraints, build_indexes
from asyncmig.load import chunks, progress, split
from asyncmig.load.counts import SourceCounts
from asyncmig.load.pipeline import TableLoad
from asyncmig.load.policy import TooManyRejects, reject_path
from asyncmig.load.refuted import Replan, plan_refuted
from asyncmig.load.retire import retire_workers
from asyncmig.load.worker import (
    WORKER_DIED,
    load_and_count,
    load_in_process,
    ready,
    worker_died,
)
from asyncmig.plan.model import PROCESS_THRESHOLD_ROWS, Plan, TablePlan
from asyncmig.quoting import qualified, quote_ident
from asyncmig.runstate import RunSettings, TableReport
from asyncmig.target import faults
from asyncmig.target.connect import create_pool, hang_up_pool
from asyncmig.target.statements import execute_all

log = structlog.get_logger(__name__)


# a source this large will be loaded in worker processes (PROCESS_THRESHOLD_ROWS rows
# take about 50 MB): they are started while the plan is made
WARM_BYTES = 40 * 2**20


def expect_processes(settings: RunSettings) -> bool:
    if settings.workers != "auto":
        return settings.workers == "process"
    return settings.jobs > 1 and settings.source.stat().st_size >= WARM_BYTES


async def warm_worker() -> None:
    """Start one worker process and import the load's modules in it (by unpickling
    ``ready``), so the first COPY does not wait for a process start and its imports;
    anyio keeps the worker idle for the load to reuse.

    One only: the load's other workers start with their tables. Warmed too, they
    competed with the plan's samples for the cores before the first COPY (measured:
    a fifth of the CPU used before it on a Northwind-shaped database, see
    bench/README.md) and saved nothing once the load keeps both cores busy.
    """
    limiter = anyio.CapacityLimiter(1)
    await anyio.to_process.run_sync(ready, os.getpid(), cancellable=True, limiter=limiter)


@dataclass(frozen=True)
class TableDone:
    """One table through phases 2-3: its line of the report, and its warnings."""

    report: TableReport
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Loaded:
    """Phases 2-3's result: every table's report (in the order they finished) and
    the warnings, for the run to put in its report."""

    tables: tuple[TableReport, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


def use_processes(settings: RunSettings, plan: Plan) -> bool:
    if settings.workers != "auto":
        return settings.workers == "process"
    return settings.jobs > 1 and sum(t.row_count for t in plan.tables) >= PROCESS_THRESHOLD_ROWS


async def load_everything(
    settings: RunSettings,
    plan: Plan,
    run_id: int | None,
    staging: split.Staging | None = None,
    taken_over: Mapping[str, TableLoad] | None = None,
    copying: anyio.Event | None = None,
    counts: SourceCounts | None = None,
    replan: Replan | None = None,
) -> Loaded:
    """Phases 2-3: every table's data, then its indexes and constraints (``taken_over``:
    the tables a resumed run loaded, and their loads as its history recorded them;
    ``copying``: set once a first batch is in; ``counts``: the exact counts of the
    tables whose plan has an estimate, taken beside the load; ``replan``: asked for a
    plan proven over every row of a table whose load refuted its plan, the table then
    reloaded alone, see :mod:`asyncmig.load.refuted`).

    Reading, converting and encoding rows is Python work, so with ``jobs`` > 1 each
    table's pipeline runs in a worker process (one event loop, reader, transformers and
    COPY writer per table, as in-process); indexes and constraints are PostgreSQL's
    work and are driven from here, each table's as soon as its data is committed.
    """
    jobs = max(1, settings.jobs)
    # two connections a table (its load, its index builds), for as many tables as run at
    # once: --jobs 40 on a 1-table source held 80 (a default server has 100)
    pool = await create_pool(settings.target, size=2 * min(jobs, max(1, len(plan.tables))))
    load_slots = anyio.CapacityLimiter(jobs)
    index_slots = anyio.CapacityLimiter(jobs)
    in_processes = use_processes(settings, plan)
    reporter = progress.current()
    reporter.tables({t.name: t.row_count for t in plan.tables})
    board = progress.Board([t.name for t in plan.tables])
    done: list[TableDone] = []
    counts = counts or SourceCounts(settings.source)

    async def migrate(on: Plan, table: TablePlan) -> TableDone:
        return await migrate_table(
            settings,
            on,
            table,
            pool,
            load_slots,
            index_slots,
            run_id,
            in_processes,
            board.slot(table.name),
            staging,
            (taken_over or {}).get(table.name),
            counts,
        )

    async def one(table: TablePlan) -> None:
        try:
            finished = await migrate(plan, table)
        except BaseException as exc:
            refuted = plan_refuted(exc)
            if refuted is None or not reloadable(settings, table, taken_over) or replan is None:
                raise
            proven = await replan(refuted)
            if proven is None:  # the run starts over
                raise
            await recreate_table(pool, proven, proven.table(table.name), staging)
            finished = await migrate(proven, proven.table(table.name))
        done.append(finished)
        check_total_rejects(settings, [d.report for d in done])

    try:
        async with anyio.create_task_group() as display:
            display.start_soon(progress.tick, board, copying)
            async with anyio.create_task_group() as tg:
                for table in plan.tables:
                    tg.start_soon(one, table)
            display.cancel_scope.cancel()
    except BaseException:
        if in_processes:
            signals.kill_stray_workers()
        raise
    finally:
        reporter.update(board.read())
        reporter.stop()
        board.close()
        await hang_up_pool(pool)
        await retire_workers()
    return Loaded(tuple(d.report for d in done), tuple(w for d in done for w in d.warnings))


def reloadable(
    settings: RunSettings, table: TablePlan, taken_over: Mapping[str, TableLoad] | None
) -> bool:
    """May a refuted table be reloaded alone? Not one taken over from an interrupted
    run, nor one committed in chunks the history records: those start over."""
    return not taken_over and not chunks.chunked(table, settings.pipeline)


async def recreate_table(
    pool: asyncpg.Pool, plan: Plan, table: TablePlan, staging: split.Staging | None
) -> None:
    """The refuted table dropped (whatever its load committed, e.g. a split table's
    finished ranges) and created again bare on its proven plan, where the load expects
    it: in the plan's schema, or moved into the split tables' one. One transaction."""
    split_here = staging is not None and table.name in staging.tables
    where = staging.schema if staging is not None and split_here else plan.schema
    statements = [
        f"DROP TABLE {qualified(where, table.name)}",
        ddl.create_table_sql(plan, table),
    ]
    if staging is not None and split_here:
        statements.append(
            f"ALTER TABLE {qualified(plan.schema, table.name)} "
            f"SET SCHEMA {quote_ident(staging.schema)}"
        )
    async with pool.acquire() as conn, conn.transaction():
        await execute_all(conn, statements)
    log.info("table_recreated", table=table.name, schema=where)


async def migrate_table(
    settings: RunSettings,
    plan: Plan,
    table: TablePlan,
    pool: asyncpg.Pool,
    load_slots: anyio.CapacityLimiter,
    index_slots: anyio.CapacityLimiter,
    run_id: int | None,
    in_processes: bool,
    slot: progress.Slot | None = None,
    staging: split.Staging | None = None,
    kept: TableLoad | None = None,
    counts: SourceCounts | None = None,
) -> TableDone:
    """One table's data, then its indexes, constraints, statistics, triggers, sequence
    and ANALYZE; its report line accounts for the rows both phases rejected. ``kept``:
    the load of the interrupted run this one resumes (not loaded again)."""

    async def attempt(number: int) -> TableLoad:
        clean = number > 1  # a retry starts from an empty table
        if in_processes and staging is not None and table.name in staging.tables:
            return await split.load_split(
                settings, plan, table, staging, pool, load_slots, run_id, slot, clean=clean
            )
        if in_processes:
            try:
                return await anyio.to_process.run_sync(
                    load_in_process,
                    settings.source,
                    plan.schema,
                    table,
                    settings.target,
                    settings.pipeline,
                    run_id,
                    slot,
                    clean,
                    os.getpid(),
                    cancellable=True,
                    limiter=load_slots,
                )
            except WORKER_DIED:
                raise worker_died(table.name) from None
        async with load_slots, pool.acquire() as conn:
            return await load_and_count(
                settings.source,
                plan.schema,
                table,
                conn,
                settings.pipeline,
                run_id,
                slot,
                clean=clean,
            )

    load = kept if kept is not None else await faults.retrying(attempt, table.name)
    progress.current().table_finished(table.name)
    verify_count(table, load, await (counts or SourceCounts(settings.source)).exact(table))
    progress.current().table_indexing(table.name)
    started = time.perf_counter()
    indexed = await build_indexes(
        settings, pool, plan, table, index_slots, run_id, resumed=kept is not None
    )
    async with pool.acquire() as conn:
        constraints = await add_constraints(conn, plan, indexed.table, resumed=kept is not None)
        await post_data(conn, plan, indexed.table)
    index_seconds = time.perf_counter() - started
    log_accounts(table.name, load)
    log.info(
        "table_loaded",
        table=table.name,
        rows=load.rows_copied,
        load_s=round(load.seconds, 3),
        index_s=round(index_seconds, 3),
        rows_per_s=int(load.rows_copied / load.seconds) if load.seconds else None,
    )
    return TableDone(
        replace(table_report(settings, load, indexed, index_seconds), taken_over=kept is not None),
        indexed.warnings + tuple(constraints) + load_warnings(table.name, load),
    )


async def post_data(conn: asyncpg.Connection, plan: Plan, table: TablePlan) -> None:
    """Statistics and triggers only now: triggers must not fire during the load; the
    sequence and ANALYZE too, here rather than at the end, overlapping other loads."""
    await execute_all(
        conn,
        ddl.statistics_sql(plan, table)
        + ddl.trigger_sql(plan, table)
        + ddl.sequence_reset_sql(plan, table, table.next_identity)
        + [ddl.analyze_sql(plan, table)],
    )


def table_report(
    settings: RunSettings, load: TableLoad, indexed: IndexResult, index_seconds: float
) -> TableReport:
    """The table's report line: the load's accounts plus the duplicates the index phase
    rejected (their rows were copied, then deleted)."""
    accounts = load.accounts
    late = indexed.rejects
    reject_dir = settings.pipeline.reject_dir
    reject_file = accounts.reject_file or (
        str(reject_path(reject_dir, indexed.table.name)) if late and reject_dir else None
    )
    return TableReport(
        indexed.table.name,
        load.rows_copied - sum(late.values()),
        load.seconds,
        index_seconds,
        dict(accounts.replaced),
        accounts.rejected + sum(late.values()),
        {**accounts.reasons, **late},
        reject_file,
    )


def log_accounts(table: str, load: TableLoad) -> None:
    for replaced in load.accounts.examples:
        log.warning(
            "value_replaced",
            table=table,
            column=replaced.column,
            key=replaced.key,
            value=replaced.value,
            action=replaced.action,
            reason=replaced.reason,
        )
    accounts = load.accounts
    if accounts.rejected:
        log.warning(
            "rows_rejected",
            table=table,
            rows=accounts.rejected,
            reasons=accounts.reasons,
            file=accounts.reject_file,
        )


def load_warnings(table: str, load: TableLoad) -> tuple[str, ...]:
    """The summary's lines for values replaced and rows rejected during the load."""
    accounts = load.accounts
    warnings = [
        f"{table}.{label}: {count} value(s) that did not fit replaced as the column's policy says"
        for label, count in accounts.replaced.items()
    ]
    if accounts.rejected:
        warnings.append(
            f"{table}: {accounts.rejected} row(s) rejected ("
            + "; ".join(f"{n} {r}" for r, n in accounts.reasons.items())
            + (f"), kept in {accounts.reject_file}" if accounts.reject_file else ")")
        )
    return tuple(warnings)


def check_total_rejects(settings: RunSettings, tables: list[TableReport]) -> None:
    """--max-rejects-total over the tables loaded so far; the last one named."""
    limit = settings.max_rejects_total
    rejected = sum(t.rejected for t in tables)
    if limit is not None and rejected > limit:
        raise TooManyRejects(
            tables[-1].table,
            f"the run rejected {rejected} rows, more than --max-rejects-total {limit}; "
            "every table is rolled back",
            hint="clean the source, choose other policies, or raise the limit",
        )


def verify_count(table: TablePlan, load: TableLoad, counted: int) -> None:
    """Every source row is accounted for: SQLite's exact count (``counted``: the plan's,
    or taken beside the load) = read = loaded + rejected."""
    if not (
        load.rows_committed == load.rows_copied
        and load.rows_read == counted == load.rows_copied + load.rows_rejected
    ):
        raise VerificationError(
            f"row count mismatch in {table.name}: SQLite had {counted}, "
            f"read {load.rows_read}, copied {load.rows_copied}, rejected {load.rows_rejected}, "
            f"PostgreSQL has {load.rows_committed}",
            hint="was the source written to during the migration?",
        )
