"""What introspection finds in a SQLite file: frozen values, no behaviour.

These describe the *source* only. The planner (:mod:`asyncmig.plan.builder`) turns them,
together with a :class:`ColumnProfile` of the actual values, into the
:class:`asyncmig.plan.model.Plan` that DDL, the pipeline and verification read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceColumn:
    """One column as ``PRAGMA table_xinfo`` reports it."""

    name: str
    cid: int
    declared_type: str  # exactly as written, e.g. "VARCHAR(20)", "" when none
    notnull: bool
    default_sql: str | None  # the DEFAULT expression's SQL text, as SQLite stored it
    pk_index: int  # 1-based position in the primary key, 0 when not part of it
    hidden: int = 0  # 0 ordinary, 2 generated VIRTUAL, 3 generated STORED
    collation: str | None = None  # NOCASE, RTRIM, ... when declared on the column


@dataclass(frozen=True)
class SourceIndexKey:
    """One key of an index: a column name, or an expression's SQL text."""

    column: str | None  # None when the key is an expression
    expression: str | None  # SQLite SQL of the expression key, None for a column
    descending: bool = False
    collation: str | None = None


@dataclass(frozen=True)
class SourceIndex:
    """An index, including the automatic ones behind UNIQUE / PRIMARY KEY."""

    name: str
    unique: bool
    origin: str  # 'c' CREATE INDEX, 'u' UNIQUE constraint, 'pk' PRIMARY KEY
    keys: tuple[SourceIndexKey, ...]
    where: str | None = None  # SQLite SQL of a partial index's WHERE clause
    sql: str | None = None  # the CREATE INDEX statement, None for automatic ones


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key, as the source declares it and, named and with the target's names,
    as the plan keeps it (:class:`asyncmig.plan.model.ForeignKeyPlan` is this class).

    ``name`` is empty in the source (SQLite's catalog does not keep one); ``ref_columns``
    is filled in with the parent's primary key if the declaration omits them.
    """

    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_update: str = "NO ACTION"
    on_delete: str = "NO ACTION"
    deferrable: bool = False


@dataclass(frozen=True)
class SourceCheck:
    """A CHECK constraint's expression, as written in CREATE TABLE."""

    name: str | None
    expression: str


@dataclass(frozen=True)
class VirtualInfo:
    """What a virtual table that owns its rows needs beyond its columns (see asyncmig.source.virtual)."""

    module: str  # lower-case: fts5, fts4, fts3, rtree, or another module
    search_columns: tuple[str, ...] = ()  # full-text tables: the columns MATCH searches
    search_config: str = "simple"  # the PostgreSQL text search configuration for them
    unreadable: str | None = None  # why SELECT fails (e.g. no such module), None if it works


@dataclass(frozen=True)
class SourceTable:
    name: str
    columns: tuple[SourceColumn, ...]
    sql: str  # the CREATE TABLE statement
    without_rowid: bool
    autoincrement: bool
    rowid_alias: str | None  # the INTEGER PRIMARY KEY column, when there is one
    indexes: tuple[SourceIndex, ...]
    foreign_keys: tuple[ForeignKey, ...]
    checks: tuple[SourceCheck, ...]
    row_count: int
    sequence: int | None = None  # sqlite_sequence.seq: the largest id AUTOINCREMENT handed out
    virtual: VirtualInfo | None = None  # a virtual table whose rows are copied

    @property
    def primary_key(self) -> tuple[str, ...]:
        ordered = sorted((c for c in self.columns if c.pk_index), key=lambda c: c.pk_index)
        return tuple(c.name for c in ordered)


@dataclass(frozen=True)
class SourceView:
    name: str
    sql: str
    columns: tuple[str, ...] = ()  # result column names as SQLite names them


@dataclass(frozen=True)
class SourceTrigger:
    name: str
    table: str
    sql: str


@dataclass(frozen=True)
class SourceCatalog:
    path: str
    tables: tuple[SourceTable, ...]
    views: tuple[SourceView, ...] = ()
    triggers: tuple[SourceTrigger, ...] = ()
    sqlite_version: str = ""


@dataclass(frozen=True)
class ColumnProfile:
    """Counts describing the values actually stored in one column.

    ``classes`` counts SQLite storage classes (``typeof()``): keys among
    'null', 'integer', 'real', 'text', 'blob'. ``text_kinds`` counts, among text
    values, those matching each recognised spelling (keys defined by
    :mod:`asyncmig.source.scan`, e.g. 'json', 'uuid', 'inet', 'bool', 'date',
    'timestamp', 'timestamptz'). Every count covers the whole column, not a sample:
    a type is chosen only when every value fits it.
    """

    classes: Mapping[str, int] = field(default_factory=dict)
    text_kinds: Mapping[str, int] = field(default_factory=dict)
    int_min: int | None = None
    int_max: int | None = None
    real_min: float | None = None
    real_max: float | None = None
    max_text_length: int | None = None  # in characters
    # among numbers in a date column: how many get each reading of asyncmig.plan.datenums
    # ('julian', 'unix_s', 'unix_ms', 'unix_us') and how many read as a whole day ('midnight')
    number_kinds: Mapping[str, int] = field(default_factory=dict)
    nul_text: int = 0  # text values containing a NUL character
    total_bytes: int = 0  # bytes of the profiled values (numbers as 8)

    def count(self, storage_class: str) -> int:
        return self.classes.get(storage_class, 0)

    @property
    def non_null(self) -> int:
        return sum(n for k, n in self.classes.items() if k != "null")
