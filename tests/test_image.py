"""The entry point exactly as the container image runs it.

The wheel is built and installed into a fresh virtual environment (as the
Dockerfile's two stages do), then each job runs:

* as a non-root user (the embedded test server's own user, which can reach its
  socket, or ``nobody`` for a server given by URL), through ``setpriv``;
* with no TTY (stdin from /dev/null, output to pipes) and an environment holding only
  the job's variables (the target's URL read from a secret file);
* in a mount namespace where the root filesystem is read-only, apart from a
  ``/data``-like directory (the working directory: source, logs) and a fresh tmpfs
  for temporary files, as ``docker run --read-only --tmpfs /tmp -v data:/data``.

Building the wheel and the environment costs 50-70 s on the 2-core development
machine, so these tests run when ``CI`` or ``ASYNCMIG_TEST_ENTRYPOINT`` is set
(``.ci/run`` sets it) and skip otherwise, saying so. The image test also needs a
container engine that answers and the base image; elsewhere it skips with the reason.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import psycopg
import pytest

from bench.edit_2truths import edit
from bench.gen_2truths import TABLES, generate

ROOT = Path(__file__).resolve().parent.parent
WANTED = bool(os.environ.get("CI") or os.environ.get("ASYNCMIG_TEST_ENTRYPOINT"))
pytestmark = pytest.mark.skipif(
    not WANTED,
    reason="builds the wheel and a fresh virtual environment (50-70 s): runs "
    "in CI, or with ASYNCMIG_TEST_ENTRYPOINT=1",
)


def tool_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to switch to a non-root user and make the root filesystem read-only"
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"needs {tool} (util-linux)"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"cannot create a mount namespace here: {probe.stderr.decode().strip()}"
    return None


def reachable(path: Path) -> bool:
    """Whether any user can run ``path``: every directory on its real path is searchable."""
    real = path.resolve()
    return all(parent.stat().st_mode & 0o001 for parent in real.parents) and bool(
        real.stat().st_mode & 0o001
    )


def base_python() -> str | None:
    """A Python 3.11+ that a non-root user can run (a venv's interpreter is a link to it)."""
    candidates = [
        Path(sys.executable),
        Path(sys.base_prefix) / "bin" / "python3",
        *(
            Path(p)
            for p in (
                "/usr/local/bin/python3.11",
                "/usr/bin/python3.11",
                "/usr/local/bin/python3",
                "/usr/bin/python3",
            )
        ),
    ]
    for candidate in candidates:
        if candidate.exists() and reachable(candidate):
            return str(candidate)
    return None


@dataclass(frozen=True)
class Installed:
    root: Path  # world-readable: the job's user must reach the environment
    venv: Path

    @property
    def entrypoint(self) -> Path:
        return self.venv / "bin" / "asyncmig"


@pytest.fixture(scope="session")
def installed() -> Iterator[Installed]:
    """The built wheel (and its dependencies' wheels) in a fresh venv, once a session."""
    missing = tool_missing()
    if missing:
        pytest.skip(missing)
    python = base_python()
    if python is None:
        pytest.skip(
            "no Python 3.11 that a non-root user can run (this one is under a private directory)"
        )
    root = Path(tempfile.mkdtemp(prefix="asyncmig-image-"))
    root.chmod(0o755)
    try:
        # what the Dockerfile copies into its build stage, and nothing else: the build
        # leaves no egg-info behind in the source tree either
        tree = root / "src"
        shutil.copytree(
            ROOT / "asyncmig", tree / "asyncmig", ignore=shutil.ignore_patterns("__pycache__")
        )
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, tree / name)
        wheels = root / "wheels"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                str(tree),
                "--wheel-dir",
                str(wheels),
            ],
            check=True,
            capture_output=True,
        )
        venv = root / "venv"
        # no pip of its own (as the image's final stage has no build tools): this pip
        # installs into it, 0.2 s where bootstrapping a pip took 7
        subprocess.run(
            [python, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True
        )
        # without PYTHONPATH: a source tree on it would count as asyncmig installed already
        clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(venv / "bin" / "python"),
                "install",
                "--quiet",
                "--no-index",
                "--find-links",
                str(wheels),
                "asyncmig",
            ],
            check=True,
            capture_output=True,
            env=clean,
        )
        yield Installed(root, venv)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def job_user(dsn: str) -> pwd.struct_passwd:
    """The server's own user when the DSN is a socket directory (it alone can reach it),
    else ``nobody``."""
    hosts = parse_qs(urlsplit(dsn).query).get("host", [])
    if hosts and hosts[0].startswith("/"):
        owner = pwd.getpwuid(Path(hosts[0]).stat().st_uid)
        if owner.pw_uid != 0:
            return owner
    return pwd.getpwnam("nobody")


@dataclass
class Job:
    installed: Installed
    data: Path  # the /data-like directory: source, logs
    secret: Path  # the target's URL, 0400, owned by the job's user
    user: pwd.struct_passwd

    def run(
        self, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """One job: read-only root, writable data dir and tmpfs, non-root, no TTY."""
        tmp = self.installed.root / "tmp"
        tmp.mkdir(exist_ok=True)
        env = {
            "ASYNCMIG_PG_FILE": str(self.secret),
            "TMPDIR": str(tmp),
            "ASYNCMIG_VERBOSE": "1",
            **(extra_env or {}),
        }
        drop = [
            "setpriv",
            "--reuid",
            str(self.user.pw_uid),
            "--regid",
            str(self.user.pw_gid),
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ]
        script = (
            'mount --bind "$1" "$1" && mount -t tmpfs -o size=256m,mode=1777 tmpfs "$2" '
            '&& mount -o remount,bind,ro / && cd "$1" && shift 2 && exec "$@"'
        )
        command = [
            "unshare",
            "-m",
            "sh",
            "-c",
            script,
            "sh",
            str(self.data),
            str(tmp),
            *drop,
            str(self.installed.entrypoint),
            *args,
        ]
        return subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


@pytest.fixture
def job(installed: Installed, pg_dsn: str) -> Iterator[Job]:
    user = job_user(pg_dsn)
    data = installed.root / f"data-{os.urandom(4).hex()}"
    data.mkdir(mode=0o700)
    secrets = installed.root / f"secrets-{os.urandom(4).hex()}"
    secrets.mkdir(mode=0o700)
    secret = secrets / "pg-url"
    secret.write_text(pg_dsn + "\n")
    for path in (data, secrets, secret):
        os.chown(path, user.pw_uid, user.pw_gid)
    secret.chmod(0o400)
    try:
        yield Job(installed, data, secret, user)
    finally:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(secrets, ignore_errors=True)


def json_lines(text: str) -> list[dict[str, object]]:
    """Every non-empty line must be one JSON object (no TTY: JSON lines, no colours)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def make_source(job: Job) -> Path:
    source = job.data / "app.db"
    generate(source, 1500, seed=3)
    os.chown(source, job.user.pw_uid, job.user.pw_gid)
    return source


async def test_entrypoint_runs_the_nightly_job(job: Job, pg_dsn: str) -> None:
    """run --snapshot, then sync --if-changed three times, as the image runs them: exit codes,
    JSON log lines, private log files in the data directory, the data in PostgreSQL."""
    source = make_source(job)
    first = job.run("run", "--sqlite", "app.db", "--snapshot")
    assert first.returncode == 0, first.stderr
    events = json_lines(first.stderr)
    assert any(e.get("event") == "snapshot_taken" for e in events)
    assert all("postgresql://" not in json.dumps(e) or "***" in json.dumps(e) for e in events)
    logs = sorted(job.data.glob("migration_*.log"))
    assert len(logs) == 1 and logs[0].stat().st_mode & 0o777 == 0o600
    assert logs[0].stat().st_uid == job.user.pw_uid and json_lines(logs[0].read_text())

    # a --snapshot run recorded its copy's digest, not the file's: the first sync compares
    nothing = job.run("sync", "--sqlite", "app.db", "--if-changed", "--output", "json")
    assert nothing.returncode == 0 and json.loads(nothing.stdout)["changed"] == 0
    skipped = job.run("sync", "--sqlite", "app.db", "--if-changed")
    assert skipped.returncode == 0 and "unchanged since run 2" in skipped.stdout

    edit(source, 0.02, seed=5)
    synced = job.run("sync", "--sqlite", "app.db", "--if-changed", "--output", "json")
    assert synced.returncode == 0, synced.stderr
    report = json.loads(synced.stdout)
    assert report["changed"] > 0 and report["run_id"] == 3
    assert any(e.get("event") == "synced" for e in json_lines(synced.stderr))

    db = sqlite3.connect(source)
    want = {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in TABLES}
    scores = dict(db.execute("SELECT id, score FROM users").fetchall())
    db.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        got = {t: await conn.fetchval(f'SELECT count(*) FROM "{t}"') for t in TABLES}
        pg_scores = dict(await conn.fetch("SELECT id, score FROM users"))
    finally:
        await conn.close()
    assert got == want and pg_scores == scores


def test_entrypoint_errors_are_one_json_line_and_a_code(job: Job) -> None:
    """A missing source: exit 3, one error line on stderr after the JSON log lines, no
    traceback, nothing written but the run's log file."""
    result = job.run("run", "--sqlite", "missing.db", extra_env={"ASYNCMIG_VERBOSE": "0"})
    assert result.returncode == 3
    *events, last = result.stderr.strip().splitlines()
    assert last.startswith("asyncmig: error: cannot read missing.db")
    assert json_lines("\n".join(events)) == [json.loads(e) for e in events]  # JSON lines only
    assert "Traceback" not in result.stderr
    assert [p.name.startswith("migration_") for p in job.data.iterdir()] == [True]


def docker_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "no container engine: docker is not installed"
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no container engine: the docker CLI is here but its daemon is not ({reason})"
    pull = subprocess.run(
        ["docker", "image", "inspect", "python:3.11-slim"], capture_output=True, check=False
    )
    if (
        pull.returncode != 0
        and subprocess.run(
            ["docker", "pull", "python:3.11-slim"], capture_output=True, check=False
        ).returncode
        != 0
    ):
        return "the base image python:3.11-slim is neither present nor pullable"
    return None


def test_image_builds_and_runs_one_job(tmp_path: Path, pg_dsn: str) -> None:
    """docker build, then one `run` with --read-only --tmpfs /tmp, as a non-root user (the
    image's, or the test server's when only that user can reach its socket)."""
    reason = docker_unavailable()
    if reason:
        pytest.skip(reason)
    subprocess.run(
        ["docker", "build", "-t", "asyncmig:test", str(ROOT)], check=True, capture_output=True
    )
    user = job_user(pg_dsn)
    uid = 10001 if user.pw_name == "nobody" else user.pw_uid
    data = tmp_path / "data"
    data.mkdir()
    generate(data / "app.db", 1000, seed=4)
    for path in (data, data / "app.db"):
        os.chown(path, uid, uid if uid == 10001 else user.pw_gid)
    hosts = parse_qs(urlsplit(pg_dsn).query).get("host", [])
    mounts = ["-v", f"{hosts[0]}:{hosts[0]}"] if hosts and hosts[0].startswith("/") else []
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--network",
            "host",
            "--user",
            f"{uid}:{uid if uid == 10001 else user.pw_gid}",
            "-v",
            f"{data}:/data",
            *mounts,
            "-e",
            f"ASYNCMIG_PG={pg_dsn}",
            "asyncmig:test",
            "run",
            "--sqlite",
            "/data/app.db",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM users").fetchone()
    db = sqlite3.connect(data / "app.db")
    assert row is not None and row[0] == db.execute("SELECT count(*) FROM users").fetchone()[0]
    db.close()
