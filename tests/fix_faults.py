"""Helpers shared by the fault tests (signals, kill -9, resume, backups, cleanup): start
``python -m asyncmig`` as an operator would, and read what it left in the target."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import asyncpg
import psutil

from tests.fault_sources import TABLES
from tests.fix_cli import cli_environment
from tests.fix_pg import fetch


def start(*args: str, workers: str = "process") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "asyncmig", *args],
        env=cli_environment({"ASYNCMIG_WORKERS": workers}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def history(dsn: str) -> list[asyncpg.Record]:
    if not fetch(dsn, "SELECT to_regclass('asyncmig.runs')")[0][0]:
        return []
    return fetch(dsn, "SELECT id, status, error, error_class FROM asyncmig.runs ORDER BY id")


def public_tables(dsn: str) -> list[str]:
    return [
        r[0]
        for r in fetch(
            dsn,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' ORDER BY 1",
        )
    ]


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


EVERYTHING = sorted([*TABLES, "big_children"])  # the tables and the view


def stages(dsn: str) -> list[str]:
    return [
        r[0]
        for r in fetch(
            dsn,
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'asyncmig\\_stage\\_%' ORDER BY 1",
        )
    ]


def finish(*args: str) -> tuple[int, str]:
    process = start(*args)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


async def poll_counts(dsn: str, process_done: asyncio.Event, counts: list[int]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        while not process_done.is_set():
            counts.append(int(await conn.fetchval("SELECT count(*) FROM public.child")))
            await asyncio.sleep(0.005)
        counts.append(int(await conn.fetchval("SELECT count(*) FROM public.child")))
    finally:
        await conn.close()


KEYS = {"parent": "id", "child": "id", "tag": "id", "big_children": "id"}


def schemas(dsn: str, pattern: str) -> list[str]:
    """The schemas whose names match the regular expression, sorted."""
    found = fetch(dsn, "SELECT nspname FROM pg_namespace WHERE nspname ~ $1 ORDER BY 1", pattern)
    return [r[0] for r in found]


def backups(dsn: str) -> list[str]:
    return schemas(dsn, "^asyncmig_backup_")


def contents(dsn: str, schema: str = "public") -> dict[str, list[tuple[Any, ...]]]:
    """Every table's (and the view's) rows, as values, in key order."""
    return {
        name: [tuple(r) for r in fetch(dsn, f'SELECT * FROM "{schema}"."{name}" ORDER BY {key}')]
        for name, key in KEYS.items()
    }
