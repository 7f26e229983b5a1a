"""The batches a table has in flight are bounded by bytes, and the bound loses no row.

The reader takes a ticket per batch and the writer gives it back once the batch is
copied (or all of it rejected): a missed hand-back would leave the reader waiting
forever, a double one would let the bound slip. These tests load tables through the
tightest bound (two batches in flight) and compare every value.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import asyncpg

from asyncmig.load.pipeline import (
    BATCH_BYTES,
    FLIGHT_BYTES,
    MIN_FLIGHT,
    PipelineSettings,
    batch_rows,
    flight_batches,
)
from tests.compare import actual, same
from tests.compare import expected as oracle
from tests.fix_run import from_profile, migrate

ROWS = 3000
REJECTED = range(101, 131)  # three whole batches of ten: nothing of them reaches a COPY


def build(path: Path) -> Path:
    """A table whose columns need converting (timestamps, JSON, an integer typed as
    bigint by the profile below), with rows 101-130 not integers."""
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, n TEXT, at TIMESTAMP, doc TEXT, note TEXT)"
    )
    conn.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
        [
            (
                i,
                "x" if i in REJECTED else str(i * 7),
                f"2025-{i % 12 + 1:02d}-{i % 28 + 1:02d} {i % 24:02d}:{i % 60:02d}:00",
                json.dumps({"i": i, "tags": ["a", "é"][: i % 3]}),
                "n" * (i % 50) + "ü",
            )
            for i in range(1, ROWS + 1)
        ],
    )
    conn.commit()
    conn.close()
    return path


async def test_two_batches_in_flight_load_every_row_exactly(tmp_path: Path, pg_dsn: str) -> None:
    """300 batches through two tickets, three of them all rejected: every other row
    arrives with its values, the rejected ones are exactly the bad ones."""
    source = build(tmp_path / "events.db")
    report = await migrate(
        source,
        pg_dsn,
        overrides=from_profile({"tables": {"events": {"columns": {"n": {"type": "bigint"}}}}}),
        pipeline=PipelineSettings(batch_size=10, flight_bytes=1),
        rejects_dir=tmp_path / "rejects",
    )
    table = report.plan.table("events")
    assert flight_batches(PipelineSettings(batch_size=10, flight_bytes=1), table) == MIN_FLIGHT
    entry = report.tables[0]
    assert (entry.rows, entry.rejected) == (ROWS - len(REJECTED), len(REJECTED))
    rejects = Path(entry.reject_file or "").read_text().splitlines()
    assert sorted(json.loads(line)["key"] for line in rejects) == list(REJECTED)

    src = sqlite3.connect(source)
    try:
        want = {r[0]: r for r in src.execute("SELECT id, n, at, doc, note FROM events")}
    finally:
        src.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        got = {r[0]: tuple(r) for r in await conn.fetch("SELECT id, n, at, doc, note FROM events")}
    finally:
        await conn.close()
    assert sorted(got) == [i for i in range(1, ROWS + 1) if i not in REJECTED]
    for key, row in got.items():
        for column, a, b in zip(table.columns, want[key], row, strict=True):
            expected, found = oracle(column, a), actual(column, b)
            assert same(expected, found), f"{column.name} of {key}: {expected!r} != {found!r}"


async def test_tickets_follow_the_bytes_of_a_batch(tmp_path: Path, pg_dsn: str) -> None:
    """Narrow rows keep the queues' whole depth, wide rows get fewer batches in flight,
    never fewer than two; a plan without row sizes keeps the queues' bound."""
    source = build(tmp_path / "events.db")
    table = (await migrate(source, pg_dsn)).plan.table("events")
    settings = PipelineSettings(batch_size=5000, queue_size=4)
    stages = 2 * 4 + 3
    assert flight_batches(settings, replace(table, row_bytes=0)) == stages
    assert flight_batches(settings, replace(table, row_bytes=50)) == stages  # 250 kB a batch
    # 655 bytes a row: 1,600 rows a batch (BATCH_BYTES), four batches in FLIGHT_BYTES
    wide = replace(table, row_bytes=655)
    assert batch_rows(settings, wide) == BATCH_BYTES // 655
    assert flight_batches(settings, wide) == FLIGHT_BYTES // (BATCH_BYTES // 655 * 655)
    assert flight_batches(settings, replace(table, row_bytes=3 * BATCH_BYTES)) == MIN_FLIGHT
