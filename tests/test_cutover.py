"""`run` builds in a staging schema and swaps it in at once: real processes, real
signals (kill -9 included), a real server and a reader session polling throughout."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from tests.fault_sources import TABLES, build_fault_source
from tests.fix_faults import EVERYTHING, finish, history, poll_counts, public_tables, stages, start
from tests.fix_pg import fetch

ALL_ROWS = 40_000 + 120_000 + 10_000  # parent, child, tag: build_fault_source(rows=40_000)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fault_source(tmp_path_factory.mktemp("cutover") / "app.db", rows=40_000)


def committed_tables(dsn: str, run_id: int, *, taken_over: bool | None = None) -> dict[str, int]:
    """Per table, the rows a run's history says it committed (only those it took over
    from the run it resumed, or only the others, when ``taken_over`` says)."""
    rows = fetch(
        dsn,
        "SELECT table_name, loaded_rows FROM asyncmig.run_tables WHERE run_id = $1 "
        "AND ($2::boolean IS NULL OR taken_over = $2)",
        run_id,
        taken_over,
    )
    return {r[0]: int(r[1]) for r in rows}


def last_run(dsn: str) -> asyncpg.Record:
    return fetch(dsn, "SELECT * FROM asyncmig.runs ORDER BY id DESC LIMIT 1")[0]


def digested(dsn: str) -> bool:
    """Has the newest run recorded its source's SHA-256 (computed beside the load)?"""
    found = fetch(dsn, "SELECT source_sha256 FROM asyncmig.runs ORDER BY id DESC LIMIT 1")
    return bool(found) and found[0][0] is not None


def kill_when_staged(
    source: Path, dsn: str, delay: float, *args: str, after_digest: bool = False
) -> list[str]:
    """A run killed (SIGKILL) ``delay`` seconds after its stage appeared (and, with
    ``after_digest``, after its source's digest was recorded); the stages then."""
    process = start("run", "--sqlite", str(source), "--pg", dsn, *args)
    deadline = time.monotonic() + 60

    def waiting() -> bool:
        return not stages(dsn) or (after_digest and not digested(dsn))

    while waiting() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    return stages(dsn)


def test_sigkill_then_the_plain_rerun_resumes(source: Path, pg_dsn: str) -> None:
    """kill -9 at random moments of a multi-table run in worker processes: right after,
    the target holds none of the run's tables (or, past the cut-over, all of them);
    the plain re-run takes over exactly the tables whose load had committed before the
    kill (per the history), loads only the others, and `check --deep` passes."""
    rng = random.Random(9)
    for delay in sorted(rng.uniform(0.0, 1.5) for _ in range(3)):
        # a run killed before its source's digest is recorded has nothing a re-run can
        # trust (the re-run starts over); here every kill comes after the digest
        kill_when_staged(source, pg_dsn, delay, after_digest=True)
        left = public_tables(pg_dsn)
        assert left in ([], EVERYTHING), (delay, left)  # never part of them
        if not left:
            killed = last_run(pg_dsn)
            before = committed_tables(pg_dsn, killed["id"])
            code, stderr = finish("run", "--sqlite", str(source), "--pg", pg_dsn)
            assert code == 0, stderr
            run = last_run(pg_dsn)
            kept = committed_tables(pg_dsn, run["id"], taken_over=True)
            assert run["resumed_from"] == killed["id"], (delay, stderr)
            assert kept == before, (delay, kept, before)
            copied = committed_tables(pg_dsn, run["id"], taken_over=False)
            assert sum(copied.values()) == ALL_ROWS - sum(before.values())
        assert stages(pg_dsn) == []
        assert public_tables(pg_dsn) == EVERYTHING
        code, stderr = finish("check", "--sqlite", str(source), "--pg", pg_dsn, "--deep")
        assert code == 0, stderr
        fetch(pg_dsn, "DROP TABLE " + ", ".join(f"public.{t}" for t in TABLES) + " CASCADE")


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
