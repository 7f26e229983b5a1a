"""Load one table with binary COPY inside one transaction.

The writer owns one connection. Batches come from the bounded queue and each is
sent with ``copy_records_to_table``, so a table of any size passes through with
bounded memory: while the writer waits on PostgreSQL, the queue fills and stops
the reader.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from anyio.streams.memory import MemoryObjectReceiveStream

from asyncmig.errors import TargetError
from asyncmig.load import codecs
from asyncmig.load.policy import TableGuard
from asyncmig.load.transforms import Batch, Pair, explain_rejected_batch
from asyncmig.plan.model import TablePlan
from asyncmig.quoting import qualified
from asyncmig.target import faults
from asyncmig.target.connect import transaction


async def copy_table(
    conn: asyncpg.Connection,
    schema: str,
    table: TablePlan,
    pairs: MemoryObjectReceiveStream[Pair],
    guard: TableGuard,
    before_commit: Callable[[asyncpg.Connection, int], Awaitable[None]] | None = None,
    on_batch: Callable[[int], None] | None = None,
    first: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    encoded: frozenset[str] = frozenset(),
) -> tuple[int, int]:
    """COPY every batch into ``table``; returns (rows handed over, rows PostgreSQL took).

    One COPY per batch, all inside one transaction: handing asyncpg a list per call
    avoids an ``async for`` step per row (a third of the writer's time), and asyncpg
    caches the column-type lookup, so a batch costs one extra round trip. When the
    table's policies allow rejects, each batch runs in a savepoint, and a batch
    PostgreSQL (or asyncpg's encoder) refuses is split in halves until the refused rows
    are isolated and rejected with PostgreSQL's message, as pgloader does; the rest
    loads in the same transaction. The transaction commits only if the whole table
    succeeds: a failure anywhere (reader, transform, too many rejects) rolls it back.
    Values of the ``encoded`` types may come as PostgreSQL's binary form
    (:mod:`asyncmig.load.codecs`). ``on_batch`` is called after every batch received
    (with the rows it put in the table, 0 for a batch all rejected): the pipeline's
    bound on batches in flight counts on it.
    """
    handed = copied = 0
    columns = [c.name for c in table.columns]
    isolate = guard.lenient
    async with transaction(conn), pairs:
        if first is not None:  # e.g. empty what an earlier attempt committed
            await first(conn)
        async with codecs.encoded_values(conn, encoded):
            async for rows, originals in pairs:
                done = 0
                if rows:
                    handed += len(rows)
                    if isolate:
                        done = await _copy_isolating(
                            conn, schema, table, columns, rows, originals, guard
                        )
                    else:
                        done = await _copy(conn, schema, table, columns, rows)
                    copied += done
                del rows, originals  # the batch is done with: free it before the next
                if on_batch is not None:  # every batch, even one all rejected
                    on_batch(done)
        if before_commit is not None:  # e.g. the history row describing this table
            await before_commit(conn, copied)
    return handed, copied


async def _copy(
    conn: asyncpg.Connection, schema: str, table: TablePlan, columns: list[str], rows: Batch
) -> int:
    try:
        status = await conn.copy_records_to_table(
            table.name, schema_name=schema, columns=columns, records=rows
        )
    except (ValueError, TypeError, OverflowError) as exc:  # asyncpg's encoders
        raise explain_rejected_batch(table, rows, exc) from exc
    except asyncpg.PostgresError as exc:
        if faults.is_connection_fault(exc):
            raise faults.lost_connection(exc) from exc
        raise TargetError(
            f"cannot load {qualified(schema, table.name)}: PostgreSQL refused the data: "
            f"{exc.__class__.__name__}: {exc}",
            detail=getattr(exc, "detail", None),
            hint="override the column's type in a --config file, clean the source value, or "
            "let such rows be rejected (--on-error reject)",
        ) from exc
    return int(status.split()[-1])


# errors about the rows themselves (SQLSTATE classes 22 and 23): others are not the
# data's fault (a lost connection, a missing table) and stop the table
ROW_ERRORS = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
    ValueError,
    TypeError,
    OverflowError,
)


async def _copy_isolating(
    conn: asyncpg.Connection,
    schema: str,
    table: TablePlan,
    columns: list[str],
    rows: Batch,
    originals: Batch,
    guard: TableGuard,
) -> int:
    try:
        async with conn.transaction():  # a savepoint: a refused COPY undoes only itself
            status = await conn.copy_records_to_table(
                table.name, schema_name=schema, columns=columns, records=rows
            )
        return int(status.split()[-1])
    except ROW_ERRORS as exc:
        if len(rows) == 1:
            where = getattr(exc, "context", None) or getattr(exc, "where", None)
            reason = f"PostgreSQL refused the row: {exc}" + (f" ({where})" if where else "")
            guard.reject(originals[0], getattr(exc, "column_name", None), reason, "postgresql")
            return 0
    half = len(rows) // 2
    first = await _copy_isolating(
        conn, schema, table, columns, rows[:half], originals[:half], guard
    )
    return first + await _copy_isolating(
        conn, schema, table, columns, rows[half:], originals[half:], guard
    )
