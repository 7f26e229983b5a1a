"""`run` builds in a staging schema and swaps it in at once: real processes, real
signals (kill -9 included), a real server and a reader session polling throughout."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from tests.fault_sources import build_fault_source
from tests.fix_faults import EVERYTHING, finish, history, poll_counts, public_tables, stages, start
from tests.fix_pg import fetch


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fault_source(tmp_path_factory.mktemp("cutover") / "app.db", rows=40_000)


def kill_when_staged(source: Path, dsn: str, delay: float, *args: str) -> list[str]:
    """A run killed (SIGKILL) ``delay`` seconds after its stage appeared; the stages then."""
    process = start("run", "--sqlite", str(source), "--pg", dsn, *args)
    deadline = time.monotonic() + 60
    while not stages(dsn) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    return stages(dsn)


def test_killed_runs_stage_is_dropped_with_restart(source: Path, pg_dsn: str) -> None:
    """A stage left by kill -9 is dropped, logged, by the next run into the same target
    when it is told not to resume (--restart)."""
    left = kill_when_staged(source, pg_dsn, 0.0)
    assert left, "the run made no stage"
    assert public_tables(pg_dsn) == []
    code, stderr = finish("run", "--sqlite", str(source), "--pg", pg_dsn, "--restart")
    assert code == 0, stderr
    assert "stale_stage_dropped" in stderr and left[0] in stderr
    assert stages(pg_dsn) == []


def test_moved_tables_work(source: Path, pg_dsn: str) -> None:
    """After the swap: the identity sequence goes on past the loaded ids, foreign keys
    and the view point at the moved tables, history and rollback name the target."""
    code, stderr = finish("run", "--sqlite", str(source), "--pg", pg_dsn)
    assert code == 0, stderr
    new_id = fetch(pg_dsn, "INSERT INTO public.parent (name) VALUES ('new') RETURNING id")
    assert new_id[0][0] == 40_001
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        fetch(pg_dsn, "INSERT INTO public.child (id, parent_id) VALUES (999999, 999999)")
    fk = fetch(
        pg_dsn,
        "SELECT confrelid::regclass::text FROM pg_constraint "
        "WHERE contype = 'f' AND conrelid = 'public.child'::regclass",
    )
    assert [r[0] for r in fk] == ["parent"]
    view = fetch(pg_dsn, "SELECT count(*) FROM public.big_children")[0][0]
    assert view == fetch(pg_dsn, "SELECT count(*) FROM public.child WHERE amount > 50")[0][0]
    assert view > 0
    run = fetch(pg_dsn, "SELECT target_schema, rollback_sql FROM asyncmig.runs ORDER BY id")[-1]
    assert run["target_schema"] == "public"
    assert "asyncmig_stage" not in run["rollback_sql"] and '"public"' in run["rollback_sql"]
    assert stages(pg_dsn) == []


def test_reader_sees_old_then_new(source: Path, pg_dsn: str, tmp_path: Path) -> None:
    """A reader polling throughout `run --replace` sees the old count, then the new one:
    never an empty, missing or partial table."""
    code, stderr = finish("run", "--sqlite", str(source), "--pg", pg_dsn)
    assert code == 0, stderr
    smaller = build_fault_source(tmp_path / "smaller.db", rows=30_000)
    counts: list[int] = []

    async def scenario() -> int:
        done = asyncio.Event()
        reader = asyncio.create_task(poll_counts(pg_dsn, done, counts))
        process = start("run", "--sqlite", str(smaller), "--pg", pg_dsn, "--replace")
        await asyncio.to_thread(process.wait)
        done.set()
        await reader
        process.communicate()
        return process.returncode

    assert asyncio.run(scenario()) == 0
    old, new = 120_000, 90_000
    assert set(counts) <= {old, new}, sorted(set(counts))
    assert counts[0] == old and counts[-1] == new
    switch = counts.index(new)
    assert all(c == new for c in counts[switch:])


def test_failed_cut_over_leaves_target_and_no_stage(
    source: Path, pg_dsn: str, tmp_path: Path
) -> None:
    """An application's open transaction on a table `--replace` must drop makes the
    cut-over give up after --lock-timeout: the old copy is intact, no stage is left."""
    code, stderr = finish("run", "--sqlite", str(source), "--pg", pg_dsn)
    assert code == 0, stderr
    smaller = build_fault_source(tmp_path / "smaller.db", rows=30_000)

    async def scenario() -> tuple[int, str]:
        app = await asyncpg.connect(pg_dsn)
        try:
            async with app.transaction():
                await app.fetchval("SELECT count(*) FROM public.tag")
                process = start(
                    "run",
                    "--sqlite",
                    str(smaller),
                    "--pg",
                    pg_dsn,
                    "--replace",
                    "--lock-timeout",
                    "1",
                )
                await asyncio.to_thread(process.wait)
                _, err = process.communicate()
                return process.returncode, err
        finally:
            await app.close()

    code, stderr = asyncio.run(scenario())
    assert code == 4, stderr
    assert "lock" in stderr
    assert fetch(pg_dsn, "SELECT count(*) FROM public.child")[0][0] == 120_000
    assert stages(pg_dsn) == []
    assert history(pg_dsn)[-1]["status"] == "failed"


def test_new_schema_with_an_odd_name(tmp_path: Path, pg_dsn: str) -> None:
    """A target schema that does not exist yet (and needs quoting) is created by the
    cut-over; the stage's name stays within PostgreSQL's 63 bytes."""
    small = build_fault_source(tmp_path / "small.db", rows=200)
    schema = 'Zielschéma "x" ' + "y" * 40
    code, stderr = finish("run", "--sqlite", str(small), "--pg", pg_dsn, "--schema", schema)
    assert code == 0, stderr
    names = fetch(
        pg_dsn,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
        schema,
    )
    assert [r[0] for r in names] == EVERYTHING
    assert fetch(pg_dsn, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema)[0][0] == 1
    assert stages(pg_dsn) == []
    code, stderr = finish(
        "check", "--sqlite", str(small), "--pg", pg_dsn, "--schema", schema, "--deep"
    )
    assert code == 0, stderr
