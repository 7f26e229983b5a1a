"""SQLite's date and time functions: evaluated when constant, else spelled for PostgreSQL.

``date()``, ``time()``, ``datetime()``, ``julianday()``, ``unixepoch()`` and
``strftime()`` return text (or numbers) computed from a time value and modifiers.
Over constant text (``DATETIME('1997-01-01')``) the result is a constant, computed
here the way SQLite computes it, so a view compares a typed column with a typed
literal. Over a column the call becomes PostgreSQL SQL on a ``timestamp`` holding the
UTC wall-clock time (SQLite's clock is UTC), rendered with ``to_char`` into SQLite's
text format. Modifiers that depend on the machine's zone (``localtime``, ``utc``) or
on rules PostgreSQL lacks (``weekday N``) are refused rather than guessed at.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from asyncmig.plan.model import base_type
from asyncmig.plan.sqlexpr import Func, Lit, Node, Untranslatable
from asyncmig.quoting import quote_literal

FUNCTIONS = {"date", "time", "datetime", "julianday", "unixepoch", "strftime"}
_JULIAN_EPOCH = 2440587.5  # the Julian day of 1970-01-01 00:00 UTC
_MODIFIER = re.compile(r"([+-]?\d+(?:\.\d*)?)\s+(year|month|day|hour|minute|second)s?")
_FORMATS = {"date": "%Y-%m-%d", "time": "%H:%M:%S", "datetime": "%Y-%m-%d %H:%M:%S"}
# strftime conversions with a to_char equivalent
_TO_CHAR = {
    "Y": "YYYY",
    "m": "MM",
    "d": "DD",
    "H": "HH24",
    "M": "MI",
    "S": "SS",
    "f": "SS.MS",
    "j": "DDD",
}


# --------------------------------------------------------------------------- constants


def constant(name: str, args: Sequence[Node]) -> str | int | float | None:
    """The value of a date function over literals, or None when it is not constant."""
    if name not in FUNCTIONS:
        return None
    fmt: str | None = _FORMATS.get(name)
    if name == "strftime":
        if not args or not isinstance(args[0], Lit) or args[0].kind != "string":
            return None
        fmt, args = args[0].value, args[1:]
    texts = [a.value for a in args if isinstance(a, Lit) and a.kind in ("string", "number")]
    if not texts or len(texts) != len(args) or texts[0].strip().lower() == "now":
        return None
    moment = _moment(texts[0], number=isinstance(args[0], Lit) and args[0].kind == "number")
    for modifier in texts[1:]:
        moment = None if moment is None else _modified(moment, modifier)
    if moment is None:
        return None
    if name == "julianday":
        return _julian(moment)
    if name == "unixepoch":
        return int((moment - dt.datetime(1970, 1, 1)).total_seconds() // 1)
    return _strftime(moment, fmt or "")


def _moment(text: str, *, number: bool) -> dt.datetime | None:
    """A SQLite time value as a naive UTC datetime (numbers are Julian days)."""
    if number:
        return dt.datetime(1970, 1, 1) + dt.timedelta(days=float(text) - _JULIAN_EPOCH)
    value = text.strip()
    if re.fullmatch(r"\d\d:\d\d(:\d\d(\.\d+)?)?", value):
        value = "2000-01-01 " + value  # a time alone is on 2000-01-01, as in SQLite
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _modified(moment: dt.datetime, modifier: str) -> dt.datetime | None:
    text = modifier.strip().lower()
    if text.startswith("start of "):
        unit = text.removeprefix("start of ")
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return {"day": day, "month": day.replace(day=1), "year": day.replace(month=1, day=1)}.get(
            unit
        )
    match = _MODIFIER.fullmatch(text)
    if match is None:
        return None
    amount, unit = float(match.group(1)), match.group(2)
    if unit in ("year", "month"):
        if not amount.is_integer():
            return None
        months = moment.month - 1 + int(amount) * (12 if unit == "year" else 1)
        year, month = moment.year + months // 12, months % 12 + 1
        try:  # SQLite normalises an overflowing day (Feb 30 -> Mar 2)
            return moment.replace(year=year, month=month)
        except ValueError:
            first = moment.replace(year=year, month=month, day=1)
            return first + dt.timedelta(days=moment.day - 1)
    return moment + dt.timedelta(**{unit + "s": amount})


def _julian(moment: dt.datetime) -> float:
    return (moment - dt.datetime(1970, 1, 1)).total_seconds() / 86400 + _JULIAN_EPOCH


def _strftime(moment: dt.datetime, fmt: str) -> str | None:
    parts = []
    for literal, conversion in re.findall(r"([^%]*)(%.?)?", fmt):
        parts.append(literal)
        if conversion == "%f":
            parts.append(f"{moment.second + moment.microsecond / 1e6:06.3f}")
        elif conversion == "%s":
            parts.append(str(int((moment - dt.datetime(1970, 1, 1)).total_seconds() // 1)))
        elif conversion == "%J":
            parts.append(repr(_julian(moment)))
        elif conversion == "%w":
            parts.append(str((moment.weekday() + 1) % 7))
        elif conversion in ("%Y", "%m", "%d", "%H", "%M", "%S", "%j", "%%"):
            parts.append(moment.strftime(conversion))
        elif conversion:
            return None
    return "".join(parts)


# --------------------------------------------------------------------------- PostgreSQL


def timestamp_sql(value: str, pg_type: str | None, kind: str | None) -> str:
    """``value`` (PostgreSQL SQL of ``pg_type``) as a UTC wall-clock ``timestamp``."""
    base = base_type(pg_type)
    if base in ("timestamptz", "timestamp with time zone"):
        return f"({value} AT TIME ZONE 'UTC')"
    if base in ("timestamp", "timestamp without time zone"):
        return value
    if base == "date":
        return f"CAST({value} AS timestamp)"
    if kind == "num":  # SQLite reads a number as a Julian day
        return f"(TIMESTAMP '1970-01-01' + ({value} - {_JULIAN_EPOCH}) * INTERVAL '1 day')"
    if kind in (None, "text"):
        return f"CAST({value} AS timestamp)"
    raise Untranslatable(f"a date function of {value} ({pg_type})")


NOW_SQL = "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')"


def modifier_sql(timestamp: str, modifier: str, value_sql: str) -> str:
    """``timestamp`` with one SQLite modifier applied (``unixepoch`` reads ``value_sql``)."""
    text = modifier.strip().lower()
    if text == "unixepoch":
        return f"(TIMESTAMP '1970-01-01' + {value_sql} * INTERVAL '1 second')"
    if text.startswith("start of ") and text[9:] in ("day", "month", "year"):
        return f"date_trunc({quote_literal(text[9:])}, {timestamp})"
    match = _MODIFIER.fullmatch(text)
    if match is None or (
        match.group(2) in ("year", "month") and not float(match.group(1)).is_integer()
    ):
        raise Untranslatable(f"date modifier {modifier!r} has no PostgreSQL translation")
    interval = f"INTERVAL {quote_literal(f'{match.group(1)} {match.group(2)}')}"
    if match.group(2) in ("year", "month"):  # SQLite lets the day overflow: Jan 31 + 1 month
        month = f"date_trunc('month', {timestamp})"  # is March 2 (or 3), not Feb 29
        return f"({month} + {interval} + ({timestamp} - {month}))"
    return f"({timestamp} + {interval})"


def render_sql(name: str, timestamp: str, fmt: str | None) -> tuple[str, str]:
    """(SQL, type) of date function ``name`` applied to a ``timestamp`` expression."""
    if name == "julianday":
        return (
            f"(extract(epoch FROM {timestamp})::float8 / 86400 + {_JULIAN_EPOCH})",
            "double precision",
        )
    if name == "unixepoch":
        return f"floor(extract(epoch FROM {timestamp}))::bigint", "bigint"
    pieces = _to_char_pieces(fmt if fmt is not None else _FORMATS[name], timestamp)
    return " || ".join(pieces) if len(pieces) > 1 else pieces[0], "text"


def _to_char_pieces(fmt: str, timestamp: str) -> list[str]:
    """strftime's format as to_char() calls (and epoch/weekday numbers) to concatenate."""
    pieces: list[str] = []
    pattern: list[str] = []

    def flush() -> None:
        if pattern:
            pieces.append(f"to_char({timestamp}, {quote_literal(''.join(pattern))})")
            pattern.clear()

    for literal, conversion in re.findall(r"([^%]*)(%.?)?", fmt):
        if literal:
            pattern.append('"' + literal.replace("\\", "\\\\").replace('"', '\\"') + '"')
        if conversion in ("%s", "%w"):
            flush()
            field = "epoch" if conversion == "%s" else "dow"
            pieces.append(f"floor(extract({field} FROM {timestamp}))::bigint::text")
        elif conversion == "%%":
            pattern.append('"%"')
        elif conversion:
            if conversion[1:] not in _TO_CHAR:
                raise Untranslatable(f"strftime conversion {conversion} is not translated")
            pattern.append(_TO_CHAR[conversion[1:]])
    flush()
    return pieces or ["''"]


# --------------------------------------------------------------------------- defaults

_CLOCK_LITERALS = {"CURRENT_TIMESTAMP": "datetime", "CURRENT_DATE": "date", "CURRENT_TIME": "time"}
_SAMPLE_NOW = "2000-01-01 00:00:00"  # to measure the text a clock default writes


def clock_default(node: Node, target_type: str) -> str | None:
    """A default that reads SQLite's clock, as PostgreSQL SQL of ``target_type``.

    None when ``node`` is not a clock idiom. The value is the one SQLite would have
    written, read the way the load reads it: UTC wall-clock text (``localtime``: the
    server's zone), kept as text in a text column, a timestamp in a timestamp column,
    seconds or days in a numeric one.
    """
    call = _clock_call(node)
    if call is None:
        return None
    name, fmt, modifiers = call
    if {"subsec", "subsecond"} & {m.strip().lower() for m in modifiers} and fmt is None:
        fmt = {"datetime": "%Y-%m-%d %H:%M:%f", "time": "%H:%M:%f"}.get(name)
    timestamp = NOW_SQL
    for modifier in modifiers:
        if modifier.strip().lower() == "localtime" and timestamp == NOW_SQL:
            timestamp = "LOCALTIMESTAMP"
        elif modifier.strip().lower() not in ("subsec", "subsecond"):
            timestamp = modifier_sql(timestamp, modifier, timestamp)
    return _typed_clock(name, fmt, modifiers, timestamp, target_type)


def _clock_call(node: Node) -> tuple[str, str | None, list[str]] | None:
    """(function, strftime format, modifiers) of a clock idiom, or None."""
    if isinstance(node, Lit) and node.kind == "current":
        return _CLOCK_LITERALS[node.value], None, []
    if not isinstance(node, Func) or node.name not in FUNCTIONS:
        return None
    texts = [a.value for a in node.args if isinstance(a, Lit) and a.kind == "string"]
    if len(texts) != len(node.args):
        return None
    fmt = None
    if node.name == "strftime":
        if not texts:
            return None
        fmt, texts = texts[0], texts[1:]
    if not texts and node.name == "unixepoch":
        texts = ["now"]
    if not texts or texts[0].strip().lower() != "now":
        return None
    return node.name, fmt, texts[1:]


def _typed_clock(
    name: str, fmt: str | None, modifiers: list[str], timestamp: str, target_type: str
) -> str:
    base = base_type(target_type)
    unit = "day" if name == "date" or fmt == "%Y-%m-%d" else "second"
    if name == "time" and base.startswith("timestamp"):
        raise Untranslatable("time('now') writes a time of day, not a timestamp")
    if base in ("timestamptz", "timestamp with time zone"):
        if timestamp == NOW_SQL and unit == "second":
            return "CURRENT_TIMESTAMP"
        return f"(date_trunc('{unit}', {timestamp}) AT TIME ZONE 'UTC')"
    if base in ("timestamp", "timestamp without time zone"):
        return timestamp if unit == "second" else f"date_trunc('day', {timestamp})"
    if base == "date":
        return f"CAST({timestamp} AS date)"
    if base in ("time", "time without time zone") and name in ("time", "datetime"):
        return f"CAST(date_trunc('second', {timestamp}) AS time)"
    sql, result_type = render_sql(name, timestamp, fmt)
    if base in ("text", "varchar", "character varying", "char", "character"):
        _check_length(name, fmt, modifiers, target_type)
        return sql if result_type == "text" else f"CAST({sql} AS text)"
    numeric = base in ("bigint", "integer", "smallint", "numeric", "double precision", "real")
    integral = name == "unixepoch" or fmt == "%s"
    if numeric and integral:
        return render_sql("unixepoch", timestamp, None)[0]
    if numeric and name == "julianday" and base not in _INTEGER_BASES:
        return f"CAST({sql} AS {base})"
    raise Untranslatable(f"{name}('now') has no {target_type} value")


_INTEGER_BASES = ("bigint", "integer", "smallint")


def _check_length(name: str, fmt: str | None, modifiers: list[str], target_type: str) -> None:
    """Refuse a clock default whose text would not fit ``varchar(n)``."""
    length = re.search(r"\((\d+)\)", target_type)
    args = [Lit("string", a) for a in ([fmt] if fmt is not None else [])]
    sample = constant(
        name, [*args, Lit("string", _SAMPLE_NOW), *(Lit("string", m) for m in modifiers)]
    )
    if length and sample is not None and len(str(sample)) > int(length.group(1)):
        raise Untranslatable(
            f"{name}('now') writes {len(str(sample))} characters, more than {target_type} holds"
        )
