"""Resume: the same command, run again after an interruption, finishes the job.

Real processes, real signals (SIGTERM, SIGKILL), a real server; every claim is read
back from the history the runs wrote (``asyncmig.runs``, ``asyncmig.run_tables``).
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from bench.gen_2truths import generate
from tests.fault_sources import TABLES, build_fault_source
from tests.fix_cli import cli_environment, run_cli
from tests.fix_faults import EVERYTHING, finish, public_tables, stages, start
from tests.fix_pg import fetch

N = 20_000
ROWS = {"parent": N, "child": 3 * N, "tag": N // 4}  # what build_fault_source makes


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fault_source(tmp_path_factory.mktemp("resume") / "app.db", rows=N)


def committed(dsn: str, run_id: int) -> dict[str, int]:
    """Per table, the rows a run's history says it committed."""
    rows = fetch(
        dsn, "SELECT table_name, loaded_rows FROM asyncmig.run_tables WHERE run_id = $1", run_id
    )
    return {r[0]: int(r[1]) for r in rows}


def last_run(dsn: str) -> asyncpg.Record:
    return fetch(dsn, "SELECT * FROM asyncmig.runs ORDER BY id DESC LIMIT 1")[0]


def taken_over(dsn: str, run_id: int) -> dict[str, bool]:
    rows = fetch(
        dsn, "SELECT table_name, taken_over FROM asyncmig.run_tables WHERE run_id = $1", run_id
    )
    return {r[0]: bool(r[1]) for r in rows}


async def _wait_for(dsn: str, process: subprocess.Popen[str], sql: str, count: int) -> bool:
    """Until ``sql`` (a count over the history) reaches ``count`` (True), or the process
    ended first (False)."""
    conn = await asyncpg.connect(dsn)
    try:
        while process.poll() is None:
            history = "SELECT to_regclass('asyncmig.run_chunks') IS NOT NULL"
            if await conn.fetchval(history) and await conn.fetchval(sql) >= count:
                return True
            await asyncio.sleep(0.005)
        return False
    finally:
        await conn.close()


RUNNING_TABLES = (
    "SELECT count(*) FROM asyncmig.run_tables t JOIN asyncmig.runs r "
    "ON r.id = t.run_id WHERE r.status = 'running'"
)
RUNNING_CHUNKS = (
    "SELECT count(*) FROM asyncmig.run_chunks c JOIN asyncmig.runs r "
    "ON r.id = c.run_id WHERE r.status = 'running' AND c.table_name = 'child'"
)


def interrupt_after_first_table(
    source: Path, dsn: str, signum: int, *args: str
) -> tuple[int, str, int]:
    """A run stopped by ``signum`` once its first table committed: (exit code, stderr,
    run id)."""
    process = start("run", "--sqlite", str(source), "--pg", dsn, *args)
    reached = asyncio.run(_wait_for(dsn, process, RUNNING_TABLES, 1))
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert reached, f"the run ended before a table committed: {stderr}"
    return process.returncode, stderr, int(last_run(dsn)["id"])


def deep_check(source: Path, dsn: str) -> None:
    code, stderr = finish("check", "--sqlite", str(source), "--pg", dsn, "--deep")
    assert code == 0, stderr
    assert public_tables(dsn) == EVERYTHING
    assert stages(dsn) == []


def test_sigterm_then_resume(source: Path, pg_dsn: str) -> None:
    """SIGTERM once a table committed: exit 143, one line saying how to resume and how
    many tables were kept, the stage left with them; the plain re-run takes exactly those
    tables over (history: resumed_from, taken_over), loads only the others, and the result
    is equal to the source."""
    code, stderr, killed = interrupt_after_first_table(source, pg_dsn, signal.SIGTERM)
    assert code == 143, stderr
    kept = committed(pg_dsn, killed)
    assert kept and set(kept) < set(TABLES)
    assert all(ROWS[t] == n for t, n in kept.items()), kept
    line = [x for x in stderr.splitlines() if x.startswith("asyncmig:")][-1]
    assert line.endswith(
        f"re-run the same command to resume; {len(kept)} of {len(TABLES)} tables kept"
    ), line
    assert len(stages(pg_dsn)) == 1 and public_tables(pg_dsn) == []
    assert last_run(pg_dsn)["status"] == "interrupted"

    code, stderr = finish("run", "--sqlite", str(source), "--pg", pg_dsn, "--output", "json")
    assert code == 0, stderr
    run = last_run(pg_dsn)
    assert run["status"] == "succeeded" and run["resumed_from"] == killed
    flags = taken_over(pg_dsn, run["id"])
    assert {t for t, f in flags.items() if f} == set(kept)
    assert set(flags) == set(TABLES)
    reloaded = sum(n for t, n in committed(pg_dsn, run["id"]).items() if not flags[t])
    assert reloaded == sum(ROWS.values()) - sum(kept.values())
    deep_check(source, pg_dsn)
    status = run_cli("status", "--pg", pg_dsn)
    assert f"resumed run {killed}; tables taken over: {', '.join(sorted(kept))}" in status.stdout


def test_changed_source_is_not_resumed(source: Path, pg_dsn: str, tmp_path: Path) -> None:
    """A source whose SHA-256 differs from the interrupted run's: its stage is dropped
    (logged with the reason) and the run starts over."""
    copy = tmp_path / "app.db"
    shutil.copy(source, copy)
    code, stderr, _ = interrupt_after_first_table(copy, pg_dsn, signal.SIGTERM)
    assert code == 143, stderr
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE tag SET label = 'changed' WHERE id = 1")
    conn.close()
    code, stderr = finish("run", "--sqlite", str(copy), "--pg", pg_dsn)
    assert code == 0, stderr
    assert "not_resumed" in stderr and "the source changed since" in stderr
    run = last_run(pg_dsn)
    assert run["resumed_from"] is None
    assert not any(taken_over(pg_dsn, run["id"]).values())
    assert fetch(pg_dsn, "SELECT label FROM public.tag WHERE id = 1")[0][0] == "changed"
    assert committed(pg_dsn, run["id"]) == ROWS and stages(pg_dsn) == []


def test_restart_refuses_the_resume(source: Path, pg_dsn: str) -> None:
    """--restart: what the interrupted run left is dropped and every table loads again."""
    code, stderr, killed = interrupt_after_first_table(source, pg_dsn, signal.SIGTERM)
    assert code == 143 and committed(pg_dsn, killed), stderr
    code, stderr = finish("run", "--sqlite", str(source), "--pg", pg_dsn, "--restart")
    assert code == 0, stderr
    assert "stale_stage_dropped" in stderr
    run = last_run(pg_dsn)
    assert run["resumed_from"] is None
    assert committed(pg_dsn, run["id"]) == ROWS
    assert not any(taken_over(pg_dsn, run["id"]).values())
    assert stages(pg_dsn) == [] and public_tables(pg_dsn) == EVERYTHING


def chunks_of(dsn: str, run_id: int) -> list[tuple[int, int, int, bool]]:
    rows = fetch(
        dsn,
        "SELECT first_key, last_key, rows, taken_over FROM asyncmig.run_chunks "
        "WHERE run_id = $1 AND table_name = 'child' ORDER BY first_key",
        run_id,
    )
    return [(int(r[0]), int(r[1]), int(r[2]), bool(r[3])) for r in rows]


def test_chunked_table_goes_on_after_its_last_chunk(source: Path, pg_dsn: str) -> None:
    """--chunk-rows: kill -9 in the middle of child; the re-run keeps child's recorded
    chunks (taken over, same key ranges) and loads only the chunks after the last one,
    on the same grid; the whole table then checks equal to the source."""
    args = ("run", "--sqlite", str(source), "--pg", pg_dsn, "--chunk-rows", "5000")
    process = start(*args)
    reached = asyncio.run(_wait_for(pg_dsn, process, RUNNING_CHUNKS, 2))
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert reached, "the run ended before two chunks of child committed"
    killed = int(last_run(pg_dsn)["id"])
    before = chunks_of(pg_dsn, killed)
    assert len(before) >= 2 and "child" not in committed(pg_dsn, killed)
    assert all(rows == last - first + 1 for first, last, rows, _ in before)  # dense ids

    code, stderr = finish(*args)
    assert code == 0, stderr
    run = last_run(pg_dsn)
    assert run["resumed_from"] == killed
    after = chunks_of(pg_dsn, run["id"])
    kept = [(f, la, n) for f, la, n, taken in after if taken]
    new = [(f, la, n) for f, la, n, taken in after if not taken]
    assert kept == [(f, la, n) for f, la, n, _ in before]
    assert new and new[0][0] == kept[-1][1] + 1  # on after the last recorded chunk
    assert sum(c[2] for c in after) == ROWS["child"] == committed(pg_dsn, run["id"])["child"]
    assert all(c[2] <= 5000 for c in after) and after[-1][1] == ROWS["child"]
    deep_check(source, pg_dsn)


SPLIT_LOW = (
    "import sys; from asyncmig.load import split; split.SPLIT_MIN_ROWS = 1000; "
    "from asyncmig.cli.main import main; sys.exit(main(sys.argv[1:]))"
)  # as tests/test_split.py does in-process: this small source's child table is split


def load_schemas(dsn: str) -> list[str]:
    rows = fetch(
        dsn,
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'asyncmig\\_load\\_%' ORDER BY 1",
    )
    return [r[0] for r in rows]


def test_killed_split_loads_schema_is_dropped_by_the_next_run(source: Path, pg_dsn: str) -> None:
    """kill -9 while a table loads in rowid ranges (its ranges in asyncmig_load_<run>):
    the next run into the target drops that schema (logged) and still resumes the
    stage, reloading the split table whole."""
    process = subprocess.Popen(
        [sys.executable, "-c", SPLIT_LOW, "run", "--sqlite", str(source), "--pg", pg_dsn],
        env=cli_environment({"ASYNCMIG_WORKERS": "process", "ASYNCMIG_JOBS": "2"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not load_schemas(pg_dsn) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    left = load_schemas(pg_dsn)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert left, "the run split no table"
    killed = int(last_run(pg_dsn)["id"])
    assert left == [f"asyncmig_load_{killed}"]

    code, stderr = finish("run", "--sqlite", str(source), "--pg", pg_dsn)
    assert code == 0, stderr
    assert "stale_load_schema_dropped" in stderr and left[0] in stderr
    assert load_schemas(pg_dsn) == []
    run = last_run(pg_dsn)
    assert run["resumed_from"] in (killed, None)  # None: killed before its digest was known
    assert committed(pg_dsn, run["id"]) == ROWS
    counts = fetch(pg_dsn, "SELECT (SELECT count(*) FROM public.child), max(id) FROM public.child")
    assert tuple(counts[0]) == (ROWS["child"], ROWS["child"])


def test_a_digest_is_recorded_only_for_the_content_the_run_read(
    tmp_path: Path, pg_dsn: str
) -> None:
    """The application writes the source while a run loads it. The run's SHA-256 was
    taken of the new content and recorded, so a re-run after a kill resumed, keeping
    tables read from the old content (`check --deep` failed). Whatever the moment of the
    write, a digest in the history is the one of the file as the run began reading it."""
    source = tmp_path / "app.db"
    generate(source, 200_000, seed=5)
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    process = start("run", "--sqlite", str(source), "--pg", pg_dsn)
    copying = "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'COPY%'"
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if fetch(pg_dsn, copying)[0][0]:
            break
        time.sleep(0.005)
    with sqlite3.connect(source) as conn:  # the application writes meanwhile
        conn.execute("UPDATE users SET name = 'changed' WHERE id = (SELECT min(id) FROM users)")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 3, stderr  # the change is found at the end
    [recorded] = fetch(pg_dsn, "SELECT source_sha256 FROM asyncmig.runs")
    assert recorded[0] in (None, before), recorded
