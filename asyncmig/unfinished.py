"""A run killed after its cut-over committed: the plain re-run finishes its job.

The cut-over (:mod:`asyncmig.cutover`) moves the checked tables into the target and
records itself in one transaction; what follows it (the tables' final state, the
rollback, the ``succeeded`` status) is bookkeeping. A run killed between the two leaves
the complete copy in place and its history row ``interrupted`` with ``cascade_dropped``
set. The next `run` of the same command finds it (:func:`candidate`) and, when it can
prove the job is the same (:func:`provable`: the proof a resume asks for, see
:func:`asyncmig.resume.same_job`, and every table of the plan in the target), checks
the target against the source and records what the killed run did not (see
``asyncmig.run.finish_cut_over``): nothing is loaded again. Otherwise the re-run refuses
as before ("already exists"), naming the killed run.

The history then shows the killed run ``succeeded`` (finished by the re-run), with its
state and rollback, so ``rollback --run N`` undoes it; the re-run ``succeeded`` with
``resumed_from`` = N, no tables of its own and no rollback (:func:`record`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import structlog

from asyncmig import cutover, resume
from asyncmig.runstate import TableReport
from asyncmig.target import history

if TYPE_CHECKING:
    from asyncmig.plan.model import Plan
    from asyncmig.runstate import RunSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Unfinished:
    """The killed run whose job the re-run finishes: its id, the source's SHA-256 (checked
    equal to the file's) and its tables as its history recorded their loads."""

    run_id: int
    sha256: str
    tables: tuple[TableReport, ...]


async def candidate(
    conn: asyncpg.Connection, settings: RunSettings, schema: str, *, finishes: bool
) -> int | None:
    """The latest run into ``schema`` when it was killed after its cut-over, for a
    command that may finish it (`run`, without --replace, which migrates again, or
    --restart, which never takes over what a killed run left)."""
    if not finishes or settings.replace or settings.restart:
        return None
    return await history.cut_over_unfinished(conn, schema)


async def provable(
    conn: asyncpg.Connection,
    settings: RunSettings,
    plan: Plan,
    run_id: int,
    proof: resume.Proof,
) -> Unfinished | None:
    """Run ``run_id``, when it read this source with this plan and left every table of
    ``plan`` (in the target schema) in place, with its load recorded; else None (logged)."""
    row = await conn.fetchrow(f"{resume.PROOF_SQL} WHERE id = $1", run_id)
    sha, reason = await resume.same_job(row, settings.source, proof)
    tables = await _recorded(conn, run_id)
    names = [t.name for t in plan.tables]
    present = set(await cutover.existing_tables(conn, plan))
    missing = [n for n in names if n not in present or n not in tables]
    if reason is None and missing:
        reason = f"its table {missing[0]} is not in the target, or its load not recorded"
    if sha is None or reason is not None:
        log.warning("not_finished", run=run_id, reason=reason)
        return None
    return Unfinished(run_id, sha, tuple(tables[n] for n in names))


async def _recorded(conn: asyncpg.Connection, run_id: int) -> dict[str, TableReport]:
    """The run's loads as its history recorded them, as taken over by the re-run."""
    rows = await conn.fetch(f"SELECT * FROM {history.RUN_TABLES} WHERE run_id = $1", run_id)
    return {
        r["table_name"]: TableReport(
            r["table_name"],
            int(r["loaded_rows"]),
            float(r["seconds"]),
            0.0,
            replaced=json.loads(r["replaced"]),
            rejected=int(r["rejected"]),
            reject_reasons=json.loads(r["reject_reasons"]),
            reject_file=r["reject_file"],
            taken_over=True,
        )
        for r in rows
    }


async def record(
    conn: asyncpg.Connection,
    found: Unfinished,
    run_id: int,
    *,
    seconds: float,
    rollback_script: str | None,
    log_file: str | None,
) -> None:
    """In one transaction: the killed run ``succeeded`` (its rows, its rollback script's
    file), and this run ``succeeded`` as the one that finished it (``resumed_from``),
    having loaded nothing."""
    async with conn.transaction():
        await history.finish_run(
            conn,
            found.run_id,
            status="succeeded",
            rows=sum(t.rows for t in found.tables),
            sha256=found.sha256,
            rollback_script=rollback_script,
            log_file=log_file,
        )
        await history.take_over(conn, run_id, found.run_id, [])
        await history.finish_run(
            conn,
            run_id,
            status="succeeded",
            rows=0,
            seconds=seconds,
            sha256=found.sha256,
            log_file=log_file,
        )
    log.info("cut_over_finished", run=found.run_id, by=run_id)
