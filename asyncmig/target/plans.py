"""The plan a run loaded with, kept in the history for ``sync`` and ``check`` to reuse.

Planning profiles every large table (a whole-table scan). ``sync`` and ``check`` need
the plan the target was made with, not a new one, so a succeeded ``run``, ``data`` or
``sync`` records its plan (``options -> 'plan'``) with what it was planned from
(``options -> 'planned_from'``: the SHA-256 of every ``sqlite_schema`` row, and of the
profile and planning options). A later command given the same profile and options
reuses the recorded plan when the source's declared schema is unchanged, so the plan's
tables and columns still name the source's; otherwise it plans again. Values are not re-profiled: each one is still checked where
it is used (``check --deep`` renders it through the plan's transforms; ``sync``
converts every row it copies and stops on one that no longer fits).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import types
import typing
from pathlib import Path
from typing import Any

import asyncpg

from asyncmig.plan.model import Plan
from asyncmig.plan.overrides import Overrides
from asyncmig.source.sqlite import open_sync
from asyncmig.target.history import RUNS
from asyncmig.target.unchanged import latest_loading_run

SCHEMA_ROWS = "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name"


def schema_fingerprint(path: Path) -> str:
    """SHA-256 of the source's declared schema (no row is read)."""
    conn = open_sync(path)
    try:
        rows = conn.execute(SCHEMA_ROWS).fetchall()
    except sqlite3.DatabaseError:
        return ""
    finally:
        conn.close()
    return hashlib.sha256(json.dumps(rows).encode("utf-8")).hexdigest()


def inputs_fingerprint(overrides: Overrides) -> str:
    """SHA-256 of what planning takes besides the source: the profile and the options
    (not the file it was read from)."""
    data = dataclasses.asdict(overrides)
    data.pop("origin", None)
    # the run's --on-error is in the recorded plan (each column's policy), and `check`
    # does not take it: a check after `run --on-error null` reuses that plan, so it
    # compares with the values the run replaced on purpose
    data.pop("on_error", None)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprints(source: Path, overrides: Overrides) -> str:
    return f"{schema_fingerprint(source)}:{inputs_fingerprint(overrides)}"


async def record(
    conn: asyncpg.Connection, run_id: int, plan: Plan, source: Path, overrides: Overrides
) -> None:
    """Called as a run succeeds: the plan it loaded with, for sync and check."""
    options = {"plan": plan.to_dict(), "planned_from": fingerprints(source, overrides)}
    await conn.execute(
        f"UPDATE {RUNS} SET options = options || $2::jsonb WHERE id = $1",
        run_id,
        json.dumps(options),
    )


async def latest(
    conn: asyncpg.Connection, schema: str, source: Path, overrides: Overrides
) -> Plan | None:
    """The plan of the latest succeeded load into ``schema``, when the source's declared
    schema and the planning options are still those it was made from; else None."""
    row = await latest_loading_run(conn, schema, "options -> 'plan', options ->> 'planned_from'")
    if row is None or row[0] is None or row[1] != fingerprints(source, overrides):
        return None
    plan = plan_from_dict(json.loads(row[0]))
    return dataclasses.replace(plan, source_path=str(source))


def plan_from_dict(data: dict[str, Any]) -> Plan:
    """The inverse of :meth:`Plan.to_dict` (lists back to tuples, nested dataclasses)."""
    built = _build(Plan, data)
    assert isinstance(built, Plan)
    return built


def _build(cls: type, data: dict[str, Any]) -> object:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: _value(hints[k], v) for k, v in data.items() if k in names})


def _value(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _value(inner[0], value) if len(inner) == 1 else value
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], item) for item in value)
        return tuple(_value(a, item) for a, item in zip(args, value, strict=True))
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value)
    return value
