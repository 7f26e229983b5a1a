"""The plan's proof (``TablePlan.proof_terms``), checked partly in Python.

A plan made from a sample carries, per column, the SQLite condition every value must
meet; the load refutes the plan at the first row that fails one
(:class:`asyncmig.load.pipeline.PlanRefuted`). Evaluated by SQLite in the reader's
WHERE clause, the simple ones cost about 150 ns a value (a ``typeof()`` call, an
``instr()``, a ``coalesce``): half of reading the row. The same tests on the values
Python already holds cost a sixth of that, so the conditions below are taken out of
the SELECT and checked on each batch as it arrives, before anything else sees it:

==========  ===============================================  ==========================
kind        SQLite (inside ``coalesce((...), 1)``)           Python, on the fetched value
==========  ===============================================  ==========================
not null    ``c IS NOT NULL`` (a primary key)                ``v is not None``
integer     ``typeof(c) = 'integer'``                        ``type(v) is int``
real        ``typeof(c) = 'real'``                           ``type(v) is float``
numeric     integer, or a real in ``(-9e999, 9e999)``        int, or a finite float
boolean     ``typeof(c) = 'integer' AND c IN (0, 1)``        int 0 or 1
text        ``typeof(c) = 'text' AND instr(c, char(0)) = 0`` text without a NUL
uuid        ``typeof(c) = 'text' AND length(c) IN (32, 36)`` text of SQLite length 32/36
==========  ===============================================  ==========================

Dates and timestamps (``date``, ``timestamp``, ``timestamptz``: text with a ``-`` as
its fifth character that ``julianday()`` reads, at most six fractional digits) cost
SQLite about 0.7 µs a value, a quarter of reading a row of ``guesses``. In Python a
regular expression matches the common spelling (``YYYY-MM-DD``, then ``[ T]HH:MM``,
``:SS``, up to six fractional digits and a ``Z`` or ``±HH:MM`` offset, every field
within the ranges ``julianday()`` takes, the year below 9999) in about a third of that; it accepts only
values the condition accepts. A value it does not match is not refused on that
account: SQLite decides it, by the same condition evaluated on that one value
(:class:`_InSqlite`), so every spelling SQLite reads is still accepted.

A jsonb column's condition (valid JSON, no ``\\u0000``, no object repeating a key:
jsonb keeps a repeated key's last value, SQLite's json functions read the first) is
checked by orjson parsing and printing the document again (:func:`_json`); a
document that test does not pass is decided by SQLite, as for dates.

A term is recognised only when its SQL is exactly the form above (NULL accepted),
so a condition written differently simply stays in the SELECT. Every other
condition (addresses) stays in SQLite. Either way a failing row refutes the
plan; only which column the log names may differ when one row fails several
conditions.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from asyncmig.load.policy import InvalidText
from asyncmig.load.transforms import colons_kept
from asyncmig.plan.model import TablePlan, proof_clause
from asyncmig.quoting import quote_sqlite_ident
from asyncmig.source.scan import acceptance, register_functions

Batch = list[tuple[Any, ...]]

ACCEPTED = {  # kind -> the SQL of asyncmig.source.scan.acceptance, NULL accepted
    "integer": "{c} IS NULL OR typeof({c}) = 'integer'",
    "real": "{c} IS NULL OR typeof({c}) = 'real'",
    "boolean": "{c} IS NULL OR (typeof({c}) = 'integer' AND {c} IN (0, 1))",
    "text": "{c} IS NULL OR (typeof({c}) = 'text' AND instr({c}, char(0)) = 0)",
    "uuid": "{c} IS NULL OR (typeof({c}) = 'text' AND length({c}) IN (32, 36))",
}
DATED = ("date", "timestamp", "timestamptz")
# the dated types' conditions, as the planner writes them (``{c}``: the column)
ACCEPTED.update({kind: acceptance(kind, kind, "{c}") for kind in DATED})
ACCEPTED["jsonb"] = acceptance("jsonb", "json_text", "{c}")  # valid, no key repeated
ACCEPTED["numeric"] = acceptance("numeric", "numeric", "{c}")  # finite: two bounds

# spellings every version of julianday() reads: a year from 1000 to 9998 (in 9999 a
# fraction or an offset can carry past the last day it takes), month 01-12, day
# 01-31, hour 00-23, minute and second 00-59 (ASCII digits only: ``\d`` would take
# any script's), up to six fractional digits, an offset of at most 14 hours
_DAY = "(?!9999)[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
_TIME = (
    "[ T](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\\.[0-9]{1,6})?)?"
    "(?:[Zz]|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])?"
)
_PROVEN: set[str] = set()  # short JSON documents this process found acceptable
_PROVEN_MAX = 4096
_PROVEN_TEXT = 512
_DEPTH = 900  # brackets: SQLite's json_valid() refuses nesting past 1000, orjson 1024


def _json(value: str) -> bool:
    """True only if SQLite's jsonb condition holds: valid JSON (orjson is as strict as
    ``json_valid()``; a document it refuses goes to SQLite), no ``\\u0000``, and no
    object repeating a key (reprinting drops a repeated key, and with it a colon; an
    escaped colon could hide one, so such a document goes to SQLite too). About 1 µs
    for 100 characters against SQLite's 2 (``json_valid`` and the key check's call
    into Python); documents repeat, and short ones are remembered."""
    if value in _PROVEN:
        return True
    if "\\u0000" in value or value.count("[") + value.count("{") > _DEPTH:
        return False
    if not colons_kept(value):  # False, or None: orjson refused it
        return False
    if len(value) <= _PROVEN_TEXT and len(_PROVEN) < _PROVEN_MAX:
        _PROVEN.add(value)
    return True


SPELLED = {
    "_date": re.compile(_DAY).fullmatch,
    "_stamp": re.compile(f"{_DAY}(?:{_TIME})?").fullmatch,
    "_json": _json,
}

# kind -> a fast test of value ``{v}``, true only when the condition holds (a false one
# is decided by ``exact``)
FAST = {
    "not null": "{v} is not None",
    "integer": "({v} is None or type({v}) is int)",
    "real": "({v} is None or type({v}) is float)",
    "numeric": "({v} is None or type({v}) is int or (type({v}) is float and -_inf < {v} < _inf))",
    "boolean": "({v} is None or (type({v}) is int and ({v} == 0 or {v} == 1)))",
    "text": "({v} is None or (type({v}) is str and '\\x00' not in {v}))",
    "uuid": "({v} is None or (type({v}) is str and (len({v}) == 36 or len({v}) == 32) "
    "and '\\x00' not in {v}))",
    "date": "({v} is None or (type({v}) is str and _date({v}) is not None))",
    "timestamp": "({v} is None or (type({v}) is str and _stamp({v}) is not None))",
    "timestamptz": "({v} is None or (type({v}) is str and _stamp({v}) is not None))",
    "jsonb": "({v} is None or (type({v}) is str and _json({v})))",
}


def sqlite_length(value: str | InvalidText) -> int:
    """SQLite's ``length()`` of a text value: characters before the first NUL,
    counted over its UTF-8 bytes as SQLite does (valid or not)."""
    raw = value.raw if isinstance(value, InvalidText) else value.encode("utf-8", "surrogatepass")
    count, i = 0, 0
    while i < len(raw) and raw[i] != 0:
        lead = raw[i]
        i += 1
        count += 1
        if lead >= 0xC0:
            while i < len(raw) and raw[i] & 0xC0 == 0x80:
                i += 1
    return count


def _text(value: Any) -> bool:
    return type(value) is str or type(value) is InvalidText


def _nul_free(value: str | InvalidText) -> bool:
    return b"\x00" not in value.raw if isinstance(value, InvalidText) else "\x00" not in value


EXACT: Mapping[str, Callable[[Any], bool]] = {
    "not null": lambda v: v is not None,
    "integer": lambda v: v is None or type(v) is int,
    "real": lambda v: v is None or type(v) is float,
    "numeric": lambda v: v is None or type(v) is int or (type(v) is float and math.isfinite(v)),
    "boolean": lambda v: v is None or (type(v) is int and v in (0, 1)),
    "text": lambda v: v is None or (_text(v) and _nul_free(v)),
    "uuid": lambda v: v is None or (_text(v) and sqlite_length(v) in (32, 36)),
}


class _InSqlite:
    """A condition decided by SQLite itself, on one value (bound as the type it was
    read as: text, integer, real, blob; text that is not UTF-8 as those bytes cast to
    text), for the values the fast test does not match."""

    def __init__(self, template: str) -> None:
        self.sql = f"SELECT coalesce(({template.format(c='?1')}), 1)"
        self.raw = f"SELECT coalesce(({template.format(c='CAST(?1 AS TEXT)')}), 1)"
        self.conn: sqlite3.Connection | None = None

    def __call__(self, value: Any) -> bool:
        if self.conn is None:
            self.conn = sqlite3.connect(":memory:", check_same_thread=False)
            register_functions(self.conn)  # the conditions call them
        if isinstance(value, InvalidText):
            row = self.conn.execute(self.raw, (value.raw,)).fetchone()
        else:
            row = self.conn.execute(self.sql, (value,)).fetchone()
        return bool(row[0])


def exact_test(kind: str) -> Callable[[Any], bool]:
    """What decides a value the fast test of ``kind`` does not match."""
    return EXACT[kind] if kind in EXACT else _InSqlite(ACCEPTED[kind])


def kind_of(table: TablePlan, number: int, sql: str) -> str | None:
    """The kind of condition ``sql`` on column ``number``, or None: SQLite checks it."""
    c = quote_sqlite_ident(table.columns[number].source_name)
    if sql == f"{c} IS NOT NULL":
        return "not null"
    for kind, template in ACCEPTED.items():
        if sql == f"coalesce(({template.format(c=c)}), 1)":
            return kind
    return None


class Proof:
    """A table's proof split between SQLite (:attr:`where`) and Python (:meth:`check`)."""

    def __init__(self, table: TablePlan) -> None:
        self.table = table
        self.python: list[tuple[int, str]] = []
        kept = []
        for number, sql in table.proof_terms:
            kind = kind_of(table, number, sql)
            if kind is None:
                kept.append((number, sql))
            else:
                self.python.append((number, kind))
        self.where = proof_clause(tuple(kept))  # for the SELECT
        self._failing = self._compile() if self.python else None
        self._exact = {kind: exact_test(kind) for _, kind in self.python}

    def _compile(self) -> Callable[[Batch], Batch]:
        """A comprehension keeping only the rows some fast test fails."""
        width = len(self.table.columns)
        unpack = ", ".join(f"r{i}" for i in range(width)) + ("," if width == 1 else "")
        tests = " and ".join(FAST[kind].format(v=f"r{n}") for n, kind in self.python)
        source = f"lambda batch: [({unpack}) for ({unpack}) in batch if not ({tests})]"
        namespace = {"_inf": math.inf, **SPELLED}
        failing: Callable[[Batch], Batch] = eval(source, namespace)  # positions only
        return failing

    def refuted(self, batch: Batch) -> int | None:
        """The column of the first condition the batch's first failing row fails."""
        if self._failing is None:
            return None
        for row in self._failing(batch):
            for number, kind in self.python:
                if not self._exact[kind](row[number]):
                    return number
        return None
