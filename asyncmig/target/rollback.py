"""Undo a run safely: the rollback script written after each run, and what a failed run undoes.

The script removes exactly the objects the plan created (profile extras, then the
tables, children first) in one transaction, then, for a ``run --replace`` that kept the
tables it replaced in a backup schema, moves them back and drops that schema (see
:mod:`asyncmig.cutover`), and marks the run as rolled back in the
history instead of deleting the history (the reference migrator's rollback dropped
its own history table). It refuses to run against a different schema's tables
because every name in it is qualified with the run's schema.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import anyio
import asyncpg

from asyncmig import cutover, ddl
from asyncmig.errors import RollbackRefused, TargetError, UsageError
from asyncmig.plan.model import Plan
from asyncmig.quoting import name_text, qualified, quote_ident, sql_comment
from asyncmig.target import backup, files, history, runlock, safety
from asyncmig.target.backup import BackupFile
from asyncmig.target.connect import Target, connect, hang_up, scrub
from asyncmig.target.safety import GuideMapping, SafetyReport

T = TypeVar("T")


SWAP_BACK = "-- swap back: the tables this run replaced, kept in its backup schema"
SWAP_BACK_END = "-- end of swap back"


def script_sql(plan: Plan, run_id: int, restore: Sequence[str] = ()) -> str:
    """The run's rollback; ``restore``: the statements swapping its backup schema back
    (see :func:`asyncmig.cutover.restore_sql`), after the run's own objects are gone."""
    lines = [
        sql_comment(
            f"asyncmig rollback for run {run_id}: {plan.source_path} -> schema {plan.schema}"
        ),
        sql_comment(
            f"generated {datetime.now(UTC).isoformat(timespec='seconds')}; review, then run with"
        ),
        sql_comment('  psql -v ON_ERROR_STOP=1 -f THIS_FILE "$DATABASE_URL"'),
        "BEGIN;",
    ]
    lines += [f"{s};" for s in ddl.drop_extras_sql(plan)]
    lines += [f"{s};" for s in ddl.drop_tables_sql(plan, plan.tables)]
    if restore:
        lines += [SWAP_BACK, *(f"{s};" for s in restore)]
        lines.append(
            f"UPDATE {history.RUNS} SET backup_schema_end = 'restored by rollback' "
            f"WHERE id = {int(run_id)};"
        )
        lines.append(SWAP_BACK_END)
    lines.append(f"DELETE FROM {history.RUN_TABLES} WHERE run_id = {int(run_id)};")
    lines.append(f"UPDATE {history.RUNS} SET status = 'rolled back' WHERE id = {int(run_id)};")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def write_script(sql: str, tag: str, directory: Path) -> Path:
    """A private copy of the rollback for people to review; never replaces another file.

    ``tag`` is unique to the target and the run, so runs into different databases from
    one directory each keep their own script.
    """
    return files.write_new(directory.absolute(), f"asyncmig_rollback_{tag}", ".sql", sql)


def undo_data_sql(plan: Plan) -> list[str]:
    """Empty the plan's tables and remove what the post-data phases added to them.

    Used when a `data` run fails: the tables `schema` created stay, as they were.
    """
    statements = []
    for table in reversed(plan.tables):
        target = qualified(plan.schema, table.name)
        statements += [
            f"ALTER TABLE {target} DROP CONSTRAINT IF EXISTS {quote_ident(fk.name)}"
            for fk in table.foreign_keys
        ]
    for table in reversed(plan.tables):
        target = qualified(plan.schema, table.name)
        names = [c.name for c in table.checks]
        names += [i.name for i in table.indexes if i.constraint]
        if table.primary_key_name:
            names.append(table.primary_key_name)
        statements += [
            f"ALTER TABLE {target} DROP CONSTRAINT IF EXISTS {quote_ident(n)} CASCADE"
            for n in names
        ]
        indexes = [i.name for i in table.indexes]
        if table.primary_key_name:
            indexes.append(table.primary_key_name)
        statements += [f"DROP INDEX IF EXISTS {qualified(plan.schema, n)} CASCADE" for n in indexes]
        statements += [
            f"DROP STATISTICS IF EXISTS {qualified(plan.schema, s.name)}" for s in table.statistics
        ]
    if plan.tables:
        statements.append(
            "TRUNCATE " + ", ".join(qualified(plan.schema, t.name) for t in plan.tables)
        )
    return statements


@dataclass(frozen=True)
class RollbackResult(GuideMapping):
    """What a rollback did: ``success``, the safety report it acted on, the backup."""

    run_id: int
    success: bool
    safety: SafetyReport
    backup: BackupFile | None = None
    script: str = ""  # where the SQL came from
    forced: bool = False
    restored_from: str | None = None  # the backup schema swapped back
    backup_schema_gone: str | None = None  # the backup schema cleanup removed before
    not_restorable: tuple[str, ...] = ()  # what the run's --cascade dropped

    @property
    def safe_to_rollback(self) -> bool:
        return self.safety.safe_to_rollback

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.safety.warnings


async def check_run(conn: asyncpg.Connection, run_id: int) -> SafetyReport:
    """The safety report for rolling back ``run_id``; changes nothing."""
    run, runs = await _rollback_candidate(conn, run_id)
    return await safety.validate(conn, run, runs)


async def _rollback_candidate(
    conn: asyncpg.Connection, run_id: int
) -> tuple[history.RunRecord, list[history.RunRecord]]:
    """The run, if it is one a rollback applies to: known, succeeded, not rolled back."""
    run, runs = await safety.runs_and_run(conn, run_id)
    if run is None:
        raise UsageError(f"no run {run_id} in the history of this database")
    if run.status != "succeeded":
        raise UsageError(f"run {run_id} is {run.status}: only a succeeded run is rolled back")
    if run.command == "sync":  # its changes are the source's: no rollback was kept
        raise UsageError(
            f"run {run_id} is a sync: a sync is not rolled back (what it changed is what "
            "the source changed)",
            hint="roll back the run it synced into (then its syncs go with it), or change "
            "the source and sync again",
        )
    return run, runs


async def rollback_run(
    conn: asyncpg.Connection,
    run_id: int,
    *,
    backup_dir: Path | None,
    force: bool = False,
    script: str | None = None,
) -> RollbackResult:
    """Validate, back up, then run the run's rollback, all in one transaction.

    Refused (:class:`RollbackRefused`) when the validation warns, unless ``force``. The
    tables are locked against writers (readers go on) before the backup is read, so the
    backup holds exactly the rows the rollback removes. ``backup_dir`` None: no backup.
    """
    run, runs = await _rollback_candidate(conn, run_id)
    await runlock.acquire(conn, run.target_schema)  # no run into the schema meanwhile
    report = await safety.validate(conn, run, runs)
    later = [
        r.id
        for r in runs
        if r.id in report.later_runs
        and r.status == "succeeded"
        and (r.rollback_sql or r.rollback_script)
    ]
    if later:  # its tables are that run's now: never, even forced (a sync has no rollback:
        # what it wrote is in the warnings, and in the backup)
        raise UsageError(
            f"run {later[0]} came after run {run_id} into schema "
            f"{run.target_schema}: roll that one back first"
        )
    if not report.safe_to_rollback and not force:
        raise RollbackRefused(run_id, report.warnings, report)
    sql = script or run.rollback_sql or await _script_file(run)
    swapped = run.backup_schema if SWAP_BACK in sql.splitlines() else None
    if swapped and not await cutover.schema_exists(conn, swapped):
        sql = without_swap_back(sql)  # removed by cleanup: only the drop remains
    names = [t.table for t in report.tables if t.rows_now is not None]
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '10s'")
            if names:
                await conn.execute(
                    "LOCK TABLE "
                    + ", ".join(qualified(run.target_schema, n) for n in names)
                    + " IN SHARE MODE"
                )
            saved = None
            if backup_dir is not None:
                saved = await backup.write_backup(
                    conn,
                    run.target_schema,
                    names,
                    backup_dir,
                    f"asyncmig backup before rolling back run {run_id} "
                    f"(schema {run.target_schema})",
                )
                await history.record_backup(conn, run_id, saved.path, saved.sha256)
            await conn.execute(transaction_body(sql))
    except asyncpg.LockNotAvailableError:
        raise TargetError(
            f"cannot roll back run {run_id}: another session kept its tables locked for 10 s",
            hint="see `rollback --check` for the sessions",
        ) from None
    except asyncpg.PostgresError as exc:
        raise TargetError(
            f"the rollback of run {run_id} failed and changed nothing: {exc}"
        ) from exc
    where = "the rollback kept in the history" if not script else "the given script"
    restored = swapped if SWAP_BACK in sql.splitlines() else None
    return RollbackResult(
        run_id,
        True,
        report,
        saved,
        run.rollback_script or where,
        force and not report.safe_to_rollback,
        restored_from=restored,
        backup_schema_gone=swapped if swapped and not restored else None,
        not_restorable=tuple(run.cascade_dropped or ()),
    )


def without_swap_back(script: str) -> str:
    """The script without its swap-back part (the backup schema is gone)."""
    kept, skipping = [], False
    for line in script.splitlines():
        if line == SWAP_BACK:
            skipping = True
        elif line == SWAP_BACK_END:
            skipping = False
        elif not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n"


def transaction_body(script: str) -> str:
    """The script without its own BEGIN/COMMIT lines, to run inside the caller's transaction."""
    return "\n".join(
        line for line in script.splitlines() if line.strip().upper() not in ("BEGIN;", "COMMIT;")
    )


async def _script_file(run: history.RunRecord) -> str:
    """The script file of a run recorded before the history kept the SQL itself."""
    try:
        if not run.rollback_script:
            raise FileNotFoundError("none was written")
        return await anyio.to_thread.run_sync(Path(run.rollback_script).read_text)
    except OSError as exc:
        raise UsageError(
            f"the rollback script of run {run.id} cannot be read ({run.rollback_script or exc})"
        ) from None


async def backup_run(conn: asyncpg.Connection, run_id: int, directory: Path) -> BackupFile:
    """The backup a rollback of ``run_id`` would write, from one consistent snapshot."""
    run, _ = await _rollback_candidate(conn, run_id)
    names = [t["table_name"] for t in run.tables]
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        present = [
            n
            for n in names
            if await conn.fetchval(
                "SELECT to_regclass($1) IS NOT NULL", name_text(run.target_schema, n)
            )
        ]
        saved = await backup.write_backup(
            conn,
            run.target_schema,
            present,
            directory,
            f"asyncmig backup of run {run_id}'s tables (schema {run.target_schema})",
        )
    await history.record_backup(conn, run_id, saved.path, saved.sha256)
    return saved


class RollbackManager:
    """The reference guide's rollback calls, synchronous, over the async core.

    ``RollbackManager(dsn)`` works on the latest succeeded run in the database's
    history that has a rollback (not a sync; ``run=N`` for another); backups go to ``backup_dir`` (the current
    directory by default). Each call opens its own connection and closes it.
    """

    def __init__(self, dsn: str, *, run: int | None = None, backup_dir: str | Path = ".") -> None:
        self.target = Target(dsn, scrub(dsn), "RollbackManager")
        self.run = run
        self.backup_dir = Path(backup_dir)

    def validate_rollback_safety(self) -> SafetyReport:
        """What rolling back would lose or break; ``["safe_to_rollback"]``, ``["warnings"]``."""

        async def call(conn: asyncpg.Connection) -> SafetyReport:
            return await check_run(conn, await self._run_id(conn))

        return self._call(call)

    def create_backup_before_rollback(self) -> BackupFile:
        """Write the backup of the run's tables; prints as its path."""

        async def call(conn: asyncpg.Connection) -> BackupFile:
            return await backup_run(conn, await self._run_id(conn), self.backup_dir)

        return self._call(call)

    def perform_safe_rollback(
        self, script: str | Path | None = None, *, force: bool = False, backup: bool = True
    ) -> RollbackResult:
        """Validate, back up, roll back; ``["success"]`` is False when it was unsafe.

        ``script`` is a run's rollback script (any copy of it): it names the run it undoes.
        """
        if not backup and not force:
            raise UsageError("a rollback without a backup needs force=True")

        async def call(conn: asyncpg.Connection) -> RollbackResult:
            run_id = await (
                self._script_run(conn, Path(script)) if script is not None else self._run_id(conn)
            )
            try:
                return await rollback_run(
                    conn, run_id, force=force, backup_dir=self.backup_dir if backup else None
                )
            except RollbackRefused as refused:
                return RollbackResult(run_id, False, refused.report)

        return self._call(call)

    def _call(self, action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async def main() -> T:
            conn = await connect(self.target)
            try:
                return await action(conn)
            finally:
                await hang_up(conn)

        return anyio.run(main, backend="asyncio")

    async def _run_id(self, conn: asyncpg.Connection) -> int:
        if self.run is not None:
            return self.run
        runs = await history.read_runs(conn, limit=1000)
        # a sync, or a re-run that finished a killed run's job, keeps no rollback of its own
        done = [r.id for r in runs if r.status == "succeeded" and r.rollback_sql]
        if not done:
            raise UsageError("no succeeded run to roll back in this database's history")
        return max(done)

    async def _script_run(self, conn: asyncpg.Connection, script: Path) -> int:
        """The run whose rollback ``script`` is (compared with the SQL the history keeps)."""
        try:
            text = await anyio.to_thread.run_sync(script.read_text)
        except OSError as exc:
            raise UsageError(f"cannot read the rollback script {script}: {exc.strerror}") from None
        runs = await history.read_runs(conn, limit=1000)
        matching = [r.id for r in runs if (r.rollback_sql or "").strip() == text.strip()]
        if not matching or (self.run is not None and self.run not in matching):
            raise UsageError(
                f"{script} is not the rollback script of "
                f"{'run ' + str(self.run) if self.run else 'any run'} "
                "in this database's history",
                hint="use the asyncmig_rollback_run<N>-<id>.sql a run wrote (or a copy of it)",
            )
        return matching[0]
