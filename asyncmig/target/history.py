"""The migration history, kept in the target database in its own schema.

One row per run (``asyncmig.runs``) and one per table per run (``asyncmig.run_tables``).
A table's row is written inside the same transaction as the table's COPY, so the
history can never claim data that did not commit, and a failed run that drops its
tables deletes their rows in the same transaction as the drop. ``status`` and later
features (resume, rollback) read these tables.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from asyncmig.errors import TargetError
from asyncmig.load.policy import Accounts
from asyncmig.quoting import qualified, quote_ident
from asyncmig.target import runlock
from asyncmig.target.tablestate import Dependent, TableState

SCHEMA = "asyncmig"
RUNS = qualified(SCHEMA, "runs")
RUN_TABLES = qualified(SCHEMA, "run_tables")
RUN_CHUNKS = qualified(SCHEMA, "run_chunks")

# --chunk-rows: one row per committed chunk, written in the chunk's own transaction
CHUNKS_SQL = f"""CREATE TABLE IF NOT EXISTS {RUN_CHUNKS} (
    run_id bigint NOT NULL REFERENCES {RUNS} (id) ON DELETE CASCADE,
    table_name text NOT NULL,
    first_key bigint NOT NULL,
    last_key bigint NOT NULL,
    rows bigint NOT NULL,
    rejected bigint NOT NULL DEFAULT 0,
    reject_reasons jsonb NOT NULL DEFAULT '{{}}',
    replaced jsonb NOT NULL DEFAULT '{{}}',
    seconds double precision NOT NULL,
    taken_over boolean NOT NULL DEFAULT false,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, table_name, first_key)
)"""

CREATE_SQL = [
    f"CREATE SCHEMA IF NOT EXISTS {quote_ident(SCHEMA)}",
    f"""CREATE TABLE IF NOT EXISTS {RUNS} (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        command text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        status text NOT NULL DEFAULT 'running',
        source_path text NOT NULL,
        source_size bigint,
        source_sha256 text,
        target_schema text NOT NULL,
        options jsonb NOT NULL DEFAULT '{{}}',
        rows_loaded bigint,
        seconds double precision,
        error text,
        rollback_script text,
        log_file text
    )""",
    f"""CREATE TABLE IF NOT EXISTS {RUN_TABLES} (
        run_id bigint NOT NULL REFERENCES {RUNS} (id) ON DELETE CASCADE,
        table_name text NOT NULL,
        source_rows bigint NOT NULL,
        loaded_rows bigint NOT NULL,
        replaced jsonb NOT NULL DEFAULT '{{}}',
        rejected bigint NOT NULL DEFAULT 0,
        reject_reasons jsonb NOT NULL DEFAULT '{{}}',
        reject_file text,
        seconds double precision NOT NULL,
        loaded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, table_name)
    )""",
]


# columns added since the history's first version: older histories are brought up to date
# (only the missing ones: ALTER TABLE needs ownership even when the column exists, and a
# user allowed to write the history need not own it)
UPGRADES = [
    ("run_tables", "rejected", "bigint NOT NULL DEFAULT 0"),
    ("run_tables", "reject_reasons", "jsonb NOT NULL DEFAULT '{}'"),
    ("run_tables", "reject_file", "text"),
    # names this run's files: unique across servers, databases and schemas (run ids are not)
    ("runs", "run_uuid", "uuid DEFAULT gen_random_uuid()"),
    # the rollback itself, so `rollback` never depends on a file that may be gone or changed
    ("runs", "rollback_sql", "text"),
    ("runs", "error_class", "text"),
    ("runs", "host", "text"),
    ("runs", "pid", "integer"),
    # what a succeeded run left, so a rollback can tell what the application did since
    ("run_tables", "final_rows", "bigint"),
    ("run_tables", "checksum", "numeric"),
    ("run_tables", "max_key", "bigint"),
    ("runs", "finish_xid", "bigint"),
    ("runs", "dependents", "jsonb"),
    # the backup a rollback wrote before removing anything
    ("runs", "backup_file", "text"),
    ("runs", "backup_sha256", "text"),
    # resume: the interrupted run this one finished, and the tables it took over from it
    ("runs", "resumed_from", "bigint"),
    ("run_tables", "taken_over", "boolean NOT NULL DEFAULT false"),
    # where the cut-over kept the tables it replaced, what --cascade dropped, and what
    # became of that schema (swapped back by a rollback, removed by cleanup)
    ("runs", "backup_schema", "text"),
    ("runs", "cascade_dropped", "jsonb"),
    ("runs", "backup_schema_end", "text"),
    # the bytes kept per key in the source marks (none: 8, an MD5 prefix)
    ("source_marks", "key_size", "integer"),
    # what the marks' digests are of: "cells" (the raw records), else (none) pickled rows
    ("source_marks", "kind", "text"),
    # a delta's: the run whose marks it changes (none: the marks are whole)
    ("source_marks", "base_run", "bigint"),
    # what run_tables.checksum sums (tablestate.HASHES; none: the rows' text)
    ("run_tables", "checksum_kind", "text"),
]


async def _upgrade(conn: asyncpg.Connection) -> None:
    present = {
        (r[0], r[1])
        for r in await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = $1",
            SCHEMA,
        )
    }
    for table, column, definition in UPGRADES:
        if (table, column) not in present:
            await conn.execute(
                f"ALTER TABLE {qualified(SCHEMA, table)} "
                f"ADD COLUMN IF NOT EXISTS {quote_ident(column)} {definition}"
            )


async def ensure(conn: asyncpg.Connection) -> None:
    """Create (or bring up to date) the history schema and tables."""
    try:
        # concurrent first runs would race on CREATE ... IF NOT EXISTS: serialise them
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('asyncmig.target.history'))")
            exists = await conn.fetchval(
                "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", SCHEMA
            )
            tables = await conn.fetchval(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace "
                "WHERE nspname = $1 AND relname IN ('runs', 'run_tables')",
                SCHEMA,
            )
            if tables < 2:  # CREATE TABLE IF NOT EXISTS needs CREATE on the schema
                for statement in CREATE_SQL[1 if exists else 0 :]:
                    await conn.execute(statement)
            if not await conn.fetchval(
                "SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.run_chunks"
            ):
                await conn.execute(CHUNKS_SQL)
            if not await conn.fetchval(
                "SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.source_marks"
            ):
                from asyncmig.target.marks import MARKS_SQL

                await conn.execute(MARKS_SQL)
            await _upgrade(conn)  # after the CREATEs: it upgrades those tables too
    except asyncpg.InsufficientPrivilegeError as exc:
        raise TargetError(
            f"cannot keep the migration history in schema {SCHEMA}: {exc}",
            hint=f"create schema {SCHEMA} for this user (CREATE SCHEMA {SCHEMA} "
            "AUTHORIZATION <user>) or grant CREATE on the database",
        ) from None


async def start_run(
    conn: asyncpg.Connection, command: str, source: Path, schema: str, options: dict[str, Any]
) -> int:
    await ensure(conn)
    path, size = await anyio.to_thread.run_sync(
        lambda: (str(source.resolve()), source.stat().st_size)
    )
    return int(
        await conn.fetchval(
            f"INSERT INTO {RUNS} (command, source_path, source_size, target_schema, options, "
            "host, pid) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) RETURNING id",
            command,
            path,
            size,
            schema,
            json.dumps(options),
            socket.gethostname(),
            os.getpid(),
        )
    )


async def record_sha256(conn: asyncpg.Connection, run_id: int, sha256: str) -> None:
    """The source's digest, as soon as it is known: a resume compares it."""
    await conn.execute(f"UPDATE {RUNS} SET source_sha256 = $2 WHERE id = $1", run_id, sha256)


async def take_over(
    conn: asyncpg.Connection, run_id: int, resumed_from: int, tables: Sequence[str]
) -> None:
    """This run resumes ``resumed_from``: its verified tables' rows become this run's,
    flagged ``taken_over`` (inside the transaction that adopts its stage)."""
    await conn.execute(f"UPDATE {RUNS} SET resumed_from = $2 WHERE id = $1", run_id, resumed_from)
    await conn.execute(
        f"INSERT INTO {RUN_TABLES} (run_id, table_name, source_rows, loaded_rows, replaced, "
        "rejected, reject_reasons, reject_file, seconds, loaded_at, taken_over) "
        "SELECT $1, table_name, source_rows, loaded_rows, replaced, rejected, reject_reasons, "
        f"reject_file, seconds, loaded_at, true FROM {RUN_TABLES} "
        "WHERE run_id = $2 AND table_name = ANY($3::text[])",
        run_id,
        resumed_from,
        list(tables),
    )


@dataclass(frozen=True)
class Chunk:
    """One committed chunk of a table (``--chunk-rows``): its rowid range and accounts."""

    first_key: int
    last_key: int
    rows: int
    accounts: Accounts


async def record_chunk(
    conn: asyncpg.Connection,
    run_id: int,
    table: str,
    first_key: int,
    last_key: int,
    rows: int,
    accounts: Accounts,
    seconds: float,
) -> None:
    """Called inside the chunk's load transaction."""
    await conn.execute(
        f"INSERT INTO {RUN_CHUNKS} (run_id, table_name, first_key, last_key, rows, rejected, "
        "reject_reasons, replaced, seconds) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, "
        "$8::jsonb, $9)",
        run_id,
        table,
        first_key,
        last_key,
        rows,
        accounts.rejected,
        json.dumps(accounts.reasons),
        json.dumps(accounts.replaced),
        seconds,
    )


async def recorded_chunks(conn: asyncpg.Connection, run_id: int, table: str) -> list[Chunk]:
    """The chunks of ``table`` committed for this run (taken over ones included), in order."""
    rows = await conn.fetch(
        f"SELECT * FROM {RUN_CHUNKS} WHERE run_id = $1 AND table_name = $2 ORDER BY first_key",
        run_id,
        table,
    )
    return [
        Chunk(
            int(r["first_key"]),
            int(r["last_key"]),
            int(r["rows"]),
            Accounts(
                rejected=int(r["rejected"]),
                reasons=json.loads(r["reject_reasons"]),
                replaced=json.loads(r["replaced"]),
            ),
        )
        for r in rows
    ]


async def take_over_chunks(
    conn: asyncpg.Connection, run_id: int, resumed_from: int, table: str
) -> None:
    """A partly loaded table's chunks become this run's (flagged ``taken_over``)."""
    await conn.execute(
        f"INSERT INTO {RUN_CHUNKS} (run_id, table_name, first_key, last_key, rows, rejected, "
        "reject_reasons, replaced, seconds, taken_over, loaded_at) SELECT $1, table_name, "
        "first_key, last_key, rows, rejected, reject_reasons, replaced, seconds, true, "
        f"loaded_at FROM {RUN_CHUNKS} WHERE run_id = $2 AND table_name = $3",
        run_id,
        resumed_from,
        table,
    )


async def set_options(conn: asyncpg.Connection, run_id: int, options: dict[str, Any]) -> None:
    """The options as the full plan settled them (the run started from its outline)."""
    await conn.execute(
        f"UPDATE {RUNS} SET options = $2::jsonb WHERE id = $1", run_id, json.dumps(options)
    )


async def record_resume_key(conn: asyncpg.Connection, run_id: int, key: str) -> None:
    """The resume key of a plan made again after a refutation (see asyncmig.resume)."""
    await conn.execute(
        f"UPDATE {RUNS} SET options = options || jsonb_build_object('resume_key', $2::text) "
        "WHERE id = $1",
        run_id,
        key,
    )


async def run_tag(conn: asyncpg.Connection, run_id: int) -> str:
    """A short name for the run's files, unique to this target and run: ``run<N>-<uuid>``."""
    uuid = await conn.fetchval(f"SELECT run_uuid FROM {RUNS} WHERE id = $1", run_id)
    return f"run{run_id}-{uuid.hex[:12]}"


async def store_rollback(
    conn: asyncpg.Connection, run_id: int, sql: str, script: Path | None
) -> None:
    """Keep the run's rollback SQL (and where its copy was written) in the history."""
    await conn.execute(
        f"UPDATE {RUNS} SET rollback_sql = $2, rollback_script = $3 WHERE id = $1",
        run_id,
        sql,
        str(script) if script else None,
    )


async def record_table(
    conn: asyncpg.Connection,
    run_id: int,
    table: str,
    source_rows: int,
    loaded_rows: int,
    accounts: Accounts,
    seconds: float,
) -> None:
    """Called inside the table's load transaction."""
    await conn.execute(
        f"INSERT INTO {RUN_TABLES} (run_id, table_name, source_rows, loaded_rows, replaced, "
        "rejected, reject_reasons, reject_file, seconds) "
        "VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::jsonb, $8, $9)",
        run_id,
        table,
        source_rows,
        loaded_rows,
        json.dumps(accounts.replaced),
        accounts.rejected,
        json.dumps(accounts.reasons),
        accounts.reject_file,
        seconds,
    )


async def move_to_rejected(
    conn: asyncpg.Connection,
    run_id: int,
    table: str,
    rows: int,
    reason: str,
    reject_file: str | None,
) -> None:
    """Rows a later phase took out of a loaded table (orphans, duplicates): loaded -> rejected."""
    await conn.execute(
        f"UPDATE {RUN_TABLES} SET loaded_rows = loaded_rows - $3, rejected = rejected + $3, "
        "reject_reasons = reject_reasons || jsonb_build_object($4::text, "
        "coalesce((reject_reasons ->> $4::text)::bigint, 0) + $3), "
        "reject_file = coalesce(reject_file, $5) "
        "WHERE run_id = $1 AND table_name = $2",
        run_id,
        table,
        rows,
        reason,
        reject_file,
    )


@dataclass(frozen=True)
class LoadAccount:
    """What a table's latest successful load recorded: what `check` must allow for."""

    rejected: int
    replaced: dict[str, int]
    reject_file: str | None


async def latest_loads(conn: asyncpg.Connection, schema: str) -> dict[str, LoadAccount]:
    """Per table, the accounts of its latest successful load into ``schema``."""
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.run_tables"):
        return {}
    rows = await conn.fetch(
        f"SELECT DISTINCT ON (t.table_name) t.table_name, t.rejected, t.replaced, "
        f"t.reject_file FROM {RUN_TABLES} t JOIN {RUNS} r ON r.id = t.run_id "
        "WHERE r.target_schema = $1 AND r.status = 'succeeded' "
        "ORDER BY t.table_name, t.run_id DESC",
        schema,
    )
    return {r[0]: LoadAccount(int(r[1]), json.loads(r[2]), r[3]) for r in rows}


async def latest_option(conn: asyncpg.Connection, schema: str, key: str) -> Any:
    """One option of the latest successful run into ``schema`` that recorded it, or None."""
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.runs"):
        return None
    value = await conn.fetchval(
        f"SELECT options -> $2::text FROM {RUNS} WHERE target_schema = $1 "
        "AND status = 'succeeded' AND options ? $2::text ORDER BY id DESC LIMIT 1",
        schema,
        key,
    )
    return json.loads(value) if value is not None else None


async def forget_table(conn: asyncpg.Connection, run_id: int, table: str) -> None:
    """Called in the transaction that empties a table to load it again."""
    await conn.execute(
        f"DELETE FROM {RUN_TABLES} WHERE run_id = $1 AND table_name = $2", run_id, table
    )


async def record_state(
    conn: asyncpg.Connection,
    run_id: int,
    xid: int,
    states: Sequence[TableState],
    dependents: Sequence[Dependent],
) -> None:
    """What a succeeded run left: per table rows, checksum and highest key; what depended
    on the tables. A `schema` run's tables get their (empty) row here too."""
    await conn.executemany(
        f"INSERT INTO {RUN_TABLES} (run_id, table_name, source_rows, loaded_rows, seconds, "
        "final_rows, checksum, max_key, checksum_kind) VALUES ($1, $2, 0, 0, 0, $3, $4, $5, $6) "
        "ON CONFLICT (run_id, table_name) DO UPDATE SET final_rows = excluded.final_rows, "
        "checksum = excluded.checksum, max_key = excluded.max_key, "
        "checksum_kind = excluded.checksum_kind",
        [(run_id, s.table, s.rows, s.checksum, s.max_key, s.kind) for s in states],
    )
    await conn.execute(
        f"UPDATE {RUNS} SET finish_xid = $2, dependents = $3::jsonb WHERE id = $1",
        run_id,
        xid,
        json.dumps([str(d) for d in dependents]),
    )


async def record_backup(conn: asyncpg.Connection, run_id: int, path: Path, sha256: str) -> None:
    await conn.execute(
        f"UPDATE {RUNS} SET backup_file = $2, backup_sha256 = $3 WHERE id = $1",
        run_id,
        str(path),
        sha256,
    )


async def record_cut_over(
    conn: asyncpg.Connection, run_id: int, backup_schema: str | None, dropped: Sequence[str]
) -> None:
    """In the cut-over's transaction: where the replaced tables went, what --cascade dropped."""
    await conn.execute(
        f"UPDATE {RUNS} SET backup_schema = $2, cascade_dropped = $3::jsonb WHERE id = $1",
        run_id,
        backup_schema,
        json.dumps(list(dropped)),
    )


async def cut_over_unfinished(conn: asyncpg.Connection, schema: str) -> int | None:
    """The latest run into ``schema`` that put tables in place (it succeeded, or its
    cut-over committed), when it was interrupted (or failed) after its cut-over (its
    tables are in place, checked; its last steps not done). Runs that failed before
    their cut-over, e.g. a re-run refused, changed nothing there and are passed over."""
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.runs"):
        return None
    row = await conn.fetchrow(
        f"SELECT id, status FROM {RUNS} WHERE target_schema = $1 AND command = 'run' "
        "AND status <> 'running' AND (status IN ('succeeded', 'rolled back') "
        "OR cascade_dropped IS NOT NULL) ORDER BY id DESC LIMIT 1",
        schema,
    )
    if row is None or row["status"] not in ("interrupted", "failed"):
        return None
    return int(row["id"])


async def end_backup_schema(conn: asyncpg.Connection, schema: str, how: str) -> None:
    """Record what became of a run's backup schema (restored, removed), in the caller's
    transaction."""
    await conn.execute(
        f"UPDATE {RUNS} SET backup_schema_end = $2 WHERE backup_schema = $1 "
        "AND backup_schema_end IS NULL",
        schema,
        how,
    )


async def forget_tables(conn: asyncpg.Connection, run_id: int) -> None:
    """Called in the transaction that drops a failed run's tables."""
    await conn.execute(f"DELETE FROM {RUN_TABLES} WHERE run_id = $1", run_id)


async def finish_run(
    conn: asyncpg.Connection,
    run_id: int,
    *,
    status: str,
    rows: int | None = None,
    seconds: float | None = None,
    error: str | None = None,
    sha256: str | None = None,
    rollback_script: str | None = None,
    log_file: str | None = None,
    error_class: str | None = None,
) -> None:
    await conn.execute(
        f"UPDATE {RUNS} SET finished_at = now(), status = $2, rows_loaded = $3, seconds = $4, "
        "error = $5, source_sha256 = coalesce($6, source_sha256), "
        "rollback_script = coalesce($7, rollback_script), log_file = $8, error_class = $9 "
        "WHERE id = $1",
        run_id,
        status,
        rows,
        seconds,
        error,
        sha256,
        rollback_script,
        log_file,
        error_class,
    )


@dataclass(frozen=True)
class RunRecord:
    id: int
    command: str
    started_at: Any
    finished_at: Any
    status: str
    source_path: str
    source_size: int | None
    source_sha256: str | None
    target_schema: str
    options: Any  # the JSON object a run records; any JSON if the history was edited
    rows_loaded: int | None
    seconds: float | None
    error: str | None
    rollback_script: str | None
    log_file: str | None
    tables: tuple[dict[str, Any], ...]
    run_uuid: Any = None
    rollback_sql: str | None = None
    error_class: str | None = None
    host: str | None = None
    pid: int | None = None
    finish_xid: int | None = None
    dependents: list[str] | None = None
    backup_file: str | None = None
    backup_sha256: str | None = None
    resumed_from: int | None = None
    backup_schema: str | None = None
    cascade_dropped: list[str] | None = None
    backup_schema_end: str | None = None


ABANDONED = "the process ended without recording how (killed, or its connection lost)"


async def mark_abandoned(conn: asyncpg.Connection, schema: str) -> None:
    """Runs into ``schema`` still ``running`` while the caller holds its lock: interrupted.

    Called by a new run right after it took the schema's lock, so no live run can own
    such a row: its process died (kill -9, a crash) or lost its connection for good.
    """
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.runs"):
        return
    await conn.execute(
        f"UPDATE {RUNS} SET status = 'interrupted', finished_at = now(), "
        "error = coalesce(error, $2) WHERE target_schema = $1 AND status = 'running'",
        schema,
        ABANDONED,
    )


async def read_runs(conn: asyncpg.Connection, limit: int = 20) -> list[RunRecord]:
    """The latest runs; a ``running`` one whose schema lock nobody holds shows as
    ``interrupted`` (its process died without saying so)."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.runs")
    if not exists:
        return []
    locked = await runlock.held(conn)
    runs = [
        dict(r) for r in await conn.fetch(f"SELECT * FROM {RUNS} ORDER BY id DESC LIMIT $1", limit)
    ]
    for run in runs:
        if run["status"] == "running" and runlock.schema_key(run["target_schema"]) not in locked:
            run.update(status="interrupted", error=run["error"] or ABANDONED)
    tables = await conn.fetch(
        f"SELECT * FROM {RUN_TABLES} WHERE run_id = ANY($1::bigint[]) ORDER BY run_id, table_name",
        [r["id"] for r in runs],
    )
    per_run: dict[int, list[dict[str, Any]]] = {}
    for row in tables:
        entry = dict(row)
        entry["replaced"] = json.loads(entry["replaced"])
        entry["reject_reasons"] = json.loads(entry["reject_reasons"])
        per_run.setdefault(row["run_id"], []).append(entry)
    return [
        RunRecord(
            **{
                **r,
                "options": json.loads(r["options"]),
                "dependents": json.loads(r["dependents"]) if r["dependents"] else None,
                "cascade_dropped": json.loads(r["cascade_dropped"])
                if r.get("cascade_dropped")
                else None,
                "tables": tuple(per_run.get(r["id"], [])),
            }
        )
        for r in runs
    ]
