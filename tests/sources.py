"""SQLite source databases built by the tests, as real files.

Each builder writes a database exercising one area of the promise "any SQLite
database": types and values, schema shapes, names. The data is deliberately
awkward (64-bit extremes, infinities, emoji, NUL-free binary, mixed spellings).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

KITCHEN_SINK_SQL = r'''
CREATE TABLE "user" (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    "Display Name" TEXT,
    "order" INTEGER NOT NULL DEFAULT 0,
    is_active BOOLEAN NOT NULL DEFAULT 1,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    CHECK (length(email) > 3)
);
CREATE TABLE "group" (
    "group id" INTEGER PRIMARY KEY,
    "Name ""quoted""" VARCHAR(40) NOT NULL,
    parent INTEGER REFERENCES "group"("group id"),
    owner INTEGER REFERENCES "user"(id) ON DELETE CASCADE
);
CREATE TABLE membership (
    user_id INTEGER NOT NULL REFERENCES "user"(id),
    group_id INTEGER NOT NULL REFERENCES "group"("group id"),
    role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin')),
    PRIMARY KEY (user_id, group_id)
) WITHOUT ROWID;
CREATE TABLE "values" (
    id INTEGER PRIMARY KEY,
    big INTEGER,
    ratio REAL,
    price NUMERIC(12, 2),
    label VARCHAR(20),
    body TEXT,
    payload BLOB,
    doc TEXT,
    uid TEXT,
    hexid CHAR(32),
    ip TEXT,
    flag BOOLEAN,
    born DATE,
    seen TIMESTAMP,
    epoch_s DATETIME,
    epoch_ms DATETIME,
    anything
);
CREATE TABLE empty_auto (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT);
CREATE TABLE chicken (id INTEGER PRIMARY KEY, egg_id INTEGER REFERENCES egg(id));
CREATE TABLE egg (id INTEGER PRIMARY KEY, chicken_id INTEGER REFERENCES chicken(id));
CREATE INDEX "user by name" ON "user"("Display Name");
CREATE INDEX active_users ON "user"(created_at DESC) WHERE is_active = 1;
CREATE INDEX user_email_lower ON "user"(lower(email));
CREATE UNIQUE INDEX values_label ON "values"(label);
CREATE VIEW active AS SELECT id, email FROM "user" WHERE is_active = 1;
CREATE TRIGGER user_touch AFTER UPDATE ON "user" BEGIN SELECT 1; END;
'''

VALUES_ROWS = [
    # id, big, ratio, price, label, body, payload, doc, uid, hexid, ip, flag, born, seen,
    # epoch_s, epoch_ms, anything
    (
        1,
        9223372036854775807,
        1700000003.1,
        12.5,
        "a",
        "plain",
        b"\x00\x01\xff",
        '{"b": 1, "a": [1, 2.50, 12345678901234567890]}',
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "0F8FAD5BD9CB469FA16570867728950E",
        "192.168.0.1",
        1,
        "2024-02-29",
        "2025-03-01 12:00:00",
        1700000000,
        1700000000123,
        42,
    ),
    (
        2,
        -9223372036854775808,
        float("inf"),
        0,
        "b",
        "emoji 😀 and é and 日本語",
        b"",
        "[]",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "6ba7b8109dad11d180b400c04fd430c8",
        "2001:db8::1",
        0,
        "1999-12-31",
        "2025-03-01 12:00:00.123456",
        1700000001,
        1700000000999,
        "text",
    ),
    (
        3,
        0,
        float("-inf"),
        99999.99,
        None,
        "tab\tnew\nline 'quote' \"dq\" \\back",
        None,
        '{"nested": {"x": null, "u": "\\u00e9"}}',
        None,
        None,
        "10.0.0.0/8",
        None,
        None,
        "2025-03-01T12:00:00.5",
        None,
        None,
        1.5,
    ),
    (
        4,
        None,
        5e-324,
        None,
        "d",
        "",
        b"\xde\xad\xbe\xef" * 100,
        None,
        "00000000-0000-0000-0000-000000000000",
        "00000000000000000000000000000000",
        "::ffff:1.2.3.4",
        1,
        "0001-01-02",
        None,
        0,
        1,
        None,
    ),
    (
        5,
        1,
        -0.0,
        1e-2,
        "e",
        "x" * 10000,
        None,
        '{"k":"v"}',
        None,
        None,
        None,
        0,
        None,
        "2025-12-31 23:59:59.999999",
        1700000002,
        None,
        b"blob",
    ),
]


def build_kitchen_sink(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(KITCHEN_SINK_SQL)
    conn.executemany(
        'INSERT INTO "user" (id, email, "Display Name", "order", is_active, created_at) '
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (1, "ann@example.com", "Ann", 1, 1, "2025-01-01 10:00:00"),
            (2, "bob@example.com", "Bob 🙂", 2, 0, "2025-01-02 11:30:00"),
            (5, "cé@example.com", None, 3, 1, None),
        ],
    )
    conn.executemany(
        'INSERT INTO "group" VALUES (?, ?, ?, ?)',
        [(1, 'root "1"', None, 1), (2, "child", 1, 2), (3, "grandchild", 2, None)],
    )
    conn.executemany(
        "INSERT INTO membership VALUES (?, ?, ?)",
        [(1, 1, "admin"), (2, 1, "member"), (2, 2, "member")],
    )
    conn.executemany(f'INSERT INTO "values" VALUES ({", ".join("?" * 17)})', VALUES_ROWS)
    conn.executemany("INSERT INTO chicken VALUES (?, ?)", [(1, None), (2, 1)])
    conn.executemany("INSERT INTO egg VALUES (?, ?)", [(1, 1), (2, 2)])
    conn.commit()
    conn.execute("DELETE FROM empty_auto")  # leaves sqlite_sequence untouched: empty table
    conn.commit()
    conn.close()
    return path


# --------------------------------------------------------------------------- sample databases
# Northwind and Sakila for SQLite: their real schemas and views (tests/data/*.sql,
# verbatim) with a few rows each, chosen so that every view returns rows and the
# SQLite idioms in them matter (text compared with 0, dates around the 1997 bounds,
# '+' on names, NULLs and mixed case under ORDER BY, a film in two categories).

DATA = Path(__file__).parent / "data"


def build_northwind(path: Path) -> Path:
    """Northwind's schema and 17 views, with rows written the way the real file has them."""
    conn = sqlite3.connect(path)
    conn.executescript((DATA / "northwind_views.sql").read_text())
    for table, rows in _northwind_rows().items():
        marks = ", ".join("?" * len(rows[0]))
        conn.executemany(f"INSERT INTO [{table}] VALUES ({marks})", rows)
    conn.commit()
    conn.close()
    return path


def _northwind_rows() -> dict[str, list[tuple[object, ...]]]:
    cities = ["Berlin", "London", None, "aachen", "México D.F.", "London"]
    orders: list[tuple[object, ...]] = []
    # '1997-01-01 00:00:00', not '1997-01-01': see test_sample_views for the difference
    shipped = [
        "1996-12-31 23:59:59",
        "1997-01-01 00:00:00",
        "1997-03-05 00:00:00",
        "1997-07-08 13:45:00",
        "1997-12-31",
        "1997-12-31 10:00:00",
        "1998-01-01",
        None,
        "1997-05-06",
        "1997-10-10 08:00:00",
        "1996-08-01",
        "1997-02-02 02:02:02",
    ]
    for i, ship in enumerate(shipped):
        order_date = f"199{6 + i % 3}-0{1 + i % 9}-1{i % 10} 00:00:00"
        orders.append(
            (
                10248 + i,
                ["ALFKI", "ANATR", "AROUT", "BERGS"][i % 4],
                1 + i % 3,
                order_date,
                order_date,
                ship,
                1 + i % 2,
                round(3.5 * i + 0.25, 2),
                f"Ship {i}",
                f"{i} Road",
                cities[i % 6],
                None,
                f"{1000 + i}",
                "Germany",
            )
        )
    details = [
        (
            10248 + i,
            1 + (i * 7 + j) % 6,
            [14, 9.8, 34.8, 18.6, 42.4, 7.7][(i + j) % 6],
            1 + (i * 3 + j * 5) % 40,
            [0, 0.05, 0.15, 0.2][(i + j) % 4],
        )
        for i in range(12)
        for j in range(1 + i % 3)
    ]
    # one line per (order, product), as the primary key requires
    unique: list[tuple[object, ...]] = list({(d[0], d[1]): d for d in details}.values())
    return {
        "Categories": [
            (1, "Beverages", "Soft drinks", b"\x15\x1c/\x00"),
            (2, "Condiments", None, None),
            (3, "Seafood", "Fish", b"\xff"),
        ],
        "Customers": [
            (
                "ALFKI",
                "Alfreds Futterkiste",
                "Maria Anders",
                "Sales Representative",
                "Obere Str. 57",
                "Berlin",
                "Western Europe",
                "12209",
                "Germany",
                "030-0074321",
                None,
            ),
            (
                "ANATR",
                "Ana Trujillo",
                "Ana Trujillo",
                "Owner",
                "Avda. 2222",
                "México D.F.",
                "Central America",
                "05021",
                "Mexico",
                "(5) 555-4729",
                "(5) 555-3745",
            ),
            (
                "AROUT",
                "Around the Horn",
                "Thomas Hardy",
                "Sales",
                "120 Hanover Sq.",
                "London",
                "British Isles",
                "WA1 1DP",
                "UK",
                "(171) 555-7788",
                None,
            ),
            (
                "BERGS",
                "berglunds snabbköp",
                "Christina Berglund",
                "Order Administrator",
                "Berguvsvägen 8",
                None,
                None,
                None,
                "Sweden",
                "0921-12 34 65",
                None,
            ),
        ],
        "Suppliers": [
            (
                1,
                "Exotic Liquids",
                "Charlotte Cooper",
                "Purchasing",
                "49 Gilbert St.",
                "London",
                "British Isles",
                "EC1 4SD",
                "UK",
                "(171) 555-2222",
                None,
                None,
            ),
            (
                2,
                "New Orleans Cajun",
                "Shelley Burke",
                "Administrator",
                "P.O. Box 78934",
                "aachen",
                None,
                "70117",
                "USA",
                "(100) 555-4822",
                None,
                "#CAJUN.HTM#",
            ),
            (
                3,
                "Tokyo Traders",
                None,
                "Marketing",
                "9-8 Sekimai",
                "Tokyo",
                None,
                "100",
                "Japan",
                "(03) 3555-5011",
                None,
                None,
            ),
        ],
        "Employees": [
            (
                1,
                "Davolio",
                "Nancy",
                "Sales",
                "Ms.",
                "1968-12-08",
                "2012-05-01",
                "507 20th",
                "Seattle",
                "North America",
                "98122",
                "USA",
                "(206) 555-9857",
                "5467",
                b"\x00",
                "notes",
                2,
                "http://x/1.bmp",
            ),
            (
                2,
                "Fuller",
                "Andrew",
                "VP",
                "Dr.",
                "1972-02-19",
                "2012-08-14",
                "908 W.",
                "Tacoma",
                "North America",
                "98401",
                "USA",
                "(206) 555-9482",
                "3457",
                None,
                None,
                None,
                None,
            ),
            (
                3,
                "Leverling",
                "12 Janet",
                "Sales",
                "Ms.",
                "1983-08-30",
                "2012-04-01",
                "722",
                "Kirkland",
                "North America",
                "98033",
                "USA",
                "(206) 555-3412",
                "3355",
                None,
                None,
                2,
                None,
            ),
        ],
        "Shippers": [
            (1, "Speedy Express", "(503) 555-9831"),
            (2, "United Package", "(503) 555-3199"),
        ],
        "Products": [
            (1, "Chai", 1, 1, "10 boxes x 20 bags", 18, 39, 0, 10, 0),
            (2, "Chang", 1, 1, "24 - 12 oz bottles", 19, 17, 40, 25, 0),
            (3, "Aniseed Syrup", 2, 2, "12 - 550 ml bottles", 10, 13, 70, 25, 1),
            (4, "Chef Anton's Gumbo Mix", 2, 2, "36 boxes", 21.35, 0, 0, 0, 1),
            (5, "Ikura", 3, 3, "12 - 200 ml jars", 31, 31, 0, 0, 0),
            (6, "Konbu", 3, 3, "2 kg box", 6, 24, 0, 5, "0"),
        ],
        "Orders": orders,
        "Order Details": unique,
    }


def build_sakila(path: Path) -> Path:
    """Sakila's schema and 5 views, every value written as text as the SQLite port does."""
    conn = sqlite3.connect(path)
    conn.executescript((DATA / "sakila_views.sql").read_text())
    for table, rows in _sakila_rows().items():
        marks = ", ".join("?" * len(rows[0]))
        conn.executemany(
            f"INSERT INTO {table} VALUES ({marks})",
            [tuple(None if v is None else str(v) for v in row) for row in rows],
        )
    conn.commit()
    conn.close()
    return path


def _sakila_rows() -> dict[str, list[tuple[object, ...]]]:
    stamp = "2006-02-15 04:34:33.000"
    return {
        "country": [(1, "Canada", stamp), (2, "Australia", stamp)],
        "city": [(1, "Lethbridge", 1, stamp), (2, "Woodridge", 2, stamp), (3, "Sasebo", 2, stamp)],
        "address": [
            (1, "47 MySakila Drive", None, "Alberta", 1, None, "", stamp),
            (2, "28 MySQL Boulevard", None, "QLD", 2, None, "", stamp),
            (3, "23 Workhaven Lane", None, "Alberta", 1, "T2P", "14033335568", stamp),
            (4, "1411 Lillydale Drive", "", "QLD", 3, "35200", "6172235589", stamp),
        ],
        "language": [(1, "English", stamp)],
        "category": [(1, "Action", stamp), (2, "Animation", stamp), (3, "Children", stamp)],
        "film": [
            (
                f,
                f"FILM {f}",
                f"A film numbered {f}" if f != 2 else None,
                "2006",
                1,
                None,
                3 + f,
                ["0.99", "2.99", "4.99"][f % 3],
                80 + f,
                "19.99",
                ["G", "PG", "R", "NC-17"][f % 4],
                "Trailers",
                stamp,
            )
            for f in range(1, 5)
        ],
        "film_category": [
            (1, 1, stamp),
            (2, 2, stamp),
            (3, 2, stamp),
            (3, 3, stamp),
            (4, 1, stamp),
        ],
        "actor": [
            (1, "PENELOPE", "GUINESS", stamp),
            (2, "NICK", "WAHLBERG", stamp),
            (3, "ED", "CHASE", stamp),
        ],
        "film_actor": [
            (1, 1, stamp),
            (1, 2, stamp),
            (2, 1, stamp),
            (2, 3, stamp),
            (3, 3, stamp),
            (3, 4, stamp),
        ],
        "staff": [
            (
                1,
                "Mike",
                "Hillyer",
                3,
                None,
                "Mike.Hillyer@sakilastaff.com",
                1,
                1,
                "Mike",
                "8cb2237d0679ca88db6464eac60da96345513964",
                stamp,
            ),
            (2, "Jon", "Stephens", 4, None, None, 2, 1, "Jon", None, stamp),
        ],
        "store": [(1, 1, 1, stamp), (2, 2, 2, stamp)],
        "customer": [
            (
                c,
                1 + c % 2,
                f"NAME{c}",
                f"LAST{c}",
                f"c{c}@example.org",
                1 + c % 4,
                "1" if c != 3 else "0",
                "2006-02-14 22:04:36.000",
                stamp,
            )
            for c in range(1, 5)
        ],
        "inventory": [(i, 1 + i % 4, 1 + i % 2, stamp) for i in range(1, 7)],
        "rental": [
            (
                r,
                f"2005-05-2{r} 22:53:30.000",
                1 + r % 6,
                1 + r % 4,
                f"2005-05-2{r + 1} 22:04:30.000" if r % 3 else None,
                1 + r % 2,
                stamp,
            )
            for r in range(1, 9)
        ],
        "payment": [
            (
                p,
                1 + p % 4,
                1 + p % 2,
                1 + p % 8 if p != 10 else None,
                ["2.99", "0.99", "5.99", "9.99", "4.99"][p % 5],
                f"2005-05-2{p % 9} 22:53:30.000",
                stamp,
            )
            for p in range(1, 11)
        ],
    }


def small_source(path: Path, *, bad_rows: int = 0) -> Path:
    """Two tables; ``bad_rows`` rows whose score is not an integer (rejected by default)."""
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE scores(id INTEGER PRIMARY KEY, score INTEGER NOT NULL);"
    )
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(1, 21)])
    conn.executemany("INSERT INTO scores VALUES (?, ?)", [(i, i * 10) for i in range(1, 41)])
    conn.executemany(
        "INSERT INTO scores VALUES (?, ?)",
        [(100 + i, f"not a number {i}") for i in range(bad_rows)],
    )
    conn.commit()
    conn.close()
    return path
