"""Source marks read from the leaf pages' raw cells, against marks read as SQL rows.

The cells' digests are of another kind than the rows' (and never compared with them),
but everything else must be the same: the ranges, the rows in each, each row's key as
PostgreSQL will hold it. And a digest must change with any change to a row: its last
row's one value rewritten in place, its first row deleted (a value's storage class:
``tests/test_sync_marks.py``).
"""

from __future__ import annotations

import shutil
import sqlite3
from array import array
from pathlib import Path

import pytest

from asyncmig.target import cells, marks, pages
from tests.test_sync_marks import apply


def reader(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def from_cells(path: Path, request: marks.Request, old: bytes = b"") -> marks.Computed:
    """What the marks' child process answers for the table, as the parent reads it."""
    conn = reader(path)
    try:
        return marks.answered(*marks._one_table(conn, path, request, old))
    finally:
        conn.close()


def test_the_last_row_of_a_range_and_a_deleted_first_row_are_their_ranges_alone(
    tmp_path: Path,
) -> None:
    """One value of the last row of a range rewritten in place (the same bytes but one)
    and the table's first row deleted: after merging the changed pages' ranges into the
    old marks, exactly those two ranges differ, as a full recompute says."""
    path = tmp_path / "a.db"
    apply(
        path,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL)",
        "WITH RECURSIVE n(v) AS (SELECT 0 UNION ALL SELECT v + 1 FROM n WHERE v < 1999) "
        "INSERT INTO t SELECT v, printf('n%04d', v), v / 3.0 FROM n",
    )
    request = marks.Request("t", "t", "int", "id")
    old = from_cells(path, request)
    assert (
        old.marks.kind == cells.CELLS
        and 1 << old.marks.shift == marks.ROWS_PER_MARK
        and old.spans is None
    )
    copy = tmp_path / "b.db"
    shutil.copy(path, copy)
    # the last row of its range (1023), one byte of it; and the first row of all
    apply(copy, "UPDATE t SET name = 'n9999' WHERE id = 1023", "DELETE FROM t WHERE id = 0")
    again = marks.Request("t", "t", "int", "id", old.marks.shift)
    part = from_cells(copy, again, old.pages)
    assert part.spans is not None and part.marks.rows < 2000
    now = marks.whole(part, old.marks)
    full = from_cells(copy, again).marks
    assert now is not None and now.digests == full.digests
    assert list(now.ranges) == list(full.ranges)
    assert old.marks.differing(now) == [0, 1023 >> old.marks.shift]
    assert old.marks.differing_within(part.marks, part.spans) == [0, 1023 >> old.marks.shift]


@pytest.mark.parametrize("encoding", ["UTF-8", "UTF-16le", "UTF-16be"])
def test_keys_read_from_records_equal_keys_read_as_rows(tmp_path: Path, encoding: str) -> None:
    """A text key in the third column, after a value long enough to push it into the
    overflow pages, keys of 3 to 300 characters (their serial types one and two bytes),
    not all ASCII, in each of SQLite's text encodings: the same ranges, counts and key
    hashes as the rows read as SQL values."""
    path = tmp_path / "k.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA encoding = '{encoding}'")
    db.execute("CREATE TABLE t (n INTEGER, body TEXT, k TEXT PRIMARY KEY, r REAL)")
    db.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?)",
        [
            (i, "x" * (9000 if i % 7 == 0 else i % 50), f"ké{i}-" + "z" * (i % 300), i / 9)
            for i in range(1200)
        ],
    )
    db.commit()
    db.close()
    request = marks.Request("t", "t", "rowid", None, None, "text")
    found = from_cells(path, request).marks
    conn = reader(path)
    try:
        rows = marks.compute(conn, marks.Request("t", "t", "rowid", None, found.shift, "text"))
    finally:
        conn.close()
    assert found.kind == cells.CELLS and rows.kind == marks.ROWS
    assert list(found.ranges) == list(rows.ranges)
    assert found.counts is not None and rows.counts is not None
    assert list(found.counts) == list(rows.counts)
    assert found.key_hashes == rows.key_hashes and found.key_size == marks.KEY_HASH_BYTES
    assert found.rows == rows.rows == 1200


def test_uuid_keys_in_any_spelling_are_their_sixteen_bytes() -> None:
    """The keys' bytes taken in one pass over all of them equal ``uuid.UUID``'s, for
    lower and upper case; other spellings go key by key, with the same result."""
    import uuid

    written = ["c8524fe4-7650-421b-8de5-c439b04a257a", "ABCDEF01-2345-4678-89AB-CDEF01234567"]
    other = ["{c8524fe4-7650-421b-8de5-c439b04a257a}", "c8524fe47650421b8de5c439b04a257a"]
    for values in (written, other, written + other):
        assert marks.key_hashes(values, "uuid") == b"".join(uuid.UUID(v).bytes for v in values)
    with pytest.raises(ValueError):
        marks.key_hashes(["c8524fe4-7650-421b-8de5-c439b04a257g"], "uuid")


def test_a_text_key_beside_generated_columns_is_read_as_rows(tmp_path: Path) -> None:
    """Generated columns move the key's place in the record away from the declared
    one: such a table's marks are read as rows (its key found past them: `SELECT *` has
    them), and without a key kept, from its cells."""
    path = tmp_path / "g.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE t (a INTEGER, twice INTEGER GENERATED ALWAYS AS (a * 2) STORED, "
        "k TEXT PRIMARY KEY)"
    )
    db.executemany("INSERT INTO t (a, k) VALUES (?, ?)", [(i, f"k{i}") for i in range(50)])
    db.commit()
    db.close()
    found = from_cells(path, marks.Request("t", "t", "rowid", None, None, "text"))
    assert found.marks.kind == marks.ROWS and found.spans is None and found.marks.rows == 50
    keyless = from_cells(path, marks.Request("t", "t", "rowid", None, None, None))
    assert keyless.marks.kind == cells.CELLS and keyless.marks.rows == 50


def test_a_leaf_read_again_must_still_be_a_leaf(tmp_path: Path) -> None:
    """Page records that no longer name the table's leaves (the file rewritten between
    reading them and parsing them): no cell is made up, the call fails."""
    path = tmp_path / "p.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, "v" * 40) for i in range(3000)])
    db.commit()
    db.close()
    conn = reader(path)
    try:
        leaves = pages.read(conn, path, "t")
        (root,) = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 't'").fetchone()
    finally:
        conn.close()
    assert leaves is not None and root not in leaves.numbers  # an interior page
    wrong = pages.Pages(array("q", [root]), leaves.firsts[:1], leaves.lasts[:1], b"x" * 8)
    with pytest.raises(ValueError, match="no longer a table leaf"):
        cells.compute(path, wrong, 2, None)


def test_an_empty_table_is_marked_from_its_cells_before_and_after_its_first_rows(
    tmp_path: Path,
) -> None:
    """An empty table's root leaf holds no cell: no page to record, marks of no range,
    still of cells (so they compare with the marks once it has rows)."""
    path = tmp_path / "e.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    db.commit()
    request = marks.Request("t", "t", "int", "id", 2)
    empty = from_cells(path, request)
    assert empty.marks.kind == cells.CELLS and empty.marks.rows == 0 and empty.pages == b""
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(10)])
    db.commit()
    db.close()
    part = from_cells(path, request, empty.pages)
    assert part.marks.rows == 10 and part.marks.fits(empty.marks)
    assert empty.marks.differing(part.marks) == [0, 1, 2]
