"""``--if-changed``: skip a scheduled run when the source is the file the last one loaded.

The history keeps, for every successful ``run``, ``data`` and ``sync``, the source's
size and SHA-256, and (in ``options.source_edges``) a digest of the file's first and
last 64 KiB: the SQLite header (whose change counter moves on every commit in
rollback-journal mode) and the pages an append usually touches. Deciding costs:

1. the size: different means changed, at the cost of one ``stat``;
2. the edges: different means changed, at the cost of reading 128 KiB;
3. only when both match, the full SHA-256 (one read of the whole file), compared
   with the recorded one: equal means unchanged.

A database whose WAL file is not empty is always treated as changed: its committed
content is not all in the main file, which is all the digests cover (checkpoint it,
or let the sync run). A skipped run records nothing in the history (it did nothing,
and a read-only role can check), and says ``unchanged since run N``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import asyncpg

from asyncmig.source.digest import sha256
from asyncmig.target.connect import Target, connect, hang_up
from asyncmig.target.history import RUNS, SCHEMA

EDGE_BYTES = 64 * 1024
LOADING_COMMANDS = ("run", "data", "sync")


@dataclass(frozen=True)
class LastLoad:
    """What the latest successful load into a schema recorded about its source."""

    run_id: int
    size: int | None
    sha256: str | None
    edges: str | None
    inputs: str | None = None  # the profile's and planning options' fingerprint


def edges_of(path: Path) -> str:
    """SHA-256 of the file's size, first and last EDGE_BYTES: the cheap fingerprint."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        size = stream.seek(0, 2)
        digest.update(str(size).encode())
        stream.seek(0)
        digest.update(stream.read(EDGE_BYTES))
        stream.seek(max(0, size - EDGE_BYTES))
        digest.update(stream.read(EDGE_BYTES))
    return digest.hexdigest()


def wal_pending(path: Path) -> bool:
    """Whether committed content may sit in the WAL rather than the main file."""
    wal = Path(str(path) + "-wal")
    return wal.exists() and wal.stat().st_size > 0


async def latest_loading_run(
    conn: asyncpg.Connection, schema: str, columns: str
) -> asyncpg.Record | None:
    """``columns`` (SQL of the caller's, over the runs table) of the latest successful
    run, data or sync into ``schema``, or None."""
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.runs"):
        return None
    return await conn.fetchrow(
        f"SELECT {columns} FROM {RUNS} "
        "WHERE target_schema = $1 AND status = 'succeeded' AND command = ANY($2::text[]) "
        "ORDER BY id DESC LIMIT 1",
        schema,
        list(LOADING_COMMANDS),
    )


async def last_load(conn: asyncpg.Connection, schema: str) -> LastLoad | None:
    """The latest successful run, data or sync into ``schema``, or None."""
    row = await latest_loading_run(conn, schema, "id, source_size, source_sha256, options")
    if row is None:
        return None
    options = json.loads(row["options"]) if row["options"] else {}
    options = options if isinstance(options, dict) else {}  # a history edited by hand
    planned_from = options.get("planned_from")
    return LastLoad(
        int(row["id"]),
        row["source_size"],
        row["source_sha256"],
        options.get("source_edges"),
        planned_from.rpartition(":")[2] if isinstance(planned_from, str) else None,
    )


def same_file(path: Path, last: LastLoad) -> bool:
    """Size, then edges, then the full SHA-256: stop at the first difference."""
    if last.sha256 is None or wal_pending(path):
        return False
    if last.size is not None and path.stat().st_size != last.size:
        return False
    if last.edges is not None and edges_of(path) != last.edges:
        return False
    return sha256(path) == last.sha256


async def unchanged_since(
    conn: asyncpg.Connection, schema: str, source: Path, inputs: str | None = None
) -> int | None:
    """The run whose source is byte-identical to ``source`` now, and whose profile and
    planning options (``inputs``, their fingerprint) were these, or None (go ahead): a
    changed profile is a reason to run, though the file is the same."""
    last = await last_load(conn, schema)
    if last is None:
        return None
    if inputs is not None and last.inputs is not None and inputs != last.inputs:
        return None
    same = await anyio.to_thread.run_sync(same_file, source, last)
    return last.run_id if same else None


async def unchanged_target(
    target: Target, schema: str, source: Path, inputs: str | None = None
) -> int | None:
    """:func:`unchanged_since`, on a connection of its own (``--if-changed``)."""
    conn = await connect(target)
    try:
        return await unchanged_since(conn, schema, source, inputs)
    finally:
        await hang_up(conn)
