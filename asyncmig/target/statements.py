"""Statements against the target: one at a time, refusals as one line; the server check and
the bare tables (phase 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import asyncpg
import structlog

from asyncmig import cutover, ddl
from asyncmig.check import preflight
from asyncmig.cli import signals
from asyncmig.errors import (
    TargetError,
)
from asyncmig.plan.model import Plan
from asyncmig.quoting import qualified
from asyncmig.target import dependents, faults, rollback

log = structlog.get_logger(__name__)


MIN_SERVER_VERSION = preflight.MIN_SERVER_VERSION


async def check_server(conn: asyncpg.Connection) -> str:
    version = str(await conn.fetchval("SHOW server_version"))
    number = int(await conn.fetchval("SHOW server_version_num"))
    if number < MIN_SERVER_VERSION * 10000:
        raise TargetError(
            f"cannot migrate into PostgreSQL {version}: "
            f"version {MIN_SERVER_VERSION} or newer needed"
        )
    return version


existing_tables = cutover.existing_tables


async def create_tables(
    conn: asyncpg.Connection, plan: Plan, *, replace: bool, cascade: bool = False
) -> list[str]:
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
            "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", plan.schema
        )
        # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
        # exists: a user with rights on the schema alone must not be refused
        await execute_all(
            conn,
            [
                s
                for s in ddl.create_schema_sql(plan)
                if not (schema_exists and s.startswith("CREATE SCHEMA"))
            ],
        )
        await execute_all(conn, [ddl.create_table_sql(plan, t) for t in plan.tables])
        await execute_all(conn, ddl.function_sql(plan))
    for dependent in found:
        log.warning("dependent_dropped", object=str(dependent))
    return [
        f"dropped with --cascade: {d} (it depended on a replaced table; not recreated)"
        for d in found
    ]


async def refuse_early(
    conn: asyncpg.Connection, plan: Plan, *, create: bool, replace: bool, cascade: bool
) -> None:
    """What would stop the run later, refused before any table is counted or scanned.

    ``plan`` may be the outline (names only, :func:`asyncmig.plan.builder.outline_plan`).
    ``run`` and ``schema``: CREATE in the target schema (or on the database, to create
    it), and no existing table unless ``replace`` (nor an application's object that
    depends on one unless ``cascade``). ``data``: every table there, with its columns,
    and empty unless ``replace``. Nothing is changed.
    """
    if create:
        await preflight.require_create_privilege(conn, plan)
        await cutover.replaceable(conn, plan, replace=replace, cascade=cascade)
    else:
        await loaded_tables(conn, plan, allow=replace)


async def require_empty_tables(
    conn: asyncpg.Connection, plan: Plan, *, truncate: bool, cascade: bool = False
) -> list[str]:
    """`data` loads into the tables `schema` made: all there, with the plan's columns,
    empty (``truncate``: emptied). Returns what ``cascade`` dropped, as warnings."""
    loaded = await loaded_tables(conn, plan, allow=truncate)
    if not loaded:
        return []
    # emptying drops the keys and indexes the load made, CASCADE: the application's
    # foreign keys onto them and its views over the tables went with them, silently
    found = await dependents.find(
        conn, plan.schema, [*(t.name for t in plan.tables), *(v.name for v in plan.views)]
    )
    if found and not cascade:
        raise dependents.refuse(found)
    # shielded: a signal landing between the server's commit and the client learning of
    # it would say "left as it was" over tables just emptied; it waits for the note
    with anyio.CancelScope(shield=True):
        async with conn.transaction():  # emptied together, with what post-data added
            await execute_all(conn, [d.drop_sql() for d in found] + rollback.undo_data_sql(plan))
        signals.note_committed(  # the rows they held are gone: a signal must say so
            f"the tables of schema {plan.schema} were emptied (--replace)",
            "they are empty now: re-run the same command to load them",
        )
    for dependent in found:
        log.warning("dependent_dropped", object=str(dependent))
    return [f"dropped with --cascade: {d} (it depended on a replaced table)" for d in found]


async def loaded_tables(conn: asyncpg.Connection, plan: Plan, *, allow: bool) -> list[str]:
    """The plan's tables that hold rows; refuses a missing table or column, and a
    loaded table unless ``allow``."""
    existing = set(await existing_tables(conn, plan))
    missing = [t.name for t in plan.tables if t.name not in existing]
    if missing:
        raise TargetError(
            f"cannot load data: {qualified(plan.schema, missing[0])} does not exist"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            hint="create the schema first with `asyncmig schema` (same --sqlite, --schema, "
            "--config)",
        )
    loaded = []
    for table in plan.tables:
        columns = {
            r[0]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name = $2",
                plan.schema,
                table.name,
            )
        }
        absent = [c.name for c in table.columns if c.name not in columns]
        if absent:
            raise TargetError(
                f"cannot load data: {qualified(plan.schema, table.name)} has no "
                f"column {absent[0]!r}",
                hint="recreate the schema with `asyncmig schema --replace`",
            )
        target = qualified(plan.schema, table.name)
        if await conn.fetchval(f"SELECT EXISTS (SELECT FROM {target})"):
            if not allow:
                raise TargetError(
                    f"cannot load data: {target} is not empty",
                    hint="pass --replace to empty it first",
                )
            loaded.append(table.name)
    return loaded


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


# errors that say "it is there already": a resumed run skips the statement
ALREADY_THERE = (
    asyncpg.DuplicateTableError,  # an index, a view
    asyncpg.DuplicateObjectError,  # a constraint, a foreign key, statistics, a trigger
    asyncpg.ObjectNotInPrerequisiteStateError,  # the index already backs the constraint
)


async def execute_unless_there(conn: asyncpg.Connection, statement: str, *, resumed: bool) -> bool:
    """:func:`execute_one`; in a resumed run, a statement whose object the interrupted
    run already made is skipped (returns False). Not inside a transaction: a refused
    statement leaves nothing to undo."""
    if not resumed:
        await execute_one(conn, statement)
        return True
    try:
        await execute_one(conn, statement)
    except ALREADY_THERE as exc:
        log.info("already_built", statement=first_line(statement), reason=str(exc))
        return False
    return True


def refused(statement: str, exc: asyncpg.PostgresError) -> TargetError:
    """A statement PostgreSQL refused, as one line naming the statement and the reason."""
    if faults.is_connection_fault(exc):
        return faults.lost_connection(exc)
    message = getattr(exc, "message", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return TargetError(
        f"PostgreSQL refused: {first_line(statement)}: {message}",
        detail=getattr(exc, "detail", None),
        hint=getattr(exc, "hint", None),  # e.g. "Check free disk space." when it is full
    )


def first_line(sql: str) -> str:
    line = sql.strip().splitlines()[0] if sql.strip() else sql
    return line if len(line) <= 120 else line[:117] + "..."
