"""COLLATE NOCASE columns stay case-insensitive in PostgreSQL (ICU), or fall back to lower().

Run on every server available: the embedded PostgreSQL is built without ICU (the
fallback path), the distribution's has it (the collation path).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest

from asyncmig import cutover
from asyncmig.cli.commands import check, validate
from asyncmig.cli.settings import DeepCheck
from asyncmig.ddl import create_schema_sql, create_table_sql, index_sql
from asyncmig.errors import TargetError
from asyncmig.plan.builder import build_plan
from asyncmig.plan.collations import NOCASE
from asyncmig.run import create_schema, load_data, run_migration
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target
from tests.compare import assert_all_equal

SCHEMA = """
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT COLLATE NOCASE UNIQUE, name TEXT,
                    code TEXT COLLATE RTRIM);
CREATE INDEX users_name_nocase ON users (name COLLATE NOCASE);
CREATE UNIQUE INDEX users_code ON users (code);
"""
ROWS = [
    (1, "Ann@Example.com", "ann", "a1"),
    (2, "bob@example.com", "Bob", "b1"),
    (3, "carl@example.com", "carl", "c1 "),
]


def build(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?)", ROWS)
    conn.commit()
    conn.close()
    return path


def test_the_plan_gives_nocase_columns_the_collation(tmp_path: Path) -> None:
    """The column gets the collation (created with the schema); its UNIQUE stays a constraint."""
    plan = build_plan(build(tmp_path / "c.db"), schema="app")
    users = plan.table("users")
    assert users.column("email").collation == NOCASE
    assert users.column("name").collation is None
    assert create_schema_sql(plan)[-1] == (
        'CREATE COLLATION IF NOT EXISTS "app"."nocase" (provider = icu, '
        "locale = 'und-u-ks-level2', deterministic = false)"
    )
    assert '"email" text COLLATE "app"."nocase"' in create_table_sql(plan, users)
    statements = " ".join(index_sql(plan, users))
    assert '("name" COLLATE "app"."nocase")' in statements
    assert '(rtrim("code"))' in statements
    email_index = next(i for i in users.indexes if i.keys[0].expression == '"email"')
    assert email_index.constraint and email_index.keys[0].collation is None
    assert any("RTRIM" in w for w in plan.warnings)


async def test_nocase_equality_and_uniqueness_after_migration(
    tmp_path: Path, any_pg_dsn: str
) -> None:
    """`email = 'ann@example.com'` finds 'Ann@Example.com'; a case-variant duplicate is refused.

    With ICU the column itself compares case-insensitively; without it the warning names
    the column and the unique index is on lower(email), which still refuses the duplicate.
    """
    source = build(tmp_path / "c.db")
    settings = RunSettings(source, Target(any_pg_dsn, any_pg_dsn, "test"))
    report = await run_migration(settings)
    assert await assert_all_equal(source, any_pg_dsn, report.plan) == len(ROWS)
    conn = await asyncpg.connect(any_pg_dsn)
    try:
        icu = report.plan.table("users").column("email").collation == NOCASE
        found = await conn.fetch(
            "SELECT id, email FROM users WHERE email = 'ann@example.com'"
            if icu
            else "SELECT id, email FROM users WHERE lower(email) = lower('ann@example.com')"
        )
        assert [tuple(r) for r in found] == [(1, "Ann@Example.com")]
        if icu:
            ordered = await conn.fetch("SELECT email FROM users ORDER BY email")
            assert [r[0] for r in ordered] == sorted((r[1] for r in ROWS), key=str.lower)
            assert not any("NOCASE" in w for w in report.warnings)
        else:
            assert any("users.email" in w and "case-sensitive" in w for w in report.warnings)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO users (email) VALUES ('ANN@example.COM')")
        with pytest.raises(asyncpg.UniqueViolationError):  # RTRIM: trailing spaces ignored
            await conn.execute("INSERT INTO users (code) VALUES ('a1  ')")
    finally:
        await conn.close()
    results = await check(settings, DeepCheck())
    assert [r for r in results if not r.ok] == []


async def test_accent_case_variants_are_named_as_duplicates(
    tmp_path: Path, any_pg_dsn: str
) -> None:
    """SQLite's NOCASE folds ASCII only, so 'Émile' and 'émile' coexist under a unique
    NOCASE index; the ICU collation folds them, and the refusal names both keys."""
    source = tmp_path / "e.db"
    conn = sqlite3.connect(source)
    conn.executescript("""
        CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT);
        CREATE UNIQUE INDEX people_name ON people (name COLLATE NOCASE);
        INSERT INTO people VALUES (1, 'Émile'), (2, 'émile'), (3, 'Zoé');
    """)
    conn.commit()
    conn.close()
    settings = RunSettings(source, Target(any_pg_dsn, any_pg_dsn, "test"))
    if build_plan(source).table("people").indexes[0].keys[0].collation != NOCASE:
        pytest.fail("the index key should carry the NOCASE collation")
    try:
        report = await run_migration(settings)
    except TargetError as exc:  # ICU: the two spellings are one key
        assert "people_name" in str(exc) and "mile" in str(exc) and "x2" in str(exc)
        return
    assert any("case-sensitive" in w for w in report.warnings)  # no ICU: lower() keys


async def test_schema_then_data_agree_on_the_collation(tmp_path: Path, any_pg_dsn: str) -> None:
    """`data` finds the collation `schema` made (or its absence) and indexes accordingly."""
    source = build(tmp_path / "c.db")
    settings = RunSettings(source, Target(any_pg_dsn, any_pg_dsn, "test"))
    created = await create_schema(settings)
    loaded = await load_data(settings)
    icu = created.plan.table("users").column("email").collation == NOCASE
    assert (
        loaded.plan.table("users").column("email").collation
        == created.plan.table("users").column("email").collation
    )
    conn = await asyncpg.connect(any_pg_dsn)
    try:
        definition = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'users_name_nocase'"
        )
        assert ("COLLATE nocase" in definition.replace('"', "")) == icu
        assert ("lower(name)" in definition) == (not icu)
    finally:
        await conn.close()


async def test_validate_says_whether_nocase_columns_stay_case_insensitive(
    tmp_path: Path, any_pg_dsn: str
) -> None:
    """Before anything is loaded: pass with ICU, a warning naming the columns without."""
    source = build(tmp_path / "c.db")
    checks = await validate(RunSettings(source, Target(any_pg_dsn, any_pg_dsn, "test")))
    found = next(c for c in checks if c.name == "collations")
    assert "users.email" in found.message
    assert found.status in ("pass", "warn")
    assert (found.status == "warn") == ("lower()" in found.message)


async def test_replace_moves_the_collation_into_the_schema(tmp_path: Path, any_pg_dsn: str) -> None:
    """`run --replace` over a copy: the new stage's collation replaces the old one in
    the target (one of that name, used by the new columns; the old one moves to the
    backup schema with the old tables), and no stage is left."""
    source = build(tmp_path / "c.db")
    await run_migration(RunSettings(source, Target(any_pg_dsn, any_pg_dsn, "test")))
    report = await run_migration(
        RunSettings(source, Target(any_pg_dsn, any_pg_dsn, "test"), replace=True)
    )
    conn = await asyncpg.connect(any_pg_dsn)
    try:
        schemas = await conn.fetch(
            "SELECT n.nspname FROM pg_collation c JOIN pg_namespace n "
            "ON n.oid = c.collnamespace WHERE c.collname = 'nocase'"
        )
        icu = report.plan.table("users").column("email").collation == NOCASE
        kept = cutover.backup_name("public", 2)  # the old one, with the tables it served
        assert sorted(r[0] for r in schemas) == (sorted(["public", kept]) if icu else [])
        left = await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'asyncmig%stage%'"
        )
        assert left == 0
        if icu:
            found = await conn.fetchval(
                "SELECT count(*) FROM public.users WHERE email = upper(email)"
            )
            assert found == len(ROWS)  # the moved collation still folds case
    finally:
        await conn.close()
