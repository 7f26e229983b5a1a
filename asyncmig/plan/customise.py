"""Apply a profile's additions to a plan: renames, defaults, indexes, statistics, triggers.

Type overrides act earlier, while types are chosen (:mod:`asyncmig.plan.builder`); what is
here only adds to or renames the planned objects, so the DDL phases place each
addition where it belongs: indexes and statistics after the data, triggers after
the data (they must not fire during the load), functions with the tables.
"""

from __future__ import annotations

from dataclasses import replace

from asyncmig.errors import UsageError
from asyncmig.plan.model import (
    CheckPlan,
    ColumnPlan,
    ForeignKeyPlan,
    FunctionPlan,
    IndexKeyPlan,
    IndexPlan,
    Plan,
    StatisticsPlan,
    TablePlan,
    TriggerPlan,
)
from asyncmig.plan.overrides import Overrides, TableSettings
from asyncmig.quoting import quote_ident


def customise(plan: Plan, overrides: Overrides) -> Plan:
    renames = {name: s.rename for name, s in overrides.tables.items() if s.rename}
    tables = tuple(
        _rename_references(_customise_table(t, overrides.table(t.source_name)), renames)
        for t in plan.tables
    )
    _one_table_per_name(tables)
    extensions = tuple(dict.fromkeys((*plan.extensions, *overrides.extensions)))
    functions = plan.functions + tuple(FunctionPlan(f.name, f.sql) for f in overrides.functions)
    return replace(plan, tables=tables, extensions=extensions, functions=functions)


def _one_table_per_name(tables: tuple[TablePlan, ...]) -> None:
    """Refuse a profile that renames a table onto another one's name (every later phase
    finds a table by its name)."""
    seen: dict[str, str] = {}
    for table in tables:
        if table.name in seen:
            first, second = sorted((seen[table.name], table.source_name))
            raise UsageError(
                f"the profile gives tables {first!r} and {second!r} one name, {table.name!r}",
                hint="rename one of them to a name no other table has",
            )
        seen[table.name] = table.source_name


def _customise_table(table: TablePlan, settings: TableSettings) -> TablePlan:
    columns = tuple(_customise_column(c, settings) for c in table.columns)
    indexes = table.indexes + tuple(
        IndexPlan(
            name=index.name,
            keys=tuple(
                IndexKeyPlan(quote_ident(k.column), k.descending, opclass=k.opclass)
                for k in index.columns
            ),
            unique=index.unique,
            where=index.where,
            method=index.method,
            source_sql="profile",
        )
        for index in settings.indexes
    )
    checks = table.checks + tuple(
        CheckPlan(c.name, c.expression, "profile") for c in settings.checks
    )
    statistics = table.statistics + tuple(
        StatisticsPlan(s.name, s.columns) for s in settings.statistics
    )
    triggers = table.triggers + tuple(
        TriggerPlan(name, column) for column, name in settings.triggers.items()
    )
    return replace(
        table,
        name=settings.rename or table.name,
        columns=columns,
        indexes=indexes,
        checks=checks,
        statistics=statistics,
        triggers=triggers,
    )


def _customise_column(column: ColumnPlan, settings: TableSettings) -> ColumnPlan:
    custom = settings.columns.get(column.source_name)
    if custom is None or custom.default is None:
        return column
    return replace(column, default=custom.default)


def _rename_references(table: TablePlan, renames: dict[str, str]) -> TablePlan:
    if not renames:
        return table
    fks = tuple(_renamed_fk(fk, renames) for fk in table.foreign_keys)
    return replace(table, foreign_keys=fks)


def _renamed_fk(fk: ForeignKeyPlan, renames: dict[str, str]) -> ForeignKeyPlan:
    return replace(fk, ref_table=renames.get(fk.ref_table, fk.ref_table))
