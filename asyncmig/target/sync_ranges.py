"""Which rows differ between a source table and its copy: compared range by range.

Every row of both sides is rendered to the canonical text ``check --deep`` uses
(:mod:`asyncmig.check.deep`: the migration's transforms applied on the SQLite side,
by SQLite itself where it can (:mod:`asyncmig.check.sqlcanon`); the same text computed
in SQL on the PostgreSQL side), and hashed. The key space is
cut into small ranges of about :data:`ROWS_PER_RANGE` rows:

* a single integer key (the commonest: a rowid alias) by value, ``key >> shift``,
  so a range is a run of consecutive ids and the source re-reads it by index;
* any other key (uuid, text, composite) by the first hex digits of the md5 of the
  key's text, which spreads any key type evenly;
* a table without a primary key is one range: its rows have no identity to match,
  so when it differs it is reloaded whole.

Pass 1 computes a digest per range on both sides at once (count and two sums of row
hashes, as ``check --deep``: independent of row order). Pass 2 reads only the ranges
whose digests differ, row by row: a key only in SQLite is an insert, only in
PostgreSQL a delete (named by its ``ctid``, valid because the caller holds a lock
that stops writers), on both sides with another row hash an update. The rows of a few
hash ranges are found by reading the key columns alone; only they are rendered.

Small ranges matter: with 1 % of rows changed at random, a range of 16 rows is
unchanged with probability 0.99**16 = 85 %, so pass 2 reads about a seventh of the
table, where ranges of 1,000 rows would all differ.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import asyncpg

from asyncmig.check import sqlcanon
from asyncmig.check.deep import (
    FETCH_ROWS,
    Digest,
    TableCheck,
    both_sides,
    digest_of,
    digest_sums,
    md5_hex,
)
from asyncmig.load.policy import lenient_text
from asyncmig.plan.model import Plan
from asyncmig.quoting import qualified, quote_ident, quote_sqlite_ident
from asyncmig.source.sqlite import open_sync
from asyncmig.target.marks import integer_key_column

ROWS_PER_RANGE = 16
Row = tuple[Any, ...]
Hashed = tuple[str, str, str, Any]  # range, key text, row hash, the row (or its rowid)


@dataclass(frozen=True)
class Ranges:
    """How one table's keys are cut into ranges: ``int`` (by value), ``hash`` or ``whole``."""

    kind: str
    shift: int = 0  # int: range number = key >> shift
    digits: int = 1  # hash: hex digits of md5(key text)

    def pg_sql(self, key_column: str, key_text: str) -> str:
        """The range of a target row, as text."""
        if self.kind == "int":
            return f"({key_column} >> {self.shift})::text"
        if self.kind == "hash":
            return f"left(md5({key_text}), {self.digits})"
        return "''"

    def of(self, key_value: Any, key_text: str) -> str:
        """The range of a source row: its raw key value, or its rendered key text."""
        return self.of_bytes(key_value, key_text.encode("utf-8"))

    def of_bytes(self, key_value: Any, key_text: bytes) -> str:
        """:meth:`of` with the key text as UTF-8 bytes (as SQLite renders it)."""
        if self.kind == "int":
            return str(int(key_value) >> self.shift)
        if self.kind == "hash":
            return hashlib.md5(key_text, usedforsecurity=False).hexdigest()[: self.digits]
        return ""

    def bounds(self, name: str) -> tuple[int, int]:
        """An int range's first and last key."""
        low = int(name) << self.shift
        return low, low + (1 << self.shift) - 1


@dataclass
class Changes:
    """What a table needs: source rows to insert or update, target rows to delete."""

    inserts: list[Row] = field(default_factory=list)
    updates: list[Row] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)  # ctids
    ranges: int = 0
    differing: int = 0
    reload: bool = False  # no usable key: the whole table again
    source_rows: int = 0
    target_rows: int = 0
    replaced: dict[str, int] = field(default_factory=dict)  # "column: action" -> values

    @property
    def any(self) -> bool:
        return bool(self.inserts or self.updates or self.deletes or self.reload)


def integer_key(check: TableCheck) -> bool:
    """A single integer key that SQLite already holds as integers (transform none)."""
    return integer_key_column(check.table) is not None


def choose_ranges(sqlite: sqlite3.Connection, check: TableCheck) -> Ranges:
    """Ranges of about ROWS_PER_RANGE source rows each."""
    table = check.table
    if not table.primary_key:
        return Ranges("whole")
    rows = max(1, table.row_count)
    if integer_key(check):
        name = quote_sqlite_ident(check.table.column(table.primary_key[0]).source_name)
        low, high = sqlite.execute(
            f"SELECT min({name}), max({name}) FROM {quote_sqlite_ident(table.source_name)}"
        ).fetchone()
        if isinstance(low, int) and isinstance(high, int):
            per_key = (high - low + 1) / rows  # ids per row: 1 when dense
            return Ranges("int", shift=max(0, round(math.log2(per_key * ROWS_PER_RANGE))))
    digits = max(1, round(math.log(max(1.0, rows / ROWS_PER_RANGE), 16)))
    return Ranges("hash", digits=min(digits, 8))


class TableDiff:
    """Both sides of one table, compared range by range (see the module docstring)."""

    def __init__(self, check: TableCheck, sqlite: sqlite3.Connection, ranges: Ranges):
        self.check = check
        self.sqlite = sqlite
        self.ranges = ranges
        self.cells = check.cells()
        self.keys = check.key_positions
        rowid = sqlcanon.rowid_name(check)
        usable = rowid is not None and sqlcanon.usable(sqlite, check.table.without_rowid)
        # SQLite renders what it can (asyncmig.check.sqlcanon); else every value in Python
        self.fast = sqlcanon.SourceRows(check, rowid, key_text=True) if usable and rowid else None

    # ---- PostgreSQL ----

    def _pg_rows_sql(self) -> str:
        """One row per target row: ctid, range, key text, row hash."""
        fields = [
            f"quote_nullable({self.check.pg_expression(i)})"
            for i in range(len(self.check.table.columns))
        ]
        key_text = f"concat_ws(',', {', '.join(fields[p] for p in self.keys)})"
        row_text = f"concat_ws(',', {', '.join(fields)})"
        key_column = quote_ident(self.check.table.columns[self.keys[0]].name)
        return (
            f"SELECT ctid::text AS t, {self.ranges.pg_sql(key_column, key_text)} AS b, "
            f"{key_text} AS k, md5({row_text}) AS h "
            f"FROM {qualified(self.check.plan.schema, self.check.table.name)}"
        )

    def pg_digests_sql(self) -> str:
        """OFFSET 0: the row hash is computed once, not once per sum."""
        return f"SELECT b, {digest_sums()} FROM ({self._pg_rows_sql()} OFFSET 0) AS r GROUP BY b"

    def pg_rows_sql(self) -> str:
        """$1: the ranges to read."""
        return (
            f"SELECT t, k, h FROM ({self._pg_rows_sql()}) AS r "
            "WHERE b IN (SELECT unnest($1::text[]))"  # hashed: thousands of ranges
        )

    # ---- SQLite ----

    def _scan(self, where: str = "", params: tuple[int, ...] = ()) -> Iterator[Row]:
        cursor = self.sqlite.execute(self.check.source_sql() + where, params)
        while batch := cursor.fetchmany(FETCH_ROWS):
            yield from (row for row in batch if not self.check.skips(row))

    def _hashed(self, where: str = "", params: tuple[int, ...] = ()) -> Iterator[Hashed]:
        """(range, key text, row hash, the row or its rowid) of each source row."""
        if self.fast is not None:
            for rowid, stored_key, key_text, row_hash in self.fast.hashed(
                self.sqlite, where, params
            ):
                yield self.ranges.of(stored_key, key_text), key_text, row_hash, rowid
            return
        for row in self._scan(where, params):
            fields = [render(value) for render, value in zip(self.cells, row, strict=True)]
            key_text = ",".join([fields[p] for p in self.keys])
            name = self.ranges.of(row[self.keys[0]], key_text)
            yield name, key_text, md5_hex(",".join(fields)), row

    def source_digests(self) -> dict[str, Digest]:
        if self.fast is not None:
            return self.fast.range_digests(self.sqlite, self.ranges.of_bytes)
        digests: dict[str, Digest] = {}
        for name, _key, row_hash, _row in self._hashed():
            digest = digests.get(name)
            if digest is None:
                digest = digests[name] = Digest()
            digest.add(row_hash)
        return digests

    def source_rows(self, names: set[str]) -> dict[str, tuple[str, Any]]:
        """Key text -> (row hash, raw row or its rowid) for the rows in ranges ``names``."""
        return {
            key_text: (row_hash, row)
            for name, key_text, row_hash, row in self._rows_in(names)
            if name in names
        }

    def _rows_in(self, names: set[str]) -> Iterator[Hashed]:
        if self.ranges.kind != "int" and self.fast is not None:
            # hash ranges are spread over the whole key space: find their rows by the
            # key columns alone, then render only those rows
            rowids = self.fast.rowids_where(
                self.sqlite, lambda stored, key: self.ranges.of_bytes(stored, key) in names
            )
            for rowid, stored_key, key_text, row_hash in self.fast.hashed_rowids(
                self.sqlite, rowids
            ):
                yield self.ranges.of(stored_key, key_text), key_text, row_hash, rowid
            return
        if self.ranges.kind != "int":
            yield from self._hashed()
            return
        column = quote_sqlite_ident(self.check.table.columns[self.keys[0]].source_name)
        for name in sorted(names, key=int):
            yield from self._hashed(f" WHERE {column} BETWEEN ? AND ?", self.ranges.bounds(name))

    def raw_rows(self, found: list[Any]) -> list[Row]:
        """The raw rows of ``found`` (rows, or rowids when SQLite rendered them)."""
        if self.fast is None:
            return found
        return [self.fast.raw_row(self.sqlite, rowid) for rowid in found]

    # ---- both ----

    async def pg_digests(self, conn: asyncpg.Connection) -> dict[str, Digest]:
        return {str(r[0]): digest_of(r[1:]) for r in await conn.fetch(self.pg_digests_sql())}

    async def compare(
        self, conn: asyncpg.Connection, source: dict[str, Digest], target: dict[str, Digest]
    ) -> Changes:
        """Pass 2 over the ranges whose pass-1 digests differ (see the module docstring)."""
        differing = {
            name for name in source.keys() | target.keys() if source.get(name) != target.get(name)
        }
        changes = Changes(
            ranges=len(source.keys() | target.keys()),
            differing=len(differing),
            source_rows=sum(d.count for d in source.values()),
            target_rows=sum(d.count for d in target.values()),
        )
        if not differing:
            return changes
        if self.ranges.kind == "whole":
            changes.reload = True
            return changes
        src_rows, pg_rows = await both_sides(
            lambda: self.source_rows(differing),
            lambda: conn.fetch(self.pg_rows_sql(), sorted(differing)),
        )
        _classify(changes, src_rows, {str(r[1]): (str(r[2]), str(r[0])) for r in pg_rows})
        changes.inserts = await anyio.to_thread.run_sync(self.raw_rows, changes.inserts)
        changes.updates = await anyio.to_thread.run_sync(self.raw_rows, changes.updates)
        return changes


def source_digests_of(
    source: Path, plan: Plan, table: str, skip: set[object], ranges: Ranges
) -> dict[str, Digest]:
    """Pass 1 on the SQLite side for one table, on a connection of its own: run in a
    worker process, so tables are rendered in parallel (the rendering is Python work)."""
    sqlite = open_sync(source)
    sqlite.text_factory = lenient_text
    try:
        return TableDiff(TableCheck(plan, plan.table(table), skip), sqlite, ranges).source_digests()
    finally:
        sqlite.close()


def _classify(
    changes: Changes, source: dict[str, tuple[str, Any]], target: dict[str, tuple[str, str]]
) -> None:
    """Keys only in the source are inserts, only in the target deletes, else updates."""
    for key, (row_hash, row) in source.items():
        found = target.get(key)
        if found is None:
            changes.inserts.append(row)
        elif found[0] != row_hash:
            changes.updates.append(row)
    changes.deletes.extend(ctid for key, (_, ctid) in target.items() if key not in source)
