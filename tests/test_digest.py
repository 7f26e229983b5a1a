"""The source's SHA-256 begun while a command imports (asyncmig.source.digest)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

from asyncmig.source import digest


def _database(path: Path, rows: int) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"row {i}" * 20) for i in range(rows)])
    conn.commit()
    conn.close()
    return path


def test_the_digest_begun_early_is_the_files(tmp_path: Path) -> None:
    db = _database(tmp_path / "a.db", 20_000)
    digest.begin(db)
    begun = digest.begun(db)
    assert begun is not None
    assert digest.sha256(db) == hashlib.sha256(db.read_bytes()).hexdigest()
    assert begun.digest.result() == hashlib.sha256(db.read_bytes()).hexdigest()


def test_a_file_written_after_the_digest_began_is_hashed_again(tmp_path: Path) -> None:
    """The early digest describes the file as it was; written since (another size or
    mtime), the file is hashed anew, never given the stale digest."""
    db = _database(tmp_path / "b.db", 2_000)
    digest.begin(db)
    begun = digest.begun(db)
    assert begun is not None
    stale = begun.digest.result()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE t SET s = 'changed' WHERE id = 7")
    conn.commit()
    conn.close()
    os.utime(db, ns=(1, 1))  # an mtime that cannot be the one recorded
    now = digest.sha256(db)
    assert now == hashlib.sha256(db.read_bytes()).hexdigest() != stale


def test_nothing_is_begun_for_a_path_that_is_not_a_file(tmp_path: Path) -> None:
    digest.begin(tmp_path / "missing.db")
    digest.begin(tmp_path)
    assert digest.begun(tmp_path / "missing.db") is None
    assert digest.begun(tmp_path) is None
