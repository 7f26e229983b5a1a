"""Signals and lost connections, with real processes, real signals and a real server.

Each test starts ``python -m asyncmig`` as a child process, as an operator (or
Docker, Kubernetes, systemd) would, and interferes with it from outside.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import psutil
import psycopg
import pytest

from tests.fault_sources import TABLES, build_fault_source
from tests.fix_cli import run_cli
from tests.fix_faults import alive, descendants, finish, history, public_tables, start
from tests.fix_pg import fetch


@pytest.fixture(scope="module")
def fault_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fault_source(tmp_path_factory.mktemp("faults") / "app.db", rows=40_000)


DELAYS = [0.05, 0.3, 0.6, 0.9, 1.2]


def before_asyncmig_started(process: subprocess.Popen[str], signum: int, stderr: str) -> bool:
    """On a loaded machine the interpreter may still be starting at 0.05 s, before any
    of asyncmig's code (its first line installs the handler): the signal's default
    action then ends it (Python's own start-up reports a SIGINT in ``site``), having
    done nothing."""
    return "asyncmig: " not in stderr and (
        process.returncode == -signum or "init_import_site" in stderr
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_asyncmig_starts_is_one_line(fault_source: Path, signum: int) -> None:
    """A signal in the first tenths of a second (while the interpreter starts, while
    asyncmig installs its handlers, while it imports the command): never a traceback of
    asyncmig's. Once asyncmig has begun, the one line and 128 + the signal; before it,
    the signal's default action. (A signal landing inside the handlers' installation
    printed a traceback once, in a test run on a loaded machine: that window is too
    narrow to hit on purpose, and this test covers the moments around it.)"""
    rng = random.Random(signum)
    began = 0
    for delay in sorted(rng.uniform(0.0, 0.35) for _ in range(12)):
        process = start("plan", "--sqlite", str(fault_source))
        time.sleep(delay)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        if process.returncode in (0, -signum) or stderr.startswith("Fatal Python error"):
            continue  # finished first, or before asyncmig's code (Python's own start-up)
        began += 1
        assert "Traceback" not in stderr, (delay, stderr)
        assert process.returncode == 128 + signum, (delay, stderr)
        assert stderr.startswith(f"asyncmig: interrupted by {signal.Signals(signum).name}: ")
    assert began >= 4  # most trials landed after asyncmig began


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_at_random_moments(fault_source: Path, pg_dsn: str, signum: signal.Signals) -> None:
    """SIGTERM/SIGINT at any moment: exit 143/130, one line saying how to resume, no
    traceback, no process left (workers included), history ``interrupted`` with the
    signal's name, and the target as it was (no table of the run left in it)."""
    rng = random.Random(signum)
    delays = [*DELAYS[:2], *sorted(rng.uniform(0.3, 1.5) for _ in range(3))]
    interrupted = 0
    for delay in delays:
        process = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn, "--replace")
        time.sleep(delay)
        family = descendants(process.pid)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        if process.returncode == 0:  # it finished before the signal came
            continue
        if delay == DELAYS[0] and before_asyncmig_started(process, signum, stderr):
            assert not history(pg_dsn)
            continue
        assert "Traceback" not in stderr, stderr
        interrupted += 1
        assert process.returncode == 128 + signum, (delay, stderr)
        lines = [line for line in stderr.splitlines() if line.startswith("asyncmig:")]
        assert lines, (delay, stderr)
        # before the cut-over: rolled back; after it, the line says the copy is in place
        assert lines[-1].startswith(
            f"asyncmig: interrupted by {signum.name}: work in flight was "
            "rolled back and the target left as it was; re-run the same "
            "command to resume"
        ) or lines[-1].startswith(
            f"asyncmig: interrupted by {signum.name} after the checked copy was committed"
        ), stderr
        assert not alive(family), (delay, family)
        runs = history(pg_dsn)
        assert all(r["status"] != "running" for r in runs), runs
        if runs and runs[-1]["status"] == "interrupted":
            assert runs[-1]["error"] == signum.name
    assert interrupted >= 2  # at least the early ones landed mid-run


def test_writer_terminated_mid_copy_is_retried(fault_source: Path, pg_dsn: str) -> None:
    """pg_terminate_backend of a COPY writer: the table is reloaded from clean and the
    run completes; check --deep then finds every value equal."""
    process = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn, "--verbose")
    victims: list[int] = []
    deadline = time.monotonic() + 30
    while not victims and time.monotonic() < deadline and process.poll() is None:
        victims = [
            r[0]
            for r in fetch(
                pg_dsn,
                "SELECT pg_terminate_backend(pid), pid FROM pg_stat_activity WHERE "
                "datname = current_database() AND query LIKE 'COPY %' "
                "AND pid <> pg_backend_pid()",
            )
        ]
    _, stderr = process.communicate(timeout=120)
    assert victims, "no COPY was seen to terminate"
    assert process.returncode == 0, stderr
    assert "retrying_after_connection_fault" in stderr
    assert "lost connection to PostgreSQL" in stderr
    checked = run_cli("check", "--deep", "--sqlite", str(fault_source), "--pg", pg_dsn)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [r["status"] for r in history(pg_dsn)] == ["succeeded"]


def test_lost_admin_connection_is_exit_4(fault_source: Path, pg_dsn: str) -> None:
    """Every session of the run terminated (as a server restart does): exit 4 with
    "lost connection to PostgreSQL" and how to resume, no traceback, history ``failed``
    with the class, the target as before; the stage is kept, and the same command
    re-run resumes it."""
    process = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn, workers="inline")
    killed = 0
    deadline = time.monotonic() + 30
    while not killed and time.monotonic() < deadline and process.poll() is None:
        if fetch(
            pg_dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY %' "
            "AND pid <> pg_backend_pid()",
        )[0][0]:
            killed = len(
                fetch(
                    pg_dsn,
                    "SELECT pg_terminate_backend(pid) FROM "
                    "pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()",
                )
            )
    _, stderr = process.communicate(timeout=120)
    assert killed
    assert process.returncode == 4, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("asyncmig: error:")]
    assert lines and lines[-1].startswith("asyncmig: error: lost connection to PostgreSQL"), stderr
    runs = history(pg_dsn)
    assert [(r["status"], r["error_class"]) for r in runs] == [("failed", "ConnectionLost")]
    assert not set(TABLES) & set(public_tables(pg_dsn))  # the target as before the run
    assert "re-run the same command to resume; " in lines[-1]
    kept = fetch(pg_dsn, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'asyncmig_stage%'")
    assert kept[0][0] == 1
    again = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn, workers="inline")
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    resumed = fetch(pg_dsn, "SELECT resumed_from FROM asyncmig.runs ORDER BY id DESC LIMIT 1")
    assert resumed[0][0] == runs[0]["id"]
    assert set(TABLES) <= set(public_tables(pg_dsn))


def test_refused_runs_are_recorded_failed(fault_source: Path, pg_dsn: str) -> None:
    """A run refused before the load (tables exist) ends ``failed`` with its class and
    message; refused re-runs leave no ``running`` row."""
    first = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn)
    first.communicate(timeout=120)
    assert first.returncode == 0
    for _ in range(2):
        again = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn)
        _, stderr = again.communicate(timeout=120)
        assert again.returncode == 4 and "already exists" in stderr
    runs = history(pg_dsn)
    assert [(r["status"], r["error_class"]) for r in runs] == [
        ("succeeded", None),
        ("failed", "TargetError"),
        ("failed", "TargetError"),
    ]
    assert "already exists" in runs[-1]["error"]


def wait_for_running_run(dsn: str, process: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        running = [r for r in history(dsn) if r["status"] == "running"]
        if running:
            return int(running[-1]["id"])
        time.sleep(0.02)
    raise AssertionError("the first run never showed as running")


def test_two_concurrent_runs(fault_source: Path, pg_dsn: str) -> None:
    """A second run into the same schema fails at once with exit 9, naming the run in
    progress (its host and pid); the first completes and the target is intact."""
    first = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn)
    run_id = wait_for_running_run(pg_dsn, first)
    second = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn, "--replace")
    _, second_err = second.communicate(timeout=120)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert second.returncode == 9, second_err
    assert (
        f"asyncmig: error: cannot start: run {run_id} ({os.uname().nodename}, pid "
        f"{first.pid}, started at "
    ) in second_err
    assert "Traceback" not in second_err
    assert [r["status"] for r in history(pg_dsn)] == ["succeeded"]  # the loser left no row
    checked = run_cli("check", "--deep", "--sqlite", str(fault_source), "--pg", pg_dsn)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_killed_run_shows_interrupted(fault_source: Path, pg_dsn: str) -> None:
    """kill -9 leaves a ``running`` row whose lock nobody holds: `status` shows it as
    interrupted, and the next run records it so; no worker outlives the parent."""
    process = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn)
    run_id = wait_for_running_run(pg_dsn, process)
    time.sleep(0.3)
    family = descendants(process.pid)
    process.kill()
    process.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while alive(family) and time.monotonic() < deadline:  # PR_SET_PDEATHSIG is prompt
        time.sleep(0.05)
    assert not alive(family)
    status = subprocess.run(
        [sys.executable, "-m", "asyncmig", "status", "--pg", pg_dsn, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    shown = {r["id"]: r["status"] for r in json.loads(status.stdout)["runs"]}
    assert shown[run_id] == "interrupted"
    again = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn, "--replace")
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    runs = history(pg_dsn)
    assert [(r["id"], r["status"]) for r in runs][-2:] == [
        (run_id, "interrupted"),
        (run_id + 1, "succeeded"),
    ]


def test_replace_blocked_by_an_application_names_it(fault_source: Path, pg_dsn: str) -> None:
    """`run --replace` behind an application's open transaction stops after
    --lock-timeout, naming the session (pid, its transaction's age) that holds the lock,
    not its query (the error reaches the history: an application's SQL holds its data);
    the tables and their rows are as before."""
    first = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn)
    first.communicate(timeout=120)
    assert first.returncode == 0

    async def scenario() -> tuple[int, str, int]:
        app = await asyncpg.connect(pg_dsn)
        try:
            await app.execute("BEGIN")
            await app.fetchval("SELECT count(*) FROM public.tag WHERE label <> 'hunter2'")
            blocked = start(
                "run",
                "--sqlite",
                str(fault_source),
                "--pg",
                pg_dsn,
                "--replace",
                "--lock-timeout",
                "1",
            )
            _, stderr = await asyncio.to_thread(blocked.communicate, timeout=120)
            assert blocked.returncode == 4, stderr
            return app.get_server_pid(), stderr, int(blocked.returncode)
        finally:
            await app.close()

    app_pid, stderr, _ = asyncio.run(scenario())
    line = [entry for entry in stderr.splitlines() if entry.startswith("asyncmig: error:")][-1]
    assert "not granted within --lock-timeout" in line
    assert f"pid {app_pid} " in line and "transaction open " in line
    assert "hunter2" not in stderr and all(
        "hunter2" not in str(r["error"]) for r in history(pg_dsn)
    )
    assert "Traceback" not in stderr
    assert fetch(pg_dsn, "SELECT count(*) FROM public.child")[0][0] == 120_000
    runs = history(pg_dsn)
    assert [r["status"] for r in runs] == ["succeeded", "failed"]


def test_replace_refuses_over_application_dependents(fault_source: Path, pg_dsn: str) -> None:
    """`run --replace` over tables an application view and foreign key depend on stops
    before any change, listing both; with --cascade it drops them and says so."""
    first = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn)
    first.communicate(timeout=120)
    assert first.returncode == 0
    fetch(pg_dsn, "CREATE VIEW public.app_parents AS SELECT id, name FROM public.parent")
    fetch(
        pg_dsn,
        "CREATE TABLE public.app_orders (id int PRIMARY KEY, "
        "tag_id bigint CONSTRAINT app_orders_tag REFERENCES public.tag (id))",
    )
    fetch(pg_dsn, "INSERT INTO public.app_orders VALUES (1, 3)")
    before = fetch(pg_dsn, "SELECT 'parent'::regclass::oid, 'tag'::regclass::oid")[0]

    validated = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncmig",
            "validate",
            "--sqlite",
            str(fault_source),
            "--pg",
            pg_dsn,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    listed = [entry for entry in validated.stdout.splitlines() if "dependent objects" in entry]
    assert listed and "view public.app_parents" in listed[0], validated.stdout
    assert "foreign key app_orders_tag on public.app_orders" in listed[0]

    refused = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn, "--replace")
    _, stderr = refused.communicate(timeout=120)
    assert refused.returncode == 4, stderr
    line = [entry for entry in stderr.splitlines() if entry.startswith("asyncmig: error:")][-1]
    assert "view public.app_parents" in line
    assert "foreign key app_orders_tag on public.app_orders" in line
    assert "--cascade" in line
    assert fetch(pg_dsn, "SELECT 'parent'::regclass::oid, 'tag'::regclass::oid")[0] == before
    assert fetch(pg_dsn, "SELECT count(*) FROM public.app_parents")[0][0] == 40_000

    cascaded = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn, "--replace", "--cascade")
    stdout, stderr = cascaded.communicate(timeout=120)
    assert cascaded.returncode == 0, stderr
    assert "dropped with --cascade: view public.app_parents" in stdout + stderr
    assert (
        "dropped with --cascade: foreign key app_orders_tag on public.app_orders" in stdout + stderr
    )
    assert not fetch(pg_dsn, "SELECT to_regclass('public.app_parents')")[0][0]
    assert not fetch(pg_dsn, "SELECT 1 FROM pg_constraint WHERE conname = 'app_orders_tag'")
    assert fetch(pg_dsn, "SELECT id, tag_id FROM public.app_orders")[0][:] == (1, 3)
    assert [r["status"] for r in history(pg_dsn)] == ["succeeded", "failed", "succeeded"]


def test_kill_9_while_workers_warm_up_leaves_no_process(fault_source: Path, pg_dsn: str) -> None:
    """Worker processes start while the plan is made, before any table is given to them:
    a parent killed outright then must take them along too (each binds itself to the
    parent as its first job)."""
    process = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn, "--restart")
    deadline = time.monotonic() + 60
    family: list[psutil.Process] = []
    while not family and process.poll() is None and time.monotonic() < deadline:
        family = descendants(process.pid)
        time.sleep(0.01)
    assert family, "no worker process was seen"
    time.sleep(0.5)  # let the warm-up job reach the workers
    family = descendants(process.pid)
    process.kill()
    process.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while alive(family) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(family)


def test_a_signal_after_the_cut_over_does_not_claim_a_rollback(
    fault_source: Path, pg_dsn: str
) -> None:
    """SIGTERM once the checked copy is committed into the target (the run still
    recording its state): exit 143, and the one line says the copy is in place and the
    re-run finishes recording it (it said "rolled back and the target left as it was",
    with every table there); the plain re-run then records the run as succeeded.

    The run is held right after its cut-over: once its tables' loads are recorded, the
    test keeps their history rows locked (FOR SHARE), so the run's state, recorded
    into those rows after the cut-over, waits; the signal comes while it waits."""
    process = start("run", "--sqlite", str(fault_source), "--pg", pg_dsn, "--log-format", "json")
    holder = HistoryHold(pg_dsn, len(TABLES))
    try:
        stderr = terminated_when(
            process, lambda: holder.holding() and bool(public_tables(pg_dsn)), skip=False
        )
    finally:
        holder.release()
    line = stderr.strip().splitlines()[-1]
    assert "after the checked copy was committed into schema public" in line, line
    [failed] = [json.loads(e) for e in stderr.splitlines() if '"event":"run_failed"' in e]
    assert "SIGTERM" in failed["message"], failed  # it was "15"
    assert "rolled back" not in line and "Traceback" not in stderr
    present = public_tables(pg_dsn)
    assert len(present) >= len(TABLES)  # every table of the copy, committed
    again = run_cli("run", "--sqlite", str(fault_source), "--pg", pg_dsn)
    assert again.returncode == 0, again.stderr
    assert public_tables(pg_dsn) == present
    assert history(pg_dsn)[0]["status"] == "succeeded"  # the re-run finished run 1


class HistoryHold:
    """Locks run 1's per-table history rows (FOR SHARE) once all ``tables`` are there:
    what updates them (the state a run records after its cut-over) waits until
    :meth:`release`."""

    def __init__(self, dsn: str, tables: int) -> None:
        self.tables = tables
        self.conn = psycopg.connect(dsn, autocommit=False)
        self.held = False

    def holding(self) -> bool:
        if not self.held:
            exists = self.conn.execute("SELECT to_regclass('asyncmig.run_tables')").fetchone()
            rows = (
                self.conn.execute(
                    "SELECT table_name FROM asyncmig.run_tables WHERE run_id = 1 FOR SHARE"
                ).fetchall()
                if exists and exists[0]
                else []
            )
            self.held = len(rows) >= self.tables
            if not self.held:
                self.conn.rollback()  # no lock kept while the loads go on
        return self.held

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def test_a_signal_once_the_command_returned_does_not_fail_it() -> None:
    """A signal that comes once the command's work is done (here sent by the process to
    itself after the command returned, as its output is written) is recorded, not
    obeyed: exit 0 and the command's result, not exit 143 and "re-run the same command"
    (a scheduled job retried on that exit code would be refused: the run's tables are
    there). A signal while it works still stops it."""
    script = (
        "import os, signal, sys\n"
        "import anyio\n"
        "from asyncmig.cli import signals\n"
        "signals.install()\n"
        "async def work(late):\n"
        "    if not late:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        await anyio.sleep(5)\n"
        "    return 'done'\n"
        "try:\n"
        "    result = signals.run(work, sys.argv[1] == 'late')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)  # as the output is written\n"
        "    print(result, signals.received())\n"
        "except signals.SignalReceived as stop:\n"
        "    print('stopped', stop.name)\n"
        "    sys.exit(stop.exit_code)\n"
    )
    late = run_script(script, "late")
    assert (late.returncode, late.stdout.split()) == (0, ["done", "SIGTERM"]), late
    early = run_script(script, "early")
    assert (early.returncode, early.stdout.split()) == (143, ["stopped", "SIGTERM"]), early


def test_a_signal_after_data_replace_emptied_the_tables_says_so(
    fault_source: Path, pg_dsn: str
) -> None:
    """`data --replace` stopped by SIGTERM once it has emptied the tables said "the
    target left as it was", while the rows the tables held were gone: it says so now."""
    for command in ("schema", "data"):
        code, err = finish(command, "--sqlite", str(fault_source), "--pg", pg_dsn)
        assert code == 0, err
    loaded = fetch(pg_dsn, "SELECT count(*) FROM public.child")[0][0]
    assert loaded > 0, loaded
    process = start("data", "--sqlite", str(fault_source), "--pg", pg_dsn, "--replace")
    emptied = "SELECT count(*) FROM public.child"
    stderr = terminated_when(process, lambda: fetch(pg_dsn, emptied)[0][0] == 0)
    line = stderr.strip().splitlines()[-1]
    assert "were emptied (--replace)" in line and "re-run the same command to load them" in line, (
        stderr
    )
    assert "left as it was" not in line


def run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def terminated_when(
    process: subprocess.Popen[str], ready: Callable[[], bool], *, skip: bool = True
) -> str:
    """SIGTERM to ``process`` as soon as ``ready()``; its stderr, once it exited 143
    (with ``skip``, skips the test when it finished first)."""
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.005)
    _, stderr = process.communicate(timeout=60)
    if process.returncode == 0 and skip:
        pytest.skip("the command had finished before the signal came")
    assert process.returncode == 143, stderr
    return stderr


def test_a_terminated_checksum_scan_is_a_lost_connection_the_re_run_resumes(
    tmp_path: Path, pg_dsn: str
) -> None:
    """The rollback's checksums are scanned on connections of their own beside the last
    phases: one terminated there made the run end in an internal error (exit 70, the
    scans' failure swallowed as a cancellation). It is the lost connection it is: exit
    4, one line, the stage kept, and the same command re-run resumes it."""
    source = tmp_path / "wide.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT, n REAL)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?)",
            ((i, f"{i:08d}" + "x" * 300, i / 7) for i in range(1, 300_001)),
        )
    process = start("run", "--sqlite", str(source), "--pg", pg_dsn)
    victims: list[int] = []

    async def watch() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            deadline = time.monotonic() + 60
            while not victims and time.monotonic() < deadline and process.poll() is None:
                victims.extend(
                    r[0]
                    for r in await conn.fetch(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND query LIKE '%hash_record_extended(t.*%' "
                        "AND pid <> pg_backend_pid() AND state = 'active'"
                    )
                )
                for pid in victims:
                    await conn.execute("SELECT pg_terminate_backend($1)", pid)
                await asyncio.sleep(0.002)
        finally:
            await conn.close()

    asyncio.run(watch())
    _, stderr = process.communicate(timeout=120)
    assert victims, "no checksum scan was seen to terminate"
    assert process.returncode == 4, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("asyncmig: error:")]
    assert lines and lines[-1].startswith("asyncmig: error: lost connection to PostgreSQL")
    assert "re-run the same command to resume" in lines[-1]
    assert public_tables(pg_dsn) == []  # the target as before the run
    again = start("run", "--sqlite", str(source), "--pg", pg_dsn)
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    resumed = fetch(pg_dsn, "SELECT resumed_from FROM asyncmig.runs ORDER BY id DESC LIMIT 1")
    assert resumed[0][0] == history(pg_dsn)[0]["id"]
    assert fetch(pg_dsn, "SELECT count(*), sum(n) FROM public.t")[0][0] == 300_000
