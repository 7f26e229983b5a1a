"""The read-only commands: check, validate, status (run/schema/data are in migrate)."""

from __future__ import annotations

import anyio

from asyncmig import history, verify
from asyncmig import validate as preflight
from asyncmig.connect import connect
from asyncmig.errors import MigrationError
from asyncmig.history import RunRecord
from asyncmig.migrate import RunSettings, check_server, make_plan
from asyncmig.plan import Plan


async def check(settings: RunSettings) -> list[verify.CheckResult]:
    """Compare the PostgreSQL copy with the source: counts, foreign keys, JSON, sequences."""
    plan = await make_plan(settings)
    conn = await connect(settings.target)
    try:
        await check_server(conn)
        accounts = await history.load_accounts(conn, plan.schema)
        allowances = {table: verify.Allowance.from_accounts(rejected, replaced)
                      for table, (rejected, replaced) in accounts.items()}
        return await verify.run_checks(plan, conn, settings.source, allowances)
    finally:
        with anyio.move_on_after(10, shield=True):
            await conn.close()


async def validate(settings: RunSettings) -> list[preflight.Check]:
    """Pre-flight: every check reported, none raised (a plan failure is a failed check)."""
    plan: Plan | None
    try:
        plan = await make_plan(settings)
    except MigrationError:  # reported by the SQLite checks that follow
        plan = None
    return await preflight.validate(settings.source, settings.target, plan)


async def status(settings: RunSettings) -> list[RunRecord]:
    conn = await connect(settings.target)
    try:
        return await history.read_runs(conn)
    finally:
        with anyio.move_on_after(10, shield=True):
            await conn.close()
