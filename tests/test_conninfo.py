"""libpq's conventions: service files, PGSERVICE, key=value strings, application_name."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import asyncpg
import pytest

from asyncmig.errors import UsageError
from asyncmig.target import conninfo
from asyncmig.target.connect import NO_JIT, Target, connect, resolve_target
from tests.fix_cli import run_cli
from tests.fix_pg import create_database, drop_database
from tests.sources import small_source


def test_parse_url_and_pairs() -> None:
    assert conninfo.parse(
        "postgresql://u%40x:p%2Fw@h1:5433,[::1]:5434/my%20db?sslmode=require"
    ) == {
        "user": "u@x",
        "password": "p/w",
        "host": "h1,::1",
        "port": "5433,5434",
        "dbname": "my db",
        "sslmode": "require",
    }
    assert conninfo.parse("host=/tmp dbname='my db' password='it\\'s' port = 5") == {
        "host": "/tmp",
        "dbname": "my db",
        "password": "it's",
        "port": "5",
    }
    with pytest.raises(UsageError, match="unknown connection parameter 'nope'"):
        conninfo.parse("host=x nope=1")


def test_precedence_string_then_service_then_environment(tmp_path: Path) -> None:
    services = tmp_path / "services.conf"
    services.write_text("[svc]\nhost=svc-host\ndbname=svc-db\nuser=svc-user\n")
    environ = {
        "PGSERVICEFILE": str(services),
        "PGUSER": "env-user",
        "PGPORT": "6000",
        "PGDATABASE": "env-db",
    }
    assert conninfo.resolve("service=svc dbname=mine", environ) == {
        "dbname": "mine",
        "host": "svc-host",
        "user": "svc-user",
        "port": "6000",
    }
    # a URL with no database leaves it to the service, never to a default
    assert conninfo.resolve("postgresql:///?service=svc", environ)["dbname"] == "svc-db"
    assert conninfo.resolve(None, {**environ, "PGSERVICE": "svc"})["dbname"] == "svc-db"
    with pytest.raises(UsageError, match="service 'other' is not defined"):
        conninfo.resolve("service=other", environ)


def _socket_and_db(dsn: str) -> tuple[str, str]:
    """The test server's socket directory and port as libpq key-value pairs (a server
    given by ASYNCMIG_TEST_DSN may listen on any port), and the database's name."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    port = query.get("port") or parts.port or 5432
    return f"host={query['host']} port={port}", parts.path.lstrip("/")


async def _marker(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SELECT current_database()"))
    finally:
        await conn.close()


async def test_service_file_and_pgservice_reach_the_named_database(
    tmp_path: Path, pg_server: str, pg_dsn: str
) -> None:
    """PGSERVICE and ?service= connect to the service's database, nowhere else."""
    server, database = _socket_and_db(pg_dsn)
    services = tmp_path / "pg_service.conf"
    lines = [*server.split(), f"dbname={database}", "user=postgres"]
    services.write_text("[mysvc]\n" + "".join(f"{line}\n" for line in lines))
    environ = {"PGSERVICEFILE": str(services), "HOME": str(tmp_path)}
    for target in [
        resolve_target(None, {**environ, "PGSERVICE": "mysvc"}),
        resolve_target("postgresql:///?service=mysvc", environ),
        resolve_target("service=mysvc", environ),
    ]:
        assert target is not None
        with pytest.MonkeyPatch.context() as patch:
            for key, value in environ.items():
                patch.setenv(key, value)
            patch.delenv("PGSERVICE", raising=False)
            if target.dsn is None:
                patch.setenv("PGSERVICE", "mysvc")
            conn = await connect(target)
            try:
                assert await conn.fetchval("SELECT current_database()") == database
                assert await conn.fetchval("SHOW application_name") == "asyncmig"
            finally:
                await conn.close()
    source = small_source(tmp_path / "a.db")
    result = run_cli("run", "--sqlite", str(source), env={**environ, "PGSERVICE": "mysvc"})
    assert result.returncode == 0, result.stderr
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM t") == 20
    finally:
        await conn.close()


async def test_key_value_string(tmp_path: Path, pg_server: str, pg_dsn: str) -> None:
    server, database = _socket_and_db(pg_dsn)
    name, other = await create_database(pg_server)
    try:
        source = small_source(tmp_path / "a.db")
        pairs = f"{server} dbname={name} user=postgres application_name=nightly"
        result = run_cli("run", "--sqlite", str(source), "--pg", pairs)
        assert result.returncode == 0, result.stderr
        conn = await asyncpg.connect(other)
        try:
            assert await conn.fetchval("SELECT count(*) FROM t") == 20
        finally:
            await conn.close()
        target = Target(pairs, pairs, "--pg")
        conn = await connect(target)
        try:
            assert await conn.fetchval("SHOW application_name") == "nightly"
        finally:
            await conn.close()
        assert await _marker(pg_dsn) == database  # the first database was not touched
    finally:
        await drop_database(pg_server, name)


def test_unknown_service_is_a_usage_error(tmp_path: Path) -> None:
    source = small_source(tmp_path / "a.db")
    result = run_cli(
        "run",
        "--sqlite",
        str(source),
        "--pg",
        "service=missing",
        env={"PGSERVICEFILE": str(tmp_path / "none.conf"), "HOME": str(tmp_path)},
    )
    assert result.returncode == 2, result.stderr
    assert "service 'missing' is not defined" in result.stderr
    assert "Traceback" not in result.stderr


async def test_session_settings_join_the_targets_own(pg_dsn: str) -> None:
    """A command's own session settings (``jit = off`` for a sync) are sent with the
    connection beside the target's (here its application_name), not instead
    of them; a connection without them keeps the server's default."""
    pairs = f"{pg_dsn}&application_name=nightly"
    target = Target(pairs, pairs, "--pg")
    conn = await connect(target, NO_JIT)
    plain = await connect(target)
    try:
        assert await conn.fetchval("SHOW jit") == "off"
        assert await conn.fetchval("SHOW application_name") == "nightly"
        default = await plain.fetchval("SELECT boot_val FROM pg_settings WHERE name = 'jit'")
        assert await plain.fetchval("SHOW jit") == default
    finally:
        await conn.close()
        await plain.close()


def test_a_list_of_hosts_is_a_url_like_any_other(tmp_path: Path, pg_dsn: str) -> None:
    """libpq's multi-host URL (hosts that do not answer first, one of them an IPv6 address
    in brackets, then the server) is accepted and connects to the host that answers; a
    port that is not a number, in any host of the list, is refused before connecting,
    the password hidden."""
    params = conninfo.parse(pg_dsn)
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    if "," in host:
        pytest.skip("the test server is itself given as a list of hosts")
    real = f"{quote(host, safe='')}:{port}"
    source = small_source(tmp_path / "a.db")
    for dead in (f"{quote('/nonexistent-dir', safe='')}:{port}", "[::1]:1"):
        url = f"postgresql://{quote(params.get('user', 'postgres'), safe='')}@{dead},{real}/"
        url += quote(params["dbname"], safe="")
        ran = run_cli(
            "run", "--replace", "--sqlite", str(source), "--pg", url, "--log-dir", str(tmp_path)
        )
        assert ran.returncode == 0, ran.stderr
        assert "migrated into" in ran.stdout
        assert "rows" in run_cli("status", "--pg", url).stdout
    bad = f"postgresql://me:s3cret@127.0.0.1:1,127.0.0.1:x{port}/db"
    ran = run_cli("status", "--pg", bad)
    assert ran.returncode == 2, ran.stderr
    assert "the URL cannot be parsed" in ran.stderr and "s3cret" not in ran.stderr
    assert "me:***@" in ran.stderr
