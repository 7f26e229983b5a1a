"""The ``check`` engine: a fresh copy passes; each kind of damage is found and named."""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from asyncmig.check.verify import (
    BESIDE_NICE,
    CHECK_KINDS,
    Scan,
    SourceScans,
    grouped_orphans,
    groups_by_index,
    in_thread,
    render_text,
    results_json,
    run_checks,
    scan_source,
    source_orphan_sql,
)
from asyncmig.plan.builder import build_plan
from tests.fix_cli import RunMain
from tests.fix_run import Migrated, failures


async def test_a_fresh_migration_passes_every_check(migrated: Migrated) -> None:
    results = await migrated.check()
    assert failures(results) == []
    assert {r.check for r in results} == set(CHECK_KINDS)
    assert {r.table for r in results if r.check == "row count"} == {
        t.name for t in migrated.plan.tables
    }
    text = render_text(results)
    assert "FAIL" not in text
    assert text.rstrip().endswith(f"{len(results)} checks, 0 failed")


async def test_deleted_rows_fail_that_tables_row_count(migrated: Migrated) -> None:
    await migrated.conn.execute("DELETE FROM \"membership\" WHERE role = 'member'")
    failed = failures(await migrated.check())
    assert [(r.check, r.table, r.expected, r.found) for r in failed] == [
        ("row count", "membership", "3", "1")
    ]


async def test_a_sequence_set_behind_fails_the_sequence_check(migrated: Migrated) -> None:
    await migrated.conn.execute(
        "SELECT setval(pg_get_serial_sequence('\"public\".\"user\"', 'id'), 1)"
    )
    failed = failures(await migrated.check())
    assert [(r.check, r.table, r.expected, r.found) for r in failed] == [
        ("sequence", "user", "next > 5", "next = 2")
    ]


async def test_an_orphan_behind_a_dropped_foreign_key_is_counted(migrated: Migrated) -> None:
    await migrated.conn.execute(
        'ALTER TABLE "membership" DROP CONSTRAINT "membership_user_id_fkey"'
    )
    await migrated.conn.execute("INSERT INTO membership (user_id, group_id) VALUES (99, 3)")
    failed = failures(await migrated.check())
    by_check = {r.check: r for r in failed}
    assert set(by_check) == {"foreign key", "row count"}  # the extra row is counted too
    fk = by_check["foreign key"]
    assert (fk.table, fk.subject) == ("membership", "membership_user_id_fkey")
    assert fk.expected == "0 orphans, validated"
    assert fk.found == "1 orphan, constraint missing"


async def test_a_not_valid_foreign_key_with_orphans_is_reported(migrated: Migrated) -> None:
    conn = migrated.conn
    await conn.execute('ALTER TABLE "group" DROP CONSTRAINT "group_parent_fkey"')
    await conn.execute('UPDATE "group" SET parent = 42 WHERE "group id" IN (2, 3)')
    await conn.execute(
        'ALTER TABLE "group" ADD CONSTRAINT "group_parent_fkey" FOREIGN KEY '
        '(parent) REFERENCES "group" ("group id") NOT VALID'
    )
    failed = failures(await migrated.check())
    assert [(r.subject, r.found) for r in failed] == [("group_parent_fkey", "2 orphans, NOT VALID")]


async def test_a_jsonb_value_set_to_null_fails_the_json_check(migrated: Migrated) -> None:
    await migrated.conn.execute('UPDATE "values" SET doc = NULL WHERE id = 1')
    failed = failures(await migrated.check())
    assert [(r.check, r.table, r.subject, r.expected, r.found) for r in failed] == [
        ("json", "values", "doc", "4 non-NULL", "3 non-NULL")
    ]


async def test_a_dropped_table_is_a_failure_not_an_exception(migrated: Migrated) -> None:
    before = await migrated.check()
    await migrated.conn.execute('DROP TABLE "values"')
    results = await migrated.check()
    failed = failures(results)
    assert {(r.check, r.table, r.found) for r in failed} == {
        ("row count", "values", "missing"),
        ("json", "values", "missing"),
        ("sequence", "values", "missing"),
    }
    assert len(results) == len(before)  # the same checks, whatever the damage


async def test_render_text_names_the_failing_table(migrated: Migrated) -> None:
    await migrated.conn.execute('DELETE FROM "group" WHERE "group id" = 3')
    results = await migrated.check()
    text = render_text(results)
    failing = [line for line in text.splitlines() if line.endswith("FAIL")]
    assert len(failing) == 1
    assert failing[0].split()[:3] == ["row", "count", "group"]
    for table in migrated.plan.tables:
        assert table.name in text
    assert text.rstrip().endswith(f"{len(results)} checks, 1 failed")
    assert text.count("check  ") == len(CHECK_KINDS)  # one table, with headings, per kind


async def test_results_json_is_plain_data(migrated: Migrated) -> None:
    results = await migrated.check()
    data = results_json(results)
    assert len(data) == len(results)
    assert set(data[0]) == {"check", "table", "subject", "expected", "found", "ok"}
    assert all(isinstance(d["ok"], bool) for d in data)


@pytest.mark.parametrize("policy", ["null", "default"])
def test_check_deep_compares_with_what_the_run_did_under_its_policy(
    run_main: RunMain, tmp_path: Path, pg_dsn: str, policy: str
) -> None:
    """``run --on-error null`` (or ``default``) replaced a value on purpose; ``check``
    does not take --on-error, and planned again with the default policy, so its SQLite
    side rejected what the run had replaced: every such table failed. It now compares
    with the plan the run recorded (the source's declared schema being the same)."""
    source = tmp_path / "z.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, d DATETIME DEFAULT '2000-01-01')")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?)",
            [(1, "2024-01-01 00:00:00"), (2, "0000-00-00 00:00:00"), (3, None)],
        )
    common = ("--sqlite", str(source), "--pg", pg_dsn)
    ran = run_main("run", *common, "--on-error", policy, "--log-dir", str(tmp_path / "logs"))
    assert ran.returncode == 0, ran.stderr
    checked = run_main("check", "--deep", "--explain", *common)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "checksum" in checked.stdout


async def test_scans_taken_beside_the_load_are_what_the_check_compares(
    migrated: Migrated,
) -> None:
    """A run reads the SQLite side once, beside its load: the check compares with what
    was read then, and a plan that asks something else of a table reads it again."""
    scans = SourceScans(migrated.source)
    copying = anyio.Event()
    copying.set()
    await scans.beside(migrated.plan, copying)
    with sqlite3.connect(migrated.source) as source:  # a later change the scans cannot see
        source.execute("DELETE FROM membership WHERE role = 'member'")
    results = await run_checks(migrated.plan, migrated.conn, migrated.source, scans=scans)
    assert failures(results) == []
    fresh = failures(await migrated.check())  # read now: the deleted rows show
    assert [(r.check, r.table, r.expected, r.found) for r in fresh] == [
        ("row count", "membership", "1", "3")
    ]
    renamed = replace(
        migrated.plan,
        tables=tuple(
            replace(t, foreign_keys=()) if t.name == "membership" else t
            for t in migrated.plan.tables
        ),
    )
    again = await scans.take(renamed)  # another question about membership: read again
    before = await scans.take(migrated.plan)  # the same question: the answer kept
    assert isinstance(again["membership"], Scan) and isinstance(before["membership"], Scan)
    assert (again["membership"].rows, before["membership"].rows) == (1, 3)


async def test_a_scan_beside_the_load_runs_at_a_lower_priority_in_its_own_thread() -> None:
    def priority() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine = priority()
    assert await in_thread(priority, nice=BESIDE_NICE) == min(19, mine + BESIDE_NICE)
    assert priority() == mine  # nothing else runs at the lower priority afterwards
    assert await anyio.to_thread.run_sync(priority) == mine

    def broken() -> None:
        raise sqlite3.DatabaseError("file is not a database")

    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        await in_thread(broken, nice=BESIDE_NICE)


ORPHANS = """
CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE tparent (code TEXT PRIMARY KEY);
CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id),
    loose INTEGER REFERENCES parent(id), folded INTEGER COLLATE NOCASE REFERENCES parent(id),
    label TEXT REFERENCES tparent(code));
CREATE INDEX child_parent ON child (parent_id, id);
CREATE INDEX child_folded ON child (folded);
CREATE INDEX child_label ON child (label);
"""


def test_orphans_counted_by_grouped_keys_are_sqlites_own_count(tmp_path: Path) -> None:
    """The source's orphans are counted over the child's distinct keys, read from an
    index, where grouping keeps every value apart (INTEGER affinity, BINARY); the count
    is SQLite's row by row anti-join's, whatever the values: orphans, NULLs, text and
    reals in an INTEGER column, text that reads as a number ('5' is stored as 5).
    Without an index, with a NOCASE column or a TEXT one, the row by row query counts."""
    source = tmp_path / "orphans.db"
    with sqlite3.connect(source) as conn:
        conn.executescript(ORPHANS)
        conn.executemany("INSERT INTO parent VALUES (?, ?)", [(i, f"p{i}") for i in range(1, 40)])
        conn.executemany("INSERT INTO tparent VALUES (?)", [("5",), ("abc",), ("7",), ("x",)])
        values: list[object] = [3, 5, 7, 12, 41, 99, None, "abc", "ABC", 2.5, "5", 0]
        conn.executemany(
            "INSERT INTO child VALUES (?, ?, ?, ?, ?)",
            [
                (i, values[i % 12], values[(i * 7) % 12], values[(i * 11) % 12],
                 str(values[i % 12]))
                for i in range(1, 2000)
            ],
        )  # fmt: skip
    plan = build_plan(source, schema="t")
    child = plan.table("child")
    kinds = {fk.columns[0]: grouped_orphans(plan, child, fk) for fk in child.foreign_keys}
    assert kinds["label"] is None  # a TEXT key: row by row
    conn = sqlite3.connect(source)
    try:
        served = {
            column: grouped is not None and groups_by_index(conn, grouped)
            for column, grouped in kinds.items()
        }
        assert served == {
            "parent_id": True,
            "loose": False,  # no index: SQLite would sort the keys itself
            "folded": False,  # NOCASE would put 'abc' and 'ABC' in one group
            "label": False,
        }
        queries = {fk.name: source_orphan_sql(plan, child, fk) for fk in child.foreign_keys}
        by_rows = {name: conn.execute(sql).fetchone()[0] for name, sql in queries.items() if sql}
        assert len(by_rows) == 4
        for fk in child.foreign_keys:
            grouped = kinds[fk.columns[0]]
            if grouped is not None:
                assert conn.execute(grouped.sql).fetchone()[0] == by_rows[fk.name], fk.name
    finally:
        conn.close()
    scanned = scan_source(plan, source)["child"]
    assert isinstance(scanned, Scan) and scanned.orphans == by_rows
    assert by_rows[child.foreign_keys[0].name] > 0 and len(set(by_rows.values())) > 1
