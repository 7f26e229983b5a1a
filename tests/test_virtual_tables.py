"""Virtual tables that own their rows are copied; full-text search still works after.

Reproduction from issue 8: ``CREATE VIRTUAL TABLE notes USING fts5(subject, body)``
plus rows gave "virtual table notes is not migrated", exit 0, and the rows existed
nowhere else.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest

from asyncmig.cli.commands import check
from asyncmig.cli.settings import DeepCheck
from asyncmig.errors import SourceError
from asyncmig.plan.builder import build_plan
from asyncmig.plan.overrides import parse_overrides
from asyncmig.run import run_migration
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target
from tests.compare import assert_all_equal
from tests.fix_cli import RunMain, one_error_line
from tests.fix_run import migrate

NOTES = [
    ("Shopping list", "milk, eggs and the quick brown bread"),
    ("Meeting notes", "the quarterly budget review with the board"),
    ("Fox facts", "the quick brown fox jumps over the lazy dog"),
    ("Recipe", "bread: flour, water, salt; bake for forty minutes"),
    ("Travel", "Lisbon in spring, then the Azores by boat"),
    ("Budget", None),
]
WORDS = ["quick brown", "bread", "the", "budget", "azores", "fox lazy", "nothing-here"]


def build(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE VIRTUAL TABLE notes USING fts5(subject, body);
        CREATE VIRTUAL TABLE tagged USING fts4(title, tags, notindexed=tags, tokenize=porter);
        CREATE VIRTUAL TABLE places USING rtree(id, min_x, max_x, min_y, max_y, +label);
        CREATE TABLE docs (id INTEGER PRIMARY KEY, text TEXT);
        CREATE VIRTUAL TABLE docs_search USING fts5(text, content='docs', content_rowid='id');
        CREATE VIRTUAL TABLE blank USING fts5(x, content='');
    """)
    conn.executemany("INSERT INTO notes (subject, body) VALUES (?, ?)", NOTES)
    conn.execute("DELETE FROM notes WHERE rowid = 2")  # rowids keep their gaps
    conn.executemany(
        "INSERT INTO tagged (docid, title, tags) VALUES (?, ?, ?)",
        [(10, "First post", "intro news"), (20, "Second post", "news")],
    )
    conn.executemany(
        "INSERT INTO places VALUES (?, ?, ?, ?, ?, ?)",
        [(1, 0.5, 1.5, -2.25, 3.0, "depot"), (7, 10.0, 20.0, 30.0, 40.0, None)],
    )
    conn.executemany("INSERT INTO docs (text) VALUES (?)", [("alpha beta",), ("gamma",)])
    conn.execute("INSERT INTO docs_search (docs_search) VALUES ('rebuild')")
    conn.execute("INSERT INTO blank (rowid, x) VALUES (1, 'gone')")
    conn.commit()
    conn.close()
    return path


def test_the_plan_copies_owning_virtual_tables_and_skips_the_others(tmp_path: Path) -> None:
    plan = build_plan(build(tmp_path / "v.db"))
    assert sorted(t.name for t in plan.tables) == ["docs", "notes", "places", "tagged"]
    notes = plan.table("notes")
    assert [c.name for c in notes.columns] == ["rowid", "subject", "body"]
    assert notes.primary_key == ("rowid",) and notes.column("rowid").identity
    search = next(i for i in notes.indexes if i.method == "gin")
    assert search.keys[0].expression == (
        "to_tsvector('simple'::regconfig, coalesce(\"subject\", '') || ' ' || "
        "coalesce(\"body\", ''))"
    )
    tagged = next(i for i in plan.table("tagged").indexes if i.method == "gin")
    assert "tags" not in tagged.keys[0].expression  # notindexed: MATCH does not search it
    assert tagged.keys[0].expression.startswith("to_tsvector('english'")  # porter stems
    assert plan.table("places").primary_key == ("id",)
    assert any("docs_search" in w and "external-content" in w for w in plan.warnings)
    assert any("blank" in w and "contentless" in w for w in plan.warnings)


def test_a_readable_table_of_another_module_is_planned_as_a_table(tmp_path: Path) -> None:
    """dbstat stands in for any module SQLite can read: its columns, the rowid as key."""
    source = tmp_path / "d.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE VIRTUAL TABLE pages USING dbstat(main)")
    conn.close()
    pages = build_plan(source).table("pages")
    assert [c.name for c in pages.columns][:4] == ["rowid", "name", "path", "pageno"]
    assert pages.row_count >= 1 and pages.primary_key == ("rowid",)


async def test_fts5_rtree_copied_and_search_finds_what_match_finds(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Rows arrive equal; for each query the GIN-indexed search returns MATCH's rows."""
    source = build(tmp_path / "v.db")
    settings = RunSettings(source, Target(pg_dsn, pg_dsn, "test"))
    report = await run_migration(settings)
    assert await assert_all_equal(source, pg_dsn, report.plan) == 5 + 2 + 2 + 2
    expression = (
        next(i for i in report.plan.table("notes").indexes if i.method == "gin").keys[0].expression
    )
    lite = sqlite3.connect(source)
    conn = await asyncpg.connect(pg_dsn)
    try:
        tables = {
            r[0]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert tables == {"docs", "notes", "places", "tagged"}  # no shadow, no skipped table
        assert [
            tuple(r)
            for r in await conn.fetch("SELECT rowid, subject, body FROM notes ORDER BY rowid")
        ] == lite.execute("SELECT rowid, subject, body FROM notes ORDER BY rowid").fetchall()
        assert [
            tuple(r) for r in await conn.fetch("SELECT * FROM places ORDER BY id")
        ] == lite.execute("SELECT * FROM places ORDER BY id").fetchall()
        for words in WORDS:
            match = sorted(
                r[0]
                for r in lite.execute(
                    "SELECT rowid FROM notes WHERE notes MATCH ?", (_fts5_query(words),)
                )
            )
            found = sorted(
                r[0]
                for r in await conn.fetch(
                    f"SELECT rowid FROM notes WHERE {expression} @@ plainto_tsquery('simple', $1)",
                    words,
                )
            )
            assert found == match, words
        assert sorted(
            r[0]
            for r in await conn.fetch(
                "SELECT rowid FROM notes WHERE to_tsvector('simple', coalesce(subject, '') || ' ' || "
                "coalesce(body, '')) @@ plainto_tsquery('simple', 'quick brown')"
            )
        ) == [1, 3]
        await conn.execute("SET enable_seqscan = off")
        plan_text = "\n".join(
            r[0]
            for r in await conn.fetch(
                f"EXPLAIN SELECT rowid FROM notes WHERE {expression} @@ "
                "plainto_tsquery('simple', 'fox')"
            )
        )
        assert "notes_search" in plan_text  # the documented query uses the GIN index
        new_id = await conn.fetchval("INSERT INTO notes (subject) VALUES ('new') RETURNING rowid")
        assert new_id == 7  # the identity continues after the copied rowids (1-6)
        await conn.execute("DELETE FROM notes WHERE rowid = $1", new_id)
    finally:
        await conn.close()
        lite.close()
    results = await check(settings, DeepCheck())
    assert [r for r in results if not r.ok] == []
    assert {r.table for r in results} >= {"notes", "places", "tagged"}


async def test_fts3_has_no_content_option_its_rows_are_copied(tmp_path: Path, pg_dsn: str) -> None:
    """FTS3 reads ``content="docs"`` as a second column named ``content``, not as
    FTS4's external-content option: the table holds rows of its own (Datasette's test
    fixtures declare one so). They were left out as if they were ``docs``' rows."""
    source = tmp_path / "f3.db"
    conn = sqlite3.connect(source)
    conn.executescript("""
        CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT);
        INSERT INTO docs VALUES (1, 'in docs');
        CREATE VIRTUAL TABLE notes USING fts3(body, content="docs");
        INSERT INTO notes (body, content) VALUES ('only in notes', 'a'), ('and here', NULL);
        CREATE VIRTUAL TABLE n4 USING fts4(body, content="docs");
    """)
    conn.commit()
    conn.close()
    settings = RunSettings(source, Target(pg_dsn, pg_dsn, "test"))
    report = await run_migration(settings)
    assert sorted(t.name for t in report.plan.tables) == ["docs", "notes"]
    assert [c.name for c in report.plan.table("notes").columns] == ["rowid", "body", "content"]
    assert any("n4" in w and "external-content fts4" in w for w in report.plan.warnings)
    assert await assert_all_equal(source, pg_dsn, report.plan) == 1 + 2
    results = await check(settings, DeepCheck())
    assert [r for r in results if not r.ok] == []


def _fts5_query(words: str) -> str:
    """The words as FTS5 string tokens, implicitly ANDed (as plainto_tsquery does)."""
    return " ".join('"' + w.replace('"', '""') + '"' for w in words.split())


def _add_unreadable(path: Path) -> None:
    """A virtual table of a module this SQLite does not have (as on a machine without it)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE kept (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO kept VALUES (1, 'x')")
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute(
        "INSERT INTO sqlite_schema (type, name, tbl_name, rootpage, sql) VALUES "
        "('table', 'vectors', 'vectors', 0, "
        "'CREATE VIRTUAL TABLE vectors USING vec0(embedding float[4])')"
    )
    conn.commit()
    conn.close()


async def test_an_unreadable_virtual_table_fails_before_anything_is_created(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Its rows would be lost: the run stops (exit 3) naming it, unless the profile excludes it."""
    source = tmp_path / "u.db"
    _add_unreadable(source)
    with pytest.raises(SourceError) as caught:
        await migrate(source, pg_dsn)
    assert "vectors" in str(caught.value) and "vec0" in str(caught.value)
    assert caught.value.exit_code == 3
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        )
    finally:
        await conn.close()
    excluded = parse_overrides({"tables": {"vectors": {"exclude": True}}}, "test")
    report = await migrate(source, pg_dsn, overrides=excluded)
    assert [t.name for t in report.plan.tables] == ["kept"]


def test_plan_refuses_an_unreadable_virtual_table_with_exit_3(
    tmp_path: Path, run_main: RunMain
) -> None:
    source = tmp_path / "u.db"
    _add_unreadable(source)
    code, _out, err = run_main("plan", "--sqlite", str(source))
    line = one_error_line(err)
    assert code == 3 and "vectors" in line and "exclude" in line
