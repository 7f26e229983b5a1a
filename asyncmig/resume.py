"""Resume: the same command, run again after an interruption, finishes the job.

A `run` interrupted by ``kill -9``, SIGTERM/SIGINT or a lost connection keeps its
stage (:mod:`asyncmig.cutover`): the tables whose load committed are there, each
with its history row written in the load's own transaction. The next `run` into the
same target adopts that stage when it is safe to, as pgcopydb's ``--resume`` does
with its work directory, but with the proof kept in PostgreSQL itself:

* the interrupted run read the same source. Its identity
  (:mod:`asyncmig.source.identity`: inode, size, times, SQLite's change counter, the
  WAL's header), recorded before the run read anything, is the file's now; and its
  SHA-256, when recorded (the run computes it beside the load, so a run killed early
  has none), is the file's now. The new run computes the SHA-256 and records it at
  once. A run with neither (a --snapshot run killed before its digest, or one whose
  source was written seconds before it started) is not resumed: the new one starts
  over, as it does when either differs;
* it made the same plan and used the same data-affecting options (one digest of both,
  :func:`resume_key`, kept in the run's options);
* its stage schema still exists, and no live run holds the target's lock (the caller
  holds it).

The new run renames the stage to its own name, keeps each table whose history row
says it loaded every source row (loaded + rejected = SQLite's count) and whose row
count in the stage matches (the row-count check, done again), and drops the others,
which load again from a clean, recreated table. The kept tables' history rows are
copied to the new run, flagged ``taken_over``, and the run records ``resumed_from``.
The post-data phases skip what the stage already has (an index, a constraint, a
foreign key, a view of that name). ``--restart`` refuses all this: what the
interrupted run left is dropped, and the run starts over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import structlog

from asyncmig import cutover, ddl
from asyncmig.cli import signals
from asyncmig.errors import ConnectionLost, TargetError
from asyncmig.load import chunks, split
from asyncmig.load.counts import SourceCounts
from asyncmig.load.pipeline import PipelineSettings, TableLoad
from asyncmig.load.policy import Accounts
from asyncmig.quoting import qualified, quote_ident
from asyncmig.source import digest as source_digest
from asyncmig.target import faults, history
from asyncmig.target.connect import Target

if TYPE_CHECKING:
    from pathlib import Path

    from asyncmig.plan.model import Plan, TablePlan
    from asyncmig.runstate import RunSettings

log = structlog.get_logger(__name__)


def resume_key(settings: RunSettings, plan: Plan) -> str:
    """A digest of the plan and of every option that changes the data loaded.

    Options that only change how fast (jobs, batch and queue sizes, workers) or how
    the cut-over goes (--replace, --cascade) are left out: a run resumed with another
    --jobs loads the same rows.
    """
    described = plan.to_dict()
    described.pop("source_path")  # a --snapshot copy's path differs each time
    data = {
        "plan": described,
        "overrides": repr(replace(settings.overrides, origin=None)),
        "duplicates": str(settings.duplicates),
        "max_rejects": settings.pipeline.max_rejects,
        "max_rejects_total": settings.max_rejects_total,
    }
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Proof:
    """What a run that resumes another must share with it: :func:`resume_key`, and the
    source's identity (None: unknown, so only the SHA-256 can tell)."""

    key: str
    identity: str | None


@dataclass(frozen=True)
class Resumable:
    """An interrupted run whose stage the new run takes over."""

    run_id: int
    stage: str
    sha256: str  # the source's, checked equal to the file's


@dataclass
class Adopted:
    """What the new run took over: per kept table, its load as the history recorded it."""

    resumed_from: int
    loads: dict[str, TableLoad] = field(default_factory=dict)
    partial: list[str] = field(default_factory=list)  # chunked tables, continued


# what proves that a run read the same source with the same plan (see same_job)
PROOF_SQL = f"""
SELECT id, source_sha256, options ->> 'resume_key' AS key,
       options ->> 'source_identity' AS identity FROM {history.RUNS}"""
# the latest run that did not finish: `interrupted` (a signal, kill -9) or `failed`
# (a lost connection; a permanent failure dropped its stage, so has none to resume)
CANDIDATE_SQL = f"""{PROOF_SQL}
WHERE target_schema = $1 AND command = 'run' AND status IN ('interrupted', 'failed')
ORDER BY id DESC LIMIT 1
"""


async def pick(
    conn: asyncpg.Connection, settings: RunSettings, schema: str, proof: Proof, *, resumes: bool
) -> Resumable | None:
    """The interrupted run to resume (when the command ``resumes``: `run`, without
    --restart), if any; everything else interrupted runs into ``schema`` left behind is
    dropped, logged (the caller holds the schema's lock)."""
    found = None
    if resumes and not settings.restart:
        found = await _candidate(conn, settings, schema, proof)
    elif resumes:
        log.info("resume_refused", reason="--restart: what interrupted runs left is dropped")
    await cutover.drop_stale(conn, schema, keep=found.stage if found else None)
    await drop_stale_loads(conn, schema)
    return found


async def _candidate(
    conn: asyncpg.Connection, settings: RunSettings, schema: str, proof: Proof
) -> Resumable | None:
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{history.SCHEMA}.runs"):
        return None
    row = await conn.fetchrow(CANDIDATE_SQL, schema)
    if row is None:
        return None
    stage = cutover.stage_name(schema, row["id"])
    if not await conn.fetchval(
        "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", stage
    ):
        return None
    sha, reason = await same_job(row, settings.source, proof)
    if sha is not None:
        return Resumable(int(row["id"]), stage, sha)
    log.warning("not_resumed", run=row["id"], stage=stage, reason=reason)
    return None


async def same_job(
    row: asyncpg.Record, source: Path, proof: Proof
) -> tuple[str, None] | tuple[None, str]:
    """(the source's SHA-256, None) when the run in ``row`` (see PROOF_SQL) read this
    source with this plan and these data options; else (None, why not)."""
    reason = _refusal(row, proof)
    if reason is not None:
        return None, reason
    sha = await anyio.to_thread.run_sync(source_digest.sha256, source)
    if row["source_sha256"] in (None, sha):
        return sha, None
    return None, "the source changed since (another SHA-256)"


def _refusal(row: asyncpg.Record, proof: Proof) -> str | None:
    """Why the interrupted run in ``row`` cannot be resumed, before reading the source
    (None: it may be, if its SHA-256, when it has one, is the file's)."""
    if row["key"] != proof.key:
        return "its plan or data options differ"
    recorded = row["identity"]
    if recorded is not None and proof.identity is None:
        return "the source's identity cannot be compared (--snapshot, or written seconds ago)"
    if recorded is not None and recorded != proof.identity:
        return "the source changed since (written after the interrupted run started)"
    if recorded is None and row["source_sha256"] is None:
        return "it ended before its source's SHA-256 was known, and had no identity of it"
    return None


async def drop_stale_loads(conn: asyncpg.Connection, schema: str) -> list[str]:
    """The split loader's schemas (``asyncmig_load_<run id>``) of dead runs into ``schema``.

    A run is dead when it is no longer ``running`` in the history: the caller holds the
    schema's lock and marked abandoned runs interrupted first.
    """
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{history.SCHEMA}.runs"):
        return []
    rows = await conn.fetch(
        f"SELECT n.nspname FROM pg_namespace n JOIN {history.RUNS} r "
        "ON n.nspname = 'asyncmig_load_' || r.id WHERE r.target_schema = $1 "
        "AND r.status <> 'running' ORDER BY 1",
        schema,
    )
    names = [str(r[0]) for r in rows]
    for name in names:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")
        log.warning("stale_load_schema_dropped", schema=name, target=schema)
    return names


async def adopt(
    conn: asyncpg.Connection,
    found: Resumable,
    plan: Plan,
    run_id: int,
    pipeline: PipelineSettings,
    counts: SourceCounts,
) -> Adopted:
    """Take the stage over (renamed to ``plan.schema``, this run's stage) in one
    transaction: verified tables kept, a table this run loads in chunks kept with the
    chunks recorded for it (it goes on after the last), the others dropped and created
    again bare; the kept tables' history copied to this run."""
    adopted = Adopted(found.run_id)
    async with conn.transaction():
        await conn.execute(
            f"ALTER SCHEMA {quote_ident(found.stage)} RENAME TO {quote_ident(plan.schema)}"
        )
        await conn.execute(
            f"DROP SCHEMA IF EXISTS {quote_ident(split.staging_schema(found.run_id))} CASCADE"
        )
        recorded = await _recorded(conn, found.run_id)
        for table in plan.tables:
            load = await _verified(conn, plan, table, counts, recorded)
            if load is not None:
                adopted.loads[table.name] = load
                continue
            if chunks.chunked(table, pipeline) and await _chunks_hold(
                conn, plan, table.name, found.run_id
            ):
                await history.take_over_chunks(conn, run_id, found.run_id, table.name)
                adopted.partial.append(table.name)
                continue
            await conn.execute(f"DROP TABLE IF EXISTS {qualified(plan.schema, table.name)} CASCADE")
            await conn.execute(ddl.create_table_sql(plan, table))
        await _functions(conn, plan)
        await history.take_over(conn, run_id, found.run_id, sorted(adopted.loads))
    log.info(
        "resumed",
        run=found.run_id,
        stage=plan.schema,
        taken_over=sorted(adopted.loads),
        continued=adopted.partial,
        reloaded=[
            t.name
            for t in plan.tables
            if t.name not in adopted.loads and t.name not in adopted.partial
        ],
    )
    return adopted


async def _chunks_hold(conn: asyncpg.Connection, plan: Plan, name: str, run_id: int) -> bool:
    """Does the stage's table hold exactly the rows of the chunks recorded for it?"""
    recorded = await history.recorded_chunks(conn, run_id, name)
    present = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", qualified(plan.schema, name)
    )
    if not recorded or not present:
        return False
    counted = int(await conn.fetchval(f"SELECT count(*) FROM {qualified(plan.schema, name)}"))
    if counted == sum(c.rows for c in recorded):
        return True
    log.warning(
        "chunks_not_resumed", table=name, recorded=sum(c.rows for c in recorded), found=counted
    )
    return False


async def _recorded(conn: asyncpg.Connection, run_id: int) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch(f"SELECT * FROM {history.RUN_TABLES} WHERE run_id = $1", run_id)
    return {r["table_name"]: dict(r) for r in rows}


async def _verified(
    conn: asyncpg.Connection,
    plan: Plan,
    table: TablePlan,
    counts: SourceCounts,
    recorded: dict[str, dict[str, Any]],
) -> TableLoad | None:
    """The table's load as recorded, when its rows are all there (SQLite's exact count,
    counted now where the plan has an estimate); else None."""
    name = table.name
    row = recorded.get(name)
    present = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", qualified(plan.schema, name)
    )
    if row is None or not present:
        return None
    source_rows = await counts.exact(table)
    loaded, rejected = int(row["loaded_rows"]), int(row["rejected"])
    counted = int(await conn.fetchval(f"SELECT count(*) FROM {qualified(plan.schema, name)}"))
    if not (int(row["source_rows"]) == source_rows == loaded + rejected and counted == loaded):
        log.warning(
            "table_not_resumed",
            table=name,
            reason=f"recorded {loaded} loaded + {rejected} rejected of {row['source_rows']}, "
            f"source has {source_rows}, stage has {counted}",
        )
        return None
    accounts = Accounts(
        rejected=rejected,
        reasons=json.loads(row["reject_reasons"]),
        replaced=json.loads(row["replaced"]),
        reject_file=row["reject_file"],
    )
    return TableLoad(name, source_rows, loaded, 0.0, rows_committed=counted, accounts=accounts)


async def _functions(conn: asyncpg.Connection, plan: Plan) -> None:
    """The profile's functions, where the interrupted run had not made them yet."""
    for statement in ddl.function_sql(plan):
        async with conn.transaction():  # a savepoint: "exists" undoes only itself
            try:
                await conn.execute(statement)
            except asyncpg.DuplicateFunctionError:
                continue


def resumable_failure(exc: BaseException) -> bool:
    """Did the run stop for a reason a re-run overcomes (a signal, a lost connection),
    rather than one it would meet again (bad data, a refused plan)? Then its stage stays."""
    return signals.received() is not None or isinstance(faults.as_error(exc), ConnectionLost)


async def keep_stage(
    target: Target, admin: asyncpg.Connection, plan: Plan, run_id: int
) -> str | None:
    """Leave the stage for a resume (only a split table's partial ranges go); returns
    "N of M tables kept", or None when PostgreSQL cannot be reached to count them."""
    try:
        async with faults.cleanup_connection(target, admin) as conn:
            await conn.execute(split.drop_staging_sql(run_id))
            kept = int(
                await conn.fetchval(
                    f"SELECT count(*) FROM {history.RUN_TABLES} WHERE run_id = $1", run_id
                )
            )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TargetError) as exc:
        log.error("stage_not_counted", error=str(exc))
        return None
    log.warning("stage_kept", stage=plan.schema, tables_kept=kept, tables=len(plan.tables))
    return f"{kept} of {len(plan.tables)} tables kept"


def explained(exc: BaseException, note: str | None) -> BaseException:
    """The error to raise for a run whose stage was kept: it says how to resume."""
    if signals.received():
        signals.note_resume(note)
        return exc
    error = faults.as_error(exc)
    if isinstance(error, ConnectionLost) and error.transient:
        error.hint = "check the server, then re-run the same command to resume" + (
            f"; {note}" if note else ""
        )
    return error
