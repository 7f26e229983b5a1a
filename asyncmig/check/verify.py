"""The ``check`` command's engine: does a migrated copy still match its SQLite source?

A migration verifies itself while it runs; this re-checks a target later (after the
application, a restore or a person touched it) from the plan alone, and reports every
difference instead of stopping at the first one:

* row count per table, SQLite against PostgreSQL;
* foreign keys: what the run's ``--orphans`` policy leaves: with ``keep``, exactly the
  source's own orphans (counted by SQLite, with SQLite's comparisons) and the key NOT
  VALID when there are any; otherwise no orphan and the key validated (orphans are
  counted, so a dropped constraint still shows);
* jsonb columns: as many non-NULL values as in SQLite (a value replaced by NULL shows);
* identity sequences: the next value handed out is above the column's maximum.

Each table is read once on each side: one ``count(*)`` query computes the row count,
the jsonb columns' non-NULL counts and the identity columns' maxima together. The
SQLite side runs in a worker thread while the PostgreSQL side runs on the connection.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
import asyncpg

from asyncmig.cli.textwidth import ljust, width
from asyncmig.errors import first_error
from asyncmig.finish.orphans import orphan_condition, referenced_columns
from asyncmig.plan.model import ColumnPlan, ForeignKeyPlan, Plan, TablePlan, base_type
from asyncmig.quoting import name_text, qualified, quote_ident, quote_sqlite_ident
from asyncmig.source.sqlite import open_sync, source_error

ROW_COUNT = "row count"
FOREIGN_KEY = "foreign key"
JSON = "json"
SEQUENCE = "sequence"
CHECK_KINDS = (ROW_COUNT, FOREIGN_KEY, JSON, SEQUENCE)

MISSING = "missing"


@dataclass(frozen=True)
class CheckResult:
    check: str  # one of CHECK_KINDS
    table: str
    subject: str  # column / constraint / sequence name, "" for the table itself
    expected: str
    found: str
    ok: bool
    # the same values for scripts (--output json): numbers and states, not prose
    expected_value: Mapping[str, object] = field(default_factory=dict)
    found_value: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Scan:
    """What one counting pass over a table found (on either side)."""

    rows: int
    non_null: dict[str, int] = field(default_factory=dict)  # jsonb column -> non-NULL values
    maxima: dict[str, int] = field(default_factory=dict)  # identity column -> max (0 if empty)
    orphans: dict[str, int] = field(default_factory=dict)  # foreign key -> orphans in SQLite


# a table that could not be scanned is described by a string: "missing" or "error: ..."
ScanOutcome = Scan | str


def json_columns(table: TablePlan) -> list[ColumnPlan]:
    """Columns stored as jsonb: only there can a value turn into NULL on the way."""
    return [c for c in table.columns if base_type(c.target_type) == "jsonb"]


def identity_columns(table: TablePlan) -> list[ColumnPlan]:
    return [c for c in table.columns if c.identity]


# --- SQLite side -------------------------------------------------------------------


def source_scan_sql(table: TablePlan) -> str:
    counts = [f"count({quote_sqlite_ident(c.source_name)})" for c in json_columns(table)]
    return f"SELECT {', '.join(['count(*)', *counts])} FROM {quote_sqlite_ident(table.source_name)}"


def _orphan_sides(
    plan: Plan, table: TablePlan, fk: ForeignKeyPlan
) -> tuple[TablePlan, list[ColumnPlan], list[ColumnPlan]] | None:
    """The parent, the child's key columns and the parent's they reference; None when
    the parent or its referenced key is unknown."""
    ref_columns = referenced_columns(plan, fk)
    if len(ref_columns) != len(fk.columns) or fk.ref_table not in {t.name for t in plan.tables}:
        return None
    parent = plan.table(fk.ref_table)
    return (
        parent,
        [table.column(c) for c in fk.columns],
        [parent.column(r) for r in ref_columns],
    )


def source_orphan_sql(plan: Plan, table: TablePlan, fk: ForeignKeyPlan) -> str | None:
    """SQLite's own count of child rows whose non-NULL key finds no parent (MATCH SIMPLE).

    The comparison is SQLite's (with its type affinities), so the count is the
    source's orphans as the application sees them; None when the parent is unknown.
    """
    sides = _orphan_sides(plan, table, fk)
    if sides is None:
        return None
    parent, keys, refs = sides
    child = [quote_sqlite_ident(c.source_name) for c in keys]
    ref = [quote_sqlite_ident(r.source_name) for r in refs]
    not_null = " AND ".join(f"c.{c} IS NOT NULL" for c in child)
    joined = " AND ".join(f"p.{r} = c.{c}" for c, r in zip(child, ref, strict=True))
    return (
        f"SELECT count(*) FROM {quote_sqlite_ident(table.source_name)} AS c "
        f"WHERE {not_null} AND NOT EXISTS (SELECT 1 FROM "
        f"{quote_sqlite_ident(parent.source_name)} AS p WHERE {joined})"
    )


@dataclass(frozen=True)
class GroupedOrphans:
    """The same count as :func:`source_orphan_sql`, over the child's distinct keys:
    one probe of the parent per key instead of per row, the keys read in order from
    an index on the child's column (the Northwind shape's source side of the check,
    900,000 child rows: 0.31 -> 0.17-0.20 CPU s). Exact only where rows that group
    together hold the very same value: a column of INTEGER affinity (no 5 beside 5.0)
    grouped by bytes (BINARY), which :func:`groups_by_index` asks SQLite at scan time,
    with whether an index serves it."""

    table: str  # the child's SQLite name
    column: str
    groups: str  # the GROUP BY query alone
    sql: str


def grouped_orphans(plan: Plan, table: TablePlan, fk: ForeignKeyPlan) -> GroupedOrphans | None:
    """:class:`GroupedOrphans` for a single-column key of INTEGER affinity, else None."""
    sides = _orphan_sides(plan, table, fk)
    if sides is None or len(fk.columns) != 1:
        return None
    parent, (child,), (referenced,) = sides
    if "INT" not in child.source_type.upper():  # SQLite's first affinity rule
        return None
    key = quote_sqlite_ident(child.source_name)
    ref = quote_sqlite_ident(referenced.source_name)
    groups = (
        f"SELECT c.{key} AS k, count(*) AS n FROM {quote_sqlite_ident(table.source_name)} "
        f"AS c WHERE c.{key} IS NOT NULL GROUP BY c.{key}"
    )
    return GroupedOrphans(
        table.source_name,
        child.source_name,
        groups,
        f"SELECT coalesce(sum(g.n), 0) FROM ({groups}) AS g WHERE NOT EXISTS "
        f"(SELECT 1 FROM {quote_sqlite_ident(parent.source_name)} AS p WHERE p.{ref} = g.k)",
    )


def groups_by_index(conn: sqlite3.Connection, grouped: GroupedOrphans) -> bool:
    """Whether SQLite groups the child's keys by reading an index (no sort of its own)
    whose collation, and so the column's, is BINARY: every index that leads with the
    column does (the one SQLite reads has the column's collation)."""
    steps = conn.execute(f"EXPLAIN QUERY PLAN {grouped.groups}").fetchall()
    if any("TEMP B-TREE" in str(step[-1]) for step in steps):
        return False
    collations = set()
    for (index,) in conn.execute("SELECT name FROM pragma_index_list(?)", (grouped.table,)):
        first = conn.execute(
            "SELECT name, coll FROM pragma_index_xinfo(?) WHERE seqno = 0", (index,)
        ).fetchone()
        if first is not None and str(first[0]).lower() == grouped.column.lower():
            collations.add(str(first[1] or "BINARY").upper())
    return collations == {"BINARY"}


# what one table's SQLite side asks: its name, its jsonb columns' names, the count query,
# and each foreign key's name with its orphan query (None: not counted) and the same
# count by grouped keys where that may be exact
ScanKey = tuple[
    str, tuple[str, ...], str, tuple[tuple[str, str | None, GroupedOrphans | None], ...]
]


def scan_key(plan: Plan, table: TablePlan) -> ScanKey:
    """Everything one table's source scan depends on: a plan made again that asks the
    same of SQLite gets the same key (and the same answer)."""
    return (
        table.name,
        tuple(c.name for c in json_columns(table)),
        source_scan_sql(table),
        tuple(
            (fk.name, source_orphan_sql(plan, table, fk), grouped_orphans(plan, table, fk))
            for fk in table.foreign_keys
        ),
    )


def scan_source(
    plan: Plan, source: Path, tables: Sequence[TablePlan] | None = None
) -> dict[str, ScanOutcome]:
    """Every table's counts (or those of ``tables``) from SQLite, on one read-only
    connection (run in a thread)."""
    conn = open_sync(source)
    try:
        return {
            t.name: _scan_source_table(conn, source, scan_key(plan, t))
            for t in (plan.tables if tables is None else tables)
        }
    finally:
        conn.close()


def _scan_source_table(conn: sqlite3.Connection, source: Path, key: ScanKey) -> ScanOutcome:
    _table, names, count_sql, orphan_sqls = key
    try:
        row = conn.execute(count_sql).fetchone()
        orphans = {
            name: int(conn.execute(_orphans_sql(conn, sql, grouped)).fetchone()[0])
            for name, sql, grouped in orphan_sqls
            if sql is not None
        }
    except sqlite3.OperationalError as exc:
        if "no such" in str(exc):  # table or column gone since the plan was made
            return f"{MISSING} in source ({exc})"
        raise source_error(source, exc) from exc
    except sqlite3.DatabaseError as exc:
        raise source_error(source, exc) from exc
    return Scan(int(row[0]), dict(zip(names, map(int, row[1:]), strict=True)), orphans=orphans)


def _orphans_sql(conn: sqlite3.Connection, sql: str, grouped: GroupedOrphans | None) -> str:
    return grouped.sql if grouped is not None and groups_by_index(conn, grouped) else sql


class SourceScans:
    """The SQLite side of the final check, taken beside the load.

    The source cannot change during a run (its fingerprint is compared at the end), so
    its counts and orphans are the same whenever they are read: a run reads them once
    its first batch is in, on the cores the load leaves idle, instead of after the
    load, when the check would wait for them (an anti-join over a 900,000-row table:
    about 0.4 s). Each table's answer is kept by :func:`scan_key`; a plan made again
    after a refuted load asks again only where it asks something else.
    """

    def __init__(self, source: Path) -> None:
        self.source = source
        self.found: dict[ScanKey, ScanOutcome] = {}
        self._lock = anyio.Lock()

    async def beside(self, plan: Plan, copying: anyio.Event) -> None:
        """Once the load's first batch is in (``copying``), every table's scan, in a
        thread of lower priority: it takes the CPU the load leaves."""
        await copying.wait()
        await self.take(plan, nice=BESIDE_NICE)

    async def take(self, plan: Plan, *, nice: int = 0) -> dict[str, ScanOutcome]:
        """Every table's outcome, scanning (in a thread) those not read yet."""
        async with self._lock:
            keys = {t.name: scan_key(plan, t) for t in plan.tables}
            missing = [t for t in plan.tables if keys[t.name] not in self.found]
            if missing:
                found = await in_thread(scan_source, plan, self.source, missing, nice=nice)
                self.found.update({keys[name]: outcome for name, outcome in found.items()})
            return {name: self.found[key] for name, key in keys.items()}


BESIDE_NICE = 10
T = TypeVar("T")


async def in_thread(func: Callable[..., T], *args: object, nice: int = 0) -> T:
    """``func(*args)`` in a thread of its own, at ``nice`` (Linux gives each thread its
    own): a thread of anyio's pool would keep the lower priority for later work."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            if nice:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
            outcome.append(func(*args))
        except BaseException as exc:  # noqa: BLE001 -- raised again by the task awaiting it
            failure.append(exc)

    thread = threading.Thread(target=body, name="asyncmig-scan", daemon=True)
    thread.start()
    await anyio.to_thread.run_sync(thread.join, abandon_on_cancel=True)
    if failure:
        raise failure[0]
    return outcome[0]


# --- PostgreSQL side ---------------------------------------------------------------


def target_scan_sql(plan: Plan, table: TablePlan) -> str:
    parts = ["count(*)"]
    parts += [f"count({quote_ident(c.name)})" for c in json_columns(table)]
    parts += [f"coalesce(max({quote_ident(c.name)}), 0)" for c in identity_columns(table)]
    return f"SELECT {', '.join(parts)} FROM {qualified(plan.schema, table.name)}"


async def existing_tables(conn: asyncpg.Connection, plan: Plan) -> set[str]:
    """Tables present in the target schema, so a dropped one is reported, not raised."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
        plan.schema,
    )
    return {str(r[0]) for r in rows}


def error_text(exc: Exception) -> str:
    return f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


async def scan_target_table(
    conn: asyncpg.Connection, plan: Plan, table: TablePlan, existing: set[str]
) -> ScanOutcome:
    if table.name not in existing:
        return MISSING
    try:
        row = await conn.fetchrow(target_scan_sql(plan, table))
    except asyncpg.PostgresError as exc:  # e.g. a column dropped since the migration
        return error_text(exc)
    jsons = [c.name for c in json_columns(table)]
    idents = [c.name for c in identity_columns(table)]
    values = [int(v) for v in row]
    return Scan(
        values[0],
        dict(zip(jsons, values[1 : 1 + len(jsons)], strict=True)),
        dict(zip(idents, values[1 + len(jsons) :], strict=True)),
    )


async def scan_target(
    conn: asyncpg.Connection, plan: Plan, existing: set[str]
) -> dict[str, ScanOutcome]:
    return {t.name: await scan_target_table(conn, plan, t, existing) for t in plan.tables}


# --- the checks ----------------------------------------------------------------------


def row_count_result(
    table: TablePlan, source: ScanOutcome, target: ScanOutcome, rejected: int = 0
) -> CheckResult:
    """Source rows = loaded rows + rows the load rejected (kept in the reject store)."""
    expected = str(source.rows) if isinstance(source, Scan) else source
    found = str(target.rows) if isinstance(target, Scan) else target
    if rejected and isinstance(target, Scan):
        found = f"{target.rows} + {rejected} rejected"
    ok = (
        isinstance(source, Scan)
        and isinstance(target, Scan)
        and source.rows == target.rows + rejected
    )
    return CheckResult(
        ROW_COUNT,
        table.name,
        "",
        expected,
        found,
        ok,
        _outcome(source, rows=source.rows if isinstance(source, Scan) else None),
        _outcome(target, rows=target.rows if isinstance(target, Scan) else None, rejected=rejected),
    )


def _outcome(scan: ScanOutcome, **values: object) -> dict[str, object]:
    """Structured values of one side; a side that could not be read says why."""
    return values if isinstance(scan, Scan) else {"state": scan}


def json_results(
    table: TablePlan, source: ScanOutcome, target: ScanOutcome, allowance: Allowance | None = None
) -> list[CheckResult]:
    """Every non-NULL JSON value arrived, except those the load accounted for.

    Rejected rows and values a policy replaced by NULL are recorded by the load; the
    difference may not exceed them (an exact equality when there were none).
    """
    results = []
    for column in json_columns(table):
        want = source.non_null[column.name] if isinstance(source, Scan) else None
        got = target.non_null[column.name] if isinstance(target, Scan) else None
        allowed = allowance.for_column(column.name) if allowance else 0
        expected = f"{want} non-NULL" if want is not None else str(source)
        if allowed and want is not None:
            expected += f" (less up to {allowed} rejected or nulled)"
        found = f"{got} non-NULL" if got is not None else str(target)
        ok = want is not None and got is not None and 0 <= want - got <= allowed
        results.append(
            CheckResult(
                JSON,
                table.name,
                column.name,
                expected,
                found,
                ok,
                _outcome(source, non_null=want, allowed_missing=allowed),
                _outcome(target, non_null=got),
            )
        )
    return results


@dataclass(frozen=True)
class Allowance:
    """What a load recorded for one table: rows rejected, values replaced by NULL."""

    rejected: int = 0
    nulled: Mapping[str, int] = field(default_factory=dict)

    def for_column(self, column: str) -> int:
        return self.rejected + self.nulled.get(column, 0)

    @classmethod
    def from_accounts(cls, rejected: int, replaced: Mapping[str, int]) -> Allowance:
        nulled = {
            label.rsplit(": ", 1)[0]: n for label, n in replaced.items() if label.endswith(": null")
        }
        return cls(rejected, nulled)


def orphan_sql(plan: Plan, table: TablePlan, fk: ForeignKeyPlan, ref_columns: Sequence[str]) -> str:
    """How many child rows have a non-NULL key (MATCH SIMPLE) and no parent row."""
    return (
        f"SELECT count(*) FROM {qualified(plan.schema, table.name)} "
        f"WHERE {orphan_condition(plan, table, fk, ref_columns)}"
    )


async def constraint_state(
    conn: asyncpg.Connection, plan: Plan, table: TablePlan, fk: ForeignKeyPlan
) -> str:
    validated = await conn.fetchval(
        "SELECT convalidated FROM pg_constraint WHERE contype = 'f' AND conname = $1 "
        "AND conrelid = to_regclass($2)",
        fk.name,
        name_text(plan.schema, table.name),
    )
    if validated is None:
        return "constraint missing"
    return "validated" if validated else "NOT VALID"


async def orphan_count(
    conn: asyncpg.Connection, plan: Plan, table: TablePlan, fk: ForeignKeyPlan, existing: set[str]
) -> str:
    """How many orphans, as text; or why they could not be counted."""
    for name in (table.name, fk.ref_table):
        if name not in existing:
            return f"table {name} {MISSING}"
    ref_columns = referenced_columns(plan, fk)
    if len(ref_columns) != len(fk.columns):
        return f"parent key of {fk.ref_table} unknown"
    try:
        count = int(await conn.fetchval(orphan_sql(plan, table, fk, ref_columns)))
    except asyncpg.PostgresError as exc:
        return error_text(exc)
    return _orphans(count)


def _orphans(count: int) -> str:
    return f"{count} orphan{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class OrphanExpectation:
    """What a foreign key should look like after a run: the orphans its policy kept."""

    policy: str = "keep"  # the run's --orphans policy for the child table
    source: int | None = None  # orphans SQLite itself holds (None: not counted)
    parent_rejected: bool = False  # the load rejected parent rows: their children are orphans

    @property
    def expected(self) -> str:
        if self.policy == "keep" and self.source:
            return f"{_orphans(self.source)} (as in SQLite), NOT VALID"
        return "0 orphans, validated"

    def values(self) -> dict[str, object]:
        kept = self.policy == "keep" and bool(self.source)
        return {
            "orphans": self.source if kept else 0,
            "state": "NOT VALID" if kept else "validated",
            "policy": self.policy,
        }

    def holds(self, orphans: str, state: str) -> bool:
        """Kept orphans leave the key NOT VALID; children of rejected parents add to them."""
        if state == "validated":
            return not (self.policy == "keep" and self.source)
        count = orphans.split(" ", 1)[0]
        if self.policy != "keep" or state != "NOT VALID" or not count.isdigit():
            return False
        return int(count) == (self.source or 0) or (
            self.parent_rejected and int(count) > (self.source or 0)
        )


async def foreign_key_result(
    conn: asyncpg.Connection,
    plan: Plan,
    table: TablePlan,
    fk: ForeignKeyPlan,
    existing: set[str],
    want: OrphanExpectation | None = None,
) -> CheckResult:
    want = want or OrphanExpectation(source=0)
    state = await constraint_state(conn, plan, table, fk)
    # a validated foreign key is PostgreSQL's own proof that no orphan exists (it is kept
    # true by every later write), so the anti-join is run only when that proof is missing
    orphans = (
        "0 orphans" if state == "validated" else await orphan_count(conn, plan, table, fk, existing)
    )
    found = f"{orphans}, {state}"
    count = orphans.split(" ", 1)[0]
    return CheckResult(
        FOREIGN_KEY,
        table.name,
        fk.name,
        want.expected,
        found,
        want.holds(orphans, state),
        want.values(),
        {"orphans": int(count) if count.isdigit() else None, "state": state},
    )


async def sequence_state(
    conn: asyncpg.Connection, plan: Plan, table: TablePlan, column: ColumnPlan
) -> tuple[str, int] | None:
    """(sequence name, next value it hands out), or None when the column has none.

    pg_get_serial_sequence parses its first argument as a quoted, qualified name and
    takes the column name literally (see ddl/sequences.py); both go as parameters.
    pg_sequences hides the value set by ``setval(..., false)`` (last_value is NULL
    until is_called), so the sequence relation itself is read.
    """
    row = await conn.fetchrow(
        "SELECT n.nspname, c.relname, s.increment_by FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_sequences s ON s.schemaname = n.nspname AND s.sequencename = c.relname "
        "WHERE c.oid = pg_get_serial_sequence($1, $2)::regclass",
        name_text(plan.schema, table.name),
        column.name,
    )
    if row is None:
        return None
    state = await conn.fetchrow(
        f"SELECT last_value, is_called FROM {qualified(row['nspname'], row['relname'])}"
    )
    step = int(row["increment_by"]) if state["is_called"] else 0
    return str(row["relname"]), int(state["last_value"]) + step


async def sequence_result(
    conn: asyncpg.Connection, plan: Plan, table: TablePlan, column: ColumnPlan, target: ScanOutcome
) -> CheckResult:
    if not isinstance(target, Scan):
        return CheckResult(SEQUENCE, table.name, column.name, "next > max", target, False)
    expected = f"next > {target.maxima[column.name]}"
    try:
        state = await sequence_state(conn, plan, table, column)
    except asyncpg.PostgresError as exc:
        return CheckResult(SEQUENCE, table.name, column.name, expected, error_text(exc), False)
    if state is None:
        return CheckResult(SEQUENCE, table.name, column.name, expected, "no sequence", False)
    name, next_value = state
    ok = next_value > target.maxima[column.name]
    return CheckResult(
        SEQUENCE,
        table.name,
        name,
        expected,
        f"next = {next_value}",
        ok,
        {"next_above": target.maxima[column.name]},
        {"next": next_value},
    )


async def sequence_results(
    conn: asyncpg.Connection, plan: Plan, targets: dict[str, ScanOutcome]
) -> list[CheckResult]:
    """Identity sequences: a check that needs nothing from SQLite."""
    return [
        await sequence_result(conn, plan, t, c, targets[t.name])
        for t in plan.tables
        for c in identity_columns(t)
    ]


def orphan_expectation(
    table: TablePlan,
    fk: ForeignKeyPlan,
    source: ScanOutcome,
    policies: Mapping[str, str],
    allowances: Mapping[str, Allowance],
) -> OrphanExpectation:
    rejected = allowances.get(fk.ref_table, Allowance()).rejected > 0
    count = source.orphans.get(fk.name) if isinstance(source, Scan) else None
    return OrphanExpectation(policies.get(table.name, "keep"), count, rejected)


async def run_checks(
    plan: Plan,
    conn: asyncpg.Connection,
    source: Path,
    allowances: Mapping[str, Allowance] | None = None,
    orphan_policies: Mapping[str, str] | None = None,
    scans: SourceScans | None = None,
) -> list[CheckResult]:
    """Every check of the plan, grouped by kind, tables in plan order.

    SQLite is scanned in a worker thread while PostgreSQL answers on ``conn`` (one
    connection runs one query at a time, so the PostgreSQL side is sequential).
    ``orphan_policies`` maps a table to the run's ``--orphans`` policy (default keep);
    ``scans``: the SQLite side as far as a run has read it beside its load.
    """
    sources: dict[str, ScanOutcome] = {}

    async def read_source() -> None:
        sources.update(await (scans or SourceScans(source)).take(plan))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_source)
            existing = await existing_tables(conn, plan)
            targets = await scan_target(conn, plan, existing)
            sequences = await sequence_results(conn, plan, targets)
    except BaseExceptionGroup as group:  # the SourceError, not the task group's wrapping
        raise first_error(group) from group
    allowances = allowances or {}
    policies = orphan_policies or {}
    keys = [
        await foreign_key_result(
            conn,
            plan,
            t,
            fk,
            existing,
            orphan_expectation(t, fk, sources[t.name], policies, allowances),
        )
        for t in plan.tables
        for fk in t.foreign_keys
    ]
    counts = [
        row_count_result(
            t, sources[t.name], targets[t.name], allowances.get(t.name, Allowance()).rejected
        )
        for t in plan.tables
    ]
    jsons = [
        r
        for t in plan.tables
        for r in json_results(t, sources[t.name], targets[t.name], allowances.get(t.name))
    ]
    results = counts + keys + sequences + jsons
    order = {kind: i for i, kind in enumerate(CHECK_KINDS)}
    return sorted(results, key=lambda r: order[r.check])  # stable: plan order within a kind


# --- output ----------------------------------------------------------------------------

HEADINGS = ("check", "table", "subject", "expected", "found", "result")


def _cells(result: CheckResult) -> tuple[str, ...]:
    return (
        result.check,
        result.table,
        result.subject,
        result.expected,
        result.found,
        "OK" if result.ok else "FAIL",
    )


def _table_lines(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(width(r[i]) for r in [HEADINGS, *rows]) for i in range(len(HEADINGS))]
    return [
        "  ".join(ljust(cell, w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [HEADINGS, *rows]
    ]


def render_text(results: list[CheckResult]) -> str:
    """One aligned table per check kind, then the totals a person looks at first."""
    lines: list[str] = []
    kinds = [k for k in CHECK_KINDS if any(r.check == k for r in results)]
    kinds += sorted({r.check for r in results} - set(kinds))
    for kind in kinds:
        lines += [*_table_lines([_cells(r) for r in results if r.check == kind]), ""]
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results)} checks, {failed} failed")
    return "\n".join(lines) + "\n"


def results_json(results: list[CheckResult]) -> list[dict[str, object]]:
    """Plain dicts (orjson/json-ready), one per result, in the results' order; expected
    and found carry the prose (``text``) and the values a script compares."""
    return [
        {
            "check": r.check,
            "table": r.table,
            "subject": r.subject,
            "ok": r.ok,
            "expected": {"text": r.expected, **r.expected_value},
            "found": {"text": r.found, **r.found_value},
        }
        for r in results
    ]


__all__ = [
    "CHECK_KINDS",
    "CheckResult",
    "SourceScans",
    "render_text",
    "results_json",
    "run_checks",
]
