"""``check --deep``: prove a copy's content, table by table, with one checksum per table.

The plain ``check`` counts rows; a value changed in place (a float rounded, a jsonb
key added, a timestamp shifted by a microsecond) keeps every count. This module
computes a checksum per table over the *normalised values* of every row, on the
PostgreSQL side in SQL and on the SQLite side after the migration's own transforms
(computed by SQLite itself where that is plain string work, see
:mod:`asyncmig.check.sqlcanon`; by the Python oracle :func:`cell` otherwise), so
that a single changed value in any row fails the table it is in.
Numbers in date columns are the exception: SQLite's own ``strftime()`` reads them into
dates (:func:`source_value`), so the conversion the check verifies is not the one it
uses, and a date the load read differently from SQLite fails its table.

How a table's checksum is made
------------------------------
* Each value is rendered as a canonical text both sides can produce identically
  (see :data:`RENDERINGS`). Where PostgreSQL's text output depends on settings or is
  hard to reproduce exactly (floats, timestamps, dates, times, inet), the type's
  binary send function is used instead (``float8send``, ``timestamptz_send``, ...):
  it is exact, independent of ``extra_float_digits``, ``TimeZone`` and ``DateStyle``,
  and Python reproduces it with :mod:`struct`. jsonb is rendered as PostgreSQL
  prints it (keys by length then bytes, last duplicate wins, ``", "`` and ``": "``,
  numbers in numeric form) by :func:`jsonb_text`.
* Each value is quoted like ``quote_nullable`` (``NULL`` or a ``'...'``/``E'...'``
  literal) and the values are joined with ``,``: unambiguous, because a quoted value
  never contains an unescaped quote, and NULL differs from every text.
* A row's text is hashed with md5, and the table's digest is the row count plus two
  exact sums of 60-bit slices of the row hashes (120 bits in all). The sum is
  **order-independent** and needs constant memory on both sides (no 32 bytes per row
  held by ``string_agg``), so the two sides need not agree on row order: SQLite
  orders text by bytes, PostgreSQL by collation, and a uuid key stored as text sorts
  differently from the uuid. The primary key is inside every row's text, so moving a
  value to another row changes the sums too. The spec's "in primary-key order" is
  thus met by what it protects (each row is identified by its key) rather than by
  the aggregation order. Tables without a primary key are the same multiset of rows
  or not; nothing about them needs an order either.
* The shown checksum is md5 of ``count:sum1:sum2``, shortened to 16 hex digits.

With ``explain=True`` a failing table is narrowed down by hashing each row's key
into 4096 buckets, comparing per-bucket digests, and descending into the first
differing bucket (4096 sub-buckets per level) until it holds at most
:data:`LEAF_ROWS` rows; those rows' keys and per-column hashes are then compared and
the first differing key (in key order within that bucket) is named with the
columns that differ. Each level is one scan per side: two scans of a table of up
to ~20 million rows (one for a table of at most LEAF_ROWS), only for failing
tables. "First" is in key order within that bucket, not across the whole table.

Cost: PostgreSQL builds and hashes each row once (``OFFSET 0`` keeps the planner from
substituting the hash into both sums, which computed it twice) at ~400k rows/s on the
2Truths tables; the SQLite side is the slower one, about four fifths of the CPU
(SQL rendering, one md5 per row in Python, the oracle for UUIDs, timestamps, floats,
numerics, inet and JSON: :func:`cell`'s quick paths for their usual spellings), so
from :data:`PROCESS_ROWS` rows it runs in :data:`WORKERS` processes, a table each
(the most work first, :func:`source_work`; a table holding more than a worker's share
in rowid pieces, :func:`split_for_workers`), while PostgreSQL computes its side.

Limits (documented rather than faked): jsonb documents must be valid for both
parsers (a lone surrogate escape, which PostgreSQL rejects on load, cannot match);
``skip_rows`` matches rows by their SQLite key value (a scalar for a single-column
key, a tuple otherwise); sampling needs a single integer key; column types outside
:data:`RENDERINGS` (arrays, intervals, ranges, ...) fail the table with a message
saying so, never pass unchecked. PostgreSQL's ``md5`` hashes the server encoding's
bytes: the database must be UTF8 (as asyncmig creates it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import ipaddress
import json
import re
import socket
import sqlite3
import struct
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_process
import anyio.to_thread
import asyncpg

from asyncmig.check import sqlcanon
from asyncmig.check.verify import MISSING, CheckResult, error_text, existing_tables
from asyncmig.errors import first_error
from asyncmig.load.codecs import inet_send
from asyncmig.load.policy import VALUE_ERRORS, InvalidText, lenient_text, replacement
from asyncmig.load.retire import retire_workers
from asyncmig.load.transforms import (
    CANONICAL_UUID,
    to_bool,
    to_bytes,
    to_float,
    to_int,
    to_numeric,
    to_text,
    to_timestamp,
    to_timestamptz,
    transform_for,
)
from asyncmig.plan import datenums
from asyncmig.plan.model import ColumnPlan, Plan, TablePlan, base_type
from asyncmig.quoting import qualified, quote_ident, quote_sqlite_ident
from asyncmig.source.sqlite import open_sync, source_error, undecodable

CHECKSUM = "checksum"
SHORT = 16  # hex digits of a checksum shown to a person
FETCH_ROWS = 5000  # SQLite rows per fetchmany: bounded memory on the source side
BUCKET_HEX = 3  # hex digits of the key hash added per explain level: 4096 buckets
LEAF_ROWS = 5000  # an explain bucket this small is compared row by row
PROCESS_ROWS = 100_000  # from this many rows the source side runs in worker processes
WORKERS = 2  # processes rendering the source side (the machine's two cores)
SLICE_HEX = 15  # a 60-bit slice of a row's md5: fits a signed bigint in PostgreSQL
INVALID = "INVALID"  # a value the transforms refuse: never equal to a quoted field
INVALID_SHOWN = "<refused by the transforms>"
UTC = dt.UTC
PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=UTC)
PG_EPOCH_NAIVE = dt.datetime(2000, 1, 1)
PG_EPOCH_DATE = dt.date(2000, 1, 1)
ONE_MICROSECOND = dt.timedelta(microseconds=1)
# PostgreSQL numeric holds up to 131072 digits before the point: never round silently
EXACT = Context(prec=200_000, Emax=1_000_000, Emin=-1_000_000)

T = TypeVar("T")
S = TypeVar("S")


# --- renderings: one canonical text per value, the same from both sides -------------


@dataclass(frozen=True)
class Rendering:
    """How one target type is rendered: a SQL template and the Python twin."""

    sql: str  # PostgreSQL expression; {c} is the quoted column
    python: Callable[[Any], str]  # from a transformed, non-NULL SQLite value
    display: Callable[[str], str] = repr  # a rendered key value, for a person


def _float8(value: Any) -> str:
    return struct.pack(">d", to_float(value)).hex()


def _float4(value: Any) -> str:
    return struct.pack(">f", to_float(value)).hex()


def _show_float(size: str) -> Callable[[str], str]:
    return lambda text: repr(struct.unpack(size, bytes.fromhex(text))[0])


def numeric_text(value: Decimal) -> str:
    """PostgreSQL's ``numeric::text``: plain notation, the value's own scale, no ``-0``."""
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "Infinity" if value > 0 else "-Infinity"
    text = format(value, "f")
    return text[1:] if value.is_zero() and text.startswith("-") else text


def _numeric(scale: int | None) -> Callable[[Any], str]:
    """numeric(p, s) rounds to s digits, half away from zero, as PostgreSQL does."""
    quantum = Decimal(1).scaleb(-scale) if scale is not None else None

    def render(value: Any) -> str:
        number = value if isinstance(value, Decimal) else Decimal(to_numeric(value))
        if quantum is not None and number.is_finite():
            number = number.quantize(quantum, rounding=ROUND_HALF_UP, context=EXACT)
        return numeric_text(number)

    return render


def _text(value: Any) -> str:
    return value if isinstance(value, str) else to_text(value)


def _bpchar(value: Any) -> str:
    """character(n)::text drops the padding (trailing spaces) PostgreSQL stores."""
    return _text(value).rstrip(" ")


def _bytea(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return to_bytes(value).hex()


def _boolean(value: Any) -> str:
    flag = value if isinstance(value, bool) else to_bool(value)
    return "true" if flag else "false"


def _uuid(value: Any) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes) and len(value) == 16:
        return str(uuid.UUID(bytes=value))
    return str(uuid.UUID(str(value)))


def _inet(value: Any) -> str:
    iface = ipaddress.ip_interface(value if isinstance(value, str) else str(value))
    return inet_send(iface.version, iface.network.prefixlen, 0, iface.ip.packed).hex()


def _cidr(value: Any) -> str:
    network = ipaddress.ip_network(value if isinstance(value, str) else str(value))
    return inet_send(network.version, network.prefixlen, 1, network.network_address.packed).hex()


def _show_inet(text: str) -> str:
    raw = bytes.fromhex(text)
    address = ipaddress.ip_address(raw[4:])
    return f"'{address}/{raw[1]}'"


def _json(value: Any) -> str:
    """json (not jsonb) keeps its text as written."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _round_micros(micros: int, precision: int | None) -> int:
    """timestamp(p)/time(p): PostgreSQL rounds to p digits, half away from zero."""
    if precision is None or precision >= 6:
        return micros
    scale = int(10 ** (6 - precision))
    half = scale // 2
    if micros >= 0:
        return (micros + half) // scale * scale
    return -((-micros + half) // scale * scale)


def _timestamptz(precision: int | None) -> Callable[[Any], str]:
    def render(value: Any) -> str:
        stamp = value if isinstance(value, dt.datetime) else to_timestamptz(value)
        aware = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)  # naive is UTC
        micros = _round_micros((aware - PG_EPOCH) // ONE_MICROSECOND, precision)
        return struct.pack(">q", micros).hex()

    return render


def _timestamp(precision: int | None) -> Callable[[Any], str]:
    def render(value: Any) -> str:
        stamp = value if isinstance(value, dt.datetime) else to_timestamp(value)
        if stamp.tzinfo:
            stamp = stamp.astimezone(UTC).replace(tzinfo=None)
        micros = _round_micros((stamp - PG_EPOCH_NAIVE) // ONE_MICROSECOND, precision)
        return struct.pack(">q", micros).hex()

    return render


def _show_stamp(text: str) -> str:
    micros = struct.unpack(">q", bytes.fromhex(text))[0]
    try:
        return repr((PG_EPOCH_NAIVE + dt.timedelta(microseconds=micros)).isoformat())
    except OverflowError:
        return f"{micros} µs from 2000-01-01"


def _date(value: Any) -> str:
    day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    if isinstance(day, dt.datetime):
        day = day.date()
    return struct.pack(">i", (day - PG_EPOCH_DATE).days).hex()


def _show_date(text: str) -> str:
    days = struct.unpack(">i", bytes.fromhex(text))[0]
    try:
        return repr((PG_EPOCH_DATE + dt.timedelta(days=days)).isoformat())
    except OverflowError:
        return f"{days} days from 2000-01-01"


def _time(precision: int | None) -> Callable[[Any], str]:
    def render(value: Any) -> str:
        moment = value if isinstance(value, dt.time) else dt.time.fromisoformat(str(value))
        micros = ((moment.hour * 60 + moment.minute) * 60 + moment.second) * 1_000_000
        micros = _round_micros(micros + moment.microsecond, precision)
        return struct.pack(">q", micros).hex()

    return render


def _show_time(text: str) -> str:
    micros = struct.unpack(">q", bytes.fromhex(text))[0]
    return repr(str(dt.timedelta(microseconds=micros)))


def _int(value: Any) -> str:
    return str(to_int(value))


def _bare(text: str) -> str:
    return text


# --- jsonb -------------------------------------------------------------------------


class _Token(str):
    """A JSON number as written: jsonb keeps its digits (``2.50``), a float would not."""


def _number_text(token: str) -> str:
    """jsonb prints a number's digits as written, in plain notation, without ``-0``.

    JSON allows no leading zeros or ``+``, so a token without an exponent is
    already numeric's text (only ``-0``/``-0.0`` lose their sign).
    """
    if "e" in token or "E" in token:
        return numeric_text(Decimal(token))
    if token.startswith("-") and not token.strip("-0."):
        return token[1:]
    return token


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_value(value: Any) -> str:
    """jsonb's text of a parsed value. Objects are dicts, so the last duplicate key
    wins, as in jsonb; keys are printed in jsonb's order."""
    kind = type(value)
    if kind is str:
        return _json_string(value)
    if kind is dict:
        keys = _jsonb_keys(value) if len(value) > 1 else value
        return "{" + ", ".join([_json_string(k) + ": " + _json_value(value[k]) for k in keys]) + "}"
    if kind is list:
        return "[" + ", ".join([_json_value(item) for item in value]) + "]"
    if kind is _Token:
        token: str = value
        if token[0] == "-" or "e" in token or "E" in token:
            return _number_text(token)
        return token
    if value is None:
        return "null"
    return "true" if value else "false"


def _jsonb_keys(document: dict[str, Any]) -> list[str]:
    """An object's keys in jsonb's order. ASCII keys (the common case) by two sorts in
    C, code points then length (stable), instead of a Python call per key."""
    keys = sorted(document)
    if "".join(keys).isascii():
        keys.sort(key=len)
    else:
        keys.sort(key=_key_order)
    return keys


def _key_order(key: str) -> tuple[int, str]:
    """jsonb orders keys by byte length, then bytes; UTF-8 byte order is code point order."""
    return (len(key) if key.isascii() else len(key.encode("utf-8"))), key


# json's own string escaping is PostgreSQL's escape_json: quote, backslash,
# \b \f \n \r \t, other controls as lower-case \u00xx, everything else as is
_json_string: Callable[[str], str] = json.encoder.encode_basestring
# numbers become _Token (a type, called from C: no Python frame per number, and no
# int() past Python's digit limit); objects are plain dicts, built in C
_JSONB_DECODER = json.JSONDecoder(
    parse_float=_Token, parse_int=_Token, parse_constant=_reject_constant
)


def jsonb_text(value: Any) -> str:
    """The text ``value::jsonb::text`` prints, computed without the server."""
    text = value.decode("utf-8") if isinstance(value, bytes) else value
    if not isinstance(text, str):
        raise TypeError("JSON must be text")
    return _json_value(_JSONB_DECODER.decode(text))


# --- types ---------------------------------------------------------------------------

ALIASES = {
    "int8": "bigint",
    "int": "integer",
    "int4": "integer",
    "int2": "smallint",
    "float8": "double precision",
    "float": "double precision",
    "float4": "real",
    "decimal": "numeric",
    "character varying": "varchar",
    "bool": "boolean",
    "char": "character",
    "bpchar": "character",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "time without time zone": "time",
}
INTEGER_TYPES = ("bigint", "integer", "smallint")
_TYPE = re.compile(
    r"\s*([a-z0-9_ ]+?)\s*(?:\(\s*([\d\s,]*)\))?\s*"
    r"(with time zone|without time zone)?\s*"
)


def parse_type(target_type: str) -> tuple[str, tuple[int, ...]]:
    """``"numeric(12, 2)"`` -> ``("numeric", (12, 2))``; aliases to one spelling."""
    match = _TYPE.fullmatch(target_type.lower())
    if match is None:
        return target_type.lower().strip(), ()
    name = " ".join(match.group(1).split())
    if match.group(3):
        name = f"{name} {match.group(3)}"
    modifiers = tuple(int(m) for m in (match.group(2) or "").split(",") if m.strip())
    return ALIASES.get(name, name), modifiers


def rendering(column: ColumnPlan) -> Rendering | None:
    """The rendering for the column's target type, or None when there is none."""
    name, mods = parse_type(column.target_type)
    last = mods[-1] if mods else None
    if name in INTEGER_TYPES:
        return Rendering("{c}::text", _int, _bare)
    simple: dict[str, Rendering] = {
        "double precision": Rendering("encode(float8send({c}), 'hex')", _float8, _show_float(">d")),
        "real": Rendering("encode(float4send({c}), 'hex')", _float4, _show_float(">f")),
        "numeric": Rendering(
            "{c}::text",
            _numeric(mods[1] if len(mods) == 2 else 0 if len(mods) == 1 else None),
            _bare,
        ),
        "text": Rendering("{c}::text", _text),
        "varchar": Rendering("{c}::text", _text),
        "character": Rendering("{c}::text", _bpchar),
        "bytea": Rendering("encode({c}, 'hex')", _bytea, lambda t: f"\\x{t}"),
        "boolean": Rendering("{c}::text", _boolean, _bare),
        "uuid": Rendering("{c}::text", _uuid),
        "inet": Rendering("encode(inet_send({c}), 'hex')", _inet, _show_inet),
        "cidr": Rendering("encode(cidr_send({c}), 'hex')", _cidr, _show_inet),
        "jsonb": Rendering("{c}::text", jsonb_text),
        "json": Rendering("{c}::text", _json),
        "timestamptz": Rendering(
            "encode(timestamptz_send({c}), 'hex')", _timestamptz(last), _show_stamp
        ),
        "timestamp": Rendering("encode(timestamp_send({c}), 'hex')", _timestamp(last), _show_stamp),
        "date": Rendering("encode(date_send({c}), 'hex')", _date, _show_date),
        "time": Rendering("encode(time_send({c}), 'hex')", _time(last), _show_time),
    }
    return simple.get(name)


def quote_field(text: str | None) -> str:
    """PostgreSQL's ``quote_nullable`` of a text: quotes and backslashes doubled."""
    if text is None:
        return "NULL"
    if "\\" in text:
        return "E'" + text.replace("'", "''").replace("\\", "\\\\") + "'"
    if "'" in text:
        return "'" + text.replace("'", "''") + "'"
    return f"'{text}'"


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


# --- digests -------------------------------------------------------------------------


@dataclass
class Digest:
    """A set of rows as count + two exact sums of 60-bit row-hash slices."""

    count: int = 0
    sum1: int = 0
    sum2: int = 0

    def add(self, row_md5: str) -> None:
        self.count += 1
        self.sum1 += int(row_md5[:SLICE_HEX], 16)
        self.sum2 += int(row_md5[SLICE_HEX : 2 * SLICE_HEX], 16)

    def checksum(self) -> str:
        return md5_hex(f"{self.count}:{self.sum1}:{self.sum2}")[:SHORT]

    def __add__(self, other: Digest) -> Digest:
        """The digest of two disjoint sets of rows (pieces of one table)."""
        return Digest(self.count + other.count, self.sum1 + other.sum1, self.sum2 + other.sum2)


def _digest_values(side: object) -> dict[str, object]:
    """A side's checksum and row count for --output json (or why it has none)."""
    if isinstance(side, Digest):
        return {"checksum": side.checksum(), "rows": side.count}
    return {"state": str(side)}


def digest_sql(hashes: str, group: str = "") -> str:
    """Count and the two slice sums, as :class:`Digest` keeps them, of the md5 hex
    texts in column ``h`` of the query ``hashes``; per value of its column ``group``
    (first in each row) when one is named. Each md5 is read as bits once, 128 bits cast
    from its 32 hex digits, both slices cut from them: cutting each slice from the text
    cost twice as much (900,000 rows: 0.46 -> 0.21 s). OFFSET 0 keeps the planner from
    pulling the row hash, or its bits, up into both sums, which computed them twice."""
    kept = f"{group}, " if group else ""
    slices = [
        f"coalesce(sum(substring(md5_bits FROM {1 + i * SLICE_HEX * 4} FOR {SLICE_HEX * 4})"
        "::bigint), 0)::text"
        for i in range(2)
    ]
    bits = f"SELECT {kept}('x' || h)::bit(128) AS md5_bits FROM ({hashes} OFFSET 0) AS r"
    grouped = f" GROUP BY {group}" if group else ""
    return f"SELECT {kept}count(*), {', '.join(slices)} FROM ({bits} OFFSET 0) AS s{grouped}"


def digest_of(row: Sequence[Any]) -> Digest:
    count, sum1, sum2 = (int(v) for v in row)
    return Digest(count, sum1, sum2)


# --- one table -----------------------------------------------------------------------

KeyRange = tuple[int, int]
LeafRow = tuple[str, tuple[str | None, ...], tuple[str, ...]]  # key text, key fields, hashes


def key_positions(table: TablePlan) -> list[int]:
    """The columns that identify a row: its primary key's; without one (or with one the
    plan could not keep whole) the whole row is its own key (see the module docstring)."""
    positions = {c.name: i for i, c in enumerate(table.columns)}
    keys = [positions[k] for k in table.primary_key if k in positions]
    if keys and len(keys) == len(table.primary_key):
        return keys
    return list(range(len(table.columns)))


@dataclass
class TableCheck:
    """Everything both sides need to checksum one table the same way."""

    plan: Plan
    table: TablePlan
    skip: set[object] = field(default_factory=set)
    ranges: list[KeyRange] | None = None  # sampled key ranges, None = the whole table
    # the source side of one piece of the table, by rowid (see split_for_workers)
    rowids: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.renderings = [rendering(c) for c in self.table.columns]
        self.key_positions = key_positions(self.table)

    def unsupported(self) -> list[ColumnPlan]:
        return [c for c, r in zip(self.table.columns, self.renderings, strict=True) if r is None]

    def _render(self, position: int) -> Rendering:
        found = self.renderings[position]
        if found is None:  # callers check unsupported() first
            raise KeyError(self.table.columns[position].name)
        return found

    def pg_expression(self, position: int) -> str:
        return self._render(position).sql.format(c=quote_ident(self.table.columns[position].name))

    # ---- PostgreSQL ----

    def _pg_base(self) -> str:
        """One row per target row: its quoted fields f0..fn and raw key fields k0..km."""
        fields = [
            f"quote_nullable({self.pg_expression(i)}) AS f{i}"
            for i in range(len(self.table.columns))
        ]
        keys = [f"{self.pg_expression(p)} AS k{i}" for i, p in enumerate(self.key_positions)]
        where = self._where(quote_ident(self._key_column().name)) if self.ranges else ""
        return (
            f"SELECT {', '.join(fields + keys)} "
            f"FROM {qualified(self.plan.schema, self.table.name)}{where}"
        )

    def _pg_row_text(self) -> str:
        return "concat_ws(',', " + ", ".join(f"f{i}" for i in range(len(self.table.columns))) + ")"

    def _pg_key_text(self) -> str:
        return "concat_ws(',', " + ", ".join(f"f{p}" for p in self.key_positions) + ")"

    def pg_digest_sql(self) -> str:
        return digest_sql(f"SELECT md5({self._pg_row_text()}) AS h FROM ({self._pg_base()}) AS b")

    def pg_buckets_sql(self) -> str:
        """Digests per bucket: $1 = the bucket prefix so far, $2 = its length + BUCKET_HEX."""
        inner = (
            f"SELECT md5({self._pg_key_text()}) AS k, md5({self._pg_row_text()}) AS h "
            f"FROM ({self._pg_base()}) AS b OFFSET 0"
        )
        hashes = (
            f"SELECT left(k, $2::int) AS bucket, h "
            f"FROM ({inner}) AS r WHERE left(k, length($1::text)) = $1::text"
        )
        return digest_sql(hashes, "bucket")

    def pg_leaf_sql(self) -> str:
        """Rows of one bucket ($1): key text, raw key fields, md5 of each quoted field."""
        hashes = ", ".join(f"md5(f{i})" for i in range(len(self.table.columns)))
        keys = ", ".join(f"k{i}" for i in range(len(self.key_positions)))
        return (
            f"SELECT {self._pg_key_text()}, ARRAY[{keys}]::text[], ARRAY[{hashes}] "
            f"FROM ({self._pg_base()}) AS b "
            f"WHERE left(md5({self._pg_key_text()}), length($1::text)) = $1::text"
        )

    # ---- SQLite ----

    def _key_column(self) -> ColumnPlan:
        return self.table.columns[self.key_positions[0]]

    def _where(self, column: str) -> str:
        assert self.ranges is not None
        parts = [f"({column} BETWEEN {int(lo)} AND {int(hi)})" for lo, hi in self.ranges]
        return " WHERE (" + " OR ".join(parts) + ")"

    def source_exprs(self) -> list[str]:
        """What is read for each column (key columns as stored: they identify the row)."""
        return [
            source_value(c) if i not in self.key_positions else quote_sqlite_ident(c.source_name)
            for i, c in enumerate(self.table.columns)
        ]

    def source_where(self) -> str:
        where = (
            self._where(quote_sqlite_ident(self._key_column().source_name)) if self.ranges else ""
        )
        if self.rowids is None:
            return where
        rowid = sqlcanon.rowid_name(self)
        if rowid is None:  # split_for_workers splits only tables with a rowid to name
            raise ValueError(f"{self.table.name}: no name left for the rowid")
        low, high = self.rowids
        piece = f"{rowid} BETWEEN {int(low)} AND {int(high)}"
        return f"{where} AND {piece}" if where else f" WHERE {piece}"

    def source_sql(self) -> str:
        names = ", ".join(self.source_exprs())
        return (
            f"SELECT {names} FROM {quote_sqlite_ident(self.table.source_name)}{self.source_where()}"
        )

    def cells(self) -> list[Callable[[Any], str]]:
        return [cell(column, self._render(i)) for i, column in enumerate(self.table.columns)]

    def cell_paths(self) -> list[tuple[Quick | None, Callable[[Any], str]]]:
        """Each column's :func:`cell_paths` (for code that writes the call out)."""
        return [cell_paths(c, self._render(i)) for i, c in enumerate(self.table.columns)]

    def source_rows(self, conn: sqlite3.Connection) -> Iterator[list[str]]:
        """Each source row's fields, rendered and quoted, skipped rows left out.

        A value the transforms refuse becomes :data:`INVALID` (it cannot be in
        PostgreSQL as it is), unless the column's policy replaced it, as the load did.
        """
        cells = self.cells()
        cursor = conn.execute(self.source_sql())
        while batch := cursor.fetchmany(FETCH_ROWS):
            for row in batch:
                if self.skips(row):
                    continue
                yield [render(value) for render, value in zip(cells, row, strict=True)]

    def skips(self, row: Sequence[Any]) -> bool:
        """Whether the load rejected this source row (its key is in ``skip``)."""
        if not self.skip:
            return False
        keys = self.key_positions
        single = len(self.table.primary_key) == 1
        return (row[keys[0]] if single else tuple(row[p] for p in keys)) in self.skip

    def source_digest(self, conn: sqlite3.Connection) -> Digest:
        """SQLite renders what it can (asyncmig.check.sqlcanon); else the oracle, in Python.

        Text is decoded by sqlite3 itself first (a text factory is a Python call per
        value: 0.2 µs, a second a table of millions); a value that is not UTF-8
        stops that reading, and the table is read again with the connection's own
        factory, which settles such values as the load did."""
        factory = conn.text_factory
        if factory is str:
            return self._source_digest(conn)
        conn.text_factory = str
        try:
            return self._source_digest(conn)
        except sqlite3.OperationalError as exc:
            if not undecodable(exc):
                raise
        finally:
            conn.text_factory = factory
        return self._source_digest(conn)

    def _source_digest(self, conn: sqlite3.Connection) -> Digest:
        rowid = sqlcanon.rowid_name(self)
        if rowid is not None and sqlcanon.usable(conn, self.table.without_rowid):
            return sqlcanon.SourceRows(self, rowid).digest(conn, self.source_where())
        return self.oracle_digest(conn)

    def oracle_digest(self, conn: sqlite3.Connection) -> Digest:
        digest = Digest()
        for fields in self.source_rows(conn):
            digest.add(md5_hex(",".join(fields)))
        return digest

    def source_buckets(self, conn: sqlite3.Connection, prefix: str) -> dict[str, Digest]:
        width = len(prefix) + BUCKET_HEX
        buckets: dict[str, Digest] = {}
        for fields in self.source_rows(conn):
            key_hash = md5_hex(",".join(fields[p] for p in self.key_positions))
            if key_hash.startswith(prefix):
                buckets.setdefault(key_hash[:width], Digest()).add(md5_hex(",".join(fields)))
        return buckets

    def source_leaf(self, conn: sqlite3.Connection, prefix: str) -> list[LeafRow]:
        rows = []
        for fields in self.source_rows(conn):
            key_text = ",".join(fields[p] for p in self.key_positions)
            if md5_hex(key_text).startswith(prefix):
                rows.append(
                    (
                        key_text,
                        tuple(unquote_field(fields[p]) for p in self.key_positions),
                        tuple(md5_hex(f) for f in fields),
                    )
                )
        return rows

    # ---- explaining ----

    def describe_key(self, fields: Sequence[str | None]) -> str:
        parts = []
        for position, text in zip(self.key_positions, fields, strict=True):
            column = self.table.columns[position]
            shown = "NULL" if text is None else _safe_display(self._render(position), text)
            parts.append(f"{column.name}={shown}")
        return ", ".join(parts)

    def sort_key(self, fields: Sequence[str | None]) -> tuple[tuple[int, Any], ...]:
        """Key order for "first": integers as numbers, everything else as its text."""
        out: list[tuple[int, Any]] = []
        for position, text in zip(self.key_positions, fields, strict=True):
            if text is None:
                out.append((0, 0))
            elif (
                parse_type(self.table.columns[position].target_type)[0] in INTEGER_TYPES
                and text.lstrip("-").isdigit()
            ):
                out.append((1, int(text)))
            else:
                out.append((2, text))
        return tuple(out)


def source_value(column: ColumnPlan) -> str:
    """The SQLite expression read for ``column``: numbers of a date column are read into
    ISO text by SQLite's own date functions (asyncmig.plan.datenums), not by the load's
    conversion, so a value the load read differently from SQLite is a difference."""
    name = quote_sqlite_ident(column.source_name)
    if column.transform == "sqlite_date":
        reading = datenums.sql_reading(name)
        return (
            f"CASE WHEN {datenums.sql_midnight(name)} THEN substr({reading}, 1, 10) ELSE {name} END"
        )
    if column.transform in ("sqlite_timestamptz", "sqlite_timestamp"):
        return f"coalesce({datenums.sql_reading(name)}, {name})"
    return name


def unquote_field(field: str) -> str | None:
    """The text inside a :func:`quote_field` result (for showing a key to a person)."""
    if field == "NULL":
        return None
    if field == INVALID:
        return INVALID_SHOWN
    if field.startswith("E'"):
        return field[2:-1].replace("''", "'").replace("\\\\", "\\")
    return field[1:-1].replace("''", "'")


def _safe_display(render: Rendering, text: str) -> str:
    if text == INVALID_SHOWN:
        return text
    try:
        return render.display(text)
    except (ValueError, struct.error):
        return repr(text)


Quick = Callable[[Any], str | None]  # a rendering of the commonest values, None for others


def cell(column: ColumnPlan, rendering: Rendering, *, quick: bool = True) -> Callable[[Any], str]:
    """One SQLite value -> its quoted field: the quick path of :func:`cell_paths` where
    it answers, else the general one."""
    shortcut, general = cell_paths(column, rendering, quick=quick)
    if shortcut is None:
        return general

    def quickly(value: Any) -> str:
        return shortcut(value) or general(value)

    return quickly


def cell_paths(
    column: ColumnPlan, rendering: Rendering, *, quick: bool = True
) -> tuple[Quick | None, Callable[[Any], str]]:
    """One SQLite value -> its quoted field: transformed as the load did, then rendered.

    A value the transforms refuse becomes :data:`INVALID` (it cannot be in
    PostgreSQL as it is), unless the column's policy replaced it, as the load did.
    The commonest cases (integers, text and floats passed through; UUIDs, timestamps
    and IPv4 addresses in their usual spellings, see :func:`_quick`) skip the general
    path: this runs once per value the SQLite side does not render itself. Returns
    (the quick path, or None where there is none; the general path, which renders any
    value). ``quick`` False: the general path only (the tests compare the two).
    """
    transform = transform_for(column)
    render = rendering.python

    def general(value: Any) -> str:
        if value is None:
            return "NULL"
        try:
            if isinstance(value, InvalidText) and base_type(column.target_type) == "bytea":
                value = value.raw  # kept as it is, as the load did
            elif isinstance(value, InvalidText):
                raise TypeError("invalid UTF-8")  # settled by the policy, as the load did
            if transform is not None:
                value = transform(value)
        except VALUE_ERRORS:
            try:
                value = replacement(column, value, transform)[1]
            except VALUE_ERRORS:  # Rejected: the row is in skip_rows, never rendered
                return INVALID
            if value is None:
                return "NULL"
        try:
            return quote_field(render(value))
        except VALUE_ERRORS:
            return INVALID

    shortcut = _quick(column, render if transform is None else None) if quick else None
    if shortcut is None:
        return None, remembered(general) if render is jsonb_text else general
    return shortcut, general


MEMO_VALUES = 4096  # documents remembered per column: about 4 MB at most
MEMO_TEXT = 512  # characters: a longer document is rendered each time


def remembered(render: Callable[[Any], str]) -> Callable[[Any], str]:
    """``render`` with a bounded memo of short text values. A jsonb document is parsed
    and walked in Python (several µs), and applications repeat theirs: a permissions
    list, a settings object, a tag set (the 2Truths tables hold 3 to 601 distinct
    documents in 50,000 to 100,000 rows). The rendering is a function of the text
    alone, the column's transform and policy being fixed, so a remembered one is the
    one it would compute; the memo stops growing once full."""
    memo: dict[str, str] = {}

    def render_text(value: Any) -> str:
        if type(value) is not str or len(value) > MEMO_TEXT:
            return render(value)
        found = memo.get(value)
        if found is None:
            found = render(value)
            if len(memo) < MEMO_VALUES:
                memo[value] = found
        return found

    return render_text


_pack_double = struct.Struct(">d").pack
_pack_micros = struct.Struct(">q").pack


_HEX32 = re.compile("[0-9a-fA-F]{32}").fullmatch


def _quick_uuid(value: Any) -> str | None:
    """The common spellings (8-4-4-4-12 hex digits, or 32 hex digits as
    ``hex(randomblob(16))`` writes them), which the UUID they spell prints back in
    lower case, 8-4-4-4-12; anything else: None (the general path decides)."""
    if type(value) is not str:
        return None
    if CANONICAL_UUID(value):
        return "'" + value.lower() + "'"
    if _HEX32(value):
        v = value.lower()
        return f"'{v[:8]}-{v[8:12]}-{v[12:16]}-{v[16:20]}-{v[20:]}'"
    return None


def _quick_stamp(value: Any) -> str | None:
    """ISO text without an offset, years 2 to 9998, at most microseconds: the same
    reading as the transforms' (``fromisoformat``, naive is UTC, see
    :func:`_timestamptz` and :func:`_timestamp`), without their checks for the edge
    years and long fractions; any other value: None (the general path decides)."""
    if type(value) is not str or len(value) > 26:
        return None
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if stamp.tzinfo is not None or not 1 < stamp.year < 9999:
        return None
    return "'" + _pack_micros((stamp - PG_EPOCH_NAIVE) // ONE_MICROSECOND).hex() + "'"


def _quick_inet(value: Any) -> str | None:
    """An IPv4 or IPv6 address with or without a prefix of at most three digits, read
    by C's ``inet_pton`` (the same strict dotted quad ``ipaddress`` reads: no leading
    zeros, octets to 255; IPv6's groups of one to four hex digits, one ``::``, a dotted
    quad last; no zone id), as :func:`_inet` renders it; anything else: None."""
    if type(value) is not str:
        return None
    address, slash, prefix = value.partition("/")
    if slash and not (prefix.isascii() and prefix.isdigit() and len(prefix) <= 3):
        return None
    version, family, width = (
        (6, socket.AF_INET6, 128) if ":" in address else (4, socket.AF_INET, 32)
    )
    try:
        packed = socket.inet_pton(family, address)
    except (OSError, ValueError):
        return None
    bits = int(prefix) if slash else width
    if bits > width:
        return None
    return "'" + inet_send(version, bits, 0, packed).hex() + "'"


def _quick_numeric(value: Any) -> str | None:
    """An integer, or a finite float whose shortest repr has no exponent (what
    :func:`to_numeric` reads it as), in an unconstrained numeric: the text it prints
    as is numeric's; anything else (``-0.0``, ``1e-05``, text): None."""
    kind = type(value)
    if kind is int:
        return "'" + str(value) + "'"
    if kind is float:
        text = repr(value)
        if "e" not in text and "n" not in text and text != "-0.0":
            return "'" + text + "'"
    return None


def _quick_int(value: Any) -> str | None:
    return f"'{value}'" if type(value) is int else None


# quick paths that generated code writes out as one expression giving the field's UTF-8
# bytes ({v}: the value; {general}: the general path's bytes for any other value)
WRITTEN_OUT: Mapping[Callable[[Any], str | None], str] = {
    _quick_int: "(b\"'%d'\" % {v} if type({v}) is int else {general})",
}


def _quick_text(value: Any) -> str | None:
    return quote_field(value) if type(value) is str else None


def _quick_float8(value: Any) -> str | None:
    return f"'{_pack_double(value).hex()}'" if type(value) is float else None


# renderings whose value of one type needs no transform (``untransformed``), and the
# quick path for that type
_PASSED_THROUGH: dict[Callable[[Any], str], Callable[[Any], str | None]] = {
    _int: _quick_int,
    _text: _quick_text,
    _float8: _quick_float8,
}


def _quick(
    column: ColumnPlan, untransformed: Callable[[Any], str] | None = None
) -> Callable[[Any], str | None] | None:
    """A faster rendering of a column's commonest values, or None. ``untransformed``:
    the column's rendering when its transform is none (integers, text and floats are
    then passed through as they are)."""
    if untransformed in _PASSED_THROUGH:
        return _PASSED_THROUGH[untransformed]
    name, mods = parse_type(column.target_type)
    if name == "uuid" and column.transform in ("none", "uuid", "uuid_checked"):
        return _quick_uuid
    if name == "inet" and column.transform in ("none", "inet", "inet_checked"):
        return _quick_inet
    if name == "numeric" and not mods and column.transform in ("none", "numeric"):
        return _quick_numeric
    precise = not mods or mods[-1] >= 6
    if precise and (name, column.transform) in _QUICK_STAMPS:
        return _quick_stamp
    return None


_QUICK_STAMPS = {
    ("timestamptz", "timestamptz"),
    ("timestamptz", "timestamptz_checked"),
    ("timestamp", "timestamp"),
}


# --- the two sides together -------------------------------------------------------


async def both_sides(source: Callable[[], S], target: Callable[[], Awaitable[T]]) -> tuple[S, T]:
    """SQLite in a worker thread while PostgreSQL answers on the connection."""
    return await concurrently(lambda: anyio.to_thread.run_sync(source), target)


async def concurrently(
    first: Callable[[], Awaitable[S]], second: Callable[[], Awaitable[T]]
) -> tuple[S, T]:
    """Both coroutines at once; the first error stops both."""
    found: dict[str, Any] = {}

    async def run_first() -> None:
        found["first"] = await first()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_first)
            found["second"] = await second()
    except BaseExceptionGroup as group:
        raise first_error(group) from group
    return found["first"], found["second"]


def in_processes(plan: Plan, processes: bool | None) -> bool:
    """Large sources are rendered in WORKERS processes, one table each (None: by size)."""
    if processes is not None:
        return processes
    return sum(t.row_count for t in plan.tables) >= PROCESS_ROWS


async def source_in_processes(
    source: Path, plan: Plan, checks: Sequence[TableCheck]
) -> dict[str, Digest | str]:
    """Each table's source digest in a worker process, the most work first (see
    :func:`source_work`), so both cores render while PostgreSQL answers (its side is
    cheaper) and neither is left alone with a long table at the end. ``checks`` may
    hold pieces of a table (:func:`split_for_workers`): their digests are added up,
    as the digest of a set of rows is a sum over its rows."""
    limiter = anyio.CapacityLimiter(WORKERS)
    found: dict[str, Digest | str] = {}

    async def one(check: TableCheck) -> None:
        outcome = await anyio.to_process.run_sync(
            source_outcome_of,
            source,
            plan,
            check.table.name,
            check.skip,
            check.ranges,
            check.rowids,
            cancellable=True,  # a SIGTERM kills the worker: it only reads the source
            limiter=limiter,
        )
        name = check.table.name
        found[name] = _added(found[name], outcome) if name in found else outcome

    try:
        async with anyio.create_task_group() as tg:
            for check in sorted(checks, key=lambda c: -_piece_work(c)):
                tg.start_soon(one, check)
    except BaseExceptionGroup as group:
        raise first_error(group) from group
    finally:
        await retire_workers()
    return found


def _added(first: Digest | str, second: Digest | str) -> Digest | str:
    """Two pieces' outcomes as the whole table's (why one failed, if one did)."""
    if isinstance(first, str):
        return first
    if isinstance(second, str):
        return second
    return first + second


def _piece_work(check: TableCheck) -> float:
    """A check's share of :func:`source_work`: a piece holds one of WORKERS."""
    work = source_work(check.table)
    return work if check.rowids is None else work / WORKERS


def split_for_workers(conn: sqlite3.Connection, checks: Sequence[TableCheck]) -> list[TableCheck]:
    """The checks, with a table holding more than a worker's share of the work
    (:func:`source_work`) read as WORKERS pieces by rowid instead, one per worker:
    a Northwind-shaped source (90 % of its rows in one table) kept one worker
    busy while the other had finished. Only whole tables with a rowid are split (not
    sampled ones), at even steps of the rowid between its least and greatest."""
    total = sum(source_work(c.table) for c in checks)
    out: list[TableCheck] = []
    for check in checks:
        bounds = None
        if source_work(check.table) * WORKERS > total and not check.ranges:
            bounds = _rowid_bounds(conn, check)
        if bounds is None:
            out.append(check)
            continue
        low, high = bounds
        step = (high - low + 1) // WORKERS
        edges = [low + i * step for i in range(WORKERS)] + [high + 1]
        out += [
            dataclasses.replace(check, rowids=(edges[i], edges[i + 1] - 1)) for i in range(WORKERS)
        ]
    return out


def _rowid_bounds(conn: sqlite3.Connection, check: TableCheck) -> tuple[int, int] | None:
    """The table's least and greatest rowid, when it has one to split by."""
    rowid = sqlcanon.rowid_name(check)
    if rowid is None or check.table.without_rowid:
        return None
    try:
        low, high = conn.execute(
            f"SELECT min({rowid}), max({rowid}) FROM {quote_sqlite_ident(check.table.source_name)}"
        ).fetchone()
    except sqlite3.Error:
        return None  # the whole table's reading reports the problem
    if not isinstance(low, int) or not isinstance(high, int) or high - low < WORKERS:
        return None
    return low, high


ROW_COST_BYTES = 64  # a row's own cost (fetching, hashing) as that of so many bytes


def source_work(table: TablePlan) -> int:
    """A table's share of the SQLite side's work: its rows and their bytes (the plan's
    average row size). On the 2M-row 2Truths database the cost per page of source
    varied 0.22-0.62 ms where the cost per row varied 4-62 µs (60,000 rows of JSON
    took 3.7 s, 440,000 small rows 1.75 s): ordered by rows, one worker finished a
    second after the other."""
    return table.row_count * (ROW_COST_BYTES + table.row_bytes)


def source_outcome_of(
    source: Path,
    plan: Plan,
    table: str,
    skip: set[object],
    ranges: list[KeyRange] | None,
    rowids: tuple[int, int] | None = None,
) -> Digest | str:
    """One table's (or piece's) source digest on a connection of its own (run in a
    worker process)."""
    sqlite = open_sync(source)
    sqlite.text_factory = lenient_text
    try:
        check = TableCheck(plan, plan.table(table), skip, ranges, rowids)
        return _source_outcome(sqlite, source, check)
    finally:
        sqlite.close()


def _source_outcome(conn: sqlite3.Connection, source: Path, check: TableCheck) -> Digest | str:
    """The source digest, or why the table could not be read (the table or a column gone)."""
    try:
        return check.source_digest(conn)
    except sqlite3.OperationalError as exc:
        if "no such" in str(exc):
            return f"{MISSING} in source ({exc})"
        raise source_error(source, exc) from exc
    except sqlite3.DatabaseError as exc:
        raise source_error(source, exc) from exc


def sample_ranges_for(
    conn: sqlite3.Connection, check: TableCheck, count: int
) -> list[KeyRange] | None:
    """``count`` key ranges spread over [min, max], each ~1% of the span / count wide.

    Only a single integer key whose values SQLite already holds as integers
    (transform "none") can be filtered alike on both sides; any other table, or one
    the ranges would cover entirely, gets the full check (None).
    """
    table = check.table
    if len(table.primary_key) != 1 or count < 1:
        return None
    column = table.column(table.primary_key[0])
    if parse_type(column.target_type)[0] not in INTEGER_TYPES or column.transform != "none":
        return None
    name = quote_sqlite_ident(column.source_name)
    try:
        low, high = conn.execute(
            f"SELECT min({name}), max({name}) FROM {quote_sqlite_ident(table.source_name)}"
        ).fetchone()
    except sqlite3.Error:
        return None  # the full check reports the problem
    if not isinstance(low, int) or not isinstance(high, int):
        return None
    span = high - low + 1
    width = max(1, (high - low) // count // 100)
    if width * count >= span:
        return None
    return [(low + i * span // count, low + i * span // count + width - 1) for i in range(count)]


@asynccontextmanager
async def _snapshot(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """One read-only snapshot for all tables, so explain re-reads what was checked."""
    if conn.is_in_transaction():
        yield
        return
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        yield


async def _pg_digest(
    conn: asyncpg.Connection, check: TableCheck, existing: set[str]
) -> Digest | str:
    if check.table.name not in existing:
        return MISSING
    try:
        async with conn.transaction():  # a savepoint: one table's error spares the rest
            return digest_of(await conn.fetchrow(check.pg_digest_sql()))
    except asyncpg.PostgresError as exc:
        return error_text(exc)


async def explain_table(
    conn: asyncpg.Connection, sqlite: sqlite3.Connection, check: TableCheck, rows: int
) -> str:
    """Name the first differing key: descend through key-hash buckets to a small one.

    ``rows`` is the larger of the two sides' row counts: each leaf holds at most
    about LEAF_ROWS rows in memory, whichever side has them.
    """
    prefix = ""
    while rows > LEAF_ROWS:  # a small table is compared row by row at once
        src, pg = await both_sides(
            partial(check.source_buckets, sqlite, prefix),
            partial(conn.fetch, check.pg_buckets_sql(), prefix, len(prefix) + BUCKET_HEX),
        )
        target = {str(r[0]): digest_of(r[1:]) for r in pg}
        differing = sorted(b for b in src.keys() | target.keys() if src.get(b) != target.get(b))
        if not differing:
            return "no differing row found on re-reading"
        prefix = differing[0]
        rows = max(d.count for d in (src.get(prefix), target.get(prefix)) if d is not None)
        if len(prefix) + BUCKET_HEX > 32:
            break
    src_rows, pg_rows = await both_sides(
        partial(check.source_leaf, sqlite, prefix), partial(conn.fetch, check.pg_leaf_sql(), prefix)
    )
    target_rows: list[LeafRow] = [(str(r[0]), tuple(r[1]), tuple(r[2])) for r in pg_rows]
    return _describe(check, src_rows, target_rows)


def _describe(check: TableCheck, source: list[LeafRow], target: list[LeafRow]) -> str:
    """The first differing key of one bucket and what differs there."""
    missing = Counter(source) - Counter(target)
    extra = Counter(target) - Counter(source)
    keys: dict[str, tuple[str | None, ...]] = {}
    for key_text, fields, _ in [*missing, *extra]:
        keys.setdefault(key_text, fields)
    if not keys:
        return "no differing row found on re-reading"
    first = min(keys, key=lambda k: check.sort_key(keys[k]))
    shown = check.describe_key(keys[first])
    lost = [row for row in missing if row[0] == first]
    added = [row for row in extra if row[0] == first]
    if lost and added:
        columns = [
            c.name
            for c, a, b in zip(check.table.columns, lost[0][2], added[0][2], strict=True)
            if a != b
        ]
        what = f"{', '.join(columns)} differ" if len(columns) > 1 else f"{columns[0]} differs"
        if check.key_positions == list(range(len(check.table.columns))):
            what = "row differs"
        return f"first differing key {shown}: {what}"
    if lost:
        return f"first differing key {shown}: row missing in PostgreSQL"
    return f"first differing key {shown}: row not in SQLite"


def _rows(count: int) -> str:
    return f"{count} row{'' if count == 1 else 's'}"


async def deep_check(
    plan: Plan,
    conn: asyncpg.Connection,
    source: Path,
    *,
    explain: bool = False,
    sample_ranges: int | None = None,
    skip_rows: Mapping[str, set[object]] | None = None,
    processes: bool | None = None,
) -> list[CheckResult]:
    """One ``checksum`` result per table, in plan order (see the module docstring).

    ``skip_rows`` maps a table to the SQLite key values of rows the load rejected
    (a scalar for a one-column key, a tuple for a composite one); they are left out
    of the source side. ``sample_ranges`` checks only that many key ranges of tables
    with a single integer key; the result's subject then says so.
    """
    sqlite = await anyio.to_thread.run_sync(open_sync, source)
    sqlite.text_factory = lenient_text  # undecodable text is settled by its policy, not fatal
    try:
        return await _run(
            plan, conn, source, sqlite, explain, sample_ranges, skip_rows or {}, processes
        )
    finally:
        sqlite.close()


async def _run(
    plan: Plan,
    conn: asyncpg.Connection,
    source: Path,
    sqlite: sqlite3.Connection,
    want_explain: bool,
    sample_ranges: int | None,
    skip_rows: Mapping[str, set[object]],
    processes: bool | None,
) -> list[CheckResult]:
    checks = [TableCheck(plan, t, set(skip_rows.get(t.name, ()))) for t in plan.tables]
    supported = [c for c in checks if not c.unsupported()]

    def prepare() -> None:
        if sample_ranges is not None:
            for check in supported:
                check.ranges = sample_ranges_for(sqlite, check, sample_ranges)

    async def read_source() -> dict[str, Digest | str]:
        if not in_processes(plan, processes):
            return await anyio.to_thread.run_sync(
                lambda: {c.table.name: _source_outcome(sqlite, source, c) for c in supported}
            )
        pieces = await anyio.to_thread.run_sync(split_for_workers, sqlite, supported)
        return await source_in_processes(source, plan, pieces)

    async def read_target() -> dict[str, Digest | str]:
        existing = await existing_tables(conn, plan)
        return {c.table.name: await _pg_digest(conn, c, existing) for c in supported}

    results = []
    async with _snapshot(conn):
        await anyio.to_thread.run_sync(prepare)
        sources, targets = await concurrently(read_source, read_target)
        for check in checks:
            name = check.table.name
            subject = f"sampled {len(check.ranges)} key ranges" if check.ranges else ""
            if check.unsupported():
                columns = ", ".join(f"{c.name} ({c.target_type})" for c in check.unsupported())
                results.append(
                    CheckResult(
                        CHECKSUM,
                        name,
                        subject,
                        "checksum",
                        f"cannot checksum column {columns}",
                        False,
                    )
                )
                continue
            want, got = sources[name], targets[name]
            expected = want.checksum() if isinstance(want, Digest) else want
            found = got.checksum() if isinstance(got, Digest) else got
            ok = isinstance(want, Digest) and want == got
            if not ok and want_explain and isinstance(want, Digest) and isinstance(got, Digest):
                detail = _rows(got.count) + (
                    f", {want.count} in SQLite" if got.count != want.count else ""
                )
                found = f"{found} ({detail}); {await explain_table(conn, sqlite, check, max(got.count, want.count))}"
            results.append(
                CheckResult(
                    CHECKSUM,
                    name,
                    subject,
                    expected,
                    found,
                    ok,
                    _digest_values(want),
                    _digest_values(got),
                )
            )
    return results


__all__ = ["CHECKSUM", "deep_check", "jsonb_text", "numeric_text", "rendering"]
