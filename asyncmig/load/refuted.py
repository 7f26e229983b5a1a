"""A refuted plan (:class:`asyncmig.load.pipeline.PlanRefuted`): reload one table, or all.

A large table planned from a sample is proved by its load; a row that does not fit
refutes the plan. The table is then profiled over every row (with every table
refuted before it) and the whole plan made again, exactly as a run that starts over
would make it. Only that table is dropped,
created again with its proven types and reloaded, while the others go on loading,
when :func:`why_not_local` finds nothing else the new plan changes:

- every other table's plan is the same (a type, an index, a check: anything);
- the plan-wide parts are the same (schema, extensions, collations, functions, views,
  names), its warnings aside: those of the scanned table are new, and the plan the
  run records is the new one, warnings and all;
- no column of a foreign key (referencing or referenced) changes type: the types
  must stay equal across a key, so that would change the other table too;
- the table has the same source name, column names and read order.

Otherwise, and when the table is taken over from an interrupted run or loaded in
recorded chunks, the run drops everything it made and starts again on the new plan
(:mod:`asyncmig.run`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import anyio
import structlog

from asyncmig import ddl
from asyncmig.load.pipeline import PlanRefuted
from asyncmig.plan.model import ColumnPlan, Plan, TablePlan

log = structlog.get_logger(__name__)

# given the refutation, the re-made plan (in the load's schema) when the refuted table
# alone may be reloaded, else None: the run starts over
Replan = Callable[[PlanRefuted], Awaitable[Plan | None]]


def plan_refuted(exc: BaseException) -> PlanRefuted | None:
    """The refutation that stopped a load, when that (and cancellations) is all that did;
    a split table's ranges raise it from a task group, a worker process as itself."""
    if isinstance(exc, PlanRefuted):
        return exc
    if not isinstance(exc, BaseExceptionGroup):
        return None
    found = [
        plan_refuted(e)
        for e in exc.exceptions
        if not isinstance(e, anyio.get_cancelled_exc_class())
    ]
    return found[0] if found and all(found) else None


def why_not_local(current: Plan, proven: Plan, name: str) -> str | None:
    """Why table ``name`` cannot be reloaded alone on the ``proven`` plan (None: it can).

    ``current`` is the plan the load runs on, ``proven`` the one made again with
    ``name`` profiled over every row; both in the same schema.
    """
    if [t.name for t in current.tables] != [t.name for t in proven.tables]:
        return "the tables differ"
    for table in current.tables:
        if table.name != name and table != proven.table(table.name):
            return f"the plan of {table.name} changed too"
    if replace(current, tables=(), warnings=()) != replace(proven, tables=(), warnings=()):
        return "the plan's views, names or functions changed"
    if ddl.create_schema_sql(current) != ddl.create_schema_sql(proven):
        return "the schema's extensions or collations changed"
    old, new = current.table(name), proven.table(name)
    if (old.source_name, old.read_order, old.without_rowid) != (
        new.source_name,
        new.read_order,
        new.without_rowid,
    ) or [c.name for c in old.columns] != [c.name for c in new.columns]:
        return "the table's columns or load order changed"
    keyed = key_columns(current, name) | key_columns(proven, name)
    changed = [
        c.name for c, d in zip(old.columns, new.columns, strict=True) if typed(c) != typed(d)
    ]
    crossing = sorted(keyed.intersection(changed))
    if crossing:
        return f"column {crossing[0]} of a foreign key changes type"
    return None


def typed(column: ColumnPlan) -> tuple[object, ...]:
    """What must stay equal across a foreign key: the type, how values become it."""
    return (column.target_type, column.collation, column.transform, column.nullable)


def key_columns(plan: Plan, name: str) -> set[str]:
    """The columns of table ``name`` that a foreign key uses, either end."""
    table = plan.table(name)
    found = {c for fk in table.foreign_keys for c in fk.columns}
    for other in plan.tables:
        found |= {c for fk in other.foreign_keys if fk.ref_table == name for c in fk.ref_columns}
    return found


@dataclass
class Replanning:
    """A run's plans made again after refutations.

    ``remake``: the whole plan with these source tables profiled over every row;
    ``prepare``: that plan as the server takes it, with its notes (both as the run's
    first plan was made). :meth:`local` is the load's :data:`Replan`; the run sets
    :attr:`current` (and its :attr:`notes`) to the plan the load starts on.
    """

    remake: Callable[[frozenset[str]], Awaitable[Plan]]
    prepare: Callable[[Plan], Awaitable[tuple[Plan, list[str]]]]
    scanned: frozenset[str] = frozenset()  # source tables profiled over every row
    current: Plan | None = None  # the plan the load runs on, re-planned tables included
    notes: list[str] = field(default_factory=list)
    restart: Plan | None = None  # made for a refutation that must start over: reused
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def again(self, plan: Plan, refuted: PlanRefuted) -> Plan:
        """The plan made again with ``refuted``'s table, and every table refuted before,
        profiled over every row: the plan a run starting over loads."""
        if self.restart is not None:  # made already, when the table was refuted
            made, self.restart = self.restart, None
            return made
        self.scanned |= {plan.table(refuted.table).source_name}
        log.warning(
            "plan_refuted",
            table=refuted.table,
            column=refuted.column,
            action="profiling the table over every row",
        )
        return await self.remake(self.scanned)

    async def local(self, refuted: PlanRefuted) -> Plan | None:
        """The new plan in the load's schema when the refuted table alone may be
        reloaded on it; else None, and the run starts over on it."""
        async with self.lock:  # one at a time: each plan includes the ones before
            current = self.current
            if current is None:
                return None
            made = await self.again(current, refuted)
            proven, notes = await self.prepare(made)
            proven = replace(proven, schema=current.schema)
            reason = why_not_local(current, proven, refuted.table)
            if reason is None and notes != self.notes:
                reason = "the server's collations differ"
            if reason is not None:
                log.warning("plan_refuted_everywhere", table=refuted.table, reason=reason)
                self.restart, self.current = made, None
                return None
            log.warning(
                "table_reloaded_alone",
                table=refuted.table,
                changed=changed_columns(current.table(refuted.table), proven.table(refuted.table)),
            )
            self.current = proven
            return proven


def changed_columns(old: TablePlan, new: TablePlan) -> dict[str, str]:
    """Column -> its new type, for the columns whose type the full profile changed."""
    return {
        d.name: d.target_type
        for c, d in zip(old.columns, new.columns, strict=True)
        if c.target_type != d.target_type
    }
