"""`sync` and `--if-changed` against a real PostgreSQL, with seeded random edits.

Each test migrates (with the library, as `run` does) a small 2Truths-1Lie database (nine tables: integer and UUID-text
keys, JSON, booleans, timestamps, reals) plus a composite-key and a keyless table,
edits the SQLite file, and checks what `sync` reports against what the edits did
(computed independently, by comparing the file's rows before and after), then that
`check --deep` passes and every value equals the test oracle's expectation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest

from asyncmig.check.deep import TableCheck
from asyncmig.run import make_plan
from asyncmig.runstate import RunSettings
from asyncmig.source.sqlite import open_sync
from asyncmig.target import runlock, sync, sync_ranges
from asyncmig.target.connect import Target
from asyncmig.target.sync_ranges import Ranges, choose_ranges
from bench.edit_2truths import edit
from tests.compare import assert_all_equal
from tests.fix_cli import run_cli, valid
from tests.fix_faults import descendants, start
from tests.fix_pg import fetch_async
from tests.fix_run import migrate
from tests.fix_sync import build_source, deep_check_passes, expected_changes, rows_by_key


async def range_edges(path: Path, table: str) -> tuple[Any, Any]:
    """The first key of ``table`` and the last key of a range the sync cuts (not the last row)."""
    plan = await make_plan(RunSettings(path, Target(None, "", "none")))
    check = TableCheck(plan, plan.table(table))
    sqlite = open_sync(path)
    try:
        ranges = choose_ranges(sqlite, check)
        keys = [r[0] for r in sqlite.execute(f'SELECT id FROM "{table}" ORDER BY id')]
    finally:
        sqlite.close()
    assert ranges.kind == "int"
    ends = [k for k in keys[:-1] if Ranges.bounds(ranges, ranges.of(k, ""))[1] == k]
    return keys[0], ends[len(ends) // 2]


def sync_json(db: Path, dsn: str, *extra: str) -> dict[str, Any]:
    result = run_cli("sync", "--sqlite", str(db), "--pg", dsn, "--output", "json", *extra)
    assert result.returncode == 0, result.stderr
    return valid(result.stdout)


@pytest.mark.parametrize("seed", [1, 2])
async def test_sync_finds_every_random_edit(tmp_path: Path, pg_dsn: str, seed: int) -> None:
    """Random inserts, updates and deletes in every table, plus a deleted first row and a
    changed last row of a key range: sync reports exactly what the edits did, check --deep
    passes, and every value is what the oracle expects."""
    db = build_source(tmp_path / "app.db", seed=seed)
    await migrate(db, pg_dsn)
    first, range_end = await range_edges(db, "guess_history")
    before = rows_by_key(db)
    edit(
        db,
        0.04,
        seed,
        must=[("guess_history", "delete", first), ("guess_history", "update", range_end)],
    )
    conn = sqlite3.connect(db)
    conn.execute("UPDATE pairs SET v = v + 1 WHERE a = 3")
    conn.execute("DELETE FROM pairs WHERE b = 'k0'")
    conn.execute("INSERT INTO notes VALUES ('late note', 99)")
    conn.commit()
    conn.close()
    want = expected_changes(before, rows_by_key(db))
    assert want["guess_history"]["deleted"] and want["pairs"]["updated"] == 8

    report = sync_json(db, pg_dsn)
    got = {
        t["table"]: {k: t[k] for k in ("inserted", "updated", "deleted")} for t in report["tables"]
    }
    notes = want.pop("notes")
    assert {t: v for t, v in got.items() if t != "notes"} == want
    reloaded = next(t for t in report["tables"] if t["table"] == "notes")
    assert reloaded["reloaded"] and reloaded["inserted"] == 51 and reloaded["deleted"] == 50
    assert notes["inserted"] == 1

    deep_check_passes(db, pg_dsn)
    plan = await make_plan(RunSettings(db, Target(None, "", "none")))
    assert await assert_all_equal(db, pg_dsn, plan) == sum(len(r) for r in rows_by_key(db).values())
    conn2 = await asyncpg.connect(pg_dsn)
    try:
        row = await conn2.fetchrow(
            "SELECT id, command, status, rows_loaded, source_sha256 "
            "FROM asyncmig.runs ORDER BY id DESC LIMIT 1"
        )
        changes = await conn2.fetchval(
            "SELECT changes FROM asyncmig.run_tables WHERE run_id = $1 AND table_name = 'guesses'",
            row[0],
        )
    finally:
        await conn2.close()
    assert (row["command"], row["status"]) == ("sync", "succeeded")
    assert row["rows_loaded"] == report["changed"]
    assert row["source_sha256"] == hashlib.sha256(db.read_bytes()).hexdigest()  # begun early
    assert {k: json.loads(changes)[k] for k in ("inserted", "updated", "deleted")} == got["guesses"]


async def test_sync_of_an_unchanged_source_changes_nothing(tmp_path: Path, pg_dsn: str) -> None:
    """Right after a run, every range matches: nothing inserted, updated or deleted
    (the identical file is compared, not skipped: --if-changed is not given)."""
    db = build_source(tmp_path / "app.db")
    await migrate(db, pg_dsn)
    report = sync_json(db, pg_dsn)
    assert report["changed"] == 0 and report["since_run"] == 1
    assert all(t["differing"] == 0 and t["ranges"] > 0 for t in report["tables"])


async def migrated_then_edited(tmp_path: Path, dsn: str, *statements: str) -> Path:
    """The test source, migrated as `run` does, then changed by ``statements``."""
    db = build_source(tmp_path / "app.db")
    await migrate(db, dsn)
    conn = sqlite3.connect(db)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    return db


async def test_sync_refuses_a_changed_schema(tmp_path: Path, pg_dsn: str) -> None:
    """A column added to the source stops the sync (exit 6) with the fix, changing nothing."""
    db = await migrated_then_edited(
        tmp_path,
        pg_dsn,
        "ALTER TABLE users ADD COLUMN nickname TEXT",
        "DELETE FROM rate_limit_records WHERE id < 10",
    )
    result = run_cli("sync", "--sqlite", str(db), "--pg", pg_dsn)
    assert result.returncode == 6, result.stderr
    assert "no longer match" in result.stderr and "users" in result.stderr
    assert "run --replace" in result.stderr and "Traceback" not in result.stderr
    pg = await asyncpg.connect(pg_dsn)
    try:
        assert await pg.fetchval("SELECT count(*) FROM rate_limit_records WHERE id < 10") == 9
        await pg.execute("DROP TABLE rate_limit_records")  # the target's doing, not the source's
    finally:
        await pg.close()
    lost = run_cli("sync", "--sqlite", str(db), "--pg", pg_dsn)
    assert lost.returncode == 6, lost.stderr
    assert "rate_limit_records, which the last run loaded, is missing in PostgreSQL" in lost.stderr


async def test_sync_reuses_the_plan_and_checks_each_row_it_copies(
    tmp_path: Path, pg_dsn: str
) -> None:
    """No profile scan: the run's recorded plan is reused (same declared schema, same
    options). A changed row whose value no longer fits that plan (not a UUID, in a
    column the run's profile had proved) stops the sync (exit 5) naming it; nothing
    changes."""
    db = await migrated_then_edited(
        tmp_path, pg_dsn, "UPDATE users SET score = score + 1 WHERE id = 3"
    )
    logs = tmp_path / "logs"
    first = run_cli("sync", "--sqlite", str(db), "--pg", pg_dsn, "--log-dir", str(logs))
    assert first.returncode == 0, first.stderr
    [log_file] = logs.glob("*.log")
    events = [json.loads(line)["event"] for line in log_file.read_text().splitlines()]
    assert "plan_reused" in events and "column_planned" not in events  # no profile
    conn = sqlite3.connect(db)
    conn.execute("UPDATE guesses SET challenge_id = 'not-a-uuid' WHERE rowid = 1")
    conn.execute("DELETE FROM rate_limit_records WHERE id < 10")
    conn.commit()
    conn.close()
    result = run_cli("sync", "--sqlite", str(db), "--pg", pg_dsn)
    assert result.returncode == 5, result.stderr
    assert "guesses" in result.stderr and "challenge_id" in result.stderr
    assert "Traceback" not in result.stderr
    pg = await asyncpg.connect(pg_dsn)
    try:
        assert await pg.fetchval("SELECT count(*) FROM rate_limit_records WHERE id < 10") == 9
    finally:
        await pg.close()


async def test_a_refused_row_rolls_back_every_table(tmp_path: Path, pg_dsn: str) -> None:
    """A changed row PostgreSQL refuses (a CHECK SQLite was told to ignore) fails the sync
    (exit 4): no table changes, the history records the failure."""
    db = await migrated_then_edited(
        tmp_path,
        pg_dsn,
        "DELETE FROM rate_limit_records WHERE id < 10",
        "PRAGMA ignore_check_constraints = ON",
        "UPDATE token_balances SET balance = -5 WHERE rowid = 1",
    )
    result = run_cli("sync", "--sqlite", str(db), "--pg", pg_dsn)
    assert result.returncode == 4, result.stderr
    assert "token_balances" in result.stderr and "Traceback" not in result.stderr
    pg = await asyncpg.connect(pg_dsn)
    try:
        assert await pg.fetchval("SELECT count(*) FROM rate_limit_records WHERE id < 10") == 9
        assert await pg.fetchval("SELECT min(balance) FROM token_balances") >= 0
        status = await pg.fetchval("SELECT status FROM asyncmig.runs ORDER BY id DESC LIMIT 1")
    finally:
        await pg.close()
    assert status == "failed"


async def test_sync_needs_an_earlier_run(tmp_path: Path, pg_dsn: str) -> None:
    """A target no run loaded: one line, exit 4, naming the command to run first."""
    db = build_source(tmp_path / "app.db")
    result = run_cli("sync", "--sqlite", str(db), "--pg", pg_dsn)
    assert result.returncode == 4 and "asyncmig run" in result.stderr


async def test_if_changed_skips_only_an_identical_file(tmp_path: Path, pg_dsn: str) -> None:
    """--if-changed: the same bytes (even with a new mtime) exit 0 at once, recording
    nothing; one changed row makes the sync run; then unchanged since the sync."""
    db = build_source(tmp_path / "app.db")
    await migrate(db, pg_dsn)
    again = run_cli("run", "--sqlite", str(db), "--pg", pg_dsn, "--if-changed")
    assert again.returncode == 0 and "unchanged since run 1" in again.stdout
    os.utime(db, (1, 1))  # same content, another mtime: the SHA-256 decides
    skipped = run_cli(
        "sync", "--sqlite", str(db), "--pg", pg_dsn, "--if-changed", "--output", "json"
    )
    assert skipped.returncode == 0 and valid(skipped.stdout)["unchanged_since_run"] == 1
    conn = sqlite3.connect(db)
    conn.execute("UPDATE users SET score = score + 1 WHERE id = 3")
    conn.commit()
    conn.close()
    report = sync_json(db, pg_dsn, "--if-changed")
    assert report["changed"] == 1 and report["run_id"] == 2
    last = run_cli("sync", "--sqlite", str(db), "--pg", pg_dsn, "--if-changed")
    assert last.returncode == 0 and "unchanged since run 2" in last.stdout
    pg = await asyncpg.connect(pg_dsn)
    try:
        assert await pg.fetchval("SELECT count(*) FROM asyncmig.runs") == 2
        assert (
            await pg.fetchval("SELECT score FROM users WHERE id = 3")
            == sqlite3.connect(db).execute("SELECT score FROM users WHERE id = 3").fetchone()[0]
        )
    finally:
        await pg.close()
    profile = tmp_path / "profile.toml"  # the same file, another profile: not skipped
    profile.write_text('[tables.users.columns.score]\ntype = "numeric"\n')
    changed = run_cli(
        "run",
        "--sqlite",
        str(db),
        "--pg",
        pg_dsn,
        "--if-changed",
        "--replace",
        "--config",
        str(profile),
    )
    assert changed.returncode == 0 and "unchanged" not in changed.stdout, changed.stderr
    typed = (
        "SELECT data_type FROM information_schema.columns "
        "WHERE column_name = 'score' AND table_schema = 'public'"
    )
    assert [tuple(r) for r in await fetch_async(pg_dsn, typed)] == [("numeric",)]


async def test_worker_processes_find_the_same_changes(tmp_path: Path, pg_dsn: str) -> None:
    """The SQLite side in worker processes (as for large sources) finds exactly what the
    edits did, like the in-thread path the other tests use."""
    db = build_source(tmp_path / "app.db", seed=4)
    await migrate(db, pg_dsn)
    before = rows_by_key(db)
    edit(db, 0.03, 4)
    want = expected_changes(before, rows_by_key(db))
    settings = RunSettings(db, Target(pg_dsn, pg_dsn, "test"), jobs=2, workers="process")
    report = await sync.sync(settings)
    got = {
        t.table: {"inserted": t.inserted, "updated": t.updated, "deleted": t.deleted}
        for t in report.tables
    }
    assert got == want
    deep_check_passes(db, pg_dsn)


GROUPED_SQL = """
CREATE TABLE ints (id INTEGER PRIMARY KEY, v REAL, s TEXT);
CREATE TABLE uids (id TEXT PRIMARY KEY, n INTEGER NOT NULL, s TEXT);
CREATE TABLE words (w TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
INSERT INTO ints SELECT i, i / 8.0, 'r' || i FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO uids SELECT printf('%08x-0000-4000-8000-%012x', i * 7919, i), i, 'u' || i FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)
INSERT INTO words SELECT printf('w%05d', i), i FROM n;
"""


async def test_a_source_whose_every_row_changed_is_compared_a_group_at_a_time(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row-by-row comparison with groups of 40 rows and target fetches of 7: every
    row of an integer-keyed, a UUID-keyed (hash ranges, found by rowid) and a WITHOUT
    ROWID table (hash ranges, read again per group) updated, some deleted (the first
    among them) and some inserted. The sync reports exactly the edits and every value
    in PostgreSQL equals the source's, though no group held more than a sliver."""
    monkeypatch.setattr(sync_ranges, "GROUP_ROWS", 40)
    monkeypatch.setattr(sync_ranges, "TARGET_FETCH", 7)
    db = tmp_path / "grouped.db"
    conn = sqlite3.connect(db)
    conn.executescript(GROUPED_SQL)
    conn.close()
    await migrate(db, pg_dsn)
    before = rows_by_key(db)
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        UPDATE ints SET v = -v, s = s || '!';
        DELETE FROM ints WHERE id = 1 OR id % 97 = 0;
        INSERT INTO ints SELECT id + 10000, v, s FROM ints WHERE id % 89 = 0;
        UPDATE uids SET n = n + 1;
        DELETE FROM uids WHERE n % 61 = 0;
        INSERT INTO uids SELECT upper(substr(id, 1, 8)) || '-1111' || substr(id, 14), n, s
            FROM uids WHERE n % 53 = 0;
        UPDATE words SET n = n * 3;
        DELETE FROM words WHERE n % 71 = 0;
        INSERT INTO words SELECT w || 'x', n FROM words WHERE n % 83 = 0;
        """
    )
    conn.commit()
    conn.close()
    want = expected_changes(before, rows_by_key(db))
    assert all(v["updated"] > 1000 and v["deleted"] and v["inserted"] for v in want.values())

    report = await sync.sync(RunSettings(db, Target(pg_dsn, pg_dsn, "test")))
    got = {
        t.table: {"inserted": t.inserted, "updated": t.updated, "deleted": t.deleted}
        for t in report.tables
    }
    assert got == want
    plan = await make_plan(RunSettings(db, Target(None, "", "none")))
    assert await assert_all_equal(db, pg_dsn, plan) == sum(len(r) for r in rows_by_key(db).values())
    deep_check_passes(db, pg_dsn)
    # a WITHOUT ROWID table with a text key cannot have source marks: the report says so
    assert {t.table: t.marked for t in report.tables} == {
        "ints": True,
        "uids": True,
        "words": False,
    }
    text = sync.report_text(report, "the target")
    assert "no source marks recorded for words: the next sync compares them" in text
    assert "this sync recorded marks for the next one" not in text


def test_the_report_names_the_tables_left_without_marks() -> None:
    """ "Recorded marks for the next one" only when every table's were recorded."""

    def table(name: str, compared: str, marked: bool) -> sync.TableSync:
        return sync.TableSync(name, 0, 0, 0, 1, 0, False, 0.0, compared, marked)

    def text(*tables: sync.TableSync) -> str:
        return sync.report_text(sync.SyncReport(2, 1, "17", "public", list(tables)), "db")

    first = text(table("a", "rows", True), table("b", "rows", True))
    assert "0 of 2 table(s) compared by source marks" in first
    assert "this sync recorded marks for the next one" in first
    assert "no source marks recorded" not in first
    failed = text(table("a", "marks", True), table("b", "rows", False))
    assert "1 of 2 table(s) compared by source marks" in failed
    assert "recorded marks for the next one" not in failed
    assert "no source marks recorded for b: the next sync compares them row by row" in failed
    by_marks = text(table("a", "marks", True), table("b", "marks", True))
    assert "source marks" not in by_marks


async def table_digests(conn: asyncpg.Connection, tables: list[str]) -> dict[str, str]:
    return {
        t: await conn.fetchval(
            f"SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY r::text), '')) FROM \"{t}\" r"
        )
        for t in tables
    }


async def test_sigterm_mid_sync_leaves_every_table_as_it_was(tmp_path: Path, pg_dsn: str) -> None:
    """A real SIGTERM while the sync waits inside its transaction (on a row this test
    holds locked, after it already changed the tables before it; by source marks, the
    wait is in the one INSERT ... ON CONFLICT that updates): every table keeps
    exactly its old content, the sync exits 143 and is recorded as interrupted, and the
    next sync (no lock left behind) succeeds and passes check --deep."""
    db = build_source(tmp_path / "app.db")
    await migrate(db, pg_dsn)
    edit(db, 0.03, 6)
    conn = sqlite3.connect(db)
    user = conn.execute("SELECT user_id FROM token_balances LIMIT 1").fetchone()[0]
    conn.execute("UPDATE token_balances SET balance = balance + 1 WHERE user_id = ?", (user,))
    conn.commit()
    conn.close()
    tables = ["users", "challenges", "guesses", "guess_history", "token_balances", "notes"]
    holder = await asyncpg.connect(pg_dsn)
    before = await table_digests(holder, tables)
    tx = holder.transaction()
    await tx.start()
    await holder.execute("SELECT 1 FROM token_balances WHERE user_id = $1 FOR UPDATE", user)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ASYNCMIG_"))}
    errors = (tmp_path / "sync.err").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asyncmig",
        "sync",
        "--sqlite",
        str(db),
        "--pg",
        pg_dsn,
        "--log-dir",
        str(tmp_path),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=errors,
    )
    watcher = await asyncpg.connect(pg_dsn)  # outside a transaction: fresh activity each time
    try:
        waiting = 0
        while not waiting:  # the sync's UPDATE waits for our row lock (no timing involved)
            assert proc.returncode is None, (tmp_path / "sync.err").read_text()
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND (query LIKE 'UPDATE %token_balances%' "
                "OR query LIKE 'WITH w AS (INSERT INTO %token_balances%')"
            )
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        errors.close()
        await tx.rollback()
        await watcher.close()
    assert proc.returncode == 143, (tmp_path / "sync.err").read_text()
    assert "interrupted by SIGTERM" in (tmp_path / "sync.err").read_text()
    try:
        assert await table_digests(holder, tables) == before
        statuses = await holder.fetch("SELECT command, status FROM asyncmig.runs ORDER BY id")
    finally:
        await holder.close()
    assert tuple(statuses[0]) == ("run", "succeeded")
    assert tuple(statuses[-1]) == ("sync", "interrupted")
    assert sync_json(db, pg_dsn)["changed"] > 0
    deep_check_passes(db, pg_dsn)


def reading_worker(parent: int, db: Path, deadline: float) -> psutil.Process | None:
    """A worker process of ``parent`` (not a marks process) that has ``db`` open: one
    running its job."""
    while time.monotonic() < deadline:
        for child in descendants(parent):
            try:
                if "anyio.to_process" in child.cmdline() and any(
                    Path(f.path) == db for f in child.open_files()
                ):
                    return child
            except psutil.Error:  # it ended meanwhile
                continue
        time.sleep(0.002)
    return None


WIDE_SQL = """
CREATE TABLE readings (id INTEGER PRIMARY KEY, sensor TEXT NOT NULL, value REAL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120000)
INSERT INTO readings SELECT i, 'sensor-' || (i % 97), i / 7.0 FROM n;
"""


async def test_sigterm_while_a_worker_process_reads_the_source(tmp_path: Path, pg_dsn: str) -> None:
    """From 100,000 rows the source's side of a first sync's row-by-row comparison runs
    in worker processes; one is stopped mid-job (SIGSTOP: as one whose table takes
    minutes). A SIGTERM still ends the sync at once: exit 143, the worker killed, the
    history ``interrupted``, the table as it was. (Before, the sync waited for the
    worker's answer, SIGTERM or not.)"""
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(WIDE_SQL)
    conn.close()
    await migrate(db, pg_dsn)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE readings SET value = -1 WHERE id % 1000 = 0")
    conn.close()
    target = await asyncpg.connect(pg_dsn)
    before = await table_digests(target, ["readings"])
    proc = start("sync", "--sqlite", str(db), "--pg", pg_dsn, "--jobs", "2")
    worker = None
    try:
        worker = reading_worker(proc.pid, db.resolve(), time.monotonic() + 60)
        assert worker is not None, proc.communicate(timeout=60)[1]
        worker.send_signal(signal.SIGSTOP)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)  # a bound, not a measurement
    finally:
        if proc.returncode is None:
            proc.kill()
        if worker is not None and worker.is_running():
            worker.kill()
    assert proc.returncode == 143, stderr
    assert "interrupted by SIGTERM" in stderr and "Traceback" not in stderr, stderr
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    try:
        assert await table_digests(target, ["readings"]) == before
        last = await target.fetchrow("SELECT command, status FROM asyncmig.runs ORDER BY id DESC")
    finally:
        await target.close()
    assert tuple(last) == ("sync", "interrupted")


async def test_a_sync_waits_for_no_one_while_a_run_holds_the_schema(
    tmp_path: Path, pg_dsn: str
) -> None:
    """The schema's run lock (held here, as a run in progress would) stops a sync at once
    with exit 9: two writers never meet in one schema."""
    db = await migrated_then_edited(
        tmp_path, pg_dsn, "PRAGMA foreign_keys = ON", "DELETE FROM users WHERE id = 2"
    )
    holder = await asyncpg.connect(pg_dsn)
    try:
        await runlock.acquire(holder, "public")
        result = run_cli("sync", "--sqlite", str(db), "--pg", pg_dsn)
    finally:
        await holder.close()
    assert result.returncode == 9 and "in progress" in result.stderr
    assert sync_json(db, pg_dsn)["changed"] >= 1


async def test_a_sync_behind_an_application_transaction_stops_after_lock_timeout(
    tmp_path: Path, pg_dsn: str
) -> None:
    """An application's open transaction on a synced table (a row it updated): the sync's
    lock on the tables waits --lock-timeout, not for ever (a scheduled sync hung there),
    then fails in one line naming the session and its query (exit 4), changing nothing
    and recording the failure; once the transaction ends, the same command syncs."""
    db = await migrated_then_edited(tmp_path, pg_dsn, "UPDATE users SET name = 'x' WHERE id = 3")
    app = await asyncpg.connect(pg_dsn)
    try:
        await app.execute("SET application_name = 'the_app'")
        tx = app.transaction()
        await tx.start()
        await app.execute("UPDATE users SET name = name WHERE id = 5")
        began = time.monotonic()
        result = run_cli("sync", "--sqlite", str(db), "--pg", pg_dsn, "--lock-timeout", "1")
        waited = time.monotonic() - began
        await tx.rollback()
    finally:
        await app.close()
    assert result.returncode == 4, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "not granted within --lock-timeout" in line and "the_app" in line, line
    assert waited < 30  # it gave up; it would have waited as long as the transaction lasted
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT name FROM users WHERE id = 3") != "x"
        runs = await conn.fetch("SELECT command, status FROM asyncmig.runs ORDER BY id")
    finally:
        await conn.close()
    assert [tuple(r) for r in runs] == [("run", "succeeded"), ("sync", "failed")]
    assert sync_json(db, pg_dsn)["changed"] == 1


async def test_a_sync_whose_session_is_terminated_says_lost_connection(
    tmp_path: Path, pg_dsn: str
) -> None:
    """pg_terminate_backend of the sync's session while it waits for its lock on the
    tables: exit 4, "lost connection to PostgreSQL" (it was exit 70, "internal error:
    cannot call Transaction.__aexit__(): the underlying connection is closed"), the
    target unchanged; the same command then syncs."""
    db = await migrated_then_edited(tmp_path, pg_dsn, "UPDATE users SET name = 'x' WHERE id = 3")
    app = await asyncpg.connect(pg_dsn)
    admin = await asyncpg.connect(pg_dsn)  # outside the transaction: fresh activity rows
    try:
        tx = app.transaction()
        await tx.start()
        await app.execute("UPDATE users SET name = name WHERE id = 5")  # the sync waits
        process = start("sync", "--sqlite", str(db), "--pg", pg_dsn, "--lock-timeout", "60")
        waiting = 0
        for _ in range(600):  # its LOCK TABLE, blocked behind this transaction
            waiting = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'LOCK TABLE%'"
            )
            if waiting:
                break
            await asyncio.sleep(0.1)
        assert waiting, "the sync never waited for its lock"
        await admin.execute("SELECT pg_terminate_backend($1)", waiting)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=60)
        await tx.rollback()
    finally:
        await app.close()
        await admin.close()
    assert process.returncode == 4, stderr
    assert stderr.strip().splitlines()[-1].startswith("asyncmig: error: lost connection"), stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT name FROM users WHERE id = 3") != "x"
    finally:
        await conn.close()
    assert sync_json(db, pg_dsn)["changed"] == 1


async def test_a_sync_is_not_rolled_back_and_says_so(tmp_path: Path, pg_dsn: str) -> None:
    """`rollback --check --run N` of a sync gave made-up reasons ("recorded no checksum",
    a view "created after" it) and exit 10; --force, "the rollback script cannot be read"."""
    db = build_source(tmp_path / "app.db")
    await migrate(db, pg_dsn)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE users SET score = score + 1 WHERE id = 3")
    assert sync_json(db, pg_dsn)["run_id"] == 2
    for extra in (["--check"], ["--force", "--no-backup"]):
        refused = run_cli("rollback", "--pg", pg_dsn, "--run", "2", *extra)
        assert refused.returncode == 2, refused.stderr
        assert "run 2 is a sync: a sync is not rolled back" in refused.stderr


async def test_a_sync_killed_the_moment_it_committed_is_recorded_as_done(
    tmp_path: Path, pg_dsn: str
) -> None:
    """kill -9 right after the sync's transaction committed: its changes were in the
    target, its history row still said running, later "interrupted". The row's success
    is now part of that transaction."""
    db = await migrated_then_edited(
        tmp_path,
        pg_dsn,
        "UPDATE users SET score = score + 1",
        "DELETE FROM rate_limit_records WHERE id % 7 = 0",
    )
    process = start("sync", "--sqlite", str(db), "--pg", pg_dsn)
    pg = await asyncpg.connect(pg_dsn)
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if await pg.fetchval("SELECT count(*) FROM asyncmig.run_tables WHERE run_id = 2"):
                process.kill()  # committed: its per-table rows are visible
                break
            await asyncio.sleep(0.001)
        process.communicate(timeout=60)
        status = await pg.fetchval("SELECT status FROM asyncmig.runs WHERE id = 2")
        synced = await pg.fetchval("SELECT count(*) FROM rate_limit_records WHERE id % 7 = 0")
    finally:
        await pg.close()
    assert (status, synced) == ("succeeded", 0)
    deep_check_passes(db, pg_dsn)


async def test_a_session_reading_the_history_does_not_block_a_sync(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A dashboard reading asyncmig.run_tables in an open transaction: every sync waited
    --lock-timeout and failed, on an ALTER TABLE ... ADD COLUMN IF NOT EXISTS it ran each
    time (it locks the table even when the column is there)."""
    db = await migrated_then_edited(tmp_path, pg_dsn, "UPDATE users SET score = score + 2")
    assert sync_json(db, pg_dsn)["changed"] > 0  # the first sync adds the history's column
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE users SET score = score + 3")
    reader = await asyncpg.connect(pg_dsn)
    try:
        await reader.execute("BEGIN")
        await reader.fetchval("SELECT count(*) FROM asyncmig.run_tables")
        result = await asyncio.to_thread(
            run_cli, "sync", "--sqlite", str(db), "--pg", pg_dsn, "--lock-timeout", "2"
        )
    finally:
        await reader.close()
    assert result.returncode == 0, result.stderr


async def test_a_sync_never_lets_postgresql_cascade_onto_rows_sqlite_keeps(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Parents deleted in SQLite without its foreign keys enforced leave their children
    as orphans; the sync's delete of the parents made PostgreSQL's ON DELETE CASCADE take
    those children too: 43 rows gone from the target, exit 0. The sync now refuses
    (exit 6, nothing changed); with SQLite's foreign keys on, the source loses them too
    and the sync goes through."""
    db = await migrated_then_edited(tmp_path, pg_dsn)
    children = "SELECT count(*) FROM guess_history"
    before = (await fetch_async(pg_dsn, children))[0][0]
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM users WHERE id % 7 = 0")  # foreign keys off: orphans
    refused = run_cli("sync", "--sqlite", str(db), "--pg", pg_dsn)
    assert refused.returncode == 6, refused.stderr
    assert "ON DELETE CASCADE remove 43 row(s) of guess_history" in refused.stderr
    assert (await fetch_async(pg_dsn, children))[0][0] == before


async def test_a_sync_follows_sqlite_s_own_cascade(tmp_path: Path, pg_dsn: str) -> None:
    db = await migrated_then_edited(tmp_path, pg_dsn)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("DELETE FROM users WHERE id % 7 = 0")  # SQLite cascades to the children
    conn.commit()
    conn.close()
    report = sync_json(db, pg_dsn)
    assert report["changed"] > 0
    deep_check_passes(db, pg_dsn)


TEAMS = """
CREATE TABLE team (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE player (id INTEGER PRIMARY KEY, name TEXT,
    team_id INTEGER REFERENCES team(id) ON DELETE SET NULL);
CREATE TABLE badge (id INTEGER PRIMARY KEY, label TEXT,
    team_id INTEGER DEFAULT 1 REFERENCES team(id) ON DELETE SET DEFAULT);
"""


def teams(path: Path) -> Path:
    """Players in teams 1-5 (ON DELETE SET NULL), badges of teams 6-10 (SET DEFAULT)."""
    with sqlite3.connect(path) as conn:
        conn.executescript(TEAMS)
        conn.executemany("INSERT INTO team VALUES (?, ?)", [(i, f"t{i}") for i in range(1, 11)])
        conn.executemany(
            "INSERT INTO player VALUES (?, ?, ?)", [(i, f"p{i}", i % 5 + 1) for i in range(100)]
        )
        conn.executemany(
            "INSERT INTO badge VALUES (?, ?, ?)", [(i, f"b{i}", i % 5 + 6) for i in range(50)]
        )
    return path


@pytest.mark.parametrize(
    ("team", "said"),
    [
        (3, "ON DELETE SET NULL change 20 row(s) of player"),
        (8, "ON DELETE SET DEFAULT change 10 row(s) of badge"),
    ],
)
async def test_a_sync_never_lets_postgresql_set_null_or_default_on_rows_sqlite_keeps(
    tmp_path: Path, pg_dsn: str, team: int, said: str
) -> None:
    """A team deleted in SQLite without its foreign keys enforced leaves its players and
    badges as orphans, their team ids as they were; the sync's delete of the team made
    PostgreSQL's ON DELETE SET NULL / SET DEFAULT rewrite them, exit 0. The sync now
    refuses (exit 6, nothing changed); with SQLite's foreign keys on, SQLite rewrites
    them itself, and the sync goes through, every value as SQLite's."""
    db = teams(tmp_path / "app.db")
    await migrate(db, pg_dsn)
    everything = "SELECT (SELECT array_agg((id, team_id) ORDER BY id) FROM {})::text"
    before = {t: await fetch_async(pg_dsn, everything.format(t)) for t in ("player", "badge")}
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM team WHERE id = ?", (team,))  # foreign keys off: orphans
    refused = run_cli("sync", "--sqlite", str(db), "--pg", pg_dsn)
    assert refused.returncode == 6, refused.stderr
    assert said in refused.stderr
    assert (await fetch_async(pg_dsn, "SELECT count(*) FROM team"))[0][0] == 10
    for table, rows in before.items():
        assert await fetch_async(pg_dsn, everything.format(table)) == rows

    conn = sqlite3.connect(db)  # as the application would, its foreign keys on (set
    conn.execute("PRAGMA foreign_keys = ON")  # outside a transaction, or it does nothing)
    conn.execute("INSERT INTO team VALUES (?, ?)", (team, f"t{team}"))
    conn.execute("DELETE FROM team WHERE id = ?", (team,))
    conn.commit()
    conn.close()
    report = sync_json(db, pg_dsn)
    assert report["changed"] > 0
    with sqlite3.connect(db) as conn:
        source = {
            t: conn.execute(f"SELECT id, team_id FROM {t} ORDER BY id").fetchall()
            for t in ("player", "badge")
        }
    for table, rows in source.items():
        found = await fetch_async(pg_dsn, f"SELECT id, team_id FROM {table} ORDER BY id")
        assert [tuple(r) for r in found] == rows
    deep_check_passes(db, pg_dsn)
