"""The commands besides run/schema/data (in migrate): check, validate, status, rollback,
cleanup."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import asyncpg
import orjson

from asyncmig.check import deep as deep_check
from asyncmig.cli.settings import DeepCheck
from asyncmig.errors import MigrationError, VerificationError
from asyncmig.load.policy import from_json_value
from asyncmig.plan.model import Plan
from asyncmig.runstate import RunSettings
from asyncmig.source.sqlite import check_source_file
from asyncmig.target import cleanup, history, plans, rollback
from asyncmig.target.connect import connect, hang_up
from asyncmig.target.history import RunRecord
from asyncmig.target.safety import SafetyReport
from asyncmig.target.statements import check_server

if TYPE_CHECKING:  # imported where used: the checks' modules are many (not for a sync)
    from asyncmig.check import preflight, verify


async def check(settings: RunSettings, deep: DeepCheck | None = None) -> list[verify.CheckResult]:
    """Compare the PostgreSQL copy with the source: counts, foreign keys, JSON, sequences;
    with ``deep``, a checksum of every table's values too.

    Rows the latest load rejected are allowed for: counted from the history, and left
    out of the checksums by their keys, read back from the reject store.
    """
    from asyncmig.check import verify

    check_source_file(settings.source)
    conn = await connect(settings.target)
    try:
        await check_server(conn)
        plan = await plans.latest(conn, settings.schema, settings.source, settings.overrides)
        if plan is None:  # no recorded plan, or the source's declared schema changed
            plan = await _plan_again(settings, conn)
        loads = await history.latest_loads(conn, plan.schema)
        allowances = {
            table: verify.Allowance.from_accounts(load.rejected, load.replaced)
            for table, load in loads.items()
        }
        policies = {t.name: settings.overrides.orphan_policy(t.source_name) for t in plan.tables}
        policies.update(await history.latest_option(conn, plan.schema, "orphans") or {})
        results = await verify.run_checks(plan, conn, settings.source, allowances, policies)
        recorded = await history.latest_option(conn, plan.schema, "renames")
        if recorded is not None:
            results.append(names_result(plan, recorded))
        if deep is not None:
            files = {table: load.reject_file for table, load in loads.items() if load.reject_file}
            skipped = await anyio.to_thread.run_sync(rejected_keys, files, plan)
            results += await deep_check.deep_check(
                plan,
                conn,
                settings.source,
                explain=deep.explain,
                sample_ranges=deep.sample_ranges,
                skip_rows=skipped,
            )
        return results
    finally:
        await hang_up(conn)


async def _plan_again(settings: RunSettings, conn: asyncpg.Connection) -> Plan:
    """Plan the source again, as the last run did (its --widen chose the types)."""
    from asyncmig.run import make_plan  # the planner's modules: not for every command

    if not settings.overrides.widen and await history.latest_option(conn, settings.schema, "widen"):
        settings = replace(settings, overrides=replace(settings.overrides, widen=True))
    return await make_plan(settings)


def names_result(plan: Plan, recorded: list[dict[str, str]]) -> verify.CheckResult:
    """The names the plan gives now are those the run recorded: else `check` would look
    for the data under other names (the source or the profile changed since)."""
    from asyncmig.check import verify

    def shown(renames: list[dict[str, str]]) -> list[str]:
        return sorted(
            f"{r['kind']} {r['table'] + '.' if r['table'] else ''}{r['source']} -> {r['target']}"
            for r in renames
        )

    expected, found = shown(recorded), shown([asdict(r) for r in plan.renames])
    differing = sorted(set(expected) ^ set(found))
    return verify.CheckResult(
        "names",
        "",
        "renamed objects",
        f"{len(expected)} as recorded by the run",
        f"{len(found)}, as recorded"
        if not differing
        else f"{len(found)}, differing: {'; '.join(differing[:3])}",
        not differing,
    )


def rejected_keys(files: dict[str, str], plan: Plan) -> dict[str, set[object]]:
    """The SQLite keys of rejected rows, per table, from the reject store's files. A
    table without a primary key is keyed by the whole row (as ``check --deep`` keys
    it): its rejected rows by all their values, as the reject file kept them."""
    keys: dict[str, set[object]] = {}
    for table, name in files.items():
        path = Path(name)
        if not path.exists():
            raise VerificationError(
                f"cannot check {table} deeply: its reject file {path} is gone",
                hint="the checksums leave out rejected rows by their keys",
            )
        whole = _keyed_by_the_whole_row(plan, table)
        with path.open("rb") as stream:
            for line in stream:
                record = orjson.loads(line)
                key = record["key"]
                if whole is not None:
                    key = [record["row"].get(c) for c in whole]
                keys.setdefault(table, set()).add(
                    tuple(from_json_value(v) for v in key) if isinstance(key, list) else key
                )
    return keys


def _keyed_by_the_whole_row(plan: Plan, table: str) -> list[str] | None:
    """The source names of ``table``'s columns when it has no primary key."""
    found = next((t for t in plan.tables if t.name == table), None)
    if found is None or found.primary_key:
        return None
    return [c.source_name for c in found.columns]


async def validate(settings: RunSettings) -> list[preflight.Check]:
    """Pre-flight: every check reported, none raised (a plan failure is a failed check)."""
    from asyncmig.check import preflight
    from asyncmig.run import make_plan

    plan: Plan | None
    try:
        plan = await make_plan(settings)
    except MigrationError:  # reported by the SQLite checks that follow
        plan = None
    intent = preflight.Intent(settings.replace, settings.cascade)
    return await preflight.validate(settings.source, settings.target, plan, intent)


async def status(settings: RunSettings) -> tuple[list[RunRecord], list[cleanup.Leftover]]:
    """The history, and the backup schemas kept for ``settings.schema`` (run, size)."""
    conn = await connect(settings.target)
    try:
        return await history.read_runs(conn), await cleanup.backup_schemas(conn, settings.schema)
    finally:
        await hang_up(conn)


async def rollback_command(
    settings: RunSettings,
    run_id: int,
    *,
    force: bool = False,
    backup: bool = True,
    backup_dir: Path | None = None,
) -> rollback.RollbackResult:
    """Validate, back up (into ``backup_dir``, else the log directory), roll back."""
    directory = (backup_dir or settings.output_dir or Path(".")) if backup else None
    conn = await connect(settings.target)
    try:
        return await rollback.rollback_run(conn, run_id, force=force, backup_dir=directory)
    finally:
        await hang_up(conn)


async def cleanup_command(
    settings: RunSettings, *, run: int | None, keep: int | None, dry_run: bool
) -> cleanup.CleanupReport:
    conn = await connect(settings.target)
    try:
        return await cleanup.cleanup(conn, settings.schema, run=run, keep=keep, dry_run=dry_run)
    finally:
        await hang_up(conn)


async def rollback_check(settings: RunSettings, run_id: int) -> SafetyReport:
    conn = await connect(settings.target)
    try:
        return await rollback.check_run(conn, run_id)
    finally:
        await hang_up(conn)
