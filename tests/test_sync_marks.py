"""`sync` by source marks, against a real PostgreSQL and real SQLite files.

A run with --sync-marks, and every sync, records a digest per small key range of every
source table; the next sync copies only
the ranges whose source rows changed, when the target is as the last load left it.
These tests check that it finds exactly what a full comparison finds (the same
source, synced both ways into two schemas), that a table someone wrote in PostgreSQL
is compared in full (and put right), and that the marks tell storage classes apart.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
import structlog.testing

from asyncmig.cli import signals
from asyncmig.errors import SourceError
from asyncmig.runstate import RunSettings
from asyncmig.target import cells, marks, pages, sync
from asyncmig.target.connect import Target
from bench.edit_2truths import edit
from tests.fix_cli import cli_environment, run_cli, valid
from tests.fix_pg import fetch_async
from tests.fix_run import from_profile, migrate
from tests.fix_sync import build_source, deep_check_passes, expected_changes, rows_by_key
from tests.test_sync import table_digests


def sync_json(db: Path, dsn: str, schema: str, *extra: str) -> dict[str, Any]:
    result = run_cli(
        "sync", "--sqlite", str(db), "--pg", dsn, "--schema", schema, "--output", "json", *extra
    )
    assert result.returncode == 0, result.stderr
    return valid(result.stdout)


def changes_of(report: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        t["table"]: {k: t[k] for k in ("inserted", "updated", "deleted")} for t in report["tables"]
    }


def compared(report: dict[str, Any]) -> dict[str, str]:
    return {t["table"]: t["compared"] for t in report["tables"]}


def deep_check_schema(db: Path, dsn: str, schema: str) -> None:
    result = run_cli("check", "--sqlite", str(db), "--pg", dsn, "--schema", schema, "--deep")
    assert result.returncode == 0, result.stdout + result.stderr


def apply(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


async def test_marks_and_a_full_comparison_find_the_same_changes(
    tmp_path: Path, pg_dsn: str
) -> None:
    """One source migrated into two schemas, edited at random (and a first row deleted, a
    text key changed in place, a row moved to a new key), then synced by marks into one
    and row by row into the other: the same counts, equal to the edits, both pass
    check --deep."""
    db = build_source(tmp_path / "app.db", seed=5)
    apply(
        db,
        "CREATE TABLE wr (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID",
        "CREATE TABLE wi (id INTEGER PRIMARY KEY, v TEXT) WITHOUT ROWID",
        "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 200) "
        "INSERT INTO wr SELECT 'k' || v, v FROM n",
        "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 200) "
        "INSERT INTO wi SELECT v * 3, 'v' || v FROM n",
    )
    await migrate(db, pg_dsn, schema="by_marks", sync_marks=True)
    await migrate(db, pg_dsn, schema="in_full")
    before = rows_by_key(db)
    edit(db, 0.05, 5)
    apply(
        db,
        "DELETE FROM guess_history WHERE id = (SELECT min(id) FROM guess_history)",
        "UPDATE guesses SET guess_id = 'f0000000-0000-4000-8000-00000000000f' "
        "WHERE rowid = (SELECT max(rowid) FROM guesses)",
        "UPDATE users SET id = 900000 WHERE id = (SELECT max(id) FROM users) "
        "AND id NOT IN (SELECT user_id FROM guess_history) "
        "AND id NOT IN (SELECT user_id FROM user_reports)",
        "UPDATE pairs SET v = v * 2 WHERE a = 7",
        "DELETE FROM pairs WHERE b IN ('k1', 'k2')",  # a composite key: found by anti-join
        "UPDATE wr SET v = -v WHERE k IN ('k5', 'k50')",
        "DELETE FROM wr WHERE k = 'k7'",
        "DELETE FROM wi WHERE id IN (3, 300)",
        "UPDATE wi SET v = 'changed' WHERE id = 30",
        "INSERT INTO wi VALUES (1000, 'new')",
    )
    want = expected_changes(before, rows_by_key(db))
    fast = sync_json(db, pg_dsn, "by_marks")
    full = sync_json(db, pg_dsn, "in_full", "--full-compare")
    ways = compared(fast)
    assert ways.pop("wr") == "rows"  # WITHOUT ROWID, a text key: no marks
    assert set(ways.values()) == {"marks"}
    assert set(compared(full).values()) == {"rows"}
    assert changes_of(fast)["wi"] == {"inserted": 1, "updated": 1, "deleted": 2}
    assert changes_of(fast)["pairs"]["deleted"] == 2
    keyed = {t: v for t, v in want.items() if t != "notes"}  # keyless: reloaded whole
    assert {t: v for t, v in changes_of(fast).items() if t != "notes"} == keyed
    assert changes_of(full) == changes_of(fast)
    assert want["guesses"]["inserted"] >= 1 and want["guess_history"]["deleted"] >= 1
    deep_check_schema(db, pg_dsn, "by_marks")
    deep_check_schema(db, pg_dsn, "in_full")


async def test_a_second_sync_compares_with_the_first_syncs_marks(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A run without --sync-marks records none: the first sync compares every row and
    records them; each later sync compares with the newest marks (only those kept)."""
    db = build_source(tmp_path / "app.db", seed=6)
    await migrate(db, pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM asyncmig.source_marks") == 0
        for seed, way in ((7, "rows"), (8, "marks"), (9, "marks")):
            before = rows_by_key(db)
            edit(db, 0.03, seed)
            want = expected_changes(before, rows_by_key(db))
            report = sync_json(db, pg_dsn, "public")
            assert set(compared(report).values()) == {way}
            assert {t: v for t, v in changes_of(report).items() if t != "notes"} == {
                t: v for t, v in want.items() if t != "notes"
            }
            assert await chains(conn, report["run_id"]) == await kept_runs(conn)
    finally:
        await conn.close()
    deep_check_passes(db, pg_dsn)


async def chains(conn: asyncpg.Connection, run_id: int) -> dict[str, list[int]]:
    """Per table, the runs whose marks make run ``run_id``'s: its newest whole marks'
    run, then each delta's, checked to be over the run before it."""
    out: dict[str, list[int]] = {}
    for (table,) in await conn.fetch(
        "SELECT table_name FROM asyncmig.source_marks WHERE run_id = $1 AND part = 0", run_id
    ):
        run, chain = run_id, list[int]()
        while run is not None:
            chain.insert(0, run)
            base, kind = await conn.fetchrow(
                "SELECT base_run, kind FROM asyncmig.source_marks "
                "WHERE run_id = $1 AND table_name = $2 AND part = 0",
                run,
                table,
            )
            assert kind == (cells.CELLS if base is None else marks.DELTA + cells.CELLS)
            run = base
        out[table] = chain
    return out


async def kept_runs(conn: asyncpg.Connection) -> dict[str, list[int]]:
    rows = await conn.fetch(
        "SELECT table_name, array_agg(DISTINCT run_id ORDER BY run_id) "
        "FROM asyncmig.source_marks GROUP BY table_name"
    )
    return {r[0]: list(r[1]) for r in rows}


def recomputed(db: Path, table: str, mode: str, shift: int, key_size: int) -> marks.Marks:
    """The table's marks computed from every cell of the source now."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        key = None
        if mode == "int":
            key = next(r[1] for r in conn.execute(f'PRAGMA table_info("{table}")') if r[5])
        form = {marks.UUID_KEY_BYTES: "uuid", marks.KEY_HASH_BYTES: "text"}.get(key_size)
        request = marks.Request(table, table, mode, key, shift, form)
        leaves = pages.read(conn, db, table)
        assert leaves is not None
        found = marks.from_cells(conn, db, request, leaves)
        assert found is not None
        return found
    finally:
        conn.close()


async def test_nightly_syncs_store_what_changed_until_a_quarter_then_the_whole_marks(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Night after night (2 % of the rows edited each time), a sync by marks stores
    per table only the ranges that changed, over the marks it compared with; once
    those deltas hold a quarter of the table's ranges it stores the whole marks again,
    and the runs before them are forgotten. Each night the marks a run leaves (whole
    marks with its deltas applied) are exactly those computed from every cell of the
    source, and the sync finds exactly the edits. A chain whose whole marks are gone
    is no marks: that table is compared row by row, exactly, and marked whole."""
    db = build_source(tmp_path / "app.db", seed=21)
    await migrate(db, pg_dsn, sync_marks=True)
    conn = await asyncpg.connect(pg_dsn)
    seen: dict[str, list[int]] = {}  # per table, the length of its chain night by night
    try:
        for night in range(6):
            before = rows_by_key(db)
            edit(db, 0.02, 30 + night)
            want = expected_changes(before, rows_by_key(db))
            report = sync_json(db, pg_dsn, "public")
            assert set(compared(report).values()) == {"marks"}
            assert {t: v for t, v in changes_of(report).items() if t != "notes"} == {
                t: v for t, v in want.items() if t != "notes"
            }
            run_id = report["run_id"]
            found = await chains(conn, run_id)
            assert found == await kept_runs(conn)
            for table, chain in found.items():
                seen.setdefault(table, []).append(len(chain))
                mode, shift, size = await conn.fetchrow(
                    "SELECT mode, shift, key_size FROM asyncmig.source_marks "
                    "WHERE run_id = $1 AND table_name = $2 AND part = 0",
                    run_id,
                    table,
                )
                stored = await marks.recorded(conn, run_id, table)
                assert stored is not None and stored.deltas == len(chain) - 1
                assert stored.entries <= marks.DELTA_SHARE * len(stored.marks.ranges)
                want_marks = recomputed(db, table, mode, shift, size)
                assert (list(stored.marks.ranges), stored.marks.digests) == (
                    list(want_marks.ranges),
                    want_marks.digests,
                )
                assert stored.marks.key_hashes == want_marks.key_hashes
                assert stored.marks.rows == want_marks.rows
        for lengths in seen.values():  # whole marks (1), or a delta over the night before
            assert all(now in (1, then + 1) for then, now in pairwise([1, *lengths]))
        assert any(max(lengths) >= 3 for lengths in seen.values())
        assert any(  # stored whole again once the deltas held a quarter
            then > 1 and now == 1 for lengths in seen.values() for then, now in pairwise(lengths)
        )
        while len((await chains(conn, run_id))["guesses"]) < 2:
            edit(db, 0.01, 50 + run_id)
            run_id = sync_json(db, pg_dsn, "public")["run_id"]
        base = (await chains(conn, run_id))["guesses"][0]
        await conn.execute(
            "DELETE FROM asyncmig.source_marks WHERE run_id = $1 AND table_name = 'guesses'",
            base,
        )
        before = rows_by_key(db)
        edit(db, 0.02, 60)
        want = expected_changes(before, rows_by_key(db))
        report = sync_json(db, pg_dsn, "public")
        ways = compared(report)
        assert ways.pop("guesses") == "rows"
        assert set(ways.values()) == {"marks"}
        assert changes_of(report)["guesses"] == want["guesses"]
        assert (await chains(conn, report["run_id"]))["guesses"] == [report["run_id"]]
    finally:
        await conn.close()
    deep_check_passes(db, pg_dsn)


async def test_a_table_written_in_postgresql_is_compared_in_full(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Someone updates a row of `guesses` and deletes one of `token_balances` in the
    target: those two tables are compared row by row (the marks cannot know), the others
    by marks, and the sync puts both back to the source's rows."""
    db = build_source(tmp_path / "app.db", seed=9)
    await migrate(db, pg_dsn, sync_marks=True)
    edit(db, 0.02, 9)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            "UPDATE guesses SET response_time_seconds = -1 "
            "WHERE guess_id = (SELECT guess_id FROM guesses ORDER BY guess_id LIMIT 1)"
        )
        await conn.execute(
            "DELETE FROM token_balances WHERE user_id = (SELECT min(user_id) FROM token_balances)"
        )
    finally:
        await conn.close()
    report = sync_json(db, pg_dsn, "public")
    ways = compared(report)
    assert ways["guesses"] == ways["token_balances"] == "rows"
    assert {w for t, w in ways.items() if t not in ("guesses", "token_balances")} == {"marks"}
    deep_check_passes(db, pg_dsn)


async def test_a_sync_after_an_unchanged_source_copies_nothing(tmp_path: Path, pg_dsn: str) -> None:
    """No range differs: nothing is read, nothing changes, every table by marks."""
    db = build_source(tmp_path / "app.db", seed=10)
    await migrate(db, pg_dsn, sync_marks=True)
    report = sync_json(db, pg_dsn, "public")
    assert report["changed"] == 0
    assert all(t["differing"] == 0 and t["compared"] == "marks" for t in report["tables"])


def test_marks_tell_storage_classes_apart(tmp_path: Path) -> None:
    """The same text, as TEXT, BLOB, INTEGER and REAL, and -0.0 against 0.0: every one
    a different mark (a change SQLite's comparison or a text rendering would miss),
    whether the rows are read as SQL values or their cells parsed from the pages."""
    values: list[object] = ["1", b"1", 1, 1.0, 0.0, -0.0]
    digests: dict[str, set[bytes]] = {marks.ROWS: set(), cells.CELLS: set()}
    for number, value in enumerate(values):
        path = tmp_path / f"v{number}.db"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v)")
        conn.execute("INSERT INTO t VALUES (1, ?)", (value,))
        conn.commit()
        conn.close()
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        request = marks.Request("t", "t", "int", "id")
        try:
            leaves = pages.read(source, path, "t")
            assert leaves is not None
            ways = [marks.compute(source, request), marks.from_cells(source, path, request, leaves)]
        finally:
            source.close()
        for found in ways:
            assert found is not None and list(found.ranges) == [0] and found.rows == 1
            digests[found.kind].add(found.digest(0))
    assert [len(d) for d in digests.values()] == [len(values)] * 2


def test_a_range_differs_when_one_row_changes_and_no_other(tmp_path: Path) -> None:
    """Marks of two copies of a 1,000-row table, one row changed in the copy: exactly the
    range holding that row differs; and a deleted last row is its range too."""
    path = tmp_path / "a.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, f"n{i}", i / 3) for i in range(1000)])
    conn.commit()
    conn.close()
    copy = tmp_path / "b.db"
    shutil.copy(path, copy)
    apply(copy, "UPDATE t SET name = 'changed' WHERE id = 517", "DELETE FROM t WHERE id = 999")

    def marks_of(file: Path, shift: int | None = None) -> marks.Marks:
        source = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
        try:
            return marks.compute(source, marks.Request("t", "t", "int", "id", shift))
        finally:
            source.close()

    old = marks_of(path)
    new = marks_of(copy, old.shift)
    assert 1 << old.shift == marks.ROWS_PER_MARK  # keys 0-999: ROWS_PER_MARK rows a range
    assert old.differing(new) == [517 >> old.shift, 999 >> old.shift]


def test_recorded_marks_keep_the_range_size_they_were_made_with(tmp_path: Path) -> None:
    """A target marked by an older asyncmig (ranges of another size) is compared by its
    recorded shift: a change of ROWS_PER_MARK must not turn the next sync into a
    row-by-row comparison. A table whose recorded mode no longer fits is marked anew."""
    from asyncmig.plan.builder import build_plan

    path = tmp_path / "a.db"
    apply(
        path,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)",
        "CREATE TABLE u (code TEXT PRIMARY KEY, n INTEGER)",
        "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
        "INSERT INTO u VALUES ('x', 1)",
    )
    plan = build_plan(path)
    fresh = {r.table: r for r in marks.requests(plan)}
    assert fresh["t"].shift is None and fresh["u"].shift is None  # chosen from the rows
    kept = {r.table: r for r in marks.requests(plan, {"t": ("int", 5), "u": ("int", 3)})}
    assert (kept["t"].mode, kept["t"].shift) == ("int", 5)
    assert (kept["u"].mode, kept["u"].shift) == ("rowid", None)


async def test_rows_the_load_rejected_stay_out_of_a_sync_by_marks(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A row the run rejected (text in a declared INTEGER column) stays out: the sync by
    marks copies the other changed rows of its range, counts the source's rows less the
    rejected one, and check --deep (which allows for the reject store) passes."""
    db = tmp_path / "scores.db"
    apply(
        db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, score INTEGER, name TEXT)",
        "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 300) "
        "INSERT INTO t SELECT v, v * 10, 'n' || v FROM n",
        "UPDATE t SET score = 'n/a' WHERE id = 17",
    )
    report = await migrate(db, pg_dsn, sync_marks=True, rejects_dir=tmp_path / "rejects")
    assert report.rejected == 1
    apply(
        db,
        "UPDATE t SET name = 'changed' WHERE id IN (16, 18)",  # the rejected row's range
        "DELETE FROM t WHERE id = 200",
        "INSERT INTO t VALUES (301, 3010, 'new')",
    )
    synced = sync_json(db, pg_dsn, "public")
    assert compared(synced) == {"t": "marks"}
    assert changes_of(synced) == {"t": {"inserted": 1, "updated": 2, "deleted": 1}}
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM t") == 299
        assert await conn.fetchval("SELECT count(*) FROM t WHERE id = 17") == 0
        assert await conn.fetchval("SELECT name FROM t WHERE id = 18") == "changed"
    finally:
        await conn.close()
    deep_check_passes(db, pg_dsn)


async def test_a_vacuumed_source_renumbers_rowids_and_nothing_else_changes(
    tmp_path: Path, pg_dsn: str
) -> None:
    """VACUUM renumbers the rowids of tables without an integer key: every one of their
    ranges differs, every row is a candidate, and the sync still finds only the rows
    really deleted (nothing updated, nothing inserted)."""
    db = build_source(tmp_path / "app.db", seed=11)
    await migrate(db, pg_dsn, sync_marks=True)
    before = rows_by_key(db)
    apply(db, "DELETE FROM guesses WHERE rowid % 50 = 0")
    conn = sqlite3.connect(db)
    conn.execute("VACUUM")
    conn.close()
    want = expected_changes(before, rows_by_key(db))
    report = sync_json(db, pg_dsn, "public")
    assert changes_of(report)["guesses"] == want["guesses"]
    assert want["guesses"]["deleted"] > 0 and want["guesses"]["updated"] == 0
    assert compared(report)["guesses"] == "marks"
    deep_check_passes(db, pg_dsn)


async def test_deleted_uuid_keys_go_by_their_bytes_and_older_marks_are_marked_anew(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A UUID key is kept in the marks as its 16 bytes: a deleted row whose key the
    source spelled in upper case is deleted by the key it was loaded as. Marks kept
    before key sizes were recorded (8 bytes of MD5 per key) are not merged with new
    ones: that table is marked whole and compared row by row once, then by marks."""
    db = build_source(tmp_path / "app.db", seed=11)
    shouted = "ABCDEF01-2345-4678-89AB-CDEF01234567"
    conn = sqlite3.connect(db)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(guesses)")]
    values = ", ".join("?" if c == "guess_id" else c for c in columns)
    conn.execute(
        f"INSERT INTO guesses SELECT {values} FROM guesses ORDER BY rowid LIMIT 1", (shouted,)
    )
    conn.commit()
    conn.close()
    await migrate(db, pg_dsn, sync_marks=True)
    pg = await asyncpg.connect(pg_dsn)
    try:
        assert (
            await pg.fetchval(
                "SELECT count(*) FROM guesses WHERE guess_id = $1::uuid", shouted.lower()
            )
            == 1
        )
        sizes = dict(await pg.fetch("SELECT table_name, key_size FROM asyncmig.source_marks"))
        assert sizes["guesses"] == marks.UUID_KEY_BYTES and sizes["users"] == 0
        await pg.execute(  # as an earlier version kept them: 8 bytes a key, no size
            "UPDATE asyncmig.source_marks SET key_size = NULL, "
            "key_hashes = substr(key_hashes, 1, length(key_hashes) / 2) "
            "WHERE table_name = 'token_transactions'"
        )
        before = rows_by_key(db)
        apply(db, f"DELETE FROM guesses WHERE guess_id = '{shouted}'")
        edit(db, 0.03, 12)
        want = expected_changes(before, rows_by_key(db))
        report = sync_json(db, pg_dsn, "public")
        ways = compared(report)
        assert ways.pop("token_transactions") == "rows"
        assert set(ways.values()) == {"marks"}
        assert {t: v for t, v in changes_of(report).items() if t != "notes"} == {
            t: v for t, v in want.items() if t != "notes"
        }
        assert (
            await pg.fetchval(
                "SELECT count(*) FROM guesses WHERE guess_id = $1::uuid", shouted.lower()
            )
            == 0
        )
        deep_check_passes(db, pg_dsn)
        edit(db, 0.03, 13)
        assert set(compared(sync_json(db, pg_dsn, "public")).values()) == {"marks"}
    finally:
        await pg.close()
    deep_check_passes(db, pg_dsn)


def _marks_children(parent: int) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(parent), "-f", "asyncmig.target.marks"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [int(pid) for pid in found.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def _kill_once_marks_started(db: Path, dsn: str) -> list[int]:
    """Start a sync, SIGKILL it once its two marks processes exist: their pids."""
    sync = subprocess.Popen(
        [sys.executable, "-m", "asyncmig", "sync", "--sqlite", str(db), "--pg", dsn],
        env=cli_environment(None),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        children: list[int] = []
        deadline = time.monotonic() + 30
        while len(children) < 2 and sync.poll() is None and time.monotonic() < deadline:
            children = _marks_children(sync.pid)
            time.sleep(0.005)
        return children
    finally:
        sync.kill()
        sync.wait()


def _ended(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(map(_alive, pids))


class _Unreapable:
    """A child whose end never comes (as one a tracer holds after its kill)."""

    pid = 4242

    async def aclose(self) -> None:
        await anyio.sleep(3600)


async def test_a_child_that_cannot_be_reaped_is_left_after_a_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Waiting for a killed marks process is shielded (a cancelled sync still reaps
    it) but bounded: a SIGTERM's cleanup never waits for a child that does not end."""
    monkeypatch.setattr(marks, "REAP_SECONDS", 0.2)
    with anyio.fail_after(10):
        with anyio.CancelScope() as scope:
            scope.cancel()  # as a SIGTERM cancels the sync
            await marks._reaped(_Unreapable())  # type: ignore[arg-type]


async def test_marks_processes_started_early_end_with_a_killed_sync(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A sync starts its marks processes before it knows their work (they wait on
    stdin): killed with SIGKILL then, it leaves none behind (they read the end of
    their input and exit)."""
    db = build_source(tmp_path / "app.db", seed=14)
    await migrate(db, pg_dsn, sync_marks=True)
    children = _kill_once_marks_started(db, pg_dsn)
    assert len(children) == 2, "the sync started no marks processes"
    assert _ended(children, 15)


SYNC_BACKENDS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> ALL($1::int[])"""
READER_WAITING = """
SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'
AND query LIKE 'SELECT table_name, mode, shift%'"""


async def _until(
    watcher: asyncpg.Connection,
    proc: asyncio.subprocess.Process,
    query: str,
    ours: list[int] | None,
    want: int | None = None,
) -> Any:
    """``query``'s value once it is true (with ``want``: at least ``want``), the sync
    still running; a failure naming what every backend was doing after 60 s."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.returncode is None, f"the sync ended early ({proc.returncode})"
        found = await (watcher.fetchval(query, ours) if ours else watcher.fetchval(query))
        if found and (want is None or found >= want):
            return found
        await asyncio.sleep(0.01)
    activity = await watcher.fetch(
        "SELECT pid, state, wait_event_type, left(query, 80) AS q FROM pg_stat_activity "
        "WHERE datname = current_database()"
    )
    pytest.fail(f"not seen in 60 s: {query.split()[-1]!r}; backends: {[dict(r) for r in activity]}")


async def test_the_reader_connection_terminated_leaves_every_table_as_it_was(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A sync by marks makes the next table ready on a second connection. Its backend
    terminated mid-sync (caught reading the old marks, waiting behind a lock this test
    takes once that connection is open): the sync fails in one line,
    every table keeps its content, and the next sync succeeds."""
    db = build_source(tmp_path / "app.db", seed=15)
    await migrate(db, pg_dsn, sync_marks=True)
    edit(db, 0.03, 15)
    holder = await asyncpg.connect(pg_dsn)
    watcher = await asyncpg.connect(pg_dsn)
    ours = [holder.get_server_pid(), watcher.get_server_pid()]
    tables = ["users", "challenges", "guesses", "guess_history", "token_balances"]
    before = await table_digests(holder, tables)
    errors = (tmp_path / "sync.err").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "asyncmig", "sync", "--sqlite", str(db), "--pg", pg_dsn),
        *("--log-dir", str(tmp_path)),
        env=cli_environment(None),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=errors,
    )
    tx = holder.transaction()
    await tx.start()
    queued = None
    try:
        # the reader and the writer are open (the sync's third and second connections):
        # the main connection has read what it reads of the marks, the reader not yet
        await _until(watcher, proc, SYNC_BACKENDS, ours, want=3)
        # held, or queued behind the sync's transaction: either way the reader's next
        # read of the marks waits (no table is made ready without one)
        queued = asyncio.ensure_future(
            holder.execute("LOCK TABLE asyncmig.source_marks IN ACCESS EXCLUSIVE MODE")
        )
        reader = await _until(watcher, proc, READER_WAITING, None)
        assert await watcher.fetchval("SELECT pg_terminate_backend($1)", reader)
        # granted once the failed sync's transaction has ended; held on, it would keep
        # the sync's own cleanup (forgetting its marks) waiting until its time box
        await asyncio.wait_for(queued, 60)
        await tx.rollback()
        await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        errors.close()
        if queued is not None and not queued.done():
            await asyncio.wait_for(queued, 60)  # granted once the sync's backends are gone
        if holder.is_in_transaction():
            await tx.rollback()
        await watcher.close()
    stderr = (tmp_path / "sync.err").read_text()
    assert proc.returncode == 4, stderr
    assert "Traceback" not in stderr
    # the server's own words when they are behind asyncpg's ("connection was closed")
    assert "lost connection to PostgreSQL (" in stderr and len(stderr.strip().splitlines()) == 1
    try:
        assert await table_digests(holder, tables) == before
        status = await holder.fetchval("SELECT status FROM asyncmig.runs ORDER BY id DESC LIMIT 1")
    finally:
        await holder.close()
    assert status == "failed"
    assert sync_json(db, pg_dsn, "public")["changed"] > 0
    deep_check_passes(db, pg_dsn)


async def test_a_table_whose_every_row_changed_streams_through_in_batches(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Every row of a 12,000-row table changed (more than two batches of candidates,
    one range chunk): the sync by marks streams them through (never the table whole)
    and updates exactly those rows, with the values the load would have written."""
    db = tmp_path / "wide.db"
    apply(
        db,
        "CREATE TABLE big (id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, v REAL)",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000) "
        "INSERT INTO big SELECT i, printf('%08x-0000-4000-8000-%012x', i, i), i / 4.0 FROM n",
    )
    await migrate(db, pg_dsn, sync_marks=True)
    apply(db, "UPDATE big SET v = -v - 1")
    report = sync_json(db, pg_dsn, "public")
    assert compared(report) == {"big": "marks"}
    assert changes_of(report)["big"] == {"inserted": 0, "updated": 12000, "deleted": 0}
    rows = await fetch_async(pg_dsn, "SELECT id, v FROM big ORDER BY id")
    assert [(r["id"], r["v"]) for r in rows] == [(i, -i / 4.0 - 1) for i in range(1, 12001)]
    deep_check_schema(db, pg_dsn, "public")


async def test_rows_of_hundreds_of_scattered_ranges_are_read_in_few_statements(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Every 7th row of a 3,000-row table updated, one deleted and one inserted past the
    end: some 430 separate spans of ranges, read 64 to a statement (the last filled with
    empty spans). Exactly those rows change, with the load's values."""
    db = tmp_path / "scattered.db"
    apply(
        db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT NOT NULL, v REAL)",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
        "INSERT INTO t SELECT i, 'row ' || i, i / 4.0 FROM n",
    )
    await migrate(db, pg_dsn, sync_marks=True)
    apply(
        db,
        "UPDATE t SET v = -v WHERE id % 7 = 0",
        "DELETE FROM t WHERE id = 1000",
        "INSERT INTO t VALUES (5000, 'new', 0.5)",
    )
    report = sync_json(db, pg_dsn, "public")
    assert compared(report) == {"t": "marks"}
    assert changes_of(report)["t"] == {"inserted": 1, "updated": 428, "deleted": 1}
    rows = await fetch_async(pg_dsn, "SELECT id, s, v FROM t ORDER BY id")
    want = [(i, f"row {i}", -i / 4.0 if i % 7 == 0 else i / 4.0) for i in range(1, 3001)]
    want = [r for r in want if r[0] != 1000] + [(5000, "new", 0.5)]
    assert [tuple(r) for r in rows] == want


async def test_marks_of_rows_kept_by_an_earlier_version_are_marked_anew_from_cells(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Marks whose digests are of pickled rows (as kept before marks were read from the
    leaf pages' cells, with no kind recorded) are never compared with digests of cells:
    that table is marked whole from its cells and compared row by row once, exactly,
    then by marks like the others."""
    db = build_source(tmp_path / "app.db", seed=14)
    await migrate(db, pg_dsn, sync_marks=True)
    pg = await asyncpg.connect(pg_dsn)
    try:
        run_id, shift, size, kept = await pg.fetchrow(
            "SELECT run_id, shift, key_size, pages FROM asyncmig.source_marks "
            "WHERE table_name = 'guesses' AND part = 0"
        )
        assert size == marks.UUID_KEY_BYTES
        assert {r[0] for r in await pg.fetch("SELECT kind FROM asyncmig.source_marks")} == {
            cells.CELLS
        }
        source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = marks.compute(
                source, marks.Request("guesses", "guesses", "rowid", None, shift, "uuid")
            )
        finally:
            source.close()
        await pg.execute("DELETE FROM asyncmig.source_marks WHERE table_name = 'guesses'")
        await marks.store(pg, run_id, rows, bytes(kept))
        await pg.execute(
            "UPDATE asyncmig.source_marks SET kind = NULL WHERE table_name = 'guesses'"
        )
        for seed, way in ((15, "rows"), (16, "marks")):
            before = rows_by_key(db)
            edit(db, 0.03, seed)
            want = expected_changes(before, rows_by_key(db))
            report = sync_json(db, pg_dsn, "public")
            ways = compared(report)
            assert ways.pop("guesses") == way
            assert set(ways.values()) == {"marks"}
            assert {t: v for t, v in changes_of(report).items() if t != "notes"} == {
                t: v for t, v in want.items() if t != "notes"
            }
            kinds = await pg.fetch(
                "SELECT DISTINCT kind FROM asyncmig.source_marks WHERE table_name = 'guesses'"
            )
            assert {r[0] for r in kinds} <= {cells.CELLS, marks.DELTA + cells.CELLS}
    finally:
        await pg.close()
    deep_check_passes(db, pg_dsn)


async def test_the_marks_processes_run_the_parents_code_not_the_current_directorys(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A sync started (as the installed command starts it, without the current directory
    on the path) from a directory holding another ``asyncmig`` package: its marks
    processes still run the sync's own code, so every table is compared by its marks."""
    db = build_source(tmp_path / "app.db", seed=21)
    await migrate(db, pg_dsn, sync_marks=True)
    decoy = tmp_path / "cwd" / "asyncmig" / "target"
    decoy.mkdir(parents=True)
    for package in (decoy.parent, decoy):
        (package / "__init__.py").write_text("", encoding="utf-8")
    (decoy / "marks.py").write_text("raise SystemExit('a decoy')\n", encoding="utf-8")
    edit(db, 0.03, 22)
    done = _sync_from(decoy.parent.parent, db, pg_dsn)
    assert done.returncode == 0, done.stderr
    assert set(compared(valid(done.stdout)).values()) == {"marks"}
    assert "marks process ended early" not in done.stderr
    deep_check_passes(db, pg_dsn)


def _sync_from(cwd: Path, db: Path, dsn: str) -> subprocess.CompletedProcess[str]:
    """``asyncmig sync`` started with ``cwd`` as the current directory, not on the path."""
    command = ["sync", "--sqlite", str(db), "--pg", dsn, "--output", "json"]
    return subprocess.run(
        [sys.executable, "-P", "-m", "asyncmig", *command],
        capture_output=True,
        text=True,
        env=cli_environment(None),
        cwd=cwd,
        timeout=120,
        check=False,
    )


SYNC_JSON = ("sync", "--output", "json")


def _sync_killing_its_marks_processes(db: Path, dsn: str) -> tuple[int, str, str]:
    """A sync whose two marks processes get SIGKILL as soon as they exist (before or
    as they are sent their job): its exit code and output."""
    sync = subprocess.Popen(
        [sys.executable, "-m", "asyncmig", *SYNC_JSON, "--sqlite", str(db), "--pg", dsn],
        env=cli_environment(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    children: list[int] = []
    deadline = time.monotonic() + 30
    while len(children) < 2 and sync.poll() is None and time.monotonic() < deadline:
        children = _marks_children(sync.pid)
        time.sleep(0.002)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    out, err = sync.communicate(timeout=120)
    assert len(children) == 2, "the sync started no marks processes"
    return sync.returncode, out, err


async def test_marks_processes_killed_at_their_start_leave_the_sync_to_compare_rows(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Marks processes killed before they read their job (their pipe broken when the
    sync writes it) are a failed computation like any other: the tables are compared
    row by row and the sync finds exactly the edits (it was an internal error, exit 70)."""
    db = build_source(tmp_path / "app.db", seed=23)
    await migrate(db, pg_dsn, sync_marks=True)
    before = rows_by_key(db)
    edit(db, 0.03, 24)
    want = expected_changes(before, rows_by_key(db))
    code, out, err = _sync_killing_its_marks_processes(db, pg_dsn)
    assert code == 0, err
    report = valid(out)
    assert "rows" in set(compared(report).values())
    assert {t: v for t, v in changes_of(report).items() if t != "notes"} == {
        t: v for t, v in want.items() if t != "notes"
    }
    deep_check_passes(db, pg_dsn)


async def test_the_unchanged_rows_of_a_differing_range_are_neither_written_nor_locked(
    tmp_path: Path, pg_dsn: str
) -> None:
    """One row of a range changed: the sync reads the whole range but writes that row
    only. The range's other rows keep their row versions and are not even locked (an
    INSERT ... ON CONFLICT DO UPDATE locks every row it conflicts with, whatever its
    WHERE says, and a lock writes the row's page and a WAL record)."""
    db = tmp_path / "range.db"
    apply(
        db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT NOT NULL)",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400) "
        "INSERT INTO t SELECT i, 'row ' || i FROM n",
    )
    await migrate(db, pg_dsn, sync_marks=True)
    versions = "SELECT id, xmin::text AS xmin, xmax::text AS xmax FROM t"
    before = {r["id"]: (r["xmin"], r["xmax"]) for r in await fetch_async(pg_dsn, versions)}
    apply(db, "UPDATE t SET s = 'changed' WHERE id = 201")
    report = sync_json(db, pg_dsn, "public")
    assert changes_of(report)["t"] == {"inserted": 0, "updated": 1, "deleted": 0}
    shift = (await fetch_async(pg_dsn, "SELECT shift FROM asyncmig.source_marks"))[0]["shift"]
    in_range = [i for i in before if i >> shift == 201 >> shift and i != 201]
    assert in_range, "the changed row's range holds other rows"
    after = {r["id"]: (r["xmin"], r["xmax"]) for r in await fetch_async(pg_dsn, versions)}
    assert {i: v for i, v in after.items() if i != 201} == {
        i: v for i, v in before.items() if i != 201
    }
    assert after[201][0] != before[201][0]
    rows = await fetch_async(
        pg_dsn, "SELECT s FROM t WHERE id = ANY($1::int[]) ORDER BY id", [200, 201]
    )
    assert [r["s"] for r in rows] == ["row 200", "changed"]


async def test_changes_that_compare_equal_are_still_synced(tmp_path: Path, pg_dsn: str) -> None:
    """0.0 made -0.0, and a NOCASE name changed only in case: PostgreSQL's ``=`` calls
    both unchanged (float8 and a case-insensitive collation), a sync by marks compares
    the rows' stored bytes and updates exactly those two rows."""
    db = tmp_path / "equal.db"
    apply(
        db,
        # r untyped: a REAL column stores a whole number as an integer, and -0.0 as 0
        "CREATE TABLE t (id INTEGER PRIMARY KEY, r, name TEXT COLLATE NOCASE)",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) "
        "INSERT INTO t SELECT i, 0.0, 'row ' || i FROM n",
    )
    await migrate(db, pg_dsn, sync_marks=True)
    apply(db, "UPDATE t SET r = -0.0 WHERE id = 5", "UPDATE t SET name = 'ROW 7' WHERE id = 7")
    report = sync_json(db, pg_dsn, "public")
    assert compared(report) == {"t": "marks"}
    assert changes_of(report)["t"] == {"inserted": 0, "updated": 2, "deleted": 0}
    rows = await fetch_async(
        pg_dsn, "SELECT id, r::text AS r, name FROM t WHERE id IN (4, 5, 7) ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [(4, "0", "row 4"), (5, "-0", "row 5"), (7, "0", "ROW 7")]
    deep_check_passes(db, pg_dsn)


async def test_rows_of_gone_text_keys_are_found_ahead_and_deleted_by_their_ctids(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A text-keyed table: the rows whose keys left the source are found by their keys'
    hashes on the reader connection before the table's turn, and deleted by ``ctid``;
    no anti-join of every source key is needed, and a row inserted with a new key is
    kept."""
    db = tmp_path / "text_keys.db"
    apply(
        db,
        "CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
        "INSERT INTO t SELECT 'key-' || i, i FROM n",
    )
    await migrate(db, pg_dsn, sync_marks=True)
    apply(
        db,
        "DELETE FROM t WHERE k IN ('key-1', 'key-777', 'key-2000')",
        "UPDATE t SET n = -5 WHERE k = 'key-5'",
        "INSERT INTO t VALUES ('key-new', 0)",
    )
    with structlog.testing.capture_logs() as logs:
        report = await sync.sync(RunSettings(db, Target(pg_dsn, pg_dsn, "test"), command="sync"))
    table = report.tables[0]
    assert (table.compared, table.inserted, table.updated, table.deleted) == ("marks", 1, 1, 3)
    assert [e for e in logs if e["event"] == "deleted_by_anti_join"] == []
    rows = {r["k"]: r["n"] for r in await fetch_async(pg_dsn, "SELECT k, n FROM t")}
    assert len(rows) == 1998 and {"key-1", "key-777", "key-2000"}.isdisjoint(rows)
    assert (rows["key-5"], rows["key-new"], rows["key-6"]) == (-5, 0, 6)
    deep_check_passes(db, pg_dsn)


async def test_invalid_utf8_met_mid_statement_is_settled_and_no_row_is_read_twice(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A sync by marks reads the changed ranges with SQLite's own UTF-8 decoder; a value
    that is not UTF-8, met after thousands of rows of the same statement, turns the
    connection lenient and the statement runs again from where it stopped: the value is
    settled by its column's policy (here NULL), every other changed row arrives once."""
    db = tmp_path / "text.db"
    apply(
        db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000) "
        "INSERT INTO t SELECT i, 'row ' || i FROM n",
    )
    overrides = from_profile({"tables": {"t": {"columns": {"s": {"on_error": "null"}}}}})
    await migrate(db, pg_dsn, sync_marks=True, overrides=overrides)
    apply(
        db,
        "UPDATE t SET s = 'changed ' || id WHERE id % 2 = 0",  # one statement: every range
        "UPDATE t SET s = CAST(x'ff6f6f' AS TEXT) WHERE id = 29001",
        "DELETE FROM t WHERE id = 7",
    )
    target = Target(pg_dsn, pg_dsn, "test")
    report = await sync.sync(RunSettings(db, target, command="sync", overrides=overrides))
    table = report.tables[0]
    assert (table.compared, table.inserted, table.updated, table.deleted) == (
        "marks", 0, 15001, 1,
    )  # fmt: skip
    rows = {r["id"]: r["s"] for r in await fetch_async(pg_dsn, "SELECT id, s FROM t")}
    assert len(rows) == 29999 and 7 not in rows
    assert rows[29001] is None
    assert rows[29000] == "changed 29000" and rows[29999] == "row 29999"
    assert all(rows[i] == f"changed {i}" for i in range(2, 30001, 2))


async def test_a_source_written_during_the_sync_leaves_the_target_and_its_marks_as_they_were(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The application writes the source while the sync runs (here: just before the
    sync's transaction would commit, with the marks it computed already committed on
    their own connection). The sync fails with a one-line reason, the tables keep
    their content, the failed sync's marks are deleted (only the newest load's stay),
    and the history says failed."""
    db = build_source(tmp_path / "app.db", seed=12)
    await migrate(db, pg_dsn, sync_marks=True)
    edit(db, 0.03, 12)
    tables = [t for t in rows_by_key(db) if t != "sqlite_sequence"]
    conn = await asyncpg.connect(pg_dsn)
    try:
        before = await table_digests(conn, tables)
        kept = await conn.fetch("SELECT DISTINCT run_id FROM asyncmig.source_marks")
    finally:
        await conn.close()
    remember = sync._remember

    async def written_meanwhile(conn: asyncpg.Connection, plan: Any, run_id: int) -> None:
        apply(db, "UPDATE users SET score = score + 1 WHERE rowid = 1")
        await remember(conn, plan, run_id)

    monkeypatch.setattr(sync, "_remember", written_meanwhile)
    with pytest.raises(SourceError, match="changed while it was being synced"):
        await sync.sync(RunSettings(db, Target(pg_dsn, pg_dsn, "test"), command="sync"))
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await table_digests(conn, tables) == before
        assert await conn.fetch("SELECT DISTINCT run_id FROM asyncmig.source_marks") == kept
        status = await conn.fetchval("SELECT status FROM asyncmig.runs ORDER BY id DESC LIMIT 1")
        assert status == "failed"
    finally:
        await conn.close()


async def test_tables_come_as_their_marks_do_each_after_the_tables_it_references() -> None:
    """The sync takes each table as soon as its marks are in, not in the plan's order,
    but never before a table it references that comes before it in the plan (whose new
    rows its new rows may need); a reference to itself does not hold it back, and a
    table without marks (none can be computed for it) does not wait."""
    from asyncmig.target.sync_marks import in_marks_order
    from tests.test_ddl import GROUP, ORDER, PLAN, USER

    plan = replace(PLAN, tables=(*PLAN.tables, replace(GROUP, name="unmarked")))
    requests = [marks.Request(t.name, t.source_name, "rowid") for t in (USER, ORDER, GROUP)]
    feed = marks.Feed(Path("unused.db"), requests, jobs=1)
    got: list[tuple[int, str]] = []

    async def take() -> None:
        async for number, table in in_marks_order(plan, feed):
            got.append((number, table.name))

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        assert got == [(3, "unmarked")]
        for name in ("order", "group", "user"):  # order references user; group nothing
            feed._end(name)
            await anyio.wait_all_tasks_blocked()
    assert got == [(3, "unmarked"), (2, "group"), (0, "user"), (1, "order")]


def test_stopping_a_child_that_just_ended_leaves_its_reaping_to_asyncio() -> None:
    """A marks process that has just ended on its own, not yet reaped by asyncio's child
    watcher, is stopped without being reaped: reaping it first made the watcher log
    "Unknown child process pid N", a second line on a failed sync's stderr."""

    def state(pid: int) -> str | None:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return None

    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while state(child.pid) != "Z":  # ended; nobody has waited for it yet
        assert time.monotonic() < deadline, state(child.pid)
        time.sleep(0.01)
    signals.stop_child(child)  # type: ignore[arg-type]  # what it reads: returncode and pid
    assert state(child.pid) == "Z"  # left for the watcher
    assert child.wait(5) == 0
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    signals.stop_child(alive)  # type: ignore[arg-type]
    assert alive.wait(5) == -signal.SIGKILL
