"""Which rowids of a source table can have changed: its b-tree's leaf pages, compared.

Every row of a rowid table lives in one leaf page of the table's b-tree (and, when it
is long, in that leaf's overflow pages). A run or sync that records source marks
(:mod:`asyncmig.target.marks`) also records, per leaf page, an 8-byte digest of the
page's bytes (with its overflow pages'; the first bytes of their SHA-256, which the
CPU's SHA instructions compute at about twice BLAKE2b's speed) and the first and last
rowid on it. The next
sync hashes the leaf pages again: a page with the same number and the same digest
holds the same rows as then, so the marks of the rowids it covered are still right.
The rowids of every other page, then and now, are where rows can have been inserted,
updated or deleted: only those ranges' marks are recomputed, from the pages' cells
(:mod:`asyncmig.target.cells`), and the rest kept. Hashing pages runs at about a GB/s;
parsing cells in Python costs about a microsecond a row.

SQLite's ``dbstat`` table names each page of the table (leaf, interior, overflow; an
overflow page's path starts with its leaf's). Nothing here is trusted that is not
checked: a source with committed content still in its WAL or a hot rollback journal
(the main file is not the whole database), a virtual table (an FTS table's rows are in
its shadow tables), a table without rowid, a page that does not parse as a table
leaf, or a SQLite without ``dbstat``: no page records, and every row is read.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from asyncmig.quoting import quote_sqlite_ident

DIGEST_BYTES = 8
LEAF = 0x0D  # a table b-tree's leaf page
RECORD = struct.Struct("<qqq")


@dataclass(frozen=True)
class Pages:
    """A table's leaf pages: number, first and last rowid (sorted by number), digests."""

    numbers: array[int]
    firsts: array[int]
    lasts: array[int]
    digests: bytes

    def pack(self) -> bytes:
        return self.numbers.tobytes() + self.firsts.tobytes() + self.lasts.tobytes() + self.digests

    @classmethod
    def unpack(cls, data: bytes) -> Pages:
        count = len(data) // (3 * 8 + DIGEST_BYTES)
        parts = [array("q") for _ in range(3)]
        for number, part in enumerate(parts):
            part.frombytes(data[number * count * 8 : (number + 1) * count * 8])
        return cls(parts[0], parts[1], parts[2], data[3 * count * 8 :])

    def digest(self, position: int) -> bytes:
        return self.digests[position * DIGEST_BYTES : (position + 1) * DIGEST_BYTES]


def whole_file(path: Path) -> bool:
    """Whether the main file holds the whole database (no WAL content, no hot journal)."""
    for suffix in ("-wal", "-journal"):
        extra = Path(str(path) + suffix)
        if extra.exists() and extra.stat().st_size > 0:
            return False
    return True


def read(
    conn: sqlite3.Connection, path: Path, table: str, old: Pages | None = None
) -> Pages | None:
    """The leaf pages of ``table`` (its source name), or None when they cannot be known.
    ``old``: the table's page records then; a page the same now keeps its bounds."""
    if not whole_file(path) or not _ordinary(conn, table):
        return None
    try:
        rows = conn.execute(
            "SELECT pageno, pagetype, path FROM dbstat WHERE name = ? ORDER BY pageno",
            (table,),
        ).fetchall()
    except sqlite3.Error:  # no dbstat in this SQLite
        return None
    leaves = {str(p): int(n) for n, kind, p in rows if kind == "leaf"}
    if not leaves:  # every b-tree has a leaf: these rows live elsewhere
        return None
    overflow: dict[int, list[int]] = {}
    for number, kind, where in rows:
        if kind == "overflow":
            # "/000/003+000001": the 2nd overflow page of cell 3 of leaf "/000/"
            owner = leaves.get(str(where).split("+", 1)[0].rsplit("/", 1)[0] + "/")
            if owner is None:
                return None
            overflow.setdefault(owner, []).append(int(number))
    return _hashed(path, sorted(leaves.values()), overflow, old)


def _ordinary(conn: sqlite3.Connection, table: str) -> bool:
    """A table whose rows are in its own b-tree: not a view, not a virtual table (an FTS
    table keeps its rows in shadow tables, under other names)."""
    row = conn.execute(
        "SELECT type, sql FROM sqlite_schema WHERE name = ? COLLATE NOCASE", (table,)
    ).fetchone()
    return (
        row is not None
        and row[0] == "table"
        and not str(row[1] or "").lstrip().upper().startswith("CREATE VIRTUAL")
    )


def _hashed(
    path: Path, leaves: list[int], overflow: dict[int, list[int]], old: Pages | None
) -> Pages | None:
    """Each leaf's digest and bounds (a page with the same number and digest as in
    ``old`` has the same cells: its bounds are not parsed again)."""
    numbers, firsts, lasts = array("q"), array("q"), array("q")
    digests: list[bytes] = []
    then = {n: i for i, n in enumerate(old.numbers)} if old is not None else {}
    fd = os.open(path, os.O_RDONLY)
    try:
        header = os.pread(fd, 100, 0)
        size = struct.unpack(">H", header[16:18])[0]
        size = 65536 if size == 1 else size
        for number in leaves:
            page = os.pread(fd, size, (number - 1) * size)
            offset = 100 if number == 1 else 0
            if _is_empty_leaf(page, offset):
                continue  # an empty table's root: no rows, so nothing to record
            digest = hashlib.sha256(page)  # SHA-NI: twice BLAKE2b's speed over a page
            for extra in sorted(overflow.get(number, ())):
                digest.update(os.pread(fd, size, (extra - 1) * size))
            short = digest.digest()[:DIGEST_BYTES]
            before = then.get(number)
            if old is not None and before is not None and old.digest(before) == short:
                bounds: tuple[int, int] | None = (old.firsts[before], old.lasts[before])
            else:
                bounds = _bounds(page, offset)
            if bounds is None:
                return None
            numbers.append(number)
            firsts.append(bounds[0])
            lasts.append(bounds[1])
            digests.append(short)
    finally:
        os.close(fd)
    return Pages(numbers, firsts, lasts, b"".join(digests))


def _is_empty_leaf(page: bytes, offset: int) -> bool:
    return page[offset] == LEAF and page[offset + 3 : offset + 5] == b"\0\0"


def _bounds(page: bytes, offset: int) -> tuple[int, int] | None:
    """First and last rowid on a table leaf page (None: not one, or empty)."""
    if len(page) < offset + 8 or page[offset] != LEAF:
        return None
    cells = struct.unpack(">H", page[offset + 3 : offset + 5])[0]
    if cells == 0:
        return None
    pointers = offset + 8
    first = struct.unpack(">H", page[pointers : pointers + 2])[0]
    last = struct.unpack(">H", page[pointers + 2 * (cells - 1) : pointers + 2 * cells])[0]
    return _rowid(page, first), _rowid(page, last)


def _rowid(page: bytes, at: int) -> int:
    """The rowid of the cell at ``at``: after the payload size, both SQLite varints."""
    _, at = _varint(page, at)
    value, _ = _varint(page, at)
    return value - (1 << 64) if value >= 1 << 63 else value


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        byte = data[at + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    return (value << 8) | data[at + 8], at + 9


def changed(old: Pages, new: Pages) -> list[tuple[int, int]]:
    """The rowid intervals of every leaf page not the same then and now (by number and
    digest): its bounds then and its bounds now, merged and sorted."""
    then = {n: i for i, n in enumerate(old.numbers)}
    spans: list[tuple[int, int]] = []
    for position, number in enumerate(new.numbers):
        before = then.pop(number, None)
        if before is not None and old.digest(before) == new.digest(position):
            continue
        spans.append((new.firsts[position], new.lasts[position]))
        if before is not None:
            spans.append((old.firsts[before], old.lasts[before]))
    spans.extend((old.firsts[i], old.lasts[i]) for i in then.values())
    return list(_merged(sorted(spans)))


def _merged(spans: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    current: tuple[int, int] | None = None
    for low, high in spans:
        if current is not None and low <= current[1] + 1:
            current = (current[0], max(current[1], high))
            continue
        if current is not None:
            yield current
        current = (low, high)
    if current is not None:
        yield current


def is_rowid(conn: sqlite3.Connection, table: str, column: str) -> bool:
    """Whether ``column`` is ``table``'s rowid (an INTEGER PRIMARY KEY), as SQLite's
    planner says: a lookup by it is a lookup by rowid."""
    plan = conn.execute(
        f"EXPLAIN QUERY PLAN SELECT 1 FROM {quote_sqlite_ident(table)} "
        f"WHERE {quote_sqlite_ident(column)} = 1"
    ).fetchall()
    return any("INTEGER PRIMARY KEY" in str(row[-1]) for row in plan)
