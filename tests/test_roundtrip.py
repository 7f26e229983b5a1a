"""End to end: a SQLite file in, a typed PostgreSQL copy out, every value compared."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tests.compare import assert_all_equal
from tests.fix_cli import run_cli
from tests.fix_run import Migrated, migrate
from tests.sources import VALUES_ROWS, build_kitchen_sink

EXPECTED_TYPES = {
    ("user", "id"): "bigint",
    ("user", "email"): "text",
    ("user", "is_active"): "boolean",
    ("user", "created_at"): "timestamp with time zone",
    ("group", 'Name "quoted"'): "character varying",
    ("values", "big"): "bigint",
    ("values", "ratio"): "double precision",
    ("values", "price"): "numeric",
    ("values", "label"): "character varying",
    ("values", "payload"): "bytea",
    ("values", "doc"): "jsonb",
    ("values", "uid"): "uuid",
    ("values", "hexid"): "uuid",
    ("values", "ip"): "inet",
    ("values", "flag"): "boolean",
    ("values", "born"): "date",
    ("values", "seen"): "timestamp with time zone",
    # 0 and 1 among Unix times: no date reading (Julian days before year 1 by SQLite's
    # rule, or 1970?): an ambiguous column keeps its numbers (issue 8)
    ("values", "epoch_s"): "bigint",
    ("values", "epoch_ms"): "bigint",
}


@pytest.fixture
def kitchen_sink(tmp_path: Path) -> Path:
    return build_kitchen_sink(tmp_path / "kitchen sink.db")


async def test_every_value_arrives_exactly(kitchen_sink: Path, any_pg_dsn: str) -> None:
    """Every row of every table matches the source value by value, on PG 18 and PG 15."""
    before = kitchen_sink.read_bytes()
    report = await migrate(kitchen_sink, any_pg_dsn)
    rows = await assert_all_equal(kitchen_sink, any_pg_dsn, report.plan)
    assert rows == 3 + 3 + 3 + len(VALUES_ROWS) + 0 + 2 + 2
    assert kitchen_sink.read_bytes() == before, "the source file must not change"


async def test_column_types_follow_declared_types_and_values(migrated: Migrated) -> None:
    """JSON, UUID, IP, boolean and timestamps get native types; REAL stays 8 bytes."""
    rows = await migrated.conn.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public'"
    )
    found = {(r["table_name"], r["column_name"]): r["data_type"] for r in rows}
    for key, data_type in EXPECTED_TYPES.items():
        assert found[key] == data_type, key


async def test_keys_indexes_and_constraints_exist(migrated: Migrated) -> None:
    """Primary keys (composite too), unique, partial and expression indexes, FKs, CHECKs."""
    conn = migrated.conn
    indexes = {
        r["indexname"]: r["indexdef"]
        for r in await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        )
    }
    constraints = {
        r["conname"]: (r["contype"], r["convalidated"])
        for r in await conn.fetch(
            "SELECT conname, contype::text AS contype, convalidated FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace"
        )
    }
    assert "user by name" in indexes
    assert "WHERE (is_active = true)" in indexes["active_users"]
    assert "DESC" in indexes["active_users"]
    assert "lower(email)" in indexes["user_email_lower"]
    assert indexes["values_label"].startswith("CREATE UNIQUE INDEX")
    # the WITHOUT ROWID table's composite key: built as a unique index, then attached
    assert indexes["membership_pkey"].startswith("CREATE UNIQUE INDEX membership_pkey ON ")
    assert indexes["membership_pkey"].endswith("(user_id, group_id)")
    assert constraints["membership_pkey"] == ("p", True)
    kinds = sorted(kind for kind, _ in constraints.values())
    assert kinds.count("p") == 7  # every table has a primary key
    assert kinds.count("f") >= 6  # group->group, group->user, membership x2, chicken<->egg
    assert kinds.count("c") >= 2  # length(email) > 3 and the role IN (...)
    assert all(valid for _, valid in constraints.values())


async def test_sequences_continue_after_the_loaded_maximum(migrated: Migrated) -> None:
    """The application's next INSERT gets max(id) + 1, and 1 in an empty table."""
    conn = migrated.conn
    new_id = await conn.fetchval(
        "INSERT INTO \"user\" (email) VALUES ('new@example.com') RETURNING id"
    )
    empty_id = await conn.fetchval("INSERT INTO empty_auto (note) VALUES ('x') RETURNING id")
    default_flag = await conn.fetchval('SELECT is_active FROM "user" WHERE id = $1', new_id)
    created = await conn.fetchval('SELECT created_at FROM "user" WHERE id = $1', new_id)
    assert new_id == 6
    assert empty_id == 1
    assert default_flag is True
    assert created is not None


async def test_existing_table_stops_the_run_unless_replace(kitchen_sink: Path, pg_dsn: str) -> None:
    """A second run refuses to overwrite; --replace recreates and reloads."""
    from asyncmig.errors import TargetError

    await migrate(kitchen_sink, pg_dsn)
    with pytest.raises(TargetError, match="already exists"):
        await migrate(kitchen_sink, pg_dsn)
    report = await migrate(kitchen_sink, pg_dsn, replace=True)
    assert await assert_all_equal(kitchen_sink, pg_dsn, report.plan) > 0


async def test_autoincrement_never_reuses_ids_of_deleted_rows(tmp_path: Path, pg_dsn: str) -> None:
    """SQLite's AUTOINCREMENT remembers the highest id ever used; so does the identity."""
    import sqlite3

    source = tmp_path / "deleted.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(str(i),) for i in range(10)])
    conn.execute("DELETE FROM t WHERE id > 5")
    conn.commit()
    conn.close()
    await migrate(source, pg_dsn)
    pg = await asyncpg.connect(pg_dsn)
    try:
        new_id = await pg.fetchval("INSERT INTO t (v) VALUES ('new') RETURNING id")
    finally:
        await pg.close()
    assert new_id == 11


async def test_worker_processes_load_the_same_values(kitchen_sink: Path, pg_dsn: str) -> None:
    """Large sources load each table in a worker process: same values, same checks."""
    report = await migrate(kitchen_sink, pg_dsn, workers="process")
    assert await assert_all_equal(kitchen_sink, pg_dsn, report.plan) > 0


async def test_a_bad_value_in_a_worker_process_is_reported_with_its_key(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Errors cross the process boundary intact (table, column, key, value)."""
    import sqlite3

    from asyncmig.errors import DataError

    source = tmp_path / "bad.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, seen TIMESTAMP)")
    conn.executemany(
        "INSERT INTO t VALUES (?, ?)",
        [(i, f"2025-01-01 10:00:{i % 60:02d}") for i in range(1, 3001)],
    )
    # beyond the sample: julianday() accepts February 30th, the load's parser does not
    conn.execute("UPDATE t SET seen = '2025-02-30 10:00:00' WHERE id = 1500")
    conn.commit()
    conn.close()
    from asyncmig.plan.overrides import Overrides

    with pytest.raises(DataError) as caught:
        await migrate(source, pg_dsn, workers="process", overrides=Overrides(on_error="fail"))
    assert (caught.value.table, caught.value.column, caught.value.key) == ("t", "seen", 1500)


async def test_portable_views_are_created_and_others_reported(tmp_path: Path, pg_dsn: str) -> None:
    """A view PostgreSQL accepts (as written or translated) is created; one it refuses
    even then is named, not lost."""
    import sqlite3

    source = tmp_path / "views.db"
    conn = sqlite3.connect(source)
    conn.executescript("""
        CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price REAL, active BOOLEAN);
        INSERT INTO item VALUES (1, 'a', 2.5, 1), (2, 'b', 3.0, 0);
        CREATE VIEW "cheap items" AS SELECT id, upper(name) AS name FROM item WHERE price < 3;
        CREATE VIEW active_items AS SELECT id FROM item WHERE active = 1 AND julianday('now') > 0;
        CREATE VIEW `on sale` AS SELECT [id] FROM item WHERE active == 1 OR 0 = active;
        CREATE VIEW typed AS SELECT id FROM item WHERE typeof(name) = 'text';
    """)
    conn.close()
    report = await migrate(source, pg_dsn)
    pg = await asyncpg.connect(pg_dsn)
    try:
        rows = await pg.fetch('SELECT id, name FROM "cheap items"')
        on_sale = [r[0] for r in await pg.fetch('SELECT id FROM "on sale" ORDER BY id')]
        views = {
            r[0]
            for r in await pg.fetch("SELECT viewname FROM pg_views WHERE schemaname = 'public'")
        }
    finally:
        await pg.close()
    assert [tuple(r) for r in rows] == [(1, "A")]
    assert views == {"cheap items", "on sale", "active_items"}
    assert on_sale == [1, 2]  # booleans compared with 1 and 0, SQLite's way, requoted
    assert any("typed not created" in w and "typeof()" in w for w in report.warnings)
    from asyncmig.cli.render import plan_text

    shown = plan_text(report.plan)
    assert "  active_items: translated\n" in shown
    assert "  typed: tried as written at the end of the run (typeof()" in shown


async def test_a_wide_table(tmp_path: Path, pg_dsn: str) -> None:
    """Hundreds of columns: the profile is split into queries SQLite accepts."""
    import sqlite3

    source = tmp_path / "wide.db"
    conn = sqlite3.connect(source)
    columns = ", ".join(f"c{i} {'INTEGER' if i % 2 else 'TEXT'}" for i in range(300))
    conn.execute(f"CREATE TABLE wide (id INTEGER PRIMARY KEY, {columns})")
    conn.executemany(
        f"INSERT INTO wide VALUES ({', '.join('?' * 301)})",
        [(r, *[(r * i if i % 2 else f"v{r}-{i}") for i in range(300)]) for r in range(1, 4)],
    )
    conn.commit()
    conn.close()
    report = await migrate(source, pg_dsn)
    assert await assert_all_equal(source, pg_dsn, report.plan) == 3


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> object:
    """This process in a time zone that is not UTC (asyncpg reads naive times as local)."""
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield None
    monkeypatch.undo()
    time.tzset()


async def test_naive_timestamps_are_utc_whatever_the_local_time_zone(
    kitchen_sink: Path, pg_dsn: str, new_york: object
) -> None:
    report = await migrate(kitchen_sink, pg_dsn)
    assert await assert_all_equal(kitchen_sink, pg_dsn, report.plan) > 0
    conn = await asyncpg.connect(pg_dsn)
    try:
        seen = await conn.fetchval(
            """SELECT to_char(seen AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM "values" """
            "WHERE id = 1"
        )
    finally:
        await conn.close()
    assert seen == "2025-03-01 12:00:00"


def test_the_command_line_runs_in_utc(kitchen_sink: Path, pg_dsn: str) -> None:
    import asyncio

    result = run_cli(
        "run", "--sqlite", str(kitchen_sink), "--pg", pg_dsn, env={"TZ": "Asia/Kolkata"}
    )
    assert result.returncode == 0, result.stderr

    async def seen() -> str:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return str(
                await conn.fetchval(
                    """SELECT to_char(seen AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') """
                    """FROM "values" WHERE id = 1"""
                )
            )
        finally:
            await conn.close()

    assert asyncio.run(seen()) == "2025-03-01 12:00:00"


async def test_big_values_move_in_small_batches(tmp_path: Path, pg_dsn: str) -> None:
    """Memory is bounded in bytes: a table of 1 MB blobs is not read 5000 rows at a time."""
    import sqlite3

    from asyncmig.load.pipeline import BATCH_BYTES, PipelineSettings, batch_rows

    source = tmp_path / "blobs.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE pictures (id INTEGER PRIMARY KEY, data BLOB)")
    conn.executemany(
        "INSERT INTO pictures VALUES (?, ?)",
        [(i, bytes([i % 256]) * 1_000_000) for i in range(1, 41)],
    )
    conn.commit()
    conn.close()
    report = await migrate(source, pg_dsn)
    table = report.plan.table("pictures")
    assert batch_rows(PipelineSettings(), table) <= BATCH_BYTES // 1_000_000
    assert await assert_all_equal(source, pg_dsn, report.plan) == 40


async def test_a_source_written_during_the_run(tmp_path: Path, pg_dsn: str) -> None:
    """Without --snapshot a change is detected and fails the run; with it, one snapshot."""
    import sqlite3
    import threading

    from asyncmig.errors import SourceError, VerificationError

    source = tmp_path / "live.db"
    conn = sqlite3.connect(source)
    conn.execute("PRAGMA journal_mode = wal")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO events (v) VALUES (?)", [(str(i),) for i in range(20000)])
    conn.commit()
    conn.close()
    stop = threading.Event()

    def keep_writing() -> None:
        writer = sqlite3.connect(source)
        while not stop.is_set():
            writer.execute("INSERT INTO events (v) VALUES ('late')")
            writer.commit()
        writer.close()

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        # a count that moved under the load, or the file's fingerprint: either fails it
        with pytest.raises((SourceError, VerificationError)):
            await migrate(source, pg_dsn)
        report = await migrate(source, pg_dsn, snapshot=True)
    finally:
        stop.set()
        thread.join()
    table = report.plan.table("events")
    assert table.row_count >= 20000
    assert all(c.ok for c in report.checks)
    assert report.rows == table.row_count
