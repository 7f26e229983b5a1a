"""``asyncmig sync``: bring a target an earlier run made up to date with its source.

1. The source is planned again and the plan must still fit the target: every
   table the plan has exists with the plan's columns and types, and every table the
   last load wrote is still in the plan. Otherwise the source's schema changed and
   the sync stops (exit 6), naming the difference: a full ``run --replace`` is needed.
2. In one transaction, the plan's tables are locked against writers (readers go
   on, seeing the tables as they were) and compared range by range
   (:mod:`asyncmig.target.sync_ranges`); then, parents first, changed and new rows are
   copied into a temporary table and applied with one UPDATE and one INSERT per
   table, identity sequences are moved past the new ids, and, children first, the
   deleted rows go. A table without a primary key that differs is emptied and
   reloaded. One commit: readers see every table before or after, never between,
   and foreign keys hold at every statement.
3. The history gets a ``sync`` run with, per table, rows inserted, updated and
   deleted (``asyncmig.run_tables.changes``), the source's SHA-256 (so
   ``--if-changed`` works after a sync too), and the rejected rows of the load it
   builds on carried forward, so ``check`` still allows for them.

A changed row whose value does not fit its column under a ``reject`` policy stops
the sync (exit 5) naming it: a sync cannot write to the reject store. Rows that an
earlier load rejected are left out on both sides, read back from the reject store,
as ``check --deep`` does.
"""

from __future__ import annotations

import itertools
import json
import resource
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import anyio.to_process
import anyio.to_thread
import asyncpg
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asyncmig import ddl
from asyncmig.check.deep import FETCH_ROWS, Digest, TableCheck, parse_type
from asyncmig.cli import signals
from asyncmig.cli.commands import rejected_keys
from asyncmig.errors import SourceError, TargetError, VerificationError, first_error
from asyncmig.load import codecs
from asyncmig.load.policy import Accounts, TableGuard, lenient_text
from asyncmig.load.retire import retire_workers
from asyncmig.load.transforms import build_batch_transform, exact_codecs
from asyncmig.plan.model import Plan, TablePlan
from asyncmig.quoting import qualified, quote_ident
from asyncmig.runstate import RunSettings
from asyncmig.source import digest as source_digest
from asyncmig.source.sqlite import check_source_file, fingerprint, open_sync
from asyncmig.target import faults, history, marks, plans, runlock, sync_marks
from asyncmig.target.connect import NO_JIT, Target, connect, hang_up
from asyncmig.target.statements import check_server, refused
from asyncmig.target.sync_marks import RangeSync
from asyncmig.target.sync_ranges import (
    Changes,
    Group,
    Row,
    TableDiff,
    choose_ranges,
    source_digests_of,
)
from asyncmig.target.unchanged import LastLoad, edges_of, last_load

log = structlog.get_logger(__name__)

# from this many source rows (with --jobs > 1) the SQLite side of the comparison runs in
# worker processes, one table each: below it, starting them costs more than it saves
PROCESS_ROWS = 100_000
CHANGES_PRESENT_SQL = (
    "SELECT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = $1 "
    "AND table_name = 'run_tables' AND column_name = 'changes')"
)
CHANGES_SQL = f"ALTER TABLE {history.RUN_TABLES} ADD COLUMN IF NOT EXISTS changes jsonb"


@dataclass(frozen=True)
class TableSync:
    """What one table needed and got."""

    table: str
    inserted: int
    updated: int
    deleted: int
    ranges: int
    differing: int
    reloaded: bool
    seconds: float
    compared: str = "rows"  # "marks": only the ranges whose source rows changed
    marked: bool = False  # its source marks recorded for the next sync


@dataclass
class SyncReport:
    run_id: int
    since_run: int
    server_version: str
    schema: str
    tables: list[TableSync] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return sum(t.inserted + t.updated + t.deleted for t in self.tables)


async def sync(settings: RunSettings) -> SyncReport:
    """The ``sync`` command (see the module docstring); raises the error that stopped it."""
    try:
        return await _sync(settings)
    except BaseException as exc:  # one error: a task group's first, a lost connection named
        error = faults.as_error(exc)
        if error is exc:
            raise
        raise error from exc


async def _sync(settings: RunSettings) -> SyncReport:
    started = time.perf_counter()
    check_source_file(settings.source)
    children = marks.Children()  # the marks' processes start while the sync does
    await children.start(max(1, settings.jobs))
    try:
        return await _connected(settings, started, children)
    finally:
        await children.aclose()


async def _connected(settings: RunSettings, started: float, children: marks.Children) -> SyncReport:
    conn = await connect(settings.target, NO_JIT)
    try:
        version = await check_server(conn)
        await runlock.acquire(conn, settings.schema)  # one run or sync at a time; held until
        await history.mark_abandoned(conn, settings.schema)  # the connection closes
        if settings.lock_timeout:  # the tables' lock: an application's open transaction
            await conn.execute(f"SET lock_timeout = {int(settings.lock_timeout * 1000)}")
        previous = await last_load(conn, settings.schema)
        if previous is None:
            raise TargetError(
                f"cannot sync into schema {settings.schema}: no earlier run loaded it",
                hint="load it once with `asyncmig run`, then sync",
            )
        plan, reused = await sync_plan(conn, settings)
        since = previous.run_id if reused and not settings.full_compare else None
        before = source_digest.first_seen(settings.source)  # as the command first saw it
        feed, shapes = await _marks_feed(conn, settings, plan, since, children)
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed.run)  # the source's marks, while the sync starts
            await require_same_schema(conn, plan)
            await history.ensure(conn)
            if not await conn.fetchval(
                CHANGES_PRESENT_SQL, history.SCHEMA
            ):  # ALTER locks even when present:
                await conn.execute(CHANGES_SQL)  # a history reader's transaction blocked it
            options = await _options(settings, previous)
            run_id = await faults.record_started(
                conn, "sync", settings.source, plan.schema, options
            )
            report = SyncReport(run_id, previous.run_id, version, plan.schema)
            marked = Marked(feed, shapes, since)
            await _recorded(conn, settings, plan, report, started, marked, before)
        return report
    finally:
        await hang_up(conn)


@dataclass(frozen=True)
class Marked:
    """The source's marks being computed (``feed``), and what the newest load
    (``since``: None, compare in full) recorded of each table's (``shapes``)."""

    feed: marks.Feed
    shapes: dict[str, tuple[str, int]]
    since: int | None

    @property
    def comparable(self) -> bool:
        return bool(self.shapes) and self.since is not None


async def _marks_feed(
    conn: asyncpg.Connection,
    settings: RunSettings,
    plan: Plan,
    since: int | None,
    children: marks.Children,
) -> tuple[marks.Feed, dict[str, tuple[str, int]]]:
    """The source's marks, to be computed as soon as the plan is known: each table
    marked as the newest load marked it, only its changed pages read where that load
    kept them. Read before the sync locks the tables: only runs write the marks, and
    the run lock keeps every other run out."""
    shapes = await marks.shapes(conn, since) if since is not None else {}
    old_pages = await marks.recorded_pages(conn, since) if shapes and since else {}
    requests = marks.requests(plan, shapes)
    feed = marks.Feed(
        settings.source, requests, settings.jobs, old_pages=old_pages, children=children
    )
    return feed, shapes


async def sync_plan(conn: asyncpg.Connection, settings: RunSettings) -> tuple[Plan, bool]:
    """The plan the target was made with, when the source's declared schema is unchanged
    (asyncmig.target.plans): no profile scan. Else the source is planned again, and
    require_same_schema decides whether that plan still fits the target. True when
    reused: only then can the newest load's source marks be compared."""
    recorded = await plans.latest(conn, settings.schema, settings.source, settings.overrides)
    if recorded is not None:
        log.info("plan_reused", tables=len(recorded.tables))
        return recorded, True
    from asyncmig.run import make_plan  # the planner's modules: only for a new plan

    return await make_plan(settings), False


async def _options(settings: RunSettings, previous: LastLoad) -> dict[str, object]:
    edges = await anyio.to_thread.run_sync(edges_of, settings.source)
    return {
        "since_run": previous.run_id,
        "config": settings.overrides.origin,
        "target": settings.target.safe,
        "source_edges": edges,
    }


async def _recorded(
    conn: asyncpg.Connection,
    settings: RunSettings,
    plan: Plan,
    report: SyncReport,
    started: float,
    marked: Marked,
    before: tuple[tuple[int, int], ...],
) -> None:
    """Sync, hash the source meanwhile, and record the outcome either way. ``before``:
    the source's fingerprint when the sync began reading it."""
    digest: list[str] = []

    async def hash_source() -> None:
        digest.append(await anyio.to_thread.run_sync(source_digest.sha256, settings.source))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(hash_source)
            report.tables = await sync_tables(
                conn,
                plan,
                settings.source,
                report.run_id,
                settings.jobs,
                settings.workers,
                target=settings.target,
                marked=marked,
                source_state=before,
            )
    except BaseException as exc:
        blocked = None
        with anyio.move_on_after(10, shield=True):  # who holds the lock, if that was it
            blocked = await runlock.explain_lock_wait(
                settings.target, plan.schema, exc, conn.get_server_pid()
            )
        await _record_failure(settings, conn, report.run_id, blocked or exc)
        if blocked is not None:
            raise blocked from exc
        raise
    if fingerprint(settings.source) != before:  # written after the sync read it, while it
        digest.clear()  # was hashed: no --if-changed may take that digest for this state
        log.warning("source_changed_after_sync", source=str(settings.source))
    report.seconds = time.perf_counter() - started
    await plans.record(conn, report.run_id, plan, settings.source, settings.overrides)
    await history.finish_run(
        conn,
        report.run_id,
        status="succeeded",
        rows=report.changed,
        seconds=report.seconds,
        sha256=digest[0] if digest else None,
    )
    log.info(
        "synced",
        run_id=report.run_id,
        since_run=report.since_run,
        changed=report.changed,
        seconds=round(report.seconds, 3),
        cpu_s=_cpu_seconds(),
    )


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds of this process and of its child processes that have ended (the
    marks, the row-by-row comparison's workers): where a sync's work went."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "main": round(mine.ru_utime + mine.ru_stime, 2),
        "children": round(children.ru_utime + children.ru_stime, 2),
    }


async def _record_failure(
    settings: RunSettings, conn: asyncpg.Connection, run_id: int, exc: BaseException
) -> None:
    """``interrupted`` (by a signal) or ``failed``, recorded on a connection that works:
    the failure may have broken the sync's own. The transaction was not committed, so
    the target is as it was."""
    stopped_by = signals.received()
    error = first_error(exc) if isinstance(exc, BaseExceptionGroup) else exc
    await faults.record_ended(settings.target, conn, run_id, error, stopped_by)


# --- the plan must still fit ----------------------------------------------------------

COLUMNS_SQL = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum"""


async def require_same_schema(conn: asyncpg.Connection, plan: Plan) -> None:
    """Stop (exit 6) when the source's plan no longer matches the target's tables."""
    found: dict[str, list[tuple[str, Any]]] = {}
    for table, column, type_ in await conn.fetch(COLUMNS_SQL, plan.schema):
        found.setdefault(table, []).append((column, parse_type(type_)))
    loaded = await history.latest_loads(conn, plan.schema)
    problems = schema_differences(plan, found, set(loaded))
    if problems:
        raise VerificationError(
            "cannot sync: the source's tables and the target's no longer match "
            f"({'; '.join(problems[:3])}"
            + (f"; {len(problems) - 3} more" if len(problems) > 3 else "")
            + ")",
            hint="migrate again in full: asyncmig run --replace",
        )


def schema_differences(
    plan: Plan, found: dict[str, list[tuple[str, Any]]], loaded: set[str]
) -> list[str]:
    """Each way the plan and the target's columns differ, as a phrase."""
    problems = []
    for table in plan.tables:
        want = [(c.name, parse_type(c.target_type)) for c in table.columns]
        have = found.get(table.name)
        if have is None and table.name in loaded:  # the target lost it, not the source
            problems.append(
                f"table {table.name}, which the last run loaded, is missing in PostgreSQL"
            )
        elif have is None:
            problems.append(f"table {table.name} is new in the source")
        elif have != want:
            problems.append(
                f"table {table.name} has columns {_columns(have)} in PostgreSQL, "
                f"the source now needs {_columns(want)}"
            )
    problems.extend(
        f"table {name} is gone from the source"
        for name in sorted(loaded - {t.name for t in plan.tables})
    )
    return problems


def _columns(columns: Sequence[tuple[str, Any]]) -> str:
    return (
        "("
        + ", ".join(
            f"{name} {kind[0]}" + (f"({','.join(map(str, kind[1]))})" if kind[1] else "")
            for name, kind in columns
        )
        + ")"
    )


# --- one transaction ---------------------------------------------------------------


async def sync_tables(
    conn: asyncpg.Connection,
    plan: Plan,
    source: Path,
    run_id: int,
    jobs: int = 2,
    workers: str = "auto",
    *,
    target: Target,
    marked: Marked,
    source_state: tuple[tuple[int, int], ...] | None = None,
) -> list[TableSync]:
    """Compare and apply every table in one transaction (see the module docstring).
    ``marked``: the source's marks and the newest load's they may be compared with;
    ``target``: where a second connection reads what the next table needs;
    ``source_state``: the source's fingerprint when the sync began (a source written
    since then rolls the transaction back)."""
    loads = await history.latest_loads(conn, plan.schema)
    files = {t: load.reject_file for t, load in loads.items() if load.reject_file}
    skipped = await anyio.to_thread.run_sync(rejected_keys, files, plan)
    sqlite = await anyio.to_thread.run_sync(open_sync, source)
    sqlite.text_factory = lenient_text  # invalid UTF-8 is settled by its policy
    try:
        async with conn.transaction():
            names = ", ".join(qualified(plan.schema, t.name) for t in plan.tables)
            await conn.execute(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE")
            acted_on = await on_delete_actions(conn, plan)
            cascading = await cascade_counts(conn, plan, acted_on)
            rewriting = await Rewriting.before(conn, acted_on)
            work = Work(conn, plan, source, sqlite, skipped, jobs, workers, run_id, marked.feed)
            if marked.comparable:
                assert marked.since is not None
                trust = await sync_marks.Trust.of(conn, marked.since)
                await work.by_marks(marked.since, trust, target)
            else:
                await work.in_full()
            results = await work.deletions()
            await check_cascades(conn, plan, cascading, results)
            await rewriting.check(conn, plan, results)
            out = []
            for table in plan.tables:
                done = results[table.name]
                total = work.seconds.get(table.name, 0.0) + done.seconds
                out.append(replace(done, seconds=total, marked=table.name in work.marked))
                await _record(
                    conn, run_id, table, work.change(table.name), done, loads.get(table.name), total
                )
            await _remember(conn, plan, run_id)
            if source_state is not None and fingerprint(source) != source_state:
                raise SourceError(
                    f"{source} changed while it was being synced",
                    hint="the sync was rolled back; run it again",
                )
            # in the changes' own transaction: killed (kill -9) the moment they commit,
            # the history still says the sync succeeded (it said "interrupted"); the
            # digest and the timing follow once recorded
            await history.finish_run(
                conn,
                run_id,
                status="succeeded",
                rows=sum(t.inserted + t.updated + t.deleted for t in out),
            )
        signals.note_committed("the sync's changes were committed")
        return out
    finally:
        sqlite.close()


# the plan's tables whose rows a foreign key's ON DELETE action changes when a parent
# row goes, and the actions: CASCADE deletes them ('c'), SET NULL ('n') and SET DEFAULT
# ('d') rewrite them
ON_DELETE_SQL = """
SELECT DISTINCT c.relname, k.confdeltype::text FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
WHERE k.contype = 'f' AND k.confdeltype IN ('c', 'n', 'd')
  AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
  AND c.relname = ANY($2::text[])
ORDER BY 1, 2
"""
CASCADE = "c"
REWRITES = {"n": "SET NULL", "d": "SET DEFAULT"}


async def on_delete_actions(conn: asyncpg.Connection, plan: Plan) -> dict[str, set[str]]:
    """Each of the plan's tables that an ON DELETE action changes: its actions."""
    found: dict[str, set[str]] = {}
    for name, action in await conn.fetch(ON_DELETE_SQL, plan.schema, [t.name for t in plan.tables]):
        found.setdefault(name, set()).add(action)
    return found


async def cascade_counts(
    conn: asyncpg.Connection, plan: Plan, acted_on: Mapping[str, set[str]]
) -> dict[str, int]:
    """Each cascading child's row count before the sync changes anything."""
    return {
        name: int(await conn.fetchval(f"SELECT count(*) FROM {qualified(plan.schema, name)}"))
        for name, actions in acted_on.items()
        if CASCADE in actions
    }


async def check_cascades(
    conn: asyncpg.Connection,
    plan: Plan,
    before: Mapping[str, int],
    done: Mapping[str, TableSync],
) -> None:
    """Refuse (the transaction rolls back) when PostgreSQL's ON DELETE CASCADE removed
    rows the sync did not: the source deleted parents whose children it keeps (SQLite
    does not enforce foreign keys unless asked), and the target would lose rows SQLite
    still holds, silently (a later `check` found them missing)."""
    for name, count in before.items():
        table = done.get(name)
        expected = count + (table.inserted - table.deleted if table else 0)
        now = int(await conn.fetchval(f"SELECT count(*) FROM {qualified(plan.schema, name)}"))
        if now < expected:
            raise VerificationError(
                f"cannot sync: deleting parent rows made PostgreSQL's ON DELETE CASCADE "
                f"remove {expected - now} row(s) of {name} that SQLite keeps (its foreign "
                "keys are not enforced there, so they are orphans); nothing was changed",
                hint="delete those rows in SQLite too, or keep their parents; or migrate "
                "again in full: asyncmig run --replace",
            )


# a row this transaction (or one of its savepoints) wrote: its xmin is not older than
# the transaction's own id ($1, a txid_current() value; see tablestate.WRITTEN_AFTER)
WRITTEN_HERE = "age(xmin) <= age(($1::bigint % 4294967296)::text::xid)"


@dataclass(frozen=True)
class Rewriting:
    """The sync's children that PostgreSQL's ON DELETE SET NULL/SET DEFAULT may rewrite
    when the sync deletes their parents, and the sync transaction's id.

    The sync holds its tables locked from its first statement, so every row of them
    whose ``xmin`` is not older than its transaction was written by it: by its own
    inserts and updates, or by such an action. More written rows than it inserted and
    updated means PostgreSQL changed children SQLite keeps as they are (its foreign
    keys not enforced, they are orphans there)."""

    xid: int = 0
    tables: Mapping[str, str] = field(default_factory=dict)  # table -> its actions

    @classmethod
    async def before(cls, conn: asyncpg.Connection, acted_on: Mapping[str, set[str]]) -> Rewriting:
        tables = {  # table -> e.g. "SET DEFAULT/SET NULL"
            name: "/".join(sorted(REWRITES[a] for a in actions if a in REWRITES))
            for name, actions in acted_on.items()
            if actions & REWRITES.keys()
        }
        if not tables:
            return cls()
        return cls(int(await conn.fetchval("SELECT txid_current()")), tables)

    async def check(
        self, conn: asyncpg.Connection, plan: Plan, done: Mapping[str, TableSync]
    ) -> None:
        """Refuse (the transaction rolls back) when an action rewrote rows."""
        for name, actions in self.tables.items():
            table = done.get(name)
            wrote = table.inserted + table.updated if table else 0
            written = int(
                await conn.fetchval(
                    f"SELECT count(*) FROM {qualified(plan.schema, name)} WHERE {WRITTEN_HERE}",
                    self.xid,
                )
            )
            if written > wrote:
                raise VerificationError(
                    f"cannot sync: deleting parent rows made PostgreSQL's ON DELETE {actions} "
                    f"change {written - wrote} row(s) of {name} that SQLite keeps as they are "
                    "(its foreign keys are not enforced there, so they are orphans); nothing "
                    "was changed",
                    hint="delete or change those rows in SQLite too, or keep their parents; "
                    "or migrate again in full: asyncmig run --replace",
                )


@dataclass
class Work:
    """One sync's tables: compared (by marks or row by row), applied parents first,
    then deletions children first."""

    conn: asyncpg.Connection
    plan: Plan
    source: Path
    sqlite: sqlite3.Connection
    skipped: dict[str, set[object]]
    jobs: int
    workers: str
    run_id: int
    feed: marks.Feed
    changes: dict[str, Changes] = field(default_factory=dict)
    fast: dict[str, RangeSync] = field(default_factory=dict)
    done: dict[str, TableSync] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    marked: set[str] = field(default_factory=set)  # tables whose marks were stored
    marks_out: MemoryObjectSendStream[marks.Kept] = field(init=False)

    async def in_full(self) -> None:
        """Every table row by row (pass 1 of all tables at once), then applied."""
        changes, self.seconds = await compare_all(
            self.conn, self.plan, self.source, self.sqlite, self.skipped, self.jobs, self.workers
        )
        self.changes.update(changes)
        for number, table in enumerate(self.plan.tables):
            await self._apply_rows(table, number)
            await self._keep(table)

    async def by_marks(self, since: int, trust: sync_marks.Trust | None, target: Target) -> None:
        """Parents first, each table as soon as its marks are computed: by its marks
        when the newest load (``since``) marked it alike and left it as it is, else
        row by row. The next table is made ready meanwhile (:class:`sync_marks.Ready`),
        and the marks are stored beside (:meth:`_store_marks`)."""
        send, receive = anyio.create_memory_object_stream[sync_marks.Ready](2)  # two ahead
        self.marks_out, marks_in = anyio.create_memory_object_stream[marks.Kept](1)
        async with _connections(target, 2) as (reader, writer):
            sqlite = await anyio.to_thread.run_sync(open_sync, self.source)  # SQLite's
            try:  # own UTF-8 decoder, until a value is not UTF-8 (sync_marks.candidates)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._prepare, since, trust, reader, sqlite, send)
                    tg.start_soon(self._store_marks, writer, marks_in)
                    async with receive, self.marks_out:
                        async for ready in receive:
                            await self._apply(ready)
            finally:
                sqlite.close()
        marked = sum(1 for t in self.plan.tables if t.name in self.fast)
        log.info("compared_by_marks", tables=marked, of_tables=len(self.plan.tables))

    async def _store_marks(
        self,
        writer: asyncpg.Connection,
        tables: MemoryObjectReceiveStream[marks.Kept],
    ) -> None:
        """Each table's marks now, for the next sync, on a connection of their own, in
        one transaction committed before the sync's own: writing them (megabytes a
        table, TOASTed and WAL-logged) no longer holds up applying the next table.
        Should the sync then fail, they are of a run that did not succeed, which no
        sync reads; the failure's record (or the next load) deletes them."""
        async with tables, writer.transaction():
            async for kept in tables:
                await marks.store(writer, self.run_id, kept.marks, kept.pages, kept.base)

    async def _prepare(
        self,
        since: int,
        trust: sync_marks.Trust | None,
        reader: asyncpg.Connection,
        sqlite: sqlite3.Connection,
        send: MemoryObjectSendStream[sync_marks.Ready],
    ) -> None:
        async with send:
            async for number, table in sync_marks.in_marks_order(self.plan, self.feed):
                found = await self.feed.get(table.name)
                rows = await trust.rows(reader, self.plan, table.name) if trust else None
                stored = (
                    await marks.recorded(reader, since, table.name)
                    if found is not None and (rows is not None or found.spans is not None)
                    else None
                )
                was = stored.marks if stored is not None else None
                now = marks.whole(found, was) if found is not None else None
                kept = marks.Kept(now, found.pages) if now is not None and found else None
                ready = sync_marks.Ready(table, number, found, kept)
                if rows is not None and stored and now is not None and stored.marks.fits(now):
                    assert found is not None
                    ready.item = RangeSync.between(table, stored.marks, now, rows, found)
                    await sync_marks.find_gone(reader, self.plan, ready.item)
                    ready.kept = stored.kept(now, ready.item.differing, since, found.pages)
                del stored, was, now, kept, found  # a few bytes a row: only what is needed
                if ready.item is None or not table.primary_key:
                    await send.send(ready)
                    continue
                feed, ready.rows = anyio.create_memory_object_stream[list[Row]](
                    sync_marks.READY_BATCHES
                )
                await send.send(ready)  # applied while its rows are read
                await self._candidates(sqlite, ready.item, feed)

    async def _candidates(
        self,
        sqlite: sqlite3.Connection,
        item: RangeSync,
        feed: MemoryObjectSendStream[list[Row]],
    ) -> None:
        """The candidate rows of ``item``, read and converted as the load converts, a
        batch at a time (in a worker thread), into ``feed``."""
        table = item.table
        check = TableCheck(self.plan, table, set(self.skipped.get(table.name, ())))
        batches = sync_marks.candidates(sqlite, check, item)
        async with feed:
            while True:
                began = time.perf_counter()
                batch = await anyio.to_thread.run_sync(_next_converted, batches, item, sqlite)
                sync_marks.timed(item, began)
                if batch is None:
                    break
                await feed.send(batch)
        log.info("candidates_read", table=table.name, seconds=round(item.seconds, 3))

    async def _apply(self, ready: sync_marks.Ready) -> None:
        table, number = ready.table, ready.number
        if ready.kept is not None:  # for the next sync
            await self.marks_out.send(ready.kept)
            self.marked.add(table.name)
        ready.kept = None
        item = ready.item
        if item is not None:
            self.fast[table.name] = item
            await _upsert_ranges(
                self.conn, self.plan, item, self.sqlite, self.skipped, number, ready.rows
            )
            if table.name not in self.referenced:  # no child waits on its deletions
                self.done[table.name] = await _delete_ranges(
                    self.conn, self.plan, item, self.sqlite, self.skipped
                )
            return
        alone = replace(self.plan, tables=(table,))
        changes, seconds = await compare_all(
            self.conn, alone, self.source, self.sqlite, self.skipped, self.jobs, self.workers
        )
        self.changes.update(changes)
        self.seconds.update(seconds)
        await self._apply_rows(table, number)

    @property
    def referenced(self) -> set[str]:
        """Tables a foreign key references: their deletions wait for their children's
        (children first); any other table's are applied right after its upsert."""
        return {fk.ref_table for t in self.plan.tables for fk in t.foreign_keys}

    async def _keep(self, table: TablePlan) -> None:
        """The table's marks now, for the next sync."""
        found = await self.feed.get(table.name)
        if found is not None and found.spans is None:
            await marks.store(self.conn, self.run_id, found.marks, found.pages)
            self.marked.add(table.name)

    async def _apply_rows(self, table: TablePlan, number: int) -> None:
        began = time.perf_counter()
        change = self.changes[table.name]
        if change.reload:
            inserted, deleted = await reload(
                self.conn,
                self.plan,
                table,
                change,
                self.sqlite,
                set(self.skipped.get(table.name, ())),
            )
            updated = 0
        else:
            inserted, updated = await upsert(self.conn, self.plan, table, change)
            deleted = 0
        if inserted:
            for statement in ddl.sequence_reset_sql(self.plan, table, table.next_identity):
                await self.conn.execute(statement)
        self.done[table.name] = TableSync(
            table.name,
            inserted,
            updated,
            deleted,
            change.ranges,
            change.differing,
            change.reload,
            time.perf_counter() - began,
        )

    async def deletions(self) -> dict[str, TableSync]:
        """Children first."""
        for table in reversed(self.plan.tables):
            if table.name in self.fast and table.name in self.done:
                continue  # deleted right after its upsert (by_marks)
            if table.name in self.fast:
                self.done[table.name] = await _delete_ranges(
                    self.conn, self.plan, self.fast[table.name], self.sqlite, self.skipped
                )
                continue
            change = self.changes[table.name]
            if change.deletes:
                began = time.perf_counter()
                deleted = await delete(self.conn, self.plan, table, change)
                old = self.done[table.name]
                self.done[table.name] = replace(
                    old, deleted=deleted, seconds=old.seconds + time.perf_counter() - began
                )
        return self.done

    def change(self, name: str) -> Changes:
        """What the history records of a table (a marked one: its counts)."""
        found = self.changes.get(name)
        if found is not None:
            return found
        item = self.fast[name]
        return Changes(
            source_rows=item.expected, target_rows=item.target_rows, replaced=item.replaced
        )


@asynccontextmanager
async def _connections(target: Target, count: int) -> AsyncIterator[list[asyncpg.Connection]]:
    """``count`` more connections to the target, each closed afterwards (shielded,
    time-boxed), also when opening a later one failed."""
    opened: list[asyncpg.Connection] = []
    try:
        for _ in range(count):
            opened.append(await connect(target, NO_JIT))  # noqa: PERF401 -- each kept as opened
        yield opened
    finally:
        for conn in opened:
            await hang_up(conn)


async def _remember(conn: asyncpg.Connection, plan: Plan, run_id: int) -> None:
    """What the next sync compares with: this sync's marks (stored table by table),
    and the transaction the tables were left by (rows written by a later one were
    written by someone else)."""
    await marks.forget_older(conn, plan.schema, run_id)
    await conn.execute(
        f"UPDATE {history.RUNS} SET finish_xid = txid_current() WHERE id = $1", run_id
    )


async def compare_all(
    conn: asyncpg.Connection,
    plan: Plan,
    source: Path,
    sqlite: sqlite3.Connection,
    skipped: dict[str, set[object]],
    jobs: int,
    workers: str,
) -> tuple[dict[str, Changes], dict[str, float]]:
    """Pass 1 for every table at once (SQLite in ``jobs`` worker processes, PostgreSQL on
    the transaction's connection meanwhile), then pass 2 table by table."""
    diffs = {
        t.name: await _table_diff(plan, t, sqlite, set(skipped.get(t.name, ())))
        for t in plan.tables
    }
    source_side: dict[str, dict[str, Digest]] = {}
    target_side: dict[str, dict[str, Digest]] = {}
    seconds: dict[str, float] = {}
    in_processes = workers == "process" or (
        workers == "auto" and jobs > 1 and sum(t.row_count for t in plan.tables) >= PROCESS_ROWS
    )
    # threads share the one SQLite connection (and the GIL): one at a time
    limiter = anyio.CapacityLimiter(max(1, jobs) if in_processes else 1)

    async def read_source(name: str) -> None:
        diff = diffs[name]
        if in_processes:
            source_side[name] = await anyio.to_process.run_sync(
                source_digests_of,
                source,
                plan,
                name,
                diff.check.skip,
                diff.ranges,
                cancellable=True,  # a SIGTERM kills the worker: it only reads the source
                limiter=limiter,
            )
        else:
            source_side[name] = await anyio.to_thread.run_sync(diff.source_digests, limiter=limiter)

    try:
        async with anyio.create_task_group() as tg:
            for table in sorted(plan.tables, key=lambda t: -t.row_count):  # largest first
                tg.start_soon(read_source, table.name)
            for table in plan.tables:
                began = time.perf_counter()
                target_side[table.name] = await diffs[table.name].pg_digests(conn)
                seconds[table.name] = time.perf_counter() - began
    finally:
        if in_processes:
            await retire_workers()
    changes = {}
    for table in plan.tables:
        began = time.perf_counter()
        diff, ours, theirs = diffs[table.name], source_side[table.name], target_side[table.name]
        found, differing = diff.summary(ours, theirs)
        if differing and not found.reload:
            await _stage(conn, diff, found, diff.groups(conn, ours, theirs, differing))
        seconds[table.name] += time.perf_counter() - began
        log.info(
            "table_compared",
            table=table.name,
            ranges=found.ranges,
            differing=found.differing,
            inserts=found.inserts,
            updates=found.updates,
            deletes=found.deletes,
            reload=found.reload,
        )
        changes[table.name] = found
    return changes, seconds


_TEMPS = itertools.count()


async def _stage(
    conn: asyncpg.Connection, diff: TableDiff, changes: Changes, groups: AsyncIterator[Group]
) -> None:
    """Pass 2's findings, a group at a time, into two temporary tables (dropped at
    commit): the rows to insert or update, converted, and the ctids of the rows to
    delete; only the counts stay in ``changes``."""
    table = diff.check.table
    number = next(_TEMPS)
    changes.rows_table, changes.gone_table = f"asyncmig_rows_{number}", f"asyncmig_gone_{number}"
    target = qualified(diff.check.plan.schema, table.name)
    await conn.execute(
        f"CREATE TEMP TABLE {quote_ident(changes.rows_table)} (LIKE {target}) ON COMMIT DROP"
    )
    await conn.execute(
        f"CREATE TEMP TABLE {quote_ident(changes.gone_table)} (t tid) ON COMMIT DROP"
    )
    async for group in groups:
        rows = group.updates + group.inserts
        if rows:
            await copy_rows(conn, table, changes.rows_table, None, rows, changes.replaced)
        if group.deletes:
            records = [(ctid,) for ctid in group.deletes]
            await conn.copy_records_to_table(changes.gone_table, records=records)
        changes.inserts += len(group.inserts)
        changes.updates += len(group.updates)
        changes.deletes += len(group.deletes)


async def _table_diff(
    plan: Plan, table: TablePlan, sqlite: sqlite3.Connection, skip: set[object]
) -> TableDiff:
    check = TableCheck(plan, table, skip)
    unsupported = check.unsupported()
    if unsupported:
        columns = ", ".join(f"{c.name} ({c.target_type})" for c in unsupported)
        raise VerificationError(
            f"cannot sync {table.name}: cannot compare column {columns}",
            hint="migrate it again in full with run --replace",
        )
    ranges = await anyio.to_thread.run_sync(choose_ranges, sqlite, check)
    return TableDiff(check, sqlite, ranges)


def _next_converted(
    batches: Iterator[list[Row]], item: RangeSync, sqlite: sqlite3.Connection
) -> list[Row] | None:
    """The next batch of candidates, converted (None: no more). Invalid UTF-8 is looked
    for only once the connection has met some (:func:`sync_marks.candidates`)."""
    batch = next(batches, None)
    if batch is None:
        return None
    lenient = sqlite.text_factory is lenient_text
    return convert(item.table, batch, item.replaced, lenient=lenient)


async def _upsert_ranges(
    conn: asyncpg.Connection,
    plan: Plan,
    item: RangeSync,
    sqlite: sqlite3.Connection,
    skipped: dict[str, set[object]],
    number: int,
    batches: MemoryObjectReceiveStream[list[Row]] | None,
) -> None:
    """``batches``: the candidate rows, converted (:meth:`Work._candidates`); none for
    a table without a key (reloaded whole when it differs)."""
    began = time.perf_counter()
    table = item.table
    skip = set(skipped.get(table.name, ()))
    if not table.primary_key:  # no identity to match rows by: reloaded when it differs
        if item.differing:
            change = Changes(reload=True, replaced=item.replaced)
            item.inserted, item.deleted = await reload(conn, plan, table, change, sqlite, skip)
        sync_marks.timed(item, began)
        return
    assert batches is not None
    await sync_marks.upsert(conn, plan, item, batches, _copier(conn, converted=True), number)
    if item.inserted:
        for statement in ddl.sequence_reset_sql(plan, table, table.next_identity):
            await conn.execute(statement)
    sync_marks.timed(item, began)


async def _delete_ranges(
    conn: asyncpg.Connection,
    plan: Plan,
    item: RangeSync,
    sqlite: sqlite3.Connection,
    skipped: dict[str, set[object]],
) -> TableSync:
    began = time.perf_counter()
    table = item.table
    skip = set(skipped.get(table.name, ()))
    check = TableCheck(plan, table, skip)
    if table.primary_key:
        rejected = await anyio.to_thread.run_sync(sync_marks.skipped_present, sqlite, check)
        item.expected = item.rows - rejected
        await sync_marks.delete(conn, plan, item, sqlite, _copier(conn), item.expected)
    else:
        item.expected = item.rows  # a keyless table: the rows the source has
    sync_marks.timed(item, began)
    log.info("deleted", table=table.name, seconds=round(time.perf_counter() - began, 3))
    return TableSync(
        table.name,
        item.inserted,
        item.updated,
        item.deleted,
        item.ranges,
        len(item.differing),
        not table.primary_key and bool(item.differing),
        item.seconds,
        "marks",
    )


def _copier(conn: asyncpg.Connection, *, converted: bool = False) -> sync_marks.Copy:
    async def copy(table: TablePlan, name: str, rows: list[Row], replaced: dict[str, int]) -> None:
        if converted:
            await copy_records(conn, table, name, None, rows)
        else:
            await copy_rows(conn, table, name, None, rows, replaced)

    return copy


# --- applying ----------------------------------------------------------------------


# transforms left out because the profile proved every value at planning time: a row a
# sync copies was not profiled, so its values are checked by the full transform
CHECKED = {
    "uuid": "uuid_text_checked",
    "uuid_checked": "uuid_text_checked",
    "inet": "inet_checked",
    "json_text": "json",
    "timestamptz": "timestamptz_checked",
}


def strict(table: TablePlan) -> TablePlan:
    """The table with ``reject`` policies made ``fail`` (a sync has no reject store), and
    every value checked, not only those the run's profile proved (CHECKED)."""
    return replace(
        table,
        columns=tuple(
            replace(
                c,
                on_error="fail" if c.on_error == "reject" else c.on_error,
                transform=CHECKED.get(c.transform, c.transform),
            )
            for c in table.columns
        ),
    )


def convert(
    table: TablePlan, rows: list[Row], replaced: dict[str, int], *, lenient: bool = True
) -> list[Row]:
    """The rows as the load would have sent them (transforms and policies); values a
    policy replaced are counted into ``replaced``, as the load counts them. ``lenient``:
    the rows may hold invalid UTF-8 (read with ``lenient_text``)."""
    guard = TableGuard(strict(table), None, None)
    if lenient:
        rows = guard.resolve_invalid_text(rows)
    transform = build_batch_transform(guard.table, guard)
    if transform is not None:
        rows = transform((rows, rows))[0]
    for label, count in guard.accounts.replaced.items():
        replaced[label] = replaced.get(label, 0) + count
    return rows


async def copy_rows(
    conn: asyncpg.Connection,
    table: TablePlan,
    name: str,
    schema: str | None,
    rows: list[Row],
    replaced: dict[str, int],
) -> None:
    await copy_records(conn, table, name, schema, convert(table, rows, replaced))


async def copy_records(
    conn: asyncpg.Connection, table: TablePlan, name: str, schema: str | None, records: list[Row]
) -> None:
    """Rows already converted (:func:`convert`), copied; a refusal as one line."""
    columns = [c.name for c in table.columns]
    try:  # timestamptz encoded exactly, as the load does (year 1 is not -infinity)
        async with codecs.encoded_values(conn, exact_codecs(table)):
            await conn.copy_records_to_table(
                name, schema_name=schema, columns=columns, records=records
            )
    except asyncpg.PostgresError as exc:
        raise copy_refusal(table.name, exc) from exc


def copy_refusal(table: str, exc: asyncpg.PostgresError) -> TargetError:
    """The one line for a COPY of changed rows PostgreSQL refused. The server's trouble
    (a full disk, a lost session) is not the row's: its own words and hint (a full
    migration, the remedy for a row that no longer fits, would need far more space)."""
    if faults.is_connection_fault(exc) or isinstance(exc, RESOURCE_ERRORS):
        return refused(f"COPY of {table}'s changed rows", exc)
    message = getattr(exc, "message", None) or (str(exc).splitlines() or [""])[0]
    return TargetError(
        f"cannot sync {table}: PostgreSQL refused a changed row: {type(exc).__name__}: {message}",
        hint="migrate again in full: asyncmig run --replace",
    )


# the server out of a resource: no row is at fault
RESOURCE_ERRORS = (
    asyncpg.InsufficientResourcesError,
    asyncpg.ProgramLimitExceededError,
    asyncpg.OperatorInterventionError,
)


async def upsert(
    conn: asyncpg.Connection, plan: Plan, table: TablePlan, change: Changes
) -> tuple[int, int]:
    """Changed and new rows from pass 2's temporary table: one UPDATE, one INSERT."""
    if not (change.updates or change.inserts):
        return 0, 0
    target = qualified(plan.schema, table.name)
    temp = quote_ident(change.rows_table)
    keys = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in table.primary_key)
    values = [c.name for c in table.columns if c.name not in table.primary_key]
    updated = 0
    if change.updates and values:
        sets = ", ".join(f"{quote_ident(c)} = s.{quote_ident(c)}" for c in values)
        status = await conn.execute(
            f"UPDATE {target} AS t SET {sets} FROM {temp} AS s WHERE {keys}"
        )
        updated = int(status.split()[-1])
    columns = ", ".join(quote_ident(c.name) for c in table.columns)
    status = await conn.execute(
        f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {temp} AS s "
        f"WHERE NOT EXISTS (SELECT FROM {target} AS t WHERE {keys})"
    )
    inserted = int(status.split()[-1])
    _expect(table, "updated", change.updates if values else 0, updated)
    _expect(table, "inserted", change.inserts, inserted)
    return inserted, updated


async def delete(conn: asyncpg.Connection, plan: Plan, table: TablePlan, change: Changes) -> int:
    """The rows pass 2 found only in the target, by their ctids (a TID scan)."""
    status = await conn.execute(
        f"DELETE FROM {qualified(plan.schema, table.name)} "
        f"WHERE ctid = ANY(ARRAY(SELECT t FROM {quote_ident(change.gone_table)}))"
    )
    deleted = int(status.split()[-1])
    _expect(table, "deleted", change.deletes, deleted)
    return deleted


async def reload(
    conn: asyncpg.Connection,
    plan: Plan,
    table: TablePlan,
    change: Changes,
    sqlite: sqlite3.Connection,
    skip: set[object],
) -> tuple[int, int]:
    """A table without a key: emptied and copied again (rows, rows deleted)."""
    status = await conn.execute(f"DELETE FROM {qualified(plan.schema, table.name)}")
    check = TableCheck(plan, table, skip)
    cursor = await anyio.to_thread.run_sync(sqlite.execute, check.source_sql())
    copied = 0
    while batch := await anyio.to_thread.run_sync(cursor.fetchmany, FETCH_ROWS):
        rows = [row for row in batch if tuple(row) not in skip]
        await copy_rows(conn, table, table.name, plan.schema, rows, change.replaced)
        copied += len(rows)
    return copied, int(status.split()[-1])


def _expect(table: TablePlan, what: str, expected: int, got: int) -> None:
    """PostgreSQL must touch exactly the rows the comparison found (else: roll back)."""
    if expected != got:
        raise VerificationError(
            f"cannot sync {table.name}: {expected} row(s) should be {what}, PostgreSQL "
            f"{what} {got}; nothing was changed",
            hint="a key PostgreSQL compares differently from SQLite (a collation?); "
            "migrate again in full with run --replace",
        )


async def _record(
    conn: asyncpg.Connection,
    run_id: int,
    table: TablePlan,
    change: Changes,
    done: TableSync,
    load: history.LoadAccount | None,
    seconds: float,
) -> None:
    """The table's row in the history: rows now, the changes, earlier rejects carried."""
    replaced = dict(load.replaced) if load else {}
    for label, count in change.replaced.items():
        replaced[label] = replaced.get(label, 0) + count
    accounts = Accounts(
        rejected=load.rejected if load else 0,
        replaced=replaced,
        reject_file=load.reject_file if load else None,
    )
    rows = change.target_rows + done.inserted - done.deleted
    await history.record_table(
        conn, run_id, table.name, change.source_rows + accounts.rejected, rows, accounts, seconds
    )
    await conn.execute(
        f"UPDATE {history.RUN_TABLES} SET changes = $3::jsonb, final_rows = $4 "
        "WHERE run_id = $1 AND table_name = $2",
        run_id,
        table.name,
        json.dumps(
            {
                "inserted": done.inserted,
                "updated": done.updated,
                "deleted": done.deleted,
                "ranges": done.ranges,
                "differing_ranges": done.differing,
                "reloaded": done.reloaded,
                "compared": done.compared,
            }
        ),
        rows,
    )


# --- the report --------------------------------------------------------------------


def report_text(report: SyncReport, target: str) -> str:
    width = max([len(t.table) for t in report.tables] + [5])
    header = (
        f"{'table':<{width}}  {'inserted':>9}  {'updated':>9}  {'deleted':>9}  "
        f"{'ranges':>9}  {'differing':>9}  {'seconds':>8}"
    )
    lines = [header]
    lines += [
        f"{t.table:<{width}}  {t.inserted:>9}  {t.updated:>9}  {t.deleted:>9}  "
        f"{t.ranges:>9}  {t.differing:>9}  {t.seconds:>8.2f}"
        + ("  (no key: reloaded)" if t.reloaded else "")
        for t in report.tables
    ]
    lines += _marks_lines(report.tables)
    lines.append(
        f"synced {target}, schema {report.schema} (PostgreSQL "
        f"{report.server_version}) with the source in {report.seconds:.2f}s: "
        f"{report.changed} row(s) changed since run {report.since_run}; "
        f"run {report.run_id} in the history"
    )
    return "\n".join(lines) + "\n"


def _marks_lines(tables: list[TableSync]) -> list[str]:
    """How the tables were compared, and which the next sync compares row by row."""
    lines = []
    compared = sum(t.compared == "marks" for t in tables)
    unmarked = [t.table for t in tables if not t.marked]
    if compared < len(tables):
        lines.append(
            f"{compared} of {len(tables)} table(s) compared by source marks, the rest row "
            "by row on both sides (not marked by the last load, or written since)"
            + ("" if unmarked else "; this sync recorded marks for the next one")
        )
    if unmarked:
        lines.append(
            f"no source marks recorded for {', '.join(unmarked)}: the next sync compares "
            "them row by row (a WITHOUT ROWID table without an integer key never has "
            "marks; the log's not_marked and marks_failed lines say why others have none)"
        )
    return lines


def report_data(report: SyncReport, target: str) -> dict[str, Any]:
    """The fields of sync's ``--output json`` document (see asyncmig.cli.output)."""
    return {
        "target": target,
        "schema": report.schema,
        "since_run": report.since_run,
        "seconds": report.seconds,
        "changed": report.changed,
        "tables": [t.__dict__ for t in report.tables],
    }
