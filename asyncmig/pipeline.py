"""Readers -> bounded queues -> transformers -> writers, one pipeline per table.

    reader (aiosqlite, 1 per table)
        │  batches of --batch-size rows
        ▼
    queue (anyio memory stream, --queue-size batches)
        │
        ▼
    transformers (--transformers per table; skipped when no column needs one)
        │
        ▼
    queue ──▶ writer (asyncpg COPY, 1 connection, 1 transaction)

Up to ``--jobs`` tables run at once. The end of data is the closing of a stream:
each stage holds its own clone and closes it when done, so the consumer's
``async for`` ends exactly when every producer has finished. A failure anywhere
cancels the table's task group, which aborts the COPY and rolls the table back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asyncmig import history
from asyncmig.copy_writer import copy_table
from asyncmig.errors import SourceError
from asyncmig.plan import TablePlan
from asyncmig.quoting import quote_sqlite_ident
from asyncmig.sqlite_source import open_async, source_error
from asyncmig.transforms import Batch, PolicyTransform, Replacement, build_batch_transform

BatchTransform = Callable[[Batch], Batch]


@dataclass(frozen=True)
class PipelineSettings:
    batch_size: int = 5000
    queue_size: int = 4  # batches per queue: memory is bounded by batch_size * queue_size
    transformers: int = 1


@dataclass(frozen=True)
class TableLoad:
    """What happened to one table's data."""

    table: str
    rows_read: int
    rows_copied: int
    seconds: float
    rows_committed: int = -1  # counted after the commit; -1 until then
    replaced: dict[str, int] = field(default_factory=dict)  # per column, by a JSON policy
    replacements: list[Replacement] = field(default_factory=list)  # the first few, with keys


def select_sql(table: TablePlan) -> str:
    columns = ", ".join(quote_sqlite_ident(c.source_name) for c in table.columns)
    return f"SELECT {columns} FROM {quote_sqlite_ident(table.source_name)}"


async def read_table(
    source: Path, table: TablePlan, send: MemoryObjectSendStream[Batch], batch_size: int
) -> int:
    """Stream the table's rows in batches; returns how many were read."""
    import sqlite3

    count = 0
    async with send:
        conn = await open_async(source)
        try:
            cursor = await conn.execute(select_sql(table))
            while batch := [tuple(row) for row in await cursor.fetchmany(batch_size)]:
                count += len(batch)
                await send.send(batch)
        except sqlite3.DatabaseError as exc:
            raise source_error(source, exc) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close()
    return count


async def transform_batches(
    receive: MemoryObjectReceiveStream[Batch],
    send: MemoryObjectSendStream[Batch],
    transform: BatchTransform,
) -> None:
    async with receive, send:
        async for batch in receive:
            await send.send(transform(batch))


async def load_table(
    source: Path,
    schema: str,
    table: TablePlan,
    conn: asyncpg.Connection,
    settings: PipelineSettings,
    run_id: int | None = None,
) -> TableLoad:
    """Move one table's rows from SQLite into its (empty) PostgreSQL table."""
    started = time.perf_counter()
    transform = build_batch_transform(table)
    read_send, read_receive = anyio.create_memory_object_stream[Batch](settings.queue_size)
    results: dict[str, Any] = {}

    async def reader() -> None:
        results["read"] = await read_table(source, table, read_send, settings.batch_size)

    async def record(conn: asyncpg.Connection, copied: int) -> None:
        if run_id is None:
            return
        replaced = transform.counts if isinstance(transform, PolicyTransform) else {}
        await history.record_table(conn, run_id, table.name, table.row_count, copied, replaced,
                                   time.perf_counter() - started)

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        writer_input = read_receive
        if transform is not None:
            out_send, out_receive = anyio.create_memory_object_stream[Batch](settings.queue_size)
            async with read_receive, out_send:
                for _ in range(max(1, settings.transformers)):
                    tg.start_soon(transform_batches, read_receive.clone(), out_send.clone(),
                                  transform)
            writer_input = out_receive
        results["copied"] = await copy_table(conn, schema, table, writer_input, record)
    rows_sent, rows_copied = results["copied"]
    if rows_sent != results["read"]:
        raise SourceError(f"internal mismatch reading {table.name}: read {results['read']}, "
                          f"sent {rows_sent}")
    load = TableLoad(table.name, results["read"], rows_copied, time.perf_counter() - started)
    if isinstance(transform, PolicyTransform):
        load = replace(load, replaced=dict(transform.counts), replacements=transform.examples)
    return load
