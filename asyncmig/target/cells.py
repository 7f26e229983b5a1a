"""Source marks from a table's raw cells: the leaf pages parsed, no row read as SQL.

A mark is a digest of a small range of rowids (:mod:`asyncmig.target.marks`). Reading
the rows as SQL values costs about a microsecond a row for SQLite's tuple and half
again to pickle it; the leaf pages that :mod:`asyncmig.target.pages` hashes already
hold every row as a *cell*: the payload's size, the rowid, and the record (a header of
serial types, then the values' bytes), the record's tail in overflow pages when it is
long. Two rows with the same rowid and the same record bytes are the same row as SQLite
returns it, under the same schema (a sync stops on a changed schema); the converse does
not hold (a row can be written two ways, e.g. before and after ``ALTER TABLE ... ADD
COLUMN``), and a false "changed" only copies a range again. So the *cells* digest of
a range is the BLAKE2b of its cells' bytes: the two varints and the whole record,
overflow included, in rowid order. A key's text (kept per row, see ``key_hashes``) is
decoded from its record in the database's encoding.

Such digests are of another kind than those of pickled rows: marks record their kind
and marks of two kinds are never compared (the table is then compared row by row
once and marked anew). Tables whose pages are known (see
:func:`asyncmig.target.pages.read`) are marked this way, unless a key must be read from
a record with generated columns (whose place in the record is not the declared one);
every other table is marked from its rows as before.
"""

from __future__ import annotations

import hashlib
import os
import struct
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from asyncmig.target.pages import Pages, _varint

CELLS = "cells"  # the kind of digest (marks read as rows: "rows")
# the database header's text encoding (offset 56; 0 in a database never written to)
CODECS = {0: "utf-8", 1: "utf-8", 2: "utf-16-le", 3: "utf-16-be"}
DIGEST_BYTES = 8
POINTER = struct.Struct(">I")


@dataclass(frozen=True)
class File:
    """What parsing a cell needs of the database file."""

    fd: int
    page_size: int
    usable: int  # the page size less the bytes each page reserves
    codec: str  # of the database's text

    @property
    def most_local(self) -> int:
        """The largest payload a table leaf keeps whole on the page."""
        return self.usable - 35

    @property
    def least_local(self) -> int:
        return (self.usable - 12) * 32 // 255 - 23

    def page(self, number: int) -> bytes:
        return os.pread(self.fd, self.page_size, (number - 1) * self.page_size)


def opened(fd: int) -> File:
    """The database open as ``fd``, from its header."""
    header = os.pread(fd, 100, 0)
    size = struct.unpack(">H", header[16:18])[0]
    size = 65536 if size == 1 else size
    codec = CODECS.get(struct.unpack(">I", header[56:60])[0])
    if codec is None:
        raise ValueError("an unknown text encoding")
    return File(fd, size, size - header[20], codec)


@dataclass
class Ranges:
    """The marks' arrays, built range by range in rowid order."""

    shift: int
    key: int | None  # the key column's place in the record, when keys are kept
    ranges: array[int]
    counts: array[int]
    digests: list[bytes]
    keys: list[str]
    rows: int = 0


def compute(
    path: Path,
    leaves: Pages,
    shift: int,
    key: int | None,
    spans: list[tuple[int, int]] | None = None,
) -> Ranges:
    """Each range's digest from the leaf pages ``leaves`` (as just read), with the text
    of column ``key`` of each row when given; with ``spans`` (sorted, disjoint, whole
    ranges) only the rows inside them. Raises ValueError (or IndexError, struct.error)
    on a page or record that does not parse, TypeError on a key that is not text."""
    out = Ranges(shift, key, array("q"), array("q"), [], [])
    fd = os.open(path, os.O_RDONLY)
    try:
        file = opened(fd)
        current = _Current()
        for number, filtered in _order(leaves, spans):
            _page(file, number, spans if filtered else None, current, out)
        current.close(out)
    finally:
        os.close(fd)
    return out


class _Current:
    """The range being read: its name and its cells so far."""

    def __init__(self) -> None:
        self.name: int | None = None
        self.cells: list[bytes] = []

    def close(self, out: Ranges) -> None:
        _close(out, self.name, self.cells)
        self.cells = []


def _close(out: Ranges, name: int | None, cells: list[bytes]) -> None:
    """Range ``name`` read: its digest, its count."""
    if name is None:
        return
    out.ranges.append(name)
    out.counts.append(len(cells))
    out.rows += len(cells)
    out.digests.append(hashlib.blake2b(b"".join(cells), digest_size=DIGEST_BYTES).digest())


def _order(leaves: Pages, spans: list[tuple[int, int]] | None) -> Iterator[tuple[int, bool]]:
    """The leaf pages to parse in rowid order, each with whether its cells must be
    filtered by ``spans`` (a page only partly inside them)."""
    order = sorted(range(len(leaves.numbers)), key=leaves.firsts.__getitem__)
    if spans is None:
        for position in order:
            yield leaves.numbers[position], False
        return
    firsts = [leaves.firsts[p] for p in order]
    lasts = [leaves.lasts[p] for p in order]
    taken = -1
    for low, high in spans:
        start = max(bisect_left(lasts, low), taken + 1)
        for at in range(start, bisect_right(firsts, high)):
            inside = low <= firsts[at] and lasts[at] <= high
            yield leaves.numbers[order[at]], not inside
            taken = at


def _page(
    file: File,
    number: int,
    spans: list[tuple[int, int]] | None,
    current: _Current,
    out: Ranges,
) -> None:
    """The cells of table leaf page ``number`` into ``current`` and ``out``, in rowid
    order (``spans``: only the rows inside them). The common varints (a payload under
    16 KiB, a rowid under 2**21) are read inline: this loop is the marks' cost, and a
    function call costs about what reading a varint does."""
    page = file.page(number)
    offset = 100 if number == 1 else 0
    if page[offset] != 0x0D:
        raise ValueError(f"page {number} is no longer a table leaf")
    count = struct.unpack_from(">H", page, offset + 3)[0]
    pointers = struct.unpack_from(f">{count}H", page, offset + 8)
    if spans is not None:
        pointers = _within(page, pointers, spans)
    most, shift, key, keys, codec = file.most_local, out.shift, out.key, out.keys, file.codec
    name, cells = current.name, current.cells
    for pointer in pointers:
        payload = page[pointer]
        at = pointer + 1
        if payload >= 0x80:
            second = page[at]
            if second < 0x80:
                payload, at = ((payload & 0x7F) << 7) | second, at + 1
            else:
                payload, at = _varint(page, pointer)
        rowid = page[at]
        if rowid < 0x80:
            at += 1
        else:
            second, third = page[at + 1], page[at + 2]
            if second < 0x80:
                rowid, at = ((rowid & 0x7F) << 7) | second, at + 2
            elif third < 0x80:
                rowid, at = ((rowid & 0x7F) << 14) | ((second & 0x7F) << 7) | third, at + 3
            else:
                rowid, at = _varint(page, at)
                if rowid >= 1 << 63:
                    rowid -= 1 << 64
        if payload <= most:
            cell = page[pointer : at + payload]
        else:
            cell = page[pointer:at] + _spilled(file, page, at, payload)
        if rowid >> shift != name:
            _close(out, name, cells)
            name, cells = rowid >> shift, []
        cells.append(cell)
        if key is None:
            continue
        start = at - pointer  # the record in ``cell``: a first key's text read inline
        size, serial = cell[start : start + 2] if key == 0 else (0x80, 0)
        if size < 0x80 and 13 <= serial < 0x80 and serial & 1:
            keys.append(cell[start + size : start + size + (serial - 13) // 2].decode(codec))
        else:
            keys.append(_key_text(cell, start, key, codec))
    current.name, current.cells = name, cells


def _within(
    page: bytes, pointers: tuple[int, ...], spans: list[tuple[int, int]]
) -> tuple[int, ...]:
    """The pointers of the cells whose rowid is inside ``spans``: the page's cells are
    in rowid order, so each span's are found by bisection (a few rowids read, not all:
    a span reaches into a neighbouring page for a row or three)."""
    found: list[int] = []
    positions = range(len(pointers))
    first, last = _rowid_at(page, pointers[0]), _rowid_at(page, pointers[-1])
    begin = max(0, bisect_right(spans, (first, 1 << 64)) - 1)  # the last span from before it
    for low, high in spans[begin:]:
        if low > last:
            break
        if high < first:
            continue
        start = bisect_left(positions, low, key=lambda i: _rowid_at(page, pointers[i]))
        end = bisect_right(positions, high, lo=start, key=lambda i: _rowid_at(page, pointers[i]))
        found.extend(pointers[start:end])
    return tuple(found)


def _rowid_at(page: bytes, pointer: int) -> int:
    rowid, _ = _varint(page, _varint(page, pointer)[1])
    return rowid - (1 << 64) if rowid >= 1 << 63 else rowid


def _spilled(file: File, page: bytes, at: int, payload: int) -> bytes:
    """A long record whole: its part on the leaf, then its overflow pages' in order."""
    least, room = file.least_local, file.usable
    local = least + (payload - least) % (room - 4)
    if local > file.most_local:
        local = least
    parts = [page[at : at + local]]
    (following,) = POINTER.unpack_from(page, at + local)
    left = payload - local
    while left > 0:
        if following == 0:
            raise ValueError("an overflow chain ends early")
        overflow = file.page(following)
        (following,) = POINTER.unpack_from(overflow, 0)
        take = min(left, room - 4)
        parts.append(overflow[4 : 4 + take])
        left -= take
    return b"".join(parts)


def _key_text(cell: bytes, start: int, column: int, codec: str) -> str:
    """The text of column ``column`` of the record at ``start`` in ``cell``. Serial
    types under 128 (values up to 57 bytes) are read inline, the rest as varints."""
    size = cell[start]
    at = start + 1
    if size >= 0x80:
        size, at = _varint(cell, start)
    end, body = start + size, start + size
    for _ in range(column):  # the values before it: their lengths
        if at >= end:
            raise IndexError("the record has fewer columns than its key's place")
        serial = cell[at]
        if serial < 0x80:
            at += 1
        else:
            serial, at = _varint(cell, at)
        body += _length(serial)
    if at >= end:
        raise IndexError("the record has fewer columns than its key's place")
    serial = cell[at] if cell[at] < 0x80 else _varint(cell, at)[0]
    if serial < 13 or serial % 2 == 0:
        raise TypeError("a key that is not text")
    return cell[body : body + (serial - 13) // 2].decode(codec)


LENGTHS = (0, 1, 2, 3, 4, 6, 8, 8, 0, 0)


def _length(serial: int) -> int:
    """Bytes of a value of serial type ``serial`` in a record's body."""
    if serial < 10:
        return LENGTHS[serial]
    if serial < 12:
        raise ValueError(f"a reserved serial type {serial}")
    return (serial - 12) // 2
