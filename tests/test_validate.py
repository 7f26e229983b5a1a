"""Pre-flight checks against real SQLite files and a real PostgreSQL: every problem a run
would stop on is reported as a failed check with a fix, and nothing raises."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from asyncmig.check.preflight import (
    Check,
    Intent,
    checks_json,
    failed,
    human_size,
    render_text,
    required_extensions,
    validate,
)
from asyncmig.errors import MigrationError, TargetError
from asyncmig.plan.builder import build_plan
from asyncmig.plan.model import ColumnPlan, Plan, TablePlan
from asyncmig.run import run_migration
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target, scrub
from tests.fix_pg import as_user, execute, role_without_create
from tests.fix_run import migrate
from tests.sources import build_kitchen_sink

PG_CHECKS = ("PostgreSQL version", "privileges", "history", "disk space", "existing objects")


def target(dsn: str) -> Target:
    return Target(dsn, scrub(dsn), "--pg")


def by_name(checks: list[Check]) -> dict[str, Check]:
    names = [c.name for c in checks]
    assert len(names) == len(set(names)), names
    return {c.name: c for c in checks}


def corrupt(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # overwrite the second page, as test_cli does
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
async def plain_role(pg_dsn: str) -> AsyncIterator[str]:
    """A LOGIN role with no CREATE on the test database or its public schema."""
    async with role_without_create(pg_dsn, "v") as role:
        yield role


async def test_kitchen_sink_passes_on_a_fresh_database(tmp_path: Path, pg_dsn: str) -> None:
    source = build_kitchen_sink(tmp_path / "a.db")
    checks = await validate(source, target(pg_dsn), build_plan(source))
    found = by_name(checks)
    assert not failed(checks), render_text(checks)
    for name in ("SQLite file", "SQLite integrity", "PostgreSQL connection", *PG_CHECKS):
        assert found[name].status in ("pass", "warn"), found[name]
    assert found["disk space"].status in ("pass", "warn")
    assert "1.5x" in found["disk space"].message
    assert found["PostgreSQL version"].status == "pass"
    assert found["PostgreSQL version"].message.startswith("PostgreSQL 1")
    assert "kB" in found["SQLite file"].message


async def test_output_forms(tmp_path: Path, pg_dsn: str) -> None:
    """Text: one line per check, status first, fix after a dash; JSON: plain strings."""
    source = build_kitchen_sink(tmp_path / "a.db")
    plan = replace(build_plan(source), extensions=("no_such_extension",))
    checks = await validate(source, target(pg_dsn), plan)
    lines = render_text(checks).splitlines()
    assert len(lines) == len(checks)
    assert lines[0].startswith("PASS  SQLite file")
    bad = next(line for line in lines if "no_such_extension" in line)
    assert bad.startswith("FAIL  extension no_such_extension") and " — fix: install " in bad
    data = checks_json(checks)
    assert json.loads(json.dumps(data)) == data
    assert set(data[0]) == {"name", "status", "message", "fix"}


async def test_missing_file(tmp_path: Path, pg_dsn: str) -> None:
    checks = await validate(tmp_path / "nope.db", target(pg_dsn), None)
    found = by_name(checks)
    assert found["SQLite file"].status == "fail"
    assert "no such file" in found["SQLite file"].message
    assert found["SQLite file"].fix
    assert found["SQLite integrity"].status == "fail"
    assert found["PostgreSQL connection"].status == "pass"
    for name in ("extensions", "privileges", "disk space", "existing objects"):
        assert found[name].status == "fail" and "not checked" in found[name].message
    assert failed(checks)


async def test_corrupt_file(tmp_path: Path, pg_dsn: str) -> None:
    source = corrupt(build_kitchen_sink(tmp_path / "corrupt.db"))
    checks = await validate(source, target(pg_dsn), None)
    found = by_name(checks)
    assert "fail" in (found["SQLite file"].status, found["SQLite integrity"].status)
    assert failed(checks)


async def test_not_a_sqlite_file(tmp_path: Path, pg_dsn: str) -> None:
    source = tmp_path / "notes.db"
    source.write_text("hello, this is not a database\n" * 10)
    found = by_name(await validate(source, target(pg_dsn), None))
    assert found["SQLite file"].status == "fail"
    assert "not a SQLite database" in found["SQLite file"].message


async def test_existing_table(tmp_path: Path, pg_dsn: str) -> None:
    source = build_kitchen_sink(tmp_path / "a.db")
    await execute(
        pg_dsn,
        'CREATE TABLE "user" (id int)',
        'CREATE TABLE "values" (id int)',
        'INSERT INTO "values" SELECT generate_series(1, 100000)',
    )
    checks = await validate(source, target(pg_dsn), build_plan(source))
    existing = by_name(checks)["existing objects"]
    assert existing.status == "fail"
    assert '"user"' in existing.message and '"values"' in existing.message
    assert "--replace" in existing.fix
    assert failed(checks)
    kept = by_name(checks)["replaced tables kept"]  # the space a --replace keeps using
    conn = await asyncpg.connect(pg_dsn)
    try:
        size = await conn.fetchval("SELECT pg_total_relation_size('public.values')")
    finally:
        await conn.close()
    assert kept.status == "warn" and f"2 replaced relations ({human_size(size)})" in kept.message
    assert size > 3_000_000 and "--no-backup-schema" in kept.fix


async def test_existing_table_in_another_schema(tmp_path: Path, pg_dsn: str) -> None:
    """A target schema that does not exist yet: nothing exists, CREATE on the database suffices."""
    source = build_kitchen_sink(tmp_path / "a.db")
    await execute(pg_dsn, 'CREATE TABLE "user" (id int)')
    found = by_name(await validate(source, target(pg_dsn), build_plan(source, schema="Fresh")))
    assert found["existing objects"].status == "pass"
    assert found["privileges"].status == "pass"
    assert "schema" in found["privileges"].message


async def test_missing_extension(tmp_path: Path, pg_dsn: str) -> None:
    source = build_kitchen_sink(tmp_path / "a.db")
    plan = replace(build_plan(source), extensions=("no_such_extension",))
    checks = await validate(source, target(pg_dsn), plan)
    extension = by_name(checks)["extension no_such_extension"]
    assert extension.status == "fail"
    assert "not available" in extension.message
    assert extension.fix.startswith("install ")
    assert failed(checks)


async def test_contrib_extension_as_superuser(tmp_path: Path, pg_dsn: str) -> None:
    source = build_kitchen_sink(tmp_path / "a.db")
    plan = replace(build_plan(source), extensions=("pg_trgm",))
    extension = by_name(await validate(source, target(pg_dsn), plan))["extension pg_trgm"]
    if "not available" in extension.message:
        pytest.skip("the server has no contrib extensions")
    assert extension.status == "pass", extension
    await execute(pg_dsn, "CREATE EXTENSION pg_trgm")
    installed = by_name(await validate(source, target(pg_dsn), plan))["extension pg_trgm"]
    assert installed.status == "pass" and "installed" in installed.message


async def test_role_without_create_privilege(tmp_path: Path, pg_dsn: str, plain_role: str) -> None:
    source = build_kitchen_sink(tmp_path / "a.db")
    plan = replace(build_plan(source), extensions=("pg_trgm",))
    checks = await validate(source, target(as_user(pg_dsn, plain_role)), plan)
    found = by_name(checks)
    assert found["PostgreSQL connection"].status == "pass"
    assert plain_role in found["PostgreSQL connection"].message
    privileges = found["privileges"]
    assert privileges.status == "fail", privileges
    assert privileges.fix == f'GRANT CREATE ON SCHEMA "public" TO "{plain_role}";'
    extension = found["extension pg_trgm"]
    assert extension.status == "fail"
    if "not available" not in extension.message:
        assert extension.fix.startswith('ask a superuser to run CREATE EXTENSION "pg_trgm"')
    assert found["disk space"].status in ("pass", "warn")  # data_directory needs privileges
    assert failed(checks)


async def test_trusted_extension_with_create_on_database(
    tmp_path: Path, pg_dsn: str, plain_role: str
) -> None:
    """pg_trgm is trusted (13+): CREATE on the database lets an ordinary role create it."""
    database = urlsplit(pg_dsn).path.lstrip("/")
    await execute(
        pg_dsn,
        f'GRANT CREATE ON DATABASE "{database}" TO "{plain_role}"',
        f'GRANT CREATE ON SCHEMA public TO "{plain_role}"',
    )
    source = build_kitchen_sink(tmp_path / "a.db")
    plan = replace(build_plan(source), extensions=("pg_trgm",))
    found = by_name(await validate(source, target(as_user(pg_dsn, plain_role)), plan))
    assert found["privileges"].status == "pass", found["privileges"]
    if "not available" in found["extension pg_trgm"].message:
        pytest.skip("the server has no contrib extensions")
    assert found["extension pg_trgm"].status == "pass", found["extension pg_trgm"]


async def test_history_schema_must_be_usable(tmp_path: Path, pg_dsn: str, plain_role: str) -> None:
    """validate fails exactly when a run would: here, on the history schema, until fixed."""
    await execute(pg_dsn, f'GRANT CREATE ON SCHEMA public TO "{plain_role}"')
    source = build_kitchen_sink(tmp_path / "a.db")
    dsn = as_user(pg_dsn, plain_role)
    found = by_name(await validate(source, target(dsn), build_plan(source)))
    assert found["privileges"].status == "pass", found["privileges"]
    assert found["history"].status == "fail", found["history"]
    assert found["history"].fix.endswith(f'CREATE SCHEMA "asyncmig" AUTHORIZATION "{plain_role}";')
    refused = await run_as(source, dsn)
    assert isinstance(refused, TargetError) and "history" in refused.message
    # the history made by another user: usable once the suggested GRANT is given
    await execute(
        pg_dsn,
        "CREATE SCHEMA asyncmig",
        f'GRANT USAGE, CREATE ON SCHEMA asyncmig TO "{plain_role}"',
    )
    assert await run_as(build_kitchen_sink(tmp_path / "b.db"), pg_dsn, schema="other") is None
    found = by_name(await validate(source, target(dsn), build_plan(source)))
    assert found["history"].status == "fail", found["history"]
    assert found["history"].fix.startswith("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES")
    await execute(pg_dsn, found["history"].fix)
    checks = await validate(source, target(dsn), build_plan(source))
    assert not failed(checks), render_text(checks)
    assert await run_as(source, dsn) is None  # and the run works, as validate said


async def run_as(source: Path, dsn: str, schema: str = "public") -> MigrationError | None:
    try:
        await run_migration(RunSettings(source, target(dsn), schema))
    except MigrationError as exc:
        return exc
    return None


async def test_unreachable_server(tmp_path: Path) -> None:
    source = build_kitchen_sink(tmp_path / "a.db")
    dsn = "postgresql://x:s3cret-pw@127.0.0.1:1/x"
    plan = replace(build_plan(source), extensions=("pg_trgm",))
    checks = await validate(source, target(dsn), plan)
    found = by_name(checks)
    assert found["SQLite file"].status == "pass"
    assert found["PostgreSQL connection"].status == "fail"
    assert (
        "cannot connect to postgresql://x:***@127.0.0.1:1/x"
        in found["PostgreSQL connection"].message
    )
    for name in (*PG_CHECKS, "extension pg_trgm"):
        assert found[name].status != "pass", found[name]
    assert "s3cret-pw" not in render_text(checks) + json.dumps(checks_json(checks))
    assert all("\n" not in c.message for c in checks)
    unplanned = by_name(await validate(tmp_path / "nope.db", target(dsn), None))
    assert unplanned["extensions"].status == "fail"


def test_pgcrypto_only_before_13() -> None:
    column = ColumnPlan("id", "id", "TEXT", "uuid", "uuid", default="gen_random_uuid()")
    table = TablePlan("t", "t", (column,))
    plan = Plan("x.db", "public", (table,), extensions=("pg_trgm",))
    assert required_extensions(plan, 120000) == ["pg_trgm", "pgcrypto"]
    assert required_extensions(plan, 130000) == ["pg_trgm"]
    plain = replace(plan, tables=(TablePlan("t", "t", (replace(column, default=None),)),))
    assert required_extensions(plain, 120000) == ["pg_trgm"]


def test_render_text_and_failed() -> None:
    checks = [Check("a", "pass", "fine", "unused"), Check("longer", "warn", "hm\nm", "do x")]
    assert render_text(checks) == "PASS  a       fine\nWARN  longer  hm m — fix: do x"
    assert not failed(checks)
    assert failed([*checks, Check("b", "fail", "no")])
    assert human_size(512) == "512 B" and human_size(1_500_000) == "1.5 MB"


async def test_a_read_only_target_fails_validate_as_it_stops_a_run(
    tmp_path: Path, pg_dsn: str, plain_role: str
) -> None:
    """A role (or a standby) whose sessions are read-only: validate passed every check,
    and the run stopped at its first CREATE."""
    source = build_kitchen_sink(tmp_path / "a.db")
    await execute(
        pg_dsn,
        f'GRANT CREATE ON SCHEMA public TO "{plain_role}"',
        f'ALTER ROLE "{plain_role}" SET default_transaction_read_only = on',
    )
    checks = await validate(source, target(as_user(pg_dsn, plain_role)), build_plan(source))
    found = by_name(checks)["privileges"]
    assert found.status == "fail", render_text(checks)
    assert "its sessions are read-only" in found.message


async def test_validate_judges_existing_tables_as_a_replace_run_would(
    tmp_path: Path, pg_dsn: str
) -> None:
    """`validate && run` with one job file saying ``replace = true``: validate failed on
    the tables the run replaces (and took no --replace), so the pair always failed. A
    dependent of the application still fails it, as it stops `run --replace`."""
    source = build_kitchen_sink(tmp_path / "a.db")
    plan = build_plan(source)
    await migrate(source, pg_dsn)
    plain = by_name(await validate(source, target(pg_dsn), plan))["existing objects"]
    replacing = await validate(source, target(pg_dsn), plan, Intent(replace=True))
    assert (plain.status, by_name(replacing)["existing objects"].status) == ("fail", "warn")
    assert not failed(replacing), render_text(replacing)
    await execute(pg_dsn, 'CREATE VIEW app_view AS SELECT id FROM "user"')
    blocked = by_name(await validate(source, target(pg_dsn), plan, Intent(replace=True)))
    assert blocked["dependent objects"].status == "fail"
    cascading = await validate(source, target(pg_dsn), plan, Intent(replace=True, cascade=True))
    assert by_name(cascading)["dependent objects"].status == "warn"
