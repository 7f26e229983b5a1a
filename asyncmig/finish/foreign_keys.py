"""Phases 4-5: orphans by policy, foreign keys (NOT VALID, then validated), then views."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncpg

from asyncmig import ddl
from asyncmig.finish import orphans, views
from asyncmig.load.policy import reject_path
from asyncmig.plan.model import Plan, ViewPlan
from asyncmig.quoting import quote_ident
from asyncmig.runstate import RunSettings, TableReport
from asyncmig.target.statements import execute_one, execute_unless_there, refused


def orphan_policies(settings: RunSettings, plan: Plan) -> dict[str, str]:
    """Each table's --orphans policy (by target name): `check` expects what it produced."""
    return {t.name: settings.overrides.orphan_policy(t.source_name) for t in plan.tables}


@dataclass(frozen=True)
class Settled:
    """What the orphan phase did: rows it rejected per table, and its warnings."""

    moved: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def applied(self, tables: list[TableReport], reject_dir: Path | None) -> list[TableReport]:
        """The load's table reports, less the orphans this phase rejected."""
        return [
            replace(
                t,
                rows=t.rows - self.moved[t.table],
                rejected=t.rejected + self.moved[t.table],
                reject_file=t.reject_file
                or (str(reject_path(reject_dir, t.table)) if reject_dir else None),
            )
            if t.table in self.moved
            else t
            for t in tables
        ]


async def settle(
    settings: RunSettings, conn: asyncpg.Connection, plan: Plan, run_id: int | None
) -> Settled:
    """Orphans, by each table's policy, before the foreign keys are added."""
    policies = orphan_policies(settings, plan)
    if all(p == "keep" for p in policies.values()):
        return Settled()
    warnings: list[str] = []
    moved = await orphans.settle_orphans(
        conn,
        plan,
        policies,
        settings.source,
        settings.pipeline.reject_dir,
        run_id,
        warnings,
    )
    return Settled(dict(moved), tuple(warnings))


async def finish(conn: asyncpg.Connection, plan: Plan, *, resumed: bool = False) -> list[str]:
    """The last phase: foreign keys (NOT VALID, then validated), then views; returns
    its warnings. ``resumed``: keys and views the interrupted run made are kept.

    Sequences and ANALYZE were done per table as each finished (`migrate_table`).
    """
    warnings = []
    for add, validate in ddl.foreign_key_sql(plan):
        try:
            await execute_unless_there(conn, add, resumed=resumed)
        except asyncpg.InvalidForeignKeyError as exc:  # its parent key was built non-unique
            warnings.append(f"foreign key not created: {exc}")
            continue
        except asyncpg.PostgresError as exc:
            raise refused(add, exc) from exc
        try:
            await execute_one(conn, validate)
        except asyncpg.ForeignKeyViolationError as exc:
            warnings.append(f"foreign key left NOT VALID because existing rows break it: {exc}")
    return warnings + await create_views(conn, plan, resumed=resumed)


async def create_views(conn: asyncpg.Connection, plan: Plan, *, resumed: bool = False) -> list[str]:
    """Every view PostgreSQL accepts; a refused one is retried after the others.

    The plan lists views over views after the views they read; the retry covers a
    view over one that was kept as written and created later in the list. ``resumed``:
    a view the interrupted run created is kept.
    """
    waiting = list(plan.views)
    if resumed:
        existing = {
            r[0]
            for r in await conn.fetch(
                "SELECT viewname FROM pg_views WHERE schemaname = $1", plan.schema
            )
        }
        waiting = [v for v in waiting if v.name not in existing]
    errors: dict[str, Exception] = {}
    refused = [v for v in waiting if not v.translated and not v.as_written]
    waiting = [v for v in waiting if v not in refused]
    while waiting:
        created = [v for v in waiting if await create_view(conn, plan, v, errors)]
        waiting = [v for v in waiting if v not in created]
        if not created:
            break
    return [
        (
            f"view {v.name} not created: PostgreSQL refused its query ({errors[v.name]})"
            + (f"; not translated: {v.note}" if v.note else "")
            + "; rewrite it by hand"
        )
        for v in waiting
    ] + [
        f"view {v.name} not created: {v.note}; PostgreSQL would take it as written and "
        "answer differently: rewrite it by hand"
        for v in refused
    ]


async def create_view(
    conn: asyncpg.Connection, plan: Plan, view: ViewPlan, errors: dict[str, Exception]
) -> bool:
    """Create a view from its translated query, else as written, else requoted.

    The query names its tables unqualified, so it is resolved in the target schema.
    PostgreSQL's reason for refusing the last attempt is kept in ``errors``.
    """
    names = {t.name for t in plan.tables} | {c.name for t in plan.tables for c in t.columns}
    names |= {v.name for v in plan.views}
    attempts = [views.create_view_sql(plan, view)]
    booleans = {c.name for t in plan.tables for c in t.columns if c.target_type == "boolean"}
    requoted = views.requote(view.sql, names, booleans)
    if not view.translated and requoted is not None and requoted != view.sql:
        attempts.append(views.create_view_sql(plan, view, requoted))
    for statement in attempts:
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {quote_ident(plan.schema)}")
                await execute_one(conn, statement)
        except asyncpg.PostgresError as exc:
            errors[view.name] = exc
            continue
        return True
    return False
