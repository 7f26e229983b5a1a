"""The ``run``, ``schema`` and ``data`` commands: plan, create, load, index, verify.

Phases, in the order pgloader and pgcopydb converged on:

1. bare tables (one transaction; an existing table stops the run unless --replace);
2. data, up to ``jobs`` tables at a time (in worker processes for large sources),
   parents first, the longest chain of work first;
3. per table, as soon as its data is committed: its row count is checked, then its
   primary-key, unique and secondary indexes are built in parallel and attached as
   constraints, CHECK constraints added and validated, the profile's statistics and
   triggers created, its identity sequence moved past the loaded ids, and ANALYZE;
4. orphans handled by policy, then foreign keys, added NOT VALID then validated;
5. views; then, for ``run``, the check, the cut-over, the history record and the
   rollback script.

``run`` does 1-5 in a staging schema of its own and, once checked, moves everything
into the target schema in one transaction (:mod:`asyncmig.cutover`): readers see the
old tables or the new ones, never half.

If anything fails, what this run created is dropped again (the stage; ``data``: emptied), shielded
from cancellation, so a failed run leaves nothing half-made behind; the history
records the failure.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import anyio
import anyio.to_process
import asyncpg
import structlog

from asyncmig import cutover, ddl
from asyncmig.check import verify
from asyncmig.check.verify import CheckResult
from asyncmig.cli import logs, signals
from asyncmig.cli.settings import DeepCheck, Duplicates, default
from asyncmig.errors import (
    InternalError,
    SourceError,
    TargetError,
    VerificationError,
    first_error,
)
from asyncmig.finish import orphans, views
from asyncmig.load import progress, split
from asyncmig.load.pipeline import PipelineSettings, PlanRefuted, TableLoad, load_table
from asyncmig.load.policy import TooManyRejects, reject_path
from asyncmig.plan import collations
from asyncmig.plan.builder import build_plan
from asyncmig.plan.model import Plan, TablePlan, ViewPlan
from asyncmig.plan.overrides import Overrides
from asyncmig.quoting import qualified, quote_ident
from asyncmig.source.sqlite import check_source_file, fingerprint, open_sync, source_error
from asyncmig.target import faults, history, rollback, runlock, tablestate
from asyncmig.target.connect import Target, connect, create_pool
from asyncmig.target.unchanged import edges_of

log = structlog.get_logger(__name__)

MIN_SERVER_VERSION = 13


@dataclass(frozen=True)
class RunSettings:
    source: Path
    target: Target
    schema: str = default("schema")
    jobs: int = default("jobs")
    replace: bool = default("replace")
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    overrides: Overrides = field(default_factory=Overrides)
    workers: str = "auto"  # "process", "inline", or "auto": processes for large sources
    lock_timeout: float = 10.0  # seconds the run's DDL waits for a lock (0: no limit)
    cascade: bool = False  # --replace may drop the application's dependent views and keys
    snapshot: bool = default("snapshot")  # read from a consistent copy taken first (app still writing)
    command: str = "run"  # recorded in the history
    output_dir: Path | None = None  # where the rollback script goes (None: not written)
    log_file: Path | None = None  # recorded in the history
    rejects_dir: Path | None = None  # rejected rows go to <rejects_dir>/run<N>/<table>.jsonl
    duplicates: Duplicates = default("duplicates")  # noqa: RUF009 -- an enum member
    max_rejects_total: int | None = default("max_rejects_total")  # more fails the run
    deep: DeepCheck | None = None  # `check --deep` settings


@dataclass(frozen=True)
class TableReport:
    table: str
    rows: int
    load_seconds: float
    index_seconds: float
    replaced: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    reject_file: str | None = None


@dataclass
class RunReport:
    plan: Plan
    tables: list[TableReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    server_version: str = ""
    run_id: int | None = None
    checks: list[CheckResult] = field(default_factory=list)
    # per table, rows the index phase rejected (duplicates), by reason
    late_rejects: dict[str, dict[str, int]] = field(default_factory=dict)
    rollback_script: Path | None = None

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def replaced(self) -> int:
        return sum(sum(t.replaced.values()) for t in self.tables)

    @property
    def rejected(self) -> int:
        return sum(t.rejected for t in self.tables)


async def make_plan(settings: RunSettings, *, prove: bool = False,
                    scan: frozenset[str] = frozenset()) -> Plan:
    """The plan; with ``prove``, large tables are planned from a sample and the load
    proves it, except those in ``scan``, profiled over every row (see build_plan)."""
    check_source_file(settings.source)
    plan = await anyio.to_thread.run_sync(
        lambda: build_plan(settings.source, schema=settings.schema,
                           overrides=settings.overrides, jobs=settings.jobs, prove=prove,
                           scan=scan)
    )
    for table in plan.tables:
        for column in table.columns:
            log.info("column_planned", table=table.name, column=column.name,
                     source_type=column.source_type, target_type=column.target_type,
                     transform=column.transform, evidence=column.evidence)
    for warning in plan.warnings:
        log.info("plan_warning", message=warning)  # also in the summary
    return plan


async def run_migration(settings: RunSettings) -> RunReport:
    """Plan, create, load, index, constrain and verify: the `run` command."""
    return await execute(settings, create=True, load=True, check=True)


async def create_schema(settings: RunSettings) -> RunReport:
    """The `schema` command: the bare tables and the profile's functions (pre-data)."""
    return await execute(settings, create=True, load=False, check=False)


async def load_data(settings: RunSettings) -> RunReport:
    """The `data` command: load into tables `schema` created, then the post-data phases."""
    return await execute(settings, create=False, load=True, check=False)


async def execute(settings: RunSettings, *, create: bool, load: bool, check: bool) -> RunReport:
    """Run the phases asked for; raise the MigrationError that stopped them."""
    try:
        return await _execute(settings, create=create, load=load, check=check)
    except BaseException as exc:  # one error: a task group's first, a lost connection named
        error = faults.as_error(exc)
        if error is exc:
            raise
        raise error from exc


async def _execute(settings: RunSettings, *, create: bool, load: bool,
                   check: bool) -> RunReport:
    if not settings.snapshot:
        return await _execute_on(settings, settings, create=create, load=load, check=check)
    check_source_file(settings.source)
    with tempfile.TemporaryDirectory(prefix="asyncmig-snapshot-") as directory:
        copy = Path(directory) / settings.source.name
        started = time.perf_counter()
        await anyio.to_thread.run_sync(snapshot, settings.source, copy)
        log.info("snapshot_taken", source=str(settings.source), copy=str(copy),
                 seconds=round(time.perf_counter() - started, 3))
        return await _execute_on(settings, replace(settings, source=copy), create=create,
                                 load=load, check=check)


def snapshot(source: Path, copy: Path) -> None:
    """A consistent copy of the source, taken inside one read transaction (backup API).

    All readers then share one snapshot, whatever the application writes meanwhile;
    with a WAL database the copy never blocks the application.
    """
    src = open_sync(source)
    try:
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst, pages=0)
        finally:
            dst.close()
    except sqlite3.DatabaseError as exc:
        raise source_error(source, exc) from exc
    finally:
        src.close()


async def _execute_on(original: RunSettings, settings: RunSettings, *, create: bool,
                      load: bool, check: bool) -> RunReport:
    """The phases, reading ``settings.source`` (a snapshot, or the source itself);
    the history names ``original.source``."""
    started = time.perf_counter()
    reporter = progress.current()
    reporter.phase("checking")
    check_source_file(settings.source)
    admin = await connect(settings.target)
    try:
        version = await check_server(admin)
        await runlock.acquire(admin, settings.schema)  # held until admin closes
        if settings.lock_timeout:  # the DDL of this session: never a silent wait
            await admin.execute(f"SET lock_timeout = {int(settings.lock_timeout * 1000)}")
        await history.mark_abandoned(admin, settings.schema)
        await cutover.drop_stale(admin, settings.schema)  # left by a killed run
        reporter.phase("planning")
        # `run` makes the tables it loads: their types may come from a sample, which the
        # load proves; `schema` and `data` share a plan, so theirs is profiled in full
        prove = create and load
        async with anyio.create_task_group() as warm:  # workers start while we plan
            if load and expect_processes(settings):
                limiter = anyio.CapacityLimiter(settings.jobs)
                for _ in range(settings.jobs):
                    warm.start_soon(warm_worker, limiter)
            plan = await make_plan(settings, prove=prove)
        log.info("planned", tables=len(plan.tables), rows=sum(t.row_count for t in plan.tables),
                 seconds=round(time.perf_counter() - started, 3))
        report = RunReport(plan, warnings=list(plan.warnings), server_version=version)
        report.run_id = await history.start_run(admin, settings.command, original.source,
                                                plan.schema, run_options(original, plan))
        reporter.run_started(report.run_id, settings.command, str(original.source))
        try:
            await _recorded_phases(settings, admin, plan, report, started, create=create,
                                   load=load, check=check)
        except BaseException as exc:
            blocked = None
            with anyio.move_on_after(10, shield=True):
                blocked = await runlock.explain_lock_wait(settings.target, plan.schema, exc,
                                                          admin.get_server_pid())
            await record_failure(settings, admin, report, blocked or exc)
            if blocked is not None:
                raise blocked from exc
            raise
    finally:
        with anyio.move_on_after(10, shield=True):
            await admin.close()
            await retire_workers()  # e.g. warmed, then a cheap failure: none loaded
    return report


async def _recorded_phases(settings: RunSettings, admin: asyncpg.Connection, plan: Plan,
                           report: RunReport, started: float, *, create: bool, load: bool,
                           check: bool) -> None:
    """The phases, then the run's history record (its failure is recorded by the caller)."""
    assert report.run_id is not None
    digest: list[str] = []

    async def hash_source() -> None:  # overlaps the load: it reads the whole file
        digest.append(await anyio.to_thread.run_sync(history.sha256_of, settings.source))

    async with anyio.create_task_group() as tg:
        tg.start_soon(hash_source)
        await _until_proved(settings, admin, report, create=create, load=load, check=check)
    report.seconds = time.perf_counter() - started
    await history.finish_run(
        admin, report.run_id, status="succeeded", rows=report.rows, seconds=report.seconds,
        sha256=digest[0],
        rollback_script=str(report.rollback_script) if report.rollback_script else None,
        log_file=str(settings.log_file) if settings.log_file else None)


async def record_failure(settings: RunSettings, admin: asyncpg.Connection, report: RunReport,
                         exc: BaseException) -> None:
    """The history says how the run ended: ``interrupted`` by a signal, else ``failed``.

    Shielded and time-boxed, on a new connection when the failure broke ``admin``; if
    PostgreSQL cannot be reached at all, the row stays ``running`` and the next run
    (or ``status``) sees that its lock is not held.
    """
    assert report.run_id is not None
    stopped_by = signals.received()
    error = faults.as_error(exc)
    with anyio.move_on_after(15, shield=True):
        try:
            async with faults.cleanup_connection(settings.target, admin) as conn:
                await history.finish_run(
                    conn, report.run_id, status="interrupted" if stopped_by else "failed",
                    error=stopped_by or _one_line(error), rows=report.rows,
                    error_class=None if stopped_by else type(error).__name__,
                    log_file=str(settings.log_file) if settings.log_file else None)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TargetError) as fault:
            log.error("history_not_recorded", run=report.run_id, error=str(fault))
async def _until_proved(settings: RunSettings, admin: asyncpg.Connection, report: RunReport,
                        *, create: bool, load: bool, check: bool) -> None:
    """The phases; when a load refutes a sampled plan, again with that table profiled
    over every row (what this attempt made was dropped by ``_phases``)."""
    scanned: frozenset[str] = frozenset()
    while True:
        try:
            await _phases(settings, admin, report.plan, report, create=create, load=load,
                          check=check)
            return
        except BaseException as exc:
            refuted = plan_refuted(exc)
            if refuted is None:
                raise
        scanned |= {source_name(report.plan, refuted.table)}
        log.warning("plan_refuted", table=refuted.table, column=refuted.column,
                    action="profiling the table over every row and starting again")
        plan = await make_plan(settings, prove=True, scan=scanned)
        report.plan, report.warnings, report.tables = plan, list(plan.warnings), []
        report.late_rejects = {}


def plan_refuted(exc: BaseException) -> PlanRefuted | None:
    """The refutation that stopped a load, when that (and cancellations) is all that did."""
    if isinstance(exc, PlanRefuted):
        return exc
    if not isinstance(exc, BaseExceptionGroup):
        return None
    found = [plan_refuted(e) for e in exc.exceptions
             if not isinstance(e, anyio.get_cancelled_exc_class())]
    return found[0] if found and all(found) else None


def source_name(plan: Plan, table: str) -> str:
    return plan.table(table).source_name


def run_options(settings: RunSettings, plan: Plan) -> dict[str, object]:
    return {"jobs": settings.jobs, "replace": settings.replace, "snapshot": settings.snapshot,
            "batch_size": settings.pipeline.batch_size,
            "queue_size": settings.pipeline.queue_size,
            "config": settings.overrides.origin, "target": settings.target.safe,
            "orphans": orphan_policies(settings, plan),
            "widen": settings.overrides.widen,  # `check` plans the types the run chose
            "renames": [asdict(r) for r in plan.renames],  # the names `check` must find
            "source_edges": edges_of(settings.source)}  # for --if-changed


def orphan_policies(settings: RunSettings, plan: Plan) -> dict[str, str]:
    """Each table's --orphans policy (by target name): `check` expects what it produced."""
    return {t.name: settings.overrides.orphan_policy(t.source_name) for t in plan.tables}


async def _phases(settings: RunSettings, admin: asyncpg.Connection, plan: Plan,
                  report: RunReport, *, create: bool, load: bool, check: bool) -> None:
    assert report.run_id is not None
    before = fingerprint(settings.source)
    tag = await history.run_tag(admin, report.run_id)  # names this run's files
    if settings.rejects_dir is not None:
        pipeline = replace(settings.pipeline,
                           reject_dir=settings.rejects_dir.absolute() / tag)
        settings = replace(settings, pipeline=pipeline)
    prepared, notes = await collations.prepare(admin, plan, create=create)
    if prepared is not plan:  # NOCASE columns lost their collation: views fold case
        prepared = views.without_icu(prepared, plan)
    plan = prepared
    report.plan = plan
    report.warnings.extend(notes)
    target = plan  # `run` builds in a stage of its own, swapped in once checked
    atomic = create and load and check and await cutover.may_stage(admin)
    if atomic:
        await cutover.replaceable(admin, plan, replace=settings.replace,
                                  cascade=settings.cascade)  # refused before any change
        plan = replace(plan, schema=cutover.stage_name(plan.schema, report.run_id))
        log.info("staging", stage=plan.schema, target=target.schema)
    cut = False
    staging = split.plan_staging(settings, plan, report.run_id,
                                 in_processes=create and load and use_processes(settings, plan))
    if create:
        report.warnings.extend(await create_tables(admin, plan, replace=settings.replace,
                                                   cascade=settings.cascade))
        # moved out of sight until loaded whole (none without the right to)
        staging = await split.stage_tables(admin, plan, staging)
    else:
        await require_empty_tables(admin, plan, truncate=settings.replace)
    try:
        if load:
            progress.current().phase("loading")
            await load_everything(settings, plan, report, staging)
            if staging.tables:  # every split table moved out of it: empty
                await execute_all(admin, [split.drop_staging_sql(report.run_id)])
            log.info("data_loaded", rows=report.rows)
            progress.current().phase("foreign keys")
            await settle(settings, admin, plan, report)
            await finish(admin, plan, report)
            if fingerprint(settings.source) != before:
                raise source_changed(settings.source)
        if check:
            progress.current().phase("verifying")
            report.checks = await verify.run_checks(
                plan, admin, settings.source,
                {t.table: verify.Allowance.from_accounts(t.rejected, t.replaced)
                 for t in report.tables}, orphan_policies(settings, plan))
            # a foreign key the load left NOT VALID on purpose (orphans kept, as SQLite held
            # them) is reported as a warning by the load, not a failed run
            failed = [c for c in report.checks if not c.ok and not (
                c.check == verify.FOREIGN_KEY and c.found.endswith("NOT VALID"))]
            if failed:
                first = failed[0]
                raise VerificationError(
                    f"{len(failed)} check(s) failed after loading, first: {first.check} of "
                    f"{first.table} {first.subject}: expected {first.expected}, "
                    f"found {first.found}")
        if atomic:
            report.warnings.extend(await swap(settings, admin, target, plan))
            plan, report.plan, cut = target, target, True
        if create or load:
            await remember_state(admin, plan, report.run_id)
            report.rollback_script = await keep_rollback(settings, admin, plan, report.run_id,
                                                         tag)
    except BaseException as exc:
        with anyio.move_on_after(30, shield=True):
            async with faults.cleanup_connection(settings.target, admin) as conn:
                await undo(conn, plan, report.run_id, drop=create,
                           stage=plan.schema if atomic and not cut else None)
        if load and fingerprint(settings.source) != before and not signals.received():
            raise source_changed(settings.source) from exc  # the reason the counts differ
        raise


async def swap(settings: RunSettings, admin: asyncpg.Connection, target: Plan,
               stage: Plan) -> list[str]:
    """The cut-over (see :mod:`asyncmig.cutover`), its refusal as one line."""
    try:
        return await cutover.swap(admin, target, stage, replace=settings.replace,
                                  cascade=settings.cascade)
    except asyncpg.PostgresError as exc:
        raise refused(f"moving the checked tables into {target.schema}", exc) from exc


async def remember_state(admin: asyncpg.Connection, plan: Plan, run_id: int) -> None:
    """Per table rows and checksum as the run leaves them, for a later rollback to compare."""
    started = time.perf_counter()
    names = [t.name for t in plan.tables]
    xid, states = await tablestate.capture(admin, plan.schema, names)
    found = await tablestate.dependents(admin, plan.schema, names)
    await history.record_state(admin, run_id, xid, states, found)
    log.info("state_recorded", tables=len(states), seconds=round(time.perf_counter() - started, 3))


async def keep_rollback(settings: RunSettings, admin: asyncpg.Connection, plan: Plan,
                        run_id: int, tag: str) -> Path | None:
    """The run's rollback, kept in the history and, for people to review, in a file."""
    sql = rollback.script_sql(plan, run_id)
    script = None
    if settings.output_dir is not None:
        script = await anyio.to_thread.run_sync(rollback.write_script, sql, tag,
                                                settings.output_dir)
    await history.store_rollback(admin, run_id, sql, script)
    return script


def source_changed(source: Path) -> SourceError:
    return SourceError(f"{source} changed while it was being migrated",
                       hint="stop the application writing to it, or migrate a copy "
                            "(--snapshot)")


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        exc = first_error(exc)
    return (str(exc).splitlines() or [type(exc).__name__])[0]


async def undo(conn: asyncpg.Connection, plan: Plan, run_id: int, *, drop: bool,
               stage: str | None = None) -> None:
    """Leave nothing half-made: drop the run's stage, or what this run created, or empty
    what it loaded."""
    try:
        async with conn.transaction():
            if stage is not None:
                await execute_all(conn, [split.drop_staging_sql(run_id),
                                         cutover.drop_stage_sql(stage)])
            elif drop:
                await execute_all(conn, [split.drop_staging_sql(run_id)])
                await execute_all(conn, ddl.drop_extras_sql(plan))
                await execute_all(conn, ddl.drop_tables_sql(plan, plan.tables))
            else:
                await execute_all(conn, rollback.undo_data_sql(plan))
            await history.forget_tables(conn, run_id)
    except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TargetError) as exc:
        log.error("cleanup_failed", error=str(exc))


async def check_server(conn: asyncpg.Connection) -> str:
    version = str(await conn.fetchval("SHOW server_version"))
    number = int(await conn.fetchval("SHOW server_version_num"))
    if number < MIN_SERVER_VERSION * 10000:
        raise TargetError(f"cannot migrate into PostgreSQL {version}: version 13 or newer needed")
    return version


existing_tables = cutover.existing_tables


async def create_tables(conn: asyncpg.Connection, plan: Plan, *, replace: bool,
                        cascade: bool = False) -> list[str]:
    """Phase 1: the bare tables, all or none; returns what --cascade dropped.

    Tables replaced with --replace go with their own indexes, keys and the plan's
    views; an application's view or foreign key that depends on them stops the run
    before any change, unless ``cascade`` (see :mod:`asyncmig.target.dependents`).
    """
    existing, found = await cutover.replaceable(conn, plan, replace=replace, cascade=cascade)
    async with conn.transaction():
        if existing:
            await execute_all(conn, [d.drop_sql() for d in found])
            await execute_all(conn, ddl.drop_tables_sql(plan, plan.tables))
        schema_exists = await conn.fetchval(
            "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", plan.schema)
        # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
        # exists: a user with rights on the schema alone must not be refused
        await execute_all(conn, [s for s in ddl.create_schema_sql(plan)
                                 if not (schema_exists and s.startswith("CREATE SCHEMA"))])
        await execute_all(conn, [ddl.create_table_sql(plan, t) for t in plan.tables])
        await execute_all(conn, ddl.function_sql(plan))
    for dependent in found:
        log.warning("dependent_dropped", object=str(dependent))
    return [f"dropped with --cascade: {d} (it depended on a replaced table; not recreated)"
            for d in found]


async def require_empty_tables(conn: asyncpg.Connection, plan: Plan, *, truncate: bool) -> None:
    """`data` loads into the tables `schema` made: all there, with the plan's columns, empty."""
    existing = set(await existing_tables(conn, plan))
    missing = [t.name for t in plan.tables if t.name not in existing]
    if missing:
        raise TargetError(
            f"cannot load data: {qualified(plan.schema, missing[0])} does not exist"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            hint="create the schema first with `asyncmig schema` (same --sqlite, --schema, "
                 "--config)")
    loaded = []
    for table in plan.tables:
        columns = {r[0] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = $2", plan.schema, table.name)}
        absent = [c.name for c in table.columns if c.name not in columns]
        if absent:
            raise TargetError(f"cannot load data: {qualified(plan.schema, table.name)} has no "
                              f"column {absent[0]!r}",
                              hint="recreate the schema with `asyncmig schema --replace`")
        target = qualified(plan.schema, table.name)
        if await conn.fetchval(f"SELECT EXISTS (SELECT FROM {target})"):
            if not truncate:
                raise TargetError(f"cannot load data: {target} is not empty",
                                  hint="pass --replace to empty it first")
            loaded.append(table.name)
    if loaded:  # emptied together, with what the post-data phases added to them
        async with conn.transaction():
            await execute_all(conn, rollback.undo_data_sql(plan))


async def execute_all(conn: asyncpg.Connection, statements: Sequence[str]) -> None:
    for statement in statements:
        try:
            await execute_one(conn, statement)
        except asyncpg.PostgresError as exc:
            raise refused(statement, exc) from exc


async def execute_one(conn: asyncpg.Connection, statement: str) -> None:
    """Run exactly one statement.

    asyncpg's ``execute`` without arguments uses the simple query protocol, which runs
    every statement in the string; a prepared statement (``fetch``) refuses a second
    one. Text that comes from the source file (a view's query, a CHECK, a default, an
    index predicate) can therefore never smuggle in a statement of its own, however
    its quoting was crafted.
    """
    await conn.fetch(statement)


def refused(statement: str, exc: asyncpg.PostgresError) -> TargetError:
    """A statement PostgreSQL refused, as one line naming the statement and the reason."""
    if faults.is_connection_fault(exc):
        return faults.lost_connection(exc)
    return TargetError(f"PostgreSQL refused: {first_line(statement)}: {exc}",
                       detail=getattr(exc, "detail", None))


def first_line(sql: str) -> str:
    line = sql.strip().splitlines()[0] if sql.strip() else sql
    return line if len(line) <= 120 else line[:117] + "..."


# below this many rows in all, worker processes cost more to start than they save
PROCESS_THRESHOLD_ROWS = 200_000


# a source this large will be loaded in worker processes (PROCESS_THRESHOLD_ROWS rows
# take about 50 MB): they are started while the plan is made
WARM_BYTES = 40 * 2**20


def expect_processes(settings: RunSettings) -> bool:
    if settings.workers != "auto":
        return settings.workers == "process"
    return settings.jobs > 1 and settings.source.stat().st_size >= WARM_BYTES


async def warm_worker(limiter: anyio.CapacityLimiter) -> None:
    """Start one worker process and import the load's modules in it (by unpickling
    ``ready``), so the first COPY does not wait for a process start and its imports;
    anyio keeps the worker idle for the load to reuse."""
    await anyio.to_process.run_sync(ready, cancellable=True, limiter=limiter)


def ready() -> bool:
    return True


def use_processes(settings: RunSettings, plan: Plan) -> bool:
    if settings.workers != "auto":
        return settings.workers == "process"
    return settings.jobs > 1 and sum(t.row_count for t in plan.tables) >= PROCESS_THRESHOLD_ROWS


async def load_everything(settings: RunSettings, plan: Plan, report: RunReport,
                          staging: split.Staging | None = None) -> None:
    """Phases 2-3: every table's data, then its indexes and constraints.

    Reading, converting and encoding rows is Python work, so with ``jobs`` > 1 each
    table's pipeline runs in a worker process (one event loop, reader, transformers and
    COPY writer per table, as in-process); indexes and constraints are PostgreSQL's
    work and are driven from here, each table's as soon as its data is committed.
    """
    jobs = max(1, settings.jobs)
    pool = await create_pool(settings.target, size=jobs * 2)
    load_slots = anyio.CapacityLimiter(jobs)
    index_slots = anyio.CapacityLimiter(jobs)
    in_processes = use_processes(settings, plan)
    reporter = progress.current()
    reporter.tables({t.name: t.row_count for t in plan.tables})
    board = progress.Board([t.name for t in plan.tables])
    try:
        async with anyio.create_task_group() as display:
            display.start_soon(progress.tick, board)
            async with anyio.create_task_group() as tg:
                for table in plan.tables:
                    tg.start_soon(migrate_table, settings, plan, table, pool, load_slots,
                                  index_slots, report, in_processes, board.slot(table.name),
                                  staging)
            display.cancel_scope.cancel()
    except BaseException:
        if in_processes:
            signals.kill_stray_workers()
        raise
    finally:
        reporter.update(board.read())
        reporter.stop()
        board.close()
        with anyio.move_on_after(10, shield=True):
            await pool.close()
            await retire_workers()


async def retire_workers() -> None:
    """Let anyio's idle worker processes exit now, and reap them, instead of being killed
    when the event loop shuts down.

    At shutdown anyio kills every worker it still holds, twice (the root task's done
    callback, then its pool task); the second ``kill()`` runs ``Popen.poll()``, which
    reaps a worker the first one already killed, and asyncio's child-watcher thread,
    waiting for that same pid, then prints "Unknown child process pid N, will report
    returncode 255" on stderr. A worker whose stdin is closed leaves its loop and exits
    0; once the watcher has reaped it, anyio has nothing left to kill.
    """
    try:  # anyio keeps its pool in run variables (anyio.to_process): read, not changed
        workers = anyio.to_process._process_pool_workers.get()
        idle = anyio.to_process._process_pool_idle_workers.get()
    except LookupError:  # no worker was started in this event loop
        return
    while idle:
        process, _since = idle.pop()
        workers.discard(process)
        if process.stdin is not None:
            await process.stdin.aclose()
        with anyio.move_on_after(10):
            await process.wait()
        if process.returncode is None:  # a worker that did not leave: as anyio would
            process.kill()
            await process.wait()


async def migrate_table(
    settings: RunSettings,
    plan: Plan,
    table: TablePlan,
    pool: asyncpg.Pool,
    load_slots: anyio.CapacityLimiter,
    index_slots: anyio.CapacityLimiter,
    report: RunReport,
    in_processes: bool,
    slot: progress.Slot | None = None,
    staging: split.Staging | None = None,
) -> None:
    async def attempt(number: int) -> TableLoad:
        clean = number > 1  # a retry starts from an empty table
        if in_processes and staging is not None and table.name in staging.tables:
            return await split.load_split(settings, plan, table, staging, pool, load_slots,
                                          report.run_id, slot, clean=clean)
        if in_processes:
            try:
                return await anyio.to_process.run_sync(
                    load_in_process, settings.source, plan.schema, table, settings.target,
                    settings.pipeline, report.run_id, slot, clean, cancellable=True,
                    limiter=load_slots)
            except anyio.BrokenWorkerProcess:
                raise InternalError(
                    f"the worker process loading {table.name} died before it finished; the "
                    "run is rolled back",
                    hint="was it killed (out of memory? see the kernel log)? rerun, or lower "
                         "--jobs") from None
        async with load_slots, pool.acquire() as conn:
            return await load_and_count(settings.source, plan.schema, table, conn,
                                        settings.pipeline, report.run_id, slot, clean=clean)

    load = await faults.retrying(attempt, table.name)
    progress.current().table_finished(table.name)
    verify_count(table, load)
    progress.current().table_indexing(table.name)
    started = time.perf_counter()
    table = await build_indexes(settings, pool, plan, table, index_slots, report)
    async with pool.acquire() as conn:
        report.warnings.extend(await add_constraints(conn, plan, table))
        # statistics and triggers only now: triggers must not fire during the load; the
        # sequence and ANALYZE too, here rather than at the end, overlapping other loads
        await execute_all(conn, ddl.statistics_sql(plan, table) + ddl.trigger_sql(plan, table)
                          + ddl.sequence_reset_sql(plan, table, table.next_identity)
                          + [ddl.analyze_sql(plan, table)])
    index_seconds = time.perf_counter() - started
    accounts = load.accounts
    late = report.late_rejects.pop(table.name, {})  # duplicates rejected by the index phase
    reject_dir = settings.pipeline.reject_dir
    reject_file = accounts.reject_file or (
        str(reject_path(reject_dir, table.name)) if late and reject_dir else None)
    report.tables.append(TableReport(table.name, load.rows_copied - sum(late.values()),
                                     load.seconds, index_seconds, dict(accounts.replaced),
                                     accounts.rejected + sum(late.values()),
                                     {**accounts.reasons, **late}, reject_file))
    check_total_rejects(settings, report)
    for replaced in accounts.examples:
        log.warning("value_replaced", table=table.name, column=replaced.column, key=replaced.key,
                    value=replaced.value, action=replaced.action, reason=replaced.reason)
    for label, count in accounts.replaced.items():
        report.warnings.append(f"{table.name}.{label}: {count} value(s) that did not fit "
                               "replaced as the column's policy says")
    if accounts.rejected:
        log.warning("rows_rejected", table=table.name, rows=accounts.rejected,
                    reasons=accounts.reasons, file=accounts.reject_file)
        report.warnings.append(
            f"{table.name}: {accounts.rejected} row(s) rejected ("
            + "; ".join(f"{n} {r}" for r, n in accounts.reasons.items())
            + (f"), kept in {accounts.reject_file}" if accounts.reject_file else ")"))
    log.info("table_loaded", table=table.name, rows=load.rows_copied,
             load_s=round(load.seconds, 3), index_s=round(index_seconds, 3),
             rows_per_s=int(load.rows_copied / load.seconds) if load.seconds else None)


async def load_and_count(source: Path, schema: str, table: TablePlan, conn: asyncpg.Connection,
                         pipeline: PipelineSettings, run_id: int | None,
                         slot: progress.Slot | None = None, *,
                         clean: bool = False) -> TableLoad:
    """Load one table (``clean``: emptied first) and count what PostgreSQL committed."""
    # durability comes from the synchronous commits of the final phase,
    # which flush the WAL of every earlier commit too
    await conn.execute("SET synchronous_commit = off")
    load = await load_table(source, schema, table, conn, pipeline, run_id, slot, clean=clean)
    # not in a `finally`: after a failure the connection may be mid-transaction, and an
    # error here would hide the real one (the pool resets a released connection anyway)
    await conn.execute("RESET synchronous_commit")
    committed = int(await conn.fetchval(f"SELECT count(*) FROM {qualified(schema, table.name)}"))
    return replace(load, rows_committed=committed)


def load_in_process(source: Path, schema: str, table: TablePlan, target: Target,
                    pipeline: PipelineSettings, run_id: int | None,
                    slot: progress.Slot | None = None,
                    clean: bool = False) -> TableLoad:
    """A worker process's whole job: one table, on its own connection and event loop."""
    # the worker's stdout carries its results to the main process: log to stderr only
    logs.configure(log_format="json")
    signals.bind_worker_to_parent()

    async def run() -> TableLoad:
        conn = await connect(target)
        try:
            return await load_and_count(source, schema, table, conn, pipeline, run_id, slot,
                                        clean=clean)
        except BaseException as exc:  # one error, picklable, for the main process
            error = faults.as_error(exc)
            if error is exc:
                raise
            raise error from None
        finally:
            with anyio.move_on_after(10, shield=True):
                await conn.close()

    return anyio.run(run)


def check_total_rejects(settings: RunSettings, report: RunReport) -> None:
    limit = settings.max_rejects_total
    if limit is not None and report.rejected > limit:
        raise TooManyRejects(
            report.tables[-1].table, "?", None, None,
            f"the run rejected {report.rejected} rows, more than --max-rejects-total {limit}; "
            "every table is rolled back",
            hint="clean the source, choose other policies, or raise the limit")


def verify_count(table: TablePlan, load: TableLoad) -> None:
    """Every source row is accounted for: SQLite's count = loaded + rejected."""
    if not (load.rows_committed == load.rows_copied
            and load.rows_read == table.row_count == load.rows_copied + load.rows_rejected):
        raise VerificationError(
            f"row count mismatch in {table.name}: SQLite had {table.row_count}, "
            f"read {load.rows_read}, copied {load.rows_copied}, rejected {load.rows_rejected}, "
            f"PostgreSQL has {load.rows_committed}",
            hint="was the source written to during the migration?",
        )


async def build_indexes(settings: RunSettings, pool: asyncpg.Pool, plan: Plan,
                        table: TablePlan, slots: anyio.CapacityLimiter,
                        report: RunReport) -> TablePlan:
    """All of the table's indexes in parallel; returns the table as built.

    A unique index (or primary key) the data breaks (SQLite let case-variants under
    NOCASE, or '1' next to 1, coexist) is reported with the duplicate keys; with
    ``--duplicates nonunique`` it is built without UNIQUE and the table's plan says so.
    """
    names = ([table.primary_key_name] if table.primary_key and table.primary_key_name else [])
    names += [i.name for i in table.indexes]
    demoted: list[str] = []
    rejected = report.late_rejects

    async def one(name: str, statement: str) -> None:
        async with slots, pool.acquire() as conn:
            await conn.execute("SET maintenance_work_mem = '256MB'")
            try:
                await execute_one(conn, statement)
            except asyncpg.UniqueViolationError:
                keys = await duplicate_keys(conn, plan, table, name)
                if settings.duplicates == "reject":
                    moved = await reject_duplicates(settings, conn, plan, table, name, report)
                    await execute_all(conn, [statement])
                    rejected.setdefault(table.name, {})[f"duplicate key for {name}"] = moved
                    report.warnings.append(f"{table.name}: {moved} duplicate row(s) rejected "
                                           f"for {name}: {keys}")
                    return
                if settings.duplicates != "nonunique":
                    raise TargetError(
                        f"cannot create unique index {name} on {table.name}: duplicate keys "
                        f"{keys}", hint="clean the source, or pass --duplicates nonunique "
                        "to build it without UNIQUE") from None
                await execute_all(conn, [statement.replace("CREATE UNIQUE INDEX",
                                                           "CREATE INDEX", 1)])
                demoted.append(name)
                report.warnings.append(f"{table.name}: index {name} built without UNIQUE: "
                                       f"duplicate keys {keys}")
            except asyncpg.PostgresError as exc:
                raise refused(statement, exc) from exc
            finally:
                await conn.execute("RESET maintenance_work_mem")

    async with anyio.create_task_group() as tg:
        for name, statement in zip(names, ddl.index_sql(plan, table), strict=True):
            tg.start_soon(one, name, statement)
    if not demoted:
        return table
    return replace(
        table,
        primary_key=() if table.primary_key_name in demoted else table.primary_key,
        indexes=tuple(replace(i, unique=False, constraint=False) if i.name in demoted else i
                      for i in table.indexes))


def _index_keys(plan: Plan, table: TablePlan, index_name: str) -> tuple[list[str], str]:
    index = next((i for i in table.indexes if i.name == index_name), None)
    exprs = ([f"({k.expression}) COLLATE {collations.collation_sql(plan.schema, k.collation)}"
              if k.collation else k.expression for k in index.keys] if index is not None
             else [quote_ident(c) for c in table.primary_key])  # compared as the index does
    where = f" WHERE {index.where}" if index is not None and index.where else ""
    return exprs, where


async def reject_duplicates(settings: RunSettings, conn: asyncpg.Connection, plan: Plan,
                            table: TablePlan, index_name: str, report: RunReport) -> int:
    """Keep the first row of each duplicate key (in load order); the others are rejected."""
    exprs, where = _index_keys(plan, table, index_name)
    target = qualified(plan.schema, table.name)
    columns = ", ".join(quote_ident(c.name) for c in table.columns)
    reason = f"duplicate key for unique index {index_name}"
    async with conn.transaction():
        deleted = await conn.fetch(
            f"DELETE FROM {target} WHERE ctid IN (SELECT ctid FROM (SELECT ctid, row_number() "
            f"OVER (PARTITION BY {', '.join(exprs)} ORDER BY ctid) AS n FROM {target}{where}) "
            f"AS d WHERE d.n > 1) RETURNING {columns}")
        path = await orphans.reject_rows(settings.source, table, [tuple(r) for r in deleted],
                                         settings.pipeline.reject_dir, reason, "unique index")
        if report.run_id is not None:
            await history.move_to_rejected(conn, report.run_id, table.name, len(deleted),
                                           reason, path)
    return len(deleted)


async def duplicate_keys(conn: asyncpg.Connection, plan: Plan, table: TablePlan,
                         index_name: str) -> str:
    """The first duplicate keys of a unique index, with how often each occurs."""
    exprs, where = _index_keys(plan, table, index_name)
    rows = await conn.fetch(
        f"SELECT {', '.join(exprs)}, count(*) FROM {qualified(plan.schema, table.name)}{where} "
        f"GROUP BY {', '.join(exprs)} HAVING count(*) > 1 ORDER BY count(*) DESC LIMIT 5")
    return "; ".join(f"{tuple(r)[:-1]} x{r[-1]}" for r in rows)


async def add_constraints(conn: asyncpg.Connection, plan: Plan, table: TablePlan) -> list[str]:
    """Attach PK/UNIQUE; add CHECKs NOT VALID then validate, dropping ones the data breaks."""
    warnings = []
    for statement in ddl.constraint_sql(plan, table):
        if "VALIDATE CONSTRAINT" not in statement:
            await execute_all(conn, [statement])
            continue
        try:
            await execute_one(conn, statement)
        except asyncpg.CheckViolationError as exc:
            name = statement.rsplit("VALIDATE CONSTRAINT", 1)[1].strip().rstrip(";")
            await conn.execute(
                f"ALTER TABLE {qualified(plan.schema, table.name)} DROP CONSTRAINT {name}"
            )
            warnings.append(f"{table.name}: CHECK {name} does not hold for existing rows "
                            f"({exc}); not created")
    return warnings


async def settle(settings: RunSettings, conn: asyncpg.Connection, plan: Plan,
                 report: RunReport) -> None:
    """Orphans, by each table's policy, before the foreign keys are added."""
    policies = orphan_policies(settings, plan)
    if all(p == "keep" for p in policies.values()):
        return
    moved = await orphans.settle_orphans(conn, plan, policies, settings.source,
                                         settings.pipeline.reject_dir, report.run_id,
                                         report.warnings)
    reject_dir = settings.pipeline.reject_dir
    report.tables = [
        replace(t, rows=t.rows - moved[t.table], rejected=t.rejected + moved[t.table],
                reject_file=t.reject_file or (str(reject_path(reject_dir, t.table))
                                              if reject_dir else None))
        if t.table in moved else t
        for t in report.tables]


async def finish(conn: asyncpg.Connection, plan: Plan, report: RunReport) -> None:
    """The last phase: foreign keys (NOT VALID, then validated), then views.

    Sequences and ANALYZE were done per table as each finished (`migrate_table`).
    """
    for add, validate in ddl.foreign_key_sql(plan):
        try:
            await execute_one(conn, add)
        except asyncpg.InvalidForeignKeyError as exc:  # its parent key was built non-unique
            report.warnings.append(f"foreign key not created: {exc}")
            continue
        except asyncpg.PostgresError as exc:
            raise refused(add, exc) from exc
        try:
            await execute_one(conn, validate)
        except asyncpg.ForeignKeyViolationError as exc:
            report.warnings.append(
                f"foreign key left NOT VALID because existing rows break it: {exc}"
            )
    report.warnings.extend(await create_views(conn, plan))


async def create_views(conn: asyncpg.Connection, plan: Plan) -> list[str]:
    """Every view PostgreSQL accepts; a refused one is retried after the others.

    The plan lists views over views after the views they read; the retry covers a
    view over one that was kept as written and created later in the list.
    """
    waiting = list(plan.views)
    errors: dict[str, Exception] = {}
    while waiting:
        created = [v for v in waiting if await create_view(conn, plan, v, errors)]
        waiting = [v for v in waiting if v not in created]
        if not created:
            break
    return [(f"view {v.name} not created: PostgreSQL refused its query ({errors[v.name]})"
             + (f"; not translated: {v.note}" if v.note else "") + "; rewrite it by hand")
            for v in waiting]


async def create_view(conn: asyncpg.Connection, plan: Plan, view: ViewPlan,
                      errors: dict[str, Exception]) -> bool:
    """Create a view from its translated query, else as written, else requoted.

    The query names its tables unqualified, so it is resolved in the target schema.
    PostgreSQL's reason for refusing the last attempt is kept in ``errors``.
    """
    names = {t.name for t in plan.tables} | {c.name for t in plan.tables for c in t.columns}
    names |= {v.name for v in plan.views}
    attempts = [views.create_view_sql(plan, view)]
    booleans = {c.name for t in plan.tables for c in t.columns if c.target_type == "boolean"}
    requoted = views.requote(view.sql, names, booleans)
    if not view.translated and requoted is not None and requoted != view.sql:
        attempts.append(views.create_view_sql(plan, view, requoted))
    for statement in attempts:
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {quote_ident(plan.schema)}")
                await execute_one(conn, statement)
        except asyncpg.PostgresError as exc:
            errors[view.name] = exc
            continue
        return True
    return False
