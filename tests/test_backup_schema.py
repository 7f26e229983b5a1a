"""`run --replace` keeps the tables it replaces in a backup schema of the run, and
`rollback` swaps them back in one transaction: real processes, a real server, a
reader session polling throughout the swap back."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.fault_sources import old_and_new
from tests.fix_cli import run_cli, valid
from tests.fix_faults import backups, contents, finish, poll_counts, start
from tests.fix_pg import fetch


def definitions(dsn: str, schema: str) -> list[tuple[Any, ...]]:
    """Indexes and constraints of the schema's tables (names and what they cover)."""
    found = fetch(
        dsn,
        "SELECT c.relname, x.conname, x.contype::text FROM pg_constraint x "
        "JOIN pg_class c ON c.oid = x.conrelid WHERE c.relnamespace = $1::text::regnamespace "
        "UNION ALL SELECT tablename, indexname, 'i' FROM pg_indexes WHERE schemaname = $1 "
        "ORDER BY 1, 2, 3",
        schema,
    )
    return [tuple(r) for r in found]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return old_and_new(tmp_path_factory.mktemp("backup"))


def test_replace_keeps_the_old_tables_and_rollback_swaps_them_back(
    sources: tuple[Path, Path], pg_dsn: str, tmp_path: Path
) -> None:
    """The replaced tables (rows, indexes, keys, identity, the view) wait in the run's
    backup schema; `rollback --run 2` swaps them back while a reader polls, which sees
    the new count, then the old one, never an empty or missing table."""
    old, new = sources
    code, stderr = finish("run", "--sqlite", str(old), "--pg", pg_dsn)
    assert code == 0, stderr
    before, shape = contents(pg_dsn), definitions(pg_dsn, "public")
    code, stderr = finish("run", "--sqlite", str(new), "--pg", pg_dsn, "--replace")
    assert code == 0, stderr
    [backup] = backups(pg_dsn)
    assert backup.endswith("_2") and len(backup.encode()) <= 63
    assert contents(pg_dsn, backup) == before  # the old copy, untouched, beside the new
    assert definitions(pg_dsn, backup) == shape
    assert len(contents(pg_dsn)["child"]) == 6_000
    [run] = fetch(pg_dsn, "SELECT backup_schema, rollback_sql FROM asyncmig.runs WHERE id = 2")
    assert run["backup_schema"] == backup
    assert 'SET SCHEMA "public"' in run["rollback_sql"] and backup in run["rollback_sql"]

    checked = run_cli("rollback", "--pg", pg_dsn, "--run", "2", "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"  note: the tables run 2 replaced are swapped back from {backup}\n" in checked.stdout
    counts: list[int] = []

    async def swap_back() -> tuple[int, str, str]:
        done = asyncio.Event()
        reader = asyncio.create_task(poll_counts(pg_dsn, done, counts))
        await asyncio.sleep(0.2)
        process = start(  # the reader is a session using the tables: forced past it
            "rollback", "--pg", pg_dsn, "--run", "2", "--backup-dir", str(tmp_path), "--force"
        )
        await asyncio.to_thread(process.wait)
        done.set()
        await reader
        out, err = process.communicate()
        return process.returncode, out, err

    code, out, err = asyncio.run(swap_back())
    assert code == 0, err
    assert f"swapped back from schema {backup}" in out
    assert set(counts) <= {6_000, 9_000}, sorted(set(counts))
    assert counts[0] == 6_000 and counts[-1] == 9_000
    assert all(c == 9_000 for c in counts[counts.index(9_000) :])
    assert contents(pg_dsn) == before and definitions(pg_dsn, "public") == shape
    assert backups(pg_dsn) == []
    assert fetch(pg_dsn, "INSERT INTO parent (name) VALUES ('next') RETURNING id")[0][0] == 3_001
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        fetch(pg_dsn, "INSERT INTO child (id, parent_id) VALUES (99999, 99999)")
    statuses = fetch(pg_dsn, "SELECT id, status, backup_schema_end FROM asyncmig.runs ORDER BY id")
    assert [tuple(r) for r in statuses] == [
        (1, "succeeded", None),
        (2, "rolled back", "restored by rollback"),
    ]
    [written] = tmp_path.glob("postgres_backup_before_rollback_*.sql")  # issue 11's backup
    assert "COPY " in written.read_text()
    fetch(pg_dsn, "DELETE FROM parent WHERE id = 3001")
    code, stderr = finish("check", "--sqlite", str(old), "--pg", pg_dsn, "--deep")
    assert code == 0, stderr


def test_no_backup_schema_and_cascade_are_reported_by_rollback(
    sources: tuple[Path, Path], pg_dsn: str, tmp_path: Path
) -> None:
    """--no-backup-schema drops the replaced tables as before; what --cascade dropped is
    named by rollback as not restorable; nothing is swapped back."""
    old, new = sources
    code, stderr = finish("run", "--sqlite", str(old), "--pg", pg_dsn)
    assert code == 0, stderr
    fetch(pg_dsn, "CREATE VIEW app_view AS SELECT id FROM tag")
    code, stderr = finish(
        "run", "--sqlite", str(new), "--pg", pg_dsn, "--replace", "--cascade", "--no-backup-schema"
    )
    assert code == 0, stderr
    assert backups(pg_dsn) == []
    [run] = fetch(pg_dsn, "SELECT backup_schema, cascade_dropped FROM asyncmig.runs WHERE id = 2")
    assert run["backup_schema"] is None and "public.app_view" in run["cascade_dropped"]
    checked = run_cli("rollback", "--pg", pg_dsn, "--run", "2", "--check", "--output", "json")
    document = valid(checked.stdout)
    assert document["not_restorable"] == ["view public.app_view"]
    assert document["swaps_back"] is None and document["safe_to_rollback"]
    process = start("rollback", "--pg", pg_dsn, "--run", "2", "--backup-dir", str(tmp_path))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "not restorable: view public.app_view (dropped with --cascade by run 2)" in out
    assert "swapped back" not in out
    assert (
        fetch(pg_dsn, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace")[
            0
        ][0]
        == 0
    )


def test_a_replace_that_leaves_a_parent_out_leaves_no_stale_view_nor_blocking_key(
    pg_dsn: str, tmp_path: Path
) -> None:
    """The second run excludes ``users`` (a profile; or the application dropped it):
    the first run's view over orders and users went on reading the old orders in the
    backup schema, and the old orders kept their foreign key onto the live users, so the
    application could not delete a user an old order named; the next run and `cleanup`
    then refused, taking the backup's objects for the application's. Rolled back, the
    old orders get their key again (NOT VALID) and the view its place."""
    source = tmp_path / "app.db"
    with sqlite3.connect(source) as conn:
        conn.executescript("""
            CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
            CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id),
                note TEXT);
            CREATE VIEW v_orders AS SELECT o.id, o.note, u.name FROM orders o
                JOIN users u ON u.id = o.user_id;
            INSERT INTO users VALUES (1, 'ann'), (2, 'bob');
            INSERT INTO orders VALUES (1, 1, 'old'), (2, 2, 'old');
        """)
    assert finish("run", "--sqlite", str(source), "--pg", pg_dsn)[0] == 0
    with sqlite3.connect(source) as conn:
        conn.execute("UPDATE orders SET note = 'new'")
    profile = tmp_path / "profile.toml"
    profile.write_text("[tables.users]\nexclude = true\n")
    code, err = finish(
        "run", "--sqlite", str(source), "--pg", pg_dsn, "--replace", "--config", str(profile)
    )
    assert code == 0, err
    [backup] = backups(pg_dsn)
    views = fetch(
        pg_dsn, "SELECT table_schema FROM information_schema.views WHERE table_name = 'v_orders'"
    )
    assert [r[0] for r in views] == [backup]  # none left in public reading old rows
    fetch(pg_dsn, "DELETE FROM public.users WHERE id = 2")  # no old row holds it now
    keys_sql = (
        "SELECT conrelid::regclass::text, confrelid::regclass::text, convalidated "
        "FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
    )
    assert fetch(pg_dsn, keys_sql) == []  # the new orders: users was not loaded
    code, err = finish("rollback", "--pg", pg_dsn, "--run", "2", "--force", "--no-backup")
    assert code == 0, err
    assert [tuple(k) for k in fetch(pg_dsn, keys_sql)] == [("orders", "users", False)]
    old = fetch(pg_dsn, "SELECT id, note, name FROM public.v_orders ORDER BY id")
    assert [tuple(r) for r in old] == [(1, "old", "ann")]  # user 2 was deleted meanwhile
    code, err = finish("run", "--sqlite", str(source), "--pg", pg_dsn, "--replace")
    assert code == 0, err
    assert finish("cleanup", "--pg", pg_dsn)[0] == 0
    assert [tuple(k) for k in fetch(pg_dsn, keys_sql)] == [("orders", "users", True)]
