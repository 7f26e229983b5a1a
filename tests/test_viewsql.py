"""SQLite view idioms translated for PostgreSQL: folded constants, printed SQL, and rows
compared with SQLite's own answers (normalised as in tests/test_sample_views.py)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmig.plan.sqldates import constant
from asyncmig.plan.sqlexpr import Lit, Misleading, Untranslatable
from asyncmig.plan.viewsql import Relation, translate_query
from tests.compare import compare_views
from tests.fix_pg import drop_database, with_database
from tests.fix_run import migrate

DATE_CALLS = [
    ("datetime", ["1997-01-01"]),
    ("datetime", ["2024-01-01T10:00:00Z"]),
    ("datetime", ["2024-01-01 10:00:00+02:00"]),
    ("date", ["2024-01-31", "+1 month"]),
    ("date", ["2024-02-29", "+1 year"]),
    ("date", ["1997-03-15 10:11:12", "start of month"]),
    ("datetime", ["1997-03-15", "-36 hours"]),
    ("time", ["12:30"]),
    ("julianday", ["2024-01-01 08:00:00"]),
    ("unixepoch", ["2024-01-01"]),
    ("strftime", ["%Y-%m", "1997-03-05 10:00:00"]),
    ("strftime", ["%j %w %s %H:%M:%f %%", "2024-03-01 12:00:00.250"]),
]


@pytest.mark.parametrize(("name", "args"), DATE_CALLS)
def test_constant_date_calls_are_folded_as_sqlite_computes_them(name: str, args: list[str]) -> None:
    """DATETIME('1997-01-01') and friends over literals give SQLite's own value."""
    marks = ", ".join("?" * len(args))
    sqlite_value = (
        sqlite3.connect(":memory:").execute(f"SELECT {name}({marks})", args).fetchone()[0]
    )
    assert constant(name, [Lit("string", a) for a in args]) == sqlite_value


def test_clock_and_unknown_modifiers_are_not_folded() -> None:
    """'now' is evaluated per query, and a modifier not understood is not guessed."""
    assert constant("datetime", [Lit("string", "now")]) is None
    assert constant("date", [Lit("string", "2024-01-01"), Lit("string", "weekday 0")]) is None
    assert constant("upper", [Lit("string", "x")]) is None


RELATIONS = {
    "Products": Relation(
        "Products",
        {
            "productid": ("ProductID", "bigint"),
            "discontinued": ("Discontinued", "text"),
            "name": ("Name", "text"),
            "at": ("At", "timestamptz"),
            "flag": ("Flag", "boolean"),
        },
    )
}


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT ProductID FROM Products WHERE Discontinued=0",
            """SELECT "ProductID" FROM "Products" WHERE "Discontinued" = '0'""",
        ),
        (
            "SELECT p.productid FROM [Products] p WHERE p.at < DATETIME('1997-01-01')",
            (
                """SELECT "p"."ProductID" FROM "Products" AS "p" """
                """WHERE "p"."At" < '1997-01-01 00:00:00+00:00'"""
            ),
        ),
        (
            "SELECT name || productid FROM Products WHERE flag = 1 ORDER BY name DESC",
            (
                """SELECT "Name" || CAST("ProductID" AS text) FROM "Products" WHERE "Flag" = true """
                """ORDER BY "Name" COLLATE "C" DESC NULLS LAST"""
            ),
        ),
        (
            "SELECT count(*), group_concat(DISTINCT name) FROM Products LIMIT 5, 10",
            (
                """SELECT count(*), string_agg(DISTINCT "Name", ',') FROM "Products" """
                """LIMIT 10 OFFSET 5"""
            ),
        ),
    ],
)
def test_printed_queries(sql: str, expected: str) -> None:
    """Literals typed after their column, names in their target spelling, SQLite's order."""
    assert translate_query(sql, RELATIONS)[0] == expected


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT typeof(name) FROM Products", "typeof"),
        ("SELECT name FROM Products UNION SELECT name FROM Products ORDER BY 2", "result column"),
        ("SELECT round() FROM Products", "round"),
        ("SELECT sum(*) FROM Products", "sum"),
        ("SELECT name FROM Products ORDER BY name NULLS maybe", "FIRST or LAST"),
        ("SELECT name FROM Products NATURAL SIDEWAYS JOIN Products", "parse"),
        ("SELECT date(at, 'localtime') FROM Products", "localtime"),
        ("WITH RECURSIVE x AS (SELECT 1) SELECT * FROM x", "recursive"),
        ("SELECT nothing FROM Products", "nothing"),
    ],
)
def test_what_is_not_translated_says_why(sql: str, reason: str) -> None:
    with pytest.raises(Untranslatable, match=reason):
        translate_query(sql, RELATIONS)


@pytest.mark.parametrize(
    "sql",
    [  # PostgreSQL takes each as written, and answers otherwise: never tried so
        "SELECT name ->> '$.a' FROM Products",
        "SELECT name -> 'b' FROM Products",
        "SELECT name COLLATE NOCASE AS n, count(*) FROM Products GROUP BY 1",
        "SELECT name COLLATE NOCASE AS n, count(*) FROM Products GROUP BY n",
        "SELECT format('%d', name) FROM Products",
        "SELECT random() FROM Products",
    ],
)
def test_what_postgresql_would_read_otherwise_is_never_tried_as_written(sql: str) -> None:
    with pytest.raises(Misleading):
        translate_query(sql, RELATIONS)


@given(
    st.lists(
        st.sampled_from(
            [
                "SELECT",
                "FROM",
                "Products",
                "p",
                "name",
                "at",
                "*",
                "WHERE",
                "ORDER",
                "BY",
                "1",
                "2",
                "UNION",
                "ALL",
                "(",
                ")",
                ",",
                "=",
                "+",
                "||",
                "'x'",
                "date(",
                "'now'",
                "LIMIT",
                "GROUP",
                "HAVING",
                "count(",
                "min(",
                ".",
                "AS",
                "JOIN",
                "ON",
                "IN",
                "EXISTS",
                "NOT",
                "NULLS",
                "DESC",
                "CASE",
                "WHEN",
                "THEN",
                "END",
                "strftime(",
                "'%Y'",
                "DISTINCT",
                "USING",
                "[",
                "]",
                "WITH",
                "x",
                "OVER",
                "row_number(",
                "PARTITION",
            ]
        ),
        max_size=25,
    )
)
@settings(max_examples=500, deadline=None)
def test_any_query_is_translated_or_refused_with_a_reason(words: list[str]) -> None:
    """Whatever the text, the translator answers SQL or Untranslatable, never a crash."""
    try:
        translate_query(" ".join(words), RELATIONS)
    except Untranslatable as exc:
        assert str(exc)


IDIOMS = """
CREATE TABLE e (id INTEGER PRIMARY KEY, name TEXT, code TEXT, qty INTEGER, price REAL,
                at DATETIME, born DATE, flag BOOLEAN, note TEXT, grp INTEGER);
INSERT INTO e VALUES
  (1, 'alpha', '12abc', 1, 2.5, '2024-01-31 10:20:30', '1990-05-17', 1, NULL, 1),
  (2, 'Beta', 'x', 3, 0.25, '1997-12-31 23:59:59', '2000-02-29', 0, 'n', 1),
  (3, 'gamma', ' 7', 2, 10.75, '2024-02-29 00:00:00', NULL, 1, NULL, 2),
  (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 3);
CREATE VIEW dates AS SELECT id, strftime('%Y-%m', at) AS ym, date(at, '+1 month') AS next,
  date(at, 'start of year') AS y0, time(at) AS t, datetime(born) AS b,
  julianday(at) - julianday('2024-01-01') AS days, strftime('%s', at) AS epoch FROM e;
CREATE VIEW texts AS SELECT id, name || '-' || qty || '-' || price AS label,
  code + 1 AS n, ifnull(note, 'none') AS note, substr(name, 2, 3) AS part,
  instr(name, 'a') AS pos, upper(name) AS u, length(name) AS len,
  substr(qty * 1000, 2) AS digits, instr(price, '.') AS point, replace(at, '-', '/') AS slashed,
  CASE WHEN qty > 1 THEN 'many' ELSE 'one' END AS size FROM e;
CREATE VIEW groups AS SELECT grp, count(*) AS n, total(price) AS t, max(name) AS top,
  min(max(qty), 2) AS capped,
  min(at) AS first, avg(qty) AS mean, sum(qty) AS s FROM e GROUP BY grp HAVING count(*) > 0;
CREATE VIEW flagged AS SELECT id FROM e WHERE flag = 1 AND at > date('now', '-100 years');
CREATE VIEW nested AS SELECT id FROM e WHERE id IN (SELECT id FROM e WHERE qty > 1)
  AND EXISTS (SELECT 1 FROM e AS x WHERE x.id = e.id) AND NOT EXISTS (SELECT 1 FROM e
  WHERE 1 = 0);
CREATE VIEW page AS SELECT * FROM e ORDER BY name LIMIT 2 OFFSET 1;
CREATE VIEW page_of_page AS SELECT name FROM page WHERE id > 0;
CREATE VIEW names AS SELECT name FROM e UNION ALL SELECT code FROM e ORDER BY 1 DESC;
CREATE VIEW truthy AS SELECT id FROM e WHERE qty AND code AND NOT (qty - qty);
CREATE VIEW ctes AS WITH big(n, label) AS (SELECT id, name FROM e WHERE qty > 1),
  pair AS (SELECT n FROM big) SELECT label FROM big WHERE n IN (SELECT n FROM pair);
CREATE VIEW ranks AS SELECT id, row_number() OVER (ORDER BY name) AS rn,
  sum(qty) OVER (PARTITION BY grp) AS gq, lag(name) OVER (ORDER BY id) AS prev,
  count(*) OVER () AS total_rows FROM e;
CREATE TABLE tag (id INTEGER PRIMARY KEY, label TEXT COLLATE NOCASE);
INSERT INTO tag VALUES (1, 'beta'), (2, 'Alpha'), (3, 'gamma'), (4, 'Delta'), (5, NULL);
CREATE VIEW tags AS SELECT label FROM tag ORDER BY label;
CREATE VIEW beta AS SELECT id FROM tag WHERE label = 'BETA' OR label IN ('x', 'ALPHA');
CREATE VIEW sub AS SELECT s.id, s.doubled FROM (SELECT id, qty * 2 AS doubled FROM e) AS s
  WHERE s.doubled > 2;
"""


async def test_idioms_return_sqlites_rows(tmp_path: Path, pg_dsn: str) -> None:
    """Date functions over columns, text arithmetic, aggregates, window functions,
    subqueries, WITH, numbers
    and text as conditions, paging,
    ORDER BY and = on a NOCASE column (its collation, or lower() on a server without
    ICU, not bytewise)."""
    source = tmp_path / "idioms.db"
    conn = sqlite3.connect(source)
    conn.executescript(IDIOMS)
    conn.close()
    counts = await compare_views(source, pg_dsn, 14, ordered=frozenset({"page", "names", "tags"}))
    assert counts == {
        "dates": 4,
        "texts": 4,
        "groups": 3,
        "flagged": 2,
        "nested": 2,
        "page": 2,
        "page_of_page": 2,
        "names": 8,
        "sub": 2,
        "tags": 5,
        "beta": 2,
        "truthy": 2,
        "ctes": 2,
        "ranks": 4,
    }


async def test_a_view_over_a_view_that_is_renamed(tmp_path: Path, pg_dsn: str) -> None:
    """A view name too long for PostgreSQL gets another name; a view over it uses it."""
    long = "monthly_" + "v" * 70
    source = tmp_path / "renamed.db"
    conn = sqlite3.connect(source)
    conn.executescript(f"""
        CREATE TABLE t (id INTEGER PRIMARY KEY, x TEXT);
        INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');
        CREATE VIEW "{long}" AS SELECT id, x FROM t WHERE id > 1;
        CREATE VIEW over_it AS SELECT x FROM "{long}" WHERE id < 3;
    """)
    conn.close()
    report = await migrate(source, pg_dsn)
    assert [w for w in report.warnings if "not created" in w] == []
    pg = await asyncpg.connect(pg_dsn)
    try:
        rows = [tuple(r) for r in await pg.fetch("SELECT * FROM over_it")]
    finally:
        await pg.close()
    assert rows == [("b",)]
    assert all(v.translated for v in report.plan.views)


LIKE_SQLITE = """
CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT, code TEXT);
INSERT INTO p VALUES (1, 'apple', 'x-1'), (2, 'Banana', 'X-2'), (3, 'cherry', NULL),
  (4, 'Zed', 'é'), (5, 'a-b', 'É'), (6, 'ab', 'Éclair'), (7, 'Éclair', 'éclair');
CREATE VIEW before_b AS SELECT id FROM p WHERE name < 'b';
CREATE VIEW between_a_c AS SELECT id FROM p WHERE name BETWEEN 'a' AND 'c';
CREATE VIEW ascii_fold AS SELECT id FROM p WHERE name LIKE 'B%' OR code LIKE 'x%';
CREATE VIEW no_unicode_fold AS SELECT id FROM p WHERE name LIKE 'é%' OR code LIKE 'É%';
CREATE TABLE q (id INTEGER PRIMARY KEY, email TEXT COLLATE NOCASE);
INSERT INTO q VALUES (1, 'Ann@Example.com'), (2, 'bob@example.com'), (3, 'Éve@example.com');
CREATE VIEW nocase_like AS SELECT id FROM q WHERE email LIKE 'a%' OR email LIKE '%@EXAMPLE%';
CREATE VIEW nocase_less AS SELECT id FROM q WHERE email < 'B' OR email > 'C';
CREATE TABLE m (id INTEGER PRIMARY KEY, score REAL, amount DECIMAL(10, 2), n NUMERIC);
INSERT INTO m VALUES (1, 1.0, 10.5, 7), (2, 2.5, 10, 2.5), (3, 0.1, 3.25, NULL),
  (4, -100.0, 0.1, 1e3), (5, NULL, NULL, 0);
CREATE VIEW ratios AS SELECT id, n / 2 AS half, amount / 4 AS q, score / 0 AS z,
  id % 0 AS r, n / (id - 1) AS d, score / 2 AS s FROM m;
CREATE VIEW printed AS SELECT id || ':' || score AS s, amount || ' EUR' AS e,
  'n=' || n AS t FROM m;
CREATE VIEW tails AS SELECT id, substr(name, -3) AS t, substr(name, -2, 1) AS u,
  substr(name, id - 4) AS v, substr(name, 0, 2) AS w FROM p;
CREATE VIEW cased AS SELECT id, lower(name) AS l, upper(code) AS u FROM p;
CREATE VIEW real_ratio AS SELECT id, id * 1.0 / 4 AS a, (id + 0.0) / 4 AS b,
  id / 4 AS c FROM p;
CREATE VIEW nocase_item AS SELECT id, email COLLATE NOCASE AS e FROM q;
CREATE VIEW math AS SELECT id, sqrt(id - 3) AS s, ln(id - 3) AS l, log(id - 3) AS g FROM p;
"""


async def test_comparisons_like_and_substr_as_sqlite_computes_them(
    tmp_path: Path, pg15_server: str | None
) -> None:
    """In a database whose collation is not bytewise (ICU en-US, as many servers are
    set up): text ``<`` and ``BETWEEN`` compare bytes as SQLite does ('Banana' < 'b');
    LIKE folds ASCII letters only ('É' is not 'é' to SQLite), also on a NOCASE column
    (whose nondeterministic collation PostgreSQL 15 refuses for LIKE); ``substr`` counts a
    negative start from the end; a REAL and a DECIMAL(10,2) print in ``||`` as SQLite
    prints them (``1.0``, ``10.5``); dividing by zero gives NULL (PostgreSQL raised),
    and whole NUMERIC values divide as integers (``7 / 2`` is 3, as SQLite stores 7 as
    an integer). Each view returns SQLite's rows."""
    if pg15_server is None:  # the embedded server is built without ICU
        pytest.skip("no distribution PostgreSQL installed")
    pg_server = pg15_server
    name = f"t_icu_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(
            f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
            "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    except asyncpg.PostgresError as exc:
        pytest.skip(f"no ICU collation on this server: {exc}")
    finally:
        await admin.close()
    source = tmp_path / "like.db"
    with sqlite3.connect(source) as conn:
        conn.executescript(LIKE_SQLITE)
    try:
        dsn = with_database(pg_server, name)
        counts = await compare_views(source, dsn, 13, ordered=frozenset())
        assert counts == {
            "before_b": 5,
            "between_a_c": 3,
            "ascii_fold": 2,
            "no_unicode_fold": 2,
            "nocase_like": 3,
            "nocase_less": 2,
            "printed": 5,
            "ratios": 5,
            "tails": 7,
            "cased": 7,  # 'Éclair' stays 'Éclair' in lower(), 'é' stays 'é' in upper()
            "real_ratio": 7,  # id * 1.0 / 4 is REAL: 0.25, not 0
            "nocase_item": 3,  # the emails as written, not lower()'s
            "math": 7,  # NULL below the domain, where PostgreSQL stopped the query
        }
    finally:
        await drop_database(pg_server, name)


async def test_avg_is_sqlites_real(tmp_path: Path, pg_dsn: str) -> None:
    """SQLite's avg() is always a REAL, of integers their exact sum as a double over
    the count; PostgreSQL's avg of integers is a numeric (2.5000000000000000 to the
    application). The view's column is double precision and each average the very
    double SQLite computes, DISTINCT and empty groups (NULL) included. (Past 2**53,
    where a sum is no longer exact as a double, SQLite's own versions differ: 3.40
    summed doubles, later ones the exact integers.)"""
    source = tmp_path / "avg.db"
    with sqlite3.connect(source) as conn:
        conn.executescript(
            "CREATE TABLE m (id INTEGER PRIMARY KEY, grp INTEGER, n INTEGER, r REAL, p NUMERIC);"
            "CREATE VIEW means AS SELECT grp, avg(n) AS an, avg(DISTINCT n) AS dn, avg(r) AS ar,"
            " avg(p) AS ap FROM m GROUP BY grp;"
            "CREATE VIEW overall AS SELECT avg(n) AS an FROM m WHERE grp > 100;"
            "CREATE VIEW running AS SELECT id, avg(n) OVER (PARTITION BY grp ORDER BY id)"
            " AS ra, avg(r) OVER () AS whole FROM m;"
        )
        conn.executemany(
            "INSERT INTO m VALUES (?, ?, ?, ?, ?)",
            [
                (i, i % 7, None if i % 11 == 0 else (i * 7919) % 1000 - 300, i / 3, i % 13)
                for i in range(1, 400)
            ]
            + [(1000, 9, 2**52 + 1, 0.5, 2.5), (1001, 9, 2, 0.25, 1)],
        )
    plan = (await migrate(source, pg_dsn)).plan
    assert {v.name for v in plan.views if v.translated} == {"means", "overall", "running"}
    with sqlite3.connect(source) as conn:
        want = conn.execute("SELECT * FROM means ORDER BY grp").fetchall()
        want_overall = conn.execute("SELECT * FROM overall").fetchall()
        want_running = conn.execute("SELECT * FROM running ORDER BY id").fetchall()
    pg = await asyncpg.connect(pg_dsn)
    try:
        got = [tuple(r) for r in await pg.fetch("SELECT * FROM means ORDER BY grp")]
        types = [a.type.name for a in (await pg.prepare("SELECT * FROM means")).get_attributes()]
        got_overall = [tuple(r) for r in await pg.fetch("SELECT * FROM overall")]
        got_running = [tuple(r) for r in await pg.fetch("SELECT * FROM running ORDER BY id")]
    finally:
        await pg.close()
    assert [row[:2] for row in got_running] == [row[:2] for row in want_running]
    assert [row[2] for row in got_running] == pytest.approx([row[2] for row in want_running])
    assert types == ["int8", "float8", "float8", "float8", "float8"]
    assert [row[:3] for row in got] == [row[:3] for row in want]  # exact doubles
    for mine, theirs in zip(got, want, strict=True):  # sums of doubles: to the last bits
        assert mine[3] == pytest.approx(theirs[3], rel=1e-15)
        assert mine[4] == pytest.approx(theirs[4], rel=1e-15)
    assert got_overall == want_overall == [(None,)]


async def test_cast_as_text_is_sqlites_text(tmp_path: Path, pg_dsn: str) -> None:
    """``CAST(x AS TEXT)`` gives SQLite's text, as ``||`` does: a DECIMAL(10,2) holding
    1 (SQLite keeps the integer 1) is ``'1'``, not numeric's ``'1.00'``; 10.50 is
    ``'10.5'``; a whole REAL is ``'2.0'``; a boolean ``'1'``; an integer as it is.
    Before, PostgreSQL's own text came out: ``'1.00'``, ``'2'``, ``'true'``."""
    source = tmp_path / "casts.db"
    with sqlite3.connect(source) as conn:
        conn.executescript(
            "CREATE TABLE m (id INTEGER PRIMARY KEY, price DECIMAL(10,2), n NUMERIC, r REAL,"
            " ok BOOLEAN, label TEXT);"
            "INSERT INTO m VALUES (1, 1, 7, 2.0, 1, 'a'), (2, 10.5, 2.5, 0.25, 0, 'b'),"
            " (3, 0.33, 1000, -100.0, 1, NULL), (4, NULL, NULL, NULL, NULL, 'd');"
            "CREATE VIEW texts AS SELECT id, CAST(price AS TEXT) AS p, CAST(n AS TEXT) AS n,"
            " CAST(r AS TEXT) AS r, CAST(ok AS TEXT) AS o, CAST(id AS TEXT) AS i,"
            " CAST(label AS TEXT) AS l FROM m;"
        )
        want = conn.execute("SELECT * FROM texts ORDER BY id").fetchall()
    assert await compare_views(source, pg_dsn, 1) == {"texts": 4}
    pg = await asyncpg.connect(pg_dsn)
    try:
        got = [tuple(r) for r in await pg.fetch("SELECT * FROM texts ORDER BY id")]
    finally:
        await pg.close()
    assert got == want
    assert want[0] == (1, "1", "7", "2.0", "1", "1", "a")
