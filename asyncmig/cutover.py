"""`run` builds in a staging schema and swaps it into the target in one transaction.

Readers of the target see the old tables (or none) until the swap commits, then the
complete new ones, never a half-made table or schema. The stage is a schema of the
run's own (``asyncmig_stage_<target's key>_<run id>``): everything the run makes
(tables, data, indexes, keys, CHECKs, statistics, triggers and functions, its
collation, foreign keys, views) is made there, checked there, then moved with
``ALTER ... SET SCHEMA`` (indexes, constraints, triggers and owned identity
sequences move with their table; views and foreign keys refer to tables by
identity, not by name, so they follow). The stage is then dropped without CASCADE:
PostgreSQL refuses if anything was left in it, and the whole swap rolls back.

With ``--replace``, what the stage replaces (the old tables with their indexes,
constraints, owned sequences and triggers, the plan's old views, statistics, functions
and collation) moves in the same transaction to a backup schema of the run
(``asyncmig_backup_<target's key>_<run id>``) instead of being dropped: readers see the
old or the new, `rollback` swaps the backup back in one transaction, and `asyncmig
cleanup` removes it (``--no-backup-schema``: dropped, as before, to save the space).

A failure or a signal before the swap drops the stage; after ``kill -9`` the next
run into the same target (which holds the target's advisory lock, so no live run
owns a stage of that target) drops the stages interrupted runs left.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence

import asyncpg
import structlog

from asyncmig import ddl
from asyncmig.errors import TargetError
from asyncmig.plan.homes import made_relations
from asyncmig.plan.model import Plan
from asyncmig.quoting import qualified, quote_ident, quote_literal
from asyncmig.target import dependents, history, runlock

log = structlog.get_logger(__name__)

STAGE_PREFIX = "asyncmig_stage_"
BACKUP_PREFIX = dependents.BACKUP_PREFIX


def stage_prefix(target: str) -> str:
    """The stages of one target share this prefix (the target's advisory-lock key)."""
    return f"{STAGE_PREFIX}{runlock.schema_key(target):08x}_"


def stage_name(target: str, run_id: int) -> str:
    """The run's staging schema: deterministic, at most 63 bytes whatever the target."""
    return f"{stage_prefix(target)}{run_id}"


async def may_stage(conn: asyncpg.Connection) -> bool:
    """Can this user create the stage? Without CREATE on the database, the run builds
    in the target schema itself, as ``schema`` and ``data`` do (logged)."""
    if await conn.fetchval("SELECT has_database_privilege(current_database(), 'CREATE')"):
        return True
    log.warning(
        "no_stage",
        reason="no CREATE on the database: building in the target "
        "schema itself; readers may see the old tables dropped before the new ones",
    )
    return False


async def existing_tables(conn: asyncpg.Connection, plan: Plan) -> list[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = $1 AND table_name = ANY($2::text[]) ORDER BY 1",
        plan.schema,
        [t.name for t in plan.tables],
    )
    return [r[0] for r in rows]


def made_relation_names(plan: Plan) -> list[str]:
    """The names of the relations a run makes beside its tables and views: the tables'
    indexes (keys' too) and identity sequences. They share the schema's namespace."""
    return [name for table in plan.tables for name in made_relations(table)]


# a relation named like one the run makes, that is not that table's index or sequence
IN_THE_WAY_SQL = """
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
  AND c.relname = ANY($2::text[])
  AND NOT EXISTS (SELECT FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
                  WHERE i.indexrelid = c.oid AND t.relnamespace = c.relnamespace
                    AND t.relname = ANY($3::text[]))
  AND NOT EXISTS (SELECT FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                    AND t.relnamespace = c.relnamespace AND t.relname = ANY($3::text[]))
ORDER BY 1
"""


async def in_the_way(conn: asyncpg.Connection, plan: Plan) -> list[str]:
    """Relations of the target schema named like an index or sequence the run makes, not
    the plan's own tables' (an unrelated table ``users_pkey``): the cut-over failed on
    them after the whole load, or with --replace moved them out of sight."""
    rows = await conn.fetch(
        IN_THE_WAY_SQL, plan.schema, made_relation_names(plan), [t.name for t in plan.tables]
    )
    return [str(r[0]) for r in rows]


async def replaceable(
    conn: asyncpg.Connection, plan: Plan, *, replace: bool, cascade: bool
) -> tuple[list[str], list[dependents.Dependent]]:
    """The plan's tables that exist in its schema and the application's objects that
    depend on them; refuses an existing table without ``replace`` and a dependent
    without ``cascade``."""
    blocking = await in_the_way(conn, plan)
    if blocking:
        shown = ", ".join(qualified(plan.schema, n) for n in blocking[:5])
        raise TargetError(
            f"cannot make the tables' indexes and sequences: {shown} already exists in the "
            "target, and is not one of the tables this run replaces; nothing was changed",
            hint="rename or drop it, or choose another --schema",
        )
    existing = await existing_tables(conn, plan)
    if existing and not replace:
        shown = ", ".join(qualified(plan.schema, n) for n in existing[:5])
        more = f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        hint = "drop it, choose another --schema, or pass --replace to drop and recreate it"
        cut = await history.cut_over_unfinished(conn, plan.schema)
        if cut is not None:  # killed in the moments after its swap: nothing to resume
            hint = (
                f"run {cut} was interrupted after its cut-over committed: these are its "
                "complete, checked tables (`asyncmig check --deep` compares them); "
                "pass --replace to migrate again"
            )
        raise TargetError(f"cannot create {shown}{more}: already exists in the target", hint=hint)
    found = (
        await dependents.find(conn, plan.schema, [*existing, *(v.name for v in plan.views)])
        if existing
        else []
    )
    if found and not cascade:
        raise dependents.refuse(found)
    return existing, found


async def drop_stale(conn: asyncpg.Connection, target: str, keep: str | None = None) -> list[str]:
    """Drop the stages that interrupted runs into ``target`` left (the caller holds the
    target's lock, so none belongs to a live run), but ``keep``, the one a run resumes."""
    rows = await conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY 1",
        stage_prefix(target),
    )
    names = [str(r[0]) for r in rows if r[0] != keep]
    for name in names:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")
        log.warning(
            "stale_stage_dropped", schema=name, target=target, reason="left by an interrupted run"
        )
    return names


async def schema_exists(conn: asyncpg.Connection, name: str) -> bool:
    return bool(
        await conn.fetchval("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", name)
    )


def backup_prefix(target: str) -> str:
    """The backup schemas of one target share this prefix."""
    return f"{BACKUP_PREFIX}{runlock.schema_key(target):08x}_"


def backup_name(target: str, run_id: int) -> str:
    """Where run ``run_id`` keeps the tables it replaced: at most 63 bytes, like the stage."""
    return f"{backup_prefix(target)}{run_id}"


def drop_stage_sql(stage: str) -> str:
    return f"DROP SCHEMA IF EXISTS {quote_ident(stage)} CASCADE"


# what is left in the stage once its tables moved, and how each kind moves
NS = "(SELECT oid FROM pg_namespace WHERE nspname = $1)"  # a schema's oid, by name
RELATIONS_SQL = f"""
SELECT c.relname, c.relkind::text FROM pg_class c
WHERE c.relnamespace = {NS} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
           AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
ORDER BY c.relkind IN ('r', 'p', 'f') DESC, c.oid
"""
ALTER_KIND = {
    "r": "TABLE",
    "p": "TABLE",
    "f": "FOREIGN TABLE",
    "v": "VIEW",
    "m": "MATERIALIZED VIEW",
    "S": "SEQUENCE",
}


async def swap(
    conn: asyncpg.Connection,
    target: Plan,
    stage: Plan,
    *,
    replace: bool,
    cascade: bool,
    run_id: int | None = None,
    keep: bool = True,
) -> list[str]:
    """One transaction: the old tables out (``--replace``; into the run's backup schema
    when ``keep``, else dropped), the stage's objects into the target schema, the stage
    dropped. Returns what ``--cascade`` dropped."""
    started = time.perf_counter()
    backup = backup_name(target.schema, run_id) if keep and run_id is not None else None
    async with conn.transaction():
        existing, found = await replaceable(conn, target, replace=replace, cascade=cascade)
        for statement in [d.drop_sql() for d in found]:
            await conn.execute(statement)
        if existing and backup is not None:
            await keep_previous(
                conn, target.schema, stage.schema, backup, [v.name for v in target.views]
            )
        elif existing:
            for statement in ddl.drop_extras_sql(target) + ddl.drop_tables_sql(
                target, target.tables
            ):
                await conn.execute(statement)
        if not await conn.fetchval(
            "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", target.schema
        ):
            await conn.execute(f"CREATE SCHEMA {quote_ident(target.schema)}")
        for statement in await move_sql(conn, stage.schema, target.schema):
            await conn.execute(statement)
        # RESTRICT: anything still in the stage makes PostgreSQL refuse, and the swap rolls back
        await conn.execute(f"DROP SCHEMA {quote_ident(stage.schema)}")
        # profile functions whose bodies name {schema}: now the target's
        for statement in ddl.function_sql(target):
            if statement.lstrip()[:24].upper().startswith("CREATE OR REPLACE"):
                await conn.execute(statement)
        if run_id is not None:
            await history.record_cut_over(
                conn, run_id, backup if existing else None, [str(d) for d in found]
            )
    for dependent in found:
        log.warning("dependent_dropped", object=str(dependent))
    log.info(
        "cut_over",
        stage=stage.schema,
        target=target.schema,
        replaced=len(existing),
        backup_schema=backup if existing else None,
        seconds=round(time.perf_counter() - started, 3),
    )  # how long readers may wait
    return [
        f"dropped with --cascade: {d} (it depended on a replaced table; not recreated, "
        "and a rollback cannot bring it back)"
        for d in found
    ]


# what of the target the stage's objects would collide with: it moves to the backup
COLLIDING_SQL = """
SELECT c.relname, c.relkind::text FROM pg_class c
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
           AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
  AND c.relname IN (SELECT s.relname FROM pg_class s
                    WHERE s.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $2))
ORDER BY c.relkind IN ('r', 'p', 'f') DESC, c.oid
"""
# the plan's views still in the target once the colliding objects moved out: the
# stage made none of that name
STALE_VIEWS_SQL = """
SELECT c.relname, c.relkind::text FROM pg_class c
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
  AND c.relkind IN ('v', 'm') AND c.relname = ANY($2::text[])
ORDER BY c.oid
"""
COLLIDING_STATISTICS_SQL = """
SELECT x.stxname FROM pg_statistic_ext x
WHERE x.stxnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
  AND (x.stxname IN (SELECT stxname FROM pg_statistic_ext
                     WHERE stxnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $2))
       OR x.stxrelid IN (SELECT oid FROM pg_class
                         WHERE relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $3)))
"""
COLLIDING_ROUTINES_SQL = """
SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p
WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
  AND (p.proname, pg_get_function_identity_arguments(p.oid)) IN (
      SELECT s.proname, pg_get_function_identity_arguments(s.oid) FROM pg_proc s
      WHERE s.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $2))
"""
COLLIDING_COLLATIONS_SQL = """
SELECT c.collname FROM pg_collation c
WHERE c.collnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
  AND c.collname IN (SELECT collname FROM pg_collation
                     WHERE collnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $2))
"""


async def keep_previous(
    conn: asyncpg.Connection, target: str, stage: str, backup: str, views: Sequence[str] = ()
) -> None:
    """Move what the stage replaces (tables with their indexes, constraints, owned
    sequences and triggers; the plan's views, statistics, functions and collation of
    the same names) from ``target`` into the run's ``backup`` schema, in the caller's
    transaction: `rollback` swaps it back, `cleanup` removes it. ``views``: the plan's
    views, moved too where the stage could not make them (PostgreSQL refused one, or
    it reads a table this run does not load): left behind, an earlier run's view went
    on reading the old tables in the backup schema, silently stale."""
    into = quote_ident(backup)
    await conn.execute(f"CREATE SCHEMA {into}")
    for name, kind in await conn.fetch(COLLIDING_SQL, target, stage):
        await conn.execute(f"ALTER {ALTER_KIND[kind]} {qualified(target, name)} SET SCHEMA {into}")
    for name, kind in await conn.fetch(STALE_VIEWS_SQL, target, list(views)):
        await conn.execute(f"ALTER {ALTER_KIND[kind]} {qualified(target, name)} SET SCHEMA {into}")
    for (name,) in await conn.fetch(COLLIDING_STATISTICS_SQL, target, stage, backup):
        await conn.execute(f"ALTER STATISTICS {qualified(target, name)} SET SCHEMA {into}")
    for name, arguments in await conn.fetch(COLLIDING_ROUTINES_SQL, target, stage):
        await conn.execute(
            f"ALTER ROUTINE {qualified(target, name)}({arguments}) SET SCHEMA {into}"
        )
    for (name,) in await conn.fetch(COLLIDING_COLLATIONS_SQL, target, stage):
        await conn.execute(f"ALTER COLLATION {qualified(target, name)} SET SCHEMA {into}")
    await release_outward_keys(conn, backup)


# foreign keys of the backup's old tables onto tables outside it (a parent this run did
# not replace: excluded by a profile, or gone from the source)
OUTWARD_KEYS_SQL = """
SELECT c.relname, con.conname, pg_get_constraintdef(con.oid)
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_class p ON p.oid = con.confrelid
WHERE con.contype = 'f' AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
  AND p.relnamespace <> c.relnamespace
ORDER BY 1, 2
"""


async def release_outward_keys(conn: asyncpg.Connection, backup: str) -> None:
    """Drop the backup's foreign keys onto tables that stay in the target, each kept in
    the backup schema's comment for a rollback to add again (NOT VALID): left, an old
    row in the backup kept the application from deleting the live parent row it named."""
    found = await conn.fetch(OUTWARD_KEYS_SQL, backup)
    for table, name, _definition in found:
        await conn.execute(
            f"ALTER TABLE {qualified(backup, table)} DROP CONSTRAINT {quote_ident(name)}"
        )
    if found:
        kept = json.dumps([{"table": t, "name": n, "definition": d} for t, n, d in found])
        await conn.execute(f"COMMENT ON SCHEMA {quote_ident(backup)} IS {quote_literal(kept)}")


async def outward_keys_sql(conn: asyncpg.Connection, backup: str, target: str) -> list[str]:
    """The foreign keys :func:`release_outward_keys` dropped, added again (NOT VALID: the
    parent may have lost rows since) to the tables restored into ``target``."""
    comment = await conn.fetchval(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
        backup,
    )
    if not comment or not comment.startswith("["):
        return []
    return [
        f"ALTER TABLE {qualified(target, key['table'])} ADD CONSTRAINT "
        f"{quote_ident(key['name'])} {key['definition']} NOT VALID"
        for key in json.loads(comment)
        # pg_get_constraintdef's text, as release_outward_keys kept it: nothing else is
        # run from a comment anyone owning the schema could have edited
        if isinstance(key, dict) and _FOREIGN_KEY_DEF.fullmatch(str(key.get("definition")))
    ]


_FOREIGN_KEY_DEF = re.compile(r"FOREIGN KEY \([^;]*\) REFERENCES [^;]+", re.DOTALL)


async def move_sql(conn: asyncpg.Connection, source: str, target: str) -> list[str]:
    """The statements moving everything in ``source`` into ``target`` (indexes,
    constraints, triggers and owned sequences go with their tables; a collation of the
    same name in ``target``, an earlier run's, is dropped first: PostgreSQL refuses if
    the application still uses it)."""
    into = quote_ident(target)
    statements = [
        f"ALTER {ALTER_KIND[kind]} {qualified(source, name)} SET SCHEMA {into}"
        for name, kind in await conn.fetch(RELATIONS_SQL, source)
    ]
    statements += [
        f"ALTER STATISTICS {qualified(source, name)} SET SCHEMA {into}"
        for (name,) in await conn.fetch(
            f"SELECT stxname FROM pg_statistic_ext WHERE stxnamespace = {NS}", source
        )
    ]
    statements += [
        f"ALTER ROUTINE {qualified(source, name)}({arguments}) SET SCHEMA {into}"
        for name, arguments in await conn.fetch(
            "SELECT proname, pg_get_function_identity_arguments(oid) FROM pg_proc "
            f"WHERE pronamespace = {NS}",
            source,
        )
    ]
    for (name,) in await conn.fetch(
        f"SELECT collname FROM pg_collation WHERE collnamespace = {NS}", source
    ):
        statements += [
            f"DROP COLLATION IF EXISTS {qualified(target, name)}",
            f"ALTER COLLATION {qualified(source, name)} SET SCHEMA {into}",
        ]
    return statements


async def kept_restore_sql(conn: asyncpg.Connection, target: Plan, run_id: int) -> list[str]:
    """The swap back of the run's backup schema, for its rollback script (none if the
    run kept no backup: it replaced nothing, or ran with --no-backup-schema)."""
    backup = backup_name(target.schema, run_id)
    if not await schema_exists(conn, backup):
        return []
    return await restore_sql(conn, backup, target.schema)


async def restore_sql(conn: asyncpg.Connection, backup: str, target: str) -> list[str]:
    """The statements that swap a run's backup schema back into ``target`` (once the
    run's own objects are gone) and drop it (RESTRICT: nothing may be left behind)."""
    return [
        *await move_sql(conn, backup, target),
        *await outward_keys_sql(conn, backup, target),
        f"DROP SCHEMA {quote_ident(backup)}",
    ]
