"""The ``run``, ``schema`` and ``data`` commands: this module only sequences the phases.

Each phase lives in its package (``target.statements`` for the bare tables,
``load.tables`` for the data, ``finish`` for what follows, ``check`` for the checks,
``cutover`` for the swap). Phases, in the order pgloader and pgcopydb converged on:

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
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import anyio
import anyio.to_process
import asyncpg
import structlog

from asyncmig import cutover, ddl, resume, unfinished
from asyncmig.check import verify
from asyncmig.check.verify import CheckResult
from asyncmig.cli import signals
from asyncmig.errors import (
    LocalFileError,
    SourceError,
    TargetError,
    VerificationError,
)
from asyncmig.finish import views
from asyncmig.finish.foreign_keys import finish, orphan_policies, settle
from asyncmig.load import chunks, progress, split
from asyncmig.load.counts import SourceCounts
from asyncmig.load.refuted import Replanning, plan_refuted
from asyncmig.load.retire import retire_workers
from asyncmig.load.tables import (
    expect_processes,
    load_everything,
    use_processes,
    warm_worker,
)
from asyncmig.plan import collations
from asyncmig.plan.builder import build_plan, outline_plan
from asyncmig.plan.model import Plan
from asyncmig.quoting import qualified
from asyncmig.runstate import RunReport, RunSettings, TableReport
from asyncmig.source import digest as source_digest
from asyncmig.source.identity import source_identity
from asyncmig.source.sqlite import check_source_file, fingerprint, open_sync, source_error
from asyncmig.target import faults, history, marks, plans, rollback, runlock, tablestate
from asyncmig.target.connect import connect, hang_up
from asyncmig.target.scratch import Scratch
from asyncmig.target.statements import (
    check_server,
    create_tables,
    execute_all,
    refuse_early,
    refused,
    require_empty_tables,
)
from asyncmig.target.unchanged import edges_of

log = structlog.get_logger(__name__)

# a source this large is hashed once the load's first batch is in, not while the tables
# are made and the first COPY starts: its SHA-256 would compete with them for the cores
# (measured: 5 % of the CPU used before the first COPY of a 66 MB source, see
# bench/README.md). A smaller one is hashed at once, in a few milliseconds, as the tables
# are made: its digest is recorded before its first tables commit, so a run interrupted
# after them can be resumed even when the source's identity cannot vouch for it (a file
# written seconds before the run, see resume._refusal).
HASH_AT_ONCE_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Beside:
    """What a run reads from the source beside its load, each from the moment its first
    batch is in (``copying``, set then, or once the load is over): the exact counts of
    the tables the plan has estimates for, and the final check's SQLite side."""

    copying: anyio.Event
    counts: SourceCounts
    scans: verify.SourceScans

    @classmethod
    def of(cls, source: Path) -> Beside:
        return cls(anyio.Event(), SourceCounts(source), verify.SourceScans(source))


@dataclass(frozen=True)
class Phases:
    """What the phases returned, for the run's report: the plan as built (in the target
    schema), each table's line (after orphans), the warnings in the order they arose,
    the checks and the rollback script."""

    plan: Plan
    tables: tuple[TableReport, ...] = ()
    warnings: tuple[str, ...] = ()
    checks: tuple[CheckResult, ...] = ()
    rollback_script: Path | None = None
    resumed_from: int | None = None  # the interrupted run whose stage was taken over
    continued: tuple[str, ...] = ()  # its chunked tables loaded on after their chunks


async def make_plan(
    settings: RunSettings, *, prove: bool = False, scan: frozenset[str] = frozenset()
) -> Plan:
    """The plan; with ``prove``, large tables are planned from a sample and the load
    proves it, except those in ``scan``, profiled over every row (see build_plan)."""
    check_source_file(settings.source)
    plan = await anyio.to_thread.run_sync(
        lambda: build_plan(
            settings.source,
            schema=settings.schema,
            overrides=settings.overrides,
            jobs=settings.jobs,
            prove=prove,
            scan=scan,
        )
    )
    for table in plan.tables:
        for column in table.columns:
            log.info(
                "column_planned",
                table=table.name,
                column=column.name,
                source_type=column.source_type,
                target_type=column.target_type,
                transform=column.transform,
                evidence=column.evidence,
            )
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


async def _execute(settings: RunSettings, *, create: bool, load: bool, check: bool) -> RunReport:
    if not settings.snapshot:
        return await _execute_on(settings, settings, create=create, load=load, check=check)
    check_source_file(settings.source)
    with _snapshot_directory() as directory:
        copy = directory.path / settings.source.name
        started = time.perf_counter()
        await anyio.to_thread.run_sync(snapshot, settings.source, copy)
        log.info(
            "snapshot_taken",
            source=str(settings.source),
            copy=str(copy),
            seconds=round(time.perf_counter() - started, 3),
        )
        return await _execute_on(
            settings, replace(settings, source=copy), create=create, load=load, check=check
        )


def _snapshot_directory() -> Scratch:
    """Where ``--snapshot`` copies the source: the temporary directory ($TMPDIR), in a
    folder the next run removes if this one is killed outright (a copy of the whole
    database each time, else)."""
    try:
        return Scratch("asyncmig-snapshot-")
    except OSError as exc:
        raise _no_room(exc) from exc


def _no_room(exc: BaseException) -> LocalFileError:
    return LocalFileError(
        f"--snapshot cannot copy the source into the temporary directory ({exc})",
        hint="set TMPDIR to a writable directory with room for a copy of the source",
    )


def snapshot(source: Path, copy: Path) -> None:
    """A consistent copy of the source, taken inside one read transaction (backup API).

    All readers then share one snapshot, whatever the application writes meanwhile;
    with a WAL database the copy never blocks the application. A copy that does not
    fit (SQLITE_FULL) is this side's disk, not a fault of the source.
    """
    src = open_sync(source)
    try:
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst, pages=0)
        finally:
            dst.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            raise _no_room(exc) from exc
        raise source_error(source, exc) from exc
    finally:
        src.close()


async def _execute_on(
    original: RunSettings, settings: RunSettings, *, create: bool, load: bool, check: bool
) -> RunReport:
    """The phases, reading ``settings.source`` (a snapshot, or the source itself);
    the history names ``original.source``."""
    started = time.perf_counter()
    reporter = progress.current()
    reporter.phase("checking")
    check_source_file(settings.source)
    # taken before anything reads the source: until its SHA-256 is recorded, what
    # tells a resume that the file is the one this run read (a snapshot: none)
    identity = (
        None
        if original.snapshot
        else await anyio.to_thread.run_sync(source_identity, original.source)
    )
    admin = await connect(settings.target)
    own_pid = admin.get_server_pid()  # asked now: a connection that timed out has none
    try:
        version = await check_server(admin)
        await runlock.acquire(admin, settings.schema)  # held until admin closes
        if settings.lock_timeout:  # the DDL of this session: never a silent wait
            await admin.execute(f"SET lock_timeout = {int(settings.lock_timeout * 1000)}")
        await history.mark_abandoned(admin, settings.schema)
        outline = await plan_names(settings)  # names only: nothing counted or scanned yet
        # a signal meanwhile takes effect inside the try below, which records it
        run_id = await faults.record_started(
            admin,
            settings.command,
            original.source,
            outline.schema,
            run_options(original, outline, identity),
        )
        reporter.run_started(run_id, settings.command, str(original.source))
        try:
            # a run killed after its cut-over: finished below when provably the same job
            cut = await unfinished.candidate(
                admin, settings, outline.schema, finishes=create and load and check
            )
            if cut is None:
                await refuse_early(
                    admin,
                    outline,
                    create=create,
                    replace=settings.replace,
                    cascade=settings.cascade,
                )
            plan = await plan_run(settings, started, create=create, load=load)
            options = run_options(original, plan, identity)  # as the full plan settled them
            key = options["resume_key"] = resume.resume_key(settings, plan)
            await history.set_options(admin, run_id, options)
            proof = resume.Proof(key, identity)
            # what interrupted runs left: taken over by this `run` when it may, else dropped
            found = await resume.pick(
                admin, settings, plan.schema, proof, resumes=create and load and check
            )
            done = (
                None
                if cut is None
                else await unfinished.provable(admin, settings, plan, cut, proof)
            )
            if done is not None:
                report = await finish_cut_over(
                    settings, admin, plan, done, (run_id, version, started)
                )
            else:
                if cut is not None:  # refused as before, naming the killed run
                    await refuse_early(
                        admin, outline, create=create, replace=settings.replace, cascade=False
                    )
                report = await _recorded_phases(
                    settings,
                    admin,
                    plan,
                    (run_id, version, started),
                    create=create,
                    load=load,
                    check=check,
                    resuming=found,
                )
        except BaseException as exc:
            blocked = None
            with anyio.move_on_after(10, shield=True):
                blocked = await runlock.explain_lock_wait(
                    settings.target, outline.schema, exc, own_pid
                )
            await record_failure(settings, admin, run_id, blocked or exc)
            if blocked is not None:
                raise blocked from exc
            raise
    finally:
        await hang_up(admin)
        await retire_workers()  # e.g. warmed, then a cheap failure: none loaded
        if signals.received():  # a worker cancelled while it started is not anyio's to kill
            signals.kill_stray_workers()
    return report


async def plan_names(settings: RunSettings) -> Plan:
    """The plan's names, from the source's schema alone (see outline_plan)."""
    check_source_file(settings.source)
    return await anyio.to_thread.run_sync(
        lambda: outline_plan(settings.source, schema=settings.schema, overrides=settings.overrides)
    )


async def plan_run(settings: RunSettings, started: float, *, create: bool, load: bool) -> Plan:
    """The plan, with the load's first worker process started meanwhile."""
    progress.current().phase("planning")
    # `run` makes the tables it loads: their types may come from a sample, which the
    # load proves; `schema` and `data` share a plan, so theirs is profiled in full
    async with anyio.create_task_group() as warm:  # the first worker starts while we plan
        if load and expect_processes(settings):
            warm.start_soon(warm_worker)
        plan = await make_plan(settings, prove=create and load)
    log.info(
        "planned",
        tables=len(plan.tables),
        rows=sum(t.row_count for t in plan.tables),
        seconds=round(time.perf_counter() - started, 3),
    )
    return plan


async def _recorded_phases(
    settings: RunSettings,
    admin: asyncpg.Connection,
    plan: Plan,
    run: tuple[int, str, float],
    *,
    create: bool,
    load: bool,
    check: bool,
    resuming: resume.Resumable | None = None,
) -> RunReport:
    """The phases, the report assembled from what they returned, then the run's
    history record (its failure is recorded by the caller). ``run``: its id, the
    server's version, when it started."""
    run_id, version, started = run
    digest: list[str] = [resuming.sha256] if resuming else []
    if resuming:  # known already: a run that resumes this one compares it
        await history.record_sha256(admin, run_id, resuming.sha256)
    beside = Beside.of(settings.source)
    copying, counts = beside.copying, beside.counts

    first_seen = source_digest.first_seen(settings.source)

    async def hash_source() -> None:  # overlaps the load: it reads the whole file
        if load and settings.source.stat().st_size >= HASH_AT_ONCE_BYTES:
            await copying.wait()
        digest.append(await anyio.to_thread.run_sync(source_digest.sha256, settings.source))
        if fingerprint(settings.source) != first_seen:
            # written during this run: the digest is of content other than the rows
            # read, and a resume would trust it; the run fails on the change anyway
            log.warning("sha256_not_recorded", reason="the source changed during the run")
            return
        await record_digest(settings, run_id, digest[0])

    marked: dict[str, str] = {}  # table -> how its marks were stored

    async def mark_source() -> None:  # beside the load, on the cores it leaves idle
        conn = await connect(settings.target)  # `admin` is busy; stored as they come
        try:
            feed = marks.Feed(settings.source, marks.requests(plan), settings.jobs, nice=MARKS_NICE)
            async with anyio.create_task_group() as tg:
                tg.start_soon(feed.run)
                for request in feed.requests:
                    found = await feed.get(request.table)
                    if found is not None:
                        await marks.store(conn, run_id, found.marks, found.pages)
                        marked[found.marks.table] = found.marks.mode
        finally:
            await hang_up(conn)

    async with anyio.create_task_group() as tg:
        if not digest:
            tg.start_soon(hash_source)
        if load and settings.sync_marks:
            tg.start_soon(mark_source)
        if load:
            tg.start_soon(counts.beside, plan, copying)
        if load and check:
            tg.start_soon(beside.scans.beside, plan, copying)
        done = await _until_proved(
            settings,
            admin,
            plan,
            run_id,
            create=create,
            load=load,
            check=check,
            resuming=resuming,
            loading=beside,
        )
        copying.set()  # a load that copied no row: the digest is still taken
    report = RunReport(
        done.plan,
        list(done.tables),
        list(done.warnings),
        time.perf_counter() - started,
        version,
        run_id,
        list(done.checks),
        done.rollback_script,
        done.resumed_from,
        done.continued,
    )
    await plans.record(admin, run_id, report.plan, settings.source, settings.overrides)
    if settings.sync_marks and load:
        await remember_marks(admin, report.plan, run_id, marked)
    await history.finish_run(
        admin,
        run_id,
        status="succeeded",
        rows=report.rows,
        seconds=report.seconds,
        sha256=digest[0],
        rollback_script=str(report.rollback_script) if report.rollback_script else None,
        log_file=str(settings.log_file) if settings.log_file else None,
    )
    return report


async def record_digest(settings: RunSettings, run_id: int, sha256: str) -> None:
    """The source's SHA-256 in the history as soon as it is known (a resume compares it),
    on a connection of its own (``admin`` is busy). A connection fault here is logged,
    not raised: the load meets the same server and reports it itself, while an error
    raised here cancelled the load mid-wait, and the load's cleanup, not knowing the
    server was frozen, waited for it twice more (35 s instead of 13). The run's last
    history write records the digest anyway."""
    try:
        conn = await connect(settings.target)
        try:
            await history.record_sha256(conn, run_id, sha256)
        finally:
            await hang_up(conn)
    except Exception as exc:
        if not (faults.is_connection_fault(exc) or faults.timed_out(exc)):
            raise
        log.warning("sha256_not_recorded_yet", reason=str(faults.as_error(exc)))


# the source marks' process runs beside the load at this lower priority: it takes the
# CPU the load leaves, and the run waits for it only if it is still busy at the end
MARKS_NICE = 10


async def remember_marks(
    admin: asyncpg.Connection, plan: Plan, run_id: int, stored: dict[str, str]
) -> None:
    """Keep the source marks for the next sync (asyncmig.target.marks) only of tables
    the plan still marks the same way (a re-planned table may have another key); the
    marks of earlier runs into the schema go."""
    stale = [
        name
        for name, mode in stored.items()
        if (request := marks.request_for(plan.table(name))) is None or request.mode != mode
    ]
    if stale:
        await marks.forget(admin, run_id, stale)
    await marks.forget_older(admin, plan.schema, run_id)


FROZEN = "the server did not answer within --statement-timeout; the next run resumes or cleans up"


async def record_failure(
    settings: RunSettings, admin: asyncpg.Connection, run_id: int, exc: BaseException
) -> None:
    """The history says how the run ended: ``interrupted`` by a signal, else ``failed``
    (no rows: what the run loaded was undone).

    Shielded and time-boxed, on a new connection when the failure broke ``admin``; if
    PostgreSQL cannot be reached at all, the row stays ``running`` and the next run
    (or ``status``) sees that its lock is not held.
    """
    stopped_by = signals.received()
    error = faults.as_error(exc)
    if faults.timed_out(exc):
        admin.terminate()  # no goodbye to a server that does not answer
        log.error("history_not_recorded", run=run_id, error=FROZEN)
        return
    log_file = str(settings.log_file) if settings.log_file else None
    await faults.record_ended(settings.target, admin, run_id, error, stopped_by, log_file)


async def _until_proved(
    settings: RunSettings,
    admin: asyncpg.Connection,
    plan: Plan,
    run_id: int,
    *,
    create: bool,
    load: bool,
    check: bool,
    resuming: resume.Resumable | None = None,
    loading: Beside | None = None,
) -> Phases:
    """The phases; a table whose load refutes a sampled plan is profiled over every row
    and reloaded alone when nothing else changes (asyncmig.load.refuted), else
    everything starts again on the new plan (what this attempt made was dropped by
    ``_phases``)."""

    async def remake(scan: frozenset[str]) -> Plan:
        made = await make_plan(settings, prove=True, scan=scan)
        # the stage now holds tables of this plan: a run interrupted from here on is
        # resumed only on it, never by a run that plans from the sample again (it would
        # take over a table typed otherwise than its plan says); that one starts afresh
        await history.record_resume_key(admin, run_id, resume.resume_key(settings, made))
        return made

    replanning = Replanning(remake, lambda made: prepared(admin, made, create=create))
    while True:
        try:
            return await _phases(
                settings,
                admin,
                plan,
                run_id,
                create=create,
                load=load,
                check=check,
                resuming=resuming,
                loading=loading,
                replanning=replanning,
            )
        except BaseException as exc:
            refuted = plan_refuted(exc)
            if refuted is None:
                raise
        log.warning("starting_again", table=refuted.table, column=refuted.column)
        plan = await replanning.again(plan, refuted)
        resuming = None  # the refuted attempt dropped what it had taken over


def run_options(settings: RunSettings, plan: Plan, identity: str | None) -> dict[str, object]:
    return {
        "jobs": settings.jobs,
        "replace": settings.replace,
        "snapshot": settings.snapshot,
        "batch_size": settings.pipeline.batch_size,
        "queue_size": settings.pipeline.queue_size,
        "config": settings.overrides.origin,
        "target": settings.target.safe,
        "orphans": orphan_policies(settings, plan),
        "widen": settings.overrides.widen,  # `check` plans the types the run chose
        "renames": [asdict(r) for r in plan.renames],  # the names `check` must find
        "source_edges": edges_of(settings.source),  # for --if-changed
        "source_identity": identity,  # for a resume (see asyncmig.source.identity)
    }


async def _phases(
    settings: RunSettings,
    admin: asyncpg.Connection,
    plan: Plan,
    run_id: int,
    *,
    create: bool,
    load: bool,
    check: bool,
    resuming: resume.Resumable | None = None,
    loading: Beside | None = None,
    replanning: Replanning | None = None,
) -> Phases:
    """The phases on one plan. ``loading``: what is read from the source beside the
    load (see :class:`Beside`); the plan returned holds its exact counts. ``replanning``: a table whose load refutes
    the plan is reloaded alone on the plan it makes (then every later phase reads that
    plan)."""
    loading = loading or Beside.of(settings.source)
    copying, counts = loading.copying, loading.counts
    before = fingerprint(settings.source)
    tag = await history.run_tag(admin, run_id)  # names this run's files
    if settings.rejects_dir is not None:
        pipeline = replace(settings.pipeline, reject_dir=settings.rejects_dir.absolute() / tag)
        settings = replace(settings, pipeline=pipeline)
    warnings = list(plan.warnings)
    plan, notes = await prepared(admin, plan, create=create)
    warnings.extend(notes)
    target = plan  # `run` builds in a stage of its own, swapped in once checked
    atomic = create and load and check and await cutover.may_stage(admin)
    if create and load and not atomic and settings.replace:
        await refuse_unstaged_replace(admin, plan)
    if atomic:
        await cutover.replaceable(
            admin, plan, replace=settings.replace, cascade=settings.cascade
        )  # refused before any change
        plan = replace(plan, schema=cutover.stage_name(plan.schema, run_id))
        log.info("staging", stage=plan.schema, target=target.schema)
        # chunks only where the table is out of sight until the swap
        settings = replace(
            settings, pipeline=replace(settings.pipeline, chunk_rows=settings.chunk_rows)
        )
    adopted = (
        await resume.adopt(admin, resuming, plan, run_id, settings.pipeline, counts)
        if atomic and resuming is not None
        else None
    )
    cut = False
    staging = split.plan_staging(
        settings,
        plan,
        run_id,
        in_processes=create and load and use_processes(settings, plan),
    )
    taken_over = adopted.loads if adopted else {}
    chunked = {t.name for t in plan.tables if chunks.chunked(t, settings.pipeline)}
    staging = replace(staging, tables=staging.tables - taken_over.keys() - chunked)
    if adopted is not None:  # the adopted stage has every table, bare or loaded
        staging = await split.stage_tables(admin, plan, staging)
    elif create:
        warnings.extend(
            await create_tables(admin, plan, replace=settings.replace, cascade=settings.cascade)
        )
        # moved out of sight until loaded whole (none without the right to)
        staging = await split.stage_tables(admin, plan, staging)
    else:
        warnings.extend(
            await require_empty_tables(
                admin, plan, truncate=settings.replace, cascade=settings.cascade
            )
        )
    tables: list[TableReport] = []
    checks: list[CheckResult] = []
    script = None
    state = StateBeside(settings)
    try:
        async with state.beside():  # the tables' states taken beside the last phases
            if load:
                progress.current().phase("loading")
                if replanning is not None and create:
                    replanning.current, replanning.notes = plan, notes
                loaded = await load_everything(
                    settings,
                    plan,
                    run_id,
                    staging,
                    taken_over,
                    copying,
                    counts,
                    replanning.local if replanning is not None and create else None,
                )
                proven = replanning.current if replanning is not None else None
                if proven is not None and proven is not plan:
                    warnings[: len(plan.warnings)] = proven.warnings  # the scanned tables' too
                    plan, target = proven, replace(proven, schema=target.schema)
                if staging.tables:  # every split table moved out of it: empty
                    await execute_all(admin, [split.drop_staging_sql(run_id)])
                log.info("data_loaded", rows=loaded.rows)
                progress.current().phase("foreign keys")
                settled = await settle(settings, admin, plan, run_id)
                state.start(plan)  # no row changes after this: the rollback's states
                tables = settled.applied(list(loaded.tables), settings.pipeline.reject_dir)
                warnings += [
                    *loaded.warnings,
                    *settled.warnings,
                    *await finish(admin, plan, resumed=adopted is not None),
                ]
                if fingerprint(settings.source) != before:
                    raise source_changed(settings.source)
            if check:
                progress.current().phase("verifying")
                checks = await verified(settings, admin, plan, tables, loading.scans)
        if atomic:
            warnings.extend(await swap(settings, admin, target, plan, run_id))
            plan, cut = target, True
            signals.note_committed(f"the checked copy was committed into schema {target.schema}")
        if create or load:
            await remember_state(settings, admin, plan, run_id, state.taken)
            script = await keep_rollback(settings, admin, plan, run_id, tag)
    except BaseException as exc:
        if cut:  # the checked copy is in place: undoing now would leave the target empty
            log.warning(
                "failed_after_cut_over",
                error=faults.as_error(exc).__class__.__name__,
                schema=target.schema,
            )
            raise
        if faults.timed_out(exc):  # asking the server anything would only wait again
            log.warning("cleanup_skipped", reason=FROZEN, stage=plan.schema if atomic else None)
            raise
        if atomic and resume.resumable_failure(exc):  # the same command resumes
            note = None
            with anyio.move_on_after(30, shield=True):
                note = await resume.keep_stage(settings.target, admin, plan, run_id)
            error = resume.explained(exc, note)
            if error is exc:
                raise
            raise error from exc
        with anyio.move_on_after(30, shield=True):
            async with faults.cleanup_connection(settings.target, admin) as conn:
                await undo(
                    conn,
                    plan,
                    run_id,
                    drop=create,
                    stage=plan.schema if atomic else None,
                )
        if load and fingerprint(settings.source) != before and not signals.received():
            raise source_changed(settings.source) from exc  # the reason the counts differ
        raise
    return Phases(
        counts.settled(plan),
        tuple(tables),
        tuple(warnings),
        tuple(checks),
        script,
        adopted.resumed_from if adopted else None,
        tuple(adopted.partial) if adopted else (),
    )


async def refuse_unstaged_replace(admin: asyncpg.Connection, plan: Plan) -> None:
    """A run that cannot make its stage (no CREATE on the database) builds in the target
    schema: with --replace it would drop the old tables before loading the new ones, and
    a failure or a signal then left neither (no backup schema either). Refused before
    anything changes when there is something to replace."""
    existing = await cutover.existing_tables(admin, plan)
    if existing:
        raise TargetError(
            f"cannot replace {qualified(plan.schema, existing[0])} safely: without CREATE on "
            "the database the run has no stage and no backup schema, and a failure would "
            "leave neither the old tables nor the new ones; nothing was changed",
            hint="GRANT CREATE ON DATABASE to this role, or drop the tables first "
            "(asyncmig schema --replace, then asyncmig data)",
        )


async def prepared(
    admin: asyncpg.Connection, plan: Plan, *, create: bool
) -> tuple[Plan, list[str]]:
    """The plan as this server takes it (see collations.prepare), and why it differs."""
    found, notes = await collations.prepare(admin, plan, create=create)
    if found is not plan:  # NOCASE columns lost their collation: views fold case
        found = views.without_icu(found, plan)
    return found, notes


async def finish_cut_over(
    settings: RunSettings,
    admin: asyncpg.Connection,
    plan: Plan,
    found: unfinished.Unfinished,
    run: tuple[int, str, float],
) -> RunReport:
    """Finish the job of a run killed after its cut-over (see :mod:`asyncmig.unfinished`):
    the target checked against the source as a run's last check does, then the killed
    run's state, rollback and plan recorded, nothing loaded again."""
    run_id, version, started = run
    warnings = list(plan.warnings)
    plan, notes = await prepared(admin, plan, create=True)
    progress.current().phase("verifying")
    checks = await verified(settings, admin, plan, list(found.tables))
    await remember_state(settings, admin, plan, found.run_id)
    tag = await history.run_tag(admin, found.run_id)
    script = await keep_rollback(settings, admin, plan, found.run_id, tag)
    for recorded in (found.run_id, run_id):  # `check` and `sync` read the latest run's
        await plans.record(admin, recorded, plan, settings.source, settings.overrides)
    seconds = time.perf_counter() - started
    await unfinished.record(
        admin,
        found,
        run_id,
        seconds=seconds,
        rollback_script=str(script) if script else None,
        log_file=str(settings.log_file) if settings.log_file else None,
    )
    return RunReport(
        plan,
        list(found.tables),
        [*warnings, *notes],
        seconds,
        version,
        run_id,
        checks,
        script,
        found.run_id,
        finished=found.run_id,
    )


async def verified(
    settings: RunSettings,
    admin: asyncpg.Connection,
    plan: Plan,
    tables: list[TableReport],
    scans: verify.SourceScans | None = None,
) -> list[CheckResult]:
    """The checks after loading (allowing for what each table rejected or replaced);
    raises when one failed. ``scans``: the SQLite side as far as it was read beside
    the load."""
    checks = await verify.run_checks(
        plan,
        admin,
        settings.source,
        {t.table: verify.Allowance.from_accounts(t.rejected, t.replaced) for t in tables},
        orphan_policies(settings, plan),
        scans,
    )
    # a foreign key the load left NOT VALID on purpose (orphans kept, as SQLite held
    # them) is reported as a warning by the load, not a failed run
    failed = [
        c
        for c in checks
        if not c.ok and not (c.check == verify.FOREIGN_KEY and c.found.endswith("NOT VALID"))
    ]
    if failed:
        first = failed[0]
        raise VerificationError(
            f"{len(failed)} check(s) failed after loading, first: {first.check} of "
            f"{first.table} {first.subject}: expected {first.expected}, "
            f"found {first.found}"
        )
    return checks


async def swap(
    settings: RunSettings, admin: asyncpg.Connection, target: Plan, stage: Plan, run_id: int
) -> list[str]:
    """The cut-over (see :mod:`asyncmig.cutover`), its refusal as one line."""
    try:
        return await cutover.swap(
            admin,
            target,
            stage,
            replace=settings.replace,
            cascade=settings.cascade,
            run_id=run_id,
            keep=settings.backup_schema,
        )
    except asyncpg.PostgresError as exc:
        raise refused(f"moving the checked tables into {target.schema}", exc) from exc


def by_size(plan: Plan) -> list[str]:
    """The plan's tables, largest first: the order their scans are handed out in."""
    return [t.name for t in sorted(plan.tables, key=lambda t: -t.row_count)]


async def capture_state(
    settings: RunSettings, plan: Plan, conn: asyncpg.Connection | None = None
) -> tuple[int, list[tablestate.TableState]]:
    """Every table's state in one snapshot, on ``--jobs`` connections (``conn`` one of
    them, the others opened here and closed after)."""
    names = by_size(plan)
    opened: list[asyncpg.Connection] = []
    try:
        for _ in range(min(settings.jobs, len(names)) - (conn is not None)):
            # one at a time: those opened are closed if a later one fails
            opened.append(await connect(settings.target))  # noqa: PERF401
        first, *helpers = [conn, *opened] if conn is not None else opened
        return await tablestate.capture(first, plan.schema, names, helpers)
    finally:
        for helper in opened:
            await hang_up(helper)


class StateBeside:
    """The tables' states, taken while the last phases work on other connections.

    Once the orphans are settled nothing changes a row again (foreign keys, views, the
    checks and the cut-over only read them or the catalog), so the checksums a rollback
    compares against are scanned then, beside the keys' validation and the checks,
    rather than after the cut-over: on two cores, both scans of the largest table at
    once instead of one after the other. The cut-over waits for them (their snapshot
    would otherwise hold its locks back); a failure among them fails the run before
    it, so nothing is lost. A run that never starts them takes them after the cut-over,
    as before (:func:`remember_state`).
    """

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self.taken: tuple[int, list[tablestate.TableState]] | None = None
        self._group: anyio.abc.TaskGroup | None = None

    @asynccontextmanager
    async def beside(self) -> AsyncIterator[None]:
        """While inside, :meth:`start` may begin the scans; leaving waits for them.

        An error inside is raised as itself, not wrapped in the task group's group:
        the run's handlers see what they saw before. A failure of the scans alone
        comes as the task group raised it."""
        inside: BaseException | None = None
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                try:
                    yield
                except BaseException as exc:
                    inside = exc
                    raise
        except BaseExceptionGroup:
            # the scans failed, and the body was only cancelled for it: their error
            if inside is None or isinstance(inside, anyio.get_cancelled_exc_class()):
                raise
        finally:
            self._group = None
        if inside is not None:
            raise inside

    def start(self, plan: Plan) -> None:
        assert self._group is not None, "start() only inside beside()"
        self._group.start_soon(self._take, plan)

    async def _take(self, plan: Plan) -> None:
        started = time.perf_counter()
        self.taken = await capture_state(self.settings, plan)
        log.debug("state_taken", seconds=round(time.perf_counter() - started, 3))


async def remember_state(
    settings: RunSettings,
    admin: asyncpg.Connection,
    plan: Plan,
    run_id: int,
    taken: tuple[int, list[tablestate.TableState]] | None = None,
) -> None:
    """Per table rows and checksum as the run leaves them, for a later rollback to
    compare: ``taken`` beside the last phases (:class:`StateBeside`), or scanned now
    by ``--jobs`` connections sharing one snapshot."""
    started = time.perf_counter()
    xid, states = taken if taken is not None else await capture_state(settings, plan, admin)
    found = await tablestate.dependents(admin, plan.schema, by_size(plan))
    await history.record_state(admin, run_id, xid, states, found)
    log.info("state_recorded", tables=len(states), seconds=round(time.perf_counter() - started, 3))


async def keep_rollback(
    settings: RunSettings, admin: asyncpg.Connection, plan: Plan, run_id: int, tag: str
) -> Path | None:
    """The run's rollback, kept in the history and, for people to review, in a file."""
    sql = rollback.script_sql(plan, run_id, await cutover.kept_restore_sql(admin, plan, run_id))
    script = None
    if settings.output_dir is not None:
        try:
            script = await anyio.to_thread.run_sync(
                rollback.write_script, sql, tag, settings.output_dir
            )
        except OSError as exc:  # the copy for people only: the history keeps the rollback
            log.warning(
                "rollback_script_not_written",
                directory=str(settings.output_dir),
                error=exc.strerror or str(exc),
                note=f"`asyncmig rollback --run {run_id}` reads the rollback from the history",
            )
    await history.store_rollback(admin, run_id, sql, script)
    return script


def source_changed(source: Path) -> SourceError:
    return SourceError(
        f"{source} changed while it was being migrated",
        hint="stop the application writing to it, or migrate a copy (--snapshot)",
    )


async def undo(
    conn: asyncpg.Connection, plan: Plan, run_id: int, *, drop: bool, stage: str | None = None
) -> None:
    """Leave nothing half-made: drop the run's stage, or what this run created, or empty
    what it loaded."""
    try:
        async with conn.transaction():
            if stage is not None:
                await execute_all(
                    conn, [split.drop_staging_sql(run_id), cutover.drop_stage_sql(stage)]
                )
            elif drop:
                await execute_all(conn, [split.drop_staging_sql(run_id)])
                await execute_all(conn, ddl.drop_extras_sql(plan))
                await execute_all(conn, ddl.drop_tables_sql(plan, plan.tables))
            else:
                await execute_all(conn, rollback.undo_data_sql(plan))
            await history.forget_tables(conn, run_id)
    except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TargetError) as exc:
        log.error("cleanup_failed", error=str(exc))
