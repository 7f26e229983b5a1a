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
that stops writers), on both sides with another row hash an update. The rows of hash
ranges are found by reading the key columns alone; only they are rendered.

Pass 2 holds one *group* of differing ranges at a time (about :data:`GROUP_ROWS`
rows, by pass 1's counts), whatever share of the table differs: the target's rows
come from one cursor in range order, the source's a group at a time, and each group's
classified rows go straight on (:meth:`TableDiff.groups`; the caller copies them into
temporary tables), so a table whose every row changed is not held in memory.

Small ranges matter: with 1 % of rows changed at random, a range of 16 rows is
unchanged with probability 0.99**16 = 85 %, so pass 2 reads about a seventh of the
table, where ranges of 1,000 rows would all differ.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from array import array
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
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
    digest_sql,
    md5_hex,
)
from asyncmig.load.policy import lenient_text
from asyncmig.plan.model import Plan
from asyncmig.quoting import qualified, quote_ident, quote_sqlite_ident
from asyncmig.source.sqlite import open_sync
from asyncmig.target.marks import integer_key_column

ROWS_PER_RANGE = 16
GROUP_ROWS = 20_000  # rows of differing ranges that pass 2 holds at once
TARGET_FETCH = 5000  # target rows per fetch from pass 2's cursor
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

    def order(self, name: str) -> Any:
        """What orders range names alike on both sides (pass 2 walks them in order)."""
        return int(name) if self.kind == "int" else name

    def pg_order(self) -> str:
        """:meth:`order` in SQL, over ``b`` (:meth:`pg_sql`'s text)."""
        return "b::bigint" if self.kind == "int" else 'b COLLATE "C"'

    def bounds(self, name: str) -> tuple[int, int]:
        """An int range's first and last key."""
        low = int(name) << self.shift
        return low, low + (1 << self.shift) - 1


@dataclass
class Changes:
    """What a table needs: how many source rows to insert or update and target rows to
    delete, and the temporary tables holding them (filled by the caller during pass 2)."""

    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    rows_table: str = ""  # the rows to insert or update, converted
    gone_table: str = ""  # the ctids of the target rows to delete
    ranges: int = 0
    differing: int = 0
    reload: bool = False  # no usable key: the whole table again
    source_rows: int = 0
    target_rows: int = 0
    replaced: dict[str, int] = field(default_factory=dict)  # "column: action" -> values

    @property
    def any(self) -> bool:
        return bool(self.inserts or self.updates or self.deletes or self.reload)


@dataclass
class Group:
    """One group of differing ranges, classified: the source's rows to insert and to
    update (as ``check.source_sql()`` reads them) and the target's rows to delete."""

    inserts: list[Row] = field(default_factory=list)
    updates: list[Row] = field(default_factory=list)
    deletes: list[tuple[int, int]] = field(default_factory=list)  # ctids


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
            f"SELECT ctid AS t, {self.ranges.pg_sql(key_column, key_text)} AS b, "
            f"{key_text} AS k, md5({row_text}) AS h "
            f"FROM {qualified(self.check.plan.schema, self.check.table.name)}"
        )

    def pg_digests_sql(self) -> str:
        """Each range's digest (:func:`asyncmig.check.deep.digest_sql`)."""
        return digest_sql(self._pg_rows_sql(), "b")

    def pg_rows_sql(self) -> str:
        """$1: the ranges to read; in range order (pass 2 walks them a group at a time)."""
        return (
            f"SELECT b, t, k, h FROM ({self._pg_rows_sql()}) AS r "
            "WHERE b IN (SELECT unnest($1::text[])) "  # hashed: thousands of ranges
            f"ORDER BY {self.ranges.pg_order()}"
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

    def group_ranges(self, differing: set[str], counts: Mapping[str, int]) -> list[list[str]]:
        """The differing ranges in order, cut into groups of about GROUP_ROWS rows."""
        groups: list[list[str]] = []
        rows = 0
        for name in sorted(differing, key=self.ranges.order):
            count = counts.get(name, 0)
            if not groups or (groups[-1] and rows + count > GROUP_ROWS):
                groups.append([])
                rows = 0
            groups[-1].append(name)
            rows += count
        return groups

    def locate(self, groups: list[list[str]]) -> list[array[int]] | None:
        """Hash ranges read by rowid: each group's rowids, found in one scan of the
        key columns alone (None: the ranges are read otherwise)."""
        if self.ranges.kind == "int" or self.fast is None:
            return None
        group_of = {name: number for number, names in enumerate(groups) for name in names}
        return self.fast.grouped_rowids(
            self.sqlite,
            lambda stored, key: group_of.get(self.ranges.of_bytes(stored, key)),
            len(groups),
        )

    def source_rows(
        self, names: list[str], rowids: Sequence[int] | None
    ) -> dict[str, tuple[str, Any]]:
        """Key text -> (row hash, raw row or its rowid) for the rows in ranges ``names``
        (``rowids``: theirs, from :meth:`locate`)."""
        wanted = set(names)
        return {
            key_text: (row_hash, row)
            for name, key_text, row_hash, row in self._rows_in(names, rowids)
            if name in wanted
        }

    def _rows_in(self, names: list[str], rowids: Sequence[int] | None) -> Iterator[Hashed]:
        if rowids is not None:
            assert self.fast is not None
            for rowid, stored_key, key_text, row_hash in self.fast.hashed_rowids(
                self.sqlite, rowids
            ):
                yield self.ranges.of(stored_key, key_text), key_text, row_hash, rowid
            return
        if self.ranges.kind != "int":
            # no rowid to find them by: every row read again, each group's kept
            yield from self._hashed()
            return
        column = quote_sqlite_ident(self.check.table.columns[self.keys[0]].source_name)
        for name in names:
            yield from self._hashed(f" WHERE {column} BETWEEN ? AND ?", self.ranges.bounds(name))

    def raw_rows(self, found: list[Any]) -> list[Row]:
        """The raw rows of ``found`` (rows, or rowids when SQLite rendered them)."""
        if self.fast is None:
            return found
        return self.fast.raw_rows(self.sqlite, found)

    # ---- both ----

    async def pg_digests(self, conn: asyncpg.Connection) -> dict[str, Digest]:
        return {str(r[0]): digest_of(r[1:]) for r in await conn.fetch(self.pg_digests_sql())}

    def summary(
        self, source: Mapping[str, Digest], target: Mapping[str, Digest]
    ) -> tuple[Changes, set[str]]:
        """Pass 1's outcome: the table's counts and the ranges whose digests differ."""
        differing = {
            name for name in source.keys() | target.keys() if source.get(name) != target.get(name)
        }
        changes = Changes(
            ranges=len(source.keys() | target.keys()),
            differing=len(differing),
            reload=bool(differing) and self.ranges.kind == "whole",
            source_rows=sum(d.count for d in source.values()),
            target_rows=sum(d.count for d in target.values()),
        )
        return changes, differing

    async def groups(
        self,
        conn: asyncpg.Connection,
        source: Mapping[str, Digest],
        target: Mapping[str, Digest],
        differing: set[str],
    ) -> AsyncIterator[Group]:
        """Pass 2 over the differing ranges (see the module docstring), a group at a
        time; ``conn`` must be in a transaction (the target's side is a cursor)."""
        counts = {
            name: max(d.count for d in (source.get(name), target.get(name)) if d is not None)
            for name in differing
        }
        ordered = self.group_ranges(differing, counts)
        located = await anyio.to_thread.run_sync(self.locate, ordered)
        cursor = await conn.cursor(self.pg_rows_sql(), sorted(differing))
        walk = _Ordered(cursor, self.ranges.order)
        for number, names in enumerate(ordered):
            rowids = located[number] if located is not None else None
            last = self.ranges.order(names[-1])
            src_rows, pg_rows = await both_sides(
                lambda: self.source_rows(names, rowids),  # noqa: B023 (awaited here)
                lambda: walk.until(last),  # noqa: B023
            )
            group = _classify(src_rows, {str(r["k"]): (str(r["h"]), r["t"]) for r in pg_rows})
            del src_rows, pg_rows
            group.inserts = await anyio.to_thread.run_sync(self.raw_rows, group.inserts)
            group.updates = await anyio.to_thread.run_sync(self.raw_rows, group.updates)
            yield group


class _Ordered:
    """The target's rows of the differing ranges, in range order, a fetch at a time."""

    def __init__(self, cursor: Any, order: Callable[[str], Any]):
        self.cursor = cursor
        self.order = order
        self.rows: list[Any] = []
        self.at = 0
        self.done = False

    async def until(self, last: Any) -> list[Any]:
        """The next rows whose range is at most ``last`` (in :meth:`Ranges.order`)."""
        out: list[Any] = []
        while True:
            while self.at < len(self.rows):
                row = self.rows[self.at]
                if self.order(row["b"]) > last:
                    return out
                out.append(row)
                self.at += 1
            if self.done:
                return out
            self.rows, self.at = await self.cursor.fetch(TARGET_FETCH), 0
            self.done = len(self.rows) < TARGET_FETCH


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


def _classify(source: dict[str, tuple[str, Any]], target: dict[str, tuple[str, Any]]) -> Group:
    """Keys only in the source are inserts, only in the target deletes, else updates."""
    group = Group()
    for key, (row_hash, row) in source.items():
        found = target.get(key)
        if found is None:
            group.inserts.append(row)
        elif found[0] != row_hash:
            group.updates.append(row)
    group.deletes.extend(ctid for key, (_, ctid) in target.items() if key not in source)
    return group
