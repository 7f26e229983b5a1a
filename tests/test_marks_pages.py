"""Source marks computed only where leaf pages changed equal marks computed from every row.

The oracle: after random edits of a real SQLite file (updates that keep or change a
row's size, deletes, inserts between and after existing rows, rows long enough to
spill into overflow pages, a changed overflow tail only, a VACUUM), the marks merged
from the ranges whose pages changed must be exactly the marks of a full recompute:
the same ranges, digests, row counts and key hashes. A page comparison that missed a
changed row would show here as a differing digest.
"""

from __future__ import annotations

import random
import sqlite3
from array import array
from pathlib import Path

import pytest

from asyncmig.target import cells, marks, pages

TEXT_KEY = "CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, body TEXT, r REAL)"
INT_KEY = "CREATE TABLE t (k INTEGER PRIMARY KEY, n INTEGER, body TEXT, r REAL)"


def key_of(number: int, text: bool) -> object:
    return f"{number:08x}-0000-4000-8000-{number:012x}" if text else number * 3


def body(rng: random.Random) -> str:
    size = rng.choice([5, 40, 200, 5000, 9000])  # 5000 and 9000: overflow pages
    return "".join(rng.choice("abcdefgh") for _ in range(size))


def build(path: Path, text: bool, rng: random.Random) -> None:
    db = sqlite3.connect(path)
    db.execute(TEXT_KEY if text else INT_KEY)
    db.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?)",
        [(key_of(i, text), i, body(rng), i / 7) for i in range(1, 1500)],
    )
    db.commit()
    db.close()


def edit(path: Path, text: bool, rng: random.Random, vacuum: bool) -> None:
    db = sqlite3.connect(path)
    rowids = [r[0] for r in db.execute("SELECT rowid FROM t")]
    for rowid in rng.sample(rowids, 12):
        db.execute("UPDATE t SET n = n + 1 WHERE rowid = ?", (rowid,))  # same size
    for rowid in rng.sample(rowids, 8):
        db.execute("UPDATE t SET body = ? WHERE rowid = ?", (body(rng), rowid))
    long_rows = [r[0] for r in db.execute("SELECT rowid FROM t WHERE length(body) > 4000")]
    for rowid in rng.sample(long_rows, 4):  # only the overflowed tail changes
        db.execute(
            "UPDATE t SET body = substr(body, 1, length(body) - 1) || 'z' WHERE rowid = ?",
            (rowid,),
        )
    for rowid in rng.sample(rowids, 10):
        db.execute("DELETE FROM t WHERE rowid = ?", (rowid,))
    for number in rng.sample(range(1500, 4000), 10):  # after the end
        db.execute(
            "INSERT OR IGNORE INTO t VALUES (?, ?, ?, ?)",  # edited again: a key may be taken
            (key_of(number, text), number, body(rng), 0.5),
        )
    if not text:  # between existing integer keys
        for number in rng.sample(range(1, 1500), 5):
            db.execute("INSERT OR IGNORE INTO t VALUES (?, 0, 'between', 0)", (number * 3 + 1,))
    db.commit()
    if vacuum:
        db.execute("VACUUM")
    db.close()


def request(text: bool, shift: int | None = None) -> marks.Request:
    if text:
        return marks.Request("t", "t", "rowid", None, shift, "uuid")
    return marks.Request("t", "t", "int", "k", shift)


def same(a: marks.Marks, b: marks.Marks) -> None:
    assert list(a.ranges) == list(b.ranges)
    assert a.digests == b.digests
    assert a.counts is not None and b.counts is not None
    assert list(a.counts) == list(b.counts)
    assert (a.rows, a.key_hashes, a.hashed) == (b.rows, b.key_hashes, b.hashed)


def cells_of(
    conn: sqlite3.Connection,
    path: Path,
    request: marks.Request,
    spans: list[tuple[int, int]] | None = None,
) -> marks.Marks:
    leaves = pages.read(conn, path, request.source)
    assert leaves is not None
    found = marks.from_cells(conn, path, request, leaves, spans)
    assert found is not None and found.kind == cells.CELLS
    return found


@pytest.mark.parametrize("text", [True, False], ids=["uuid-key", "integer-key"])
@pytest.mark.parametrize("vacuum", [False, True], ids=["edited", "vacuumed"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_page_filtered_marks_equal_a_full_recompute(
    tmp_path: Path, text: bool, vacuum: bool, seed: int
) -> None:
    rng = random.Random(seed)
    path = tmp_path / "s.db"
    build(path, text, rng)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    before = cells_of(conn, path, request(text))
    kept = pages.read(conn, path, "t")
    conn.close()
    assert kept is not None and len(kept.numbers) > 20
    edit(path, text, rng, vacuum)

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        header, _ = marks._one_table(conn, path, request(text, before.shift), kept.pack())
        assert header["kind"] == cells.CELLS
        # the bounds of a page unchanged are taken from the records, not parsed again
        assert pages.read(conn, path, "t", kept) == pages.read(conn, path, "t")
        spans = [tuple(s) for s in header["spans"]]
        part = cells_of(conn, path, request(text, before.shift), spans)
        full = cells_of(conn, path, request(text, before.shift))
        rows = marks.compute(conn, request(text, before.shift))
    finally:
        conn.close()
    assert part.rows < full.rows or vacuum  # only some rows were read again
    found = marks.whole(marks.Computed(part, spans, b""), before)
    assert found is not None
    same(found, full)
    differing = before.differing(full)
    assert before.differing(found) == differing != []
    assert before.differing_within(part, spans) == differing  # only inside the spans
    assert part.keys_in(differing) == full.keys_in(differing)
    # the same ranges, rows and keys as read as SQL rows; digests of another kind
    assert (list(rows.ranges), rows.rows, rows.key_hashes) == (
        list(full.ranges),
        full.rows,
        full.key_hashes,
    )
    assert rows.kind == marks.ROWS and not rows.fits(full)
    if text:  # a UUID key is kept as its 16 bytes
        assert len(full.key_hashes) == marks.UUID_KEY_BYTES * full.rows


def test_no_page_records_while_the_wal_holds_commits(tmp_path: Path) -> None:
    """A database whose latest commits sit in its WAL: the main file is not the
    database, so no page records (every row is read)."""
    path = tmp_path / "w.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute(INT_KEY)
    db.execute("INSERT INTO t VALUES (1, 1, 'x', 1.0)")
    db.commit()
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert pages.read(reader, path, "t") is None
    finally:
        reader.close()
        db.close()


def test_no_page_records_for_a_virtual_table(tmp_path: Path) -> None:
    """An FTS5 table keeps its rows in shadow tables: dbstat has no page under its name,
    so it gets no page records (a page comparison would see nothing change), and its
    marks, read from its rows, still see a changed row."""
    path = tmp_path / "f.db"
    db = sqlite3.connect(path)
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(title, body)")
    db.executemany("INSERT INTO docs VALUES (?, ?)", [(f"t{i}", f"body {i}") for i in range(300)])
    db.commit()
    request = marks.Request("docs", "docs", "rowid", None, None)
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert pages.read(reader, path, "docs") is None
        before = marks.compute(reader, request)
    finally:
        reader.close()
    db.execute("UPDATE docs SET body = 'changed' WHERE rowid = 7")
    db.commit()
    db.close()
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        header, _ = marks._one_table(
            reader, path, marks.Request("docs", "docs", "rowid", None, before.shift), b"x"
        )
        after = marks.compute(reader, marks.Request("docs", "docs", "rowid", None, before.shift))
    finally:
        reader.close()
    assert header["spans"] is None  # every row read, not a page comparison
    assert before.differing(after) == [7 >> before.shift]


@pytest.mark.parametrize("text", [True, False], ids=["uuid-key", "integer-key"])
def test_deltas_applied_to_whole_marks_equal_a_full_recompute(tmp_path: Path, text: bool) -> None:
    """What a sync stores of a table compared by its marks: only the ranges that differ
    (a range gone as one of no rows). Three rounds of random edits later, the whole
    marks with the three deltas applied are exactly the marks computed from every
    cell; a delta that does not add up to the rows it recorded is refused."""
    rng = random.Random(7)
    path = tmp_path / "s.db"
    build(path, text, rng)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    whole = cells_of(conn, path, request(text))
    conn.close()
    previous, deltas = whole, []
    for round_ in range(3):
        edit(path, text, rng, vacuum=False)
        name = previous.ranges[10 * round_ + 5]  # and every row of one range deleted
        low, high = name << whole.shift, ((name + 1) << whole.shift) - 1
        db = sqlite3.connect(path)
        db.execute(f"DELETE FROM t WHERE {'rowid' if text else 'k'} BETWEEN ? AND ?", (low, high))
        db.commit()
        db.close()
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        now = cells_of(conn, path, request(text, whole.shift))
        conn.close()
        differing = previous.differing(now)
        deltas.append(marks.delta(now, differing))
        assert 0 < len(deltas[-1].ranges) == len(differing) < len(now.ranges) // 4
        counts = deltas[-1].counts
        assert counts is not None and counts[deltas[-1].ranges.index(name)] == 0  # gone
        found = marks.applied(whole, deltas)
        assert found is not None
        same(found, now)
        previous = now
    wrong = marks.Marks(
        "t", whole.mode, whole.shift, deltas[-1].ranges, deltas[-1].digests,
        deltas[-1].rows + 1, deltas[-1].counts, deltas[-1].key_hashes, whole.key_size,
        whole.kind,
    )  # fmt: skip
    assert marks.applied(whole, [*deltas[:-1], wrong]) is None


Range = tuple[bytes, int, bytes]  # a range's digest, rows and key hashes


def range_of(rng: random.Random) -> Range:
    rows = rng.randint(1, 3)
    return rng.randbytes(8), rows, rng.randbytes(8 * rows)


def marks_of(found: dict[int, Range]) -> marks.Marks:
    names = sorted(found)
    return marks.Marks(
        "t", "rowid", 2, array("q", names), b"".join(found[n][0] for n in names),
        sum(found[n][1] for n in names), array("q", [found[n][1] for n in names]),
        b"".join(found[n][2] for n in names), 8, cells.CELLS,
    )  # fmt: skip


def test_comparing_marks_by_runs_equals_comparing_them_range_by_range() -> None:
    """``differing`` compares runs of the same ranges as whole byte strings first,
    ``keys_in`` and ``delta`` take runs of consecutive ranges as one slice: on random
    marks (ranges in one side only, runs of equal and unequal digests, ranges gone)
    each equals the plain range-by-range answer."""
    rng = random.Random(11)
    for _ in range(300):
        before = {n: range_of(rng) for n in rng.sample(range(200), rng.randint(0, 60))}
        after = {n: r if rng.random() < 0.7 else range_of(rng) for n, r in before.items()}
        for name in rng.sample(range(200), rng.randint(0, 20)):  # gone, or new
            after.pop(name) if name in after else after.setdefault(name, range_of(rng))
        old, new = marks_of(before), marks_of(after)
        mine = dict(zip(old.ranges, (old.digest(i) for i in range(len(old.ranges))), strict=True))
        theirs = dict(zip(new.ranges, (new.digest(i) for i in range(len(new.ranges))), strict=True))
        expected = sorted(n for n in set(mine) | set(theirs) if mine.get(n) != theirs.get(n))
        assert old.differing(new) == expected
        spans = [(0, 200 << 2)]
        assert old.differing_within(new, spans) == expected
        offsets = old.offsets
        keys = {
            old.key_hashes[at : at + 8]
            for p, n in enumerate(old.ranges)
            if n in expected
            for at in range(offsets[p] * 8, offsets[p + 1] * 8, 8)
        }
        assert old.keys_in(expected) == keys
        delta = marks.delta(new, expected)
        assert list(delta.ranges) == expected
        assert delta.counts is not None
        for position, name in enumerate(delta.ranges):
            if name in theirs:
                at = list(new.ranges).index(name)
                assert delta.digest(position) == new.digest(at)
                assert delta.counts[position] == new.counts[at]  # type: ignore[index]
            else:
                assert delta.counts[position] == 0
        assert marks.applied(old, [delta]) == new
