"""Readers -> bounded queues -> transformers -> writers, one pipeline per table.

    reader (aiosqlite, 1 per table)
        │  batches of --batch-size rows
        ▼
    queue (anyio memory stream, --queue-size batches)
        │
        ▼
    transformer (one per table; skipped when no column needs one)
        │
        ▼
    queue ──▶ writer (asyncpg COPY, 1 connection, 1 transaction)

Besides each queue's bound, the batches in flight (read and not yet copied, wherever
they are) are bounded by bytes (``FLIGHT_BYTES``): the reader takes a ticket before it
reads a batch and the writer hands it back once the batch is copied. A long table of
wide rows then holds no more than a short one, and a process's memory stays about
the same whatever the table's length.

Up to ``--jobs`` tables run at once. The end of data is the closing of a stream:
each stage holds its own clone and closes it when done, so the consumer's
``async for`` ends exactly when every producer has finished. A failure anywhere
cancels the table's task group, which aborts the COPY and rolls the table back.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiosqlite
import anyio
import asyncpg
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asyncmig.cli.settings import default
from asyncmig.errors import SourceError
from asyncmig.load.copy_writer import copy_table
from asyncmig.load.counts import recorded_rows
from asyncmig.load.policy import Accounts, TableGuard, lenient_text
from asyncmig.load.progress import Counter, Slot
from asyncmig.load.proof import Proof
from asyncmig.load.transforms import (
    Batch,
    Pair,
    build_batch_transform,
    encoded_columns,
    exact_codecs,
)
from asyncmig.plan.model import TablePlan
from asyncmig.quoting import qualified, quote_sqlite_ident
from asyncmig.source.scan import SQL_FUNCTIONS
from asyncmig.source.sqlite import open_async, source_error, undecodable
from asyncmig.target import history

# a batch holds at most this many bytes of values (as SQLite stores them; about four
# times that as Python objects): a table of wide rows or large blobs moves in smaller
# batches, so memory stays bounded in bytes, not only in rows
BATCH_BYTES = 1024 * 1024
# the batches of one table in flight, read and not yet copied, hold at most this many
# bytes (as BATCH_BYTES counts them), and never fewer than MIN_FLIGHT batches: enough
# to keep the reader, the transformer and the writer busy at once
FLIGHT_BYTES = 4 * 1024 * 1024
MIN_FLIGHT = 2


def batch_rows(settings: PipelineSettings, table: TablePlan) -> int:
    """Rows per batch: --batch-size, fewer when the table's rows are big."""
    if table.row_bytes <= 0:
        return settings.batch_size
    return max(1, min(settings.batch_size, BATCH_BYTES // table.row_bytes))


def flight_batches(settings: PipelineSettings, table: TablePlan) -> int:
    """How many of the table's batches may be in flight at once (the reader's tickets):
    as many as ``flight_bytes`` holds, at most what the queues and stages could hold
    anyway (two queues of --queue-size, one batch in each of the three stages)."""
    stages = 2 * settings.queue_size + 3
    if table.row_bytes <= 0:
        return stages
    per_batch = batch_rows(settings, table) * table.row_bytes
    return max(MIN_FLIGHT, min(stages, settings.flight_bytes // per_batch))


@dataclass(frozen=True)
class PipelineSettings:
    batch_size: int = default("batch_size")
    queue_size: int = default(
        "queue_size"
    )  # batches per queue: memory is bounded by batch_size * queue_size
    transformers: int = 1
    reject_dir: Path | None = None  # where <table>.jsonl rejects go (None: counted only)
    max_rejects: int | None = default("max_rejects")  # per table; more rolls the table back
    chunk_rows: int = 0  # commit a large table in recorded rowid ranges (asyncmig.load.chunks)
    append_rejects: bool = False  # a table's later chunks add to its reject file
    # timestamptz and numeric values handed to the COPY already encoded (load.codecs);
    # off: asyncpg's own codecs, the same values more slowly (tests compare the two)
    encode: bool = True
    flight_bytes: int = FLIGHT_BYTES  # bytes of a table's batches in flight (tests lower it)


@dataclass(frozen=True)
class TableLoad:
    """What happened to one table's data: read = copied + rejected."""

    table: str
    rows_read: int
    rows_copied: int
    seconds: float
    rows_committed: int = -1  # counted after the commit; -1 until then
    accounts: Accounts = field(default_factory=Accounts)

    @property
    def rows_rejected(self) -> int:
        return self.accounts.rejected


def select_sql(table: TablePlan) -> str:
    """The reader's SELECT: the table's columns (a split table's rowid range), with
    the proof's conditions that SQLite checks (:mod:`asyncmig.load.proof`)."""
    columns = ", ".join(quote_sqlite_ident(c.source_name) for c in table.columns)
    where = Proof(table).where
    terms = [where] if where else []
    if table.rowid_range is not None:  # a split table's part (asyncmig.load.split)
        terms.insert(
            0, f"rowid BETWEEN {int(table.rowid_range[0])} AND {int(table.rowid_range[1])}"
        )
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    return f"SELECT {columns} FROM {quote_sqlite_ident(table.source_name)}{where}"


class PlanRefuted(Exception):
    """A row the plan made from a sample does not fit (``TablePlan.proof_terms``).

    Not a MigrationError: the run drops what it made, profiles ``table`` over every row
    and starts again (:mod:`asyncmig.run`).
    """

    def __init__(self, table: str, column: str) -> None:
        super().__init__(table, column)
        self.table = table
        self.column = column


async def _watch_proof(conn: aiosqlite.Connection, table: TablePlan) -> list[int]:
    """Register the function the proof calls for a refuting row; it records the column."""
    refuted: list[int] = []

    def asyncmig_refuted(number: int) -> int:
        refuted.append(number)
        raise ValueError("plan refuted")  # stops the scan at this row

    if table.proof:
        await conn.create_function("asyncmig_refuted", 1, asyncmig_refuted)
        for name, arguments, function in SQL_FUNCTIONS:  # the conditions call them
            await conn.create_function(name, arguments, function, deterministic=True)
    return refuted


async def read_table(
    source: Path,
    table: TablePlan,
    send: MemoryObjectSendStream[Pair],
    batch_size: int,
    guard: TableGuard,
    flight: anyio.Semaphore,
) -> int:
    """Stream the table's rows in batches; returns how many were read.

    ``flight``: a ticket is taken before each batch is read; whoever consumes the batch
    last (the writer) releases it, so the batches in flight never outnumber its tickets.

    Text that is not UTF-8 makes Python's sqlite3 raise in the middle of a batch: the
    read then restarts after the rows already sent, with a text factory that marks such
    values, and each is settled by its column's policy (an OFFSET scan, paid only once).
    """
    count = 0
    sent = [0]  # rows handed on so far: where a restarted read resumes
    async with send:
        conn = await open_async(source)
        try:
            refuted = await _watch_proof(conn, table)
            try:
                count = await _read(conn, table, send, batch_size, guard, sent, flight)
            except sqlite3.OperationalError as exc:
                if not undecodable(exc) or refuted:
                    raise
                conn.text_factory = lenient_text
                count = await _read(conn, table, send, batch_size, guard, sent, flight)
        except sqlite3.DatabaseError as exc:
            if refuted:
                raise PlanRefuted(table.name, table.columns[refuted[0]].name) from None
            raise source_error(source, exc) from exc
        except anyio.BrokenResourceError:
            # the writer stopped first and closed its end: its own error says why, and
            # a "broken stream" here must not stand in for it
            return sent[0]
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close()
    return count


async def _read(
    conn: aiosqlite.Connection,
    table: TablePlan,
    send: MemoryObjectSendStream[Pair],
    batch_size: int,
    guard: TableGuard,
    sent: list[int],
    flight: anyio.Semaphore,
) -> int:
    offset = sent[0]
    sql = select_sql(table) + (f" LIMIT -1 OFFSET {offset}" if offset else "")
    cursor = await conn.execute(sql)
    lenient = conn.text_factory is lenient_text
    proof = Proof(table)
    while True:
        await flight.acquire()  # released by the writer once the batch is copied
        try:
            read, batch = await _next_batch(cursor, batch_size, table, proof, guard, lenient)
        except BaseException:  # no batch goes on: nobody else will release its ticket
            flight.release()
            raise
        if not read:
            flight.release()
            return sent[0]
        await send.send((batch, batch))
        sent[0] += read


async def _next_batch(
    cursor: aiosqlite.Cursor,
    batch_size: int,
    table: TablePlan,
    proof: Proof,
    guard: TableGuard,
    lenient: bool,
) -> tuple[int, Batch]:
    """(rows read, the batch to hand on): checked against the plan's proof, and text
    that is not UTF-8 settled (a lenient read)."""
    # rows are plain tuples (no row factory): no per-row copy on the hot path
    batch = cast(Batch, list(await cursor.fetchmany(batch_size)))
    refuted = proof.refuted(batch)  # before anything else sees the rows
    if refuted is not None:
        raise PlanRefuted(table.name, table.columns[refuted].name)
    return len(batch), guard.resolve_invalid_text(batch) if lenient else batch


async def transform_batches(
    receive: MemoryObjectReceiveStream[Pair],
    send: MemoryObjectSendStream[Pair],
    transform: Callable[[Pair], Pair],
) -> None:
    async with receive, send:
        async for pair in receive:
            try:
                await send.send(transform(pair))
            except anyio.BrokenResourceError:
                return  # the writer stopped first: its error is the one to report


async def load_table(
    source: Path,
    schema: str,
    table: TablePlan,
    conn: asyncpg.Connection,
    settings: PipelineSettings,
    run_id: int | None = None,
    slot: Slot | None = None,
    *,
    clean: bool = False,
) -> TableLoad:
    """Move one table's rows from SQLite into its PostgreSQL table.

    ``slot`` is the table's place on the run's progress board (see
    :mod:`asyncmig.load.progress`): the writer adds each batch's rows to it. The table is
    empty, or ``clean`` says it may not be (a retry, a resumed run): it is then
    emptied, with its history row, in the load's own transaction.
    """

    async def record(
        conn: asyncpg.Connection, copied: int, accounts: Accounts, seconds: float
    ) -> None:
        if run_id is not None:
            read = recorded_rows(table, copied + accounts.rejected)
            await history.record_table(conn, run_id, table.name, read, copied, accounts, seconds)

    async def empty(conn: asyncpg.Connection) -> None:
        await conn.execute(f"TRUNCATE {qualified(schema, table.name)}")
        if run_id is not None:
            await history.forget_table(conn, run_id, table.name)

    if slot is None:
        return await load_rows(
            source, schema, table, conn, settings, None, record, empty if clean else None
        )
    with slot.counter() as counter:
        return await load_rows(
            source, schema, table, conn, settings, counter, record, empty if clean else None
        )


# called in the load's transaction, just before it commits: (conn, rows copied, the
# load's accounts, seconds since it began)
Recorder = Callable[[asyncpg.Connection, int, Accounts, float], Awaitable[None]]


async def load_rows(
    source: Path,
    schema: str,
    table: TablePlan,
    conn: asyncpg.Connection,
    settings: PipelineSettings,
    counter: Counter | None,
    recorder: Recorder,
    first: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> TableLoad:
    """The pipeline for ``table`` (or the rowid range it names) in one transaction:
    ``first`` runs at its start, ``recorder`` just before its commit."""
    started = time.perf_counter()
    guard = TableGuard(
        table, settings.reject_dir, settings.max_rejects, append=settings.append_rejects
    )
    transform = build_batch_transform(table, guard, encode=settings.encode)
    encoded = exact_codecs(table) | frozenset(
        encoded_columns(table).values() if transform is not None and settings.encode else ()
    )
    read_send, read_receive = anyio.create_memory_object_stream[Pair](settings.queue_size)
    results: dict[str, Any] = {}
    flight = anyio.Semaphore(flight_batches(settings, table))

    async def reader() -> None:
        results["read"] = await read_table(
            source, table, read_send, batch_rows(settings, table), guard, flight
        )

    async def record(conn: asyncpg.Connection, copied: int) -> None:
        guard.flush()  # the rejected rows on disk before the rows loaded are committed
        await recorder(conn, copied, guard.accounts, time.perf_counter() - started)

    writer_input = read_receive
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            if transform is not None:
                out_send, out_receive = anyio.create_memory_object_stream[Pair](settings.queue_size)
                async with read_receive, out_send:
                    for _ in range(max(1, settings.transformers)):
                        tg.start_soon(
                            transform_batches, read_receive.clone(), out_send.clone(), transform
                        )
                writer_input = out_receive

            def on_batch(rows: int) -> None:  # a batch is copied (or all of it rejected)
                flight.release()
                if counter is not None:
                    counter.add(rows, guard.accounts.rejected)

            results["copied"] = await copy_table(
                conn, schema, table, writer_input, guard, record, on_batch, first, encoded
            )
    finally:
        # copy_table closes it, but not when cancelled before it began (a reader or a
        # transformer failed first): left open, it would warn when collected
        writer_input.close()
        guard.close()
    _, rows_copied = results["copied"]
    if rows_copied + guard.accounts.rejected != results["read"]:
        raise SourceError(
            f"internal mismatch loading {table.name}: read {results['read']}, "
            f"copied {rows_copied}, rejected {guard.accounts.rejected}"
        )
    return TableLoad(
        table.name,
        results["read"],
        rows_copied,
        time.perf_counter() - started,
        accounts=guard.accounts,
    )
