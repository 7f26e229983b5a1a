"""Rows whose foreign key points at nothing: SQLite keeps them unless asked not to.

After the data is in (so that rows of parents the load rejected count too), before the
foreign keys are added, each foreign key's orphans are handled by the table's policy:

* ``keep`` (the default): loaded as they are; the key is added NOT VALID, with a
  warning, exactly as SQLite held the data;
* ``null``: the referencing columns are set to NULL (where they allow it), each row
  logged with its key;
* ``reject``: the rows leave the table for the reject store, with their original
  SQLite values, and the table's accounts move from loaded to rejected.

Tables are visited parents first, so the children of a rejected row are examined after it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import structlog

from asyncmig.load.policy import TableGuard, key_positions
from asyncmig.plan.model import ForeignKeyPlan, Plan, TablePlan
from asyncmig.quoting import qualified, quote_ident, quote_sqlite_ident
from asyncmig.source.sqlite import open_sync, source_error
from asyncmig.target import history

log = structlog.get_logger(__name__)


def referenced_columns(plan: Plan, fk: ForeignKeyPlan) -> tuple[str, ...]:
    """The parent columns: as declared, else the parent's primary key (SQLite's rule)."""
    if fk.ref_columns:
        return fk.ref_columns
    try:
        return plan.table(fk.ref_table).primary_key
    except KeyError:
        return ()


def orphan_condition(
    plan: Plan, table: TablePlan, fk: ForeignKeyPlan, ref_columns: Sequence[str]
) -> str:
    """Rows of ``table`` whose key is entirely non-NULL (MATCH SIMPLE) and has no parent.

    Written against the child's qualified name, so it serves a SELECT, an UPDATE and a
    DELETE alike (the parent is aliased, which also covers a self-reference).
    """
    target = qualified(plan.schema, table.name)
    not_null = " AND ".join(f"{target}.{quote_ident(c)} IS NOT NULL" for c in fk.columns)
    joined = " AND ".join(
        f"p.{quote_ident(r)} = {target}.{quote_ident(c)}"
        for c, r in zip(fk.columns, ref_columns, strict=True)
    )
    return (
        f"{not_null} AND NOT EXISTS (SELECT 1 FROM {qualified(plan.schema, fk.ref_table)} "
        f"AS p WHERE {joined})"
    )


async def settle_orphans(
    conn: asyncpg.Connection,
    plan: Plan,
    policies: dict[str, str],
    source: Path,
    reject_dir: Path | None,
    run_id: int | None,
    warnings: list[str],
) -> dict[str, int]:
    """Apply each table's orphan policy; returns rows rejected per table."""
    rejected: dict[str, int] = {}
    for table in plan.tables:
        policy = policies.get(table.name, "keep")
        if policy == "keep":
            continue
        for fk in table.foreign_keys:
            if fk.ref_table not in {t.name for t in plan.tables}:
                continue
            if policy == "null":
                await _set_null(conn, plan, table, fk, warnings)
            elif not table.primary_key:
                warnings.append(f"{table.name}: orphans kept (no primary key to reject by)")
            else:
                count = await _reject(conn, plan, table, fk, source, reject_dir, run_id)
                if count:
                    rejected[table.name] = rejected.get(table.name, 0) + count
                    warnings.append(
                        f"{table.name}: {count} row(s) rejected as orphans of "
                        f"{fk.ref_table} ({', '.join(fk.columns)})"
                    )
    return rejected


async def _set_null(
    conn: asyncpg.Connection, plan: Plan, table: TablePlan, fk: ForeignKeyPlan, warnings: list[str]
) -> None:
    target = qualified(plan.schema, table.name)
    assignments = ", ".join(f"{quote_ident(c)} = NULL" for c in fk.columns)
    keys = ", ".join(quote_ident(c) for c in table.primary_key) or "ctid"
    condition = orphan_condition(plan, table, fk, referenced_columns(plan, fk))
    rows = await conn.fetch(f"UPDATE {target} SET {assignments} WHERE {condition} RETURNING {keys}")
    for row in rows[:100]:
        log.warning(
            "orphan_set_null",
            table=table.name,
            columns=fk.columns,
            key=tuple(row) if len(row) > 1 else row[0],
            parent=fk.ref_table,
        )
    if rows:
        warnings.append(
            f"{table.name}: {len(rows)} orphan reference(s) to {fk.ref_table} "
            f"set to NULL ({', '.join(fk.columns)})"
        )


async def _reject(
    conn: asyncpg.Connection,
    plan: Plan,
    table: TablePlan,
    fk: ForeignKeyPlan,
    source: Path,
    reject_dir: Path | None,
    run_id: int | None,
) -> int:
    target = qualified(plan.schema, table.name)
    columns = ", ".join(quote_ident(c.name) for c in table.columns)
    condition = orphan_condition(plan, table, fk, referenced_columns(plan, fk))
    async with conn.transaction():  # the delete and the history's accounts together
        deleted = await conn.fetch(f"DELETE FROM {target} WHERE {condition} RETURNING {columns}")
        if not deleted:
            return 0
        reason = f"orphan: no row in {fk.ref_table} for ({', '.join(fk.columns)})"
        path = await reject_rows(
            source,
            table,
            [tuple(r) for r in deleted],
            reject_dir,
            reason,
            "foreign key",
            ", ".join(fk.columns),
        )
        if run_id is not None:
            await history.move_to_rejected(conn, run_id, table.name, len(deleted), reason, path)
    return len(deleted)


async def reject_rows(
    source: Path,
    table: TablePlan,
    loaded: list[tuple[Any, ...]],
    reject_dir: Path | None,
    reason: str,
    stage: str,
    column: str | None = None,
) -> str | None:
    """Rows taken out of a loaded table, to the reject store with their SQLite values;
    returns the reject file."""
    originals = await anyio.to_thread.run_sync(_source_rows, source, table, loaded)
    guard = TableGuard(table, reject_dir, None, append=True)
    try:
        for row in originals:
            guard.reject(row, column, reason, stage)
    finally:
        guard.close()
    return guard.accounts.reject_file


def _source_rows(
    source: Path, table: TablePlan, loaded: Sequence[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """The rejected rows as SQLite has them, looked up by primary key.

    A key whose loaded form differs from its SQLite form (a uuid from 32 hex digits)
    cannot be looked up: that row is recorded as loaded, which the record says.
    """
    names = ", ".join(quote_sqlite_ident(c.source_name) for c in table.columns)
    positions = key_positions(table)
    match = " AND ".join(
        f"{quote_sqlite_ident(table.columns[i].source_name)} IS ?" for i in positions
    )
    sql = f"SELECT {names} FROM {quote_sqlite_ident(table.source_name)} WHERE {match}"
    conn = open_sync(source)
    try:
        rows = []
        for row in loaded:
            key = tuple(
                row[i] if isinstance(row[i], (int, str, float, bytes)) else str(row[i])
                for i in positions
            )
            found = conn.execute(sql, key).fetchone()
            rows.append(tuple(found) if found is not None else row)
        return rows
    except sqlite3.DatabaseError as exc:
        raise source_error(source, exc) from exc
    finally:
        conn.close()
