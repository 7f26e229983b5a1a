"""Each table's exact row count, taken beside the load where the plan holds an estimate.

`run` plans a large table from a sample, with the rowid bounds' estimate as its row
count (:func:`asyncmig.source.scan.estimate_rows`: two b-tree descents, at least the
rows). The exact ``count(*)`` reads every page of the table's smallest index, hundreds
of megabytes at 20M rows, so it is not taken before the first COPY: once the load's
first batch is in, the tables are counted one after the other in a thread, in the
load's order, and a table whose load ends before its turn is counted then.

Every check that compared the load with the plan's count compares it with this one:
the rows read, copied and rejected per table (:func:`asyncmig.load.tables.verify_count`)
and what a resumed run takes over (:mod:`asyncmig.resume`); the final check counts
every table again (:mod:`asyncmig.check.verify`). The run's recorded plan holds the
exact counts (:meth:`SourceCounts.settled`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anyio
import anyio.to_thread
import structlog

from asyncmig.load import progress
from asyncmig.plan.model import Plan, TablePlan
from asyncmig.source.scan import count_named
from asyncmig.source.sqlite import reading

log = structlog.get_logger(__name__)


def count_source(source: Path, name: str) -> int:
    """SQLite's exact count of table ``name``, on a read-only connection of its own."""
    with reading(source) as conn:
        return count_named(conn, name)


def recorded_rows(table: TablePlan, read: int) -> int:
    """The source rows the history records in the table's load transaction: the plan's
    count, or for an estimate the rows the load ``read`` (compared with the exact count
    once committed, as the plan's count is)."""
    return table.row_count if table.rows_counted else read


class SourceCounts:
    """The exact counts of one run's source, each taken at most once, by source name
    (a plan made again after a refutation names the same tables)."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.found: dict[str, int] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def exact(self, table: TablePlan) -> int:
        """The plan's count when it counted; else SQLite's, taken now unless already."""
        if table.rows_counted:
            return table.row_count
        name = table.source_name
        async with self._locks.setdefault(name, anyio.Lock()):
            if name not in self.found:
                rows = await anyio.to_thread.run_sync(
                    count_source, self.source, name, abandon_on_cancel=True
                )
                self.found[name] = rows
                log.info("table_counted", table=table.name, rows=rows, estimate=table.row_count)
                progress.current().table_counted(table.name, rows)
        return self.found[name]

    async def beside(self, plan: Plan, copying: anyio.Event) -> None:
        """Once the first batch is in (``copying``), every estimated table, in turn."""
        await copying.wait()
        for table in plan.tables:
            await self.exact(table)

    def settled(self, plan: Plan) -> Plan:
        """``plan`` with the exact counts taken so far in place of its estimates."""
        tables = tuple(
            replace(t, row_count=self.found[t.source_name], rows_counted=True)
            if not t.rows_counted and t.source_name in self.found
            else t
            for t in plan.tables
        )
        return replace(plan, tables=tables)
