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

from asyncmig import ddl, history
from asyncmig.plan import Plan
from asyncmig.quoting import qualified, quote_ident


def script_sql(plan: Plan, run_id: int) -> str:
    lines = [
        f"-- asyncmig rollback for run {run_id}: {plan.source_path} -> schema {plan.schema}",
        f"-- generated {datetime.now(UTC).isoformat(timespec='seconds')}; review, then run with",
        "--   psql -v ON_ERROR_STOP=1 -f THIS_FILE \"$DATABASE_URL\"",
        "BEGIN;",
    ]
    lines += [f"{s};" for s in ddl.drop_extras_sql(plan)]
    lines += [f"{s};" for s in ddl.drop_tables_sql(plan, plan.tables)]
    lines.append(f"DELETE FROM {history.RUN_TABLES} WHERE run_id = {int(run_id)};")
    lines.append(f"UPDATE {history.RUNS} SET status = 'rolled back' WHERE id = {int(run_id)};")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def write_script(plan: Plan, run_id: int, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"asyncmig_rollback_run{run_id}.sql"
    path.write_text(script_sql(plan, run_id), encoding="utf-8")
    return path


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
