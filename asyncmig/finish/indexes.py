"""Phase 3, per table: indexes built in parallel, keys attached, CHECKs validated;
duplicates SQLite allowed, by policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import anyio
import anyio.to_process
import asyncpg

from asyncmig import ddl
from asyncmig.errors import (
    TargetError,
)
from asyncmig.finish import orphans
from asyncmig.plan import collations
from asyncmig.plan.model import Plan, TablePlan
from asyncmig.quoting import qualified, quote_ident
from asyncmig.runstate import RunSettings
from asyncmig.target import history
from asyncmig.target.statements import execute_all, execute_one, execute_unless_there, refused


@dataclass(frozen=True)
class IndexResult:
    """What the index phase did to one table: the table as built (indexes the data
    broke demoted to non-unique), the rows it rejected as duplicates (by reason), and
    its warnings. The load's own accounts know nothing of these rejects: the caller
    adds them."""

    table: TablePlan
    rejects: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


async def build_indexes(
    settings: RunSettings,
    pool: asyncpg.Pool,
    plan: Plan,
    table: TablePlan,
    slots: anyio.CapacityLimiter,
    run_id: int | None,
    *,
    resumed: bool = False,
) -> IndexResult:
    """All of the table's indexes in parallel.

    A unique index (or primary key) the data breaks (SQLite let case-variants under
    NOCASE, or '1' next to 1, coexist) is reported with the duplicate keys; with
    ``--duplicates nonunique`` it is built without UNIQUE and the table's plan says so;
    with ``--duplicates reject`` the later rows of each key are rejected. ``resumed``:
    an index the interrupted run built is kept as it is.
    """
    names = [table.primary_key_name] if table.primary_key and table.primary_key_name else []
    names += [i.name for i in table.indexes]
    demoted: list[str] = []
    rejected: dict[str, int] = {}
    warnings: list[str] = []

    async def one(name: str, statement: str) -> None:
        async with slots, pool.acquire() as conn:
            await conn.execute("SET maintenance_work_mem = '256MB'")
            try:
                if not await execute_unless_there(conn, statement, resumed=resumed):
                    if await demoted_before(conn, plan, name, statement):
                        demoted.append(name)
                    return
            except asyncpg.UniqueViolationError:
                keys = await duplicate_keys(conn, plan, table, name)
                if settings.duplicates == "reject":
                    moved = await reject_duplicates(settings, conn, plan, table, name, run_id)
                    await execute_all(conn, [statement])
                    rejected[f"duplicate key for {name}"] = moved
                    warnings.append(
                        f"{table.name}: {moved} duplicate row(s) rejected for {name}: {keys}"
                    )
                    return
                if settings.duplicates != "nonunique":
                    raise TargetError(
                        f"cannot create unique index {name} on {table.name}: duplicate keys {keys}",
                        hint="clean the source, or pass --duplicates nonunique "
                        "to build it without UNIQUE",
                    ) from None
                await execute_all(
                    conn, [statement.replace("CREATE UNIQUE INDEX", "CREATE INDEX", 1)]
                )
                demoted.append(name)
                warnings.append(
                    f"{table.name}: index {name} built without UNIQUE: duplicate keys {keys}"
                )
            except asyncpg.PostgresError as exc:
                raise refused(statement, exc) from exc
            # no RESET here: the pool resets the session (RESET ALL) as it takes the
            # connection back, and a RESET on a terminated session hid its error

    async with anyio.create_task_group() as tg:
        for name, statement in zip(names, ddl.index_sql(plan, table), strict=True):
            tg.start_soon(one, name, statement)
    return IndexResult(demote(table, demoted), rejected, tuple(warnings))


def demote(table: TablePlan, demoted: list[str]) -> TablePlan:
    """The table as built when the indexes named in ``demoted`` lost UNIQUE."""
    if not demoted:
        return table
    return replace(
        table,
        primary_key=() if table.primary_key_name in demoted else table.primary_key,
        indexes=tuple(
            replace(i, unique=False, constraint=False) if i.name in demoted else i
            for i in table.indexes
        ),
    )


async def demoted_before(conn: asyncpg.Connection, plan: Plan, name: str, statement: str) -> bool:
    """Did the interrupted run build this unique index without UNIQUE
    (``--duplicates nonunique``)?"""
    unique = await conn.fetchval(
        "SELECT indisunique FROM pg_index WHERE indexrelid = to_regclass($1)",
        qualified(plan.schema, name),
    )
    return statement.startswith("CREATE UNIQUE") and unique is False


def _index_keys(plan: Plan, table: TablePlan, index_name: str) -> tuple[list[str], str]:
    index = next((i for i in table.indexes if i.name == index_name), None)
    exprs = (
        [
            f"({k.expression}) COLLATE {collations.collation_sql(plan.schema, k.collation)}"
            if k.collation
            else k.expression
            for k in index.keys
        ]
        if index is not None
        else [quote_ident(c) for c in table.primary_key]
    )  # compared as the index does
    where = f" WHERE {index.where}" if index is not None and index.where else ""
    return exprs, where


async def reject_duplicates(
    settings: RunSettings,
    conn: asyncpg.Connection,
    plan: Plan,
    table: TablePlan,
    index_name: str,
    run_id: int | None,
) -> int:
    """Keep the first row of each duplicate key (in load order); the others are rejected."""
    exprs, where = _index_keys(plan, table, index_name)
    target = qualified(plan.schema, table.name)
    columns = ", ".join(quote_ident(c.name) for c in table.columns)
    reason = f"duplicate key for unique index {index_name}"
    async with conn.transaction():
        deleted = await conn.fetch(
            f"DELETE FROM {target} WHERE ctid IN (SELECT ctid FROM (SELECT ctid, row_number() "
            f"OVER (PARTITION BY {', '.join(exprs)} ORDER BY ctid) AS n FROM {target}{where}) "
            f"AS d WHERE d.n > 1) RETURNING {columns}"
        )
        path = await orphans.reject_rows(
            settings.source,
            table,
            [tuple(r) for r in deleted],
            settings.pipeline.reject_dir,
            reason,
            "unique index",
        )
        if run_id is not None:
            await history.move_to_rejected(conn, run_id, table.name, len(deleted), reason, path)
    return len(deleted)


async def duplicate_keys(
    conn: asyncpg.Connection, plan: Plan, table: TablePlan, index_name: str
) -> str:
    """The first duplicate keys of a unique index, with how often each occurs."""
    exprs, where = _index_keys(plan, table, index_name)
    rows = await conn.fetch(
        f"SELECT {', '.join(exprs)}, count(*) FROM {qualified(plan.schema, table.name)}{where} "
        f"GROUP BY {', '.join(exprs)} HAVING count(*) > 1 ORDER BY count(*) DESC LIMIT 5"
    )
    return "; ".join(f"{tuple(r)[:-1]} x{r[-1]}" for r in rows)


async def add_constraints(
    conn: asyncpg.Connection, plan: Plan, table: TablePlan, *, resumed: bool = False
) -> list[str]:
    """Attach PK/UNIQUE; add CHECKs NOT VALID then validate. One the data breaks stays
    NOT VALID, as a foreign key the kept orphans break does: PostgreSQL checks every new
    row against it, the application's later migrations find it by its name, and the
    old rows are as SQLite held them (which does not check a CHECK added later either).

    ``resumed``: a constraint the interrupted run added stays (and is validated again).
    """
    warnings = []
    for statement in ddl.constraint_sql(plan, table):
        if "VALIDATE CONSTRAINT" not in statement:
            try:
                await execute_unless_there(conn, statement, resumed=resumed)
            except asyncpg.PostgresError as exc:
                raise refused(statement, exc) from exc
            continue
        try:
            await execute_one(conn, statement)
        except asyncpg.CheckViolationError as exc:
            name = statement.rsplit("VALIDATE CONSTRAINT", 1)[1].strip().rstrip(";")
            warnings.append(
                f"{table.name}: CHECK {name} left NOT VALID because existing rows break it "
                f"({exc}); new rows are checked"
            )
    return warnings
