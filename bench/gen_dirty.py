"""Build a *dirty* SQLite database: realistic rows plus a known number of each fault.

Real application files hold values SQLite accepts and PostgreSQL refuses: text in an
INTEGER column, broken JSON, 'unknown' where an address belongs, NUL characters and
invalid UTF-8 in TEXT, impossible dates, orphaned foreign keys, e-mails that differ
only in case. Tests and benchmarks must assert *exact* counts per reason, so this
generator returns which primary keys carry which fault (``DirtyCounts``).

Clean rows are produced by SQLite itself (one recursive CTE per table, values from
the bijective hashes of ``bench.gen_2truths.Keys``), so a million customers and two
million orders take about fifteen seconds, not minutes; each fault is then an ``UPDATE ... WHERE id IN (...)`` on keys drawn from
``random.Random(seed)``. The same ``seed`` gives the same database.

Where the faults go: on a table of more than 3000 rows, never in its first or last
1000 rows, because profilers and samplers read the ends of a table and the faults
must be found by a full scan, not by luck; on a smaller table, anywhere. Rows are
distinct across all kinds of one table when the window is large enough; otherwise
kinds that write different columns may share a row (kinds writing the same column,
``nul_in_text`` and ``invalid_utf8`` on ``name``, never do).

The e-mail schema choice: with ``CREATE UNIQUE INDEX ... (email COLLATE NOCASE)``
SQLite itself refuses case duplicates, so the file could never hold this fault. Real
files hold it because the app compared e-mails case-insensitively in code (or through
a non-unique NOCASE index) while only the exact spelling was unique. So here
``customers_email`` is UNIQUE on ``email`` as stored (SQLite accepts 'Ann@x' next to
'ann@x') and ``customers_email_nocase`` is a plain, non-unique NOCASE index. The fault
is what a case-folding unique key on the target refuses: a unique index over
``lower(email)`` (asyncmig's translation of a unique NOCASE key) or a citext UNIQUE.
Note that this schema alone asks for no such key: asyncmig translates it into a unique
index on ``email`` and a non-unique one on ``lower(email)``, which PostgreSQL accepts.
``faulty_keys["nocase_duplicate"]`` lists the later row (higher id) of each pair, whose
e-mail is the earlier row's with the first letter's case flipped; the earlier row keeps
its clean e-mail.

    python -m bench.gen_dirty dirty.db --rows 1000000 [--faults 5] [--seed 0] [--force]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.gen_2truths import Keys, claim_output

CUSTOMERS_DDL = """CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT,
    signup_ip TEXT,
    profile TEXT,
    joined TIMESTAMP,
    score INTEGER
)"""

ORDERS_DDL = """CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER REFERENCES customers(id),
    amount NUMERIC,
    placed DATETIME,
    note TEXT
)"""

# Built after the data and the faults (one index build is cheaper than a million inserts
# into it); the exact-case UNIQUE index holding proves SQLite accepts the case duplicates.
INDEXES = (
    "CREATE UNIQUE INDEX customers_email ON customers (email)",
    "CREATE INDEX customers_email_nocase ON customers (email COLLATE NOCASE)",
)

TABLES = ("customers", "orders")

# Fault kind -> (table, column it is written into). Order matters: it is the order in
# which keys are drawn, so reordering changes which rows a seed picks.
FAULT_COLUMNS: dict[str, tuple[str, str]] = {
    "text_in_integer": ("customers", "score"),
    "bad_json": ("customers", "profile"),
    "bad_ip": ("customers", "signup_ip"),
    "nul_in_text": ("customers", "name"),
    "invalid_utf8": ("customers", "name"),
    "nocase_duplicate": ("customers", "email"),
    "bad_timestamp": ("orders", "placed"),
    "orphan_fk": ("orders", "customer_id"),
}
KINDS = tuple(FAULT_COLUMNS)

# One UPDATE per kind; ``?`` is a JSON array of the keys. The values are SQL so the
# stored type is SQLite's own: 'n/a' stays TEXT under INTEGER affinity, the CAST of a
# blob to TEXT keeps the bytes 'Ann' + 0xC3 (a lead byte with no continuation).
FAULT_SETS: dict[str, str] = {
    "text_in_integer": "score = 'n/a'",
    "bad_json": "profile = '{broken'",
    "bad_ip": "signup_ip = 'unknown'",
    "nul_in_text": "name = 'Ann' || char(0) || 'X'",
    "invalid_utf8": "name = CAST(x'416e6ec3' AS TEXT)",
    "bad_timestamp": "placed = '2024-02-30 10:00:00'",
}

EDGE = 1000  # rows at either end of a big table that stay clean
SMALL_TABLE = 3000  # tables up to this size take faults anywhere

FIRST = (
    ("Ann", "ann"),
    ("José", "jose"),
    ("Zoë", "zoe"),
    ("Björn", "bjorn"),
    ("Renée", "renee"),
    ("美咲", "misaki"),
    ("Ola", "ola"),
    ("Mehmet", "mehmet"),
)
LAST = (
    ("Lee", "lee"),
    ("Núñez", "nunez"),
    ("Smith", "smith"),
    ("Øvergaard", "overgaard"),
    ("Tanaka", "tanaka"),
    ("Dubois", "dubois"),
    ("Kowalski", "kowalski"),
    ("Yılmaz", "yilmaz"),
)
DOMAINS = ("example.com", "mail.example.org", "example.net", "corp.example.co.uk")
NOTES = (
    "NULL",
    "'Leave at the door'",
    "'Gift wrap please 🎁'",
    "'Livraison rapide svp'",
    "printf('PO-%06d', i)",
    "NULL",
    "'配達は午前中に'",
)


@dataclass(frozen=True)
class DirtyCounts:
    """What was written: the numbers tests assert against, per table and per fault."""

    rows: dict[str, int]  # rows per table
    faults: dict[str, int]  # fault kind -> how many rows carry it
    faulty_keys: dict[str, list[int]]  # fault kind -> the primary keys of those rows, sorted


def _series(n: int) -> str:
    return f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) "


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _choose(expr: str, values: Sequence[str]) -> str:
    """``values[expr]`` as a CASE; ``expr`` must already be in range."""
    arms = " ".join(f"WHEN {i} THEN {v}" for i, v in enumerate(values))
    return f"(CASE {expr} {arms} END)"


def customers_sql(k: Keys, rows: int) -> str:
    """Names and e-mails agree (José Núñez -> jose.nunez17@...); the row number in the
    local part makes every e-mail unique even case-insensitively. Every ninth e-mail is
    capitalised, as users type them."""
    first = _choose("f", [_quote(name) for name, _ in FIRST])
    last = _choose("l", [_quote(name) for name, _ in LAST])
    first_ascii = _choose("f", [_quote(ascii_) for _, ascii_ in FIRST])
    last_ascii = _choose("l", [_quote(ascii_) for _, ascii_ in LAST])
    domain = _choose("d", [_quote(d) for d in DOMAINS])
    local = f"printf('%s.%s%d', {first_ascii}, {last_ascii}, i)"
    email = (
        f"CASE WHEN i % 9 = 0 THEN upper(substr({first_ascii}, 1, 1)) ||"
        f" substr({local}, 2) || '@' || upper(substr({domain}, 1, 1)) || substr({domain}, 2)"
        f" ELSE {local} || '@' || {domain} END"
    )
    name = f"CASE WHEN {k.h('i', 3)} % 20 = 0 THEN NULL ELSE {first} || ' ' || {last} END"
    ip = k.pick(
        "i",
        4,
        (
            "NULL",
            "printf('%d.%d.%d.%d', 1 + i % 223, (i / 223) % 256, (i / 7) % 256, 1 + i % 254)",
            "printf('192.168.%d.%d', i % 256, 1 + i % 254)",
            "printf('2001:db8:%x:%x::%x', i % 65536, (i / 65536) % 65536, 1 + i % 4095)",
            "printf('fe80::%x:%x', 1 + i % 65535, i % 4096)",
            "printf('10.%d.%d.%d', (i / 65536) % 256, (i / 256) % 256, 1 + i % 254)",
        ),
    )
    profile = (
        'printf(\'{"lang":"%s","newsletter":%s,"visits":%d,'
        '"address":{"city":"%s","zip":"%05d"},"tags":[%s]}\', '
        + _choose("f % 4", ["'en'", "'fr'", "'ja'", "'de'"])
        + ", "
        "CASE WHEN i % 3 = 0 THEN 'true' ELSE 'false' END, i % 500, "
        + _choose("d", ["'Paris'", "'Tōkyō'", "'São Paulo'", "'Köln'"])
        + ", "
        "i % 100000, " + _choose("l % 3", ["''", "'\"vip\"'", '\'"beta","café"\'']) + ")"
    )
    inner = (
        f"SELECT i, {k.h('i', 0)} % {len(FIRST)} AS f, {k.h('i', 1)} % {len(LAST)} AS l,"
        f" {k.h('i', 2)} % {len(DOMAINS)} AS d FROM n"
    )
    return (
        _series(rows) + "INSERT INTO customers (id, email, name, signup_ip, profile,"
        f" joined, score) SELECT i, {email}, {name}, {ip}, {profile},"
        f" datetime({k.epoch('i', 5)}, 'unixepoch'), {k.h('i', 6)} % 1000 FROM ({inner})"
    )


def orders_sql(k: Keys, rows: int, customers: int) -> str:
    """Every clean order points at an existing customer; amounts are decimal text, which
    NUMERIC affinity stores as REAL (or INTEGER for whole amounts), as an app's would be."""
    amount = f"printf('%d.%02d', 1 + {k.h('i', 21)} % 500, {k.h('i', 22)} % 100)"
    return (
        _series(rows) + "INSERT INTO orders (id, customer_id, amount, placed, note)"
        f" SELECT i, 1 + {k.h('i', 20)} % {customers}, {amount},"
        f" datetime({k.epoch('i', 23)}, 'unixepoch'), {k.pick('i', 24, NOTES)} FROM n"
    )


def fault_window(table_rows: int) -> range:
    """The keys a fault may land on: not the first or last EDGE rows of a big table."""
    if table_rows > SMALL_TABLE:
        return range(EDGE + 1, table_rows - EDGE + 1)
    return range(1, table_rows + 1)


def _draw(
    rng: random.Random, window: range, needs: dict[str, int], columns: dict[str, str]
) -> dict[str, list[int]]:
    """Keys per kind (a list, in draw order), all distinct if the window allows.

    Otherwise each column gets its own distinct draw, so kinds writing the same column
    never share a row (the second UPDATE would erase the first fault).
    """
    if sum(needs.values()) <= len(window):
        pools = {"*": rng.sample(window, sum(needs.values()))}
        group = dict.fromkeys(needs, "*")
    else:
        by_column: dict[str, int] = {}
        for kind, need in needs.items():
            by_column[columns[kind]] = by_column.get(columns[kind], 0) + need
        for col, need in by_column.items():
            if need > len(window):
                raise ValueError(
                    f"{need} faulty rows on column {col} do not fit in"
                    f" {len(window)} rows; generate more rows or fewer faults"
                )
        pools = {col: rng.sample(window, need) for col, need in by_column.items()}
        group = {kind: columns[kind] for kind in needs}
    taken = dict.fromkeys(pools, 0)
    drawn = {}
    for kind, need in needs.items():
        start = taken[group[kind]]
        drawn[kind] = pools[group[kind]][start : start + need]
        taken[group[kind]] = start + need
    return drawn


def _inject(
    db: sqlite3.Connection, rows: int, faults: int, rng: random.Random
) -> dict[str, list[int]]:
    """Write every fault; return the faulty keys per kind, sorted."""
    customer_kinds = {kind: faults for kind, (t, _) in FAULT_COLUMNS.items() if t == "customers"}
    # nocase_duplicate draws 2 keys per fault: the earlier of each pair is the clean
    # original, the later gets its e-mail with the first letter's case flipped.
    customer_kinds["nocase_duplicate"] = 2 * faults
    columns = {kind: col for kind, (_, col) in FAULT_COLUMNS.items()}
    keys = _draw(rng, fault_window(rows), customer_kinds, columns)
    order_kinds = {kind: faults for kind, (t, _) in FAULT_COLUMNS.items() if t == "orders"}
    keys |= _draw(rng, fault_window(2 * rows), order_kinds, columns)

    pairs = sorted(keys.pop("nocase_duplicate"))
    originals, duplicates = pairs[:faults], pairs[faults:]
    keys["nocase_duplicate"] = duplicates
    flip = (
        "CASE WHEN unicode(email) BETWEEN 97 AND 122 THEN upper(substr(email, 1, 1))"
        " ELSE lower(substr(email, 1, 1)) END || substr(email, 2)"
    )
    db.executemany(
        f"UPDATE customers SET email = (SELECT {flip} FROM customers WHERE id = ?) WHERE id = ?",
        zip(originals, duplicates, strict=True),
    )
    # Orphans point past the last customer, each at its own missing id, like rows whose
    # customer was deleted with foreign keys off.
    db.executemany(
        "UPDATE orders SET customer_id = ? WHERE id = ?",
        [(rows + n, key) for n, key in enumerate(sorted(keys["orphan_fk"]), 1)],
    )
    for kind, assignment in FAULT_SETS.items():
        table = FAULT_COLUMNS[kind][0]
        db.execute(
            f"UPDATE {table} SET {assignment} WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(keys[kind]),),
        )
    return {kind: sorted(keys[kind]) for kind in KINDS}


def generate_dirty(path: Path, rows: int = 1000, *, seed: int = 0, faults: int = 5) -> DirtyCounts:
    """Write a new database at ``path`` with ``rows`` customers and ``2 * rows`` orders,
    ``faults`` rows carrying each fault kind; return what was written.

    Raises FileExistsError rather than overwrite, and ValueError when the faults cannot
    fit; a half-written file is removed, so a failed run leaves nothing to mistake for
    a good one.
    """
    if rows < 1:
        raise ValueError("rows must be at least 1")
    if faults < 0:
        raise ValueError("faults must not be negative")
    if path.exists():
        raise FileExistsError(f"{path} already exists")
    keys = Keys(seed)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in (
            "journal_mode = OFF",
            "synchronous = OFF",
            "cache_size = -262144",
            "temp_store = MEMORY",
        ):
            db.execute(f"PRAGMA {pragma}")
        db.execute("BEGIN")
        db.execute(CUSTOMERS_DDL)
        db.execute(ORDERS_DDL)
        db.execute(customers_sql(keys, rows))
        db.execute(orders_sql(keys, 2 * rows, rows))
        faulty = _inject(db, rows, faults, random.Random(seed))
        for index in INDEXES:
            db.execute(index)
        db.execute("COMMIT")
        counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    except BaseException:
        db.close()
        path.unlink(missing_ok=True)
        raise
    db.close()
    return DirtyCounts(
        rows=counts, faults={kind: len(faulty[kind]) for kind in KINDS}, faulty_keys=faulty
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gen_dirty",
        description="Write a SQLite database of ROWS customers and 2*ROWS orders with FAULTS"
        " rows of each fault kind; print the counts and faulty keys as JSON.",
    )
    parser.add_argument("out", type=Path, help="the database file to create")
    parser.add_argument("--rows", type=int, default=1000, help="customers (orders: twice)")
    parser.add_argument("--faults", type=int, default=5, help="rows per fault kind")
    parser.add_argument("--seed", type=int, default=0, help="changes values and faulty rows")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    if not claim_output(out, force=args.force, prog="gen_dirty"):
        return 1
    try:
        counts = generate_dirty(out, args.rows, seed=args.seed, faults=args.faults)
    except ValueError as exc:
        print(f"gen_dirty: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(dataclasses.asdict(counts), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
