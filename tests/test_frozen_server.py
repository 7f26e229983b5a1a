"""A server that stops answering mid-run (every process of its cluster stopped with
SIGSTOP, as a frozen VM or a cut network looks to a client): the run ends by itself
with one line naming the timeout, exit 4. The cluster is the test's own, so no other
test is frozen with it."""

from __future__ import annotations

import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from asyncmig.target.connect import ANSWER_MARGIN, GRACE
from asyncmig.target.embedded import EmbeddedServer
from tests.fault_sources import build_fault_source
from tests.fix_faults import finish, history, stages, start


@pytest.fixture
def own_server() -> Iterator[tuple[str, Path]]:
    server = EmbeddedServer(Path(tempfile.mkdtemp(prefix="asyncmig-frozen-")) / "pgdata")
    try:
        yield server.start(), server.pgdata
    finally:
        server.stop(delete=True)


def cluster(pgdata: Path) -> list[psutil.Process]:
    """The postmaster and every process it started."""
    postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    return [postmaster, *postmaster.children(recursive=True)]


def freeze(members: list[psutil.Process]) -> list[psutil.Process]:
    """SIGSTOP each process; one that ended since it was listed (a backend whose session
    closed) has nothing left to freeze. The postmaster must be there."""
    frozen = []
    for member in members:
        try:
            member.send_signal(signal.SIGSTOP)
        except psutil.NoSuchProcess:
            continue
        frozen.append(member)
    assert frozen and frozen[0] == members[0], "the postmaster was not frozen"
    return frozen


def thaw(frozen: list[psutil.Process]) -> None:
    """SIGCONT each frozen process still there (a stopped process can still be killed,
    e.g. a backend ended by its postmaster): none may stay stopped, whatever happened."""
    for member in frozen:
        try:
            member.send_signal(signal.SIGCONT)
        except psutil.NoSuchProcess:
            continue


def test_a_frozen_server_ends_the_run_naming_the_timeout(
    tmp_path: Path, own_server: tuple[str, Path]
) -> None:
    """Frozen once the run's stage exists: PostgreSQL's statement_timeout cannot fire
    (the server is stopped), the client's own wait (--statement-timeout + 10 s) does,
    once: the connections are then dropped, not waited for again. Exit 4, "no answer
    within --statement-timeout", no traceback; once the server runs again, the same
    command finishes the job."""
    dsn, pgdata = own_server
    source = build_fault_source(tmp_path / "app.db", rows=40_000)
    process = start(
        "run", "--sqlite", str(source), "--pg", dsn, "--statement-timeout", "1", workers="inline"
    )
    deadline = time.monotonic() + 60
    while not stages(dsn) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before the server could be frozen"
    frozen = freeze(cluster(pgdata))
    frozen_at = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=180)
    finally:
        thaw(frozen)
    waited = time.monotonic() - frozen_at
    # one client-side wait, then a grace per connection: not the whole wait again for
    # every connection (a ROLLBACK, a pool's reset and each close waited 11 s: 32 s here).
    # 13-14 s on an idle machine, 15-16 s beside two busy processes: slack for the exit
    assert waited < 1 + ANSWER_MARGIN + 6 * GRACE, (waited, stderr)
    errors = [line for line in stderr.splitlines() if line.startswith("asyncmig:")]
    assert process.returncode == 4, stderr
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    frozen_statement = (
        "asyncmig: error: lost connection to PostgreSQL: no answer within "
        "--statement-timeout; hint: is the server (or the network to it) frozen?"
    )
    frozen_connect = (
        f"asyncmig: error: cannot connect to {dsn.replace('postgres:@', 'postgres:***@')}: "
        "no answer within 11 s; hint: is the server (or the network to it) frozen?"
    )
    # the statement waiting, or a connection being opened when the server froze
    assert errors[0].startswith((frozen_statement, frozen_connect)), errors
    code, err = finish("run", "--sqlite", str(source), "--pg", dsn)
    assert code == 0, err
    assert [r["status"] for r in history(dsn)] == ["interrupted", "succeeded"]
    assert stages(dsn) == []
