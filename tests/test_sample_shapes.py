"""The shapes of well-known sample databases (Chinook, Northwind), rebuilt in miniature.

Their real files are not shipped with the tests; these reproduce what makes them
awkward: NVARCHAR(n) and NUMERIC(10,2) declarations, DATETIME text with milliseconds,
table names with spaces, bracket-quoted SQL, BLOB pictures, money as REAL, composite
keys, and views written in SQLite's dialect.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import asyncpg

from tests.compare import assert_all_equal
from tests.fix_run import migrate

CHINOOK = """
CREATE TABLE [Artist] ([ArtistId] INTEGER NOT NULL, [Name] NVARCHAR(120),
    CONSTRAINT [PK_Artist] PRIMARY KEY ([ArtistId]));
CREATE TABLE [Album] ([AlbumId] INTEGER NOT NULL, [Title] NVARCHAR(160) NOT NULL,
    [ArtistId] INTEGER NOT NULL, CONSTRAINT [PK_Album] PRIMARY KEY ([AlbumId]),
    FOREIGN KEY ([ArtistId]) REFERENCES [Artist] ([ArtistId])
    ON DELETE NO ACTION ON UPDATE NO ACTION);
CREATE TABLE [Invoice] ([InvoiceId] INTEGER NOT NULL, [InvoiceDate] DATETIME NOT NULL,
    [BillingCountry] NVARCHAR(40), [Total] NUMERIC(10,2) NOT NULL,
    CONSTRAINT [PK_Invoice] PRIMARY KEY ([InvoiceId]));
CREATE TABLE [PlaylistTrack] ([PlaylistId] INTEGER NOT NULL, [TrackId] INTEGER NOT NULL,
    CONSTRAINT [PK_PlaylistTrack] PRIMARY KEY ([PlaylistId], [TrackId]));
CREATE INDEX [IFK_AlbumArtistId] ON [Album] ([ArtistId]);
CREATE UNIQUE INDEX [IPK_Artist] ON [Artist]([ArtistId]);
"""

NORTHWIND = """
CREATE TABLE "Categories" ("CategoryID" INTEGER PRIMARY KEY AUTOINCREMENT,
    "CategoryName" TEXT, "Description" TEXT, "Picture" BLOB);
CREATE TABLE "Orders" ("OrderID" INTEGER PRIMARY KEY AUTOINCREMENT, "CustomerID" TEXT,
    "OrderDate" DATETIME, "Freight" NUMERIC DEFAULT 0, "ShipName" TEXT);
CREATE TABLE "Order Details" ("OrderID" INTEGER NOT NULL, "ProductID" INTEGER NOT NULL,
    "UnitPrice" NUMERIC NOT NULL DEFAULT 0, "Quantity" INTEGER NOT NULL DEFAULT 1,
    "Discount" REAL NOT NULL DEFAULT 0,
    PRIMARY KEY ("OrderID", "ProductID"),
    CHECK ("Discount" >= (0) AND "Discount" <= (1)),
    CHECK ("Quantity" > (0)),
    FOREIGN KEY ("OrderID") REFERENCES "Orders" ("OrderID") ON DELETE NO ACTION);
CREATE VIEW [Order Subtotals] AS SELECT [Order Details].OrderID,
    Sum(([Order Details].UnitPrice*Quantity*(1-Discount)/100)*100) AS Subtotal
    FROM [Order Details] GROUP BY [Order Details].OrderID;
"""


def build(path: Path, script: str, rows: list[tuple[str, list[tuple[object, ...]]]]) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    for sql, values in rows:
        conn.executemany(sql, values)
    conn.commit()
    conn.close()
    return path


async def test_a_chinook_shaped_database(tmp_path: Path, pg_dsn: str) -> None:
    source = build(
        tmp_path / "chinook.db",
        CHINOOK,
        [
            ("INSERT INTO Artist VALUES (?, ?)", [(1, "AC/DC"), (2, "Accept"), (3, "Aerosmith")]),
            (
                "INSERT INTO Album VALUES (?, ?, ?)",
                [(1, "For Those About To Rock We Salute You", 1), (2, "Balls to the Wall", 2)],
            ),
            (
                "INSERT INTO Invoice VALUES (?, ?, ?, ?)",
                [
                    (1, "2009-01-01 00:00:00", "Germany", 1.98),
                    (2, "2009-01-02 00:00:00", "Norway", 3.96),
                    (3, "2013-12-22 00:00:00", "Chile", 1.99),
                ],
            ),
            ("INSERT INTO PlaylistTrack VALUES (?, ?)", [(1, 3402), (1, 3389), (8, 3402)]),
        ],
    )
    report = await migrate(source, pg_dsn)
    assert all(c.ok for c in report.checks)
    assert await assert_all_equal(source, pg_dsn, report.plan) == 11
    conn = await asyncpg.connect(pg_dsn)
    try:
        types = {
            (r[0], r[1]): r[2]
            for r in await conn.fetch(
                "SELECT table_name, column_name, format_type(a.atttypid, a.atttypmod) "
                "FROM information_schema.columns c JOIN pg_attribute a "
                "ON a.attrelid = (quote_ident(c.table_name))::regclass "
                "AND a.attname = c.column_name WHERE c.table_schema = 'public'"
            )
        }
        total = await conn.fetchval('SELECT sum("Total") FROM "Invoice"')
        new_artist = await conn.fetchval(
            """INSERT INTO "Artist" ("Name") VALUES ('New') RETURNING "ArtistId" """
        )
    finally:
        await conn.close()
    assert types[("Album", "Title")] == "character varying(160)"
    assert types[("Invoice", "InvoiceDate")] == "timestamp with time zone"
    # the declared NUMERIC(10,2) is the application's contract (issue 8)
    assert types[("Invoice", "Total")] == "numeric(10,2)"
    assert total == Decimal("7.93")
    assert new_artist == 4


async def test_a_northwind_shaped_database(tmp_path: Path, pg_dsn: str) -> None:
    source = build(
        tmp_path / "northwind.db",
        NORTHWIND,
        [
            (
                'INSERT INTO "Categories" VALUES (?, ?, ?, ?)',
                [
                    (1, "Beverages", "Soft drinks", b"\x15\x1c/\x00\x02"),
                    (2, "Condiments", None, None),
                ],
            ),
            (
                'INSERT INTO "Orders" VALUES (?, ?, ?, ?, ?)',
                [
                    (10248, "VINET", "2016-07-04 00:00:00.000", 32.38, "Vins et alcools Chevalier"),
                    (10249, "TOMSP", "2016-07-05 00:00:00.000", 11.61, "Toms Spezialitäten"),
                ],
            ),
            (
                'INSERT INTO "Order Details" VALUES (?, ?, ?, ?, ?)',
                [(10248, 11, 14, 12, 0), (10248, 42, 9.8, 10, 0), (10249, 14, 18.6, 9, 0.15)],
            ),
        ],
    )
    report = await migrate(source, pg_dsn)
    assert all(c.ok for c in report.checks)
    assert await assert_all_equal(source, pg_dsn, report.plan) == 7
    conn = await asyncpg.connect(pg_dsn)
    try:
        checks = [
            r[0]
            for r in await conn.fetch(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'c' "
                "AND conrelid = '\"Order Details\"'::regclass"
            )
        ]
        subtotals = (
            await conn.fetch('SELECT * FROM "Order Subtotals" ORDER BY 1')
            if await conn.fetchval("SELECT to_regclass('\"Order Subtotals\"') IS NOT NULL")
            else None
        )
    finally:
        await conn.close()
    assert len(checks) == 2
    # the view is written in SQLite's quoting ([Order Details], bare OrderID): requoted
    assert subtotals is not None
    assert [(r[0], round(r[1], 2)) for r in subtotals] == [(10248, 266.0), (10249, 142.29)]
