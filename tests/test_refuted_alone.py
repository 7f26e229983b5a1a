"""A table whose load refutes its sampled plan is reloaded alone, the others loading on.

The result must be the one a run that starts over gives (the run before this change
did that for every refutation): the same types, rows, rejects and recorded plan. When
the new plan changes more than the refuted table (here: a key column a foreign key
references), the run still starts over.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import uuid
from collections.abc import MutableMapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from asyncmig.load import split, tables
from asyncmig.load.refuted import why_not_local
from asyncmig.plan.builder import build_plan
from asyncmig.plan.model import Plan, TablePlan
from asyncmig.run import run_migration
from asyncmig.runstate import RunReport, RunSettings
from asyncmig.target.connect import Target
from bench.gen_dirty import generate_dirty
from tests.fix_faults import finish, start
from tests.fix_pg import fetch

ROWS = 3000
ODD = 1700  # beyond the sample (the first and last 500 rows)


def settings(path: Path, dsn: str, schema: str, tmp_path: Path) -> RunSettings:
    return RunSettings(
        path,
        Target(dsn, dsn, "test"),
        schema=schema,
        jobs=2,
        workers="process",
        rejects_dir=tmp_path / schema,
    )


@pytest.fixture
def low_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "SPLIT_MIN_ROWS", 1000)


async def loaded(dsn: str, schema: str) -> dict[str, Any]:
    """Per table: its columns' types and every row, in key order."""
    conn = await asyncpg.connect(dsn)
    try:
        found: dict[str, Any] = {}
        for (name,) in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        ):
            types = await conn.fetch(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                schema,
                name,
            )
            rows = await conn.fetch(f'SELECT * FROM "{schema}"."{name}" ORDER BY 1')
            found[name] = ([tuple(t) for t in types], [tuple(r) for r in rows])
        return found
    finally:
        await conn.close()


async def recorded_plan(dsn: str, run_id: int) -> dict[str, Any]:
    """The plan the history keeps for the run (what `check` and `sync` read)."""
    conn = await asyncpg.connect(dsn)
    try:
        text = await conn.fetchval(
            "SELECT options -> 'plan' FROM asyncmig.runs WHERE id = $1", run_id
        )
    finally:
        await conn.close()
    return {t["name"]: t for t in json.loads(text)["tables"]}


def accounts(report: RunReport) -> dict[str, tuple[object, ...]]:
    """Per table: rows, rejects, their reasons, values replaced and the rejected rows."""
    return {
        t.table: (
            t.rows,
            t.rejected,
            t.reject_reasons,
            t.replaced,
            sorted(Path(t.reject_file).read_text().splitlines()) if t.reject_file else [],
        )
        for t in report.tables
    }


def unplaced(warnings: list[str]) -> list[str]:
    """The warnings without where the reject files are (each run has its own) and
    which orphan PostgreSQL met first (it depends on where rows were written); the
    tables finish in another order."""
    return [w.split(", kept in ")[0].split("\nDETAIL")[0] for w in warnings]


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


def loads_started(logs: list[MutableMapping[str, Any]]) -> int:
    return len([e for e in logs if e["event"] == "phase_started" and e["phase"] == "loading"])


async def test_a_dirty_table_is_reloaded_alone_with_the_result_of_starting_over(
    tmp_path: Path, pg_dsn: str, low_threshold: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """customers' broken JSON (and more) refutes its plan; orders, loaded in ranges beside
    it, is loaded once; everything ends as when the run started over."""
    path = tmp_path / "dirty.db"
    generate_dirty(path, 5000, seed=11, faults=7)
    with capture_logs() as logs:
        alone = await run_migration(settings(path, pg_dsn, "alone", tmp_path))
    assert [e["table"] for e in events(logs, "plan_refuted")] == ["customers"]
    [reloaded] = events(logs, "table_reloaded_alone")
    assert reloaded["table"] == "customers" and reloaded["changed"]["profile"] == "text"
    assert [e["table"] for e in events(logs, "table_recreated")] == ["customers"]
    assert not events(logs, "starting_again") and loads_started(logs) == 1
    # orders went on loading: its ranges were started once
    assert [e["table"] for e in events(logs, "table_split")] == ["orders"]

    monkeypatch.setattr(tables, "reloadable", lambda *_: False)
    with capture_logs() as logs:
        over = await run_migration(settings(path, pg_dsn, "over", tmp_path))
    assert [e["table"] for e in events(logs, "starting_again")] == ["customers"]
    assert loads_started(logs) == 2

    assert await loaded(pg_dsn, "alone") == await loaded(pg_dsn, "over")
    assert accounts(alone) == accounts(over)
    assert next(t.rejected for t in alone.tables if t.table == "customers") > 0
    assert alone.plan.tables == over.plan.tables
    assert sorted(unplaced(alone.warnings)) == sorted(unplaced(over.warnings))
    assert alone.plan.table("customers").column("profile").target_type == "text"
    assert alone.run_id is not None
    plan = await recorded_plan(pg_dsn, alone.run_id)
    assert [c["target_type"] for c in plan["customers"]["columns"]] == [
        c.target_type for c in over.plan.table("customers").columns
    ]
    assert all(c.ok for c in alone.checks)


def build_split(path: Path) -> Path:
    """``big``: JSON documents, one broken in the second half (a range of its own once
    split); ``small``: ten rows."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE small(id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE big(id INTEGER PRIMARY KEY, doc TEXT);
    """)
    conn.executemany("INSERT INTO small VALUES (?, ?)", [(i, f"s{i}") for i in range(10)])
    docs = [json.dumps({"n": i}) for i in range(ROWS)]
    docs[ROWS - 800] = '{"n": broken'
    conn.executemany("INSERT INTO big VALUES (?, ?)", list(enumerate(docs, start=1)))
    conn.commit()
    conn.close()
    return path


async def test_a_split_table_refuted_in_one_range_is_reloaded_alone(
    tmp_path: Path, pg_dsn: str, low_threshold: None
) -> None:
    """``big`` is dropped from the split tables' schema (its first range may have
    committed), created again as text and loaded again in ranges; ``small`` once."""
    path = build_split(tmp_path / "s.db")
    with capture_logs() as logs:
        report = await run_migration(settings(path, pg_dsn, "parted", tmp_path))
    [reloaded] = events(logs, "table_reloaded_alone")
    assert reloaded["table"] == "big" and reloaded["changed"] == {"doc": "text"}
    assert [e["table"] for e in events(logs, "table_split")] == ["big", "big"]
    assert loads_started(logs) == 1
    assert {t.table: (t.rows, t.rejected) for t in report.tables} == {
        "big": (ROWS, 0),
        "small": (10, 0),
    }
    found = await loaded(pg_dsn, "parted")
    types, rows = found["big"]
    assert types == [("id", "bigint"), ("doc", "text")]
    assert rows[ROWS - 800] == (ROWS - 799, '{"n": broken') and rows[5] == (6, '{"n": 5}')
    assert len(rows) == ROWS and found["small"][1][3] == (3, "s3")
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert not await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'asyncmig_load_%'"
        )
    finally:
        await conn.close()


def uncounted(plan: Plan) -> list[TablePlan]:
    """The plan's tables without their row counts (a run's plan holds the exact ones,
    a plan made before the load estimates)."""
    return [replace(t, row_count=0, rows_counted=True) for t in plan.tables]


def build_keyed(path: Path) -> Path:
    """``items`` keyed by a UUID text, one key in the middle not a UUID; ``tags``
    references it."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE items(code TEXT PRIMARY KEY, n INTEGER);
        CREATE TABLE tags(id INTEGER PRIMARY KEY, item TEXT REFERENCES items(code), tag TEXT);
    """)
    codes = [str(uuid.UUID(int=i)) for i in range(ROWS)]
    codes[ODD] = "not-a-uuid"
    conn.executemany("INSERT INTO items VALUES (?, ?)", [(c, i) for i, c in enumerate(codes)])
    conn.executemany(
        "INSERT INTO tags VALUES (?, ?, ?)", [(i, codes[i], f"t{i}") for i in range(0, ROWS, 3)]
    )
    conn.commit()
    conn.close()
    return path


async def test_a_refuted_key_a_foreign_key_references_starts_the_run_over(
    tmp_path: Path, pg_dsn: str
) -> None:
    """``items.code`` becomes text; ``tags.item`` (all UUIDs) cannot reference it any
    more, so the new plan changes ``tags`` too: every table is loaded again, on the plan
    a full profile of ``items`` gives."""
    path = build_keyed(tmp_path / "k.db")
    with capture_logs() as logs:
        report = await run_migration(settings(path, pg_dsn, "keyed", tmp_path))
    [fallback] = events(logs, "plan_refuted_everywhere")
    assert fallback == {
        "table": "items",
        "reason": "the plan of tags changed too",
        "event": "plan_refuted_everywhere",
        "log_level": "warning",
    }
    assert not events(logs, "table_reloaded_alone") and loads_started(logs) == 2
    assert [e["table"] for e in events(logs, "plan_refuted")] == ["items"]
    proven = build_plan(path, prove=True, scan=frozenset({"items"}))
    assert uncounted(report.plan) == uncounted(proven) and report.plan.skipped == proven.skipped
    assert report.plan.table("items").column("code").target_type == "text"
    found = await loaded(pg_dsn, "keyed")
    items = dict(found["items"][1])
    assert len(items) == ROWS and items["not-a-uuid"] == ODD and items[str(uuid.UUID(int=4))] == 4
    assert len(found["tags"][1]) == ROWS // 3
    assert found["tags"][1][1] == (3, uuid.UUID(int=3), "t3")


def test_a_foreign_key_column_that_changes_type_is_never_reloaded_alone(tmp_path: Path) -> None:
    """Even were the other table's plan the same, a key column whose type changes keeps
    the two ends of its foreign key apart: the run starts over."""
    path = build_keyed(tmp_path / "k.db")
    sampled = build_plan(path, prove=True)
    scanned = build_plan(path, prove=True, scan=frozenset({"items"}))
    same_tags = replace(
        scanned, tables=(scanned.table("items"), sampled.table("tags")), skipped=sampled.skipped
    )
    assert why_not_local(sampled, same_tags, "items") == (
        "column code of a foreign key changes type"
    )
    assert why_not_local(sampled, scanned, "items") == "the plan of tags changed too"
    assert why_not_local(sampled, sampled, "items") is None


def build_resumable(path: Path) -> Path:
    """``docs``: JSON documents, one broken in the middle; ``other``: enough rows to be
    still loading once ``docs`` has been reloaded and committed."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE docs(id INTEGER PRIMARY KEY, doc TEXT);
        CREATE TABLE other(id INTEGER PRIMARY KEY, a TEXT, b TEXT, c REAL);
    """)
    docs = [json.dumps({"n": i}) for i in range(ROWS)]
    docs[ODD] = '{"n": broken'
    conn.executemany("INSERT INTO docs VALUES (?, ?)", list(enumerate(docs, start=1)))
    conn.executemany(
        "INSERT INTO other VALUES (?, ?, ?, ?)",
        ((i, f"a{i}" * 8, f"b{i}" * 8, i / 7) for i in range(1, OTHER_ROWS + 1)),
    )
    conn.commit()
    conn.close()
    return path


OTHER_ROWS = 400_000
DOCS_COMMITTED = (
    "SELECT count(*) FROM asyncmig.run_tables t JOIN asyncmig.runs r ON r.id = t.run_id "
    "WHERE r.status = 'running' AND t.table_name = 'docs'"
)


async def committed_then_stopped(process: subprocess.Popen[str], dsn: str) -> bool:
    """SIGTERM once ``docs`` (reloaded) has committed; False when the run ended first."""
    conn = await asyncpg.connect(dsn)
    try:
        while process.poll() is None:
            known = await conn.fetchval("SELECT to_regclass('asyncmig.run_tables') IS NOT NULL")
            if known and await conn.fetchval(DOCS_COMMITTED):
                process.send_signal(signal.SIGTERM)
                return True
            await asyncio.sleep(0.005)
        return False
    finally:
        await conn.close()


def test_a_run_interrupted_after_a_reload_is_not_resumed_on_the_sampled_plan(
    tmp_path: Path, pg_dsn: str
) -> None:
    """The stage holds ``docs`` as text, the sampled plan says jsonb: the next run must
    not take that table over under the sample's plan. The history's resume key is the
    re-made plan's, so the next run starts afresh and ends with the proven types."""
    path = build_resumable(tmp_path / "r.db")
    process = start("run", "--sqlite", str(path), "--pg", pg_dsn)
    stopped = asyncio.run(committed_then_stopped(process, pg_dsn))
    _, stderr = process.communicate(timeout=120)
    assert stopped, f"the run ended before docs committed: {stderr}"
    assert process.returncode == 143, stderr
    assert "table_reloaded_alone" in stderr
    code, stderr = finish("run", "--sqlite", str(path), "--pg", pg_dsn)
    assert code == 0, stderr
    [run] = fetch(pg_dsn, "SELECT resumed_from FROM asyncmig.runs ORDER BY id DESC LIMIT 1")
    assert run[0] is None
    assert "not_resumed" in stderr
    types = fetch(
        pg_dsn,
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = 'docs' AND column_name = 'doc'",
    )
    assert [t[0] for t in types] == ["text"]
    [(broken,)] = fetch(pg_dsn, "SELECT doc FROM public.docs WHERE id = $1", ODD + 1)
    assert broken == '{"n": broken'
