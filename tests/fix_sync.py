"""Helpers of the sync tests: the test source, its rows by key, what edits changed."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from bench.gen_2truths import generate
from tests.fix_cli import run_cli

EXTRA_SQL = """
CREATE TABLE pairs (a INTEGER NOT NULL, b TEXT NOT NULL, v REAL, PRIMARY KEY (a, b));
CREATE TABLE notes (body TEXT, n INTEGER);
"""


def build_source(path: Path, seed: int = 0) -> Path:
    """The 2Truths tables (about 1,500 rows) plus a composite-key and a keyless table."""
    generate(path, 1500, seed=seed)
    db = sqlite3.connect(path)
    db.executescript(EXTRA_SQL)
    db.executemany(
        "INSERT INTO pairs VALUES (?, ?, ?)", [(i % 40, f"k{i}", i / 8) for i in range(300)]
    )
    db.executemany("INSERT INTO notes VALUES (?, ?)", [(f"note {i}", i) for i in range(50)])
    db.commit()
    db.close()
    return path


def rows_by_key(path: Path) -> dict[str, dict[Any, tuple[Any, ...]]]:
    """Every table's rows by primary key (a keyless table's by the row and its occurrence)."""
    db = sqlite3.connect(path)
    try:
        out: dict[str, dict[Any, tuple[Any, ...]]] = {}
        for (table,) in db.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
        ).fetchall():
            info = db.execute(f'PRAGMA table_info("{table}")').fetchall()
            names = [r[1] for r in info]
            keys = [names.index(r[1]) for r in sorted(info, key=lambda r: r[5]) if r[5]]
            rows: dict[Any, tuple[Any, ...]] = {}
            seen: Counter[tuple[Any, ...]] = Counter()
            for row in db.execute(f'SELECT * FROM "{table}"'):
                if keys:
                    rows[tuple(row[k] for k in keys)] = row
                else:
                    rows[(row, seen[row])] = row
                    seen[row] += 1
            out[table] = rows
        return out
    finally:
        db.close()


def expected_changes(
    before: dict[str, dict[Any, Any]], after: dict[str, dict[Any, Any]]
) -> dict[str, dict[str, int]]:
    out = {}
    for table, old in before.items():
        new = after[table]
        out[table] = {
            "inserted": len(new.keys() - old.keys()),
            "deleted": len(old.keys() - new.keys()),
            "updated": sum(1 for k in old.keys() & new.keys() if old[k] != new[k]),
        }
    return out


def deep_check_passes(db: Path, dsn: str) -> None:
    result = run_cli("check", "--sqlite", str(db), "--pg", dsn, "--deep", "--explain")
    assert result.returncode == 0, result.stdout + result.stderr
