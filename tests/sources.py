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
    (1, 9223372036854775807, 1700000003.1, 12.5, "a", "plain", b"\x00\x01\xff",
     '{"b": 1, "a": [1, 2.50, 12345678901234567890]}', "0f8fad5b-d9cb-469f-a165-70867728950e",
     "0F8FAD5BD9CB469FA16570867728950E", "192.168.0.1", 1, "2024-02-29",
     "2025-03-01 12:00:00", 1700000000, 1700000000123, 42),
    (2, -9223372036854775808, float("inf"), 0, "b", "emoji 😀 and é and 日本語", b"",
     "[]", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6ba7b8109dad11d180b400c04fd430c8",
     "2001:db8::1", 0, "1999-12-31", "2025-03-01 12:00:00.123456", 1700000001, 1700000000999,
     "text"),
    (3, 0, float("-inf"), 99999.99, None, "tab\tnew\nline 'quote' \"dq\" \\back", None,
     '{"nested": {"x": null, "u": "\\u00e9"}}', None, None, "10.0.0.0/8", None, None,
     "2025-03-01T12:00:00.5", None, None, 1.5),
    (4, None, 5e-324, None, "d", "", b"\xde\xad\xbe\xef" * 100, None,
     "00000000-0000-0000-0000-000000000000", "00000000000000000000000000000000",
     "::ffff:1.2.3.4", 1, "0001-01-02", None, 0, 1, None),
    (5, 1, -0.0, 1e-2, "e", "x" * 10000, None, '{"k":"v"}', None, None, None, 0, None,
     "2025-12-31 23:59:59.999999", 1700000002, None, b"blob"),
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
    conn.executemany('INSERT INTO "group" VALUES (?, ?, ?, ?)',
                     [(1, 'root "1"', None, 1), (2, "child", 1, 2), (3, "grandchild", 2, None)])
    conn.executemany("INSERT INTO membership VALUES (?, ?, ?)",
                     [(1, 1, "admin"), (2, 1, "member"), (2, 2, "member")])
    conn.executemany(f'INSERT INTO "values" VALUES ({", ".join("?" * 17)})', VALUES_ROWS)
    conn.executemany("INSERT INTO chicken VALUES (?, ?)", [(1, None), (2, 1)])
    conn.executemany("INSERT INTO egg VALUES (?, ?)", [(1, 1), (2, 2)])
    conn.commit()
    conn.execute("DELETE FROM empty_auto")  # leaves sqlite_sequence untouched: empty table
    conn.commit()
    conn.close()
    return path
