"""A migration run from a test, in one place: ``migrate`` (a library call with the test
target), ``Migrated`` (a finished copy with an open connection, ready to be checked) and
the ``migrated`` fixture (the kitchen sink, migrated).

Tests call the library here rather than the command line: it is fast and its report is
typed, so a test can compare the plan and the tables it loaded.

The kitchen sink is migrated once per session, into a template database; each test
that asks for ``migrated`` gets its own copy (``CREATE DATABASE ... TEMPLATE``, a file
copy inside PostgreSQL) and may change it at will.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

import asyncpg
import pytest

from asyncmig.check.deep import deep_check
from asyncmig.check.verify import CheckResult, run_checks
from asyncmig.cli.settings import Duplicates
from asyncmig.load.pipeline import PipelineSettings
from asyncmig.plan.model import Plan
from asyncmig.plan.overrides import Overrides, parse_overrides
from asyncmig.run import run_migration
from asyncmig.runstate import RunReport, RunSettings
from asyncmig.target.connect import Target
from tests.fix_pg import create_database, drop_database
from tests.sources import build_kitchen_sink


class Changes(TypedDict, total=False):
    """The run settings a test changes; the others keep ``RunSettings``' defaults."""

    replace: bool
    schema: str
    workers: str
    snapshot: bool
    overrides: Overrides
    pipeline: PipelineSettings
    rejects_dir: Path
    duplicates: Duplicates
    max_rejects_total: int
    sync_marks: bool


def from_profile(data: Mapping[str, object]) -> Overrides:
    """The overrides a profile file holding ``data`` would give."""
    return parse_overrides(data, "test")


async def migrate(source: Path, dsn: str, **changes: Unpack[Changes]) -> RunReport:
    """Migrate ``source`` into ``dsn`` as ``asyncmig run`` would."""
    return await run_migration(RunSettings(source, Target(dsn, dsn, "test"), **changes))


@dataclass
class Migrated:
    """A finished copy: its source, its plan and a connection to the target."""

    source: Path
    plan: Plan
    conn: asyncpg.Connection

    async def check(self) -> list[CheckResult]:
        """``asyncmig check``'s results."""
        return await run_checks(self.plan, self.conn, self.source)

    async def deep_check(
        self,
        *,
        explain: bool = False,
        sample_ranges: int | None = None,
        skip_rows: Mapping[str, set[object]] | None = None,
    ) -> list[CheckResult]:
        """``asyncmig check --deep``'s results."""
        return await deep_check(
            self.plan,
            self.conn,
            self.source,
            explain=explain,
            sample_ranges=sample_ranges,
            skip_rows=skip_rows,
        )


async def migrated_copy(source: Path, dsn: str) -> Migrated:
    """``source`` migrated into ``dsn``; the caller closes ``conn``."""
    report = await migrate(source, dsn)
    return Migrated(source, report.plan, await asyncpg.connect(dsn))


@dataclass(frozen=True)
class Template:
    """A database migrated once, to be copied: its name, its source and plan."""

    database: str
    source: Path
    plan: Plan


@pytest.fixture(scope="session")
def kitchen_template(
    pg_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Template]:
    """The kitchen sink migrated by ``run`` into a database no one stays connected to."""
    source = build_kitchen_sink(tmp_path_factory.mktemp("template") / "kitchen sink.db")
    name, dsn = asyncio.run(create_database(pg_server))
    try:
        report = asyncio.run(migrate(source, dsn))
        yield Template(name, source, report.plan)
    finally:
        asyncio.run(drop_database(pg_server, name))


@pytest.fixture
async def migrated(
    tmp_path: Path, pg_server: str, kitchen_template: Template
) -> AsyncIterator[Migrated]:
    """The kitchen sink migrated into a database of its own, with a connection to it
    (a copy of the session's template; the source is copied too)."""
    source = tmp_path / kitchen_template.source.name
    shutil.copyfile(kitchen_template.source, source)
    name, dsn = await create_database(pg_server, template=kitchen_template.database)
    try:
        copy = Migrated(source, kitchen_template.plan, await asyncpg.connect(dsn))
        try:
            yield copy
        finally:
            await copy.conn.close()
    finally:
        await drop_database(pg_server, name)


def failures(results: list[CheckResult]) -> list[CheckResult]:
    """The results that failed."""
    return [r for r in results if not r.ok]
