"""A Django project pointed at the migrated database works unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from tests.fix_run import migrate

pytest.importorskip("django")
pytest.importorskip("psycopg")

APP = Path(__file__).parent / "django_app"


def django(workdir: Path, kind: str, target: str, action: str) -> str:
    result = subprocess.run(
        [sys.executable, str(workdir / "djscript.py"), kind, target, action],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def django_params(dsn: str) -> str:
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or ""])[0]
    port = query.get("port", [str(parts.port or "")])[0]  # a socket's port is in the query
    return json.dumps(
        {
            "NAME": parts.path.lstrip("/"),
            "USER": parts.username or "",
            "PASSWORD": parts.password or "",
            "HOST": host,
            "PORT": port,
        }
    )


async def test_django_app_runs_on_the_migrated_database(tmp_path: Path, pg_dsn: str) -> None:
    """UUIDField -> uuid, JSONField -> jsonb, GenericIPAddressField -> inet, booleans,
    timestamps; migrations table intact; lookups, auth and new inserts work."""
    workdir = tmp_path / "project"
    shutil.copytree(APP, workdir)
    (workdir / "shop_migrations").mkdir()
    (workdir / "shop_migrations" / "__init__.py").write_text("")
    source = tmp_path / "django.sqlite3"
    django(workdir, "sqlite", str(source), "create")

    await migrate(source, pg_dsn)

    conn = await asyncpg.connect(pg_dsn)
    try:
        types = {
            (r[0], r[1]): r[2]
            for r in await conn.fetch(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public'"
            )
        }
    finally:
        await conn.close()
    assert types[("shop_customer", "id")] == "uuid"
    assert types[("shop_customer", "profile")] == "jsonb"
    assert types[("shop_customer", "last_ip")] == "inet"
    assert types[("shop_customer", "is_vip")] == "boolean"
    assert types[("shop_customer", "joined")] == "timestamp with time zone"
    assert types[("shop_customer", "birthday")] == "date"
    assert types[("shop_order", "total")] == "numeric"
    assert types[("shop_order", "tags")] == "jsonb"
    assert types[("django_migrations", "applied")] == "timestamp with time zone"
    assert "django ok" in django(workdir, "postgres", django_params(pg_dsn), "check")
