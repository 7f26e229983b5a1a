"""Dirty SQLite data: every row loaded or rejected with its reason, nothing silently changed."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from asyncmig.check.deep import deep_check
from asyncmig.cli.settings import Duplicates
from asyncmig.errors import DataError, TargetError
from asyncmig.load.pipeline import PipelineSettings
from asyncmig.runstate import RunReport
from bench.gen_dirty import DirtyCounts, generate_dirty
from tests.compare import actual, same
from tests.compare import expected as oracle
from tests.fix_cli import RunMain, run_cli
from tests.fix_pg import fetch
from tests.fix_run import from_profile, migrate

FAULTS = 7
# the profile a user writes to get the rich types although some values do not fit
STRICT = {
    "tables": {
        "customers": {
            "columns": {
                "score": {"type": "bigint"},
                "profile": {"type": "jsonb"},
                "signup_ip": {"type": "inet"},
            }
        }
    }
}


@pytest.fixture
def dirty(tmp_path: Path) -> tuple[Path, DirtyCounts]:
    path = tmp_path / "dirty.db"
    return path, generate_dirty(path, 5000, seed=11, faults=FAULTS)


def rejected_keys(report: RunReport, table: str) -> dict[int, dict[str, Any]]:
    """The table's reject file by key; each entry is a parsed JSON line, typed as JSON is."""
    entry = next(t for t in report.tables if t.table == table)
    assert entry.reject_file is not None
    lines = Path(entry.reject_file).read_text().splitlines()
    return {json.loads(line)["key"]: json.loads(line) for line in lines}


async def test_every_row_is_loaded_or_rejected_with_its_reason(
    dirty: tuple[Path, DirtyCounts], pg_dsn: str, tmp_path: Path
) -> None:
    path, counts = dirty
    report = await migrate(
        path, pg_dsn, overrides=from_profile(STRICT), rejects_dir=tmp_path / "rejects"
    )
    customers = next(t for t in report.tables if t.table == "customers")
    orders = next(t for t in report.tables if t.table == "orders")
    assert customers.reject_reasons == {
        "not a valid bigint": FAULTS,
        "not a valid jsonb": FAULTS,
        "not a valid inet": FAULTS,
        "not a valid text": FAULTS,
        "invalid UTF-8 in text": FAULTS,
    }
    assert orders.reject_reasons == {"not a valid timestamptz": FAULTS}
    assert customers.rows + customers.rejected == counts.rows["customers"]
    assert orders.rows + orders.rejected == counts.rows["orders"]

    rejects = rejected_keys(report, "customers")
    for kind in ("text_in_integer", "bad_json", "bad_ip", "nul_in_text", "invalid_utf8"):
        assert set(counts.faulty_keys[kind]) <= set(rejects), kind
    assert sorted(rejected_keys(report, "orders")) == counts.faulty_keys["bad_timestamp"]
    # the reject file holds the original values exactly, including the undecodable bytes
    src = sqlite3.connect(path)
    try:
        for key in counts.faulty_keys["invalid_utf8"]:
            raw = src.execute(
                "SELECT CAST(name AS BLOB) FROM customers WHERE id = ?", (key,)
            ).fetchone()[0]
            stored = rejects[key]["row"]["name"]
            assert base64.b64decode(stored["base64"]) == raw and stored["invalid_utf8"]
        for key in counts.faulty_keys["nul_in_text"]:
            name = src.execute("SELECT name FROM customers WHERE id = ?", (key,)).fetchone()[0]
            assert rejects[key]["row"]["name"] == name and "\x00" in name
    finally:
        src.close()
    # counts and JSON checks allow for the rejected rows; the foreign key is left NOT VALID
    # (true orphans, and orders of rejected customers), as --orphans keep promises: the
    # check expects the source's own orphans and reports them, and the run warns
    assert [c for c in report.checks if not c.ok] == []
    fk = next(c for c in report.checks if (c.check, c.table) == ("foreign key", "orders"))
    assert fk.found.endswith("NOT VALID") and "(as in SQLite), NOT VALID" in fk.expected
    assert int(fk.found.split()[0]) > int(fk.expected.split()[0]) > 0
    assert any("NOT VALID" in w for w in report.warnings)


async def test_clean_rows_arrive_bit_identical(
    dirty: tuple[Path, DirtyCounts], pg_dsn: str, tmp_path: Path
) -> None:
    path, _ = dirty
    report = await migrate(
        path, pg_dsn, overrides=from_profile(STRICT), rejects_dir=tmp_path / "rejects"
    )
    table = report.plan.table("customers")
    rejected = set(rejected_keys(report, "customers"))
    names = ", ".join(f'"{c.source_name}"' for c in table.columns)
    src = sqlite3.connect(path)
    src.text_factory = bytes
    rows = {r[0]: r for r in src.execute(f"SELECT {names} FROM customers")}
    src.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        loaded = {r[0]: tuple(r) for r in await conn.fetch(f"SELECT {names} FROM customers")}
    finally:
        await conn.close()
    assert set(loaded) == set(rows) - rejected
    for key, row in rows.items():
        if key in rejected:
            continue
        decoded = [v.decode() if isinstance(v, bytes) else v for v in row]
        want = tuple(oracle(c, v) for c, v in zip(table.columns, decoded, strict=True))
        got = tuple(actual(c, v) for c, v in zip(table.columns, loaded[key], strict=True))
        for column, a, b in zip(table.columns, want, got, strict=True):
            assert same(a, b), (key, column.name, a, b)


async def test_coerce_and_null_policies_announce_what_they_change(
    dirty: tuple[Path, DirtyCounts], pg_dsn: str, tmp_path: Path
) -> None:
    path, counts = dirty
    profile = {
        "on_error": "coerce",
        "tables": {
            "customers": {
                "columns": {
                    "profile": {"type": "jsonb", "on_error": "null"},
                    "signup_ip": {"type": "inet", "on_error": "null"},
                }
            }
        },
    }
    report = await migrate(
        path, pg_dsn, overrides=from_profile(profile), rejects_dir=tmp_path / "rejects"
    )
    customers = next(t for t in report.tables if t.table == "customers")
    assert customers.replaced["profile: null"] == FAULTS
    assert customers.replaced["signup_ip: null"] == FAULTS
    assert customers.replaced["name: coerced"] == 2 * FAULTS  # NUL stripped, bad UTF-8 decoded
    conn = await asyncpg.connect(pg_dsn)
    try:
        nul = counts.faulty_keys["nul_in_text"][0]
        utf8 = counts.faulty_keys["invalid_utf8"][0]
        assert await conn.fetchval("SELECT name FROM customers WHERE id = $1", nul) == "AnnX"
        assert await conn.fetchval("SELECT name FROM customers WHERE id = $1", utf8) == "Ann\ufffd"
    finally:
        await conn.close()


async def test_max_rejects_rolls_the_table_back(
    dirty: tuple[Path, DirtyCounts], pg_dsn: str, tmp_path: Path
) -> None:
    path, _ = dirty
    with pytest.raises(DataError, match="max-rejects 3") as raised:
        await migrate(
            path,
            pg_dsn,
            overrides=from_profile(STRICT),
            pipeline=PipelineSettings(max_rejects=3),
            rejects_dir=tmp_path / "rejects",
        )
    # a count, said as one (it read "cannot convert t.? at key None: value None")
    assert str(raised.value).startswith("table ")
    assert "rows rejected, the last at key " in str(raised.value)
    assert "value None" not in str(raised.value)
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert not await conn.fetch("SELECT 1 FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()


async def test_postgresql_refusals_are_isolated_by_splitting(tmp_path: Path, pg_dsn: str) -> None:
    """A value PostgreSQL refuses (not foreseen by the plan) costs its row, not the batch."""
    path = tmp_path / "big.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, i) for i in range(1, 5001)])
    conn.commit()
    conn.close()
    # integer overrides PostgreSQL's 4-byte integer: asyncpg refuses values beyond it
    sqlite3.connect(path).execute(
        "UPDATE t SET n = 3000000000 WHERE id IN (17, 4000)"
    ).connection.commit()
    profile = {"tables": {"t": {"columns": {"n": {"type": "integer"}}}}}
    report = await migrate(
        path,
        pg_dsn,
        overrides=from_profile(profile),
        pipeline=PipelineSettings(batch_size=1000),
        rejects_dir=tmp_path / "rejects",
    )
    entry = report.tables[0]
    assert (entry.rows, entry.rejected) == (4998, 2)
    assert sorted(rejected_keys(report, "t")) == [17, 4000]


async def test_dates_the_driver_would_turn_into_infinity_are_not_changed(
    tmp_path: Path, pg_dsn: str
) -> None:
    """0001-01-01 is a real date (a common placeholder): never stored as -infinity. In
    a timestamptz column (TIMESTAMP here) it arrives as written, asyncmig encoding it;
    in a date column, which asyncpg encodes, it is refused."""
    path = tmp_path / "edge.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE e (id INTEGER PRIMARY KEY, d DATE, t TIMESTAMP)")
    conn.executemany(
        "INSERT INTO e VALUES (?, ?, ?)",
        [
            (1, "0001-01-01", "2020-01-01 00:00:00"),
            (2, "2020-01-01", "0001-01-01 00:00:00"),
            (3, "9999-12-31", "2020-01-03 00:00:00"),
            (4, "2020-01-02", "0001-01-01 00:00:01"),
        ],
    )
    conn.commit()
    conn.close()
    report = await migrate(
        path, pg_dsn, overrides=from_profile({}), rejects_dir=tmp_path / "rejects"
    )
    assert sorted(rejected_keys(report, "e")) == [1, 3]
    pg = await asyncpg.connect(pg_dsn)
    try:
        rows = await pg.fetch("SELECT id, d::text, t::text FROM e ORDER BY id")
        infinite = await pg.fetchval(
            "SELECT count(*) FROM e WHERE d = '-infinity' OR t = '-infinity' OR t = 'infinity'"
        )
    finally:
        await pg.close()
    assert [tuple(r) for r in rows] == [
        (2, "2020-01-01", "0001-01-01 00:00:00+00"),
        (4, "2020-01-02", "0001-01-01 00:00:01+00"),
    ]
    assert infinite == 0


async def test_year_1_and_9999_arrive_as_written_beside_numbers_and_misfits(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A DATETIME column that also holds a Unix time, or a value that does not fit, is
    read value by value (``sqlite_timestamptz``): its year 1 and 9999 arrived as
    -infinity and infinity, with exit 0 and every check passed."""
    path = tmp_path / "edges.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE with_epoch (id INTEGER PRIMARY KEY, at DATETIME);
        INSERT INTO with_epoch VALUES (1, '2024-01-05 10:00:00'), (2, '0001-01-01 00:00:00'),
            (3, 1700000000), (4, '9999-12-31 23:59:59.999999');
        CREATE TABLE one_misfit (id INTEGER PRIMARY KEY, at DATETIME);
        INSERT INTO one_misfit VALUES (1, '0001-01-01 00:00:00'), (2, ''),
            (3, '9999-12-31 23:59:59');
        """
    )
    conn.commit()
    conn.close()
    report = await migrate(path, pg_dsn, rejects_dir=tmp_path / "rejects")
    assert list(rejected_keys(report, "one_misfit")) == [2]
    pg = await asyncpg.connect(pg_dsn)
    try:
        epoch = await pg.fetch("SELECT id, at::text FROM with_epoch ORDER BY id")
        misfit = await pg.fetch("SELECT id, at::text FROM one_misfit ORDER BY id")
    finally:
        await pg.close()
    assert [tuple(r) for r in epoch] == [
        (1, "2024-01-05 10:00:00+00"),
        (2, "0001-01-01 00:00:00+00"),
        (3, "2023-11-14 22:13:20+00"),
        (4, "9999-12-31 23:59:59.999999+00"),
    ]
    assert [tuple(r) for r in misfit] == [
        (1, "0001-01-01 00:00:00+00"),
        (3, "9999-12-31 23:59:59+00"),
    ]


async def test_sequelize_timestamps_load_as_sqlite_reads_them(tmp_path: Path, pg_dsn: str) -> None:
    """Sequelize writes '2023-11-14 22:13:20.000 +00:00' (a blank before the zone), which
    SQLite's date functions read and Python 3.11's fromisoformat does not: every row of
    a Sequelize database went to the reject store."""
    path = tmp_path / "sequelize.db"
    conn = sqlite3.connect(path)
    conn.execute(
        'CREATE TABLE "Users" (id INTEGER PRIMARY KEY, "createdAt" DATETIME NOT NULL, '
        '"deletedAt" DATETIME)'
    )
    written = [
        (1, "2023-11-14 22:13:20.000 +00:00", None),
        (2, "2023-11-14 22:13:20.123 +05:30", "2024-02-29 00:00:00.5 -03:00"),
        (3, "2023-11-14 22:13:20 Z", "2023-11-14 22:13:20.000  +00:00 "),
    ]
    conn.executemany('INSERT INTO "Users" VALUES (?, ?, ?)', written)
    conn.commit()
    expected = [
        (
            key,
            *(
                conn.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', ?)", (v,)).fetchone()[0]
                if v
                else None
                for v in values
            ),
        )
        for key, *values in written
    ]
    conn.close()
    report = await migrate(path, pg_dsn, rejects_dir=tmp_path / "rejects")
    assert [(t.table, t.rows, t.rejected) for t in report.tables] == [("Users", 3, 0)]
    pg = await asyncpg.connect(pg_dsn)
    try:
        rows = await pg.fetch(
            """SELECT id, to_char("createdAt" AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'),
                      to_char("deletedAt" AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')
               FROM "Users" ORDER BY id"""
        )
    finally:
        await pg.close()
    assert [tuple(r) for r in rows] == expected


@pytest.mark.parametrize("rows", [40, 6000], ids=["profiled whole", "sampled"])
async def test_offsets_without_a_colon_are_counted_as_they_load(
    tmp_path: Path, pg_dsn: str, rows: int
) -> None:
    """'+0000', '-0530' and '+02' (offsets written without a colon, as JavaScript's and
    Java's formatters may) are not read by SQLite's date functions, but PostgreSQL and
    the load read them as the instants they name: `plan` and `validate` counted them
    among the values going to the reject store, and the run warned so, while the load
    took every one. Now they are counted as they load; an offset no one reads (+25:00)
    still goes to the reject store, announced. In a sampled table, such values past the
    sample do not refute the plan."""
    path = tmp_path / "offsets.db"
    spellings = [
        "2024-01-01 10:00:00",
        "2024-01-01 10:00:00+0000",
        "2024-01-01T10:00:00.25-0530",
        "2024-01-01 10:00+02",
        "2024-01-01 10:00:00Z",
    ]
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, at DATETIME)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?)",
            [  # sampled: only past the first and last rows the sample reads
                (i, spellings[i % 5] if rows < 1000 or 1000 <= i < rows - 1000 else spellings[0])
                for i in range(rows)
            ],
        )
        conn.execute("INSERT INTO t VALUES (?, ?)", (rows, "2024-01-01 10:00:00+2500"))
    planned = run_cli("plan", "--sqlite", str(path))
    assert planned.returncode == 0, planned.stderr
    assert "1 value(s) do not fit timestamptz (e.g. '2024-01-01 10:00:00+2500')" in planned.stdout
    report = await migrate(path, pg_dsn, rejects_dir=tmp_path / "rejects")
    assert [(t.table, t.rows, t.rejected) for t in report.tables] == [("t", rows, 1)]
    instants = {
        "2024-01-01 10:00:00": "2024-01-01 10:00:00.000",
        "2024-01-01 10:00:00+0000": "2024-01-01 10:00:00.000",
        "2024-01-01T10:00:00.25-0530": "2024-01-01 15:30:00.250",
        "2024-01-01 10:00+02": "2024-01-01 08:00:00.000",
        "2024-01-01 10:00:00Z": "2024-01-01 10:00:00.000",
    }
    with sqlite3.connect(path) as conn:
        written = conn.execute("SELECT id, at FROM t WHERE id < ? ORDER BY id", (rows,)).fetchall()
    pg = await asyncpg.connect(pg_dsn)
    try:
        loaded = await pg.fetch(
            "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') FROM t "
            "ORDER BY id"
        )
    finally:
        await pg.close()
    assert [tuple(r) for r in loaded] == [(key, instants[text]) for key, text in written]
    checked = run_cli("check", "--sqlite", str(path), "--pg", pg_dsn, "--deep")
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_orphans_can_be_rejected_or_cleared(
    dirty: tuple[Path, DirtyCounts], pg_dsn: str, tmp_path: Path
) -> None:
    """Orphans (including orders of rejected customers) leave for the reject store."""
    path, counts = dirty
    report = await migrate(
        path,
        pg_dsn,
        overrides=from_profile({**STRICT, "orphans": "reject"}),
        rejects_dir=tmp_path / "rejects",
    )
    orders = next(t for t in report.tables if t.table == "orders")
    assert all(c.ok for c in report.checks), [c for c in report.checks if not c.ok]
    rejects = rejected_keys(report, "orders")
    assert set(counts.faulty_keys["orphan_fk"]) <= set(rejects)
    assert orders.rows + orders.rejected == counts.rows["orders"]
    orphan = rejects[counts.faulty_keys["orphan_fk"][0]]
    assert orphan["stage"] == "foreign key" and orphan["reason"].startswith("orphan")
    conn = await asyncpg.connect(pg_dsn)
    try:
        history = await conn.fetchrow(
            "SELECT loaded_rows, rejected FROM asyncmig.run_tables WHERE table_name = 'orders'"
        )
        valid = await conn.fetchval(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'orders_customer_id_fkey'"
        )
    finally:
        await conn.close()
    assert (history["loaded_rows"], history["rejected"]) == (orders.rows, orders.rejected)
    assert valid is True


async def test_orphan_references_set_to_null(
    dirty: tuple[Path, DirtyCounts], pg_dsn: str, tmp_path: Path
) -> None:
    path, counts = dirty
    report = await migrate(
        path, pg_dsn, overrides=from_profile({"orphans": "null"}), rejects_dir=tmp_path / "rejects"
    )
    assert any("set to NULL" in w for w in report.warnings)
    conn = await asyncpg.connect(pg_dsn)
    try:
        nulls = await conn.fetchval(
            "SELECT count(*) FROM orders WHERE id = ANY($1::bigint[]) AND customer_id IS NULL",
            counts.faulty_keys["orphan_fk"],
        )
    finally:
        await conn.close()
    assert nulls == FAULTS


@pytest.fixture
def mixed_keys(tmp_path: Path) -> Path:
    """A UNIQUE untyped column holding 1 and '1': different keys to SQLite, the same text
    to PostgreSQL."""
    path = tmp_path / "dups.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE k (id INTEGER PRIMARY KEY, code UNIQUE)")
    conn.executemany("INSERT INTO k VALUES (?, ?)", [(1, 1), (2, "1"), (3, "x"), (4, 2.5)])
    conn.commit()
    conn.close()
    return path


async def test_duplicates_sqlite_allowed_are_named_or_built_without_unique(
    mixed_keys: Path, pg_dsn: str
) -> None:
    """1 and '1' are different keys to SQLite, the same text to PostgreSQL."""
    path = mixed_keys
    with pytest.raises(TargetError, match=r"duplicate keys \('1',\) x2") as refused:
        await migrate(path, pg_dsn)
    assert refused.value.exit_code == 4 and "--duplicates nonunique" in (refused.value.hint or "")
    report = await migrate(path, pg_dsn, duplicates=Duplicates.NONUNIQUE)
    assert any("built without UNIQUE" in w for w in report.warnings)
    pg = await asyncpg.connect(pg_dsn)
    try:
        codes = [r[0] for r in await pg.fetch("SELECT code FROM k ORDER BY id")]
        unique = await pg.fetchval(
            "SELECT indisunique FROM pg_index WHERE indexrelid = 'k_code_key'::regclass"
        )
    finally:
        await pg.close()
    assert codes == ["1", "1", "x", "2.5"] and unique is False


def test_check_deep_catches_one_value_changed_behind_its_back(
    run_main: RunMain, dirty: tuple[Path, DirtyCounts], pg_dsn: str, tmp_path: Path
) -> None:
    """After a run with rejects, `check --deep` passes; one changed value fails it, named."""
    path, _ = dirty
    profile = tmp_path / "strict.toml"
    profile.write_text('[tables.customers.columns.score]\ntype = "bigint"\n')
    env = {"ASYNCMIG_LOG_DIR": str(tmp_path)}
    args = ["--sqlite", str(path), "--pg", pg_dsn, "--config", str(profile)]
    loaded = run_main("run", *args, "--orphans", "reject", env=env)
    assert loaded.returncode == 8, loaded.stderr  # loaded, with rejects
    clean = run_main("check", *args, "--deep", env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    victim = fetch(
        pg_dsn, "SELECT id FROM orders WHERE note IS NOT NULL ORDER BY id LIMIT 1 OFFSET 100"
    )[0][0]
    fetch(pg_dsn, f"UPDATE orders SET note = note || '.' WHERE id = {int(victim)}")
    changed = run_main("check", *args, "--deep", "--explain", env=env)
    assert changed.returncode == 6
    failing = [line for line in changed.stdout.splitlines() if line.rstrip().endswith("FAIL")]
    assert len(failing) == 1 and "orders" in failing[0] and f"id={victim}" in failing[0]


async def test_duplicates_can_be_rejected_keeping_the_first(
    mixed_keys: Path, pg_dsn: str, tmp_path: Path
) -> None:
    path = mixed_keys
    report = await migrate(
        path, pg_dsn, duplicates=Duplicates.REJECT, rejects_dir=tmp_path / "rejects"
    )
    entry = report.tables[0]
    assert (entry.rows, entry.rejected) == (3, 1)
    assert all(c.ok for c in report.checks)
    assert sorted(rejected_keys(report, "k")) == [2]
    assert rejected_keys(report, "k")[2]["row"] == {"id": 2, "code": "1"}


async def test_a_total_reject_limit_fails_the_run(
    dirty: tuple[Path, DirtyCounts], pg_dsn: str, tmp_path: Path
) -> None:
    path, _ = dirty
    with pytest.raises(DataError, match="max-rejects-total 10") as raised:
        await migrate(
            path,
            pg_dsn,
            overrides=from_profile(STRICT),
            max_rejects_total=10,
            rejects_dir=tmp_path / "rejects",
        )
    assert str(raised.value).startswith("the run rejected ")


async def test_text_that_is_not_utf8_keeps_its_bytes_in_a_bytea_column(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A column of no declared type holding a blob becomes bytea (text as its UTF-8
    bytes); a text value that is not UTF-8 was rejected there, although bytea holds its
    bytes exactly. (A column declared TEXT keeps text, its blobs misfits: see
    test_declared_types.)"""
    path = tmp_path / "bio.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE profile (id INTEGER PRIMARY KEY, bio)")
    conn.executemany("INSERT INTO profile VALUES (?, ?)", [(1, "héllo"), (2, b"\xff\xfe")])
    conn.execute("INSERT INTO profile VALUES (3, CAST(X'61C328' AS TEXT))")
    conn.commit()
    expected = conn.execute("SELECT id, CAST(bio AS BLOB) FROM profile ORDER BY id").fetchall()
    conn.close()
    report = await migrate(path, pg_dsn, rejects_dir=tmp_path / "rejects")
    assert report.plan.table("profile").column("bio").target_type == "bytea"
    assert report.rejected == 0
    pg = await asyncpg.connect(pg_dsn)
    try:
        rows = await pg.fetch("SELECT id, bio FROM profile ORDER BY id")
        deep = await deep_check(report.plan, pg, path)
    finally:
        await pg.close()
    assert [tuple(r) for r in rows] == expected
    assert [(r.table, r.ok) for r in deep if r.check != "names"] == [("profile", True)]
