"""`run --config profiles/2truths1lie.toml` on a generated app database: the guide's schema."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from asyncmig.plan.overrides import load_overrides
from bench.gen_2truths import generate
from tests.compare import assert_all_equal
from tests.fix_run import migrate

PROFILE = Path(__file__).resolve().parent.parent / "profiles" / "2truths1lie.toml"


@pytest.fixture
def app_db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    generate(path, 4000, seed=3)
    conn = sqlite3.connect(path)
    # the odd broken metadata the guide's migrator silently rewrote: here replaced by the
    # column default and counted
    conn.execute("UPDATE token_transactions SET metadata = '{broken' WHERE rowid IN (1, 2)")
    conn.commit()
    conn.close()
    return path


async def test_the_profile_yields_the_optimised_schema(app_db: Path, pg_dsn: str) -> None:
    report = await migrate(app_db, pg_dsn, overrides=load_overrides(PROFILE))
    assert all(c.ok for c in report.checks)
    conn = await asyncpg.connect(pg_dsn)
    try:
        types = {
            (r[0], r[1]): r[2]
            for r in await conn.fetch(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public'"
            )
        }
        indexes = {
            r[0]: r[1]
            for r in await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            )
        }
        statistics = {r[0] for r in await conn.fetch("SELECT stxname FROM pg_statistic_ext")}
        before = await conn.fetchval("SELECT updated_at FROM users WHERE id = 1")
        await conn.execute("UPDATE users SET score = score + 1 WHERE id = 1")
        after = await conn.fetchval("SELECT updated_at FROM users WHERE id = 1")
        await conn.execute(
            "UPDATE user_sessions SET is_active = true, "
            "expires_at = now() - interval '1 day' WHERE ctid IN "
            "(SELECT ctid FROM user_sessions LIMIT 3)"
        )
        expired = await conn.fetchval("SELECT cleanup_expired_sessions()")
        again = await conn.fetchval("SELECT cleanup_expired_sessions()")
        broken = await conn.fetch(
            "SELECT metadata::text FROM token_transactions WHERE metadata = '{}'::jsonb"
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "UPDATE challenges SET status = 'deleted' WHERE ctid = "
                "(SELECT ctid FROM challenges LIMIT 1)"
            )
        new_id = await conn.fetchval(
            "INSERT INTO token_transactions (user_id, transaction_type, amount, balance_before, "
            "balance_after, description) VALUES ('1', 'spend', 1, 2, 1, 'x') "
            "RETURNING transaction_id"
        )
        history = await conn.fetchrow(
            "SELECT replaced FROM asyncmig.run_tables WHERE table_name = 'token_transactions'"
        )
    finally:
        await conn.close()
    assert types[("challenges", "challenge_id")] == "uuid"
    assert types[("user_sessions", "session_id")] == "uuid"
    assert types[("token_transactions", "metadata")] == "jsonb"
    assert types[("user_sessions", "permissions")] == "jsonb"
    assert types[("user_sessions", "ip_address")] == "inet"
    assert types[("users", "is_active")] == "boolean"
    assert types[("guesses", "submitted_at")] == "timestamp with time zone"
    assert "gin_trgm_ops" in indexes["idx_users_name_gin"]
    assert "gin_trgm_ops" in indexes["idx_challenges_title_gin"]
    assert "USING gin (metadata)" in indexes["idx_token_transactions_metadata_gin"]
    assert "WHERE (status = 'published'::text)" in indexes["idx_challenges_active_published"]
    assert "(published_at DESC, view_count DESC)" in indexes["idx_challenges_active_published"]
    assert "(challenge_id, user_id)" in indexes["idx_guesses_challenge_user"]
    assert {"stat_challenges_creator_status", "stat_guesses_challenge_correct"} <= statistics
    assert after > before
    assert expired >= 3 and again == 0
    assert len(broken) >= 2
    assert new_id is not None  # gen_random_uuid() default
    assert json.loads(history["replaced"]) == {"metadata: default": 2}
    assert report.replaced == 2


async def test_every_other_value_arrives_unchanged(app_db: Path, pg_dsn: str) -> None:
    """Apart from the two replaced documents, every value matches the oracle."""
    conn = sqlite3.connect(app_db)
    conn.execute("UPDATE token_transactions SET metadata = '{}' WHERE rowid IN (1, 2)")
    conn.commit()
    conn.close()
    report = await migrate(app_db, pg_dsn, overrides=load_overrides(PROFILE))
    assert report.replaced == 0
    assert await assert_all_equal(app_db, pg_dsn, report.plan) == report.rows
