"""The ``check`` engine: a fresh copy passes; each kind of damage is found and named."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from asyncmig.check.verify import (
    CHECK_KINDS,
    render_text,
    results_json,
)
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
