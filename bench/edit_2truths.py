"""Change a share of a 2Truths-1Lie database's rows, as a day of the app would.

Per table, about ``fraction`` of the rows are touched, a third each: updated (one
column the app changes, see :data:`UPDATES`), deleted (SQLite's foreign keys on, so
cascades happen as in the app), and inserted (a copy of a random row under a new
key of the same spelling: a fresh id for integer keys, the same pattern of hex
digits for UUID-like text keys). Values keep their kind, so the plan (and the
target's schema) stays the same. ``must`` adds edits at given places: the first
row deleted, the last row of a key range updated.

    python -m bench.edit_2truths app.db --fraction 0.01 [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import string
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.gen_2truths import TABLES

# one statement per table that changes a value the way the app does, keeping its kind
UPDATES = {
    "users": "score = score + 7",
    "challenges": "view_count = coalesce(view_count, 0) + 1",
    "guesses": "response_time_seconds = coalesce(response_time_seconds, 0) + 0.25",
    "guess_history": "was_correct = 1 - was_correct",
    "user_reports": "details = 'edited by a moderator'",
    "token_balances": "balance = balance + 3",
    "token_transactions": "description = description || ' (edited)'",
    "user_sessions": "user_agent = 'edited-agent/1.0'",
    "rate_limit_records": "timestamp = timestamp + 1.5",
}
# columns that must stay unique when a row is copied (besides the key)
UNIQUE = {"users": ("email",), "user_sessions": ("token_hash",), "user_reports": ("challenge_id",)}
HEX = set(string.hexdigits)


def key_column(db: sqlite3.Connection, table: str) -> tuple[str, str]:
    """The single primary-key column and its declared type."""
    for _, name, declared, _, _, pk in db.execute(f'PRAGMA table_info("{table}")'):
        if pk == 1:
            return str(name), str(declared).upper()
    raise ValueError(f"{table} has no primary key")


def respell(value: str, rng: random.Random) -> str:
    """The same text with every hex digit replaced by a random one of the same case."""
    pool = "0123456789ABCDEF" if any(c.isupper() for c in value) else "0123456789abcdef"
    return "".join(rng.choice(pool) if char in HEX else char for char in value)


def copy_row(db: sqlite3.Connection, table: str, rowid: int, rng: random.Random) -> None:
    """Insert a copy of one row under a new key (unique columns respelled too)."""
    columns = [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]
    values = dict(
        zip(
            columns,
            db.execute(
                f'SELECT {", ".join(f"[{c}]" for c in columns)} FROM "{table}" WHERE rowid = ?',
                (rowid,),
            ).fetchone(),
            strict=True,
        )
    )
    key, declared = key_column(db, table)
    original = dict(values)
    names = ", ".join(f"[{c}]" for c in values)
    for _ in range(50):  # a short key respelled may meet an existing one: draw again
        if declared == "INTEGER":
            values[key] = None  # the next id, as the application would get it
        else:
            values[key] = respell(str(original[key]), rng)
        for column in UNIQUE.get(table, ()):
            text = str(original[column])
            values[column] = (
                f"n{rng.randrange(10**9)}.{text}" if "@" in text else respell(text, rng)
            )
        try:
            db.execute(
                f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(values))})',
                list(values.values()),
            )
            return
        except sqlite3.IntegrityError:
            continue
    raise RuntimeError(f"cannot find a new key for a copy of a {table} row")


def edit_table(
    db: sqlite3.Connection, table: str, fraction: float, rng: random.Random
) -> dict[str, int]:
    """About ``fraction`` of the table's rows, a third each updated, deleted, inserted."""
    rowids = [r[0] for r in db.execute(f'SELECT rowid FROM "{table}"')]
    each = max(1, round(len(rowids) * fraction / 3)) if rowids else 0
    chosen = rng.sample(rowids, min(len(rowids), 2 * each))
    updated, deleted = chosen[:each], chosen[each:]
    db.executemany(
        f'UPDATE "{table}" SET {UPDATES[table]} WHERE rowid = ?', [(r,) for r in updated]
    )
    for rowid in rng.sample(rowids, min(len(rowids), each)):
        copy_row(db, table, rowid, rng)
    gone = 0
    for rowid in deleted:
        try:
            gone += db.execute(f'DELETE FROM "{table}" WHERE rowid = ?', (rowid,)).rowcount
        except sqlite3.IntegrityError:  # still referenced without a cascade: keep it
            continue
    return {"updated": len(updated), "inserted": each, "deleted": gone}


def edit(
    path: Path, fraction: float, seed: int = 1, must: Sequence[tuple[str, str, Any]] = ()
) -> dict[str, dict[str, int]]:
    """Edit every table of the database; ``must``: extra (table, "update"/"delete", key)."""
    rng = random.Random(seed)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("BEGIN")
        done = {t: edit_table(db, t, fraction, rng) for t in TABLES}
        for table, action, key in must:
            column, _ = key_column(db, table)
            sql = (
                f'UPDATE "{table}" SET {UPDATES[table]}'
                if action == "update"
                else f'DELETE FROM "{table}"'
            )
            db.execute(f'{sql} WHERE "{column}" = ?', (key,))
        db.execute("COMMIT")
    finally:
        db.close()
    return done


def changes_between(before: Path, after: Path) -> dict[str, dict[str, int]]:
    """Per table, rows inserted, updated and deleted from ``before`` to ``after``, matched
    by primary key in SQL (cascaded deletes included): what a sync must find."""
    db = sqlite3.connect(f"file:{after}?mode=ro", uri=True)
    try:
        db.execute("ATTACH DATABASE ? AS old", (f"file:{before}?mode=ro",))
        out = {}
        for table in TABLES:
            key, _ = key_column(db, table)
            columns = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
            differs = " OR ".join(f'n."{c}" IS NOT o."{c}"' for c in columns)
            new, old = f'main."{table}" AS n', f'old."{table}" AS o'
            join = f'n."{key}" = o."{key}"'
            out[table] = {
                "inserted": db.execute(
                    f'SELECT count(*) FROM {new} LEFT JOIN {old} ON {join} WHERE o."{key}" IS NULL'
                ).fetchone()[0],
                "deleted": db.execute(
                    f'SELECT count(*) FROM {old} LEFT JOIN {new} ON {join} WHERE n."{key}" IS NULL'
                ).fetchone()[0],
                "updated": db.execute(
                    f"SELECT count(*) FROM {new} JOIN {old} ON {join} WHERE {differs}"
                ).fetchone()[0],
            }
        return out
    finally:
        db.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.edit_2truths",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("db", type=Path)
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    for table, counts in edit(args.db, args.fraction, args.seed).items():
        print(table, counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
