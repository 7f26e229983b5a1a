"""The reference migrator's five steps, as asyncmig commands, through the command line
(in-process: exit codes, output, and what the commands left in PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import asyncpg

from tests.fix_cli import Cli, one_error_line, run_cli
from tests.fix_pg import as_user, execute, fetch, fetch_async, role_without_create
from tests.sources import build_kitchen_sink


def test_validate_schema_data_check_status(cli: Cli, tmp_path: Path, pg_dsn: str) -> None:
    """validate -> schema -> data -> check -> status, with --postgres as the guide spells it."""
    source = build_kitchen_sink(tmp_path / "app.db")
    common = ["--sqlite", str(source), "--postgres", pg_dsn]
    logs = tmp_path / "logs"

    validated = cli("validate", *common, log_dir=logs)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "FAIL" not in validated.stdout and "PASS  existing objects" in validated.stdout

    schema = cli("schema", *common, log_dir=logs)
    assert schema.returncode == 0, schema.stderr
    assert fetch(pg_dsn, 'SELECT count(*) FROM "user"')[0][0] == 0  # tables, no data yet
    assert not fetch(pg_dsn, "SELECT 1 FROM pg_indexes WHERE indexname = 'user by name'")

    again = cli("validate", *common, log_dir=logs)
    assert again.returncode == 6 and "FAIL  existing objects" in again.stdout

    data = cli("data", *common, log_dir=logs)
    assert data.returncode == 0, data.stderr
    assert fetch(pg_dsn, 'SELECT count(*) FROM "user"')[0][0] == 3
    assert fetch(pg_dsn, "SELECT 1 FROM pg_indexes WHERE indexname = 'user by name'")

    checked = cli("check", *common, log_dir=logs)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.rstrip().endswith("0 failed")

    status = cli("status", "--pg", pg_dsn, "--output", "json", log_dir=logs)  # no --sqlite
    runs = json.loads(status.stdout)["runs"]
    assert [(r["command"], r["status"]) for r in runs] == [
        ("data", "succeeded"),
        ("schema", "succeeded"),
    ]
    loaded = {t["table_name"]: t["loaded_rows"] for t in runs[0]["tables"]}
    assert loaded["user"] == 3 and loaded["values"] == 5
    assert len(runs[0]["source_sha256"]) == 64

    log_files = sorted(logs.glob("migration_*.log"))
    assert log_files, "each writing command leaves a JSON-lines log"
    events = [json.loads(line) for f in log_files for line in f.read_text().splitlines()]
    planned = [e for e in events if e["event"] == "column_planned"]
    assert any(
        e["table"] == "values" and e["column"] == "doc" and e["target_type"] == "jsonb"
        for e in planned
    )
    assert (
        pg_dsn.split("@")[0] not in "".join(f.read_text() for f in log_files)
        or ":" not in pg_dsn.split("//")[1].split("@")[0]
    )


def test_data_refuses_without_schema_and_when_not_empty(
    cli: Cli, tmp_path: Path, pg_dsn: str
) -> None:
    source = build_kitchen_sink(tmp_path / "app.db")
    common = ["--sqlite", str(source), "--pg", pg_dsn]
    logs = tmp_path / "logs"
    missing = cli("data", *common, log_dir=logs)
    assert missing.returncode == 4 and "asyncmig schema" in missing.stderr
    assert cli("schema", *common, log_dir=logs).returncode == 0
    assert cli("data", *common, log_dir=logs).returncode == 0
    full = cli("data", *common, log_dir=logs)
    assert full.returncode == 4 and "not empty" in full.stderr
    replaced = cli("data", *common, "--replace", log_dir=logs)
    assert replaced.returncode == 0, replaced.stderr
    assert fetch(pg_dsn, 'SELECT count(*) FROM "values"')[0][0] == 5
    # the application's key onto a loaded table and its view over one: emptying the
    # tables dropped their keys CASCADE, and these silently with them
    fetch(pg_dsn, "CREATE SCHEMA app")
    fetch(pg_dsn, 'CREATE TABLE app.notes (user_id bigint REFERENCES public."user"(id))')
    fetch(pg_dsn, 'CREATE VIEW app.names AS SELECT id, email FROM public."user" GROUP BY id')
    refused = cli("data", *common, "--replace", log_dir=logs)
    assert refused.returncode == 4
    assert "objects of the application depend on them: view app.names" in refused.stderr
    assert fetch(pg_dsn, 'SELECT count(*) FROM "values"')[0][0] == 5  # nothing emptied
    cascaded = cli("data", *common, "--replace", "--cascade", log_dir=logs)
    assert cascaded.returncode == 0, cascaded.stderr
    assert "dropped with --cascade: view app.names" in cascaded.stdout + cascaded.stderr
    assert fetch(
        pg_dsn, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'app.notes'::regclass"
    ) == [(0,)]


def test_check_fails_on_a_changed_target(cli: Cli, tmp_path: Path, pg_dsn: str) -> None:
    """Rows deleted behind the tool's back, a sequence moved back: exit 6, named."""
    source = build_kitchen_sink(tmp_path / "app.db")
    common = ["--sqlite", str(source), "--pg", pg_dsn]
    assert cli("full", *common, log_dir=tmp_path).returncode == 0
    fetch(pg_dsn, "DELETE FROM membership WHERE user_id = 2")
    fetch(pg_dsn, """SELECT setval(pg_get_serial_sequence('"user"', 'id'), 1)""")
    checked = cli("check", *common, log_dir=tmp_path)
    assert checked.returncode == 6
    failures = [line for line in checked.stdout.splitlines() if line.endswith("FAIL")]
    assert any("membership" in line for line in failures)
    assert any("user" in line and "sequence" in line for line in failures)


def test_a_failed_run_is_recorded_and_leaves_no_tables(
    cli: Cli, tmp_path: Path, pg_dsn: str
) -> None:
    """A value that does not fit its forced type stops the run (exit 5, one line naming
    it) and drops every table it created, the one that loaded too; the history says so."""
    source = tmp_path / "bad.db"
    conn = sqlite3.connect(source)
    conn.executescript(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER);"
        "CREATE TABLE u (id INTEGER PRIMARY KEY);"
        "INSERT INTO t VALUES (1, 1), (2, 'five'); INSERT INTO u VALUES (1);"
    )
    conn.close()
    config = tmp_path / "force.toml"
    config.write_text('[tables.t.columns.n]\ntype = "bigint"\n')
    result = cli(
        "run",
        "--sqlite",
        str(source),
        "--pg",
        pg_dsn,
        "--config",
        str(config),
        "--on-error",
        "fail",
        log_dir=tmp_path,
    )
    assert result.returncode == 5, result.stderr
    assert "t.n at key 2" in one_error_line(result.stderr) and "five" in result.stderr
    assert not fetch(pg_dsn, "SELECT 1 FROM pg_tables WHERE schemaname = 'public'")
    runs = fetch(pg_dsn, "SELECT status, error FROM asyncmig.runs")
    assert [r["status"] for r in runs] == ["failed"]
    assert "t.n at key 2" in runs[0]["error"]
    assert not fetch(pg_dsn, "SELECT 1 FROM asyncmig.run_tables")


def test_the_rollback_script_removes_the_run(cli: Cli, tmp_path: Path, pg_dsn: str) -> None:
    source = build_kitchen_sink(tmp_path / "app.db")
    result = cli("run", "--sqlite", str(source), "--pg", pg_dsn, log_dir=tmp_path)
    assert result.returncode == 0
    script = next(tmp_path.glob("asyncmig_rollback_run*.sql")).read_text()

    async def apply() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(script)
        finally:
            await conn.close()

    asyncio.run(apply())
    assert not fetch(pg_dsn, "SELECT 1 FROM pg_tables WHERE schemaname = 'public'")
    assert [r[0] for r in fetch(pg_dsn, "SELECT status FROM asyncmig.runs")] == ["rolled back"]


async def test_a_user_with_rights_on_its_schema_only(tmp_path: Path, pg_dsn: str) -> None:
    """No CREATE on the database: runs where its schemas exist, else a clear error.

    (A process: the role is held by an async context manager around the commands.)"""
    env = {"ASYNCMIG_LOG_DIR": str(tmp_path)}
    async with role_without_create(pg_dsn, "s", "GRANT CREATE ON SCHEMA public TO {role}") as role:
        source = build_kitchen_sink(tmp_path / "app.db")
        dsn = as_user(pg_dsn, role)
        refused = run_cli("run", "--sqlite", str(source), "--pg", dsn, env=env)
        assert refused.returncode == 4
        assert "CREATE SCHEMA asyncmig AUTHORIZATION" in refused.stderr
        await execute(pg_dsn, f'CREATE SCHEMA asyncmig AUTHORIZATION "{role}"')
        done = run_cli("run", "--sqlite", str(source), "--pg", dsn, env=env)
        assert done.returncode == 0, done.stderr
        # no stage, so no backup schema: --replace would drop the old tables before the
        # load, and a failure (or a signal) left neither the old nor the new ones
        before = await fetch_async(pg_dsn, 'SELECT count(*) FROM public."user"')
        again = run_cli("run", "--sqlite", str(source), "--pg", dsn, "--replace", env=env)
        assert again.returncode == 4, again.stderr
        assert "safely: without CREATE on the database" in again.stderr
        assert await fetch_async(pg_dsn, 'SELECT count(*) FROM public."user"') == before


def test_the_rollback_command_undoes_a_run_safely(cli: Cli, tmp_path: Path, pg_dsn: str) -> None:
    source = build_kitchen_sink(tmp_path / "app.db")
    assert cli("run", "--sqlite", str(source), "--pg", pg_dsn, log_dir=tmp_path).returncode == 0
    second = cli("run", "--sqlite", str(source), "--pg", pg_dsn, "--replace", log_dir=tmp_path)
    assert second.returncode == 0
    refused = cli("rollback", "--pg", pg_dsn, "--run", "1", log_dir=tmp_path)
    assert refused.returncode == 2 and "roll that one back first" in refused.stderr
    checked = cli("rollback", "--pg", pg_dsn, "--run", "1", "--check", log_dir=tmp_path)
    assert checked.returncode == 10
    assert (
        "warning: a later run (run 2) into schema public may have written the tables of run 1"
    ) in checked.stdout
    done = cli("rollback", "--pg", pg_dsn, "--run", "2", log_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "swapped back from schema asyncmig_backup_" in done.stdout  # run 1's tables
    tables = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    assert len(fetch(pg_dsn, tables)) == 7
    statuses = {r[0]: r[1] for r in fetch(pg_dsn, "SELECT id, status FROM asyncmig.runs")}
    assert statuses == {1: "succeeded", 2: "rolled back"}
    again = cli("rollback", "--pg", pg_dsn, "--run", "2", log_dir=tmp_path)
    assert again.returncode == 2 and "rolled back" in again.stderr
    first = cli("rollback", "--pg", pg_dsn, "--run", "1", log_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert not fetch(pg_dsn, tables)


def test_status_names_rejected_rows_and_keeps_options_short(
    cli: Cli, tmp_path: Path, pg_dsn: str
) -> None:
    """A person's `status`: each run on a few lines (the plan the run recorded, 45 kB of
    JSON for Northwind, is in `--output json`, not in the options line), and the rows a
    run rejected, in all and per table."""
    source = tmp_path / "c.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE c (name TEXT, n INTEGER)")
        conn.executemany("INSERT INTO c VALUES (?, ?)", [("a", 1), ("b", "x"), ("c", 3)])
    logs = tmp_path / "logs"
    ran = cli("run", "--sqlite", str(source), "--pg", pg_dsn, log_dir=logs)
    assert ran.returncode == 8, ran.stderr
    status = cli("status", "--pg", pg_dsn, log_dir=logs)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith("run 1  run  succeeded") and lines[0].endswith("rows 2  rejected 1")
    (options,) = [line for line in lines if line.startswith("  options ")]
    assert "jobs=2" in options and '"plan"' not in options and "resume_key" not in options
    assert len(options) < 400, options
    (table,) = [line for line in lines if line.startswith("  c ")]
    assert table.split()[:3] == ["c", "2", "rows"] and table.endswith("rejected 1")
    listed = json.loads(cli("status", "--pg", pg_dsn, "--output", "json", log_dir=logs).stdout)
    assert listed["runs"][0]["options"]["plan"]["tables"][0]["name"] == "c"  # kept in JSON

    # a history whose options someone edited into an array: an internal error (exit
    # 70) before; the run is listed with its options as they are, and sync goes on
    asyncio.run(execute(pg_dsn, "UPDATE asyncmig.runs SET options = '[1, \"two\"]'"))
    status = cli("status", "--pg", pg_dsn, log_dir=logs)
    assert status.returncode == 0, status.stderr
    assert '  options (not a JSON object, edited by hand? [1,"two"])' in status.stdout.splitlines()
    listed = json.loads(cli("status", "--pg", pg_dsn, "--output", "json", log_dir=logs).stdout)
    assert listed["runs"][0]["options"] == [1, "two"]
    synced = cli("sync", "--sqlite", str(source), "--pg", pg_dsn, log_dir=logs)
    assert synced.returncode in (0, 8), synced.stderr
