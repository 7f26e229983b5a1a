"""What a run left in its tables, recorded when it finishes, and what depends on them now.

A rollback must know what the application did to the migrated tables since the run,
or it silently throws that work away. When a run succeeds it records, per table, the
row count, an order-independent checksum (the sum of a 64-bit hash of each row, one
sequential scan, bounded memory), the highest key of a single integer primary key, and
the transaction id it was taken in; and the objects that depended on the tables then
(views, foreign keys from other tables, triggers).

A row's hash is ``hash_record_extended`` of the row (PostgreSQL 14 on; each column's
own hash function over its stored value, the one hash partitioning relies on staying
the same) where every column's type has one: a quarter of the CPU of hashing the row
as text, which renders every timestamp, UUID and JSON value first (``guesses``, 300,000
rows: 85 against 270 ms). Otherwise (PostgreSQL 13, a ``json`` or ``point`` column) the
row's text, as before. The kind is recorded beside the checksum, and a later check
computes the same kind; a checksum recorded without one is of the text.

Later, rows whose ``xmin`` is newer than that transaction were written since (inserted
or updated); a key above the recorded highest one means inserted; the count tells how
many were deleted. The checksum catches anything else (a column added, say).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from decimal import Decimal

import anyio
import asyncpg
import structlog

from asyncmig.quoting import name_text, qualified, quote_ident, quote_literal

# row text does not depend on the session: the same rows give the same checksum
STABLE_OUTPUT = [
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 1",
    "SET LOCAL bytea_output = 'hex'",
]

INTEGER_KEY_SQL = """
SELECT a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = to_regclass($1) AND i.indisprimary AND i.indnatts = 1
  AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
"""

# objects outside the table that depend on it: a DROP ... CASCADE removes them too
DEPENDENTS_SQL = """
SELECT DISTINCT 'view' AS kind, v.oid::regclass::text AS name, $2::text AS on_table
FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
JOIN pg_class v ON v.oid = r.ev_class
WHERE d.refobjid = to_regclass($1) AND v.oid <> d.refobjid
UNION ALL
SELECT 'foreign key', quote_ident(c.conname) || ' on ' || c.conrelid::regclass::text, $2
FROM pg_constraint c WHERE c.contype = 'f' AND c.confrelid = to_regclass($1)
  AND c.conrelid <> c.confrelid
UNION ALL
SELECT 'trigger', quote_ident(t.tgname) || ' on ' || t.tgrelid::regclass::text, $2
FROM pg_trigger t WHERE t.tgrelid = to_regclass($1) AND NOT t.tgisinternal
ORDER BY 1, 2
"""

log = structlog.get_logger(__name__)


# the kinds of a checksum: the sum of hash_record_extended(row), or of the row's text.
# ``t.*``, not ``t``: a bare ``t`` would be a column of that name where the table has
# one (before, such a table's checksum covered that column alone)
RECORD = "record"
TEXT = "text"
HASHES = {RECORD: "hash_record_extended(t.*, 0)", TEXT: "hashtextextended((t.*)::text, 0)"}


@dataclass(frozen=True)
class TableState:
    """One table's rows as a run left them (or as they are now)."""

    table: str
    rows: int
    checksum: Decimal
    max_key: int | None = None
    kind: str = TEXT  # what the checksum sums (HASHES)


@dataclass(frozen=True)
class Dependent:
    """An object that depends on a run's table: ``kind`` view, foreign key or trigger."""

    kind: str
    name: str
    table: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


async def integer_key(conn: asyncpg.Connection, schema: str, table: str) -> str | None:
    """The table's primary key column when it is a single integer column, else None."""
    name = await conn.fetchval(INTEGER_KEY_SQL, name_text(schema, table))
    return str(name) if name is not None else None


async def hash_kind(conn: asyncpg.Connection, schema: str, table: str) -> str:
    """RECORD when ``hash_record_extended`` can hash the table's rows, else TEXT.

    The function looks up every column's hash function before it looks at the values,
    so a row of NULLs of the table's type (``json_populate_record``) finds out without
    reading the table: PostgreSQL 13 has no such function, a ``json`` column no hash.
    Tried in a savepoint: a refusal leaves the caller's transaction usable."""
    try:
        async with conn.transaction():
            await conn.execute(
                "SELECT hash_record_extended("
                f"json_populate_record(NULL::{qualified(schema, table)}, '{{}}'), 0)"
            )
    except asyncpg.PostgresError as exc:
        log.debug("checksum_of_text", table=table, reason=f"{type(exc).__name__}: {exc}")
        return TEXT
    return RECORD


async def table_state(
    conn: asyncpg.Connection, schema: str, table: str, kind: str | None = None
) -> TableState:
    """Count, checksum and highest integer key of one table (call inside STABLE_OUTPUT);
    ``kind`` of checksum (None: the best the table allows, :func:`hash_kind`)."""
    if kind is None:
        kind = await hash_kind(conn, schema, table)
    key = await integer_key(conn, schema, table)
    highest = f"max({quote_ident(key)})" if key else "NULL::bigint"
    row = await conn.fetchrow(
        f"SELECT count(*), coalesce(sum({HASHES[kind]}), 0), {highest} "
        f"FROM {qualified(schema, table)} t"
    )
    assert row is not None
    return TableState(
        table, int(row[0]), Decimal(row[1]), int(row[2]) if row[2] is not None else None, kind
    )


async def capture(
    conn: asyncpg.Connection,
    schema: str,
    tables: Sequence[str],
    helpers: Sequence[asyncpg.Connection] = (),
) -> tuple[int, list[TableState]]:
    """Every table's state in one snapshot, and the transaction id it was taken in.

    Each checksum is a scan that renders every row as text, one core's work: the
    ``helpers`` scan other tables at the same time, in the same snapshot
    (``pg_export_snapshot``), so the states are exactly those of one moment.
    """
    async with conn.transaction(isolation="repeatable_read"):
        await _stable_output(conn)
        xid = int(await conn.fetchval("SELECT txid_current()"))
        if not helpers:
            return xid, [await table_state(conn, schema, t) for t in tables]
        snapshot = str(await conn.fetchval("SELECT pg_export_snapshot()"))
        async with AsyncExitStack() as stack:
            for helper in helpers:
                await stack.enter_async_context(helper.transaction(isolation="repeatable_read"))
                await helper.execute(f"SET TRANSACTION SNAPSHOT {quote_literal(snapshot)}")
                await _stable_output(helper)
            return xid, await _states_in_parallel([conn, *helpers], schema, tables)


async def _stable_output(conn: asyncpg.Connection) -> None:
    for statement in STABLE_OUTPUT:
        await conn.execute(statement)


async def _states_in_parallel(
    connections: Sequence[asyncpg.Connection], schema: str, tables: Sequence[str]
) -> list[TableState]:
    """Each connection takes the next table not yet taken; states in ``tables``' order."""
    todo = iter(tables)
    found: dict[str, TableState] = {}

    async def work(conn: asyncpg.Connection) -> None:
        for table in todo:
            found[table] = await table_state(conn, schema, table)

    async with anyio.create_task_group() as tg:
        for conn in connections:
            tg.start_soon(work, conn)
    return [found[t] for t in tables]


async def dependents(
    conn: asyncpg.Connection, schema: str, tables: Sequence[str]
) -> list[Dependent]:
    """Views, foreign keys from other tables and triggers that depend on ``tables``."""
    found: list[Dependent] = []
    for table in tables:
        rows = await conn.fetch(DEPENDENTS_SQL, name_text(schema, table), table)
        found += [Dependent(r["kind"], r["name"], r["on_table"]) for r in rows]
    return found


# a row inserted or updated by a transaction newer than $1 (a txid_current() value):
# ``xmin`` is a 32-bit transaction id, and ages compare it with $1 correctly while both
# are within two billion transactions of now
WRITTEN_AFTER = "age(xmin) < age(($1::bigint % 4294967296)::text::xid)"


async def written_since(
    conn: asyncpg.Connection,
    schema: str,
    table: str,
    xid: int,
    key: str | None,
    max_key: int | None,
) -> tuple[int, int]:
    """Rows written (inserted or updated) after transaction ``xid``: (all, with a new key)
    (see WRITTEN_AFTER)."""
    args: list[object] = [xid]
    above = "0::bigint"
    if key and max_key is not None:
        above = f"count(*) FILTER (WHERE {quote_ident(key)} > $2)"
        args.append(max_key)
    row = await conn.fetchrow(
        f"SELECT count(*), {above} FROM {qualified(schema, table)} WHERE {WRITTEN_AFTER}",
        *args,
    )
    assert row is not None
    return int(row[0]), int(row[1])
