"""The declared type is the application's contract.

An application declares ``score INTEGER`` and its code (an ORM's IntegerField, ``WHERE
score > 5``) relies on it. SQLite stores whatever it is given, so a few values may not
fit; widening the whole column to ``text`` for them would break that code for every
row. A column declared with a type PostgreSQL has therefore keeps its PostgreSQL
counterpart, and the values that do not fit go through the value policy (the reject
store by default), counted and shown in ``plan`` and ``validate`` before anything is
loaded. ``--widen`` (or ``widen = true`` for a column in a profile) restores the
lossless, value-driven type instead.

Columns with no declared type, ``TEXT``, or a type name PostgreSQL has no counterpart
for keep their value-driven types (``jsonb``, ``uuid``, ``inet`` for text that is all
JSON, UUIDs or addresses), as :mod:`asyncmig.plan.types` chooses them, but for one: a
column declared with a text type (SQLite's TEXT affinity: the name holds CHAR, CLOB or
TEXT, and not INT) whose text is mixed with a few blobs stays ``text``, the blobs its misfits; the
value-driven ``bytea`` would have turned every row's text into bytes for the
application. A column of blobs alone stays ``bytea``.
"""

from __future__ import annotations

import re
from dataclasses import replace

from asyncmig.plan.sqlexpr import sqlite_cast_type
from asyncmig.plan.types import TypeChoice, declared_length, describe, unreadable_numbers
from asyncmig.source.catalog import ColumnProfile, SourceColumn
from asyncmig.source.scan import TINY_BOOLEAN, declared_numeric

_PATTERNS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(rf"^\s*{pattern}\s*$", re.IGNORECASE), pg_type, transform)
    for pattern, pg_type, transform in (
        (
            (
                r"(UNSIGNED\s+)?(TINY|SMALL|MEDIUM|BIG)?INT(EGER)?[248]?(\s*\(\s*\d+\s*\))?"
                r"(\s+UNSIGNED)?"
            ),
            "bigint",
            "int_strict",
        ),
        (
            r"(REAL|DOUBLE(\s+PRECISION)?|FLOAT[48]?)(\s*\(\s*\d+\s*\))?",
            "double precision",
            "float_strict",
        ),
        (r"BOOL(EAN)?", "boolean", "bool"),
        (r"DATE", "date", "sqlite_date"),
        (
            r"(DATETIME|TIMESTAMP)(\s*\(\s*\d\s*\))?(\s+(WITH|WITHOUT)\s+TIME\s+ZONE)?",
            "timestamptz",
            "sqlite_timestamptz",
        ),
        (r"TIME", "time", "time"),
        (r"BLOB", "bytea", "bytes_strict"),
    )
)
_NUMERIC = re.compile(r"^\s*(NUMERIC|DECIMAL)\b", re.IGNORECASE)
VALUE_DRIVEN_TEXT = ("jsonb", "uuid", "inet")  # richer types a VARCHAR(n) column may take


def contract_type(declared_type: str) -> tuple[str, str] | None:
    """(PostgreSQL type, checking transform) the declaration promises, or None."""
    for pattern, pg_type, transform in _PATTERNS:
        if pattern.match(declared_type):
            return pg_type, transform
    numeric = declared_numeric(declared_type)
    if numeric is not None:
        return f"numeric({numeric[0]},{numeric[1]})", "numeric_fit"
    if _NUMERIC.match(declared_type):
        return "numeric", "numeric_strict"
    length = declared_length(declared_type)
    if length:
        return f"varchar({length})", "varchar_fit"
    return None


def _keeps(natural: TypeChoice, target: str, profile: ColumnProfile) -> bool:
    """Whether the value-driven choice already honours the declared type."""
    chosen = natural.target_type
    numbers = profile.count("integer") + profile.count("real")
    if (
        target in ("date", "timestamptz")
        and numbers == profile.non_null
        and unreadable_numbers(profile)
    ):
        return True  # ambiguous numbers stay numbers, with the warning typemap gave
    if target == "date":  # values with a time of day: timestamptz keeps it (see README)
        return chosen in ("date", "timestamptz")
    if target.startswith("varchar"):
        return chosen == target or chosen in VALUE_DRIVEN_TEXT
    if target.startswith("numeric("):
        return (
            chosen == "numeric"
            and numbers == profile.non_null
            and profile.number_kinds.get("fits_declared", 0) == numbers
        )
    if target == "bytea":
        return chosen == "bytea" and natural.transform == "none"
    return chosen == target


def honour_declared(
    column: SourceColumn, profile: ColumnProfile, natural: TypeChoice
) -> TypeChoice:
    """The declared type's counterpart, or ``natural`` when it already is that type (or
    the declaration promises nothing PostgreSQL has). A contract choice expects
    misfits: the load's transform refuses them, and the column's policy decides."""
    text_affinity = sqlite_cast_type(column.declared_type) == "text"  # SQLite's own rules
    if natural.transform == "bytes_from_any" and text_affinity:
        return TypeChoice(
            "text",
            "text_only",
            f"declared {column.declared_type}: the declared type is kept, its blobs do not "
            f"fit and go through the value policy: {describe(profile)}",
            contract=True,
        )
    promised = contract_type(column.declared_type)
    if promised is None or profile.non_null == 0:
        return natural
    if natural.target_type == "boolean" and TINY_BOOLEAN.match(column.declared_type):
        return natural  # TINYINT(1) holding only 0 and 1: a boolean (else the integer)
    target, transform = promised
    if _keeps(natural, target, profile):
        if target.startswith("numeric(") and natural.target_type == "numeric":
            return replace(natural, target_type=target)
        return natural
    return TypeChoice(
        target,
        transform,
        f"declared {column.declared_type}: the declared type is kept, values that do not "
        f"fit go through the value policy: {describe(profile)}",
        contract=True,
    )
