"""The dirty generator writes exactly the faults it reports, where it says it does.

Tests and benchmarks assert exact counts per fault reason against ``DirtyCounts``, so
each fault kind is found here by an independent detector (a SQLite query, or Python
where SQLite cannot tell) and must give exactly the recorded keys: no more, no fewer.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pytest

from bench.gen_dirty import FAULT_COLUMNS, KINDS, DirtyCounts, generate_dirty, main

ROOT = Path(__file__).resolve().parent.parent
ROWS, FAULTS, SEED = 5000, 7, 11


def ids(db: sqlite3.Connection, sql: str) -> list[int]:
    return sorted(row[0] for row in db.execute(sql))


def _bad_ip(db: sqlite3.Connection) -> list[int]:
    bad = []
    for key, ip in db.execute("SELECT id, signup_ip FROM customers WHERE signup_ip NOT NULL"):
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            bad.append(key)
    return sorted(bad)


def _invalid_utf8(db: sqlite3.Connection) -> list[int]:
    """Python decodes the stored bytes: SQLite never validates UTF-8, so it cannot tell."""
    bad = []
    for key, raw in db.execute("SELECT id, CAST(name AS BLOB) FROM customers WHERE name NOT NULL"):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(key)
    return sorted(bad)


def _bad_timestamp(db: sqlite3.Connection) -> list[int]:
    """strptime refuses impossible dates, as PostgreSQL's timestamp input does."""
    bad = []
    for key, placed in db.execute("SELECT id, placed FROM orders"):
        try:
            datetime.strptime(placed, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            bad.append(key)
    return sorted(bad)


DETECTORS: dict[str, Callable[[sqlite3.Connection], list[int]]] = {
    "text_in_integer": lambda db: ids(db, "SELECT id FROM customers WHERE typeof(score) = 'text'"),
    "bad_json": lambda db: ids(db, "SELECT id FROM customers WHERE json_valid(profile) = 0"),
    "bad_ip": _bad_ip,
    "nul_in_text": lambda db: ids(db, "SELECT id FROM customers WHERE instr(name, char(0)) > 0"),
    "invalid_utf8": _invalid_utf8,
    "nocase_duplicate": lambda db: ids(
        db,
        "SELECT c.id FROM customers c JOIN (SELECT lower(email) AS e, min(id) AS first"
        " FROM customers GROUP BY lower(email) HAVING count(*) > 1) d"
        " ON lower(c.email) = d.e AND c.id > d.first",
    ),
    "bad_timestamp": _bad_timestamp,
    "orphan_fk": lambda db: ids(
        db,
        "SELECT o.id FROM orders o LEFT JOIN customers c"
        " ON c.id = o.customer_id WHERE c.id IS NULL",
    ),
}


def connect(path: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True))


def dump_digest(path: Path) -> str:
    """A hash of schema and every value with its storage class (iterdump cannot be used:
    it decodes TEXT as UTF-8 and the invalid_utf8 rows are not)."""
    digest = hashlib.sha256()
    with connect(path) as db:
        for (sql,) in db.execute("SELECT sql FROM sqlite_schema ORDER BY name"):
            digest.update(sql.encode())
        for table in ("customers", "orders"):
            cols = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            select = ", ".join(f"typeof({c}), hex({c})" for c in cols)
            for row in db.execute(f"SELECT {select} FROM {table} ORDER BY id"):
                digest.update(repr(row).encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DirtyCounts]:
    path = tmp_path_factory.mktemp("dirty") / "dirty.db"
    return path, generate_dirty(path, ROWS, seed=SEED, faults=FAULTS)


@pytest.fixture
def db(built: tuple[Path, DirtyCounts]) -> Iterator[sqlite3.Connection]:
    with connect(built[0]) as conn:
        yield conn


def test_counts_match_the_request(built: tuple[Path, DirtyCounts]) -> None:
    counts = built[1]
    assert counts.rows == {"customers": ROWS, "orders": 2 * ROWS}
    assert counts.faults == dict.fromkeys(KINDS, FAULTS)
    assert set(counts.faulty_keys) == set(KINDS)
    for keys in counts.faulty_keys.values():
        assert keys == sorted(set(keys))
        assert len(keys) == FAULTS


@pytest.mark.parametrize("kind", KINDS)
def test_detector_finds_exactly_the_recorded_keys(
    kind: str, built: tuple[Path, DirtyCounts], db: sqlite3.Connection
) -> None:
    assert DETECTORS[kind](db) == built[1].faulty_keys[kind]


def test_faults_avoid_both_ends_of_big_tables(built: tuple[Path, DirtyCounts]) -> None:
    """A sample of the first or last 1000 rows sees no fault; a full scan is needed."""
    counts = built[1]
    for kind, keys in counts.faulty_keys.items():
        size = counts.rows[FAULT_COLUMNS[kind][0]]
        assert all(1000 < key <= size - 1000 for key in keys), kind


def test_faulty_rows_are_distinct_across_kinds(built: tuple[Path, DirtyCounts]) -> None:
    """With room enough, one row carries one fault, so counts per reason add up."""
    for table in ("customers", "orders"):
        keys = [
            k
            for kind, ks in built[1].faulty_keys.items()
            if FAULT_COLUMNS[kind][0] == table
            for k in ks
        ]
        assert len(keys) == len(set(keys)), table


def test_sqlite_accepts_every_fault(
    db: sqlite3.Connection, built: tuple[Path, DirtyCounts]
) -> None:
    """The file is sound for SQLite: the faults are ones only a stricter target sees."""
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    keys = built[1].faulty_keys
    orphans = sorted(row[1] for row in db.execute("PRAGMA foreign_key_check(orders)"))
    assert orphans == keys["orphan_fk"]
    stored = {
        row[0]
        for row in db.execute(
            "SELECT typeof(name) FROM customers WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(keys["invalid_utf8"] + keys["nul_in_text"]),),
        )
    }
    assert stored == {"text"}


def test_schema_declares_the_documented_types_and_indexes(db: sqlite3.Connection) -> None:
    types = {r[1]: r[2] for r in db.execute("PRAGMA table_info(customers)")}
    assert types == {
        "id": "INTEGER",
        "email": "TEXT",
        "name": "TEXT",
        "signup_ip": "TEXT",
        "profile": "TEXT",
        "joined": "TIMESTAMP",
        "score": "INTEGER",
    }
    types = {r[1]: r[2] for r in db.execute("PRAGMA table_info(orders)")}
    assert types == {
        "id": "INTEGER",
        "customer_id": "INTEGER",
        "amount": "NUMERIC",
        "placed": "DATETIME",
        "note": "TEXT",
    }
    indexes = {r[1]: r[2] for r in db.execute("PRAGMA index_list(customers)")}
    assert indexes == {"customers_email": 1, "customers_email_nocase": 0}


def test_clean_rows_look_real(db: sqlite3.Connection, built: tuple[Path, DirtyCounts]) -> None:
    faulty = {k for ks in built[1].faulty_keys.values() for k in ks}
    rows = db.execute(
        "SELECT id, email, profile, joined, typeof(score), signup_ip FROM customers"
    ).fetchall()
    kinds_of_ip = set()
    for key, email, profile, joined, score_type, ip in rows:
        datetime.strptime(joined, "%Y-%m-%d %H:%M:%S")
        if key in faulty:
            continue
        assert "@" in email
        assert isinstance(json.loads(profile), dict)
        assert score_type == "integer"
        if ip is not None:
            kinds_of_ip.add(ipaddress.ip_address(ip).version)
    assert kinds_of_ip == {4, 6}
    assert set(ids(db, "SELECT DISTINCT typeof(amount) FROM orders")) <= {"real", "integer"}


def test_small_tables_take_faults_anywhere(tmp_path: Path) -> None:
    """Six customer kinds x 3 do not fit in 10 rows: kinds share rows but never a column."""
    path = tmp_path / "small.db"
    counts = generate_dirty(path, 10, seed=2, faults=3)
    with connect(path) as conn:
        for kind in KINDS:
            assert DETECTORS[kind](conn) == counts.faulty_keys[kind], kind
            assert len(counts.faulty_keys[kind]) == 3
    assert set(counts.faulty_keys["nul_in_text"]).isdisjoint(counts.faulty_keys["invalid_utf8"])


def test_zero_faults_gives_a_clean_database(tmp_path: Path) -> None:
    path = tmp_path / "clean.db"
    counts = generate_dirty(path, 100, faults=0)
    assert counts.faulty_keys == {kind: [] for kind in KINDS}
    with connect(path) as conn:
        for kind in KINDS:
            assert DETECTORS[kind](conn) == [], kind


def test_too_many_faults_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.db"
    with pytest.raises(ValueError, match="do not fit"):
        generate_dirty(path, 5, faults=3)  # name needs 6 distinct rows of 5
    assert not path.exists()


def test_same_seed_same_database(tmp_path: Path) -> None:
    a, b, c = (tmp_path / f"{n}.db" for n in "abc")
    first = generate_dirty(a, 4000, seed=5, faults=4)
    assert generate_dirty(b, 4000, seed=5, faults=4) == first
    assert dump_digest(a) == dump_digest(b)
    assert generate_dirty(c, 4000, seed=6, faults=4) != first
    assert dump_digest(c) != dump_digest(a)


def test_cli_prints_json_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.db"
    assert main([str(out), "--rows", "50", "--faults", "2", "--seed", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rows"] == {"customers": 50, "orders": 100}
    assert printed["faults"] == dict.fromkeys(KINDS, 2)
    before = out.read_bytes()
    assert main([str(out), "--rows", "60"]) == 1
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([str(out), "--rows", "60", "--force"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"]["customers"] == 60


def test_cli_runs_as_a_module(tmp_path: Path) -> None:
    out = tmp_path / "mod.db"
    done = subprocess.run(
        [sys.executable, "-m", "bench.gen_dirty", str(out), "--rows", "20", "--faults", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["faults"]["orphan_fk"] == 1
