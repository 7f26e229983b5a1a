"""Per-value conversions from what SQLite returns to what asyncpg's binary COPY takes.

Each transform converts one non-NULL value exactly or raises ``ValueError`` /
``TypeError``; it never guesses. Where asyncpg's own codec already converts the
value exactly (UUID and inet text, proven valid by the profile; JSON text, which
jsonb parses itself, keeping key order and the exact digits of numbers), the
transform is ``None`` and costs nothing.

Per batch, :func:`build_batch_transform` compiles one comprehension touching only
the columns that need work, and reports a failure with the row's key.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import orjson

from asyncmig.errors import DataError
from asyncmig.load import codecs
from asyncmig.load.policy import VALUE_ERRORS, TableGuard, key_positions, row_key
from asyncmig.plan import datenums
from asyncmig.plan.model import ColumnPlan, TablePlan, base_type

Transform = Callable[[Any], Any]
Batch = list[tuple[Any, ...]]

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
PG_DAY = dt.date(2000, 1, 1)  # any day: a time of day with an offset is moved within one
MAX_FRACTION_DIGITS = 6


def to_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    raise ValueError("not an integer")


def to_float(value: Any) -> float:
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        result = float(value)
        if int(result) != value:
            raise ValueError("integer too large for double precision without rounding")
        return result
    if isinstance(value, str):
        return float(value)
    raise TypeError("not a number")


def to_numeric(value: Any) -> Decimal | int:
    """Exact: a float becomes the decimal it prints as (asyncpg would expand its binary value)."""
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("not a number") from None
    raise TypeError("not a number")


def to_text(value: Any) -> str:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text contains a NUL character, which PostgreSQL text cannot hold")
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same double
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise TypeError("not text")


def check_text(value: Any) -> str:
    if isinstance(value, str) and "\x00" not in value:
        return value
    return to_text(value)


def text_only(value: Any) -> str:
    """Text, as a column declared TEXT promises: a blob (or anything else) does not
    fit, and goes through the column's policy (see asyncmig.plan.contract)."""
    if not isinstance(value, str):
        raise TypeError("not text")
    return check_text(value)


def to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, int):
        return str(value).encode()
    raise TypeError("not bytes")


def to_json(value: Any) -> str:
    """Validated, then passed as the original text: jsonb keeps numbers' digits that way.

    A number is JSON too: a column declared JSON has numeric affinity, so SQLite stores
    an ORM's ``json.dumps(42)`` as the integer 42, which its json functions read as the
    document ``42``; a REAL is written in the shortest digits that read back as it."""
    if type(value) is int:
        return str(value)
    if type(value) is float:
        if not math.isfinite(value):
            raise ValueError("not a JSON number (infinite)")
        return repr(value)
    text = value.decode("utf-8") if isinstance(value, bytes) else value
    if not isinstance(text, str):
        raise TypeError("JSON must be text")
    orjson.loads(text)
    if "\\u0000" in text:
        raise ValueError("JSON with \\u0000, which jsonb cannot hold")
    return unique_keys(text)


_CLEAN: set[str] = set()  # short documents found without duplicate keys (bounded)
_CLEAN_MAX = 4096
_CLEAN_TEXT = 512


def unique_keys(text: str) -> str:
    """``text`` unless an object in it repeats a key: jsonb keeps the last value of a
    repeated key where SQLite's json functions read the first, so the document would
    mean something else in PostgreSQL. Refused instead (the column's policy decides).

    Cheap first: fewer than two colons cannot hold two keys; otherwise the document is
    parsed and printed again by orjson (about 1 µs for 100 characters), which drops a
    repeated key and with it a colon; the exact check (``json`` with a hook per object)
    runs only when that shows fewer colons, or when an escaped colon could hide one.
    Applications repeat their documents: short ones found clean are remembered."""
    if text.count(":") < 2 or text in _CLEAN:
        return text
    if not colons_kept(text):
        repeated = _repeated_key(text)
        if repeated is not None:
            raise ValueError(
                f"JSON object with the key {repeated!r} twice: jsonb keeps only the last "
                "value, SQLite's json functions read the first"
            )
    if len(text) <= _CLEAN_TEXT and len(_CLEAN) < _CLEAN_MAX:
        _CLEAN.add(text)
    return text


def colons_kept(text: str) -> bool | None:
    """Whether ``text`` printed again by orjson (which drops a repeated key, and with it
    a colon) has as many colons, none of them escaped (``\\u003a`` could hide one): then
    no object in it repeats a key. None: orjson does not parse it."""
    try:
        again = orjson.dumps(orjson.loads(text))
    except orjson.JSONDecodeError:
        return None
    if "\\u" in text and ("\\u003a" in text or "\\u003A" in text):
        return False
    return again.count(b":") == text.count(":")


class _Repeated(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_repeats(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _value in pairs:
        if key in seen:
            raise _Repeated(key)
        seen.add(key)


def _repeated_key(text: str) -> str | None:
    try:
        json.loads(
            text, object_pairs_hook=_no_repeats, parse_int=str, parse_float=str, parse_constant=str
        )
    except _Repeated as found:
        return found.key
    except ValueError:  # not JSON: not this check's to judge (PostgreSQL refuses it)
        return None
    return None


def to_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, bytes) and len(value) == 16:
        return uuid.UUID(bytes=value)
    if not isinstance(value, str):
        raise TypeError("not a UUID")
    return uuid.UUID(value)


# the spelling PostgreSQL prints: 8-4-4-4-12 hex digits, either case
CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}").fullmatch


def to_uuid_text(value: Any) -> str | uuid.UUID:
    """Checked as :func:`to_uuid`, faster for the common spelling: a canonical string is
    passed on as it is (asyncpg encodes it, in C, to the same 16 bytes as the UUID it
    spells; parsing it into a ``uuid.UUID`` cost about 3 µs a value); any other
    spelling, or 16 bytes, goes through :func:`to_uuid`."""
    if isinstance(value, str) and CANONICAL_UUID(value):
        return value
    return to_uuid(value)


def to_inet(value: Any) -> str:
    from asyncmig.source.scan import is_inet

    if not is_inet(value):
        raise ValueError("not an IP address PostgreSQL accepts unchanged")
    return str(value)


_BOOLEANS: Mapping[Any, bool] = {
    0: False,
    1: True,
    "0": False,
    "1": True,
    "t": True,
    "f": False,
    "true": True,
    "false": False,
}


def to_bool(value: Any) -> bool:
    try:
        key = value.lower() if isinstance(value, str) else value
        return _BOOLEANS[key]
    except (KeyError, TypeError):
        raise ValueError("not a boolean (0/1, t/f, true/false)") from None


def _check_fraction(text: str, seconds_end: int = 19) -> None:
    """fromisoformat drops digits beyond microseconds; refuse rather than round silently.
    ``seconds_end``: where the fraction's dot may come (19 in a timestamp, 8 in a time)."""
    dot = text.find(".", seconds_end)
    if dot < 0:
        return
    digits = 0
    for char in text[dot + 1 :]:
        if not char.isdigit():
            break
        digits += 1
    if digits > MAX_FRACTION_DIGITS:
        raise ValueError("more than 6 fraction digits: PostgreSQL keeps microseconds")


# blanks SQLite's date functions skip and fromisoformat refuses: before the zone
# (Sequelize writes '2023-11-14 22:13:20.000 +00:00') and after the value
_ZONE_APART = re.compile(r"(?<=\d)\s+(?=(?:[+-]\d\d:\d\d|Z)\Z)")


def from_iso(text: str) -> dt.datetime:
    """``datetime.fromisoformat``, and the spellings beside it that SQLite's date
    functions read the same: blanks before the zone offset or after the value (Python
    3.11 reads ``22:13:20 +00:00`` but not ``22:13:20.000 +00:00``)."""
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        tidy = _ZONE_APART.sub("", text.rstrip())
        if tidy == text:
            raise
        return dt.datetime.fromisoformat(tidy)


def to_timestamptz(value: Any) -> dt.datetime:
    """ISO text; naive values are UTC (the documented policy).

    The inlined fast path returns naive results as they are (asyncpg's timestamptz
    codec reads a naive datetime as UTC, which saves a call per value). Years 1 and
    9999 are kept as they are (``0001-01-01 00:00:00``, .NET's default date): the COPY
    encodes timestamptz itself (:mod:`asyncmig.load.codecs`), exactly, where asyncpg's
    encoder would turn those two instants into -infinity and infinity.
    """
    if len(value) > 26:
        _check_fraction(value)
    parsed = from_iso(value)
    # the fast path leaves naive values naive; here (years 1 and 9999, overrides) the
    # zone is made explicit, since asyncpg's local-time step fails near year 1
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# asyncpg's codecs send these exact values as -infinity / infinity: a real date
# 0001-01-01 (a common placeholder) would silently become another value. They are
# refused instead, so the column's policy decides (the reject store, by default).
_INFINITE = {
    dt.date.min,
    dt.date.max,
    dt.datetime.min,
    dt.datetime.max,
    dt.datetime.min.replace(tzinfo=UTC),
    dt.datetime.max.replace(tzinfo=UTC),
}
EDGE_YEARS = frozenset({"0001", "9999"})
DateLike = TypeVar("DateLike", dt.date, dt.datetime)


def not_infinite(value: DateLike) -> DateLike:
    if value in _INFINITE or (
        isinstance(value, dt.datetime)
        and value.tzinfo is not None
        and value.astimezone(UTC).replace(tzinfo=None) in _INFINITE
    ):
        raise ValueError(f"{value} would be stored as infinity by the PostgreSQL driver")
    return value


def to_timestamp(value: Any) -> dt.datetime:
    """Wall-clock time without a zone; a value with an offset is converted to UTC first."""
    if not isinstance(value, str):
        raise TypeError("not a timestamp text")
    if len(value) > 26:
        _check_fraction(value)
    parsed = from_iso(value)
    return not_infinite(parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed)


def to_date(value: Any) -> dt.date:
    if not isinstance(value, str) or len(value) != 10:
        raise ValueError("not a YYYY-MM-DD date")
    return not_infinite(dt.date.fromisoformat(value))


def to_time(value: Any) -> dt.time:
    """A time of day. One with a zone offset is read as SQLite's ``time()`` reads it,
    the offset applied (``10:00:00+02:00`` is ``08:00:00``), as :func:`to_timestamp`
    converts a timestamp with one; more than six fraction digits are refused."""
    if not isinstance(value, str):
        raise TypeError("not a time text")
    if len(value) > 15:  # longer than HH:MM:SS.ffffff
        _check_fraction(value, 8)
    moment = dt.time.fromisoformat(value)
    if moment.tzinfo is None:
        return moment
    return dt.datetime.combine(PG_DAY, moment).astimezone(UTC).time()


def epoch(micros_per_unit: int) -> Transform:
    def convert(value: Any) -> dt.datetime:
        if isinstance(value, int):
            micros = value * micros_per_unit
        elif isinstance(value, float):
            micros = int((Decimal(repr(value)) * micros_per_unit).to_integral_value())
        else:
            raise TypeError("not an epoch number")
        return EPOCH + dt.timedelta(microseconds=micros)

    return convert


def _dated_number(value: float) -> dt.datetime:
    """A number of a date column as SQLite's date functions read it (asyncmig.plan.datenums)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a date number")
    return not_infinite(EPOCH + dt.timedelta(microseconds=datenums.micros(value)))


def sqlite_timestamptz(value: Any) -> dt.datetime:
    """Julian day numbers and Unix times by magnitude, per value; ISO text as usual."""
    return to_timestamptz(value) if isinstance(value, str) else _dated_number(value)


def sqlite_timestamp(value: Any) -> dt.datetime:
    """As :func:`sqlite_timestamptz`, as UTC wall-clock time without a zone."""
    if isinstance(value, str):
        return to_timestamp(value)
    return _dated_number(value).replace(tzinfo=None)


def sqlite_date(value: Any) -> dt.date:
    """A number that reads as a whole day; one with a time of day does not fit a date."""
    if isinstance(value, str):
        return to_date(value)
    stamp = _dated_number(value)
    if stamp.time() != dt.time():
        raise ValueError(
            f"{value!r} reads as {stamp:%Y-%m-%d %H:%M:%S.%f}: a date would drop its time of day"
        )
    return not_infinite(stamp.date())


# --- the declared type kept (asyncmig.plan.contract): a value that does not fit raises, and
# the column's policy decides; nothing is converted that the column did not hold as is


def int_strict(value: Any) -> int:
    if type(value) is int:
        return value
    raise ValueError("not an integer")


def float_strict(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return to_float(value)
    raise ValueError("not a number")


def numeric_strict(value: Any) -> Decimal | int:
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return to_numeric(value)
    raise ValueError("not a finite number")


def bytes_strict(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    raise ValueError("not a blob")


def numeric_fit(precision: int, scale: int) -> Transform:
    """numeric(p, s): a number PostgreSQL would store without rounding it or refusing it."""
    limit = Decimal(10) ** (precision - scale)

    def convert(value: Any) -> Decimal | int:
        number = numeric_strict(value)
        exact = Decimal(number)
        if abs(exact) >= limit:
            raise ValueError(f"more than {precision - scale} digits before the point")
        if not isinstance(number, int) and _scale(exact) > scale:
            raise ValueError(f"more than {scale} digits after the point: it would be rounded")
        return number

    return convert


def _scale(number: Decimal) -> int:
    """Digits after the point (a float's shortest repr has at most 17: normalize is exact)."""
    exponent = number.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def varchar_fit(length: int) -> Transform:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError("not text")
        if len(value) > length:
            raise ValueError(f"{len(value)} characters, longer than {length}")
        return check_text(value)

    return convert


_MODIFIERS = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


def transform_for(column: ColumnPlan) -> Transform | None:
    """The column's transform; numeric_fit and varchar_fit take the type's modifiers."""
    if column.transform in ("numeric_fit", "varchar_fit"):
        found = _MODIFIERS.search(column.target_type)
        if found is None:
            raise KeyError(
                f"{column.name}: {column.transform} needs a type with modifiers, "
                f"not {column.target_type!r}"
            )
        if column.transform == "varchar_fit":
            return varchar_fit(int(found.group(1)))
        return numeric_fit(int(found.group(1)), int(found.group(2) or 0))
    if column.transform not in TRANSFORMS:
        raise KeyError(f"{column.name}: unknown transform {column.transform!r}")
    return TRANSFORMS[column.transform]


TRANSFORMS: Mapping[str, Transform | None] = {
    "none": None,
    "int": to_int,
    "float": to_float,
    "numeric": to_numeric,
    "text": to_text,
    "text_nul_check": check_text,
    "text_only": text_only,
    "bytes": to_bytes,
    "bytes_from_any": to_bytes,
    "json": to_json,
    "json_text": None,  # json_valid() and unique keys proved by the profile or the load
    "uuid": None,  # text proven by the profile; asyncpg parses both spellings
    "uuid_checked": to_uuid,
    "uuid_text_checked": to_uuid_text,
    "inet": None,  # text proven by the profile
    "inet_checked": to_inet,
    "bool": to_bool,
    "bool_int": to_bool,  # only integers 0/1, proved by the profile: inlined
    "date": to_date,
    "time": to_time,
    "timestamp": to_timestamp,
    "timestamptz": to_timestamptz,  # inlined as fromisoformat: the profile proved the spelling
    "timestamptz_checked": to_timestamptz,
    "epoch_s": epoch(1_000_000),
    "epoch_ms": epoch(1_000),
    "epoch_us": epoch(1),
    "sqlite_timestamptz": sqlite_timestamptz,
    "sqlite_timestamp": sqlite_timestamp,
    "sqlite_date": sqlite_date,
    "int_strict": int_strict,
    "float_strict": float_strict,
    "numeric_strict": numeric_strict,
    "bytes_strict": bytes_strict,
}


def column_transforms(table: TablePlan) -> list[tuple[int, Transform]]:
    found = []
    for position, column in enumerate(table.columns):
        function = transform_for(column)
        if function is not None:
            found.append((position, function))
    return found


# Transforms whose exactness the profile scan has already proved for every value
# (see asyncmig.source.scan.acceptance) are written inline into the generated row
# expression, saving a Python call per value; a value that still fails raises, and
# the batch is then explained value by value with the checked function.
def local_time_is_utc() -> bool:
    """asyncpg reads a naive datetime as *local* time for timestamptz: only in a UTC
    process may the fast path leave values naive (the CLI sets TZ=UTC for itself)."""
    return time.timezone == 0 and time.altzone == 0 and not time.daylight


INLINE: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    "bool_int": ("({v} == 1)", {}),
    # the year test keeps the common case to one C call; only years 1 and 9999 can be
    # the values asyncpg would turn into infinity
    "timestamptz": (
        "(_iso({v}) if {v}[:4] not in _edge else _checked({v}))",
        {"_iso": dt.datetime.fromisoformat, "_edge": EDGE_YEARS, "_checked": to_timestamptz},
    ),
}


Pair = tuple[Batch, Batch]  # (rows to load, the same rows as read: for the reject store)


ENCODED_TYPES: Mapping[str, str] = {
    "timestamptz": "timestamptz",
    "numeric": "numeric",
    "inet": "inet",  # text the profile proved: no transform, but encoded (codecs.inet_bytes)
}


def _encoded_template(transform: str, i: int) -> tuple[str, dict[str, Any]]:
    """The template (and its helpers) that hands column ``i``'s value over already in
    PostgreSQL's binary form (:mod:`asyncmig.load.codecs`)."""
    if transform == "inet":
        return "_inet({v})", {"_inet": codecs.inet_bytes}
    if transform == "timestamptz":
        return (
            "(_pack((_iso({v}) - _E) // _US) if {v}[:4] not in _edge else _checked({v}))",
            {
                **INLINE["timestamptz"][1],
                "_pack": codecs.pack_int64,
                "_E": codecs.PG_EPOCH,
                "_US": codecs.ONE_MICROSECOND,
            },
        )
    # one cache per column and Python type: 1 and 1.0 are equal keys, not equal numerics
    template = f"(_nf{i}[{{v}}] if type({{v}}) is float else _ni{i}[{{v}}] if type({{v}}) is int "
    return (
        template + "else _nb({v}))",
        {
            f"_nf{i}": codecs.EncodedCache(codecs.float_numeric_bytes),
            f"_ni{i}": codecs.EncodedCache(codecs.numeric_bytes),
            "_nb": lambda value: codecs.numeric_bytes(to_numeric(value)),
        },
    )


def encoded_columns(table: TablePlan) -> dict[int, str]:
    """Column position -> target type, for the columns :func:`build_batch_transform`
    (``encode=True``) hands over as bytes: the COPY's connection must take them so."""
    return {
        position: ENCODED_TYPES[column.transform]
        for position, column in enumerate(table.columns)
        if column.transform in ENCODED_TYPES
        and base_type(column.target_type) == ENCODED_TYPES[column.transform]
    }


def exact_codecs(table: TablePlan) -> frozenset[str]:
    """The types whose values the COPY's connection must encode itself whatever the
    transform: a timestamptz column, however its values were read (ISO text, Unix or
    Julian numbers), holds ``0001-01-01 00:00:00`` and ``9999-12-31 23:59:59.999999``,
    which asyncpg's own encoder sends as -infinity and infinity."""
    return frozenset(
        "timestamptz" for c in table.columns if base_type(c.target_type) == "timestamptz"
    )


def _row_function(
    table: TablePlan,
    work: list[tuple[int, Transform]],
    encoded: Mapping[int, str],
    *,
    inline: bool = True,
) -> Callable[[Batch], Batch]:
    """The batch comprehension (see build_batch_transform); ``encoded`` columns use
    the templates that produce bytes; without ``inline``, every column calls its
    transform (the checked path, e.g. for timestamps fromisoformat alone refuses)."""
    by_position = dict(work)
    namespace: dict[str, Any] = {f"f{i}": fn for i, fn in by_position.items()}
    items = []
    for i, column in enumerate(table.columns):
        name = f"r{i}"
        if i not in by_position:
            items.append(name)
            continue
        template, helpers = INLINE.get(column.transform, (f"f{i}({{v}})", {}))
        if not inline or (column.transform == "timestamptz" and not local_time_is_utc()):
            template, helpers = f"f{i}({{v}})", {}  # the checked path: always aware
        if i in encoded:
            template, helpers = _encoded_template(column.transform, i)
        namespace.update(helpers)
        call = template.format(v=name)
        items.append(call if not column.nullable else f"({call} if {name} is not None else None)")
    width = len(table.columns)
    unpack = ", ".join(f"r{i}" for i in range(width)) + ("," if width == 1 else "")
    source = f"lambda batch: [({', '.join(items)},) for ({unpack}) in batch]"
    function: Callable[[Batch], Batch] = eval(source, namespace)  # built from positions only
    return function


def build_batch_transform(
    table: TablePlan, guard: TableGuard | None = None, *, encode: bool = False
) -> Callable[[Pair], Pair] | None:
    """One function converting a batch of rows, or None when no column needs work.

    The row function is generated as a single tuple expression, e.g.
    ``(r0, f1(r1) if r1 is not None else None, r2)``, because a comprehension
    over unpacked tuples is several times faster than per-column loops. Only column
    positions and fixed templates go into the generated source, never a name. When a
    value fails, the batch is redone row by row with the columns' policies (``guard``).

    With ``encode``, the columns of :func:`encoded_columns` come out as PostgreSQL's
    binary values (the COPY's connection takes them through
    :func:`asyncmig.load.codecs.encoded_values`). A batch whose fast form fails (say,
    a timestamp with an offset) is converted by the ordinary form instead, so what
    happens to any value is exactly what happens without ``encode``.
    """
    work = column_transforms(table)
    encoded = encoded_columns(table) if encode else {}
    # columns with no transform that are encoded all the same (addresses)
    only_encoded = [(i, _unchanged) for i in encoded if i not in dict(work)]
    if not work and not only_encoded:
        return None
    plain = _row_function(table, work, {}) if work else _as_read
    forms = [_row_function(table, [*work, *only_encoded], encoded), plain] if encoded else [plain]
    if any(table.columns[i].transform in INLINE for i, _ in work):
        forms.append(_row_function(table, work, {}, inline=False))

    def transform(pair: Pair) -> Pair:
        rows, originals = pair
        converted = _fast(forms, rows)
        if converted is not None:
            return converted, originals
        if guard is None or not guard.lenient:
            raise _explain(table, work, rows) from None
        return _by_pieces(rows, forms, guard, work)

    return transform


def _unchanged(value: Any) -> Any:
    return value


def _as_read(batch: Batch) -> Batch:
    """The plain form of a batch whose only work is encoding: its rows as read."""
    return batch


PIECE = 32  # rows: a batch that failed is converted again this many at a time


def _fast(forms: list[Callable[[Batch], Batch]], rows: Batch) -> Batch | None:
    """``rows`` converted by the first form that takes all of them, or None."""
    for form in forms:
        try:
            return form(rows)
        except VALUE_ERRORS:
            continue
    return None


def _by_pieces(
    rows: Batch,
    forms: list[Callable[[Batch], Batch]],
    guard: TableGuard,
    work: list[tuple[int, Transform]],
) -> Pair:
    """A batch holding a value that fails: PIECE rows at a time by the fast forms, and only
    the pieces holding such a value row by row with the columns' policies (the slow
    path costs several times the fast one: a 1 %-dirty table has a bad value in nearly
    every batch). Each row comes out as the slow path alone would make it: a row either
    passes a fast form, unchanged by any policy, or goes through the guard."""
    converted: Batch = []
    kept: Batch = []
    for start in range(0, len(rows), PIECE):
        piece = rows[start : start + PIECE]
        done = _fast(forms, piece)
        if done is None:
            done, piece = guard.convert(piece, work)
        converted += done
        kept += piece
    return converted, kept


def _explain(table: TablePlan, work: list[tuple[int, Transform]], batch: Batch) -> DataError:
    """Find the first failing value of a batch again, and name it with its row's key."""
    positions = key_positions(table)
    for row in batch:
        for position, function in work:
            value = row[position]
            if value is None:
                continue
            try:
                function(value)
            except VALUE_ERRORS as exc:
                key = row_key(positions, row)
                column = table.columns[position]
                return DataError(
                    table.name,
                    column.name,
                    key if key is not None else row,
                    value,
                    f"not a valid {column.target_type}: {exc}",
                )
    return DataError(table.name, "?", None, None, "a transform failed and then succeeded")


# what asyncpg's codecs accept per target type, checked again only after a COPY failed
VALIDATORS: Mapping[str, Transform] = {
    "uuid": to_uuid,
    "inet": to_inet,
    "bigint": to_int,
    "double precision": to_float,
    "numeric": lambda v: v if isinstance(v, bytes) else to_numeric(v),  # bytes: encoded
    "text": to_text,
    "varchar": to_text,
    "jsonb": to_json,
    "boolean": lambda v: v if isinstance(v, bool) else to_bool(v),
}


def explain_rejected_batch(table: TablePlan, batch: Batch, error: Exception) -> DataError:
    """asyncpg refused a value while encoding a batch: find it and name its row's key."""
    checks = [
        (i, VALIDATORS[base_type(c.target_type)])
        for i, c in enumerate(table.columns)
        if base_type(c.target_type) in VALIDATORS
    ]
    found = _explain(table, checks, batch)
    if found.column != "?":
        return found
    return DataError(table.name, "?", None, None, f"the PostgreSQL driver refused a value: {error}")
