"""`asyncmig cleanup`: backup schemas, stale stages and load schemas removed (or, with
--dry-run, only listed); a live run's schemas never; `status` lists the backups kept."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from asyncmig.target import runlock
from tests.fault_sources import old_and_new
from tests.fix_cli import run_cli, valid
from tests.fix_faults import backups, contents, finish, schemas, stages, start
from tests.fix_pg import fetch


def leftovers(dsn: str) -> list[str]:
    return schemas(dsn, "^asyncmig_(backup|stage|load)_")


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return old_and_new(tmp_path_factory.mktemp("cleanup"))


def kill_mid_run(source: Path, dsn: str) -> None:
    """A run killed (-9) once its stage exists: the stage stays behind."""
    process = start("run", "--sqlite", str(source), "--pg", dsn, "--replace")
    deadline = time.monotonic() + 60
    while not stages(dsn) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)


def test_dry_run_keep_and_rollback_after_cleanup(
    sources: tuple[Path, Path], pg_dsn: str, tmp_path: Path
) -> None:
    """Two --replace runs keep two backups; a killed run leaves a stage; a load schema of
    no known run is left too. --dry-run lists them (sizes) and changes nothing; --keep 1
    removes all but the newest backup and the stale schemas, recorded in the history;
    a rollback of the run whose backup was removed says nothing can be swapped back."""
    old, new = sources
    for source, replace in ((old, ()), (new, ("--replace",)), (old, ("--replace",))):
        code, stderr = finish("run", "--sqlite", str(source), "--pg", pg_dsn, *replace)
        assert code == 0, stderr
    kill_mid_run(new, pg_dsn)
    [stage] = stages(pg_dsn)
    fetch(pg_dsn, "CREATE SCHEMA asyncmig_load_77")  # of no run this history knows
    fetch(pg_dsn, "CREATE TABLE asyncmig_load_77.t AS SELECT 1 AS x")
    first, second = backups(pg_dsn)
    assert (first[-2:], second[-2:]) == ("_2", "_3")
    everything = leftovers(pg_dsn)
    kept_rows = contents(pg_dsn, first)

    status = run_cli("status", "--pg", pg_dsn)
    assert status.returncode == 0, status.stderr
    assert "backup schemas kept" in status.stdout
    assert f"  {first}  run 2  " in status.stdout and f"  {second}  run 3  " in status.stdout
    listed = valid(run_cli("status", "--pg", pg_dsn, "--output", "json").stdout)
    assert [b["run_id"] for b in listed["backup_schemas"]] == [2, 3]
    assert all(b["bytes"] > 0 for b in listed["backup_schemas"])

    dry = run_cli("cleanup", "--pg", pg_dsn, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    for name in everything:
        assert "would remove: " in dry.stdout and name in dry.stdout
    assert "dry run: nothing changed" in dry.stdout
    assert leftovers(pg_dsn) == everything and contents(pg_dsn, first) == kept_rows

    done = run_cli("cleanup", "--pg", pg_dsn, "--keep", "1", "--output", "json")
    assert done.returncode == 0, done.stderr
    document = valid(done.stdout)
    assert sorted(r["schema"] for r in document["removed"]) == sorted(
        [first, stage, "asyncmig_load_77"]
    )
    assert [k["schema"] for k in document["kept"]] == [second] and not document["dry_run"]
    assert leftovers(pg_dsn) == [second]
    ends = fetch(pg_dsn, "SELECT id, backup_schema_end FROM asyncmig.runs WHERE id IN (2, 3)")
    assert [tuple(r) for r in sorted(ends)] == [(2, "removed by cleanup"), (3, None)]

    back = run_cli("rollback", "--pg", pg_dsn, "--run", "3", "--backup-dir", str(tmp_path))
    assert back.returncode == 0, back.stderr
    assert f"swapped back from schema {second}" in back.stdout
    assert len(contents(pg_dsn)["child"]) == 6_000  # run 2's copy again
    again = run_cli("rollback", "--pg", pg_dsn, "--run", "2", "--backup-dir", str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert f"schema {first} (the tables run 2 replaced) was removed by cleanup" in again.stdout
    assert leftovers(pg_dsn) == []
    assert run_cli("cleanup", "--pg", pg_dsn).stdout == "nothing to clean up for schema public\n"


async def hold_lock(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "SELECT pg_advisory_lock($1, $2)", runlock.LOCK_CLASS, runlock.schema_key("public")
    )
    return conn


def test_a_live_runs_stage_is_left_alone(
    sources: tuple[Path, Path], pg_dsn: str, tmp_path: Path
) -> None:
    """While a session holds the schema's run lock (as a live run does), cleanup exits 9
    and removes nothing, not even a backup; an application view on a backup table makes
    it refuse (exit 4, nothing removed); once both are gone, it removes everything."""
    old, new = sources
    for source, replace in ((old, ()), (new, ("--replace",))):
        code, stderr = finish("run", "--sqlite", str(source), "--pg", pg_dsn, *replace)
        assert code == 0, stderr
    kill_mid_run(new, pg_dsn)
    everything = leftovers(pg_dsn)
    assert len(everything) == 2

    async def while_locked() -> tuple[int, str]:
        live = await hold_lock(pg_dsn)
        try:
            result = await asyncio.to_thread(run_cli, "cleanup", "--pg", pg_dsn)
            return result.returncode, result.stderr
        finally:
            await live.close()

    code, stderr = asyncio.run(while_locked())
    assert code == 9, stderr
    assert stderr.count("\n") == 1 and "is in progress into schema public" in stderr
    assert leftovers(pg_dsn) == everything

    [backup] = backups(pg_dsn)
    fetch(pg_dsn, f'CREATE VIEW public.old_tags AS SELECT * FROM "{backup}".tag')
    refused = run_cli("cleanup", "--pg", pg_dsn)
    assert refused.returncode == 4, refused.stderr
    assert "view public.old_tags" in refused.stderr and "nothing was removed" in refused.stderr
    assert leftovers(pg_dsn) == everything
    fetch(pg_dsn, "DROP VIEW public.old_tags")
    assert run_cli("cleanup", "--pg", pg_dsn, "--run", "9").returncode == 2
    assert run_cli("cleanup", "--pg", pg_dsn, "--run", "2", "--keep", "1").returncode == 2
    only = run_cli("cleanup", "--pg", pg_dsn, "--run", "2")
    assert only.returncode == 0, only.stderr
    assert leftovers(pg_dsn) == [s for s in everything if s != backup]  # the stage stays
    assert run_cli("cleanup", "--pg", pg_dsn).returncode == 0
    assert leftovers(pg_dsn) == []
