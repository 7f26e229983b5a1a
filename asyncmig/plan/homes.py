"""Every SQLite name gets a PostgreSQL home, chosen in the plan, never a late failure.

SQLite takes names PostgreSQL cannot: longer than 63 bytes (PostgreSQL would cut them,
so two long names sharing their first 63 bytes become one), empty, or names PostgreSQL
keeps for itself (system columns ``ctid``, ``xmin``...; ``a_pkey`` when table ``a``'s
key wants it, ``t_id_seq`` when table ``t``'s identity does). This pass, the plan's
last, gives each a name PostgreSQL takes (:func:`asyncmig.plan.names.fit`), rewrites every
reference to it (keys, indexes, CHECKs, foreign keys, profile additions) and records
each change in ``Plan.renames`` and as a warning. It is deterministic, so ``check``
rebuilds the same names from the same source and profile.

Tables keep their names first (applications use them); the names asyncmig or
PostgreSQL make up (indexes, constraints, identity sequences) give way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from asyncmig.plan.model import (
    CheckPlan,
    ColumnPlan,
    ForeignKeyPlan,
    IndexKeyPlan,
    IndexPlan,
    Plan,
    Rename,
    TablePlan,
)
from asyncmig.plan.names import fit, object_name
from asyncmig.plan.overrides import Overrides
from asyncmig.quoting import quote_ident

SYSTEM_COLUMNS = frozenset({"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"})
_TOKENS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*\"""")


def rename_identifiers(sql: str, mapping: Mapping[str, str]) -> str:
    """``sql`` with each quoted identifier in ``mapping`` replaced (string literals kept)."""
    if not mapping:
        return sql

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith('"'):
            name = token[1:-1].replace('""', '"')
            if name in mapping:
                return quote_ident(mapping[name])
        return token

    return _TOKENS.sub(swap, sql)


class Homes:
    """The names given so far: relations share one namespace per schema."""

    def __init__(self) -> None:
        self.relations: set[str] = set()
        self.renames: list[Rename] = []

    def give(
        self,
        kind: str,
        table: str | None,
        wanted: str,
        taken: set[str],
        *,
        source: str | None = None,
        requested: bool = False,
        reserved: frozenset[str] = frozenset(),
        empty: str = "unnamed",
    ) -> str:
        name, reason = fit(wanted, taken, reserved=reserved, empty=empty)
        taken.add(name)
        original = wanted if source is None else source
        if name != original:
            why = "requested by the profile" if requested and name == wanted else reason
            self.renames.append(Rename(kind, table, original, name, why or "renamed"))
        return name


def give_homes(plan: Plan, overrides: Overrides) -> Plan:
    """``plan`` with every name one PostgreSQL takes; the changes in ``plan.renames``."""
    homes = Homes()
    table_names = {
        t.name: homes.give(
            "table",
            None,
            t.name,
            homes.relations,
            source=t.source_name,
            requested=t.name != t.source_name,
            empty="table",
        )
        for t in plan.tables
    }
    columns = {t.name: _column_names(homes, t, table_names[t.name], overrides) for t in plan.tables}
    tables = tuple(_rehome_table(homes, t, table_names, columns) for t in plan.tables)
    tables = tuple(_rehome_sequences(homes, t) for t in tables)
    return replace(
        plan, tables=tables, renames=tuple(homes.renames), warnings=plan.warnings + _warnings(homes)
    )


def made_relations(table: TablePlan) -> list[str]:
    """The relations a run makes beside ``table`` itself: its key's and its indexes'
    names and its identity sequences. They share the schema's namespace with tables."""
    key = [table.primary_key_name] if table.primary_key_name else []
    sequences = [
        c.sequence or object_name(table.name, c.name, "seq") for c in table.columns if c.identity
    ]
    return key + [i.name for i in table.indexes] + sequences


def home_views(plan: Plan) -> Plan:
    """Views (planned after the tables' names) among every relation name the plan made."""
    homes = Homes()
    for table in plan.tables:
        homes.relations.add(table.name)
        homes.relations.update(made_relations(table))
    views = tuple(
        replace(v, name=homes.give("view", None, v.name, homes.relations)) for v in plan.views
    )
    return replace(
        plan,
        views=views,
        renames=plan.renames + tuple(homes.renames),
        warnings=plan.warnings + _warnings(homes),
    )


def _warnings(homes: Homes) -> tuple[str, ...]:
    return tuple(
        f"{r.kind} {_where(r)}{r.source!r} is {r.target!r} in PostgreSQL: {r.reason}"
        for r in homes.renames
        if r.reason != "requested by the profile"
    )


def _where(rename: Rename) -> str:
    return f"of {rename.table} " if rename.table else ""


def _column_names(
    homes: Homes, table: TablePlan, target: str, overrides: Overrides
) -> dict[str, str]:
    """Each column's PostgreSQL name, profile renames first, in column order."""
    taken: set[str] = set()
    names = {}
    for position, column in enumerate(table.columns, start=1):
        asked = overrides.column(table.source_name, column.source_name).rename
        names[column.name] = homes.give(
            "column",
            target,
            asked or column.name,
            taken,
            source=column.name,
            requested=asked is not None,
            reserved=SYSTEM_COLUMNS,
            empty=f"column_{position}",
        )
    return names


def _rehome_table(
    homes: Homes,
    table: TablePlan,
    table_names: Mapping[str, str],
    columns: Mapping[str, Mapping[str, str]],
) -> TablePlan:
    name = table_names[table.name]
    own = {old: new for old, new in columns[table.name].items() if old != new}
    constraints: set[str] = set()
    primary_key_name = table.primary_key_name
    if primary_key_name:
        primary_key_name = homes.give("index", name, primary_key_name, homes.relations)
        constraints.add(primary_key_name)
    indexes = tuple(_rehome_index(homes, name, i, own, constraints) for i in table.indexes)
    checks = tuple(
        CheckPlan(
            homes.give("constraint", name, c.name, constraints),
            rename_identifiers(c.expression, own),
            c.source_sql,
        )
        for c in table.checks
    )
    fks = tuple(
        _rehome_fk(homes, name, fk, own, table_names, columns, constraints)
        for fk in table.foreign_keys
    )
    return replace(
        table,
        name=name,
        columns=tuple(replace(c, name=columns[table.name][c.name]) for c in table.columns),
        primary_key=tuple(own.get(c, c) for c in table.primary_key),
        primary_key_name=primary_key_name,
        indexes=indexes,
        checks=checks,
        foreign_keys=fks,
        statistics=tuple(
            replace(s, columns=tuple(own.get(c, c) for c in s.columns)) for s in table.statistics
        ),
        triggers=tuple(replace(t, column=own.get(t.column, t.column)) for t in table.triggers),
    )


def _rehome_index(
    homes: Homes, table: str, index: IndexPlan, own: Mapping[str, str], constraints: set[str]
) -> IndexPlan:
    name = homes.give("index", table, index.name, homes.relations)
    if index.constraint:
        constraints.add(name)
    keys = tuple(
        IndexKeyPlan(rename_identifiers(k.expression, own), k.descending, k.collation, k.opclass)
        for k in index.keys
    )
    where = rename_identifiers(index.where, own) if index.where else index.where
    return replace(index, name=name, keys=keys, where=where)


def _rehome_fk(
    homes: Homes,
    table: str,
    fk: ForeignKeyPlan,
    own: Mapping[str, str],
    table_names: Mapping[str, str],
    columns: Mapping[str, Mapping[str, str]],
    constraints: set[str],
) -> ForeignKeyPlan:
    parent = columns.get(fk.ref_table, {})
    return replace(
        fk,
        name=homes.give("constraint", table, fk.name, constraints),
        columns=tuple(own.get(c, c) for c in fk.columns),
        ref_table=table_names.get(fk.ref_table, fk.ref_table),
        ref_columns=tuple(parent.get(c, c) for c in fk.ref_columns),
    )


def _rehome_sequences(homes: Homes, table: TablePlan) -> TablePlan:
    """An identity's sequence gets PostgreSQL's own name unless a relation has it."""
    columns = []
    for column in table.columns:
        if column.identity:
            column = _with_sequence(homes, table.name, column)
        columns.append(column)
    return replace(table, columns=tuple(columns))


def _with_sequence(homes: Homes, table: str, column: ColumnPlan) -> ColumnPlan:
    default = object_name(table, column.name, "seq")
    if default not in homes.relations:
        homes.relations.add(default)
        return column
    return replace(column, sequence=homes.give("sequence", table, default, homes.relations))
