"""Load one table with a single binary COPY inside one transaction.

The writer owns one connection. Rows stream from the bounded queue straight into
``copy_records_to_table`` as an async iterator, so a table of any size passes
through with bounded memory: asyncpg flushes every 512 KiB and waits on the
transport, which in turn stops the queue, which stops the reader.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from anyio.streams.memory import MemoryObjectReceiveStream

from asyncmig.errors import TargetError
from asyncmig.plan import TablePlan
from asyncmig.quoting import qualified

Batch = list[tuple[Any, ...]]


async def _rows(batches: MemoryObjectReceiveStream[Batch], counter: list[int]) -> AsyncIterator[
    tuple[Any, ...]
]:
    async with batches:
        async for batch in batches:
            counter[0] += len(batch)
            for row in batch:
                yield row


async def copy_table(
    conn: asyncpg.Connection,
    schema: str,
    table: TablePlan,
    batches: MemoryObjectReceiveStream[Batch],
) -> tuple[int, int]:
    """COPY every row from ``batches`` into ``table``; returns (rows sent, rows PostgreSQL counted).

    The transaction commits only if the COPY completes; any failure (here, in the
    reader or in a transform) aborts the COPY and rolls the table back.
    """
    sent = [0]
    columns = [c.name for c in table.columns]
    async with conn.transaction():
        try:
            status = await conn.copy_records_to_table(
                table.name, schema_name=schema, columns=columns, records=_rows(batches, sent)
            )
        except asyncpg.PostgresError as exc:
            raise TargetError(
                f"cannot load {qualified(schema, table.name)}: PostgreSQL refused the data: "
                f"{exc.__class__.__name__}: {exc}",
                detail=getattr(exc, "detail", None),
                hint="override the column's type in a --config file, or clean the source value",
            ) from exc
    return sent[0], int(status.split()[-1])


async def count_rows(conn: asyncpg.Connection, schema: str, table: TablePlan) -> int:
    """The committed row count, checked against the source after each table."""
    return int(await conn.fetchval(f"SELECT count(*) FROM {qualified(schema, table.name)}"))
