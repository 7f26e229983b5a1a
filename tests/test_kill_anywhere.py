"""kill -9 at random moments of a multi-table migration (worker processes, a real
server), each followed by the plain re-run of the same command: every claim is read
back from the history the runs wrote (``asyncmig.runs``, ``asyncmig.run_tables``).

The moments are drawn over the whole duration of one run, measured first; the seed is
random per session and named in every failure (``ASYNCMIG_KILL_SEED`` replays one;
``ASYNCMIG_KILL_TRIALS`` sets how many kills, 10 by default).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from tests.fault_sources import TABLES, build_fault_source
from tests.fix_cli import RunMain
from tests.fix_faults import EVERYTHING, public_tables, stages, start
from tests.fix_pg import fetch

N = 3_000
ROWS = {"parent": N, "child": 3 * N, "tag": N // 4}  # what build_fault_source makes
# a new seed each session covers new moments; ASYNCMIG_KILL_TRIALS=200 is a longer soak
TRIALS = int(os.environ.get("ASYNCMIG_KILL_TRIALS", "10"))
SEED = int(os.environ.get("ASYNCMIG_KILL_SEED", str(time.time_ns() % 2**32)))
SETTLED = 2.1  # seconds: a source older than this has an identity (asyncmig.source.identity)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fault_source(tmp_path_factory.mktemp("kill") / "app.db", rows=N)


def settle(source: Path) -> None:
    """Until the source is as one usually is when it is migrated: not written seconds
    ago (else a run records no identity of it, and only its SHA-256 can prove a resume)."""
    time.sleep(max(0.0, source.stat().st_ctime + SETTLED - time.time()))


def runs_after(dsn: str, run_id: int) -> list[asyncpg.Record]:
    """The runs recorded after ``run_id``, oldest first (none before the history exists)."""
    if not fetch(dsn, "SELECT to_regclass('asyncmig.runs')")[0][0]:
        return []
    return fetch(dsn, "SELECT * FROM asyncmig.runs WHERE id > $1 ORDER BY id", run_id)


def committed(dsn: str, run_id: int, *, taken_over: bool | None = None) -> dict[str, int]:
    """Per table, the rows a run's history says it committed (only those it took over,
    or only the others, when ``taken_over`` says)."""
    rows = fetch(
        dsn,
        "SELECT table_name, loaded_rows FROM asyncmig.run_tables WHERE run_id = $1 "
        "AND ($2::boolean IS NULL OR taken_over = $2)",
        run_id,
        taken_over,
    )
    return {r[0]: int(r[1]) for r in rows}


def run_args(source: Path, dsn: str) -> tuple[str, ...]:
    return ("run", "--sqlite", str(source), "--pg", dsn)


def killed_after(source: Path, dsn: str, delay: float) -> None:
    """A run (worker processes) killed with SIGKILL ``delay`` seconds after it started."""
    process = start(*run_args(source, dsn))
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    sessions_ended(dsn)


OTHER_SESSIONS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


def sessions_ended(dsn: str) -> None:
    """Until PostgreSQL has ended the killed run's sessions (one busy with a statement
    notices its client is gone only when the statement ends): until then its lock
    makes a re-run exit 9, "in progress", as it should."""
    deadline = time.monotonic() + 30
    while fetch(dsn, OTHER_SESSIONS)[0][0] and time.monotonic() < deadline:
        time.sleep(0.01)


def timed_run(source: Path, dsn: str) -> float:
    """Seconds a whole run takes, as the trials start it (a process, worker processes)."""
    started = time.monotonic()
    process = start(*run_args(source, dsn))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    return time.monotonic() - started


def drop_tables(dsn: str) -> None:
    fetch(dsn, "DROP TABLE " + ", ".join(f"public.{t}" for t in TABLES) + " CASCADE")


def latest_id(dsn: str) -> int:
    return max((int(r["id"]) for r in runs_after(dsn, 0)), default=0)


def test_sigkill_at_random_moments(source: Path, pg_dsn: str, run_main: RunMain) -> None:
    """TRIALS x kill -9 at a random moment of a run: right after, the target holds none of
    its tables (or, past the cut-over, all of them). The plain re-run then ends with the
    target equal to the source (`check --deep`) and, per the history, takes over exactly
    the tables whose load the killed run had committed and loads only the others; a run
    killed before its stage existed left nothing to take over, and the re-run starts
    over; one killed after its cut-over left the complete copy, whose job the re-run
    finishes without loading anything (see after_cut_over)."""
    whole = timed_run(source, pg_dsn)
    drop_tables(pg_dsn)
    settle(source)
    rng = random.Random(SEED)
    seen: dict[str, int] = {}
    for trial in range(TRIALS):
        delay = rng.uniform(0.0, whole)
        where = f"seed {SEED}, trial {trial}: killed at {delay:.3f} s of {whole:.3f} s"
        previous = latest_id(pg_dsn)
        killed_after(source, pg_dsn, delay)
        found = runs_after(pg_dsn, previous)
        assert len(found) <= 1, where
        killed = found[0] if found else None
        kind = outcome(pg_dsn, killed, run_main, source, where)
        seen[kind] = seen.get(kind, 0) + 1
        code, _, stderr = run_main("check", "--sqlite", str(source), "--pg", pg_dsn, "--deep")
        assert code == 0, (where, stderr)
        assert public_tables(pg_dsn) == EVERYTHING and stages(pg_dsn) == [], where
        drop_tables(pg_dsn)
    print(f"seed {SEED}: {seen}")  # how the moments fell (pytest -s shows it)


def outcome(
    dsn: str, killed: asyncpg.Record | None, run_main: RunMain, source: Path, where: str
) -> str:
    """The plain re-run after one kill, checked against the killed run's history; the
    kind of moment the kill fell on."""
    left = public_tables(dsn)
    if killed is not None and killed["cascade_dropped"] is not None:  # the swap committed
        assert left == EVERYTHING and stages(dsn) == [], where
        return after_cut_over(dsn, killed, run_main, source, where)
    assert left == [], where  # never part of the tables
    staged = stages(dsn)
    before = committed(dsn, killed["id"]) if killed is not None else {}
    code, _, stderr = run_main(*run_args(source, dsn))
    assert code == 0, (where, stderr)
    run = runs_after(dsn, killed["id"] if killed is not None else 0)[-1]
    kept = committed(dsn, run["id"], taken_over=True)
    loaded = committed(dsn, run["id"], taken_over=False)
    if not staged:  # killed before its stage existed: nothing committed, nothing taken over
        assert before == {} and kept == {} and run["resumed_from"] is None, (where, stderr)
        assert loaded == ROWS, where
        return "before the stage" if killed is not None else "before the history"
    assert killed is not None, where
    assert run["resumed_from"] == killed["id"], (where, stderr)
    assert kept == before, (where, kept, before)  # taken over: what had committed, no more
    assert loaded == {t: n for t, n in ROWS.items() if t not in before}, (where, loaded)
    return f"{len(before)} of {len(TABLES)} tables committed"


RUNNING_TABLES = (
    "SELECT count(*) FROM asyncmig.run_tables t JOIN asyncmig.runs r "
    "ON r.id = t.run_id WHERE r.status = 'running'"
)


def killed_after_first_table(source: Path, dsn: str) -> int:
    """A run killed (SIGKILL) once its first table committed; its id."""
    process = start(*run_args(source, dsn))
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if (
            fetch(dsn, "SELECT to_regclass('asyncmig.run_tables')")[0][0]
            and fetch(dsn, RUNNING_TABLES)[0][0]
        ):
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, stderr
    sessions_ended(dsn)
    return latest_id(dsn)


def without_digest(dsn: str, run_id: int) -> dict[str, int]:
    """The killed run as if its SHA-256 had not been recorded yet, which is what a kill
    while a large source is still being hashed leaves (this small one's digest is always
    recorded before a table commits); what it committed."""
    fetch(dsn, "UPDATE asyncmig.runs SET source_sha256 = NULL WHERE id = $1", run_id)
    found = committed(dsn, run_id)
    assert found, "no table had committed"
    return found


def test_killed_before_its_digest_resumes_on_the_files_identity(
    source: Path, pg_dsn: str, run_main: RunMain
) -> None:
    """A run killed before its source's SHA-256 was recorded is resumed when the file's
    identity (recorded before the run read it) is unchanged: the re-run takes over what
    had committed, and records the SHA-256 it computed."""
    settle(source)
    killed = killed_after_first_table(source, pg_dsn)
    before = without_digest(pg_dsn, killed)
    code, _, stderr = run_main(*run_args(source, pg_dsn))
    assert code == 0, stderr
    run = runs_after(pg_dsn, killed)[-1]
    assert run["resumed_from"] == killed, stderr
    assert committed(pg_dsn, run["id"], taken_over=True) == before
    assert run["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    code, _, stderr = run_main("check", "--sqlite", str(source), "--pg", pg_dsn, "--deep")
    assert code == 0, stderr


def test_killed_before_its_digest_starts_over_when_the_file_was_touched(
    source: Path, pg_dsn: str, run_main: RunMain, tmp_path: Path
) -> None:
    """The same, but the file was touched since (same bytes, same modification time, a
    new change time): in doubt, the re-run does not resume; it says why and loads every
    table again."""
    copy = tmp_path / "app.db"
    shutil.copy2(source, copy)
    settle(copy)
    killed = killed_after_first_table(copy, pg_dsn)
    without_digest(pg_dsn, killed)
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # only the change time moves
    code, _, stderr = run_main(*run_args(copy, pg_dsn))
    assert code == 0, stderr
    assert "not_resumed" in stderr, stderr
    assert "written seconds ago" in stderr, stderr  # its change time is now: in doubt
    run = runs_after(pg_dsn, killed)[-1]
    assert run["resumed_from"] is None
    assert committed(pg_dsn, run["id"], taken_over=False) == ROWS


def after_cut_over(
    dsn: str, killed: asyncpg.Record, run_main: RunMain, source: Path, where: str
) -> str:
    """Killed once its cut-over had committed: the target holds the complete copy, so the
    plain re-run loads nothing; it finishes the killed run's job (its state, its rollback,
    ``succeeded``) and succeeds with resumed_from = the killed run and no table of its
    own. Killed after it finished: the re-run refuses to load over its tables."""
    code, stdout, stderr = run_main(*run_args(source, dsn))
    if killed["status"] == "succeeded":
        assert code == 4 and "already exists in the target" in stderr, (where, stderr)
        return "finished before the kill"
    assert code == 0, (where, stderr)
    assert f"run {killed['id']} had completed its cut-over; finished it" in stdout, where
    done, run = runs_after(dsn, killed["id"] - 1)[-2:]
    assert (done["id"], done["status"], run["resumed_from"]) == (
        killed["id"],
        "succeeded",
        killed["id"],
    ), where
    assert f"asyncmig rollback for run {killed['id']}" in done["rollback_sql"], where
    assert committed(dsn, run["id"]) == {}, where  # nothing loaded again
    finals = fetch(
        dsn, "SELECT table_name, final_rows FROM asyncmig.run_tables WHERE run_id = $1", done["id"]
    )
    assert {r[0]: r[1] for r in finals} == ROWS, where
    return "after the cut-over"
