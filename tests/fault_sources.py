"""A small multi-table source for the fault tests: big enough that a run takes a
second or two (so signals and terminations land mid-load), small enough to stay fast."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT NOT NULL, created DATETIME);
CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id),
                    amount REAL, note TEXT);
CREATE TABLE tag (id INTEGER PRIMARY KEY, label TEXT NOT NULL UNIQUE);
CREATE INDEX child_parent ON child(parent_id);
CREATE VIEW big_children AS SELECT id, parent_id FROM child WHERE amount > 50;
"""
TABLES = ("parent", "child", "tag")


def build_fault_source(path: Path, rows: int = 20_000) -> Path:
    """parent (rows), child (3 x rows, each with a parent), tag (rows / 4)."""
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(SCHEMA)
        conn.executemany(
            "INSERT INTO parent VALUES (?, ?, ?)",
            ((i, f"parent {i}", f"2024-01-{i % 28 + 1:02d} 12:00:00") for i in range(1, rows + 1)),
        )
        conn.executemany(
            "INSERT INTO child VALUES (?, ?, ?, ?)",
            (
                (i, i % rows + 1, (i * 7919) % 10000 / 100, f"note {i} " * 3)
                for i in range(1, 3 * rows + 1)
            ),
        )
        conn.executemany(
            "INSERT INTO tag VALUES (?, ?)", ((i, f"tag-{i}") for i in range(1, rows // 4 + 1))
        )
    conn.close()
    return path


def old_and_new(folder: Path) -> tuple[Path, Path]:
    """Two fault sources of different sizes: what a target held, and what replaces it."""
    return (
        build_fault_source(folder / "old.db", rows=3_000),
        build_fault_source(folder / "new.db", rows=2_000),
    )
