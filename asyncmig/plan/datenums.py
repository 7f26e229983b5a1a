"""Numbers in date columns, read the way SQLite's own date functions read them.

SQLite stores dates as text, as Julian day numbers (what ``julianday()`` writes) or as
Unix times; its date functions tell the two numeric kinds apart by magnitude (the
``'auto'`` modifier): a number from 0 to 5373484.5 is a Julian day, a larger one Unix
seconds. Applications also store Unix milliseconds and microseconds, which no SQLite
function reads; those are told apart by magnitude too. Each value is read on its own:

==================  ====================  =================================================
kind                numbers               reading
==================  ====================  =================================================
``julian``          1721425.5 - 5373484.5  Julian day, to SQLite's millisecond (year 1-9999)
``unix_s``          5373484.5 - 1e10       Unix seconds (to 2286-11-20)
``unix_ms``         1e10 - 1e13            Unix milliseconds (1970-04-26 to 2286-11-20)
``unix_us``         1e13 - 1e17            Unix microseconds (1970-04-26 to 5138-11-16)
==================  ====================  =================================================

The bounds fall where the larger unit stops being a plausible date: 1e10 seconds is
the year 2286, while 1e10 milliseconds is April 1970, so a number between 1e10 and 1e11
(a birthday in 1971, as Prisma stores it in milliseconds) is milliseconds, not the year
2970; likewise microseconds from 1e13.

Anything else (negative, NaN, a Julian day before year 1 such as 0 or 1, beyond 1e17)
has no reading: a column holding such numbers is ambiguous and keeps its numbers (see
:mod:`asyncmig.plan.types`).

The load reads values in Python (:func:`micros`); ``check --deep`` reads the same
values inside SQLite with SQLite's own ``strftime()`` (:func:`sql_reading`), so the
two meet only in the copy they compare: a value the load read differently from SQLite
is a difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

JULIAN_MIN = 1721425.5  # 0001-01-01 00:00:00 as a Julian day number
UNIX_MIN = 5373484.5  # SQLite: a number below this is a Julian day, above it Unix seconds
UNIX_MAX = 1e17
JULIAN_UNIX_MS = 210866760000000  # 1970-01-01 as SQLite's internal Julian milliseconds
# kind -> (lowest, highest exclusive, microseconds per unit); Julian days: see julian_micros
UNITS: Mapping[str, tuple[float, float, int]] = {
    "unix_s": (UNIX_MIN, 1e10, 1_000_000),
    "unix_ms": (1e10, 1e13, 1_000),
    "unix_us": (1e13, UNIX_MAX, 1),
}
KINDS = ("julian", *UNITS)
NAMES = {
    "julian": "Julian day numbers",
    "unix_s": "Unix seconds",
    "unix_ms": "Unix milliseconds",
    "unix_us": "Unix microseconds",
}


def kind_of(value: float) -> str | None:
    """Which reading a number gets, or None when it has none."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if JULIAN_MIN <= value < UNIX_MIN:
        return "julian"
    for kind, (low, high, _) in UNITS.items():
        if low <= value < high:
            return kind
    return None


def julian_micros(value: float) -> int:
    """SQLite's reading of a Julian day: rounded to its millisecond (``iJD``), as in date.c."""
    milliseconds = int(value * 86400000.0 + 0.5)
    return (milliseconds - JULIAN_UNIX_MS) * 1000


def unit_micros(value: float, per_unit: int) -> int:
    """A Unix time in some unit as microseconds; a fraction rounded half up, in doubles
    exactly as :func:`sql_reading` computes it inside SQLite."""
    if isinstance(value, int):
        return value * per_unit
    whole = int(value)
    return whole * per_unit + int((value - whole) * per_unit + 0.5)


def micros(value: float) -> int:
    """Microseconds since 1970 for a number in a date column; ValueError without a reading."""
    kind = kind_of(value)
    if kind is None:
        raise ValueError(
            f"{value!r} has no date reading: not a Julian day from year 1 "
            "(1721425.5 to 5373484.5) nor Unix time (5373484.5 to 1e17)"
        )
    if kind == "julian":
        return julian_micros(value)
    return unit_micros(value, UNITS[kind][2])


# --- the same reading, inside SQLite ---------------------------------------------------


def _between(c: str, low: float, high: float) -> str:
    return f"{c} >= {low!r} AND {c} < {high!r}"


def sql_kind(c: str, kind: str) -> str:
    """SQL true when the number ``c`` (integer or real) gets the reading ``kind``."""
    if kind == "julian":
        return _between(c, JULIAN_MIN, UNIX_MIN)
    low, high, _ = UNITS[kind]
    return _between(c, low, high)


def sql_readable(c: str) -> str:
    """SQL true when ``c`` is a number with a date reading."""
    return f"typeof({c}) IN ('integer', 'real') AND {_between(c, JULIAN_MIN, UNIX_MAX)}"


def _sql_unix(c: str, per_unit: int) -> str:
    total = (
        f"(CASE typeof({c}) WHEN 'integer' THEN {c} * {per_unit} ELSE "
        f"CAST({c} AS INTEGER) * {per_unit} + "
        f"CAST(({c} - CAST({c} AS INTEGER)) * {per_unit} + 0.5 AS INTEGER) END)"
    )
    return (
        f"(strftime('%Y-%m-%d %H:%M:%S', {total} / 1000000, 'unixepoch') || '.' || "
        f"printf('%06d', {total} % 1000000))"
    )


def sql_reading(c: str) -> str:
    """SQL: the number ``c`` as 'YYYY-MM-DD HH:MM:SS.ffffff' by SQLite's own functions
    (``strftime`` of the Julian day, or of the Unix seconds with ``'unixepoch'``);
    NULL for anything else."""
    julian = f"(strftime('%Y-%m-%d %H:%M:%f', {c}) || '000')"
    cases = [f"WHEN {sql_kind(c, 'julian')} THEN {julian}"]
    cases += [
        f"WHEN {sql_kind(c, kind)} THEN {_sql_unix(c, per_unit)}"
        for kind, (_, _, per_unit) in UNITS.items()
    ]
    return f"(CASE WHEN typeof({c}) NOT IN ('integer', 'real') THEN NULL {' '.join(cases)} END)"


def sql_midnight(c: str) -> str:
    """SQL true when the number ``c`` reads as a whole day (time of day 00:00:00)."""
    return f"{sql_reading(c)} LIKE '% 00:00:00.000000'"
