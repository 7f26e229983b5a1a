"""Read a SQLite file's schema into a :class:`SourceCatalog`.

PRAGMAs give the facts SQLite itself knows (columns, keys, indexes, foreign keys);
:mod:`asyncmig.plan.sqlscan` fills in what only the stored CREATE text holds (CHECKs,
index expressions, partial predicates). Virtual tables that own their rows are read
through their module (:mod:`asyncmig.source.virtual`); their shadow tables, the module's
storage, are reported, not migrated.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from asyncmig.plan import sqlscan as sqlparse
from asyncmig.quoting import quote_sqlite_ident as q
from asyncmig.source import virtual as virtual_tables
from asyncmig.source.catalog import (
    ForeignKey,
    SourceCatalog,
    SourceCheck,
    SourceColumn,
    SourceIndex,
    SourceIndexKey,
    SourceTable,
    SourceTrigger,
    SourceView,
)

T = TypeVar("T")

LIST_OBJECTS = (
    "SELECT type, name, tbl_name, sql FROM sqlite_schema "
    "WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
)


def introspect(conn: sqlite3.Connection, path: Path) -> tuple[SourceCatalog, list[str]]:
    """The catalog of every table whose rows are copied, plus notes on what was left out."""
    notes: list[str] = []
    objects = conn.execute(LIST_OBJECTS).fetchall()
    virtual = {name for kind, name, _t, sql in objects if kind == "table" and _is_virtual(sql)}
    skip = _shadow_and_left_out(conn, objects, virtual, notes)
    tables = [
        virtual_tables.read_virtual(conn, name, sql)
        if name in virtual
        else read_table(conn, name, sql)
        for kind, name, _tbl, sql in objects
        if kind == "table" and name not in skip
    ]
    views = tuple(
        SourceView(name, sql, view_columns(conn, name))
        for kind, name, _t, sql in objects
        if kind == "view"
    )
    triggers = tuple(
        SourceTrigger(name, tbl, sql) for kind, name, tbl, sql in objects if kind == "trigger"
    )
    version = conn.execute("SELECT sqlite_version()").fetchone()[0]
    return SourceCatalog(str(path), tuple(tables), views, triggers, version), notes


def view_columns(conn: sqlite3.Connection, name: str) -> tuple[str, ...]:
    """A view's result column names, as SQLite names them; () if SQLite cannot read it.

    PostgreSQL names unaliased expressions differently (``sum`` for ``Sum(x)``), so
    the view is created with this list to keep the names applications use.
    """
    try:
        return tuple(row[1] for row in conn.execute(f"PRAGMA table_info({q(name)})"))
    except sqlite3.Error:
        return ()


def _is_virtual(sql: str | None) -> bool:
    return (sql or "").upper().lstrip().startswith("CREATE VIRTUAL")


def _shadow_and_left_out(
    conn: sqlite3.Connection,
    objects: list[tuple[str, str, str, str]],
    virtual: set[str],
    notes: list[str],
) -> set[str]:
    """Shadow tables (a module's storage) and virtual tables that own no rows."""
    skip = set()
    for _kind, name, _t, sql in objects:
        reason = virtual_tables.left_out(name, sql) if name in virtual else None
        if reason:
            skip.add(name)
            notes.append(reason)
    try:
        rows = conn.execute("PRAGMA table_list").fetchall()
    except sqlite3.DatabaseError:  # before SQLite 3.37: known modules' storage names
        rows = [
            ("main", name, "shadow")
            for kind, name, _t, _s in objects
            if kind == "table" and virtual_tables.is_shadow(name, sorted(virtual))
        ]
    shadows = {name for schema, name, kind, *_ in rows if schema == "main" and kind == "shadow"}
    if shadows:
        notes.append(
            f"{len(shadows)} shadow table(s) of virtual tables (their modules' "
            f"storage) are not migrated: {', '.join(sorted(shadows))}"
        )
    return skip | shadows


def read_table(conn: sqlite3.Connection, name: str, sql: str) -> SourceTable:
    collations: dict[str, str] = _safe(lambda: sqlparse.column_collations(sql), {})
    columns = tuple(
        SourceColumn(
            name=col_name,
            cid=cid,
            declared_type=col_type or "",
            notnull=bool(notnull),
            default_sql=default,
            pk_index=pk,
            hidden=hidden,
            collation=collations.get(col_name),
        )
        for cid, col_name, col_type, notnull, default, pk, hidden in conn.execute(
            f"PRAGMA table_xinfo({q(name)})"
        )
        if hidden != 1
    )
    without_rowid = _without_rowid(conn, name, sql)
    table = SourceTable(
        name=name,
        columns=columns,
        sql=sql,
        without_rowid=without_rowid,
        autoincrement=sqlparse.has_autoincrement(sql),
        rowid_alias=_rowid_alias(columns, without_rowid),
        indexes=read_indexes(conn, name),
        foreign_keys=read_foreign_keys(conn, name, sql),
        checks=tuple(
            SourceCheck(n, e)
            for n, e in _safe(lambda: sqlparse.check_constraints(sql), _no_checks())
        ),
        row_count=0,
        sequence=_sqlite_sequence(conn, name) if sqlparse.has_autoincrement(sql) else None,
    )
    return table


def _sqlite_sequence(conn: sqlite3.Connection, table: str) -> int | None:
    """AUTOINCREMENT never reuses an id, even a deleted one: remember the highest."""
    try:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    except sqlite3.OperationalError:  # no AUTOINCREMENT table has had a row yet
        return None
    return int(row[0]) if row and isinstance(row[0], int) else None


def _no_checks() -> list[tuple[str | None, str]]:
    return []


def _safe(fn: Callable[[], T], fallback: T) -> T:
    """Parsing helpers may meet SQL they do not understand: fall back, never crash."""
    try:
        return fn()
    except (ValueError, IndexError):
        return fallback


def _without_rowid(conn: sqlite3.Connection, name: str, sql: str) -> bool:
    try:
        for _schema, tname, _kind, _ncol, wr, _strict in conn.execute(
            f"PRAGMA table_list({q(name)})"
        ):
            if tname == name:
                return bool(wr)
    except sqlite3.DatabaseError:
        pass
    tail = sql[sqlparse.matching_paren(sql, sql.index("(")) + 1 :].upper()
    return "WITHOUT" in tail and "ROWID" in tail


def _rowid_alias(columns: tuple[SourceColumn, ...], without_rowid: bool) -> str | None:
    """The INTEGER PRIMARY KEY column that *is* the rowid, if any."""
    pk = [c for c in columns if c.pk_index]
    if without_rowid or len(pk) != 1:
        return None
    return pk[0].name if pk[0].declared_type.upper() == "INTEGER" else None


def read_indexes(conn: sqlite3.Connection, table: str) -> tuple[SourceIndex, ...]:
    found = []
    for _seq, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({q(table)})"):
        sql_row = conn.execute(
            "SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?", (name,)
        ).fetchone()
        sql = sql_row[0] if sql_row else None
        found.append(_read_index(conn, name, bool(unique), origin, bool(partial), sql))
    return tuple(found)


def _read_index(
    conn: sqlite3.Connection, name: str, unique: bool, origin: str, partial: bool, sql: str | None
) -> SourceIndex:
    key_rows = [r for r in conn.execute(f"PRAGMA index_xinfo({q(name)})") if r[5]]
    texts: list[str] = []
    where = None
    if sql:
        texts, where = sqlparse.index_parts(sql)
    keys = []
    for position, (_seqno, cid, col_name, desc, coll, _key) in enumerate(key_rows):
        expression = None
        if cid == -2 and position < len(texts):
            expression = sqlparse.strip_key_suffix(texts[position])
        keys.append(
            SourceIndexKey(
                column=col_name if cid >= 0 else ("rowid" if cid == -1 else None),
                expression=expression,
                descending=bool(desc),
                collation=None if (coll or "BINARY").upper() == "BINARY" else coll,
            )
        )
    return SourceIndex(name, unique, origin, tuple(keys), where if partial else None, sql)


def read_foreign_keys(conn: sqlite3.Connection, table: str, sql: str) -> tuple[ForeignKey, ...]:
    grouped: dict[int, list[tuple[str, str, str | None, str, str]]] = {}
    for fk_id, _seq, ref, col, ref_col, on_update, on_delete, _match in conn.execute(
        f"PRAGMA foreign_key_list({q(table)})"
    ):
        grouped.setdefault(fk_id, []).append((ref, col, ref_col, on_update, on_delete))
    deferred: list[tuple[str, bool]] = _safe(lambda: sqlparse.deferrable_references(sql), [])
    # PRAGMA foreign_key_list numbers foreign keys in reverse order of declaration
    declared = sorted(grouped, reverse=True)
    found = []
    for position, fk_id in enumerate(declared):  # the last declared first
        rows = grouped[fk_id]
        ref_table = rows[0][0]
        ref_columns = tuple(r[2] for r in rows)
        if any(c is None for c in ref_columns):
            ref_columns = _primary_key(conn, ref_table)
        is_deferred = position < len(deferred) and deferred[position][1]
        found.append(
            ForeignKey(
                name="",
                columns=tuple(r[1] for r in rows),
                ref_table=ref_table,
                ref_columns=tuple(str(c) for c in ref_columns),
                on_update=rows[0][3],
                on_delete=rows[0][4],
                deferrable=bool(is_deferred),
            )
        )
    return tuple(reversed(found))  # in the order of declaration


def _primary_key(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    rows = conn.execute(f"PRAGMA table_info({q(table)})").fetchall()
    pk = sorted((r for r in rows if r[5]), key=lambda r: r[5])
    return tuple(r[1] for r in pk) or ("rowid",)
