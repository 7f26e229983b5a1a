"""Is rolling back a run safe? What the application did to its tables since, who uses them.

A rollback drops the run's tables. Anything the application wrote into them since the
run, any view or foreign key it built on them, and any session still using them is
lost or broken by that drop. :func:`validate` finds each of these without changing
anything, and names table and count in a warning; the rollback refuses while there is
any (unless forced), after writing a backup when it goes ahead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from asyncmig import cutover
from asyncmig.quoting import name_text, qualified
from asyncmig.target import history, tablestate
from asyncmig.target.history import RunRecord

LOCKS_SQL = """
SELECT l.pid, a.usename, a.application_name, a.state,
       array_agg(DISTINCT c.relname ORDER BY c.relname) AS tables,
       array_agg(DISTINCT l.mode ORDER BY l.mode) AS modes
FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.relation = ANY($1::oid[]) AND l.pid IS DISTINCT FROM pg_backend_pid()
GROUP BY l.pid, a.usename, a.application_name, a.state ORDER BY l.pid
"""

SESSIONS_SQL = """
SELECT pid, usename, application_name, state, query FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend' ORDER BY pid
"""


class GuideMapping:
    """Results read as the reference guide reads them (``safety["warnings"]``) or as fields."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def keys(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class TableChange(GuideMapping):
    """One table of the run: then (recorded) and now; split counts None when unknown."""

    table: str
    rows_then: int | None
    rows_now: int | None  # None: the table is gone
    checksum_then: Decimal | None
    checksum_now: Decimal | None
    written: int | None = None  # rows inserted or updated since (by transaction id)
    inserted: int | None = None
    updated: int | None = None
    deleted: int | None = None

    @property
    def changed(self) -> bool:
        return (
            self.rows_then != self.rows_now
            or self.checksum_then != self.checksum_now
            or bool(self.written)
        )


@dataclass(frozen=True)
class Session(GuideMapping):
    """Another connection to the database that holds locks on, or last named, a table."""

    pid: int
    user: str | None
    application: str | None
    state: str | None
    tables: tuple[str, ...]
    locks: tuple[str, ...] = ()

    def __str__(self) -> str:
        who = f"session {self.pid} (user {self.user}, application {self.application or '-'}, "
        return who + f"{self.state or 'unknown state'})"


@dataclass(frozen=True)
class SafetyReport(GuideMapping):
    """The verdict: ``safe_to_rollback`` is true only when there is no warning."""

    run_id: int
    schema: str
    tables: tuple[TableChange, ...]
    sessions: tuple[Session, ...] = ()
    dependents: tuple[tablestate.Dependent, ...] = ()
    later_runs: tuple[int, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    swaps_back: str | None = None  # the backup schema the rollback moves back into place
    not_restorable: tuple[str, ...] = ()  # what the run's --cascade dropped

    def notes(self) -> list[str]:
        """What the rollback will do besides dropping the run's tables (not warnings)."""
        found = (
            [f"the tables run {self.run_id} replaced are swapped back from {self.swaps_back}"]
            if self.swaps_back
            else []
        )
        return found + [
            f"not restorable: {what} (dropped with --cascade by run {self.run_id})"
            for what in self.not_restorable
        ]

    @property
    def safe_to_rollback(self) -> bool:
        return not self.warnings

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "schema": self.schema,
            "safe_to_rollback": self.safe_to_rollback,
            "warnings": list(self.warnings),
            "tables": [t.__dict__ for t in self.tables],
            "sessions": [s.__dict__ for s in self.sessions],
            "dependents": [d.__dict__ for d in self.dependents],
            "later_runs": list(self.later_runs),
            "swaps_back": self.swaps_back,
            "not_restorable": list(self.not_restorable),
        }


async def validate(conn: asyncpg.Connection, run: RunRecord, runs: list[RunRecord]) -> SafetyReport:
    """Everything that makes rolling back ``run`` lose or break something; changes nothing."""
    names = [t["table_name"] for t in run.tables]
    existing = [n for n in names if await _exists(conn, run.target_schema, n)]
    changes = await table_changes(conn, run, existing)
    sessions = await using_sessions(conn, run.target_schema, existing)
    recorded = set(run.dependents or [])
    new = tuple(
        d
        for d in await tablestate.dependents(conn, run.target_schema, existing)
        if str(d) not in recorded
    )
    later = tuple(
        r.id
        for r in runs
        if r.id > run.id
        and r.target_schema == run.target_schema
        and r.status in ("succeeded", "running")
        and (not r.tables or {t["table_name"] for t in r.tables} & set(names))
        and not finished(r, run)
    )
    commands = {r.id: r.command for r in runs}
    warnings = [
        f"a later {commands[r]} (run {r}) into schema {run.target_schema} may have "
        f"written the tables of run {run.id}"
        for r in later
    ]
    warnings += [w for c in changes for w in change_warnings(run, c)]
    warnings += [
        f"{s} {'holds locks on' if s.locks else 'last ran a statement naming'} "
        f"table {', '.join(s.tables)}"
        for s in sessions
    ]
    warnings += [dependent_warning(run, d) for d in new]
    kept = run.backup_schema if run.backup_schema and not run.backup_schema_end else None
    if kept and not await cutover.schema_exists(conn, kept):
        kept = None
    return SafetyReport(
        run.id,
        run.target_schema,
        tuple(changes),
        tuple(sessions),
        new,
        later,
        tuple(warnings),
        kept,
        tuple(run.cascade_dropped or ()),
    )


def finished(later: RunRecord, run: RunRecord) -> bool:
    """Did ``later`` only finish ``run``'s job (``run`` was killed after its cut-over,
    see asyncmig.unfinished)? It wrote no table: rolling ``run`` back loses nothing of it."""
    return later.resumed_from == run.id and not later.tables and later.status == "succeeded"


async def _exists(conn: asyncpg.Connection, schema: str, table: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name_text(schema, table)))


async def table_changes(
    conn: asyncpg.Connection, run: RunRecord, existing: list[str]
) -> list[TableChange]:
    """Per table, what the run recorded against what is there now."""
    result = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for statement in tablestate.STABLE_OUTPUT:
            await conn.execute(statement)
        for recorded in run.tables:
            name = recorded["table_name"]
            then_rows, then_sum = recorded.get("final_rows"), recorded.get("checksum")
            if name not in existing:
                result.append(TableChange(name, then_rows, None, then_sum, None))
                continue
            kind = recorded.get("checksum_kind") or tablestate.TEXT
            rows_now, sum_now = await _state_now(conn, run.target_schema, name, kind)
            change = TableChange(name, then_rows, rows_now, then_sum, sum_now)
            if run.finish_xid is not None and then_rows is not None:
                change = await _split(conn, run, change, recorded.get("max_key"))
            result.append(change)
    return result


async def _state_now(
    conn: asyncpg.Connection, schema: str, table: str, kind: str
) -> tuple[int, Decimal | None]:
    """The table's rows now and its checksum of the recorded ``kind``; None where the
    rows can no longer be summed that way (a column's type changed to one without a
    hash, or a kind this version does not know): a checksum then differs."""
    if kind not in tablestate.HASHES or (
        kind == tablestate.RECORD and await tablestate.hash_kind(conn, schema, table) != kind
    ):
        count = await conn.fetchval(f"SELECT count(*) FROM {qualified(schema, table)}")
        return int(count), None
    now = await tablestate.table_state(conn, schema, table, kind)
    return now.rows, now.checksum


async def _split(
    conn: asyncpg.Connection, run: RunRecord, change: TableChange, max_key: int | None
) -> TableChange:
    """Inserted, updated and deleted rows, from transaction ids and the integer key."""
    assert run.finish_xid is not None and change.rows_then is not None
    assert change.rows_now is not None
    key = await tablestate.integer_key(conn, run.target_schema, change.table)
    written, new_keys = await tablestate.written_since(
        conn, run.target_schema, change.table, run.finish_xid, key, max_key
    )
    untouched = change.rows_now - written  # rows of the run nobody wrote since
    gone = change.rows_then - untouched  # updated or deleted
    if key is not None and max_key is not None and gone >= written - new_keys:
        inserted = new_keys
    elif written == 0 or gone == 0:  # only deletions, or only insertions: no doubt either
        inserted = written
    else:
        return TableChange(**{**change.__dict__, "written": written})
    updated = written - inserted
    return TableChange(
        **{
            **change.__dict__,
            "written": written,
            "inserted": inserted,
            "updated": updated,
            "deleted": gone - updated,
        }
    )


def change_warnings(run: RunRecord, change: TableChange) -> list[str]:
    """One warning per kind of change, naming the table and the count."""
    where = f"table {change.table}"
    if change.rows_now is None:
        return [f"{where} of run {run.id} no longer exists"]
    if change.checksum_then is None:
        return [
            (
                f"{where}: run {run.id} recorded no checksum (it finished before asyncmig "
                f"recorded them), so changes since cannot be ruled out "
                f"({change.rows_now} rows now)"
            )
        ]
    if not change.changed:
        return []
    counts = f"(rows {change.rows_then} -> {change.rows_now}, checksum differs)"
    if change.inserted is not None:
        parts = [
            f"{rows(n)} {verb}"
            for n, verb in (
                (change.inserted, "inserted"),
                (change.updated, "updated"),
                (change.deleted, "deleted"),
            )
            if n
        ]
        if parts:
            return [f"{where}: {', '.join(parts)} since run {run.id} {counts}"]
    if change.written:
        gone = (change.rows_then or 0) - ((change.rows_now or 0) - change.written)
        return [
            (
                f"{where}: {rows(change.written)} inserted or updated and {gone} of the "
                f"run's rows updated or deleted since run {run.id} {counts}"
            )
        ]
    return [f"{where}: changed since run {run.id} {counts}"]


def rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def dependent_warning(run: RunRecord, dependent: tablestate.Dependent) -> str:
    verb = "references" if dependent.kind == "foreign key" else "depends on"
    return (
        f"{dependent} {verb} table {dependent.table} and was created after run {run.id}: "
        "the rollback would drop it"
    )


async def using_sessions(conn: asyncpg.Connection, schema: str, tables: list[str]) -> list[Session]:
    """Other sessions holding locks on the tables, or whose last statement named one."""
    oids = [
        await conn.fetchval("SELECT to_regclass($1)::oid", name_text(schema, t)) for t in tables
    ]
    sessions = {
        r["pid"]: Session(
            r["pid"],
            r["usename"],
            r["application_name"],
            r["state"],
            tuple(r["tables"]),
            tuple(r["modes"]),
        )
        for r in await conn.fetch(LOCKS_SQL, oids)
    }
    for row in await conn.fetch(SESSIONS_SQL):
        named = tuple(t for t in tables if _names(row["query"] or "", t))
        if named and row["pid"] not in sessions:
            sessions[row["pid"]] = Session(
                row["pid"], row["usename"], row["application_name"], row["state"], named
            )
    return list(sessions.values())


def _names(query: str, table: str) -> bool:
    """Does ``query`` name ``table`` (as a word, quoted or not)?"""
    return re.search(rf"(?<![\w$]){re.escape(table)}(?![\w$])", query, re.IGNORECASE) is not None


async def runs_and_run(
    conn: asyncpg.Connection, run_id: int
) -> tuple[RunRecord | None, list[RunRecord]]:
    runs = await history.read_runs(conn, limit=1000)
    return next((r for r in runs if r.id == run_id), None), runs
