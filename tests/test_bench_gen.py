"""The 2Truths-1Lie generator builds the app's real schema and real value spellings.

The benchmark and the profile tests trust this file to look like the app's database,
so each test names one property of APP_SCHEMA.md and checks it on a small build.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from bench.gen_2truths import TABLES, generate, main

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SPELLINGS = {
    "plain": re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"),
    "micro": re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$"),
    "iso": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$"),
}
BOOLEANS = [
    ("users", "is_active"),
    ("users", "is_premium"),
    ("challenges", "is_merged_video"),
    ("guesses", "is_correct"),
    ("guess_history", "was_correct"),
    ("user_sessions", "is_active"),
]
JSON_COLUMNS = [
    ("challenges", "statements_json"),
    ("challenges", "merged_video_metadata_json"),
    ("challenges", "tags_json"),
    ("token_transactions", "metadata"),
    ("user_sessions", "permissions"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("gen") / "app.db"
    return path, generate(path, 3000, seed=7)


@pytest.fixture
def db(built: tuple[Path, dict[str, int]]) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{built[0]}?mode=ro", uri=True)
    yield conn
    conn.close()


def column_types(db: sqlite3.Connection, table: str) -> dict[str, str]:
    return {row[1]: row[2] for row in db.execute(f"PRAGMA table_info({table})")}


def values(db: sqlite3.Connection, sql: str) -> list[object]:
    return [row[0] for row in db.execute(sql)]


def test_nine_tables_with_declared_types(db: sqlite3.Connection) -> None:
    """The declared types are the app's own, TEXT vs INTEGER user_id included."""
    names = set(values(db, "SELECT name FROM sqlite_master WHERE type = 'table'"))
    assert set(TABLES) <= names
    assert column_types(db, "users")["is_active"] == "BOOLEAN"
    assert column_types(db, "users")["created_at"] == "TIMESTAMP"
    assert column_types(db, "guess_history")["user_id"] == "INTEGER"
    assert column_types(db, "guesses")["user_id"] == "TEXT"
    assert column_types(db, "guesses")["response_time_seconds"] == "REAL"
    assert column_types(db, "rate_limit_records")["timestamp"] == "REAL"
    assert column_types(db, "token_transactions")["transaction_id"] == "TEXT"


def test_indexes_are_named_like_the_app(db: sqlite3.Connection) -> None:
    """Named indexes exist (e.g. idx_users_email), plus UNIQUE (challenge_id, user_id)."""
    indexes = set(values(db, "SELECT name FROM sqlite_master WHERE type = 'index'"))
    assert {"idx_users_email", "idx_user_sessions_active", "idx_user_reports_moderation"} <= indexes
    unique = [r for r in db.execute("PRAGMA index_list(user_reports)") if r[2] == 1]
    cols = [values(db, f"SELECT name FROM pragma_index_info('{r[1]}')") for r in unique]
    assert ["challenge_id", "user_id"] in cols


def test_counts_match_the_tables(
    db: sqlite3.Connection, built: tuple[Path, dict[str, int]]
) -> None:
    """The returned counts are the rows really written, and add up to about the request."""
    counts = built[1]
    assert set(counts) == set(TABLES)
    for table, count in counts.items():
        assert values(db, f"SELECT count(*) FROM {table}") == [count]
    assert 2700 <= sum(counts.values()) <= 3300


def test_three_timestamp_spellings_within_a_table(db: sqlite3.Connection) -> None:
    """Every timestamp has one of the app's three spellings, and all three occur."""
    for table, column in [("users", "created_at"), ("guesses", "submitted_at")]:
        seen = {
            name
            for v in values(db, f"SELECT {column} FROM {table}")
            for name, rx in SPELLINGS.items()
            if rx.match(str(v))
        }
        assert seen == set(SPELLINGS), (table, column)


def test_rate_limit_timestamp_is_real_epoch(db: sqlite3.Connection) -> None:
    """timestamp holds REAL epoch seconds with a fraction."""
    kinds = values(db, "SELECT DISTINCT typeof(timestamp) FROM rate_limit_records")
    assert kinds == ["real"]
    whole = values(
        db,
        "SELECT count(*) = 0 FROM rate_limit_records WHERE timestamp != "
        "CAST(timestamp AS INTEGER) AND timestamp > 1.6e9",
    )
    assert whole == [0]


def test_booleans_are_zero_or_one(db: sqlite3.Connection) -> None:
    """Booleans are stored as the integers 0 and 1 only."""
    for table, column in BOOLEANS:
        assert set(values(db, f"SELECT DISTINCT {column} FROM {table}")) <= {0, 1}, column


def test_id_spellings(db: sqlite3.Connection) -> None:
    """Sessions use 32 upper-case hex digits; transactions, guesses, challenges use uuid4 text."""
    assert all(
        re.fullmatch(r"[0-9A-F]{32}", str(v))
        for v in values(db, "SELECT session_id FROM user_sessions")
    )
    for table, column in [
        ("token_transactions", "transaction_id"),
        ("guesses", "guess_id"),
        ("challenges", "challenge_id"),
    ]:
        assert all(UUID.match(str(v)) for v in values(db, f"SELECT {column} FROM {table}"))


def test_json_columns_are_valid(db: sqlite3.Connection) -> None:
    """Every JSON text column parses; statements are arrays of three with one lie."""
    for table, column in JSON_COLUMNS:
        bad = values(
            db,
            f"SELECT count(*) FROM {table} WHERE {column} IS NOT NULL AND NOT json_valid({column})",
        )
        assert bad == [0], column
    shapes = set(
        values(
            db,
            "SELECT json_array_length(statements_json) || ':' || "
            "(SELECT sum(value ->> 'is_lie') FROM json_each(statements_json))"
            " FROM challenges",
        )
    )
    assert shapes == {"3:1"}


def test_ip_addresses_are_v4_and_v6(db: sqlite3.Connection) -> None:
    """Both address families occur."""
    ips = [
        str(v)
        for v in values(db, "SELECT ip_address FROM user_sessions WHERE ip_address IS NOT NULL")
    ]
    assert any(":" in ip for ip in ips)
    assert any(re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip) for ip in ips)


def test_constraints_hold(db: sqlite3.Connection) -> None:
    """Foreign keys hold, balances are never negative, every status is a real one."""
    assert values(db, "PRAGMA foreign_key_check") == []
    assert values(db, "SELECT min(balance) >= 0 FROM token_balances") == [1]
    assert values(
        db, "SELECT min(min(balance_before, balance_after)) >= 0 FROM token_transactions"
    ) == [1]
    statuses = set(values(db, "SELECT DISTINCT status FROM challenges"))
    assert statuses == {
        "draft",
        "pending_moderation",
        "moderated",
        "published",
        "rejected",
        "flagged",
        "archived",
    }


def test_unicode_names(db: sqlite3.Connection) -> None:
    """Names and titles carry accents, CJK and emoji."""
    text = " ".join(
        str(v) for v in values(db, "SELECT name FROM users UNION ALL SELECT title FROM challenges")
    )
    assert "é" in text and "日本語" in text and "🎉" in text


def test_older_layout_orders_columns_differently(tmp_path: Path) -> None:
    """Older files gained name by ALTER TABLE, so it comes after last_login."""
    generate(tmp_path / "old.db", 300, older_layout=True)
    generate(tmp_path / "new.db", 300)
    layouts = []
    for name in ("old.db", "new.db"):
        with closing(sqlite3.connect(tmp_path / name)) as conn:
            layouts.append(list(column_types(conn, "users")))
    old, new = layouts
    assert sorted(old) == sorted(new) and old != new
    assert old.index("name") > old.index("is_active")
    assert new.index("name") < new.index("is_active")


def test_cli_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An existing file is kept unless --force is given."""
    out = tmp_path / "app.db"
    out.write_bytes(b"keep me")
    assert main([str(out), "--rows", "100"]) == 1
    assert out.read_bytes() == b"keep me"
    assert "--force" in capsys.readouterr().err
    assert main([str(out), "--rows", "100", "--force"]) == 0
    with closing(sqlite3.connect(out)) as conn:
        assert values(conn, "SELECT count(*) > 0 FROM users") == [1]
