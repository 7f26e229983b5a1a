"""Profile extras (GIN/opclass indexes, statistics, triggers, functions); the 2truths profile.

The SQL text is checked exactly where quoting matters; everything is also executed
against a real PostgreSQL, twice where re-running must work, and removed again by
the rollback statements, because a statement that only looks right is the defect
the app's own migration guide shipped.
"""

from __future__ import annotations

import sqlite3
import tomllib
from collections.abc import Iterable
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from asyncmig import ddl
from asyncmig.ddl.extras import dollar_quote, trigger_function_name
from asyncmig.plan.model import (
    ColumnPlan,
    FunctionPlan,
    IndexKeyPlan,
    IndexPlan,
    Plan,
    StatisticsPlan,
    TablePlan,
    TriggerPlan,
)
from asyncmig.quoting import qualified, quote_ident

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "profiles" / "2truths1lie.toml"

SCHEMA = 'App "Schema"'
S = quote_ident(SCHEMA)
TABLE_NAME = "Item List"
T = qualified(SCHEMA, TABLE_NAME)
UPDATED = 'updated "at"'  # a column name that needs quoting inside the trigger body


def col(name: str, target_type: str, **kwargs: Any) -> ColumnPlan:
    return ColumnPlan(
        name=name,
        source_name=name,
        source_type="",
        target_type=target_type,
        transform="identity",
        **kwargs,
    )


ITEMS = TablePlan(
    name=TABLE_NAME,
    source_name=TABLE_NAME,
    columns=(
        col("id", "bigint", nullable=False, identity=True),
        col("name", "text"),
        col("status", "text", nullable=False, default="'draft'"),
        col("published_at", "timestamptz"),
        col("view_count", "bigint", default="0"),
        col(UPDATED, "timestamptz", default="CURRENT_TIMESTAMP"),
    ),
    primary_key=("id",),
    primary_key_name="items_pkey",
    indexes=(
        IndexPlan(
            "items_name_trgm", (IndexKeyPlan('"name"', opclass="gin_trgm_ops"),), method="gin"
        ),
        IndexPlan(
            "items_published",
            (
                IndexKeyPlan('"published_at"', descending=True),
                IndexKeyPlan('"view_count"', descending=True),
            ),
            where="\"status\" = 'published'",
        ),
    ),
    statistics=(
        StatisticsPlan("items_status_views", ("status", "view_count")),
        StatisticsPlan(
            "items status kinds", ("status", "published_at"), kinds=("ndistinct", "dependencies")
        ),
    ),
    triggers=(TriggerPlan('items "touch"', UPDATED),),
)

FUNCTION = FunctionPlan(
    "publish_all()",
    "CREATE OR REPLACE FUNCTION {schema}.publish_all() RETURNS integer LANGUAGE plpgsql AS $f$\n"
    "DECLARE n integer;\n"
    "BEGIN\n"
    "    UPDATE {schema}.\"Item List\" SET status = 'published' WHERE status <> 'published';\n"
    "    GET DIAGNOSTICS n = ROW_COUNT;  -- braces {like these} must survive\n"
    "    RETURN n;\n"
    "END $f$",
)

PLAN = Plan(
    source_path="/tmp/items.db",
    schema=SCHEMA,
    tables=(ITEMS,),
    extensions=("pg_trgm",),
    functions=(FUNCTION,),
)


# --- SQL text ---------------------------------------------------------------------------


def test_index_method_and_opclass() -> None:
    assert ddl.index_sql(PLAN, ITEMS)[1:] == [
        f'CREATE INDEX "items_name_trgm" ON {T} USING "gin" ("name" "gin_trgm_ops")',
        (
            f'CREATE INDEX "items_published" ON {T} ("published_at" DESC, "view_count" DESC) '
            "WHERE \"status\" = 'published'"
        ),
    ]


def test_opclass_goes_after_collation_and_before_desc() -> None:
    index = IndexPlan(
        "i",
        (
            IndexKeyPlan(
                'lower("name")', descending=True, collation="C", opclass="text_pattern_ops"
            ),
        ),
        method="BTREE",
    )
    table = replace(ITEMS, indexes=(index,), primary_key=(), primary_key_name=None)
    assert ddl.index_sql(PLAN, table) == [
        f'CREATE INDEX "i" ON {T} ((lower("name")) COLLATE "C" "text_pattern_ops" DESC)'
    ]


def test_statistics_sql() -> None:
    assert ddl.statistics_sql(PLAN, ITEMS) == [
        (
            f'CREATE STATISTICS IF NOT EXISTS {S}."items_status_views" '
            f'ON "status", "view_count" FROM {T}'
        ),
        (
            f'CREATE STATISTICS IF NOT EXISTS {S}."items status kinds" ("ndistinct", "dependencies") '
            f'ON "status", "published_at" FROM {T}'
        ),
    ]


def test_statistics_refuse_one_column_and_unknown_kinds() -> None:
    one = replace(ITEMS, statistics=(StatisticsPlan("s", ("status",)),))
    with pytest.raises(ValueError, match="two columns"):
        ddl.statistics_sql(PLAN, one)
    odd = replace(ITEMS, statistics=(StatisticsPlan("s", ("status", "name"), ("histogram",)),))
    with pytest.raises(ValueError, match="histogram"):
        ddl.statistics_sql(PLAN, odd)


def test_trigger_sql() -> None:
    fn = f'{S}."items ""touch""_fn"'
    assert ddl.trigger_sql(PLAN, ITEMS) == [
        (
            f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS "
            '$asyncmig$ BEGIN NEW."updated ""at""" := now(); RETURN NEW; END $asyncmig$'
        ),
        f'DROP TRIGGER IF EXISTS "items ""touch""" ON {T}',
        (
            f'CREATE TRIGGER "items ""touch""" BEFORE UPDATE ON {T} '
            f"FOR EACH ROW EXECUTE FUNCTION {fn}()"
        ),
    ]


def test_dollar_tag_never_occurs_in_the_body() -> None:
    assert dollar_quote("x") == "$asyncmig$x$asyncmig$"
    assert dollar_quote("a $asyncmig$ b") == "$asyncmig1$a $asyncmig$ b$asyncmig1$"
    # a body ending in "$asyncmig" would otherwise meet the closing tag one character early
    assert dollar_quote("a$asyncmig") == "$asyncmig1$a$asyncmig$asyncmig1$"
    sneaky = replace(ITEMS, triggers=(TriggerPlan("t", "x$asyncmig$; DROP TABLE y; --"),))
    function = ddl.trigger_sql(PLAN, sneaky)[0]
    assert function.endswith("END $asyncmig1$")


def test_long_trigger_names_keep_the_function_suffix() -> None:
    name = "é" * 40  # 80 bytes: PostgreSQL would cut it to 63
    function = trigger_function_name(TriggerPlan(name, "c"))
    assert function.endswith("_fn") and len(function.encode()) <= 63
    assert function.startswith("é" * 30)


def test_function_sql_replaces_only_the_schema_placeholder() -> None:
    [sql] = ddl.function_sql(PLAN)
    assert sql.startswith(f"CREATE OR REPLACE FUNCTION {S}.publish_all()")
    assert f'UPDATE {S}."Item List"' in sql and "{like these}" in sql
    assert "{schema}" not in sql


def test_drop_extras_sql() -> None:
    plan = replace(PLAN, functions=(FUNCTION, FunctionPlan("Plain", "...")))
    assert ddl.drop_extras_sql(plan) == [
        f'DROP TRIGGER IF EXISTS "items ""touch""" ON {T}',
        f'DROP FUNCTION IF EXISTS {S}."items ""touch""_fn"()',
        f'DROP STATISTICS IF EXISTS {S}."items_status_views"',
        f'DROP STATISTICS IF EXISTS {S}."items status kinds"',
        f'DROP FUNCTION IF EXISTS {S}."Plain"',
        f'DROP FUNCTION IF EXISTS {S}."publish_all"()',
    ]


def test_extensions_come_with_the_schema_quoted() -> None:
    """Extensions are created by create_schema_sql, before the tables; not repeated here."""
    assert ddl.create_schema_sql(PLAN)[1:] == ['CREATE EXTENSION IF NOT EXISTS "pg_trgm"']


# --- against PostgreSQL -------------------------------------------------------------


async def run(conn: asyncpg.Connection, statements: Iterable[str]) -> None:
    for sql in statements:
        await conn.execute(sql)


async def extras_in_catalog(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """Names of the triggers, functions and statistics in the test schema."""
    triggers = await conn.fetch(
        "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND NOT t.tgisinternal ORDER BY 1",
        SCHEMA,
    )
    functions = await conn.fetch(
        "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = $1 ORDER BY 1",
        SCHEMA,
    )
    statistics = await conn.fetch(
        "SELECT stxname FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace "
        "WHERE n.nspname = $1 ORDER BY 1",
        SCHEMA,
    )
    return {
        "triggers": [r[0] for r in triggers],
        "functions": [r[0] for r in functions],
        "statistics": [r[0] for r in statistics],
    }


async def test_extras_in_postgresql(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await run(conn, ddl.create_schema_sql(PLAN))
        await conn.execute(ddl.create_table_sql(PLAN, ITEMS))
        await conn.execute(
            f"INSERT INTO {T} (name, status, published_at, {quote_ident(UPDATED)}) "
            "SELECT 'item ' || i, CASE WHEN i % 2 = 0 THEN 'published' "
            "ELSE 'draft' END, now(), '2001-01-01 00:00:00+00' "
            "FROM generate_series(1, 50) i"
        )
        await run(conn, ddl.index_sql(PLAN, ITEMS))
        await run(conn, ddl.constraint_sql(PLAN, ITEMS))
        extras = (
            ddl.function_sql(PLAN) + ddl.statistics_sql(PLAN, ITEMS) + ddl.trigger_sql(PLAN, ITEMS)
        )
        await run(conn, extras)
        await run(conn, extras)  # re-runnable: a resumed run must not fail here
        await conn.execute(ddl.analyze_sql(PLAN, ITEMS))

        indexes = dict(
            await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1", SCHEMA
            )
        )
        assert "USING gin" in indexes["items_name_trgm"]
        assert "gin_trgm_ops" in indexes["items_name_trgm"]
        assert "published_at DESC, view_count DESC" in indexes["items_published"]
        assert "WHERE (status = 'published'::text)" in indexes["items_published"]

        assert await extras_in_catalog(conn) == {
            "triggers": ['items "touch"'],
            "functions": ['items "touch"_fn', "publish_all"],
            "statistics": ["items status kinds", "items_status_views"],
        }
        kinds = await conn.fetchval(
            "SELECT stxkind::text FROM pg_statistic_ext WHERE stxname = 'items status kinds'"
        )
        assert sorted(kinds.strip("{}").split(",")) == ["d", "f"]

        # the trigger keeps the column current; the profile function runs in its schema
        updated = quote_ident(UPDATED)
        before = await conn.fetchval(f"SELECT max({updated}) FROM {T}")
        await conn.execute(f"UPDATE {T} SET view_count = view_count + 1 WHERE id = 1")
        after = await conn.fetchval(f"SELECT {updated} FROM {T} WHERE id = 1")
        now = await conn.fetchval("SELECT now()")
        assert after > before and abs((now - after).total_seconds()) < 60
        assert await conn.fetchval(f"SELECT {S}.publish_all()") == 25
        assert await conn.fetchval(f"SELECT {S}.publish_all()") == 0

        drops = ddl.drop_extras_sql(PLAN)
        await run(conn, drops)
        await run(conn, drops)  # IF EXISTS throughout: a rollback may be run again
        assert await extras_in_catalog(conn) == {"triggers": [], "functions": [], "statistics": []}
        # without the trigger, an UPDATE leaves the column alone
        await conn.execute(f"UPDATE {T} SET {updated} = '2001-01-01', view_count = 0 WHERE id = 2")
        assert (await conn.fetchval(f"SELECT {updated} FROM {T} WHERE id = 2")).year == 2001

        # a rollback after the tables are gone (or never made) still runs
        await run(conn, ddl.drop_tables_sql(PLAN, PLAN.tables))
        await run(conn, drops)
    finally:
        await conn.close()


# --- the 2Truths-1Lie profile ---------------------------------------------------------


def load_profile() -> dict[str, Any]:
    with PROFILE.open("rb") as f:
        return tomllib.load(f)


def named_columns(settings: dict[str, Any]) -> set[str]:
    """Every source column a table section of the profile refers to by name."""
    names = set(settings.get("columns", {}))
    for index in settings.get("indexes", []):
        names |= {c if isinstance(c, str) else c["column"] for c in index["columns"]}
    for statistics in settings.get("statistics", []):
        names |= set(statistics["columns"])
    names |= set(settings.get("triggers", {}))
    return names


@pytest.fixture(scope="module")
def app_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bench.gen_2truths import generate

    path = tmp_path_factory.mktemp("profile") / "app.db"
    generate(path, 500, seed=3)
    return path


def test_profile_names_only_real_tables_and_columns(app_db: Path) -> None:
    profile = load_profile()
    with closing(sqlite3.connect(app_db)) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, settings in profile["tables"].items():
            assert table in tables, table
            columns = {r[1] for r in db.execute(f"PRAGMA table_info({quote_ident(table)})")}
            missing = named_columns(settings) - columns
            assert not missing, f"{table}: {sorted(missing)}"
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    extra = {i["name"] for t in profile["tables"].values() for i in t.get("indexes", [])}
    assert not extra & indexes, "the source's own indexes are migrated; do not re-declare them"


def test_profile_content() -> None:
    """The intent of the app's optimised schema, with its defects fixed."""
    profile = load_profile()
    tables = profile["tables"]
    assert profile["extensions"] == ["pg_trgm"]  # gen_random_uuid() is core: no uuid-ossp
    uuid_keys = {
        ("challenges", "challenge_id"),
        ("guesses", "guess_id"),
        ("token_transactions", "transaction_id"),
        ("user_sessions", "session_id"),
    }
    uuid_refs = {
        ("guesses", "challenge_id"),
        ("guess_history", "challenge_id"),
        ("user_reports", "challenge_id"),
    }
    typed = {(t, c): s for t, ts in tables.items() for c, s in ts.get("columns", {}).items()}
    assert {k for k, s in typed.items() if s.get("type") == "uuid"} == uuid_keys | uuid_refs
    assert all(typed[k]["default"] == "gen_random_uuid()" for k in uuid_keys)
    assert all("default" not in typed[k] for k in uuid_refs)
    assert typed["token_transactions", "metadata"] == {
        "type": "jsonb",
        "default": "'{}'::jsonb",
        "on_invalid_json": "default",
    }
    assert typed["user_sessions", "permissions"] == {
        "type": "jsonb",
        "default": "'[]'::jsonb",
        "on_invalid_json": "default",
    }
    assert typed["user_sessions", "ip_address"]["type"] == "inet"
    assert typed["rate_limit_records", "timestamp"] == {"type": "timestamptz", "epoch": "s"}
    every_index = [i for t in tables.values() for i in t.get("indexes", [])]
    assert not any("CURRENT_TIMESTAMP" in i.get("where", "").upper() for i in every_index)
    [check] = tables["challenges"]["checks"]
    for status in (
        "draft",
        "pending_moderation",
        "moderated",
        "published",
        "rejected",
        "flagged",
        "archived",
    ):
        assert f"'{status}'" in check["expression"]
    assert tables["users"]["triggers"] == {"updated_at": "users_set_updated_at"}
    assert tables["challenges"]["triggers"] == {"updated_at": "challenges_set_updated_at"}
    [function] = profile["functions"]
    assert function["name"] == "cleanup_expired_sessions()"
    assert "GET DIAGNOSTICS" in function["sql"]


def test_profile_parses_with_the_config_reader() -> None:
    from asyncmig.plan.overrides import parse_overrides

    overrides = parse_overrides(load_profile(), str(PROFILE))
    assert overrides.extensions == ("pg_trgm",)
    assert overrides.column("rate_limit_records", "timestamp").epoch == "epoch_s"


async def test_profile_ddl_runs_in_postgresql(app_db: Path, pg_dsn: str) -> None:
    """Every phase of the profiled plan, on empty tables: the profile's SQL is valid SQL.

    Also the function the app runs: it deactivates expired active sessions and says how many.
    """
    from asyncmig.plan.builder import build_plan
    from asyncmig.plan.overrides import load_overrides

    plan = build_plan(app_db, schema="app", overrides=load_overrides(PROFILE))
    conn = await asyncpg.connect(pg_dsn)
    try:
        await run(conn, ddl.create_schema_sql(plan))
        await run(conn, [ddl.create_table_sql(plan, t) for t in plan.tables])
        await run(conn, ddl.function_sql(plan))
        for table in plan.tables:
            await run(conn, ddl.index_sql(plan, table))
            await run(conn, ddl.constraint_sql(plan, table))
        await run(conn, [sql for pair in ddl.foreign_key_sql(plan) for sql in pair])
        for table in plan.tables:
            await run(conn, ddl.statistics_sql(plan, table) + ddl.trigger_sql(plan, table))

        gin = await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'app' "
            "AND indexdef LIKE '%USING gin%' ORDER BY 1"
        )
        assert [r[0] for r in gin] == [
            "idx_challenges_title_gin",
            "idx_token_transactions_metadata_gin",
            "idx_users_name_gin",
        ]
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO app.challenges (creator_id, status, lie_statement_id,"
                " statements_json) VALUES ('1', 'deleted', 's', '[]')"
            )
        await conn.execute(
            "INSERT INTO app.challenges (creator_id, status, lie_statement_id,"
            " statements_json) VALUES ('1', 'pending_moderation', 's', '[]')"
        )
        await conn.execute(
            "INSERT INTO app.user_sessions (user_id, jwt_token, token_hash, expires_at, is_active)"
            " SELECT '1', 'jwt', 'hash' || i, now() + (i - 3.5) * interval '1 day', i <> 1"
            " FROM generate_series(1, 5) i"
        )
        assert await conn.fetchval("SELECT app.cleanup_expired_sessions()") == 2
        assert await conn.fetchval("SELECT app.cleanup_expired_sessions()") == 0
        assert await conn.fetchval("SELECT count(*) FROM app.user_sessions WHERE is_active") == 2
        await run(conn, ddl.drop_extras_sql(plan))
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_proc WHERE pronamespace = 'app'::regnamespace"
            )
            == 0
        )
    finally:
        await conn.close()
