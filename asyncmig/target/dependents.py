"""The application's objects that depend on tables ``--replace`` would drop.

Dropping a table with CASCADE silently drops the views built on it and the foreign
keys other tables point at it with, objects of the application, not of the
migration. So ``run --replace`` (and ``schema --replace``) first lists them and
stops before changing anything, unless ``--cascade`` says to drop them; what
``--cascade`` dropped is reported. The plan's own views and foreign keys (between
the tables being replaced) are not the application's: they are recreated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from asyncmig.errors import TargetError
from asyncmig.quoting import qualified, quote_ident

OIDS_SQL = """
SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relkind IN ('r', 'p', 'v', 'm')
"""
VIEWS_SQL = """
SELECT DISTINCT n.nspname, v.relname, v.relkind = 'm' AS materialized
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
JOIN pg_class v ON v.oid = r.ev_class
JOIN pg_namespace n ON n.oid = v.relnamespace
WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY($1::oid[])
  AND v.oid <> ALL($1::oid[]) AND left(n.nspname, length($2)) <> $2
ORDER BY 1, 2
"""
FOREIGN_KEYS_SQL = """
SELECT n.nspname, c.relname, con.conname
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype = 'f' AND con.confrelid = ANY($1::oid[]) AND con.conrelid <> ALL($1::oid[])
  AND left(n.nspname, length($2)) <> $2
ORDER BY 1, 2, 3
"""
# an earlier run's backup schema (see asyncmig.cutover) is asyncmig's, not the
# application's: its old tables and views follow a replaced table there by identity
BACKUP_PREFIX = "asyncmig_backup_"


@dataclass(frozen=True)
class Dependent:
    """A view or a foreign key of the application that a replaced table would take along."""

    kind: str  # "view", "materialized view" or "foreign key"
    schema: str
    name: str  # the view, or the table holding the foreign key
    constraint: str = ""

    def __str__(self) -> str:
        where = f"{self.schema}.{self.name}"
        return (
            f"{self.kind} {self.constraint} on {where}"
            if self.constraint
            else f"{self.kind} {where}"
        )

    def drop_sql(self) -> str:
        if self.constraint:
            return (
                f"ALTER TABLE {qualified(self.schema, self.name)} "
                f"DROP CONSTRAINT IF EXISTS {quote_ident(self.constraint)}"
            )
        kind = "MATERIALIZED VIEW" if self.kind == "materialized view" else "VIEW"
        return f"DROP {kind} IF EXISTS {qualified(self.schema, self.name)} CASCADE"


async def find(conn: asyncpg.Connection, schema: str, replaced: Sequence[str]) -> list[Dependent]:
    """Views and foreign keys outside ``replaced`` (tables and the plan's views) that
    depend on them."""
    oids = [r[0] for r in await conn.fetch(OIDS_SQL, schema, list(replaced))]
    if not oids:
        return []
    found = [
        Dependent("materialized view" if r[2] else "view", r[0], r[1])
        for r in await conn.fetch(VIEWS_SQL, oids, BACKUP_PREFIX)
    ]
    found += [
        Dependent("foreign key", r[0], r[1], r[2])
        for r in await conn.fetch(FOREIGN_KEYS_SQL, oids, BACKUP_PREFIX)
    ]
    return found


def refuse(found: Sequence[Dependent]) -> TargetError:
    shown = ", ".join(str(d) for d in found[:6])
    more = f" and {len(found) - 6} more" if len(found) > 6 else ""
    return TargetError(
        f"cannot replace the tables: objects of the application depend on them: "
        f"{shown}{more}; nothing was changed",
        hint="drop or change them first, or pass --cascade to drop them with the old "
        "tables (they are not recreated)",
    )
