"""Every SQLite name gets a PostgreSQL home in the plan (issue 8, item 10).

Each reproduction used to fail late (exit 6 "row count ... missing" after loading, a
CREATE TABLE refusal, a collision misreported as duplicate keys, exit 4 with no way
through). Now the plan names each object deterministically, warns, records the names
in the history, and ``check`` / ``check --deep`` find the data under those names.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from asyncmig.cli.commands import check
from asyncmig.cli.render import plan_text
from asyncmig.cli.settings import DeepCheck
from asyncmig.errors import TargetError
from asyncmig.plan.builder import build_plan
from asyncmig.plan.homes import rename_identifiers
from asyncmig.plan.names import fit, object_name
from asyncmig.plan.overrides import parse_overrides
from asyncmig.run import run_migration
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target
from tests.compare import assert_all_equal
from tests.fix_cli import RunMain, one_error_line
from tests.fix_run import migrate

LONG_TABLE = "customer_order_line_items_with_a_descriptive_name_that_is_too_long_x"  # 70
ACCENTS = "é" * 40  # 40 characters, 80 bytes
PREFIX = "col_very_long_name_that_exceeds_postgresql_identifier_limit_aaa"  # 63: pgloader's
INDEX_PREFIX = "products_index_with_a_long_name_that_postgresql_would_cut_short"  # 63

SCHEMA = f"""
CREATE TABLE "{LONG_TABLE}" (id INTEGER PRIMARY KEY, note TEXT);
CREATE TABLE "{ACCENTS}" (id INTEGER PRIMARY KEY, "{ACCENTS}" TEXT);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                       "{PREFIX}x" INTEGER, "{PREFIX}y" INTEGER);
CREATE UNIQUE INDEX "{INDEX_PREFIX}_by_x" ON products ("{PREFIX}x");
CREATE UNIQUE INDEX "{INDEX_PREFIX}_by_y" ON products ("{PREFIX}y");
CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);
CREATE TABLE a_pkey (id INTEGER PRIMARY KEY, v TEXT);
CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
CREATE TABLE t_id_seq (id INTEGER PRIMARY KEY, v TEXT);
CREATE TABLE sys (id INTEGER PRIMARY KEY, ctid TEXT, xmin INTEGER, xmax INTEGER,
                  cmin INTEGER, cmax INTEGER, tableoid TEXT, oid INTEGER, "" TEXT,
                  CHECK (xmin <= xmax));
CREATE INDEX sys_window ON sys (xmin, xmax) WHERE ctid IS NOT NULL;
CREATE TABLE "" (id INTEGER PRIMARY KEY, v TEXT);
CREATE VIEW sys_view AS SELECT id, xmin, ctid FROM sys WHERE xmin < xmax;
"""
ROWS: dict[str, list[tuple[object, ...]]] = {
    LONG_TABLE: [(1, "first"), (2, "second")],
    ACCENTS: [(1, "ça"), (2, "où")],
    "products": [(1, "apple", 10, 20), (2, "pear", 11, 21)],
    "a": [(1, "a1")],
    "a_pkey": [(1, "k1"), (2, "k2")],
    "t": [(1, "t1"), (5, "t5")],
    "t_id_seq": [(1, "s1")],
    "": [(3, "no name")],
    "sys": [
        (1, "(0,1)", 3, 4, 5, 6, "pg_class", 7, "empty-named"),
        (2, None, 1, 9, None, None, None, None, None),
    ],
}


def build(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    for table, rows in ROWS.items():
        marks = ", ".join("?" * len(rows[0]))
        conn.executemany(f'INSERT INTO "{table}" VALUES ({marks})', rows)
    conn.commit()
    conn.close()
    return path


def test_fit_shortens_with_a_hash_and_numbers_collisions() -> None:
    """Deterministic, unique, within 63 bytes, and on a character boundary."""
    taken: set[str] = set()
    first, why = fit(PREFIX + "x", taken)
    second, _ = fit(PREFIX + "y", taken)
    assert len(first.encode()) <= 63 and len(second.encode()) <= 63 and first != second
    assert first.startswith(PREFIX[:50]) and why == "longer than 63 bytes"
    assert fit(PREFIX + "x", set()) == (first, why)  # the same input, the same name
    accents, _ = fit(ACCENTS, set())
    assert len(accents.encode()) <= 63 and accents.startswith("é" * 20)
    assert fit("ctid", {"x"}, reserved=frozenset({"ctid"}))[0] == "ctid_1"
    assert fit("a_pkey", {"a_pkey"})[0] == "a_pkey_1"
    assert fit("", set(), empty="column_9") == ("column_9", "an empty name")
    assert object_name("t", "id", "seq") == "t_id_seq"
    assert object_name("x" * 70, "id", "seq") == "x" * 56 + "_id_seq"


def test_renaming_identifiers_leaves_literals_alone() -> None:
    sql = """"xmin" <= "xmax" AND note = '"xmin"' AND "a""b" > 0"""
    assert rename_identifiers(sql, {"xmin": "xmin_1", 'a"b': "ab"}) == (
        """"xmin_1" <= "xmax" AND note = '"xmin"' AND "ab" > 0"""
    )


def test_the_plan_names_everything_and_says_so(tmp_path: Path) -> None:
    plan = build_plan(build(tmp_path / "n.db"))
    names = {t.source_name: t.name for t in plan.tables}
    assert names["a"] == "a" and names["a_pkey"] == "a_pkey"  # tables keep their names
    assert names[""] == "table"
    assert plan.table("a").primary_key_name == "a_pkey_1"
    assert len(names[LONG_TABLE].encode()) <= 63 and len(names[ACCENTS].encode()) <= 63
    sys_columns = [c.name for c in plan.table("sys").columns]
    assert sys_columns == [
        "id",
        "ctid_1",
        "xmin_1",
        "xmax_1",
        "cmin_1",
        "cmax_1",
        "tableoid_1",
        "oid",
        "column_9",
    ]
    assert plan.table("sys").checks[0].expression == '"xmin_1" <= "xmax_1"'
    index = next(i for i in plan.table("sys").indexes if i.name == "sys_window")
    assert index.where == '"ctid_1" IS NOT NULL'
    assert [k.expression for k in index.keys] == ['"xmin_1"', '"xmax_1"']
    sequence = next(c for c in plan.table("t").columns if c.identity).sequence
    assert sequence == "t_id_seq_1"
    index_names = [i.name for i in plan.table("products").indexes]
    assert len(set(index_names)) == 2 and all(len(n.encode()) <= 63 for n in index_names)
    kinds = {(r.kind, r.source) for r in plan.renames}
    assert ("column", "ctid") in kinds and ("table", LONG_TABLE) in kinds
    assert ("sequence", "t_id_seq") in kinds and ("index", "a_pkey") in kinds
    assert any("'xmin'" in w and "reserved" in w for w in plan.warnings)
    assert "column sys.ctid -> ctid_1" in plan_text(plan)
    assert build_plan(tmp_path / "n.db") == plan  # deterministic


async def test_every_name_reproduction_loads_and_checks(tmp_path: Path, pg_dsn: str) -> None:
    """Values arrive under the chosen names; the history records them; check passes."""
    source = build(tmp_path / "n.db")
    settings = RunSettings(source, Target(pg_dsn, pg_dsn, "test"))
    report = await run_migration(settings)
    plan = report.plan
    assert await assert_all_equal(source, pg_dsn, plan) == sum(len(r) for r in ROWS.values())
    conn = await asyncpg.connect(pg_dsn)
    try:
        long_name = plan.table(
            next(t.name for t in plan.tables if t.source_name == LONG_TABLE)
        ).name
        assert [
            tuple(r) for r in await conn.fetch(f'SELECT id, note FROM "{long_name}" ORDER BY id')
        ] == ROWS[LONG_TABLE]
        accents = next(t for t in plan.tables if t.source_name == ACCENTS)
        assert [
            tuple(r) for r in await conn.fetch(f'SELECT * FROM "{accents.name}" ORDER BY id')
        ] == ROWS[ACCENTS]
        products = plan.table("products")
        x, y = (c.name for c in products.columns[2:])
        assert [
            tuple(r)
            for r in await conn.fetch(f'SELECT id, name, "{x}", "{y}" FROM products ORDER BY id')
        ] == ROWS["products"]
        with pytest.raises(asyncpg.UniqueViolationError):  # both unique indexes exist
            await conn.execute(f"INSERT INTO products (name, \"{y}\") VALUES ('plum', 20)")
        assert [
            tuple(r)
            for r in await conn.fetch(
                "SELECT id, ctid_1, xmin_1, xmax_1, cmin_1, cmax_1, tableoid_1, oid, column_9 "
                "FROM sys ORDER BY id"
            )
        ] == ROWS["sys"]
        assert [tuple(r) for r in await conn.fetch("SELECT * FROM sys_view ORDER BY id")] == [
            (1, 3, "(0,1)"),
            (2, 1, None),
        ]  # the view reads the renamed columns
        assert [tuple(r) for r in await conn.fetch('SELECT * FROM "table"')] == ROWS[""]
        assert await conn.fetchval("INSERT INTO t (v) VALUES ('new') RETURNING id") == 6
        await conn.execute("DELETE FROM t WHERE id = 6")
        recorded = json.loads(
            await conn.fetchval("SELECT options FROM asyncmig.runs ORDER BY id DESC LIMIT 1")
        )["renames"]
        assert {
            "kind": "column",
            "table": "sys",
            "source": "xmin",
            "target": "xmin_1",
            "reason": "'xmin' is reserved by PostgreSQL",
        } in recorded
        assert len(recorded) == len(plan.renames)
    finally:
        await conn.close()
    results = await check(settings, DeepCheck())
    assert [r for r in results if not r.ok] == []
    assert {r.table for r in results} >= {t.name for t in plan.tables}
    assert [r.found for r in results if r.check == "names"] == [f"{len(plan.renames)}, as recorded"]
    other = parse_overrides({"tables": {"sys": {"columns": {"xmin": {"rename": "lo"}}}}}, "p")
    names = [r for r in await check(replace(settings, overrides=other)) if r.check == "names"]
    assert not names[0].ok and "xmin -> lo" in names[0].found  # a changed profile is named


async def test_profile_column_renames_follow_keys_indexes_and_foreign_keys(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A profile renames columns (refused before); every reference follows them."""
    source = tmp_path / "r.db"
    conn = sqlite3.connect(source)
    conn.executescript("""
        CREATE TABLE parent (id INTEGER PRIMARY KEY, code TEXT UNIQUE CHECK (length(code) > 1));
        CREATE TABLE child (id INTEGER PRIMARY KEY, p_code TEXT REFERENCES parent (code));
        CREATE INDEX child_p_code ON child (p_code);
        INSERT INTO parent VALUES (1, 'aa'), (2, 'bb');
        INSERT INTO child VALUES (10, 'aa'), (11, 'bb'), (12, NULL);
    """)
    conn.commit()
    conn.close()
    overrides = parse_overrides(
        {
            "tables": {
                "parent": {"columns": {"code": {"rename": "parent_code"}}},
                "child": {"rename": "kids", "columns": {"p_code": {"rename": "parent_code"}}},
            }
        },
        "test",
    )
    settings = RunSettings(source, Target(pg_dsn, pg_dsn, "test"), overrides=overrides)
    report = await run_migration(settings)
    fk = report.plan.table("kids").foreign_keys[0]
    assert (fk.columns, fk.ref_table, fk.ref_columns) == (
        ("parent_code",),
        "parent",
        ("parent_code",),
    )
    assert not any("requested" in w for w in report.plan.warnings)
    pg = await asyncpg.connect(pg_dsn)
    try:
        assert [
            tuple(r) for r in await pg.fetch("SELECT id, parent_code FROM kids ORDER BY id")
        ] == [(10, "aa"), (11, "bb"), (12, None)]
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await pg.execute("INSERT INTO kids (parent_code) VALUES ('zz')")
        with pytest.raises(asyncpg.CheckViolationError):
            await pg.execute("INSERT INTO parent (parent_code) VALUES ('z')")
        indexed = await pg.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'child_p_code'"
        )
        assert "(parent_code)" in indexed
    finally:
        await pg.close()
    results = await check(settings, DeepCheck())
    assert [r for r in results if not r.ok] == []


async def test_more_than_1600_columns_is_refused_before_anything_is_created(
    tmp_path: Path, pg_dsn: str
) -> None:
    source = tmp_path / "wide.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE ok (id INTEGER PRIMARY KEY)")
    conn.execute(
        f"CREATE TABLE wide (id INTEGER PRIMARY KEY, "
        f"{', '.join(f'c{n} INTEGER' for n in range(1600))})"
    )
    conn.commit()
    conn.close()
    with pytest.raises(TargetError) as caught:
        await migrate(source, pg_dsn)
    assert caught.value.exit_code == 4
    assert "wide" in str(caught.value) and "1601 columns" in str(caught.value)
    assert "at most 1600" in str(caught.value)
    pg = await asyncpg.connect(pg_dsn)
    try:
        assert await pg.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    finally:
        await pg.close()


def test_plan_refuses_a_too_wide_table_with_one_line_and_exit_4(
    tmp_path: Path, run_main: RunMain
) -> None:
    source = tmp_path / "wide.db"
    conn = sqlite3.connect(source)
    conn.execute(f"CREATE TABLE wide ({', '.join(f'c{n} TEXT' for n in range(1700))})")
    conn.close()
    code, _out, err = run_main("plan", "--sqlite", str(source))
    line = one_error_line(err)
    assert code == 4 and "wide" in line and "1700 columns" in line and "1600" in line


async def test_check_constraints_keep_their_names_quoted_or_not(
    tmp_path: Path, pg_dsn: str
) -> None:
    """``CONSTRAINT "price_nonneg" CHECK (...)`` is how Django writes a named CHECK: the
    quoted name was missed (PostgreSQL made up ``t_check1``), so a later Django
    migration dropping ``price_nonneg`` would fail on the copy."""
    source = tmp_path / "c.db"
    with sqlite3.connect(source) as conn:
        conn.execute(
            "CREATE TABLE t (x INT, y INT, z INT CONSTRAINT [z ok] CHECK (z <> 1), "
            'w INT CHECK (w > 0), CONSTRAINT "x_pos" CHECK (x > 0), '
            "CONSTRAINT y_pos CHECK (y > 0))"
        )
        conn.execute("INSERT INTO t VALUES (1, 1, 2, 1)")
    await run_migration(RunSettings(source, Target(pg_dsn, pg_dsn, "test")))
    conn2 = await asyncpg.connect(pg_dsn)
    try:
        names = await conn2.fetch(
            "SELECT conname, pg_get_constraintdef(oid) AS d FROM pg_constraint "
            "WHERE conrelid = 'public.t'::regclass AND contype = 'c' ORDER BY conname"
        )
    finally:
        await conn2.close()
    found = {r["conname"]: r["d"] for r in names}
    assert {"x_pos", "y_pos", "z ok"} <= set(found), found
    assert "x > 0" in found["x_pos"] and "z <> 1" in found["z ok"]
    assert len(found) == 4  # w's unnamed CHECK gets PostgreSQL's name


async def test_primary_and_foreign_keys_keep_the_names_the_source_gave_them(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Entity Framework and Rails name their keys (``PK_Blogs``,
    ``FK_Posts_Blogs_BlogId``, ``fk_rails_3d31dad1cc``) and their later migrations drop
    them by these names: the copy has them (it had ``Posts_pkey`` and
    ``Posts_BlogId_fkey``). Two tables giving their keys one name: the second is
    renamed, and the rename recorded, as for any name PostgreSQL holds already."""
    source = tmp_path / "ef.db"
    with sqlite3.connect(source) as conn:
        conn.executescript("""
            CREATE TABLE "Blogs" ("Id" INTEGER NOT NULL CONSTRAINT "PK_Blogs" PRIMARY KEY
                AUTOINCREMENT, "Url" TEXT);
            CREATE TABLE "Posts" ("Id" INTEGER NOT NULL CONSTRAINT "PK_Posts" PRIMARY KEY
                AUTOINCREMENT, "BlogId" INTEGER NOT NULL, "Other" INTEGER
                CONSTRAINT fk_other REFERENCES "Blogs" ("Id"),
                CONSTRAINT "FK_Posts_Blogs_BlogId" FOREIGN KEY ("BlogId") REFERENCES "Blogs"
                ("Id") ON DELETE CASCADE);
            CREATE TABLE articles (id integer NOT NULL PRIMARY KEY, user_id integer,
                CONSTRAINT "fk_rails_3d31dad1cc" FOREIGN KEY ("user_id") REFERENCES "Blogs"
                ("Id"));
            CREATE TABLE a (id INTEGER, CONSTRAINT pk PRIMARY KEY (id));
            CREATE TABLE b (id INTEGER, CONSTRAINT pk PRIMARY KEY (id));
            INSERT INTO "Blogs" VALUES (1, 'x');
            INSERT INTO "Posts" VALUES (1, 1, 1);
            INSERT INTO articles VALUES (1, 1);
        """)
    report = await run_migration(RunSettings(source, Target(pg_dsn, pg_dsn, "test")))
    conn2 = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn2.fetch(
            "SELECT conrelid::regclass::text AS t, conname, contype::text FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'f') "
            "ORDER BY 1, 2"
        )
    finally:
        await conn2.close()
    assert [tuple(r) for r in rows] == [
        ('"Blogs"', "PK_Blogs", "p"),
        ('"Posts"', "FK_Posts_Blogs_BlogId", "f"),
        ('"Posts"', "PK_Posts", "p"),
        ('"Posts"', "fk_other", "f"),
        ("a", "pk", "p"),
        ("articles", "articles_pkey", "p"),
        ("articles", "fk_rails_3d31dad1cc", "f"),
        ("b", "pk_1", "p"),
    ]
    assert [(r.kind, r.table, r.source, r.target) for r in report.plan.renames] == [
        ("index", "b", "pk", "pk_1")
    ]
    assert all(c.ok for c in report.checks)


async def test_unique_constraints_keep_the_names_the_source_gave_them(
    tmp_path: Path, pg_dsn: str
) -> None:
    """SQLAlchemy's and Alembic's naming conventions name every UNIQUE constraint
    (``uq_author_title``), and a later ``op.drop_constraint`` drops it by that name: the
    copy had ``post_author_id_title_key``. On a table and on a column; an unnamed one keeps
    PostgreSQL's name, and a name already taken is renamed and recorded."""
    source = tmp_path / "alembic.db"
    with sqlite3.connect(source) as conn:
        conn.executescript("""
            CREATE TABLE post (id INTEGER NOT NULL, author_id INTEGER NOT NULL,
                title VARCHAR(200) NOT NULL, slug TEXT UNIQUE, PRIMARY KEY (id),
                CONSTRAINT "uq_Author_Title" UNIQUE (author_id, title));
            CREATE TABLE tag (id INTEGER NOT NULL, label VARCHAR(40) NOT NULL
                CONSTRAINT uq_label UNIQUE, CONSTRAINT pk_tag PRIMARY KEY (id));
            CREATE TABLE tag2 (id INTEGER PRIMARY KEY, label TEXT, CONSTRAINT uq_label UNIQUE (label));
            INSERT INTO post VALUES (1, 1, 'a', 'a'), (2, 1, 'b', 'b');
            INSERT INTO tag VALUES (1, 'x');
        """)
    report = await run_migration(RunSettings(source, Target(pg_dsn, pg_dsn, "test")))
    conn2 = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn2.fetch(
            "SELECT conrelid::regclass::text AS t, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype = 'u' "
            "ORDER BY 1, 2"
        )
        await conn2.execute('ALTER TABLE post DROP CONSTRAINT "uq_Author_Title"')  # Alembic's
    finally:
        await conn2.close()
    assert [tuple(r) for r in rows] == [
        ("post", "post_slug_key", "UNIQUE (slug)"),
        ("post", "uq_Author_Title", "UNIQUE (author_id, title)"),
        ("tag", "uq_label", "UNIQUE (label)"),
        ("tag2", "uq_label_1", "UNIQUE (label)"),
    ]
    assert [(r.kind, r.table, r.source, r.target) for r in report.plan.renames] == [
        ("index", "tag2", "uq_label", "uq_label_1")
    ]
    assert all(c.ok for c in report.checks)


async def test_a_check_old_rows_break_stays_not_valid_and_guards_new_rows(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A row written while SQLite ignored CHECKs breaks ``ck_balance_nonneg``: the
    CHECK was dropped (the application's later migration could not find it, and new
    rows went unchecked). It stays, NOT VALID, as a foreign key the kept orphans break."""
    source = tmp_path / "bank.db"
    with sqlite3.connect(source) as conn:
        conn.execute(
            "CREATE TABLE account (id INTEGER PRIMARY KEY, balance NUMERIC(10,2), "
            "CONSTRAINT ck_balance_nonneg CHECK (balance >= 0))"
        )
        conn.execute("INSERT INTO account VALUES (1, 10)")
        conn.execute("PRAGMA ignore_check_constraints = 1")
        conn.execute("INSERT INTO account VALUES (2, -5)")
    report = await run_migration(RunSettings(source, Target(pg_dsn, pg_dsn, "test")))
    assert any('ck_balance_nonneg" left NOT VALID' in w for w in report.warnings), report.warnings
    conn2 = await asyncpg.connect(pg_dsn)
    try:
        found = await conn2.fetch(
            "SELECT conname, convalidated FROM pg_constraint WHERE contype = 'c' "
            "AND conrelid = 'account'::regclass"
        )
        assert [tuple(r) for r in found] == [("ck_balance_nonneg", False)]
        with pytest.raises(asyncpg.CheckViolationError):
            await conn2.execute("INSERT INTO account VALUES (3, -1)")
        await conn2.execute("INSERT INTO account VALUES (4, 1)")
        kept = await conn2.fetch("SELECT id, balance::text FROM account ORDER BY id")
    finally:
        await conn2.close()
    assert [tuple(r) for r in kept] == [(1, "10.00"), (2, "-5.00"), (4, "1.00")]
