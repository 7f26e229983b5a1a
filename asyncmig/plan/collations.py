"""SQLite's NOCASE collation in PostgreSQL: a case-insensitive ICU collation, or lower().

A column declared ``COLLATE NOCASE`` compares, sorts and is unique without regard to
case in SQLite. PostgreSQL 12+ expresses that with a *nondeterministic* ICU collation
(``und-u-ks-level2``: case-insensitive, accent-sensitive), which the run creates in the
target schema and gives to those columns, so ``WHERE email = 'ann@example.com'``,
UNIQUE and ORDER BY behave as in SQLite. A server built without ICU refuses to create
it; the plan then falls back to what PostgreSQL always has: plain columns, and
``lower()`` keys in the indexes, with a warning naming the columns.
"""

from __future__ import annotations

from dataclasses import replace

import asyncpg
import structlog

from asyncmig.plan.model import ColumnPlan, IndexKeyPlan, IndexPlan, Plan, TablePlan, base_type
from asyncmig.quoting import qualified, quote_ident

NOCASE = "nocase"  # the collation's name in the target schema
ICU_LOCALE = "und-u-ks-level2"
TEXT_TYPES = ("text", "varchar", "character varying", "char", "character")

log = structlog.get_logger(__name__)


def is_text(pg_type: str) -> bool:
    """Collations apply to string types only."""
    return base_type(pg_type) in TEXT_TYPES


def uses_nocase(plan: Plan) -> bool:
    return any(c.collation == NOCASE for t in plan.tables for c in t.columns) or any(
        k.collation == NOCASE for t in plan.tables for i in t.indexes for k in i.keys
    )


def create_collation_sql(plan: Plan) -> list[str]:
    """CREATE COLLATION for the plan's NOCASE columns (nothing when it has none)."""
    if not uses_nocase(plan):
        return []
    return [
        (
            f"CREATE COLLATION IF NOT EXISTS {qualified(plan.schema, NOCASE)} "
            f"(provider = icu, locale = '{ICU_LOCALE}', deterministic = false)"
        )
    ]


def collation_sql(schema: str, name: str) -> str:
    """``COLLATE ...``: ours lives in the target schema, others (``C``) are global."""
    return qualified(schema, name) if name == NOCASE else quote_ident(name)


async def prepare(conn: asyncpg.Connection, plan: Plan, *, create: bool) -> tuple[Plan, list[str]]:
    """The plan as the server can take it, and the warnings that say so.

    ``create`` (before ``run``/``schema`` create the tables): can this server create the
    collation? A probe in ``pg_temp``, rolled back, tells without leaving anything
    behind. Otherwise (``data``, after ``schema``): does the schema have it?
    """
    if not uses_nocase(plan):
        return plan, []
    if create:
        reason = await icu_refusal(conn)
        if reason is None:
            return plan, []
    else:
        exists = await conn.fetchval(
            "SELECT EXISTS (SELECT FROM pg_collation c JOIN pg_namespace n "
            "ON n.oid = c.collnamespace WHERE n.nspname = $1 AND c.collname = $2)",
            plan.schema,
            NOCASE,
        )
        if exists:
            return plan, []
        reason = f"collation {qualified(plan.schema, NOCASE)} does not exist"
    fallback, columns = without_nocase(plan)
    warning = (
        f"case-insensitive (NOCASE) columns {', '.join(columns)} are case-sensitive in "
        f"PostgreSQL: no ICU collation ({reason}); their indexes use lower()"
    )
    log.warning("nocase_fallback", columns=columns, reason=reason)
    return fallback, [warning]


async def icu_refusal(conn: asyncpg.Connection) -> str | None:
    """None when the server creates nondeterministic ICU collations, else its reason."""
    probe = conn.transaction()
    await probe.start()
    try:
        await conn.execute(
            f"CREATE COLLATION pg_temp.asyncmig_probe (provider = icu, "
            f"locale = '{ICU_LOCALE}', deterministic = false)"
        )
    except asyncpg.PostgresError as exc:  # e.g. "ICU is not supported in this build"
        return str(exc)
    finally:
        await probe.rollback()
    return None


def without_nocase(plan: Plan) -> tuple[Plan, list[str]]:
    """The plan with NOCASE expressed as ``lower()`` keys, and the columns it concerned."""
    columns = [
        f"{t.name}.{c.name}" for t in plan.tables for c in t.columns if c.collation == NOCASE
    ]
    return replace(plan, tables=tuple(_table_without(t) for t in plan.tables)), columns


def _table_without(table: TablePlan) -> TablePlan:
    nocase = {quote_ident(c.name) for c in table.columns if c.collation == NOCASE}
    columns = tuple(_column_without(c) for c in table.columns)
    indexes = tuple(_index_without(i, nocase) for i in table.indexes)
    return replace(table, columns=columns, indexes=indexes)


def _column_without(column: ColumnPlan) -> ColumnPlan:
    return replace(column, collation=None) if column.collation == NOCASE else column


def _index_without(index: IndexPlan, nocase: set[str]) -> IndexPlan:
    keys = tuple(_key_without(k, nocase) for k in index.keys)
    if keys == index.keys:
        return index
    return replace(index, keys=keys, constraint=False)


def _key_without(key: IndexKeyPlan, nocase: set[str]) -> IndexKeyPlan:
    if key.collation == NOCASE or (key.collation is None and key.expression in nocase):
        return replace(key, expression=f"lower({key.expression})", collation=None)
    if key.collation == "C" and key.expression in nocase:  # BINARY on a NOCASE column
        return replace(key, collation=None)
    return key
