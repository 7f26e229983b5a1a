"""Virtual tables: which ones own their rows, and how those rows live on in PostgreSQL.

An FTS3/4/5 table that keeps its own content, an R*Tree, or a table of another module
holds rows that exist nowhere else in the file, so they are copied like an ordinary
table's: the ``rowid`` (the R*Tree's id column) becomes the bigint key, the columns
follow. A full-text table also gets a GIN index on a ``tsvector`` of its searched
columns, so ``MATCH`` has an equivalent (:func:`search_expression`). Its shadow tables
(``_content``, ``_data``, ``_idx``, ...) are the module's storage and are not copied.

An external-content FTS table (``content='other'``) indexes rows of another table,
which is migrated on its own; a contentless one (``content=''``) has no rows to copy:
both are left out with a note. A virtual table SQLite cannot read (its module is not
loaded) stops the plan, unless the profile excludes it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from asyncmig.plan import sqlscan as sqlparse
from asyncmig.plan.model import ColumnPlan, IndexKeyPlan, IndexPlan, base_type
from asyncmig.plan.names import pg_name
from asyncmig.quoting import quote_ident, quote_literal
from asyncmig.quoting import quote_sqlite_ident as q
from asyncmig.source.catalog import SourceColumn, SourceTable, VirtualInfo

FULL_TEXT = ("fts3", "fts4", "fts5")
FTS3_OPTIONS = ("tokenize",)
RTREE = ("rtree", "rtree_i32")
# the storage tables FTS and R*Tree modules create next to a virtual table
SHADOW_SUFFIXES = (
    "_data",
    "_idx",
    "_content",
    "_docsize",
    "_config",
    "_segments",
    "_segdir",
    "_stat",
    "_node",
    "_rowid",
    "_parent",
)
# types whose text form PostgreSQL may index (their output functions are immutable)
SEARCHABLE_TYPES = (
    "text",
    "varchar",
    "character varying",
    "bigint",
    "integer",
    "smallint",
    "numeric",
    "double precision",
    "boolean",
    "uuid",
    "jsonb",
)
_USING = re.compile(
    r"\bUSING\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*;?\s*$", re.IGNORECASE | re.DOTALL
)


@dataclass(frozen=True)
class Declaration:
    """``CREATE VIRTUAL TABLE ... USING module(arguments)``, split up."""

    module: str  # lower-case
    options: tuple[tuple[str, str], ...]  # key=value arguments, keys lower-case, values unquoted
    columns: tuple[str, ...]  # the other arguments: column names with their options

    def option(self, key: str) -> str | None:
        return next((v for k, v in self.options if k == key), None)


def declaration(sql: str) -> Declaration:
    """FTS3 knows one option, ``tokenize``: any other ``key=value`` is a column (FTS3
    has no ``content=``: ``fts3(body, content="docs")`` stores its own rows in two
    columns, ``body`` and ``content``)."""
    match = _USING.search(sql or "")
    if match is None:
        return Declaration("", (), ())
    module = match.group(1).lower()
    options: list[tuple[str, str]] = []
    columns: list[str] = []
    for argument in sqlparse.split_top_level(match.group(2) or ""):
        key, equals, value = argument.partition("=")
        key = key.strip().lower()
        if (
            equals
            and re.fullmatch(r"[a-z_][a-z0-9_]*", key)
            and (module != "fts3" or key in FTS3_OPTIONS)
        ):
            options.append((key, sqlparse.unquote(value.strip())))
        else:
            columns.append(argument)
    return Declaration(module, tuple(options), tuple(columns))


def left_out(name: str, sql: str) -> str | None:
    """Why a virtual table's rows are not copied (None: they are)."""
    decl = declaration(sql)
    if decl.module not in FULL_TEXT:
        return None
    content = decl.option("content")
    if decl.option("contentless_delete") not in (None, "0") or content == "":
        return (
            f"virtual table {name} is not migrated: a contentless {decl.module} table "
            "keeps only its index, no rows"
        )
    if content is not None:
        return (
            f"virtual table {name} is not migrated: its rows are those of table "
            f"{content} (external-content {decl.module}), which is migrated on its own"
        )
    return None


def is_shadow(name: str, virtual: Sequence[str]) -> bool:
    """A storage table of one of ``virtual`` (for SQLite before 3.37's PRAGMA table_list)."""
    return any(name == f"{v}{suffix}" for v in virtual for suffix in SHADOW_SUFFIXES)


def read_virtual(conn: sqlite3.Connection, name: str, sql: str) -> SourceTable:
    """The table as its module shows it; ``virtual.unreadable`` says why not, if it cannot."""
    decl = declaration(sql)
    try:
        conn.execute(f"SELECT * FROM {q(name)} LIMIT 1").fetchall()
        rows = conn.execute(f"PRAGMA table_xinfo({q(name)})").fetchall()
    except sqlite3.DatabaseError as exc:
        info = VirtualInfo(decl.module, unreadable=str(exc))
        return SourceTable(name, (), sql, True, False, None, (), (), (), 0, virtual=info)
    columns = [
        SourceColumn(col, cid, col_type or "", False, None, 0)
        for cid, col, col_type, _nn, _default, _pk, hidden in rows
        if hidden == 0
    ]
    key = None
    if decl.module in RTREE and columns:  # the first column is the id, i.e. the rowid
        key = columns[0].name
        columns[0] = SourceColumn(key, 0, columns[0].declared_type, True, None, 1)
    elif "rowid" not in {c.name.lower() for c in columns} and _has_rowid(conn, name):
        key = "rowid"
        columns.insert(0, SourceColumn("rowid", -1, "INTEGER", True, None, 1))
    info = VirtualInfo(decl.module, _searched(decl, columns), _config(decl))
    return SourceTable(
        name,
        tuple(columns),
        sql,
        without_rowid=key is None,
        autoincrement=False,
        rowid_alias=key,
        indexes=(),
        foreign_keys=(),
        checks=(),
        row_count=0,
        virtual=info,
    )


def _has_rowid(conn: sqlite3.Connection, name: str) -> bool:
    try:
        conn.execute(f"SELECT rowid FROM {q(name)} LIMIT 1").fetchall()
    except sqlite3.DatabaseError:
        return False
    return True


def _searched(decl: Declaration, columns: Sequence[SourceColumn]) -> tuple[str, ...]:
    """The columns MATCH searches: all but fts5's UNINDEXED and fts4's notindexed ones."""
    if decl.module not in FULL_TEXT:
        return ()
    unindexed = {sqlparse.unquote(v).lower() for k, v in decl.options if k == "notindexed"}
    for argument in decl.columns:
        words = argument.split()
        if len(words) > 1 and words[-1].upper() == "UNINDEXED":
            unindexed.add(sqlparse.unquote(words[0]).lower())
    return tuple(c.name for c in columns if c.cid >= 0 and c.name.lower() not in unindexed)


def _config(decl: Declaration) -> str:
    """SQLite's default tokenizer folds case and does not stem, like 'simple'; porter stems."""
    tokenizer = (decl.option("tokenize") or "").lower()
    return "english" if "porter" in tokenizer else "simple"


def search_expression(columns: Sequence[ColumnPlan], config: str) -> str:
    """``to_tsvector('<config>', coalesce(a, '') || ' ' || ...)``: what the GIN index holds.

    The configuration is a regconfig constant, which makes the two-argument
    ``to_tsvector`` immutable, as an index expression must be. Queries must spell the
    same expression for PostgreSQL to use the index.
    """
    text = " || ' ' || ".join(f"coalesce({_as_text(c)}, '')" for c in columns)
    return f"to_tsvector({quote_literal(config)}::regconfig, {text})"


def _as_text(column: ColumnPlan) -> str:
    name = quote_ident(column.name)
    return name if base_type(column.target_type) in ("text", "varchar") else f"{name}::text"


def search_index(
    table: SourceTable, columns: Sequence[ColumnPlan], warnings: list[str]
) -> list[IndexPlan]:
    """The GIN index that keeps a full-text table searchable; a note on how to query it."""
    info = table.virtual
    if info is None or info.module not in FULL_TEXT:
        return []
    by_source = {c.source_name: c for c in columns}
    searched = [by_source[n] for n in info.search_columns if n in by_source]
    usable = [c for c in searched if base_type(c.target_type) in SEARCHABLE_TYPES]
    warnings.extend(
        f"{table.name}.{c.name}: left out of the full-text index: "
        f"{c.target_type} has no immutable text form"
        for c in searched
        if c not in usable
    )
    if not usable:
        return []
    expression = search_expression(usable, info.search_config)
    warnings.append(
        f"{table.name}: {info.module} table copied as a table with a GIN index; "
        f"search it with WHERE {expression} @@ plainto_tsquery("
        f"{quote_literal(info.search_config)}, 'words')"
    )
    return [
        IndexPlan(
            pg_name(table.name, "search"),
            (IndexKeyPlan(expression),),
            method="gin",
            source_sql=table.sql,
        )
    ]
