"""Count what each column really holds, with SQLite doing the scanning.

SQLite is dynamically typed, so the declared type is only a hint: the planner needs,
per column, how many values of each storage class there are and how many text values
parse as JSON, a UUID, an IP address, a boolean or a timestamp. A type is chosen only
when *every* value fits it, yet profiling must cost far less than the copy, so the
planner works in two steps (see :func:`asyncmig.plan.builder.profile_table`):

1. a detailed profile of a *sample* (the first and last rows) proposes a type per column;
2. one scan of the whole table evaluates, per row, a cheap SQL condition saying "this
   value converts to the proposed type" (:func:`acceptance`), and profiles in detail
   only the rows where some condition fails; those counts are merged in and the types
   chosen again, until a scan finds no such row.

Everything runs in SQLite's C code (``typeof``, ``json_valid``, ``julianday``); the one
Python function (IP address parsing) is called only behind a cheap character filter.
"""

from __future__ import annotations

import re
import socket
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from asyncmig.load.transforms import unique_keys
from asyncmig.plan import datenums
from asyncmig.plan.model import base_type
from asyncmig.quoting import quote_sqlite_ident
from asyncmig.source.catalog import ColumnProfile, SourceColumn, SourceTable

SAMPLE_ROWS = 500
DOUBLE_EXACT_INT = 2**53
CLASSES = ("integer", "real", "text")  # blob = non-null minus these; null = rows minus non-null

_HEX = "[0-9a-fA-F]"
_UUID_GLOB = "-".join(_HEX * n for n in (8, 4, 4, 4, 12))
_DATE_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
_OFFSET_HOURS = "[+-][01][0-9]"


def readable_instant(c: str) -> str:
    """``c`` as SQLite's date functions read it: a trailing zone offset written without
    a colon (``+0000``, ``-0530``, ``+02``), which PostgreSQL and the load's transform
    read but ``julianday()`` does not, spelled with one (``+00:00``). Only after a time
    of day (a date's own ``-01`` is no offset); any other text as it is."""
    return (
        f"CASE WHEN {c} GLOB '*[0-9]{_OFFSET_HOURS}[0-5][0-9]' "
        f"THEN substr({c}, 1, length({c}) - 2) || ':' || substr({c}, -2) "
        f"WHEN {c} GLOB '{_DATE_GLOB}?[0-9][0-9]:[0-9]*[0-9]{_OFFSET_HOURS}' "
        f"THEN {c} || ':00' ELSE {c} END"
    )


_INET_FUNCTION = "asyncmig_is_inet"
_KEYS_FUNCTION = "asyncmig_unique_keys"


def _text(column: str, condition: str) -> str:
    return f"(typeof({column}) = 'text' AND {condition})"


# kind -> SQL condition over one value (``{c}`` is the quoted column); true when the
# value is text of that kind. Conditions are ordered cheapest test first: SQLite's AND
# stops at the first false operand.
KIND_CONDITIONS: Mapping[str, str] = {
    # objects and arrays only: a scalar ('1', '"x"') is JSON too, but a column of
    # such values is text unless the schema says it holds JSON (json_any below)
    # no object repeating a key: jsonb would keep its last value, SQLite reads the first
    # (bytes: text may not be UTF-8)
    "json": "substr({c}, 1, 1) IN ('{{', '[') AND json_valid({c}) AND instr({c}, '\\u0000') = 0 "
    f"AND {_KEYS_FUNCTION}(CAST({{c}} AS BLOB))",
    "json_any": f"json_valid({{c}}) AND instr({{c}}, '\\u0000') = 0 "
    f"AND {_KEYS_FUNCTION}(CAST({{c}} AS BLOB))",
    "uuid": f"length({{c}}) = 36 AND {{c}} GLOB '{_UUID_GLOB}'",
    "hex32": f"length({{c}}) = 32 AND {{c}} GLOB '{_HEX * 32}'",
    # cheap filter first: an IPv6 address has a ':', an IPv4 one starts with a digit
    "inet": "length({c}) BETWEEN 2 AND 50 AND (instr({c}, ':') > 0 OR "
    "(substr({c}, 1, 1) BETWEEN '0' AND '9' AND instr({c}, '.') > 0)) "
    f"AND {_INET_FUNCTION}(CAST({{c}} AS BLOB))",  # bytes: text may not be UTF-8
    "bool": "lower({c}) IN ('t', 'f', 'true', 'false', '0', '1')",
    "date": f"length({{c}}) = 10 AND {{c}} GLOB '{_DATE_GLOB}' AND date({{c}}, '+0 days') = {{c}}",
    # any spelling julianday() reads that starts with a full date, with at most six
    # fraction digits (PostgreSQL keeps microseconds; more would be rounded)
    "timestamp": f"{{c}} GLOB '{_DATE_GLOB}*' AND julianday({readable_instant('{c}')}) IS NOT NULL "
    "AND date(substr({c}, 1, 10), '+0 days') = substr({c}, 1, 10) "
    "AND NOT {c} GLOB '*.[0-9][0-9][0-9][0-9][0-9][0-9][0-9]*'",
    "timestamptz": f"{{c}} GLOB '{_DATE_GLOB}?[0-9][0-9]:[0-9][0-9]*' "
    "AND ({c} GLOB '*[+-][0-9][0-9]:[0-9][0-9]' OR {c} GLOB '*Z' "
    f"OR {{c}} GLOB '*[0-9]{_OFFSET_HOURS}[0-5][0-9]' OR {{c}} GLOB '*[0-9]{_OFFSET_HOURS}')",
    "time": "{c} GLOB '[0-2][0-9]:[0-5][0-9]*' AND time({c}) IS NOT NULL "
    "AND NOT {c} GLOB '*.[0-9][0-9][0-9][0-9][0-9][0-9][0-9]*'",
}

TEXT_KINDS = ("json", "json_any", "uuid", "hex32", "inet")
TEMPORAL_KINDS = ("date", "timestamp", "timestamptz", "time")


# MySQL's spelling of a boolean, which Sequelize and Rails write into SQLite too
# (pgloader casts it to boolean); a column of other numbers stays an integer
TINY_BOOLEAN = re.compile(r"^\s*TINYINT\s*\(\s*1\s*\)\s*$", re.IGNORECASE)


def family(declared_type: str) -> str:
    """Which kinds of text are worth looking for, from the declared type.

    Booleans and timestamps are recognised only where the schema declares them (a
    TEXT column of '1'/'0' strings stays text); JSON, UUIDs and IP addresses are
    recognised in any column that can hold text.
    """
    upper = declared_type.upper()
    if "BOOL" in upper or TINY_BOOLEAN.match(declared_type):
        return "bool"
    if "DATE" in upper or "TIME" in upper:
        return "temporal"
    if "INT" in upper:
        return "integer"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "real"
    return "text"


def kinds_for(column: SourceColumn) -> tuple[str, ...]:
    """The kinds of text to count for ``column``."""
    kind_family = family(column.declared_type)
    if kind_family == "bool":
        return ("bool",)
    if kind_family == "temporal":
        return TEMPORAL_KINDS
    if kind_family == "text":
        return TEXT_KINDS
    return ()


NUMBER_KINDS = (*datenums.KINDS, "midnight")
_NUMERIC = re.compile(
    r"^\s*(NUMERIC|DECIMAL)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$", re.IGNORECASE
)
MAX_NUMERIC_PRECISION = 1000  # PostgreSQL's limit for numeric(p, s)


def declared_numeric(declared_type: str) -> tuple[int, int] | None:
    """(precision, scale) of a declared NUMERIC(p[, s]) PostgreSQL accepts, else None."""
    match = _NUMERIC.match(declared_type)
    if match is None or match.group(2) is None:
        return None
    precision, scale = int(match.group(2)), int(match.group(3) or 0)
    if not 1 <= precision <= MAX_NUMERIC_PRECISION or scale > precision:
        return None
    return precision, scale


def numeric_fits(c: str, precision: int, scale: int) -> str:
    """SQL true when the number ``c`` fits numeric(precision, scale) without rounding.
    Two comparisons, not ``abs()``: SQLite's ``abs(-9223372036854775808)`` is an
    "integer overflow" error, which stopped the whole profile."""
    bound = 10 ** (precision - scale)
    return (
        f"{c} > -{bound} AND {c} < {bound} "
        f"AND (typeof({c}) = 'integer' OR round({c}, {scale}) = {c})"
    )


def number_kinds_for(column: SourceColumn) -> tuple[str, ...]:
    """The readings of numbers to count for ``column``: where dates are declared, and
    whether they fit a declared NUMERIC(p, s)."""
    if declared_numeric(column.declared_type):
        return ("fits_declared",)
    return NUMBER_KINDS if family(column.declared_type) == "temporal" else ()


def _number_sum(column: str, kind: str, declared_type: str) -> str:
    if kind == "fits_declared":
        condition = numeric_fits(column, *(declared_numeric(declared_type) or (1, 0)))
    elif kind == "midnight":
        condition = datenums.sql_midnight(column)
    else:
        condition = datenums.sql_kind(column, kind)
    return f"sum(typeof({column}) IN ('integer', 'real') AND {condition})"


def is_inet(value: object) -> bool:
    """True when PostgreSQL's inet input accepts ``value`` with its meaning unchanged.

    ``inet_pton`` (C, strict: no leading zeros in IPv4 octets, no zone ids such as
    '%eth0') decides the address; a prefix must be a plain bit count in range, since
    netmask suffixes ('/255.0.0.0') would be refused by PostgreSQL.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(value, str):
        return False
    address, slash, prefix = value.partition("/")
    family_id = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        socket.inet_pton(family_id, address)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return False
    if not slash:
        return True
    bits = 128 if family_id == socket.AF_INET6 else 32
    return prefix.isascii() and prefix.isdigit() and len(prefix) <= 3 and int(prefix) <= bits


# the Python functions the profile's conditions call: (name, arguments, function)
def has_unique_keys(value: Any) -> bool:
    """The JSON text ``value`` (its bytes) is UTF-8 and no object in it repeats a key
    (see transforms.unique_keys)."""
    if type(value) is not bytes:
        return True
    try:
        unique_keys(value.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included: jsonb cannot hold it either
        return False
    return True


SQL_FUNCTIONS: tuple[tuple[str, int, Callable[[Any], bool]], ...] = (
    (_INET_FUNCTION, 1, is_inet),
    (_KEYS_FUNCTION, 1, has_unique_keys),
)


def register_functions(conn: sqlite3.Connection) -> None:
    """Add the Python functions the profile SQL calls (deterministic, so SQLite may cache)."""
    for name, arguments, function in SQL_FUNCTIONS:
        conn.create_function(name, arguments, function, deterministic=True)


def _kind_sum(column: str, kind: str) -> str:
    return f"sum({_text(column, KIND_CONDITIONS[kind].format(c=column))})"


def _column_expressions(col: SourceColumn) -> list[str]:
    c = quote_sqlite_ident(col.name)
    exprs = [f"count({c})"]
    exprs += [f"sum(typeof({c}) = '{cls}')" for cls in CLASSES]
    exprs += [
        f"min(CASE WHEN typeof({c}) = 'integer' THEN {c} END)",
        f"max(CASE WHEN typeof({c}) = 'integer' THEN {c} END)",
        f"min(CASE WHEN typeof({c}) = 'real' THEN {c} END)",
        f"max(CASE WHEN typeof({c}) = 'real' THEN {c} END)",
        f"max(CASE WHEN typeof({c}) = 'text' THEN length({c}) END)",
        f"sum({_text(c, f'instr({c}, char(0)) > 0')})",
        # bytes stored (numbers count 8): sizes the batches of tables with big values
        (
            f"sum(CASE WHEN typeof({c}) IN ('text', 'blob') THEN length(CAST({c} AS BLOB)) "
            "ELSE 8 END)"
        ),
    ]
    exprs += [_kind_sum(c, kind) for kind in kinds_for(col)]
    exprs += [_number_sum(c, kind, col.declared_type) for kind in number_kinds_for(col)]
    return exprs


def _select_columns(table: SourceTable) -> str:
    return ", ".join(quote_sqlite_ident(c.name) for c in table.columns)


def sample_source(table: SourceTable) -> str:
    """The first and (for rowid tables) the last SAMPLE_ROWS rows: old and new spellings."""
    name = quote_sqlite_ident(table.name)
    first = f"SELECT * FROM (SELECT {_select_columns(table)} FROM {name} LIMIT {SAMPLE_ROWS})"
    if table.without_rowid:
        return first
    last = (
        f"SELECT * FROM (SELECT {_select_columns(table)} FROM {name} "
        f"WHERE rowid > (SELECT max(rowid) FROM {name}) - {SAMPLE_ROWS * 4} "
        f"ORDER BY rowid DESC LIMIT {SAMPLE_ROWS})"
    )
    return f"{first} UNION ALL {last}"


def detail_query(table: SourceTable, source: str) -> str:
    """Every count the type chooser reads, over the rows of ``source`` (a subquery or table)."""
    exprs = ["count(*)"]
    for col in table.columns:
        exprs += _column_expressions(col)
    return f"SELECT {', '.join(exprs)} FROM ({source})"


def violations_source(table: SourceTable, conditions: Mapping[str, str]) -> str:
    """The rows where some column holds a value its chosen type would not accept."""
    accepted = (
        " AND ".join(f"({conditions[c.name]})" for c in table.columns if c.name in conditions)
        or "1"
    )
    return (
        f"SELECT {_select_columns(table)} FROM {quote_sqlite_ident(table.name)} "
        f"WHERE NOT ({accepted})"
    )


def read_profile(table: SourceTable, row: Sequence[Any]) -> dict[str, ColumnProfile]:
    values = iter(row)
    rows = int(next(values) or 0)
    profiles = {}
    for col in table.columns:
        non_null, integers, reals, texts = (int(next(values) or 0) for _ in range(4))
        int_min, int_max, real_min, real_max, max_len, nul, size = (next(values) for _ in range(7))
        kind_counts = {k: int(next(values) or 0) for k in kinds_for(col)}
        number_counts = {k: int(next(values) or 0) for k in number_kinds_for(col)}
        classes = {
            "null": rows - non_null,
            "integer": integers,
            "real": reals,
            "text": texts,
            "blob": non_null - integers - reals - texts,
        }
        profiles[col.name] = ColumnProfile(
            classes={k: n for k, n in classes.items() if n},
            text_kinds={k: n for k, n in kind_counts.items() if n},
            number_kinds={k: n for k, n in number_counts.items() if n},
            int_min=int_min,
            int_max=int_max,
            real_min=real_min,
            real_max=real_max,
            max_text_length=max_len,
            nul_text=int(nul or 0),
            total_bytes=int(size or 0),
        )
    return profiles


def merge(a: ColumnProfile, b: ColumnProfile) -> ColumnProfile:
    """The profile of the union of two sets of rows."""

    def add(x: Mapping[str, int], y: Mapping[str, int]) -> dict[str, int]:
        return {k: x.get(k, 0) + y.get(k, 0) for k in {*x, *y}}

    def pick(f: Any, x: Any, y: Any) -> Any:
        return y if x is None else x if y is None else f(x, y)

    return ColumnProfile(
        classes=add(a.classes, b.classes),
        text_kinds=add(a.text_kinds, b.text_kinds),
        number_kinds=add(a.number_kinds, b.number_kinds),
        int_min=pick(min, a.int_min, b.int_min),
        int_max=pick(max, a.int_max, b.int_max),
        real_min=pick(min, a.real_min, b.real_min),
        real_max=pick(max, a.real_max, b.real_max),
        max_text_length=pick(max, a.max_text_length, b.max_text_length),
        nul_text=a.nul_text + b.nul_text,
        total_bytes=a.total_bytes + b.total_bytes,
    )


def count_rows(conn: sqlite3.Connection, table: SourceTable) -> int:
    return count_named(conn, table.name)


def count_named(conn: sqlite3.Connection, name: str) -> int:
    """The exact count: every page of the table's smallest index is read."""
    return int(conn.execute(f"SELECT count(*) FROM {quote_sqlite_ident(name)}").fetchone()[0])


def counted_to_estimate(table: SourceTable) -> bool:
    """No rowid bounds to read: the estimate of such a table is its exact count."""
    return table.without_rowid or table.virtual is not None


def estimate_rows(conn: sqlite3.Connection, table: SourceTable) -> int:
    """At least as many as the rows, from the rowid bounds: ``max - min + 1`` (two
    b-tree descents, whatever the size; deleted rows make it high), or the count of a
    WITHOUT ROWID or virtual table.

    The exact count walks every page of the table's smallest index: at 20M rows,
    hundreds of megabytes read before the first COPY. A plan made from a sample takes
    the estimate, and the exact count is taken beside the load
    (:mod:`asyncmig.load.counts`).
    """
    if counted_to_estimate(table):
        return count_rows(conn, table)
    name = quote_sqlite_ident(table.name)
    # two subqueries: min() and max() in one SELECT would scan the table
    low, high = conn.execute(
        f"SELECT (SELECT min(rowid) FROM {name}), (SELECT max(rowid) FROM {name})"
    ).fetchone()
    if high is None:
        return 0
    # no table holds more rows than its file has bytes: rowids spread over the whole
    # 64-bit range (two rows, -2^63 and 2^63 - 1) made 2^64, past what a plan can hold
    pages, page_size = (
        conn.execute("PRAGMA page_count").fetchone()[0],
        conn.execute("PRAGMA page_size").fetchone()[0],
    )
    return min(int(high) - int(low) + 1, int(pages) * int(page_size))


# SQLite allows 2000 result columns and each column needs up to 20 aggregates: wide
# tables are profiled in slices of columns, each slice one query over the same rows
COLUMNS_PER_QUERY = 90


def _slices(table: SourceTable) -> list[SourceTable]:
    columns = table.columns
    return [
        replace(table, columns=columns[i : i + COLUMNS_PER_QUERY])
        for i in range(0, max(1, len(columns)), COLUMNS_PER_QUERY)
    ]


def _detail(
    conn: sqlite3.Connection, table: SourceTable, source: str
) -> tuple[int, dict[str, ColumnProfile]]:
    rows, profiles = 0, {}
    for part in _slices(table):
        row = conn.execute(detail_query(part, source)).fetchone()
        rows = int(row[0] or 0)
        profiles.update(read_profile(part, row))
    return rows, profiles


def profile_sample(
    conn: sqlite3.Connection, table: SourceTable, *, whole: bool = False
) -> dict[str, ColumnProfile]:
    """Profile the sample rows, or every row when ``whole`` (small tables)."""
    register_functions(conn)
    source = (
        f"SELECT {_select_columns(table)} FROM {quote_sqlite_ident(table.name)}"
        if whole
        else sample_source(table)
    )
    return _detail(conn, table, source)[1]


def profile_violations(
    conn: sqlite3.Connection, table: SourceTable, conditions: Mapping[str, str]
) -> tuple[int, dict[str, ColumnProfile]]:
    """How many rows break ``conditions``, and their profile."""
    register_functions(conn)
    return _detail(conn, table, violations_source(table, conditions))


Misfits = tuple[int, tuple[str, ...]]  # how many values do not fit, and a few of them
MISFIT_EXAMPLES = 3


def _example(raw: bytes, kind: str) -> Any:
    """A value read as bytes, shown as what SQLite holds: text, a number, or a blob."""
    if kind == "text":
        return raw.decode("utf-8", errors="replace")
    if kind in ("integer", "real"):
        number = raw.decode()
        return int(number) if kind == "integer" else float(number)
    return raw


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def count_misfits(
    conn: sqlite3.Connection, table: SourceTable, fits: Mapping[str, str]
) -> dict[str, Misfits]:
    """Per column, the values ``fits[column]`` (SQL) refuses: counted over every row, with
    a few examples. One scan for the counts, then a short one per column that has any."""
    if not fits:
        return {}
    name = quote_sqlite_ident(table.name)
    sums = ", ".join(f"sum(NOT coalesce(({fit}), 0))" for fit in fits.values())
    counts = conn.execute(f"SELECT {sums} FROM {name}").fetchone()
    found = {}
    for (column, fit), count in zip(fits.items(), counts, strict=True):
        if count:
            # bytes: text that is not UTF-8 is shown, not fatal
            rows = conn.execute(
                f"SELECT CAST({quote_sqlite_ident(column)} AS BLOB), "
                f"typeof({quote_sqlite_ident(column)}) FROM {name} WHERE NOT "
                f"coalesce(({fit}), 0) LIMIT {MISFIT_EXAMPLES}"
            ).fetchall()
            found[column] = (int(count), tuple(_shown(_example(*r)) for r in rows))
    return found


def count_nulls(
    conn: sqlite3.Connection, table: SourceTable, columns: Sequence[str]
) -> dict[str, int]:
    """NULLs per column (SQLite allows them in a non-integer PRIMARY KEY)."""
    if not columns:
        return {}
    exprs = ", ".join(f"count(*) - count({quote_sqlite_ident(c)})" for c in columns)
    row = conn.execute(f"SELECT {exprs} FROM {quote_sqlite_ident(table.name)}").fetchone()
    return {c: int(n) for c, n in zip(columns, row, strict=True)}


# --- what a chosen type accepts, as a cheap SQLite condition on one value -----------------

EPOCH_LIMITS = {"epoch_s": 1e11, "epoch_ms": 1e14, "epoch_us": 1e17}


DATED_NUMBERS = ("sqlite_timestamptz", "sqlite_timestamp", "sqlite_date")


def _dated_numbers_accepted(target_type: str, transform: str, c: str) -> str:
    """Numbers with a date reading (a whole day for a date), or text the type takes."""
    number = datenums.sql_readable(c)
    if transform == "sqlite_date":
        number += f" AND {datenums.sql_midnight(c)}"
    text = acceptance(target_type, "date" if transform == "sqlite_date" else "timestamptz", c)
    return f"({number}) OR {text}"


SEVEN_FRACTION_DIGITS = "*.[0-9][0-9][0-9][0-9][0-9][0-9][0-9]*"


def exact_acceptance(target_type: str, transform: str, column: str) -> str:
    """:func:`acceptance`, and for dated text also what only the transform refuses (a
    day the month does not have, more than six fraction digits): for counting a kept
    declared type's misfits beforehand (``plan``, ``validate``), where the whole table
    is scanned anyway, so that they match the rows the load rejects."""
    accepted = acceptance(target_type, transform, column)
    base = base_type(target_type)
    if base not in ("date", "timestamp", "timestamptz"):
        return accepted
    c = column
    day = f"date(substr({c}, 1, 10), '+0 days') = substr({c}, 1, 10)"
    if base != "date":
        day += f" AND NOT {c} GLOB '{SEVEN_FRACTION_DIGITS}'"
    return f"({accepted}) AND (typeof({c}) <> 'text' OR ({day}))"


def finite_real(c: str) -> str:
    """SQL true for a REAL that is not infinite. Two comparisons, not ``abs()``, which
    SQLite may evaluate for an integer too (beside the ``typeof()`` that rules it out),
    and ``abs(-9223372036854775808)`` is an "integer overflow" error."""
    return f"(typeof({c}) = 'real' AND {c} > -9e999 AND {c} < 9e999)"


def acceptance(target_type: str, transform: str, column: str) -> str:
    """SQL true when ``column``'s value converts to ``target_type`` via ``transform``.

    Conditions are cheaper than the kind checks where the load checks again anyway:
    UUID text only by its length here (asyncpg's codec refuses any non-hex digit during
    the COPY, with the row's key), timestamps by julianday() (the transform refuses
    impossible dates such as February 30th).
    """
    c = column
    base = base_type(target_type)
    null = f"{c} IS NULL"
    if transform == "bytes_from_any" or transform == "text_nul_check":
        return "1"
    if transform in DATED_NUMBERS:
        return _dated_numbers_accepted(target_type, transform, c)
    if transform in EPOCH_LIMITS:
        return (
            f"{null} OR (typeof({c}) IN ('integer', 'real') AND {c} >= 0 "
            f"AND {c} < {EPOCH_LIMITS[transform]:.0e})"
        )
    no_nul = f"instr({c}, char(0)) = 0"
    conditions = {
        "bigint": f"{null} OR typeof({c}) = 'integer'",
        "double precision": (
            f"{null} OR typeof({c}) = 'real'"
            if transform == "none"
            else f"{null} OR typeof({c}) = 'real' OR (typeof({c}) = 'integer' "
            f"AND {c} BETWEEN -{DOUBLE_EXACT_INT} AND {DOUBLE_EXACT_INT})"
        ),
        "numeric": f"{null} OR typeof({c}) = 'integer' OR {finite_real(c)}",
        "bytea": f"{null} OR typeof({c}) = 'blob'",
        "jsonb": f"{null} OR (typeof({c}) = 'text' AND {KIND_CONDITIONS['json_any'].format(c=c)})",
        "uuid": f"{null} OR (typeof({c}) = 'text' AND length({c}) IN (32, 36))",
        "inet": f"{null} OR (typeof({c}) = 'text' AND {KIND_CONDITIONS['inet'].format(c=c)})",
        "boolean": f"{null} OR (typeof({c}) = 'integer' AND {c} IN (0, 1))"
        + (
            ""
            if transform == "bool_int"
            else f" OR (typeof({c}) = 'text' AND {KIND_CONDITIONS['bool'].format(c=c)})"
        ),
        "date": f"{null} OR (typeof({c}) = 'text' AND length({c}) = 10 "
        f"AND substr({c}, 5, 1) = '-' AND julianday({c}) IS NOT NULL)",
        "timestamp": f"{null} OR (typeof({c}) = 'text' AND substr({c}, 5, 1) = '-' "
        f"AND julianday({c}) IS NOT NULL)",
        "timestamptz": f"{null} OR (typeof({c}) = 'text' AND substr({c}, 5, 1) = '-' "
        f"AND julianday({readable_instant(c)}) IS NOT NULL AND (length({c}) <= 26 OR NOT {c} GLOB "
        "'*.[0-9][0-9][0-9][0-9][0-9][0-9][0-9]*'))",
        "time": f"{null} OR (typeof({c}) = 'text' AND time({c}) IS NOT NULL "
        f"AND NOT {c} GLOB '*.[0-9][0-9][0-9][0-9][0-9][0-9][0-9]*')",
    }
    if base == "jsonb" and transform == "json":  # a number is a JSON document too
        return f"{conditions['jsonb']} OR typeof({c}) = 'integer' OR {finite_real(c)}"
    declared = declared_numeric(target_type)
    if base == "numeric" and declared:
        return f"{null} OR (typeof({c}) IN ('integer', 'real') AND {numeric_fits(c, *declared)})"
    if base in conditions:
        return conditions[base]
    if base == "varchar":
        length = target_type.split("(")[1].rstrip(") ")
        return f"{null} OR (typeof({c}) = 'text' AND length({c}) <= {length} AND {no_nul})"
    if transform == "text":
        return (
            f"{null} OR typeof({c}) IN ('integer', 'real') OR (typeof({c}) = 'text' AND {no_nul})"
        )
    return f"{null} OR (typeof({c}) = 'text' AND {no_nul})"
