"""The SQLite side of the canonical row text, computed by SQLite itself.

``check --deep`` and ``sync`` compare a row of the source with its copy through one
canonical text per row (:mod:`asyncmig.check.deep`). The Python renderer there
(:func:`asyncmig.check.deep.cell`) is the *oracle*: it applies the migration's own
transforms and policies to every value. This module asks SQLite to produce the very
same text for the values whose rendering is plain string work, so Python only hashes
the bytes SQLite returns:

* Per column, :func:`field_sql` gives a SQLite expression that yields the quoted field
  the oracle gives (``NULL`` becomes the text ``NULL``), for the value shapes it is sure
  about, and SQL ``NULL`` for every other value (*undecided*): text that needs a
  transform's judgement, a date that is not a calendar day, ...
* Consecutive columns with such an expression are joined in SQL into one segment,
  returned as a BLOB (no decoding); ``||`` propagates SQL ``NULL``, so one undecided
  value makes its segment ``NULL``.
* Columns without one (floats, numerics, UUIDs, timestamps, inet, json, anything a
  policy may replace, numbers read as dates) are read raw and rendered by the oracle,
  value by value. UUIDs and timestamps were rendered here once: SQLite's ``GLOB``
  and ``strftime()`` cost 1.7 and 3.3 µs a value, the oracle's quick paths for their
  common spellings about 0.7 and 1.2 (:func:`asyncmig.check.deep.cell`).
* A row with an undecided segment, or whose segment is not valid UTF-8 (the source
  text was not), is read again by its rowid and rendered whole by the oracle.

So every value is still compared exactly: either SQLite produced the oracle's text
for a shape proved equal by the tests (``tests/test_sqlcanon.py``), or the oracle
rendered it. Tables ``WITHOUT ROWID`` and databases not encoded in UTF-8 use the
oracle for every row (:func:`usable`).
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
from array import array
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from asyncmig.plan.model import ColumnPlan
from asyncmig.quoting import quote_sqlite_ident

if TYPE_CHECKING:
    from asyncmig.check.deep import Digest, TableCheck

Render = Callable[[Any], str]
Paths = tuple[Callable[[Any], str | None] | None, Render]  # quick (None: none), general
# a batch of (rowid, *items) rows, and what renders an undecided row -> each row's md5
Hashes = Callable[[Sequence[Sequence[Any]], Callable[[int], bytes]], list[bytes]]
SQL_NULL_TEXT = "'NULL'"
DIGIT = "[0-9]"
DATE_GLOB = f"{DIGIT * 4}-{DIGIT * 2}-{DIGIT * 2}"
PG_EPOCH_JULIAN = 2_451_544.5  # 2000-01-01 as a Julian day number
SLICE_MASK = (1 << 60) - 1
FETCH_ROWS = 5000
CHUNK_ROWIDS = 500  # rowids per IN (...) list: under SQLite's parameter limit


def quoted_text(expr: str) -> str:
    """``quote_nullable`` of a non-NULL text in SQLite: quotes doubled, and a text with
    a backslash written ``E'...'`` with the backslashes doubled (as deep.quote_field)."""
    doubled = f"replace({expr}, '''', '''''')"
    return (
        f"CASE WHEN instr({expr}, '\\') THEN 'E''' || replace({doubled}, '\\', '\\\\') || '''' "
        f"ELSE '''' || {doubled} || '''' END"
    )


def _text_whens(expr: str, name: str, mods: tuple[int, ...], transform: str) -> list[str]:
    clean = f"typeof({expr}) = 'text' AND instr({expr}, char(0)) = 0"
    if transform == "varchar_fit":
        if not mods:
            return []
        return [f"WHEN {clean} AND length({expr}) <= {int(mods[0])} THEN {quoted_text(expr)}"]
    if transform == "text_only":  # clean text only: anything else is the oracle's
        return [f"WHEN {clean} THEN {quoted_text(expr)}"]
    if transform not in ("none", "text", "text_nul_check"):
        return []
    shown = f"rtrim({expr}, ' ')" if name == "character" else expr
    whens = [f"WHEN {clean} THEN {quoted_text(shown)}"]
    if name != "character":  # str(int) is SQLite's integer text
        whens.append(f"WHEN typeof({expr}) = 'integer' THEN '''' || {expr} || ''''")
    return whens


def _valid_day(day: str) -> str:
    """A real calendar day in years 2 to 9998: SQLite reads 2025-02-30 as March 2nd, the
    oracle refuses it; it refuses year 0, and 0001-01-01 / 9999-12-31 are sent as
    infinity (undecided, rendered by the oracle). Days up to 28 need no calendar."""
    return (
        f"substr({day}, 1, 4) BETWEEN '0002' AND '9998' "
        f"AND substr({day}, 6, 2) BETWEEN '01' AND '12' "
        f"AND (substr({day}, 9, 2) BETWEEN '01' AND '28' OR date(julianday({day})) = {day})"
    )


def _date_whens(expr: str) -> list[str]:
    days = f"CAST(julianday({expr}) - {PG_EPOCH_JULIAN} AS INTEGER) & 4294967295"
    return [
        (
            f"WHEN typeof({expr}) = 'text' AND length({expr}) = 10 AND {expr} GLOB '{DATE_GLOB}' "
            f"AND {_valid_day(expr)} THEN '''' || printf('%08x', {days}) || ''''"
        )
    ]


def _whens(column: ColumnPlan, expr: str) -> list[str]:
    """The value shapes SQLite renders for this column, as CASE branches."""
    from asyncmig.check.deep import INTEGER_TYPES, parse_type

    name, mods = parse_type(column.target_type)
    transform = column.transform
    if name in INTEGER_TYPES and transform in ("none", "int", "int_strict"):
        return [f"WHEN typeof({expr}) = 'integer' THEN '''' || {expr} || ''''"]
    if name in ("text", "varchar", "character"):
        return _text_whens(expr, name, mods, transform)
    if name == "boolean" and transform in ("none", "bool", "bool_int"):
        flag = f"typeof({expr}) = 'integer' AND {expr}"
        return [f"WHEN {flag} = 1 THEN '''true'''", f"WHEN {flag} = 0 THEN '''false'''"]
    if name == "date" and transform == "date":
        return _date_whens(expr)
    if name == "bytea" and transform in ("none", "bytes", "bytes_strict", "bytes_from_any"):
        return [f"WHEN typeof({expr}) = 'blob' THEN '''' || lower(hex({expr})) || ''''"]
    return []


def field_sql(column: ColumnPlan, expr: str) -> str | None:
    """SQLite expression for the column's quoted field (SQL NULL where undecided), or
    None when SQLite renders none of its values (the oracle renders them all)."""
    whens = _whens(column, expr)
    if not whens:
        return None
    return f"CASE WHEN {expr} IS NULL THEN {SQL_NULL_TEXT} {' '.join(whens)} END"


def usable(conn: sqlite3.Connection, without_rowid: bool) -> bool:
    """Rows are read again by rowid, and segments are hashed as SQLite's UTF-8 bytes."""
    if without_rowid:
        return False
    encoding = conn.execute("PRAGMA encoding").fetchone()[0]
    return str(encoding).upper() == "UTF-8"


def utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class Parts:
    """The SELECT items for a list of columns: SQL segments and raw values (see the
    module docstring), and how to turn one result row's items back into the text."""

    def __init__(
        self,
        columns: Sequence[ColumnPlan],
        exprs: Sequence[str],
        renders: Sequence[Render],
        paths: Sequence[Paths] | None = None,
        *,
        written_out: bool = False,
    ):
        """``paths``: each column's quick and general rendering (``renders`` as two
        parts, :func:`asyncmig.check.deep.cell_paths`), for :meth:`hashes`.
        ``written_out``: a column whose quick path :meth:`hashes` writes out as an
        expression (integers) is rendered there rather than by SQLite: a Python
        ``b"'%d'" % v`` costs less than SQLite's ``CASE`` and concatenation (only for
        :meth:`hashes`; :meth:`text` would call the quick path per value)."""
        from asyncmig.check.deep import WRITTEN_OUT

        self.items: list[str] = []
        self.renders: list[tuple[int, Render]] = []  # item index -> the oracle for it
        self.paths: list[tuple[int, Paths]] = []  # the same, as two parts
        run: list[str] = []
        for number, (column, expr) in enumerate(zip(columns, exprs, strict=True)):
            python = written_out and paths is not None and paths[number][0] in WRITTEN_OUT
            sql = None if python else field_sql(column, expr)
            if sql is not None:
                run.append(sql)
                continue
            self._close(run)
            self.renders.append((len(self.items), renders[number]))
            if paths is not None:
                self.paths.append((len(self.items), paths[number]))
            self.items.append(expr)
        self._close(run)
        rendered = {index for index, _ in self.renders}
        self.segments = [i for i in range(len(self.items)) if i not in rendered]

    def _close(self, run: list[str]) -> None:
        if run:
            joined = " || ',' || ".join(run)
            self.items.append(f"CAST({joined} AS BLOB)")
            run.clear()

    def hashes(self) -> Hashes:
        """One comprehension over a batch of ``(rowid, *items)`` rows giving each row's
        md5 digest: :meth:`text` written out for these items (built with ``paths``), a
        row it leaves undecided handed to ``slow(rowid)``. A call and a loop per row
        and per value less: ``"Order Details"`` (900,000 rows of five numbers) 3.2 ->
        2.5 CPU s. Only positions go into the generated source, as in
        :mod:`asyncmig.load.transforms`."""
        from asyncmig.check.deep import WRITTEN_OUT

        if len(self.paths) != len(self.renders):
            raise ValueError("hashes() needs each rendered column's paths")
        names = [f"v{i}" for i in range(len(self.items))]
        fields = list(names)
        namespace: dict[str, Any] = {}
        for index, (quick, general) in self.paths:
            value = names[index]
            namespace[f"_g{index}"] = general
            if quick is None:
                fields[index] = f"_e(_g{index}({value}))"
            elif quick in WRITTEN_OUT:
                general_bytes = f"_e(_g{index}({value}))"
                fields[index] = WRITTEN_OUT[quick].format(v=value, general=general_bytes)
            else:
                namespace[f"_q{index}"] = quick
                fields[index] = f"_e(_q{index}({value}) or _g{index}({value}))"
        decided = " and ".join(
            f"{names[i]} is not None and ({names[i]}.isascii() or _utf8({names[i]}))"
            for i in self.segments
        )
        text = f"b','.join(({', '.join(fields)},))"
        if decided:
            text = f"({text} if {decided} else slow(rowid))"
        unpack = ", ".join(["rowid", *names])
        source = (
            f"lambda batch, slow: [_md5({text}, usedforsecurity=False).digest() "
            f"for ({unpack}) in batch]"
        )
        namespace.update(_e=str.encode, _utf8=utf8, _md5=hashlib.md5)
        hashes: Hashes = eval(source, namespace)  # built from positions only
        return hashes

    def text(self, values: Sequence[Any]) -> bytes | None:
        """The items' text as UTF-8 bytes, or None when a segment is undecided."""
        out: list[Any] = list(values)
        for index in self.segments:
            value = out[index]
            if value is None or not utf8(value):
                return None
        for index, render in self.renders:
            out[index] = render(out[index]).encode("utf-8")
        return b",".join(out)


def md5_slices(data: bytes) -> tuple[int, int]:
    """The two 60-bit slices of md5(data) that Digest sums (hex digits 1-15 and 16-30)."""
    digest = hashlib.md5(data, usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") >> 4, int.from_bytes(digest[7:15], "big") & SLICE_MASK


_LOW_NIBBLE = bytes(b & 15 for b in range(256))


def slice_sums(digests: Sequence[bytes]) -> tuple[int, int]:
    """The sums of :func:`md5_slices` over many md5 digests (16 bytes each), in C loops
    over them all: ``w0``, ``w1`` the two big-endian words of a digest, its slices are
    ``w0 >> 4`` and ``(w0 & 15) << 56 | w1 >> 8``, so their sums follow from the words'
    sums and those of the bits shifted out. About half what a call per row costs."""
    joined = b"".join(digests)
    if len(joined) != 16 * len(digests):
        raise ValueError("md5 digests are 16 bytes")
    words = array("Q", joined)
    if sys.byteorder == "little":
        words.byteswap()
    nibbles = sum(joined[7::16].translate(_LOW_NIBBLE))
    first = (sum(words[0::2]) - nibbles) >> 4
    second = (nibbles << 56) + ((sum(words[1::2]) - sum(joined[15::16])) >> 8)
    return first, second


def fetch_all(cursor: sqlite3.Cursor) -> Iterator[list[Any]]:
    while batch := cursor.fetchmany(FETCH_ROWS):
        yield batch


ROWID_NAMES = ("rowid", "_rowid_", "oid")


def rowid_name(check: TableCheck) -> str | None:
    """A name for the rowid that no column of the table shadows."""
    taken = {c.source_name.lower() for c in check.table.columns}
    return next((n for n in ROWID_NAMES if n not in taken), None)


class SourceRows:
    """One table's source side: each row's canonical text, SQLite rendering what it can.

    ``key_text`` also yields each row's key text (for sync's ranges); rows whose key is
    in ``check.skip`` (rejected by the load) are left out, as the oracle leaves them.
    """

    def __init__(self, check: TableCheck, rowid: str, *, key_text: bool = False):
        self.check = check
        columns = check.table.columns
        exprs = check.source_exprs()
        self.cells = check.cells()
        keys = check.key_positions
        # sync's ranges (key_text) read rows through text(): SQLite renders integers there
        self.row = Parts(columns, exprs, self.cells, check.cell_paths(), written_out=not key_text)
        self.hashes = self.row.hashes()
        self.key = (
            Parts(
                [columns[p] for p in keys], [exprs[p] for p in keys], [self.cells[p] for p in keys]
            )
            if key_text
            else None
        )
        # with key_text: the key's fields, then its first column as stored (sync's ranges)
        key_items = [*self.key.items, exprs[keys[0]]] if self.key else []
        self.width = 1 + len(self.row.items)  # rowid and the row's items
        self.skip_at = self.width + len(key_items)
        skip_items = [exprs[p] for p in keys] if check.skip else []
        items = [rowid, *self.row.items, *key_items, *skip_items]
        table = quote_sqlite_ident(check.table.source_name)
        self.rowid = rowid
        self.sql = f"SELECT {', '.join(items)} FROM {table}"
        self.rows_sql = f"SELECT {', '.join([rowid, *exprs])} FROM {table}"
        # the keys alone (sync's second pass finds the rows of a few hash ranges)
        self.keys_sql = f"SELECT {', '.join([rowid, *key_items, *skip_items])} FROM {table}"
        self.single = len(check.table.primary_key) == 1

    def _skipped(self, row: Sequence[Any], at: int | None = None) -> bool:
        if not self.check.skip:
            return False
        keys = row[self.skip_at if at is None else at :]
        return (keys[0] if self.single else tuple(keys)) in self.check.skip

    def _key_text(self, conn: sqlite3.Connection, rowid: int, items: Sequence[Any]) -> bytes:
        assert self.key is not None
        key = self.key.text(items)
        if key is None:
            fields = self.oracle_fields(conn, rowid)
            key = ",".join(fields[p] for p in self.check.key_positions).encode("utf-8")
        return key

    def raw_row(self, conn: sqlite3.Connection, rowid: int) -> tuple[Any, ...]:
        """The row as ``check.source_sql()`` reads it, by rowid."""
        return self.raw_rows(conn, [rowid])[0]

    def raw_rows(self, conn: sqlite3.Connection, rowids: Sequence[int]) -> list[tuple[Any, ...]]:
        """:meth:`raw_row` of each of ``rowids``, in that order, a chunk per query."""
        out: list[tuple[Any, ...]] = []
        for where, chunk in self._by_rowids(rowids):
            found = {row[0]: row[1:] for row in conn.execute(self.rows_sql + where, tuple(chunk))}
            for rowid in chunk:
                if rowid not in found:
                    raise sqlite3.DatabaseError(
                        f"row {rowid} vanished: the source changed while read"
                    )
                out.append(tuple(found[rowid]))
        return out

    def _by_rowids(self, rowids: Sequence[int]) -> Iterator[tuple[str, Sequence[int]]]:
        """``rowids`` in chunks, each with the WHERE clause that selects it."""
        for start in range(0, len(rowids), CHUNK_ROWIDS):
            chunk = rowids[start : start + CHUNK_ROWIDS]
            yield f" WHERE {self.rowid} IN ({', '.join('?' * len(chunk))})", chunk

    def oracle_fields(self, conn: sqlite3.Connection, rowid: int) -> list[str]:
        """The row's quoted fields as the oracle renders them, read again by rowid."""
        values = self.raw_row(conn, rowid)
        return [render(value) for render, value in zip(self.cells, values, strict=True)]

    def oracle_text(self, conn: sqlite3.Connection, rowid: int) -> bytes:
        """The row's text as the oracle renders it (a row SQLite left undecided)."""
        return ",".join(self.oracle_fields(conn, rowid)).encode("utf-8")

    def digest(self, conn: sqlite3.Connection, where: str = "") -> Digest:
        """count and slice sums of every row's md5, as Digest keeps them."""
        from asyncmig.check.deep import Digest

        count = sum1 = sum2 = 0
        cursor = conn.execute(self.sql + where)
        slow = partial(self.oracle_text, conn)
        for batch in fetch_all(cursor):
            if self.check.skip:
                batch = [row for row in batch if not self._skipped(row)]
            if self.width != self.skip_at or self.check.skip:
                batch = [row[: self.width] for row in batch]
            digests = self.hashes(batch, slow)
            first, second = slice_sums(digests)
            count += len(digests)
            sum1 += first
            sum2 += second
        return Digest(count, sum1, sum2)

    def hashed(
        self, conn: sqlite3.Connection, where: str = "", params: Sequence[Any] = ()
    ) -> Iterator[tuple[int, Any, str, str]]:
        """(rowid, first key column as stored, key text, row md5 hex) of each row
        (``key_text=True`` only)."""
        for rowid, stored, key, text in self._texts(conn, self.sql + where, params):
            yield (
                rowid,
                stored,
                key.decode("utf-8"),
                hashlib.md5(text, usedforsecurity=False).hexdigest(),
            )

    def range_digests(
        self, conn: sqlite3.Connection, range_of: Callable[[Any, bytes], str]
    ) -> dict[str, Digest]:
        """Digests per range, ``range_of(first key as stored, key text)`` naming a row's."""
        from asyncmig.check.deep import Digest

        digests: dict[str, Digest] = {}
        for _rowid, stored, key, text in self._texts(conn, self.sql):
            first, second = md5_slices(text)
            name = range_of(stored, key)
            digest = digests.get(name)
            if digest is None:
                digest = digests[name] = Digest()
            digest.count += 1
            digest.sum1 += first
            digest.sum2 += second
        return digests

    def _texts(
        self, conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()
    ) -> Iterator[tuple[int, Any, bytes, bytes]]:
        """(rowid, first key as stored, key text, row text) per row (``key_text=True``)."""
        assert self.key is not None
        key_from = 1 + len(self.row.items)
        stored = self.skip_at - 1
        for batch in fetch_all(conn.execute(sql, tuple(params))):
            for row in batch:
                if self._skipped(row):
                    continue
                text = self.row.text(row[1:key_from])
                if text is None:
                    text = self.oracle_text(conn, row[0])
                key = self._key_text(conn, row[0], row[key_from:stored])
                yield row[0], row[stored], key, text

    def grouped_rowids(
        self, conn: sqlite3.Connection, group_of: Callable[[Any, bytes], int | None], groups: int
    ) -> list[array[int]]:
        """The rowids of each of ``groups`` groups of rows, ``group_of(first key as
        stored, key text)`` naming a row's (None: in none), reading only the key
        columns, in one scan. Eight bytes a row found: the rows themselves are read
        later, a group at a time."""
        assert self.key is not None
        stored = 1 + len(self.key.items)
        found = [array("q") for _ in range(groups)]
        for batch in fetch_all(conn.execute(self.keys_sql)):
            for row in batch:
                if self._skipped(row, stored + 1):
                    continue
                group = group_of(row[stored], self._key_text(conn, row[0], row[1:stored]))
                if group is not None:
                    found[group].append(row[0])
        return found

    def hashed_rowids(
        self, conn: sqlite3.Connection, rowids: Sequence[int]
    ) -> Iterator[tuple[int, Any, str, str]]:
        """:meth:`hashed` for the given rows only."""
        for where, chunk in self._by_rowids(rowids):
            yield from self.hashed(conn, where, chunk)
