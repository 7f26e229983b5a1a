"""PostgreSQL servers for the tests: the embedded one, a distribution one, or $ASYNCMIG_TEST_DSN.

The session fixture ``pg_server`` yields an admin DSN; ``pg_dsn`` creates a fresh
database per test and drops it afterwards. ``pg_servers`` parametrises round-trip
tests over every server available: the embedded PostgreSQL and, when the machine has
one, the distribution's PostgreSQL 15 (users' servers are older than the embedded one).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psycopg
import pytest

DISTRIBUTION_BINDIRS = [Path(f"/usr/lib/postgresql/{v}/bin") for v in (15, 14, 13, 16, 17)]


class LocalCluster:
    """A throw-away cluster from a distribution's binaries, on a Unix socket only."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="asyncmig-pg-"))
        self.data = self.root / "data"
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.user:
            # in /usr/sbin, which a bare PATH (env -i, cron) leaves out
            runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
            cmd = [runuser or "runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    def start(self) -> str:
        if self.user:
            uid = pwd.getpwnam(self.user).pw_uid
            os.chown(self.root, uid, -1)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.root / "log"),
            "-o",
            f"-h '' -k {self.root} -F",
            "start",
        )
        return f"postgresql://postgres@/postgres?host={self.root}"

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


PASSWORD_ROLE = "asyncmig_pw"


def require_password_for(pgdata: Path, dsn: str, role: str) -> None:
    """Make ``role`` authenticate with a password (the rest stays trust), for error tests."""
    hba = pgdata / "pg_hba.conf"
    rules = f"local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n"
    hba.write_text(rules + hba.read_text())

    with psycopg.connect(dsn, autocommit=True) as conn:  # sync: fixtures may run in a loop
        conn.execute("SELECT pg_reload_conf()")


@pytest.fixture(scope="session")
def password_role(pg_server: str) -> str | None:
    """A role that must give a password, on servers the tests started (None otherwise)."""
    return None if os.environ.get("ASYNCMIG_TEST_DSN") else PASSWORD_ROLE


def distribution_bindir() -> Path | None:
    for bindir in DISTRIBUTION_BINDIRS:
        if (bindir / "initdb").exists():
            return bindir
    return None


def server_version(dsn: str) -> str:
    async def fetch() -> str:
        conn = await asyncpg.connect(dsn)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    return asyncio.run(fetch())


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Admin DSN of the session's main server (embedded unless ASYNCMIG_TEST_DSN is set)."""
    dsn = os.environ.get("ASYNCMIG_TEST_DSN")
    if dsn:
        yield dsn
        return
    from asyncmig.target.embedded import EmbeddedServer

    server = EmbeddedServer(Path(tempfile.mkdtemp(prefix="asyncmig-test-")) / "pgdata")
    try:
        dsn = server.start()
        require_password_for(server.pgdata, dsn, PASSWORD_ROLE)
        yield dsn
    finally:
        server.stop(delete=True)


@pytest.fixture(scope="session")
def pg15_server() -> Iterator[str | None]:
    """Admin DSN of the distribution's PostgreSQL (13-17), or None when not installed."""
    bindir = distribution_bindir()
    if bindir is None:
        yield None
        return
    cluster = LocalCluster(bindir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


async def create_database(admin_dsn: str, template: str | None = None) -> tuple[str, str]:
    """A new database (a copy of ``template``, which nobody may be connected to, if
    given): its name and DSN."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        copy = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await conn.close()
    return name, with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def with_database(dsn: str, database: str) -> str:
    """Return ``dsn`` pointing at another database (URL form)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture
async def pg_dsn(pg_server: str) -> AsyncIterator[str]:
    """A fresh, empty database on the main server, dropped after the test."""
    name, dsn = await create_database(pg_server)
    try:
        yield dsn
    finally:
        await drop_database(pg_server, name)


@pytest.fixture(params=["embedded", "pg15"])
async def any_pg_dsn(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh database on each available server: embedded, then the distribution's."""
    admin = request.getfixturevalue("pg_server" if request.param == "embedded" else "pg15_server")
    if admin is None:
        pytest.skip("no distribution PostgreSQL installed")
    name, dsn = await create_database(admin)
    try:
        yield dsn
    finally:
        await drop_database(admin, name)


def as_user(dsn: str, user: str) -> str:
    """``dsn`` for another role (the test servers trust every role but asyncmig_pw)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@asynccontextmanager
async def role_without_create(dsn: str, prefix: str, *grants: str) -> AsyncIterator[str]:
    """A new LOGIN role, with CREATE on the database and on ``public`` revoked from
    PUBLIC; ``grants`` (``{role}``: its quoted name) run after. Dropped afterwards,
    with what it owns."""
    role = f"{prefix}_{uuid.uuid4().hex[:10]}"
    database = urlsplit(dsn).path.lstrip("/")
    await execute(
        dsn,
        f'CREATE ROLE "{role}" LOGIN',
        f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC',
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        *(g.format(role=f'"{role}"') for g in grants),
    )
    try:
        yield role
    finally:
        await execute(dsn, f'DROP OWNED BY "{role}" CASCADE', f'DROP ROLE "{role}"')


async def execute(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def fetch_async(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """``sql``'s rows, on a connection of their own."""
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """``sql``'s rows, from a test that is not async."""
    return asyncio.run(fetch_async(dsn, sql, *args))
