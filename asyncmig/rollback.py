"""Undo a run safely: the rollback script written after each run, and what a failed run undoes.

The script removes exactly the objects the plan created (profile extras, then the
tables, children first) in one transaction, and marks the run as rolled back in the
history instead of deleting the history (the reference migrator's rollback dropped
its own history table). It refuses to run against a different schema's tables
because every name in it is qualified with the run's schema.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import asyncpg

from asyncmig import ddl, files, history
from asyncmig.errors import TargetError, UsageError
from asyncmig.plan import Plan
from asyncmig.quoting import qualified, quote_ident, sql_comment


def script_sql(plan: Plan, run_id: int) -> str:
    lines = [
        sql_comment(f"asyncmig rollback for run {run_id}: {plan.source_path} -> "
                    f"schema {plan.schema}"),
        sql_comment(f"generated {datetime.now(UTC).isoformat(timespec='seconds')}; review, "
                    "then run with"),
        sql_comment('  psql -v ON_ERROR_STOP=1 -f THIS_FILE "$DATABASE_URL"'),
        "BEGIN;",
    ]
    lines += [f"{s};" for s in ddl.drop_extras_sql(plan)]
    lines += [f"{s};" for s in ddl.drop_tables_sql(plan, plan.tables)]
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
        statements += [f"ALTER TABLE {target} DROP CONSTRAINT IF EXISTS {quote_ident(fk.name)}"
                       for fk in table.foreign_keys]
    for table in reversed(plan.tables):
        target = qualified(plan.schema, table.name)
        names = [c.name for c in table.checks]
        names += [i.name for i in table.indexes if i.constraint]
        if table.primary_key_name:
            names.append(table.primary_key_name)
        statements += [f"ALTER TABLE {target} DROP CONSTRAINT IF EXISTS {quote_ident(n)} CASCADE"
                       for n in names]
        indexes = [i.name for i in table.indexes]
        if table.primary_key_name:
            indexes.append(table.primary_key_name)
        statements += [f"DROP INDEX IF EXISTS {qualified(plan.schema, n)} CASCADE"
                       for n in indexes]
        statements += [f"DROP STATISTICS IF EXISTS {qualified(plan.schema, s.name)}"
                       for s in table.statistics]
    if plan.tables:
        statements.append("TRUNCATE " + ", ".join(qualified(plan.schema, t.name)
                                                  for t in plan.tables))
    return statements


async def rollback_run(conn: asyncpg.Connection, run_id: int) -> str:
    """Run a run's rollback script, after checking it is safe; returns the script's path.

    Refused: an unknown run, one that did not succeed or is already rolled back, one
    whose script is gone, and one followed by a later successful run into the same
    schema (its tables may now hold that run's data).
    """
    runs = {r.id: r for r in await history.read_runs(conn, limit=1000)}
    run = runs.get(run_id)
    if run is None:
        raise UsageError(f"no run {run_id} in the history of this database")
    if run.status != "succeeded":
        raise UsageError(f"run {run_id} is {run.status}: only a succeeded run is rolled back")
    later = [r.id for r in runs.values() if r.id > run_id and r.status == "succeeded"
             and r.target_schema == run.target_schema]
    if later:
        raise UsageError(f"run {later[0]} came after run {run_id} into schema "
                         f"{run.target_schema}: roll that one back first")
    script = run.rollback_sql or await _script_file(run)
    try:
        await conn.execute(script)  # BEGIN ... COMMIT: all of it or nothing
    except asyncpg.PostgresError as exc:
        raise TargetError(f"the rollback of run {run_id} failed and changed nothing: {exc}") \
            from exc
    return run.rollback_script or "the rollback kept in the history"


async def _script_file(run: history.RunRecord) -> str:
    """The script file of a run recorded before the history kept the SQL itself."""
    try:
        if not run.rollback_script:
            raise FileNotFoundError("none was written")
        return await anyio.to_thread.run_sync(Path(run.rollback_script).read_text)
    except OSError as exc:
        raise UsageError(f"the rollback script of run {run.id} cannot be read "
                         f"({run.rollback_script or exc})") from None
