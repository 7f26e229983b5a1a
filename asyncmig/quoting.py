"""The one place identifiers and literals are quoted for PostgreSQL.

Every table, column, index, constraint and schema name that reaches SQL passes
through :func:`quote_ident`, so names with capitals, spaces, quotes or reserved
words (``user``, ``order``) arrive intact. Quoting is unconditional: a quoted
lower-case name is the same identifier as the unquoted one, and quoting always
is simpler to reason about than deciding when it is needed.
"""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """Return ``name`` as a PostgreSQL quoted identifier."""
    if "\x00" in name:
        raise ValueError(f"identifier {name!r} contains a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    """Return ``schema.name`` with both parts quoted."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def quote_literal(value: str) -> str:
    """Return ``value`` as a standard-conforming PostgreSQL string literal."""
    if "\x00" in value:
        raise ValueError("string literal contains a NUL byte")
    return "'" + value.replace("'", "''") + "'"


def quote_sqlite_ident(name: str) -> str:
    """Return ``name`` quoted for SQLite (same rules, kept apart for clarity)."""
    return '"' + name.replace('"', '""') + '"'
