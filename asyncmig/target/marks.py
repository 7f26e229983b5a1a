"""Source marks: what each source table looked like when a run or sync last copied it.

``sync`` must find the rows that changed in the source since the target was last
brought up to date. Comparing both sides row by row renders every row of both sides
(``check --deep``'s canonical text), which costs about what a full load costs. Instead,
every sync, and a ``run --sync-marks``, records per table a *mark* for every small
range of the source's keys: an 8-byte BLAKE2b digest of the raw rows of the range, as SQLite
returns them (pickled: the storage class of each value is part of it, so ``1``,
``1.0``, ``'1'`` and ``x'31'`` differ). The next sync computes the marks again and
compares: only the ranges whose marks differ can hold a changed row, and only those
are read and copied (:mod:`asyncmig.target.sync_marks`).

Ranges are of about :data:`ROWS_PER_MARK` rows (recorded marks keep the shift they
were made with, see :func:`requests`: a table marked with another size stays so):

* ``int``: by the value of a single integer primary key, ``key >> shift``, so a range
  is a run of keys that both sides can select by index;
* ``rowid``: by SQLite's rowid for any other table that has one (text, composite or no
  key); for a single key column each row's key is kept too, so the keys of rows
  deleted from a range are known: a UUID key as its 16 bytes (PostgreSQL deletes those
  rows through the key's index), a text key as 8 bytes of its MD5 (PostgreSQL finds
  them by the same hash, in one scan).

A table without a rowid and without an integer key (``WITHOUT ROWID`` with a text key)
gets no marks and is compared in full, as is every table when the marks cannot be
trusted (see :class:`asyncmig.target.sync_marks.Trust`).

The marks are kept with the table's leaf pages (:mod:`asyncmig.target.pages`). Where
those are known, the digests are not of the rows read as SQL values but of their raw
cells, parsed from the pages (:mod:`asyncmig.target.cells`: about twice as fast, and
the pages are read anyway), and the next computation parses only the pages that
changed and merges their ranges' marks into the old ones (:func:`merged`). Marks
record which *kind* of digest they hold (``rows`` or ``cells``); two kinds never
compare (:meth:`Marks.fits`): a table whose recorded marks are of the other kind is
marked anew, whole, and compared row by row once. They are computed in child processes
(``python -m asyncmig.target.marks``), one per ``--jobs``; a run starts them at a low
CPU priority beside its load, so they use the cores the load leaves idle. A mark that differs only because of a Python
version's pickling is a false alarm (the range is copied again, harmlessly); two
different rows never give the same pickle.

A sync that compared a table by its marks stores only what changed (:func:`delta`:
the differing ranges' new marks, a range gone as one of no rows) over the marks it
compared with, and records that run as the delta's ``base_run``; the marks of a run
are its newest whole marks with the deltas since applied (:func:`recorded`,
:func:`applied`). A nightly sync that changes 1 % of the rows thus writes a few
percent of the marks instead of all of them (tens of megabytes at 2M rows, TOASTed
and WAL-logged); once the deltas since the whole marks hold :data:`MAX_DELTAS` or a
:data:`DELTA_SHARE` of the table's ranges, the sync stores them whole again. A chain
that cannot be followed to its whole marks (deleted, or inconsistent with the row
count it recorded) is no marks: the table is marked anew and compared row by row.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sqlite3
import struct
import subprocess
import sys
import uuid
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate, groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncmig.cli.signals import stop_child
from asyncmig.quoting import qualified, quote_sqlite_ident
from asyncmig.target import cells, pages

if TYPE_CHECKING:
    import anyio
    import asyncpg
    from anyio.abc import Process
    from structlog.typing import FilteringBoundLogger

    from asyncmig.plan.model import Plan, TablePlan

ROWS_PER_MARK = 2  # fewer unchanged rows read and upserted again than 4; more marks kept
ROWS = "rows"  # a digest of pickled rows (the other kind: cells.CELLS)
DIGEST_BYTES = 8
KEY_HASH_BYTES = 8  # a text key: the first bytes of its MD5
UUID_KEY_BYTES = 16  # a UUID key: the key itself
FETCH = 4096
PART_RANGES = 65536  # ranges per stored row (1 MiB)
MAX_DELTAS = 32  # deltas over a table's whole marks before they are stored whole again
DELTA_SHARE = 0.25  # ... or once the deltas hold this share of the table's ranges
# a delta's kind column: an older asyncmig takes it for marks of another kind (compares
# that table row by row) instead of for whole marks missing most of their ranges
DELTA = "delta:"
HEADER = struct.Struct("<I")


def _log() -> FilteringBoundLogger:
    """This module's logger. The child processes import this module too, and use
    neither structlog nor anyio: imported at the top, those two took a child's start
    from 0.06 to 0.38 s, every sync, twice."""
    import structlog

    logger: FilteringBoundLogger = structlog.get_logger(__name__)
    return logger


MARKS = qualified("asyncmig", "source_marks")
MARKS_SQL = f"""CREATE TABLE IF NOT EXISTS {MARKS} (
    run_id bigint NOT NULL REFERENCES {qualified("asyncmig", "runs")} (id) ON DELETE CASCADE,
    table_name text NOT NULL,
    part integer NOT NULL,
    mode text NOT NULL,
    shift integer NOT NULL,
    ranges bytea NOT NULL,
    digests bytea NOT NULL,
    counts bytea,
    key_hashes bytea,
    rows bigint NOT NULL DEFAULT 0,
    pages bytea,
    key_size integer,
    kind text,
    base_run bigint,
    PRIMARY KEY (run_id, table_name, part)
)"""


@dataclass(frozen=True)
class Request:
    """One table to mark: its source name, how (``int`` by ``key``, else ``rowid``),
    and the shift to use (the recorded one, so the marks compare; None: choose)."""

    table: str
    source: str
    mode: str
    key: str | None = None
    shift: int | None = None
    key_form: str | None = None  # rowid marks: how the key is written in PostgreSQL
    rows: int = 0  # as planned: to share the tables out between processes


@dataclass(frozen=True)
class Marks:
    """One table's marks: range numbers in ascending order and their digests."""

    table: str
    mode: str
    shift: int
    ranges: array[int]
    digests: bytes
    rows: int = 0
    counts: array[int] | None = None  # rows per range
    # rowid marks of a table with a single key column: per row ``key_size`` bytes
    # (:func:`key_hashes`), in the order of the ranges
    key_hashes: bytes = b""
    key_size: int = 0  # 0: no keys kept
    kind: str = ROWS  # what a digest is of: the pickled rows, or their raw cells

    @property
    def hashed(self) -> bool:
        return self.key_size > 0

    def fits(self, other: Marks) -> bool:
        """Whether ``other`` marks the same ranges the same way (comparable, mergeable)."""
        return (self.mode, self.shift, self.key_size, self.kind) == (
            other.mode,
            other.shift,
            other.key_size,
            other.kind,
        )

    def digest(self, position: int) -> bytes:
        return self.digests[position * DIGEST_BYTES : (position + 1) * DIGEST_BYTES]

    @cached_property
    def offsets(self) -> list[int]:
        """The first row of each range in ``key_hashes`` (and the rows in all, last)."""
        assert self.counts is not None
        return list(accumulate(self.counts, initial=0))

    def differing(self, other: Marks) -> list[int]:
        """Ranges whose rows differ between ``self`` and ``other`` (same shift), sorted:
        a range in one only, or with other digests."""
        out: list[int] = []
        self._differing(other, (0, len(self.ranges)), (0, len(other.ranges)), out)
        return out

    def differing_within(self, part: Marks, spans: list[tuple[int, int]]) -> list[int]:
        """:meth:`differing` against this table's marks with ``part``'s merged in
        (:func:`merged`): only the ranges inside ``spans`` can differ, so only those
        are compared (the work grows with the rows read, not with the table)."""
        out: list[int] = []
        for mine, theirs in _inside(self, part, spans):
            self._differing(part, mine, theirs, out)
        return out

    @cached_property
    def words(self) -> memoryview:
        """The digests as 8-byte words: one compared without slicing out two bytes."""
        return memoryview(self.digests).cast("Q")

    def _differing(
        self, other: Marks, mine: tuple[int, int], theirs: tuple[int, int], out: list[int]
    ) -> None:
        """A merge of two sorted runs of positions, ``[start, end)`` of each. Mostly
        both runs are of the same ranges (a changed page holds a few changed rows among
        many that are not): then their digests are compared as two byte strings first,
        and word by word only where those differ."""
        i, i_end = mine
        j, j_end = theirs
        left, right = self.ranges, other.ranges
        ours, theirs_words = self.words, other.words
        if i_end - i == j_end - j and left[i:i_end] == right[j:j_end]:
            size = DIGEST_BYTES
            if self.digests[i * size : i_end * size] != other.digests[j * size : j_end * size]:
                pairs = zip(ours[i:i_end], theirs_words[j:j_end], strict=True)
                out.extend(left[i + k] for k, (a, b) in enumerate(pairs) if a != b)
            return
        while i < i_end and j < j_end:
            if left[i] == right[j]:
                if ours[i] != theirs_words[j]:
                    out.append(left[i])
                i += 1
                j += 1
            elif left[i] < right[j]:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
        out.extend(left[i:i_end])
        out.extend(right[j:j_end])

    def keys_in(self, names: Sequence[int]) -> set[bytes]:
        """The key hashes of the rows in ranges ``names`` (sorted), when recorded."""
        if self.counts is None or not self.hashed:
            return set()
        size, offsets, hashes = self.key_size, self.offsets, self.key_hashes
        return {
            hashes[at : at + size]
            for start, end, _ in _located(self.ranges, names)
            for at in range(offsets[start] * size, offsets[end] * size, size)
        }


def _located(ranges: array[int], names: Sequence[int]) -> Iterator[tuple[int, int, int | None]]:
    """``names`` (sorted) found in ``ranges`` (sorted), in order: each run of
    consecutive positions held as ``(start, end, None)``, each name not held as
    ``(0, 0, name)``. Runs, not positions: a changed row's neighbours in the next
    ranges are often changed too, and a slice costs what one position does."""
    start = end = -1
    position = 0
    for name in names:
        position = bisect_left(ranges, name, position)
        if position < len(ranges) and ranges[position] == name:
            if position == end:
                end += 1
                continue
            if start < end:
                yield start, end, None
            start, end = position, position + 1
            continue
        if start < end:
            yield start, end, None
        start = end = -1
        yield 0, 0, name
    if start < end:
        yield start, end, None


def _inside(
    old: Marks, part: Marks, spans: list[tuple[int, int]]
) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
    """Per span, the positions ``[start, end)`` of ``old``'s and of ``part``'s ranges in it."""
    shift = old.shift
    i = j = 0
    for low, high in spans:
        first, last = low >> shift, high >> shift
        i = bisect_left(old.ranges, first, i)
        i_end = bisect_right(old.ranges, last, i)
        j = bisect_left(part.ranges, first, j)
        j_end = bisect_right(part.ranges, last, j)
        yield (i, i_end), (j, j_end)
        i, j = i_end, j_end


def request_for(table: TablePlan, shift: int | None = None) -> Request | None:
    """How ``table`` is marked, or None when it cannot be (no rowid, no integer key)."""
    key = integer_key_column(table)
    if key is not None:
        return Request(table.name, table.source_name, "int", key, shift, rows=table.row_count)
    if table.without_rowid:
        return None
    return Request(
        table.name, table.source_name, "rowid", None, shift, key_form(table), table.row_count
    )


def key_form(table: TablePlan) -> str | None:
    """How a single key column's value is written as text by PostgreSQL, when the marks
    can compute it in Python: ``text`` (a text key loaded as it is) or ``uuid``."""
    from asyncmig.plan.model import base_type

    if len(table.primary_key) != 1:
        return None
    column = table.column(table.primary_key[0])
    base = base_type(column.target_type)
    if column.transform == "none" and base in {"text", "character varying", "varchar"}:
        return "text"
    if column.transform in {"uuid", "uuid_checked"} and base == "uuid":
        return "uuid"
    return None


def key_size(form: str | None) -> int:
    """Bytes kept per row's key for a key written as ``form`` (:func:`key_form`)."""
    if form is None:
        return 0
    return UUID_KEY_BYTES if form == "uuid" else KEY_HASH_BYTES


def key_hashes(values: list[Any], form: str) -> bytes:
    """Each key of ``values`` as it is loaded, joined: a UUID's 16 bytes, or what
    :func:`pg_key_hash` computes in PostgreSQL for a text key (raises TypeError on a key
    that is not text, ValueError on one that is no UUID)."""
    if set(map(type, values)) - {str}:
        raise TypeError("a key that is not text")
    if form == "uuid":
        written = _uuid_bytes(values)
        if written is not None:
            return written
        return b"".join([uuid.UUID(v).bytes for v in values])
    md5, size = hashlib.md5, KEY_HASH_BYTES
    return b"".join([md5(v.encode(), usedforsecurity=False).digest()[:size] for v in values])


def _uuid_bytes(values: list[str]) -> bytes | None:
    """Each key's 16 bytes when every key is written 8-4-4-4-12 in hex digits (either
    case: what ``uuid.UUID`` reads them as), in a few calls over all of them instead of
    a parse or a pattern per key (2 µs each); None: some other spelling."""
    count = len(values)
    if set(map(len, values)) - {36}:
        return None
    joined = "".join(values)
    if any(joined[dash::36].count("-") != count for dash in (8, 13, 18, 23)):
        return None
    digits = joined.replace("-", "")
    if len(digits) != 32 * count or not digits.isascii():
        return None
    try:
        written = bytes.fromhex(digits)  # skips whitespace: the length tells
    except ValueError:
        return None
    return written if len(written) == 16 * count else None


def pg_key_hash(column: str) -> str:
    """SQL: the hash :func:`key_hashes` computes of a target row's key, in hex."""
    return f"left(md5({column}::text), {2 * KEY_HASH_BYTES})"


def integer_key_column(table: TablePlan) -> str | None:
    """The source name of a single integer primary key loaded as it is, else None."""
    from asyncmig.plan.model import base_type

    if len(table.primary_key) != 1:
        return None
    column = table.column(table.primary_key[0])
    if base_type(column.target_type) not in {"smallint", "integer", "bigint"}:
        return None
    return column.source_name if column.transform == "none" else None


# --- computing (in the child process) ------------------------------------------------


def _order_column(conn: sqlite3.Connection, request: Request) -> str:
    if request.mode == "int":
        assert request.key is not None
        return quote_sqlite_ident(request.key)
    taken = {
        str(r[1]).lower()
        for r in conn.execute(f"PRAGMA table_info({quote_sqlite_ident(request.source)})")
    }
    from asyncmig.check.sqlcanon import ROWID_NAMES

    name = next((n for n in ROWID_NAMES if n not in taken), None)
    if name is None:
        raise ValueError("every name of the rowid is a column")
    return name


def choose_shift(low: int, high: int, rows: int) -> int:
    """About ROWS_PER_MARK rows per range for the table's spread of keys."""
    per_key = (high - low + 1) / max(1, rows)
    shift = 0
    while (1 << (shift + 1)) <= per_key * ROWS_PER_MARK:
        shift += 1
    return shift


def compute(conn: sqlite3.Connection, request: Request) -> Marks:
    """The marks of one table from its rows, read as SQL values and pickled (raises on
    a value the marks cannot hold)."""
    column = _order_column(conn, request)
    table = quote_sqlite_ident(request.source)
    shift = _shift(conn, request, column)
    key = _key_position(conn, request)
    acc = _Accumulator(shift, request.key_form if key is not None else None, key)
    cursor = conn.execute(f"SELECT {column}, * FROM {table} ORDER BY {column}")
    while batch := cursor.fetchmany(FETCH):
        acc.add(batch)
    return acc.marks(request)


def _shift(conn: sqlite3.Connection, request: Request, column: str) -> int:
    """The recorded shift, else one for the table's spread of keys now."""
    if request.shift is not None:
        return request.shift
    low, high, rows = conn.execute(
        f"SELECT min({column}), max({column}), count(*) FROM {quote_sqlite_ident(request.source)}"
    ).fetchone()
    return choose_shift(int(low or 0), int(high or 0), int(rows))


def from_cells(
    conn: sqlite3.Connection,
    path: Path,
    request: Request,
    leaves: pages.Pages,
    spans: list[tuple[int, int]] | None = None,
) -> Marks | None:
    """The marks of one table from the raw cells of its leaf pages ``leaves``
    (:mod:`asyncmig.target.cells`); with ``spans`` (sorted, disjoint, whole ranges:
    :func:`aligned`) only of the ranges in them. None: the key's place in the record is
    not known (generated columns), or a cell did not parse (a key that is not text or
    not of its encoding, a page no longer a leaf): the rows are read instead."""
    key = _key_position(conn, request)
    if key is not None and _generated(conn, request.source):
        return None
    form = request.key_form if key is not None else None
    try:
        found = cells.compute(
            path,
            leaves,
            _shift(conn, request, _order_column(conn, request)),
            None if key is None else key - 1,
            spans,
        )
    except (ValueError, IndexError, struct.error):
        return None  # the rows are read instead, and raise what is wrong with them, if anything
    return Marks(
        table=request.table,
        mode=request.mode,
        shift=found.shift,
        ranges=found.ranges,
        digests=b"".join(found.digests),
        rows=found.rows,
        counts=found.counts,
        key_hashes=key_hashes(found.keys, form) if form is not None else b"",
        key_size=key_size(form),
        kind=cells.CELLS,
    )


def _generated(conn: sqlite3.Connection, table: str) -> bool:
    """Whether ``table`` has generated columns (hidden from ``table_info``)."""
    name = quote_sqlite_ident(table)
    shown = len(conn.execute(f"PRAGMA table_info({name})").fetchall())
    return len(conn.execute(f"PRAGMA table_xinfo({name})").fetchall()) != shown


def aligned(spans: list[tuple[int, int]], shift: int) -> list[tuple[int, int]]:
    """Rowid spans widened to whole ranges of ``shift`` and merged: (first, last) keys."""
    out: list[tuple[int, int]] = []
    for low, high in spans:
        first, last = (low >> shift) << shift, (((high >> shift) + 1) << shift) - 1
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def whole(found: Computed, old: Marks | None) -> Marks | None:
    """The table's marks now: ``found``'s, merged into ``old`` when only the ranges
    whose pages changed were computed (None: the old marks do not fit)."""
    if found.spans is None:
        return found.marks
    if old is None or old.counts is None or not old.fits(found.marks):
        return None
    _log().info(
        "pages_compared", table=old.table, spans=len(found.spans), rows_read=found.marks.rows
    )
    return merged(old, found.marks, found.spans)


def merged(old: Marks, part: Marks, spans: list[tuple[int, int]]) -> Marks:
    """``old`` with the ranges inside ``spans`` (aligned) replaced by ``part``'s: the
    marks of the whole table when only the rows in ``spans`` can have changed. The
    unchanged stretches between spans are copied as slices."""
    assert old.counts is not None and part.counts is not None and old.fits(part)
    out = _Slices(old.key_size)
    kept = 0
    for (start, end), (part_start, part_end) in _inside(old, part, spans):
        out.add(old, kept, start)
        out.add(part, part_start, part_end)
        kept = end
    out.add(old, kept, len(old.ranges))
    return out.marks(old, sum(out.counts))


def delta(now: Marks, names: Sequence[int]) -> Marks:
    """What turns the marks ``now`` was compared with into ``now``, given the ranges
    that differ between them (``names``, sorted: :meth:`Marks.differing`): ``now``'s
    marks of those ranges, a range it no longer holds as one of no rows. ``rows`` is
    the table's, as in ``now`` (:func:`applied` checks the result against it)."""
    assert now.counts is not None
    out = _Slices(now.key_size)
    for start, end, gone in _located(now.ranges, names):
        if gone is None:
            out.add(now, start, end)
        else:
            out.gone(gone)
    return out.marks(now, now.rows)


def applied(base: Marks, deltas: Sequence[Marks]) -> Marks | None:
    """``base`` with ``deltas`` (oldest first, each of :func:`delta`) applied: a range a
    later delta holds replaces an earlier one's and the base's, one of no rows removes
    it. None: the result does not hold the rows the newest delta recorded (a chain
    that is not what its runs wrote)."""
    if not deltas:
        return base
    latest: dict[int, tuple[Marks, int]] = {}
    for layer in reversed(deltas):
        for position, name in enumerate(layer.ranges):
            latest.setdefault(name, (layer, position))
    out = _Slices(base.key_size)
    kept = 0
    ranges = base.ranges
    for name in sorted(latest):
        position = bisect_left(ranges, name, kept)
        out.add(base, kept, position)
        kept = position + (position < len(ranges) and ranges[position] == name)
        layer, at = latest[name]
        assert layer.counts is not None
        if layer.counts[at]:
            out.add(layer, at, at + 1)
    out.add(base, kept, len(ranges))
    found = out.marks(base, sum(out.counts))
    return found if found.rows == deltas[-1].rows else None


class _Slices:
    """Marks built from slices of positions of other marks, in order."""

    def __init__(self, key_size: int):
        self.key_size = key_size
        self.ranges: array[int] = array("q")
        self.counts: array[int] = array("q")
        self.digests: list[bytes] = []
        self.hashes: list[bytes] = []

    def add(self, marks: Marks, start: int, end: int) -> None:
        if start >= end:
            return
        assert marks.counts is not None
        self.ranges.extend(marks.ranges[start:end])
        self.counts.extend(marks.counts[start:end])
        self.digests.append(marks.digests[start * DIGEST_BYTES : end * DIGEST_BYTES])
        if self.key_size:
            size, offsets = self.key_size, marks.offsets
            self.hashes.append(marks.key_hashes[offsets[start] * size : offsets[end] * size])

    def gone(self, name: int) -> None:
        """Range ``name`` as one of no rows (a delta's: the range is removed)."""
        self.ranges.append(name)
        self.counts.append(0)
        self.digests.append(bytes(DIGEST_BYTES))

    def marks(self, like: Marks, rows: int) -> Marks:
        return Marks(
            like.table,
            like.mode,
            like.shift,
            self.ranges,
            b"".join(self.digests),
            rows,
            self.counts,
            b"".join(self.hashes),
            like.key_size,
            like.kind,
        )


def _key_position(conn: sqlite3.Connection, request: Request) -> int | None:
    """Where the key column is in ``SELECT rowid, *`` (rowid marks with a key form):
    ``*`` has the generated columns too, which ``table_info`` leaves out (only a virtual
    table's hidden columns, hidden 1 in ``table_xinfo``, are not in it)."""
    if request.mode != "rowid" or request.key_form is None:
        return None
    name = quote_sqlite_ident(request.source)
    info = [r for r in conn.execute(f"PRAGMA table_xinfo({name})") if r[6] != 1]
    keys = [r for r in info if r[5]]
    return 1 + list(info).index(keys[0]) if len(keys) == 1 else None


class _Accumulator:
    """Rows in order of their range, into a digest (and key hashes) per range."""

    def __init__(self, shift: int, form: str | None, key: int | None):
        self.shift, self.form, self.key = shift, form, key
        self.ranges: array[int] = array("q")
        self.counts: array[int] = array("q")
        self.digests: list[bytes] = []
        self.hashes: list[bytes] = []
        self.pending: list[Any] = []
        self.current: int | None = None
        self.rows = 0

    def add(self, batch: list[Any]) -> None:
        self.rows += len(batch)
        if self.form is not None and self.key is not None:  # rows stay in order
            self.hashes.append(key_hashes([row[self.key] for row in batch], self.form))
        shift = self.shift
        firsts = [row[0] >> shift for row in batch]  # TypeError: a key that is no integer
        start = 0
        while start < len(batch):
            name = firsts[start]
            end = bisect_left(firsts, name + 1, start)
            if name != self.current:
                self._close()
                self.current = name
            self.pending.extend(batch[start:end])
            start = end

    def _close(self) -> None:
        if self.current is None:
            return
        self.ranges.append(self.current)
        self.counts.append(len(self.pending))
        self.digests.append(_digest(self.pending))
        self.pending = []

    def marks(self, request: Request) -> Marks:
        self._close()
        return Marks(
            request.table,
            request.mode,
            self.shift,
            self.ranges,
            b"".join(self.digests),
            self.rows,
            self.counts,
            b"".join(self.hashes),
            key_size(self.form) if self.key is not None else 0,
        )


def _digest(rows: list[Any]) -> bytes:
    return hashlib.blake2b(pickle.dumps(rows, protocol=5), digest_size=DIGEST_BYTES).digest()


def _main() -> None:
    """The child: a JSON request line and the old page records on stdin, framed marks
    and page records on stdout (see :func:`stream`)."""
    from asyncmig.cli.signals import bind_worker_to_parent  # while no job is known yet
    from asyncmig.source.sqlite import register_collations, source_uri

    stdin = sys.stdin.buffer
    job = json.loads(stdin.readline())
    olds = [stdin.read(size) if size else b"" for size in job["old_pages"]]
    bind_worker_to_parent(job["parent"])
    if job["nice"]:
        os.nice(job["nice"])

    path = Path(job["source"])
    conn = sqlite3.connect(source_uri(path), uri=True)
    register_collations(conn)
    out = sys.stdout.buffer
    for item, old in zip(job["tables"], olds, strict=True):
        request = Request(**item)
        try:
            header, body = _one_table(conn, path, request, old)
        except (sqlite3.Error, TypeError, ValueError, IndexError, struct.error) as exc:
            header = {"table": request.table, "error": f"{type(exc).__name__}: {exc}"}
            body = b""
        data = json.dumps(header).encode()
        out.write(HEADER.pack(len(data)) + data + body)
        out.flush()


def _one_table(
    conn: sqlite3.Connection, path: Path, request: Request, old: bytes
) -> tuple[dict[str, Any], bytes]:
    """Marks (from the cells when the leaf pages are known, then only of the ranges
    whose pages changed when the old page records tell) and the table's page records."""
    then = pages.Pages.unpack(old) if old else None
    now = _pages_of(conn, path, request, then)
    spans = None
    if then is not None and now is not None and request.shift is not None:
        spans = aligned(pages.changed(then, now), request.shift)
    marks = from_cells(conn, path, request, now, spans) if now is not None else None
    if marks is None:
        marks, spans = compute(conn, request), None
    assert marks.counts is not None
    packed = now.pack() if now is not None else b""
    header = {
        "table": request.table,
        "mode": marks.mode,
        "shift": marks.shift,
        "count": len(marks.ranges),
        "rows": marks.rows,
        "key_size": marks.key_size,
        "kind": marks.kind,
        "spans": spans,
        "pages": len(packed),
    }
    body = marks.ranges.tobytes() + marks.digests + marks.counts.tobytes() + marks.key_hashes
    return header, body + packed


def _pages_of(
    conn: sqlite3.Connection, path: Path, request: Request, then: pages.Pages | None
) -> pages.Pages | None:
    """The table's leaf pages, when its ranges are rowid ranges (``then``: as recorded)."""
    if request.mode == "int" and not (
        request.key is not None and pages.is_rowid(conn, request.source, request.key)
    ):
        return None
    return pages.read(conn, path, request.source, then)


# --- computing (in the parent) -------------------------------------------------------


@dataclass(frozen=True)
class Computed:
    """A child's answer for one table: the marks (only of ``spans`` when given: to be
    merged into the old ones) and the table's packed page records now."""

    marks: Marks
    spans: list[tuple[int, int]] | None
    pages: bytes


class Children:
    """Child processes started before their jobs are known (they wait for them on
    stdin), so that their start, an interpreter and its imports, overlaps the caller's
    own; those not taken are stopped by :meth:`aclose`."""

    def __init__(self) -> None:
        self.waiting: list[Process] = []

    async def start(self, count: int) -> None:
        for _ in range(count):
            self.waiting.append(await _open_child())

    def take(self) -> Process | None:
        return self.waiting.pop(0) if self.waiting else None

    async def aclose(self) -> None:
        while self.waiting:
            process = self.waiting.pop()
            stop_child(process)
            await _reaped(process)


async def _open_child() -> Process:
    """``-P`` and the parent's own package first on the path: the child runs the code
    the parent runs, never an ``asyncmig`` directory that happens to be the current one."""
    import anyio

    return await anyio.open_process(
        [sys.executable, "-P", "-m", "asyncmig.target.marks"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=child_environment(),
    )


def child_environment() -> dict[str, str]:
    """The environment with the directory this ``asyncmig`` was imported from first on
    ``PYTHONPATH``."""
    home = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([home, rest] if rest else [home])}


async def stream(
    source: Path,
    requests: Sequence[Request],
    old_pages: Sequence[bytes],
    *,
    nice: int = 0,
    process: Process | None = None,
) -> AsyncIterator[Computed | tuple[str, str]]:
    """Each requested table's marks, or (table, why not), computed by a child process
    (``process``: one already started, see :class:`Children`)."""
    import anyio

    job = {
        "source": str(source),  # the child has this process's working directory
        "nice": nice,
        "parent": os.getpid(),  # the child exits if this process is gone by then
        "tables": [r.__dict__ for r in requests],
        "old_pages": [len(p) for p in old_pages],
    }
    if process is None:
        process = await _open_child()
    try:
        assert process.stdin is not None and process.stdout is not None
        try:
            await process.stdin.send(json.dumps(job).encode() + b"\n" + b"".join(old_pages))
            await process.stdin.aclose()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise RuntimeError("the marks process ended before it read its job") from exc
        reader = _Reader(process.stdout)
        for _ in requests:
            yield await _answer(reader)
        await process.wait()
    finally:
        stop_child(process)
        await _reaped(process)


REAP_SECONDS = 5


async def _reaped(process: Process) -> None:
    """Wait (shielded: also when the sync is being cancelled) for a child to end, at
    most REAP_SECONDS: a killed child ends at once, unless something holds it (a
    debugger or profiler tracing it); a SIGTERM must not wait for that."""
    import anyio

    with anyio.move_on_after(REAP_SECONDS, shield=True) as scope:
        await process.aclose()
    if scope.cancelled_caught:
        _log().warning("marks_process_not_reaped", pid=process.pid)


async def _answer(reader: _Reader) -> Computed | tuple[str, str]:
    (size,) = HEADER.unpack(await reader.read(HEADER.size))
    header = json.loads(await reader.read(size))
    if "error" in header:
        return header["table"], header["error"]
    count = header["count"]
    body = count * (8 + DIGEST_BYTES + 8) + header["rows"] * header["key_size"] + header["pages"]
    return answered(header, await reader.read(body))


def answered(header: dict[str, Any], body: bytes) -> Computed:
    """A child's answer for one table (:func:`_one_table`'s header and body)."""
    count, rows, size = header["count"], header["rows"], header["key_size"]
    ranges: array[int] = array("q")
    ranges.frombytes(body[: count * 8])
    at = count * 8
    digests = body[at : at + count * DIGEST_BYTES]
    at += count * DIGEST_BYTES
    counts: array[int] = array("q")
    counts.frombytes(body[at : at + count * 8])
    at += count * 8
    found = Marks(
        header["table"],
        header["mode"],
        header["shift"],
        ranges,
        digests,
        rows,
        counts,
        body[at : at + rows * size],
        size,
        header["kind"],
    )
    spans = [(int(a), int(b)) for a, b in header["spans"]] if header["spans"] is not None else None
    return Computed(found, spans, body[at + rows * size :])


class _Reader:
    def __init__(self, stream: Any):
        self.stream = stream
        self.buffer = bytearray()

    async def read(self, size: int) -> bytes:
        import anyio

        while len(self.buffer) < size:
            try:
                self.buffer += await self.stream.receive(1 << 20)
            except anyio.EndOfStream:
                raise RuntimeError("the marks process ended early") from None
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


def dealt(requests: list[Request], jobs: int) -> list[list[Request]]:
    """The requests in ``jobs`` groups of about as many rows each, each group in the
    requested order (each table to the group with the fewest rows so far)."""
    groups: list[list[Request]] = [[] for _ in range(jobs)]
    rows = [0] * jobs
    for request in requests:
        lightest = rows.index(min(rows))
        groups[lightest].append(request)
        rows[lightest] += max(1, request.rows)
    return groups


class Feed:
    """The source's marks, computed by ``jobs`` child processes in the order requested
    (dealt by rows), each table's handed out as soon as it is done. ``old_pages``: the
    page records the newest load kept, by table: where they are, only the ranges whose
    pages changed are computed (the caller merges them into the old marks)."""

    def __init__(
        self,
        source: Path,
        requests: list[Request],
        jobs: int,
        nice: int = 0,
        old_pages: dict[str, bytes] | None = None,
        children: Children | None = None,
    ):
        import anyio

        self.source, self.requests, self.nice = source, requests, nice
        self.jobs = max(1, jobs)
        self.old_pages = old_pages or {}
        self.children = children
        self.found: dict[str, Computed] = {}
        self.ended: dict[str, anyio.Event] = {r.table: anyio.Event() for r in requests}
        self.order: list[str] = []  # the tables whose marks are done (or failed), in order
        self._news = anyio.Event()

    async def run(self) -> None:
        import anyio

        groups = dealt(self.requests, self.jobs)
        try:
            async with anyio.create_task_group() as tg:
                for group in groups:
                    if group:
                        tg.start_soon(self._one, group)
        finally:
            for table in self.ended:  # a failed child: its tables unmarked
                self._end(table)

    def _end(self, table: str) -> None:
        if not self.ended[table].is_set():
            self.ended[table].set()
            self.order.append(table)
            self._news.set()

    async def ended_after(self, count: int) -> str:
        """The table whose marks were done (or failed) after ``count`` others."""
        import anyio

        while len(self.order) <= count:
            self._news = anyio.Event()
            await self._news.wait()
        return self.order[count]

    async def _one(self, group: list[Request]) -> None:
        olds = [self.old_pages.get(r.table, b"") for r in group]
        try:
            started = self.children.take() if self.children is not None else None
            async for item in stream(self.source, group, olds, nice=self.nice, process=started):
                if isinstance(item, Computed):
                    self.found[item.marks.table] = item
                    self._end(item.marks.table)
                else:
                    _log().info("not_marked", table=item[0], reason=item[1])
                    self._end(item[0])
        except (RuntimeError, OSError) as exc:  # its tables are compared row by row
            _log().warning("marks_failed", tables=[r.table for r in group], error=str(exc))
            for request in group:
                self._end(request.table)

    async def get(self, table: str) -> Computed | None:
        """The table's marks, once computed (None: it has none); handed over, not kept."""
        event = self.ended.get(table)
        if event is None:
            return None
        await event.wait()
        return self.found.pop(table, None)


# --- storing -------------------------------------------------------------------------


@dataclass(frozen=True)
class Kept:
    """What is stored of one table's marks: all of them, or (``base`` given) a
    :func:`delta` over the marks of run ``base``; and its page records now."""

    marks: Marks
    pages: bytes
    base: int | None = None


@dataclass(frozen=True)
class Recorded:
    """One table's marks as a run left them: ``marks``, the newest whole ones with
    ``deltas`` deltas applied, which held ``entries`` ranges in all."""

    marks: Marks
    deltas: int = 0
    entries: int = 0

    def kept(self, now: Marks, differing: Sequence[int], run: int, pages: bytes) -> Kept:
        """``now``, which differs from these marks (of ``run``) in ``differing``, to be
        stored: as a delta while the chain stays short, else whole."""
        entries = self.entries + len(differing)
        if self.deltas < MAX_DELTAS and entries <= DELTA_SHARE * len(now.ranges):
            return Kept(delta(now, differing), pages, run)
        return Kept(now, pages)


async def store(
    conn: asyncpg.Connection,
    run_id: int,
    marks: Marks,
    pages: bytes = b"",
    base: int | None = None,
) -> None:
    """One table's marks (and page records, with the first part) under ``run_id``, in
    parts of PART_RANGES ranges; with ``base``, a :func:`delta` over run ``base``'s."""
    assert marks.counts is not None
    kind = marks.kind if base is None else DELTA + marks.kind
    rows = []
    offset = 0
    size = marks.key_size
    for part, start in enumerate(range(0, max(1, len(marks.ranges)), PART_RANGES)):
        end = start + PART_RANGES
        counts = marks.counts[start:end]
        rows_in = sum(counts)
        hashes = marks.key_hashes[offset * size : (offset + rows_in) * size]
        offset += rows_in
        rows.append(
            (
                run_id,
                marks.table,
                part,
                marks.mode,
                marks.shift,
                marks.ranges[start:end].tobytes(),
                marks.digests[start * DIGEST_BYTES : end * DIGEST_BYTES],
                counts.tobytes(),
                hashes if marks.hashed else None,
                marks.rows,
                (pages or None) if part == 0 else None,
                size,
                kind,
                base,
            )
        )
    await conn.executemany(
        f"INSERT INTO {MARKS} (run_id, table_name, part, mode, shift, ranges, digests, "
        "counts, key_hashes, rows, pages, key_size, kind, base_run) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        rows,
    )


async def recorded_pages(conn: asyncpg.Connection, run_id: int) -> dict[str, bytes]:
    """The page records kept under ``run_id``, by table, with marks of cells (those of
    marks of rows, kept before marks were read from cells, would have the changed
    pages' ranges computed from cells and merged into digests of another kind) and
    with key sizes (not of marks kept before those were recorded), whose chain of
    deltas leads back to whole marks (the changed pages' ranges are merged into those).
    Without them, a table is marked anew, whole (and compared row by row once)."""
    rows = await conn.fetch(
        _chain_sql("$1")
        + f"""SELECT table_name, pages FROM {MARKS} WHERE run_id = $1 AND part = 0
        AND pages IS NOT NULL AND kind IN ($2, $3)
        AND (key_size IS NOT NULL OR key_hashes IS NULL)
        AND table_name IN (SELECT table_name FROM chain WHERE base_run IS NULL)""",
        run_id,
        cells.CELLS,
        DELTA + cells.CELLS,
    )
    return {str(r[0]): bytes(r[1]) for r in rows}


async def forget(conn: asyncpg.Connection, run_id: int, tables: list[str]) -> None:
    await conn.execute(
        f"DELETE FROM {MARKS} WHERE run_id = $1 AND table_name = ANY($2::text[])", run_id, tables
    )


async def forget_run(conn: asyncpg.Connection, run_id: int) -> None:
    """Every mark stored under ``run_id`` (one that did not succeed)."""
    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", "asyncmig.source_marks"):
        await conn.execute(f"DELETE FROM {MARKS} WHERE run_id = $1", run_id)


def _chain_sql(run: str, table: str | None = None) -> str:
    """A recursive CTE, ``chain (run_id, table_name, base_run, depth)``: the marks of run
    ``run`` (a parameter; with ``table``, of that table only) and, table by table, the
    runs its deltas are over back to its whole marks (``base_run`` none), as deep as
    :func:`recorded` follows a chain."""
    only = f" AND table_name = {table}" if table is not None else ""
    return f"""WITH RECURSIVE chain (run_id, table_name, base_run, depth) AS (
        SELECT run_id, table_name, base_run, 0 FROM {MARKS}
        WHERE run_id = {run} AND part = 0{only}
        UNION ALL
        SELECT m.run_id, m.table_name, m.base_run, c.depth + 1 FROM chain c
        JOIN {MARKS} m ON m.run_id = c.base_run AND m.table_name = c.table_name
        WHERE m.part = 0 AND c.depth < {MAX_DELTAS}
    )
    """


async def forget_older(conn: asyncpg.Connection, schema: str, run_id: int) -> None:
    """Only the newest load's marks are ever read: drop those of earlier runs, except
    the ones its deltas are over (each table's chain back to its whole marks)."""
    await conn.execute(
        _chain_sql("$2")
        + f"""DELETE FROM {MARKS} m USING {qualified("asyncmig", "runs")} r
        WHERE r.id = m.run_id AND r.target_schema = $1 AND m.run_id < $2
        AND (m.run_id, m.table_name) NOT IN (SELECT run_id, table_name FROM chain)""",
        schema,
        run_id,
    )


async def shapes(conn: asyncpg.Connection, run_id: int) -> dict[str, tuple[str, int]]:
    """How each table was marked under ``run_id``: (mode, shift)."""
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", "asyncmig.source_marks"):
        return {}
    rows = await conn.fetch(
        f"SELECT table_name, mode, shift FROM {MARKS} WHERE run_id = $1 AND part = 0", run_id
    )
    return {str(r[0]): (str(r[1]), int(r[2])) for r in rows}


async def recorded(conn: asyncpg.Connection, run_id: int, table: str) -> Recorded | None:
    """One table's marks as run ``run_id`` left them (read when the sync comes to it):
    its whole marks, or those its chain of deltas leads back to with the deltas
    applied. None: none kept, or a chain that cannot be followed or does not add up."""
    rows = await conn.fetch(
        "SELECT table_name, mode, shift, ranges, digests, counts, key_hashes, rows, key_size, "
        f"kind, base_run, m.run_id, c.depth FROM {MARKS} m JOIN ("
        + _chain_sql("$1", "$2")
        + "SELECT run_id, depth FROM chain) c ON m.run_id = c.run_id "
        "WHERE m.table_name = $2 ORDER BY c.depth, m.part",
        run_id,
        table,
    )
    if not rows or rows[-1][10] is not None:  # none kept, or no whole marks at its end
        return None
    layers: list[Marks] = []
    for _, group in groupby(rows, key=lambda row: row[12]):
        layer = list(group)
        run, base = layer[0][11], layer[0][10]
        if (base is not None) != str(layer[0][9]).startswith(DELTA) or (base or 0) >= run:
            return None
        layers.append(_joined(table, layer))
    whole, deltas = layers[-1], layers[-2::-1]
    if whole.counts is None or not all(whole.fits(d) for d in deltas):
        return None
    found = applied(whole, deltas)
    if found is None:
        return None
    return Recorded(found, len(deltas), sum(len(d.ranges) for d in deltas))


def _joined(table: str, rows: list[Any]) -> Marks:
    ranges: array[int] = array("q")
    counts: array[int] | None = array("q") if rows[0][5] is not None else None
    for row in rows:
        ranges.frombytes(row[3])
        if counts is not None:
            counts.frombytes(row[5])
    hashed = rows[0][6] is not None
    # marks kept before key sizes were recorded held 8 bytes of MD5 for every key form
    size = (KEY_HASH_BYTES if rows[0][8] is None else int(rows[0][8])) if hashed else 0
    return Marks(
        table,
        rows[0][1],
        rows[0][2],
        ranges,
        b"".join(bytes(row[4]) for row in rows),
        int(rows[0][7]),
        counts,
        b"".join(bytes(row[6]) for row in rows) if hashed else b"",
        size,
        # marks kept before kinds were recorded: of rows; a delta's, as its whole marks'
        (rows[0][9] or ROWS).removeprefix(DELTA),
    )


def requests(plan: Plan, known: dict[str, tuple[str, int]] | None = None) -> list[Request]:
    """A request per table that can be marked, with the recorded shift where there is
    one (``known``: mode and shift by table); in the plan's order (parents first: the
    order a sync applies them in)."""
    out = []
    for table in plan.tables:
        old = (known or {}).get(table.name)
        request = request_for(table, old[1] if old else None)
        if request is not None and old is not None and old[0] != request.mode:
            request = request_for(table)
        if request is not None:
            out.append(request)
    return out


def chunks(values: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Consecutive range numbers merged into (first, last) runs."""
    start = previous = None
    for value in values:
        if start is None:
            start = previous = value
        elif value == previous + 1:  # type: ignore[operator]
            previous = value
        else:
            yield start, previous  # type: ignore[misc]
            start = previous = value
    if start is not None:
        yield start, previous  # type: ignore[misc]


if __name__ == "__main__":
    _main()
