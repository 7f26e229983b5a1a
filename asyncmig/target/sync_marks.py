"""``sync`` by source marks: copy only the key ranges whose source rows changed.

When the newest load into the target recorded its source marks
(:mod:`asyncmig.target.marks`) and the target tables are as that load left them
(:class:`Trust`), a table needs no row-by-row comparison of both sides: the ranges
whose marks differ hold every changed source row, and the rest of the table is
unchanged on both sides. For each such table, in the sync's one transaction:

1. the current source rows of the differing ranges are read (by index), converted
   by the plan's transforms exactly as the load converts (``sync.convert``), and
   copied into a temporary table;
2. parents first: rows whose text differs from the target's are updated, rows the
   target lacks are inserted (PostgreSQL compares the typed values' text, so a row
   rewritten unchanged is no update);
3. children first, deletions: for an ``int``-marked table, the target's rows in the
   differing key ranges that the source no longer has; for a ``rowid``-marked table
   (whose deleted rows' keys are not known from their ranges), when the row count
   shows rows to delete: the rows whose key the marks kept in a differing range and
   no longer find there (a UUID key by the key's index, a text key by its hash in one
   scan), else the target's rows whose key the source no longer has (the source's keys
   streamed into a temporary table, one anti-join);
4. the table's row count must then equal the source's (less the rows the load
   rejected), or the sync stops and nothing is changed.

Trust: the newest load recorded each table's row count and the transaction id it
took them in. A table with another row count now, or with a row written by a later
transaction (``xmin``), was changed by someone else: it is compared in full.

Pipelined: while the sync's connection applies one table, the next is made ready
(:class:`Ready`) on a second, reading connection and a SQLite connection of its own:
its trust, its old marks, the differing ranges and its candidate rows, converted, up
to READY_BATCHES batches ahead (at 1 % of rows changed, a table's candidates are a
few batches: they are converted while PostgreSQL applies the table before, instead of
after it). The reader sees what the sync's transaction locked: nobody else can write
those tables, and the sync writes a table only once it is ready. The new marks are
stored on a third connection meanwhile (``sync.Work._store_marks``).
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import anyio.to_thread
import asyncpg
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from asyncmig.check.deep import FETCH_ROWS, TableCheck
from asyncmig.errors import TargetError, VerificationError
from asyncmig.load.policy import lenient_text
from asyncmig.plan.model import Plan, TablePlan
from asyncmig.quoting import name_text, qualified, quote_ident, quote_sqlite_ident
from asyncmig.source.sqlite import undecodable
from asyncmig.target.history import RUN_TABLES, RUNS
from asyncmig.target.marks import (
    UUID_KEY_BYTES,
    Computed,
    Feed,
    Kept,
    Marks,
    chunks,
    pg_key_hash,
)
from asyncmig.target.tablestate import WRITTEN_AFTER

log = structlog.get_logger(__name__)

Row = tuple[Any, ...]
Copy = Callable[[TablePlan, str, list[Row], dict[str, int]], Awaitable[None]]
BATCH = 5000
SPANS_PER_QUERY = 64  # a statement per span cost more than reading its rows (46 µs each)
READY_BATCHES = 4  # converted candidate batches held ahead of the sync's connection


@dataclass
class RangeSync:
    """One table synced by marks: what differed and what was done. It keeps what the
    sync needs of the marks, not the marks (a few bytes a row, released at once)."""

    table: TablePlan
    mode: str
    shift: int
    rows: int  # the source's rows now
    ranges: int  # the source's ranges now
    differing: list[int]
    gone: set[bytes]  # keys (or key hashes) of rows in a differing range then, in none now
    key_size: int  # bytes of each of ``gone``
    target_rows: int  # trusted: as the newest load left it
    temp: str = ""
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    candidates: int = 0
    expected: int = 0  # the source's rows less those the load rejected
    replaced: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # a text key's gone rows, found ahead on the reader connection (:func:`find_gone`)
    gone_rows: list[tuple[int, int]] | None = None

    @classmethod
    def between(
        cls, table: TablePlan, old: Marks, new: Marks, target_rows: int, found: Computed
    ) -> RangeSync:
        """``new``: the table's marks now; ``found``: as computed (when of the ranges
        whose pages changed only, ``new`` is them merged into ``old``, and only those
        ranges are compared)."""
        if found.spans is None:
            differing = old.differing(new)
        else:
            differing = old.differing_within(found.marks, found.spans)
        gone = old.keys_in(differing) - found.marks.keys_in(differing)
        return cls(
            table,
            new.mode,
            new.shift,
            new.rows,
            len(new.ranges),
            differing,
            gone,
            new.key_size,
            target_rows,
        )

    def bounds(self, name: int) -> tuple[int, int]:
        """First and last key (or rowid) of range ``name``."""
        low = name << self.shift
        return low, low + (1 << self.shift) - 1

    def spans(self) -> Iterator[tuple[int, int]]:
        """First and last key (or rowid) of each run of consecutive differing ranges."""
        for first, last in chunks(self.differing):
            yield self.bounds(first)[0], self.bounds(last)[1]


@dataclass(frozen=True)
class Trust:
    """What the newest load recorded of the tables it left: the transaction it
    recorded them in and each table's row count then."""

    xid: int
    counts: dict[str, int]

    @classmethod
    async def of(cls, conn: asyncpg.Connection, run_id: int) -> Trust | None:
        xid = await conn.fetchval(f"SELECT finish_xid FROM {RUNS} WHERE id = $1", run_id)
        if xid is None:
            return None
        rows = await conn.fetch(
            f"SELECT table_name, final_rows FROM {RUN_TABLES} "
            "WHERE run_id = $1 AND final_rows IS NOT NULL",
            run_id,
        )
        return cls(int(xid), {str(r[0]): int(r[1]) for r in rows})

    async def rows(self, conn: asyncpg.Connection, plan: Plan, name: str) -> int | None:
        """The table's recorded row count when it is exactly as the load left it (read
        after the sync locked it), else None."""
        if name not in self.counts:
            return None
        row = await conn.fetchrow(
            f"SELECT count(*), count(*) FILTER (WHERE {WRITTEN_AFTER}) "
            f"FROM {qualified(plan.schema, name)}",
            self.xid,
        )
        assert row is not None
        if int(row[0]) == self.counts[name] and int(row[1]) == 0:
            return self.counts[name]
        log.info(
            "table_changed_in_target",
            table=name,
            rows=int(row[0]),
            recorded_rows=self.counts[name],
            written_since=int(row[1]),
        )
        return None


@dataclass
class Ready:
    """One table made ready beside the sync's connection (on a reader connection and a
    SQLite connection of its own) while the previous table is applied: its marks now
    (to be stored), and when it can be synced by them, what differs and, as they are
    read and converted, the candidate rows (a batch or two at a time)."""

    table: TablePlan
    number: int
    found: Computed | None
    kept: Kept | None  # its marks now, as they are to be stored
    item: RangeSync | None = None
    rows: MemoryObjectReceiveStream[list[Row]] | None = None  # its candidates, converted


async def in_marks_order(plan: Plan, feed: Feed) -> AsyncIterator[tuple[int, TablePlan]]:
    """The plan's tables (with their place in it), each as soon as its marks are in
    and the tables it references before it in the plan have come (a new row's parent
    is upserted before it): the sync does not wait for a large table's marks while
    the next tables' are in."""
    tables = plan.tables
    place = {t.name: n for n, t in enumerate(tables)}
    parents = {
        t.name: {fk.ref_table for fk in t.foreign_keys if place.get(fk.ref_table, n) < n}
        for n, t in enumerate(tables)
    }
    marked = {r.table for r in feed.requests}
    ready = {t.name for t in tables} - marked  # no marks to wait for
    sent: set[str] = set()
    while len(sent) < len(tables):
        table = next(
            (t for t in tables if t.name in ready - sent and parents[t.name] <= sent), None
        )
        if table is None:
            ready.add(await feed.ended_after(len(ready & marked)))
            continue
        sent.add(table.name)
        yield place[table.name], table


def _ranges_sql(check: TableCheck, mode: str, rowid: str) -> str:
    """The source rows (as ``check --deep`` and the sync read them) of SPANS_PER_QUERY spans of
    ranges, each a ``BETWEEN`` on the key or rowid: SQLite seeks each by its index
    (a "multi-index OR"), in one statement instead of one each."""
    column = (
        quote_sqlite_ident(check.table.column(check.table.primary_key[0]).source_name)
        if mode == "int"
        else rowid
    )
    terms = " OR ".join([f"{column} BETWEEN ? AND ?"] * SPANS_PER_QUERY)
    return f"{check.source_sql()} WHERE ({terms})"


def _rowid(check: TableCheck) -> str:
    from asyncmig.check.sqlcanon import rowid_name

    name = rowid_name(check)
    if name is None:
        raise VerificationError(f"cannot sync {check.table.name}: every rowid name is a column")
    return name


def candidates(
    sqlite: sqlite3.Connection, check: TableCheck, item: RangeSync
) -> Iterator[list[Row]]:
    """The source rows of the differing ranges, in batches of about BATCH rows, rejected
    rows left out (as they are: see ``sync.convert``). Lazy: a table whose rows nearly
    all changed is never held whole."""
    sql = _ranges_sql(check, item.mode, _rowid(check))
    batch: list[Row] = []
    for bounds in _by_query(item):
        for rows in _decoded(sqlite, sql, bounds):
            batch.extend(row for row in rows if not check.skips(row))
            if len(batch) >= BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _decoded(sqlite: sqlite3.Connection, sql: str, bounds: list[int]) -> Iterator[list[Row]]:
    """One statement's rows, BATCH at a time. TEXT is decoded by SQLite's own decoder
    until a value is not UTF-8 (as the load reads: a Python text factory and the search
    for its invalid values cost more than reading the rows); then, as the load does,
    the connection decodes leniently from there on (such a value is settled by its
    column's policy) and the statement runs again from the row it stopped at."""
    done = 0
    cursor = sqlite.execute(sql, bounds)
    while True:
        try:
            rows = cursor.fetchmany(BATCH)
        except sqlite3.OperationalError as exc:
            if not undecodable(exc) or sqlite.text_factory is lenient_text:
                raise
            sqlite.text_factory = lenient_text
            cursor = sqlite.execute(sql, bounds)
            skip = done  # the rows already handed on: the same statement, the same order
            while skip:
                skip -= len(cursor.fetchmany(min(skip, BATCH)))
            continue
        if not rows:
            return
        done += len(rows)
        yield rows


def _by_query(item: RangeSync) -> Iterator[list[int]]:
    """The differing ranges' spans as the parameters of :func:`_ranges_sql`'s
    statement, SPANS_PER_QUERY spans at a time (the last filled with empty spans)."""
    bounds: list[int] = []
    for span in item.spans():
        bounds += span
        if len(bounds) == 2 * SPANS_PER_QUERY:
            yield bounds
            bounds = []
    if bounds:
        yield bounds + [1, 0] * (SPANS_PER_QUERY - len(bounds) // 2)  # BETWEEN 1 AND 0: none


async def upsert(
    conn: asyncpg.Connection,
    plan: Plan,
    item: RangeSync,
    batches: MemoryObjectReceiveStream[list[Row]],
    copy: Copy,
    number: int,
) -> None:
    """Steps 1 and 2 of the module docstring (parents first); ``batches``: the
    candidates, converted, copied as they arrive."""
    table = item.table
    target = qualified(plan.schema, table.name)
    item.temp = f"asyncmig_marks_{number}"
    temp = quote_ident(item.temp)
    await conn.execute(f"CREATE TEMP TABLE {temp} (LIKE {target}) ON COMMIT DROP")
    began = time.perf_counter()
    async with batches:
        async for batch in batches:
            await copy(table, item.temp, batch, item.replaced)
            item.candidates += len(batch)
    copied = time.perf_counter()
    log.info("candidates", table=table.name, rows=item.candidates, copy=round(copied - began, 3))
    if not item.candidates:
        return
    unique = await _unique_key(conn, plan, table)
    if item.mode == "int" or not unique:  # joined (the deletions by key range, UPDATE
        await conn.execute(f"ANALYZE {temp}")  # ... FROM): the planner needs its size
    if unique:
        item.inserted, item.updated = await _merge(conn, target, temp, table)
    else:
        await _update_then_insert(conn, target, temp, table, item)
    log.info("upserted", table=table.name, seconds=round(time.perf_counter() - copied, 3))


UNIQUE_KEY_SQL = """
SELECT EXISTS (
    SELECT FROM pg_index i WHERE i.indrelid = to_regclass($1) AND i.indisunique
      AND i.indpred IS NULL AND i.indexprs IS NULL
      AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
           WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey))
          = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) AS k))
"""


async def _unique_key(conn: asyncpg.Connection, plan: Plan, table: TablePlan) -> bool:
    """Whether the key is enforced unique in the target (ON CONFLICT needs that)."""
    return bool(
        await conn.fetchval(
            UNIQUE_KEY_SQL, name_text(plan.schema, table.name), list(table.primary_key)
        )
    )


async def _merge(
    conn: asyncpg.Connection, target: str, temp: str, table: TablePlan
) -> tuple[int, int]:
    """One INSERT ... ON CONFLICT: each candidate found by the key's index, inserted when
    new, updated when it differs (rows inserted, rows updated).

    Rows are compared by PostgreSQL's record image operator ``*=``: each column's stored
    bytes, no value rendered. Equal images are equal texts, so nothing a comparison of
    the rows' text would see is missed (``-0`` and ``0``, ``1.0`` and ``1.00`` differ in
    both); rendering every candidate twice, timestamps and UUIDs most, cost about a
    third of the statement (``guesses``' 18,000 candidates: 211 -> 139 ms).

    The candidates the target already holds unchanged (most: a range is read whole for
    one changed row) are left out first: ON CONFLICT DO UPDATE locks every row it
    conflicts with, even one its WHERE then leaves alone, and a lock writes the row's
    page, so each of them cost a WAL record and, first after a checkpoint, the page's
    image (27 MB of WAL for 18,000 unchanged rows of a 4-index table: 0 now). A scalar
    subquery, not NOT EXISTS: the planner would hash the whole target for an anti-join
    (0.77 s where the key's index takes 0.07 s)."""
    columns = ", ".join(quote_ident(c.name) for c in table.columns)
    key = ", ".join(quote_ident(k) for k in table.primary_key)
    values = [c.name for c in table.columns if c.name not in table.primary_key]
    action = "DO NOTHING"
    if values:
        sets = ", ".join(f"{quote_ident(c)} = excluded.{quote_ident(c)}" for c in values)
        action = f"DO UPDATE SET {sets} WHERE NOT (t.* *= excluded.*)"
    same = " AND ".join(f"o.{quote_ident(k)} = s.{quote_ident(k)}" for k in table.primary_key)
    row = await _refused(
        table,
        conn.fetchrow(
            f"WITH w AS (INSERT INTO {target} AS t ({columns}) SELECT {columns} FROM {temp} AS s "
            f"WHERE (SELECT o.* *= s.* FROM {target} AS o WHERE {same}) IS NOT TRUE "
            f"ON CONFLICT ({key}) {action} RETURNING (xmax = 0) AS new) "
            "SELECT count(*) FILTER (WHERE new), count(*) FILTER (WHERE NOT new) FROM w"
        ),
    )
    return int(row[0]), int(row[1])


async def _update_then_insert(
    conn: asyncpg.Connection, target: str, temp: str, table: TablePlan, item: RangeSync
) -> None:
    """Without a unique index on the key: one UPDATE, one INSERT."""
    keys = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in table.primary_key)
    values = [c.name for c in table.columns if c.name not in table.primary_key]
    if values:
        sets = ", ".join(f"{quote_ident(c)} = s.{quote_ident(c)}" for c in values)
        status = await conn.execute(
            f"UPDATE {target} AS t SET {sets} FROM {temp} AS s WHERE {keys} AND NOT (t.* *= s.*)"
        )
        item.updated = int(status.split()[-1])
    columns = ", ".join(quote_ident(c.name) for c in table.columns)
    status = await conn.execute(
        f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {temp} AS s "
        f"WHERE NOT EXISTS (SELECT FROM {target} AS t WHERE {keys})"
    )
    item.inserted = int(status.split()[-1])


async def _refused(table: TablePlan, statement: Awaitable[Any]) -> Any:
    """A statement's result; PostgreSQL's refusal as one line (nothing is changed)."""
    try:
        return await statement
    except asyncpg.PostgresError as exc:
        raise TargetError(
            f"cannot sync {table.name}: PostgreSQL refused the changed rows: "
            f"{type(exc).__name__}: {exc}",
            hint="migrate again in full: asyncmig run --replace",
        ) from exc


async def delete(
    conn: asyncpg.Connection,
    plan: Plan,
    item: RangeSync,
    sqlite: sqlite3.Connection,
    copy: Copy,
    expected: int,
) -> None:
    """Step 3 and 4 of the module docstring (children first). ``expected``: the source's
    rows less those the load rejected."""
    table = item.table
    target = qualified(plan.schema, table.name)
    keys = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in table.primary_key)
    if item.mode == "int" and item.differing:
        key = quote_ident(table.primary_key[0])
        spans = list(item.spans())
        lows, highs = [low for low, _ in spans], [high for _, high in spans]
        status = await conn.execute(
            f"DELETE FROM {target} AS t USING unnest($1::bigint[], $2::bigint[]) AS r(lo, hi) "
            f"WHERE t.{key} BETWEEN r.lo AND r.hi "
            f"AND NOT EXISTS (SELECT FROM {quote_ident(item.temp)} AS s WHERE {keys})",
            lows,
            highs,
        )
        item.deleted = int(status.split()[-1])
    elif item.target_rows + item.inserted > expected:
        item.deleted = await _delete_gone_keys(conn, plan, item)
        if item.target_rows + item.inserted - item.deleted > expected:
            more = await _anti_join(conn, plan, item, sqlite, copy)
            log.info("deleted_by_anti_join", table=table.name, rows=more)
            item.deleted += more
    now = item.target_rows + item.inserted - item.deleted
    if now != expected:
        raise VerificationError(
            f"cannot sync {table.name}: it would hold {now} row(s), the source has "
            f"{expected}; nothing was changed",
            hint="compare in full with sync --full, or migrate again with run --replace",
        )


async def find_gone(reader: asyncpg.Connection, plan: Plan, item: RangeSync) -> None:
    """The rows of a text key that is gone (:func:`_delete_gone_keys`), found by the key's
    hash in one scan of the table, ahead, on the reader connection: the sync's own
    connection, which applies the tables one after the other, then deletes them by
    ``ctid``. Those rows are as the last load left them (the table is locked against
    other writers, and the sync changes no row whose key the source no longer has), so
    their ``ctid`` holds until the sync deletes them."""
    if not item.gone or item.key_size == UUID_KEY_BYTES:
        return
    key = quote_ident(item.table.primary_key[0])
    rows = await reader.fetch(
        f"SELECT t.ctid FROM {qualified(plan.schema, item.table.name)} AS t "
        f"WHERE {pg_key_hash('t.' + key)} IN (SELECT unnest($1::text[]))",
        sorted(g.hex() for g in item.gone),
    )
    item.gone_rows = [r[0] for r in rows]


async def _delete_gone_keys(conn: asyncpg.Connection, plan: Plan, item: RangeSync) -> int:
    """Delete the target rows whose key was in a differing range and is in none now,
    found by the keys the marks keep (see :mod:`asyncmig.target.marks`): a UUID key by
    the key's index, a text key by the rows :func:`find_gone` found."""
    gone = item.gone
    if not gone:
        return 0
    key = quote_ident(item.table.primary_key[0])
    target = qualified(plan.schema, item.table.name)
    if item.key_size == UUID_KEY_BYTES:  # the keys themselves: found by the key's index
        # the array behind a scalar subquery, whose length the planner cannot see: given
        # 7,800 keys it scanned all 584,000 rows of guesses instead (109 -> 31 ms)
        status = await conn.execute(
            f"DELETE FROM {target} AS t WHERE t.{key} = ANY((SELECT $1::uuid[])::uuid[])",
            [uuid.UUID(bytes=g) for g in sorted(gone)],
        )
        return int(status.split()[-1])
    if item.gone_rows is None:
        await find_gone(conn, plan, item)
    assert item.gone_rows is not None
    status = await conn.execute(f"DELETE FROM {target} WHERE ctid = ANY($1::tid[])", item.gone_rows)
    return int(status.split()[-1])


async def _anti_join(
    conn: asyncpg.Connection, plan: Plan, item: RangeSync, sqlite: sqlite3.Connection, copy: Copy
) -> int:
    """Delete the target rows whose key the source no longer has (``rowid`` marks)."""
    table = item.table
    target = qualified(plan.schema, table.name)
    names = [quote_ident(k) for k in table.primary_key]
    temp = f"asyncmig_keys_{item.temp}"
    await conn.execute(
        f"CREATE TEMP TABLE {quote_ident(temp)} ON COMMIT DROP AS "
        f"SELECT {', '.join(names)} FROM {target} WITH NO DATA"
    )
    key_table = replace(table, columns=tuple(table.column(k) for k in table.primary_key))
    sql = (
        "SELECT "
        + ", ".join(quote_sqlite_ident(c.source_name) for c in key_table.columns)
        + f" FROM {quote_sqlite_ident(table.source_name)}"
    )
    cursor = await anyio.to_thread.run_sync(sqlite.execute, sql)
    while batch := await anyio.to_thread.run_sync(cursor.fetchmany, FETCH_ROWS):
        await copy(key_table, temp, batch, {})
    await conn.execute(f"ANALYZE {quote_ident(temp)}")
    keys = " AND ".join(f"t.{n} = s.{n}" for n in names)
    status = await conn.execute(
        f"DELETE FROM {target} AS t "
        f"WHERE NOT EXISTS (SELECT FROM {quote_ident(temp)} AS s WHERE {keys})"
    )
    return int(status.split()[-1])


def skipped_present(sqlite: sqlite3.Connection, check: TableCheck) -> int:
    """How many of the rows the load rejected the source still has."""
    if not check.skip:
        return 0
    table = check.table
    where = " AND ".join(
        f"{quote_sqlite_ident(table.column(k).source_name)} IS ?" for k in table.primary_key
    )
    sql = f"SELECT count(*) FROM {quote_sqlite_ident(table.source_name)} WHERE {where}"
    single = len(table.primary_key) == 1
    found = 0
    for key in check.skip:
        params = (key,) if single else tuple(key)  # type: ignore[arg-type]
        found += int(sqlite.execute(sql, params).fetchone()[0])
    return found


def timed(item: RangeSync, began: float) -> None:
    item.seconds += time.perf_counter() - began
