"""Generate a Northwind-shaped SQLite database: one table holds 90 % of the rows.

The classic Northwind schema as its SQLite ports declare it (INTEGER keys with
AUTOINCREMENT, TEXT customer ids, NUMERIC prices, DATETIME order dates, a BLOB
picture, a self-referencing employee, and ``"Order Details"``: a name with a space and
a two-column primary key), scaled so that ``"Order Details"`` holds 90 % of the rows
and ``Orders`` 9 %. Such a database keeps one core busy with one big table, unlike the
2Truths database's nine mid-sized ones.

    python -m bench.gen_northwind nw.db --rows 1000000 [--force]

Rows are made by SQLite itself (recursive CTEs), so a million rows take seconds.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

SCHEMA = """
CREATE TABLE Categories (CategoryID INTEGER PRIMARY KEY AUTOINCREMENT, CategoryName TEXT,
    Description TEXT, Picture BLOB);
CREATE TABLE Suppliers (SupplierID INTEGER PRIMARY KEY AUTOINCREMENT,
    CompanyName TEXT NOT NULL, ContactName TEXT, City TEXT, Country TEXT, Phone TEXT);
CREATE TABLE Shippers (ShipperID INTEGER PRIMARY KEY AUTOINCREMENT,
    CompanyName TEXT NOT NULL, Phone TEXT);
CREATE TABLE Employees (EmployeeID INTEGER PRIMARY KEY AUTOINCREMENT,
    LastName TEXT NOT NULL, FirstName TEXT NOT NULL, Title TEXT, BirthDate DATE,
    HireDate DATE, City TEXT, Country TEXT, ReportsTo INTEGER REFERENCES Employees);
CREATE TABLE Customers (CustomerID TEXT PRIMARY KEY, CompanyName TEXT NOT NULL,
    ContactName TEXT, ContactTitle TEXT, Address TEXT, City TEXT, Region TEXT,
    PostalCode TEXT, Country TEXT, Phone TEXT);
CREATE TABLE Products (ProductID INTEGER PRIMARY KEY AUTOINCREMENT,
    ProductName TEXT NOT NULL, SupplierID INTEGER REFERENCES Suppliers,
    CategoryID INTEGER REFERENCES Categories, QuantityPerUnit TEXT,
    UnitPrice NUMERIC DEFAULT 0, UnitsInStock INTEGER DEFAULT 0,
    UnitsOnOrder INTEGER DEFAULT 0, ReorderLevel INTEGER DEFAULT 0,
    Discontinued INTEGER NOT NULL DEFAULT 0);
CREATE TABLE Orders (OrderID INTEGER PRIMARY KEY AUTOINCREMENT,
    CustomerID TEXT REFERENCES Customers, EmployeeID INTEGER REFERENCES Employees,
    OrderDate DATETIME, RequiredDate DATETIME, ShippedDate DATETIME,
    ShipVia INTEGER REFERENCES Shippers, Freight NUMERIC DEFAULT 0, ShipName TEXT,
    ShipAddress TEXT, ShipCity TEXT, ShipPostalCode TEXT, ShipCountry TEXT);
CREATE TABLE "Order Details" (OrderID INTEGER NOT NULL REFERENCES Orders,
    ProductID INTEGER NOT NULL REFERENCES Products, UnitPrice NUMERIC NOT NULL DEFAULT 0,
    Quantity INTEGER NOT NULL DEFAULT 1, Discount REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (OrderID, ProductID));
CREATE INDEX OrdersCustomer ON Orders (CustomerID);
CREATE INDEX OrdersDate ON Orders (OrderDate);
CREATE INDEX DetailsProduct ON "Order Details" (ProductID);
CREATE INDEX ProductsCategory ON Products (CategoryID);
"""

PRODUCTS = 77  # 7 * 11: the detail lines below step by 13, coprime, so pairs are unique
LINES_PER_ORDER = 10

FILL = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})
INSERT INTO {table} SELECT {select} FROM n;
"""


TABLES = {
    "Categories": "i, 'Category ' || i, 'Things of kind ' || i || ' – fine', randomblob(64)",
    "Suppliers": "i, 'Supplier ' || i || ' Ltd.', 'Contact ' || i, 'City ' || (i % 97), "
    "'Country ' || (i % 21), '(0' || (i % 9) || ') 555-' || (1000 + i)",
    "Shippers": "i, 'Shipper ' || i, '(503) 555-' || (9800 + i)",
    "Employees": "i, 'Last' || i, 'First' || i, 'Sales Representative', "
    "date('1950-01-01', '+' || (i * 397 % 15000) || ' days'), "
    "date('2010-01-01', '+' || (i * 31 % 4000) || ' days'), 'Seattle', 'USA', "
    "CASE WHEN i = 1 THEN NULL ELSE 1 + (i - 2) / 3 END",
    "Customers": "printf('C%06d', i), 'Company ' || i || ' GmbH', 'Contact ' || i, 'Owner', "
    "i || ' Main Street', 'City ' || (i % 311), NULL, printf('%05d', i % 99999), "
    "'Country ' || (i % 21), '030-' || (i * 7919 % 9999999)",
    "Products": "i, 'Product ' || i, 1 + i % {suppliers}, 1 + i % {categories}, "
    "(1 + i % 24) || ' boxes x ' || (10 + i % 20) || ' g', "
    "round(1 + (i * 37 % 26000) / 100.0, 2), i * 13 % 120, i * 7 % 40, i % 30, "
    "i % 9 = 0",
    "Orders": "i, printf('C%06d', 1 + i * 7 % {customers}), 1 + i % {employees}, "
    "datetime('2019-01-01', '+' || (i * 61 % 157680000) || ' seconds'), "
    "datetime('2019-01-15', '+' || (i * 61 % 157680000) || ' seconds'), "
    "CASE WHEN i % 50 = 0 THEN NULL ELSE "
    "datetime('2019-01-05', '+' || (i * 61 % 157680000) || ' seconds') END, "
    "1 + i % {shippers}, round((i * 7919 % 100000) / 100.0, 2), "
    "'Ship to ' || (i % 977), i || ' Harbour Road', 'City ' || (i % 311), "
    "printf('%05d', i % 99999), 'Country ' || (i % 21)",
}

DETAILS = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {count} - 1)
INSERT INTO "Order Details"
SELECT 1 + i / {lines}, 1 + ((i / {lines}) * 7 + (i % {lines}) * 13) % {products},
       round(1 + (i * 37 % 26000) / 100.0, 2), 1 + i * 7 % 60,
       CASE WHEN i % 5 = 0 THEN 0.05 * (i % 4) ELSE 0 END FROM n;
"""


def sizes(rows: int) -> dict[str, int]:
    """Rows per table: 90 % order lines, 9 % orders, the rest spread over the others."""
    orders = max(1, rows * 9 // 100)
    rest = max(1, rows - orders - orders * LINES_PER_ORDER)
    return {
        "Categories": 8,
        "Suppliers": 29,
        "Shippers": 3,
        "Employees": 9,
        "Customers": max(91, rest),
        "Products": PRODUCTS,
        "Orders": orders,
        "Order Details": orders * LINES_PER_ORDER,
    }


def generate(path: Path, rows: int) -> dict[str, int]:
    """Write the database; returns the row count per table."""
    counts = sizes(rows)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(SCHEMA)
        names = {k.lower(): v for k, v in counts.items()}
        for table, select in TABLES.items():
            conn.executescript(
                FILL.format(count=counts[table], table=table, select=select.format(**names))
            )
        conn.executescript(
            DETAILS.format(count=counts["Order Details"], lines=LINES_PER_ORDER, products=PRODUCTS)
        )
        conn.commit()
    finally:
        conn.close()
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gen_northwind", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000, help="approximate total")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = parser.parse_args(argv)
    if args.path.exists():
        if not args.force:
            parser.error(f"{args.path} exists; pass --force to overwrite it")
        args.path.unlink()
    started = time.perf_counter()
    counts = generate(args.path, args.rows)
    for table, count in counts.items():
        print(f"{table:<16}{count:>10}")
    print(f"total           {sum(counts.values()):>10}  in {time.perf_counter() - started:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
