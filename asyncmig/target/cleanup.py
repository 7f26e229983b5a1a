"""`asyncmig cleanup`: remove what runs into one target schema kept or left behind.

Three kinds of schema, each named after the target (its advisory-lock key) or a run:

* backup schemas (``asyncmig_backup_<key>_<run id>``): the tables a ``run --replace``
  replaced, kept so that ``rollback`` can swap them back. Like pg_dump files they are
  kept until removed on purpose: all of them, one run's (``--run N``) or all but the
  newest K (``--keep K``);
* stale stages (``asyncmig_stage_<key>_<run id>``) of runs that did not finish;
* stale load schemas (``asyncmig_load_<run id>``) of runs into the target, or of runs
  the history does not know.

Nothing of a live run is touched: cleanup takes the target's advisory lock first (a
live run holds it: exit 9), so every stage and load schema of the target belongs to a
run that ended. A run into the schema drops stale stages itself; cleanup is the way to
remove them without running. ``--dry-run`` lists what would go, with sizes, and
changes nothing. Each removal is logged (``leftover_removed``); a backup schema's end
is recorded in its run's history row (``backup_schema_end``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import structlog

from asyncmig import cutover
from asyncmig.errors import TargetError, UsageError
from asyncmig.load import split
from asyncmig.quoting import quote_ident
from asyncmig.target import dependents, history, runlock

log = structlog.get_logger(__name__)

BACKUP, STAGE, LOAD = "backup schema", "stale stage", "stale load schema"
SCHEMAS_SQL = """
SELECT n.nspname, coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes,
       array_remove(array_agg(c.relname::text ORDER BY c.relname), NULL) AS relations
FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm', 'S', 'v', 'p', 'f')
WHERE starts_with(n.nspname, $1)
GROUP BY n.nspname ORDER BY n.nspname
"""


@dataclass(frozen=True)
class Leftover:
    """One schema cleanup removes (or, with --keep, keeps)."""

    kind: str  # BACKUP, STAGE or LOAD
    schema: str
    run_id: int | None
    bytes: int
    relations: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "schema": self.schema,
            "run_id": self.run_id,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class CleanupReport:
    target: str
    removed: tuple[Leftover, ...]  # or, with dry_run, what would be
    kept: tuple[Leftover, ...]  # backup schemas --keep kept
    dry_run: bool

    @property
    def bytes(self) -> int:
        return sum(item.bytes for item in self.removed)


async def _schemas(conn: asyncpg.Connection, prefix: str, kind: str) -> list[Leftover]:
    found = []
    for name, size, relations in await conn.fetch(SCHEMAS_SQL, prefix):
        suffix = re.fullmatch(re.escape(prefix) + r"(\d+)", name)
        if suffix is not None:  # another's schema that only shares the prefix is not ours
            found.append(Leftover(kind, name, int(suffix[1]), int(size), tuple(relations)))
    return found


async def backup_schemas(conn: asyncpg.Connection, target: str) -> list[Leftover]:
    """The backup schemas of runs into ``target``, oldest run first, with their sizes."""
    return sorted(
        await _schemas(conn, cutover.backup_prefix(target), BACKUP), key=lambda b: b.run_id or 0
    )


async def stale_stages(conn: asyncpg.Connection, target: str) -> list[Leftover]:
    """The stages of runs into ``target``: stale only while the caller holds its lock."""
    return await _schemas(conn, cutover.stage_prefix(target), STAGE)


async def stale_load_schemas(conn: asyncpg.Connection, target: str) -> list[Leftover]:
    """``asyncmig_load_<run id>`` schemas of runs into ``target``, or of runs the history
    does not know (stale while the caller holds the target's lock)."""
    found = await _schemas(conn, split.staging_schema(0)[:-1], LOAD)
    if not found or not await conn.fetchval("SELECT to_regclass('asyncmig.runs') IS NOT NULL"):
        return found
    rows = await conn.fetch(
        f"SELECT id, target_schema FROM {history.RUNS} WHERE id = ANY($1::bigint[])",
        [item.run_id for item in found],
    )
    into = {int(r[0]): r[1] for r in rows}
    return [item for item in found if into.get(item.run_id or 0, target) == target]


def choose(
    backups: Sequence[Leftover], *, run: int | None, keep: int | None
) -> tuple[list[Leftover], list[Leftover]]:
    """The backup schemas to remove and those to keep: one run's, all but the newest
    ``keep``, or all."""
    if run is not None:
        chosen = [b for b in backups if b.run_id == run]
        if not chosen:
            raise UsageError(
                f"run {run} kept no backup schema of this target (or it was removed)",
                hint="`asyncmig status` lists the backup schemas kept",
            )
        return chosen, []
    if keep:
        return list(backups[:-keep]), list(backups[-keep:])
    return list(backups), []


async def cleanup(
    conn: asyncpg.Connection,
    target: str,
    *,
    run: int | None = None,
    keep: int | None = None,
    dry_run: bool = False,
) -> CleanupReport:
    """List, and unless ``dry_run`` remove, what runs into ``target`` left (see above)."""
    await runlock.acquire(conn, target)  # no live run's stage or load schema is touched
    removed, kept = choose(await backup_schemas(conn, target), run=run, keep=keep)
    if run is None:
        removed += await stale_stages(conn, target)
        removed += await stale_load_schemas(conn, target)
    if not dry_run and removed:
        await _remove(conn, removed)
    return CleanupReport(target, tuple(removed), tuple(kept), dry_run)


async def _remove(conn: asyncpg.Connection, leftovers: Sequence[Leftover]) -> None:
    """Drop the schemas in one transaction; refused, changing nothing, when an object of
    the application outside a backup schema depends on what it holds."""
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '10s'")
            for item in leftovers:
                await _refuse_dependents(conn, item)
                await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(item.schema)} CASCADE")
                if item.kind == BACKUP and await conn.fetchval(
                    "SELECT to_regclass('asyncmig.runs') IS NOT NULL"
                ):
                    await history.end_backup_schema(conn, item.schema, "removed by cleanup")
    except asyncpg.LockNotAvailableError:
        raise TargetError(
            "cannot clean up: another session kept a table of these schemas locked for 10 s; "
            "nothing was removed",
            hint="end that session's transaction, then run cleanup again",
        ) from None
    for item in leftovers:
        log.info(
            "leftover_removed",
            kind=item.kind,
            schema=item.schema,
            run=item.run_id,
            bytes=item.bytes,
        )


async def _refuse_dependents(conn: asyncpg.Connection, item: Leftover) -> None:
    found = [
        d
        for d in await dependents.find(conn, item.schema, list(item.relations))
        if d.schema != item.schema
    ]
    if found:
        raise TargetError(
            f"cannot remove schema {item.schema}: objects of the application depend on it: "
            + ", ".join(str(d) for d in found[:5])
            + "; nothing was removed",
            hint="drop or change them first",
        )
