"""Build the :class:`Plan` from a SQLite file: introspect, profile, decide.

Each table is profiled with one aggregate query (in parallel, one connection per
thread: SQLite releases the GIL while it scans), then every column's PostgreSQL type
is chosen from its declared type *and* its values (:mod:`asyncmig.plan.types`), and
every expression (defaults, CHECKs, index keys and predicates) is translated
(:mod:`asyncmig.plan.sqlexpr`) or reported in ``Plan.skipped``.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import sqlite3
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from itertools import repeat
from pathlib import Path

import structlog

from asyncmig.ddl.indexes import is_column
from asyncmig.errors import SourceError, TargetError, UsageError
from asyncmig.finish.views import plan_views, renamed_views
from asyncmig.plan import sqlscan
from asyncmig.plan.collations import NOCASE, is_text
from asyncmig.plan.contract import honour_declared
from asyncmig.plan.customise import customise
from asyncmig.plan.homes import give_homes, home_views
from asyncmig.plan.loadorder import load_order
from asyncmig.plan.model import (
    PROCESS_THRESHOLD_ROWS,
    CheckPlan,
    ColumnPlan,
    IndexKeyPlan,
    IndexPlan,
    Plan,
    Skipped,
    TablePlan,
    base_type,
)
from asyncmig.plan.names import pg_name
from asyncmig.plan.overrides import Overrides
from asyncmig.plan.sqlexpr import translate_default, translate_expression
from asyncmig.plan.types import TypeChoice, choose_type, override_type
from asyncmig.quoting import quote_ident, quote_sqlite_ident
from asyncmig.source import scan as profiling
from asyncmig.source.catalog import (
    ColumnProfile,
    SourceCatalog,
    SourceColumn,
    SourceIndexKey,
    SourceTable,
)
from asyncmig.source.introspect import introspect
from asyncmig.source.sqlite import open_sync, reading, source_error
from asyncmig.source.virtual import search_index

MAX_PROFILE_ROUNDS = 4
log = structlog.get_logger(__name__)


def build_plan(
    path: Path,
    *,
    schema: str = "public",
    overrides: Overrides | None = None,
    jobs: int = 2,
    prove: bool = False,
    scan: frozenset[str] = frozenset(),
) -> Plan:
    """Introspect and profile ``path`` and decide everything about the migration.

    With ``prove`` (the `run` command), a large table is planned from its declared types
    and a sample only, and the load proves the plan (:attr:`TablePlan.proof`); the
    tables in ``scan`` (a load refuted their plan) are profiled over every row.
    """
    overrides = overrides or Overrides()
    catalog, notes = introspect_file(path)
    tables = planned_tables(catalog, overrides)
    profiles = profile_tables(path, tables, jobs, overrides, Scans(prove=prove, scan=scan))
    return assemble(catalog, tables, profiles, schema, overrides, notes)


def outline_plan(path: Path, *, schema: str = "public", overrides: Overrides | None = None) -> Plan:
    """The plan's names, from the schema alone: no table is counted, sampled or scanned.

    Every table is planned as if empty, so its table and column names are those of the
    full plan (names never depend on the values) but its types are not. Enough to
    refuse, before any table scan, what would fail cheaply: tables that already exist,
    tables ``data`` cannot load into, a profile naming what the source lacks.
    """
    overrides = overrides or Overrides()
    catalog, notes = introspect_file(path)
    tables = planned_tables(catalog, overrides)
    empty = {
        t.name: TableProfile({c.name: ColumnProfile() for c in t.columns}, rows=0, sampled=False)
        for t in tables
    }
    return assemble(catalog, tables, empty, schema, overrides, notes)


def introspect_file(path: Path) -> tuple[SourceCatalog, list[str]]:
    """The source's catalog (reads only its schema, never its rows)."""
    with reading(path) as conn:
        return introspect(conn, path)


def planned_tables(catalog: SourceCatalog, overrides: Overrides) -> list[SourceTable]:
    """The tables to migrate; refuses a profile naming what the source lacks and tables
    that cannot be migrated, before anything is read or made."""
    _check_overrides(catalog, overrides)
    tables = [t for t in catalog.tables if t.name not in overrides.excluded]
    _refuse_unreadable(tables, overrides)
    _refuse_too_wide(tables)
    return tables


def _refuse_unreadable(tables: list[SourceTable], overrides: Overrides) -> None:
    """A virtual table SQLite cannot read would lose its rows: stop before anything is made."""
    for table in tables:
        if table.virtual is not None and table.virtual.unreadable:
            raise SourceError(
                f"cannot read virtual table {table.name} (module {table.virtual.module}): "
                f"{table.virtual.unreadable}",
                hint=f"load the module's extension into SQLite, or exclude the table in the "
                f"profile ([tables.{json.dumps(table.name)}] exclude = true)",
            )


MAX_COLUMNS = 1600  # PostgreSQL's limit per table (MaxHeapAttributeNumber)


def _refuse_too_wide(tables: list[SourceTable]) -> None:
    """A table PostgreSQL cannot hold is refused before anything is created."""
    for table in tables:
        if len(table.columns) > MAX_COLUMNS:
            raise TargetError(
                f"cannot migrate table {table.name}: it has {len(table.columns)} columns and "
                f"PostgreSQL allows at most {MAX_COLUMNS} per table",
                hint=f"exclude it in the profile ([tables.{json.dumps(table.name)}] "
                "exclude = true) and split it by hand",
            )


def _check_overrides(catalog: SourceCatalog, overrides: Overrides) -> None:
    """Every table and column a config names must exist: a typo must not be ignored."""
    names = {t.name: {c.name for c in t.columns} for t in catalog.tables}
    where = f"config {overrides.origin}" if overrides.origin else "config"
    for table, settings in overrides.tables.items():
        if table not in names:
            raise UsageError(f"{where} names table {table!r}, which the source does not have")
        mentioned = set(settings.columns) | set(settings.triggers)
        mentioned |= {c.column for i in settings.indexes for c in i.columns}
        mentioned |= {c for s in settings.statistics for c in s.columns}
        missing = sorted(mentioned - names[table])
        if missing:
            raise UsageError(f"{where} names {table}.{missing[0]}, which the source does not have")


@dataclass(frozen=True)
class TableProfile:
    columns: Mapping[str, ColumnProfile]
    rows: int
    sampled: bool  # the column profiles count a sample plus every row that broke it
    # columns whose declared type is kept: values that do not fit it, counted over every
    # row, and a few of them shown (asyncmig.plan.contract)
    misfits: Mapping[str, profiling.Misfits] = field(default_factory=dict)
    # SQLite conditions the load checks on every row (sampled, proved): TablePlan.proof_terms
    proof_terms: tuple[tuple[int, str], ...] = ()
    counted: bool = True  # False: ``rows`` is the rowid bounds' estimate (TablePlan.rows_counted)


@dataclass(frozen=True)
class Scans:
    """Which tables are profiled over every row before the load.

    ``prove``: none of the large ones, except those in ``scan``; the load proves the
    sample's choices instead (see :func:`proof_terms`).
    """

    prove: bool = False
    scan: frozenset[str] = frozenset()

    def whole(self, table: str) -> bool:
        return not self.prove or table in self.scan


def profile_tables(
    path: Path,
    tables: list[SourceTable],
    jobs: int,
    overrides: Overrides,
    scans: Scans | None = None,
) -> dict[str, TableProfile]:
    """Profile every table, largest first: ``jobs`` tables at a time in processes when
    the rows scanned are many, else one after the other.

    Not in threads: the profile's conditions call Python functions from SQLite for
    every value (addresses, JSON keys), so two threads fight over the GIL. Measured on
    a 2-core machine, sampled 2Truths (1M rows): one thread 0.38 s and 0.38 CPU s, two
    threads 0.56 s and 0.84 CPU s; every row of a 150,000-row copy: 0.58 s against
    0.62 s and 0.99 CPU s. During a run that CPU is taken from the worker process
    starting beside the plan.

    With ``scans.prove``, the order and the choice of processes come from an estimate
    that reads no table (the rowid bounds); a table planned from a sample keeps it as
    its row count (counted exactly beside the load: count(*) walks every page of an
    index, hundreds of megabytes at 20M rows), the others are counted by their own
    task. Logs ``profile_started`` before the first row is counted and
    ``table_profiled`` per table: the log shows what was read before a run stopped.
    """
    log.info("profile_started", tables=len(tables), jobs=jobs)
    scans = scans or Scans()
    # scanning every row anyway: count first, to choose processes by the real size
    rows = profiling.estimate_rows if scans.prove else profiling.count_rows
    conn = open_sync(path)
    try:
        estimated = [replace(t, row_count=rows(conn, t)) for t in tables]
    except sqlite3.DatabaseError as exc:
        raise source_error(path, exc) from exc
    finally:
        conn.close()
    ordered = sorted(estimated, key=lambda t: -t.row_count)
    scanned = sum(t.row_count for t in estimated if scans.whole(t.name))
    if jobs > 1 and scanned >= PROCESS_THRESHOLD_ROWS:
        context = multiprocessing.get_context("spawn")  # never fork a threaded process
        try:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as processes:
                return logged(
                    processes.map(
                        profile_one, repeat(path), ordered, repeat(overrides), repeat(scans)
                    )
                )
        except BrokenProcessPool as exc:  # e.g. a caller's script without a __main__ guard
            log.warning(
                "profile_processes_failed",
                error=str(exc),
                fallback="profiling one table after the other instead",
            )
    return logged(map(profile_one, repeat(path), ordered, repeat(overrides), repeat(scans)))


def logged(profiled: Iterable[tuple[str, TableProfile]]) -> dict[str, TableProfile]:
    """The profiles by table, each logged as it arrives."""
    profiles = {}
    for name, profile in profiled:
        log.info(
            "table_profiled",
            table=name,
            rows=profile.rows,
            sampled=profile.sampled,
            proved_by_load=bool(profile.proof_terms),
        )
        profiles[name] = profile
    return profiles


def profile_one(
    path: Path, table: SourceTable, overrides: Overrides, scans: Scans | None = None
) -> tuple[str, TableProfile]:
    """One table's count and profile on its own read-only connection (runs in a thread
    or process).

    A table planned from a sample is not counted here (its estimate, an upper bound,
    says it has more rows than the sample); a table profiled whole is, and so is one
    whose estimate is that small: it is profiled whole too, in fewer rows than a count
    of a large table reads.
    """
    conn = open_sync(path)
    try:
        if scans is not None and not scans.whole(table.name) and sampled(table):
            return table.name, sample_table(conn, table, overrides)
        if scans is not None and scans.prove:  # ordered by an estimate: count it here
            table = replace(table, row_count=profiling.count_rows(conn, table))
        return table.name, profile_table(conn, table, overrides)
    except sqlite3.DatabaseError as exc:
        raise source_error(path, exc) from exc
    finally:
        conn.close()


def profile_table(
    conn: sqlite3.Connection, table: SourceTable, overrides: Overrides
) -> TableProfile:
    """Choose types from a sample, then check every row against them in one scan.

    ``table.row_count`` must hold the table's count (introspection leaves it 0).

    Rows that break a choice are profiled in full and merged in, and the choice is
    made again; this repeats until one scan finds no such row. The common case costs
    one sample and one scan evaluating cheap conditions.
    """
    rows = table.row_count  # counted by profile_tables, in the same read-only file
    profiles = profiling.profile_sample(conn, table, whole=rows <= 2 * profiling.SAMPLE_ROWS)
    if rows <= 2 * profiling.SAMPLE_ROWS:
        return TableProfile(
            profiles, rows, sampled=False, misfits=_misfits(conn, table, profiles, overrides)
        )
    for _ in range(MAX_PROFILE_ROUNDS):
        conditions = {}
        for column in table.columns:
            if overrides.column(table.name, column.name).type:  # the user's type: not profiled
                continue
            choice = _choose(table, column, profiles[column.name], overrides)
            # a declared type kept for misfits does not change with more of them
            conditions[column.name] = (
                "1"
                if choice.contract
                else profiling.acceptance(
                    choice.target_type, choice.transform, quote_sqlite_ident(column.name)
                )
            )
        broken, extra = profiling.profile_violations(conn, table, conditions)
        if not broken:
            break
        profiles = {name: profiling.merge(p, extra[name]) for name, p in profiles.items()}
    nulls = profiling.count_nulls(conn, table, table.primary_key)
    profiles = {
        name: profiling.merge(p, ColumnProfile(classes={"null": nulls[name]}))
        if nulls.get(name)
        else p
        for name, p in profiles.items()
    }
    return TableProfile(
        profiles, rows, sampled=True, misfits=_misfits(conn, table, profiles, overrides)
    )


def sampled(table: SourceTable) -> bool:
    """Is ``table`` (its row count an estimate, at least the rows) planned from a sample?
    A small table is profiled whole, as :func:`profile_table` does: that costs no more
    than the sample."""
    return table.row_count > 2 * profiling.SAMPLE_ROWS


def sample_table(
    conn: sqlite3.Connection, table: SourceTable, overrides: Overrides
) -> TableProfile:
    """Choose types from a sample only; the load proves them (no whole-table scan).

    ``table.row_count`` is the estimate: not counted here (see :func:`profile_one`).
    """
    profiles = profiling.profile_sample(conn, table)
    return TableProfile(
        profiles,
        table.row_count,
        sampled=True,
        proof_terms=proof_terms(table, profiles, overrides),
        counted=profiling.counted_to_estimate(table),
    )


def proof_terms(
    table: SourceTable, profiles: Mapping[str, ColumnProfile], overrides: Overrides
) -> tuple[tuple[int, str], ...]:
    """The conditions, per row, that the sample's plan holds for it.

    Each column chosen from its values must accept the row's value (the conditions of
    :func:`asyncmig.source.scan.acceptance`, NULL counting as accepted as in the profile's
    scan), and a primary key must hold no NULL. A kept declared type (a contract) or a
    user's type accepts anything here: the load's transforms refuse misfits, and the
    column's policy settles them. The reader calls ``asyncmig_refuted(n)`` (n: the
    column's position) for
    the first row that fails, which stops the load (:mod:`asyncmig.load.pipeline`).
    """
    terms = []
    for number, column in enumerate(table.columns):
        name = quote_sqlite_ident(column.name)
        if column.name in table.primary_key:
            terms.append((number, f"{name} IS NOT NULL"))
        if overrides.column(table.name, column.name).type:
            continue
        choice = _choose(table, column, profiles[column.name], overrides)
        if not choice.contract:
            terms.append(
                (
                    number,
                    "coalesce(("
                    + profiling.acceptance(choice.target_type, choice.transform, name)
                    + "), 1)",
                )
            )
    return tuple((number, sql) for number, sql in terms if sql != "coalesce((1), 1)")


def _misfits(
    conn: sqlite3.Connection,
    table: SourceTable,
    profiles: Mapping[str, ColumnProfile],
    overrides: Overrides,
) -> dict[str, profiling.Misfits]:
    """Exact counts and examples of the values that do not fit a kept declared type."""
    fits = {}
    for column in table.columns:
        if overrides.column(table.name, column.name).type:
            continue
        choice = _choose(table, column, profiles[column.name], overrides)
        if choice.contract:
            fits[column.name] = profiling.exact_acceptance(
                choice.target_type, choice.transform, quote_sqlite_ident(column.name)
            )
    return profiling.count_misfits(conn, table, fits)


def _choose(
    table: SourceTable, column: SourceColumn, prof: ColumnProfile, overrides: Overrides
) -> TypeChoice:
    settings = overrides.column(table.name, column.name)
    if settings.type:
        return override_type(column, prof, settings.type, epoch_unit=settings.epoch)
    natural = choose_type(
        column,
        prof,
        rowid_alias=column.name == table.rowid_alias,
        json_checked=_json_checked(table, column.name),
    )
    if overrides.widens(table.name, column.name) or column.name == table.rowid_alias:
        return natural
    return honour_declared(column, prof, natural)


def assemble(
    catalog: SourceCatalog,
    tables: list[SourceTable],
    profiles: Mapping[str, TableProfile],
    schema: str,
    overrides: Overrides,
    notes: list[str],
) -> Plan:
    skipped: list[Skipped] = []
    warnings = list(notes)
    planned = [plan_table(t, profiles[t.name], overrides, skipped, warnings) for t in tables]
    planned = _plan_foreign_keys(tables, planned, skipped)
    ordered, cycles = load_order(planned)
    skipped.extend(
        Skipped(
            "trigger",
            t.table,
            t.name,
            t.sql,
            "triggers are reported, not migrated: rewrite them in PL/pgSQL",
        )
        for t in catalog.triggers
    )
    plan = Plan(
        source_path=catalog.path,
        schema=schema,
        tables=tuple(ordered),
        skipped=tuple(skipped),
        warnings=tuple(warnings),
        cyclic_foreign_keys=tuple(cycles),
    )
    # views last: they are translated against the final table and column names
    named = give_homes(customise(plan, overrides), overrides)
    return renamed_views(home_views(plan_views(named, catalog.views)), catalog.views)


def plan_table(
    table: SourceTable,
    table_profile: TableProfile,
    overrides: Overrides,
    skipped: list[Skipped],
    warnings: list[str],
) -> TablePlan:
    profiles = table_profile.columns
    columns = []
    for column in table.columns:
        prof = profiles[column.name]
        choice = _choose(table, column, prof, overrides)
        if table_profile.sampled:
            checked = (
                "every row checked by the load"
                if table_profile.proof_terms
                else f"all {table_profile.rows} rows checked"
            )
            choice = replace(
                choice,
                evidence=f"{choice.evidence} (counts from "
                f"{2 * profiling.SAMPLE_ROWS} sampled rows and those unlike them; "
                f"{checked})",
            )
        planned = _column_plan(table, column.name, choice, prof, skipped)
        policy = overrides.policy(table.name, column.name)
        if choice.contract:
            planned = _with_misfits(planned, table_profile.misfits.get(column.name), policy)
        columns.append(replace(planned, on_error=policy))
    row_count = table_profile.rows
    primary_key = table.primary_key
    pk_nulls = [c for c in primary_key if profiles[c].count("null")]
    indexes: list[IndexPlan] = []
    if pk_nulls:
        warnings.append(
            f"{table.name}: primary key column(s) {pk_nulls} hold NULLs (SQLite allows it);"
            " created as a unique index instead of a PRIMARY KEY"
        )
        indexes.append(
            IndexPlan(
                pg_name(table.name, *primary_key, "key"),
                tuple(IndexKeyPlan(quote_ident(c)) for c in primary_key),
                unique=True,
            )
        )
        primary_key = ()
    else:
        columns = [replace(c, nullable=False) if c.name in primary_key else c for c in columns]
    col_types = {c.name: c.target_type for c in columns}
    indexes += _plan_indexes(table, col_types, skipped, {c.name: c.collation for c in columns})
    indexes += search_index(table, columns, warnings)
    result = TablePlan(
        name=table.name,
        source_name=table.name,
        columns=tuple(columns),
        primary_key=primary_key,
        primary_key_name=(source_constraint_names(table).primary or pg_name(table.name, "pkey"))
        if primary_key
        else None,
        indexes=tuple(indexes),
        checks=tuple(_plan_checks(table, col_types, skipped)),
        row_count=row_count,
        rows_counted=table_profile.counted,
        read_order=primary_key if table.without_rowid else ("rowid",),
        without_rowid=table.without_rowid,
        next_identity=table.sequence + 1 if table.sequence is not None else None,
        row_bytes=_row_bytes(profiles),
        proof_terms=table_profile.proof_terms,
    )
    for col in result.columns:
        warnings.extend(f"{table.name}.{col.name}: {w}" for w in col.warnings)
    return result


def _with_misfits(column: ColumnPlan, misfits: profiling.Misfits | None, policy: str) -> ColumnPlan:
    """A kept declared type: how many values do not fit, a few of them, and their fate."""
    count, examples = misfits or (0, ())
    if not count:
        return column
    fate = {
        "reject": "their rows go to the reject store",
        "fail": "the run stops at the first one (exit 5)",
    }.get(policy, f"policy {policy} replaces them")
    warning = (
        f"declared {column.source_type} but {count} value(s) do not fit "
        f"{column.target_type} (e.g. {', '.join(examples)}): the declared type is kept "
        f"and {fate}; --widen (or widen = true for the column) keeps every value in a "
        "wider type instead"
    )
    return replace(
        column, misfits=count, misfit_examples=examples, warnings=(*column.warnings, warning)
    )


def _row_bytes(profiles: Mapping[str, ColumnProfile]) -> int:
    """Average bytes per row over the profiled rows (the sample, or the whole table)."""
    rows = max((sum(p.classes.values()) for p in profiles.values()), default=0)
    return sum(p.total_bytes for p in profiles.values()) // rows if rows else 0


def _json_checked(table: SourceTable, column: str) -> bool:
    """A CHECK (json_valid(col)) says the column holds JSON, scalars included (Django's JSONField)."""
    pattern = re.compile(
        r"json_valid\s*\(\s*[\"`\[]?" + re.escape(column) + r"[\"`\]]?\s*\)", re.IGNORECASE
    )
    return any(pattern.search(check.expression) for check in table.checks)


def _column_plan(
    table: SourceTable, name: str, choice: TypeChoice, prof: ColumnProfile, skipped: list[Skipped]
) -> ColumnPlan:
    column = next(c for c in table.columns if c.name == name)
    identity = (
        name == table.rowid_alias
        and choice.target_type == "bigint"
        and prof.count("text") + prof.count("real") + prof.count("blob") == 0
    )
    default = None
    warnings = list(choice.warnings)
    if column.default_sql is not None and not identity:
        translated = translate_default(column.default_sql, choice.target_type)
        if translated.sql is not None and translated.sql.upper() != "NULL":
            default = translated.sql
        elif translated.reason:
            warnings.append(f"default {column.default_sql} dropped: {translated.reason}")
            skipped.append(
                Skipped("default", table.name, name, column.default_sql, translated.reason)
            )
    collation = _column_collation(column, choice.target_type, warnings)
    if column.hidden in (2, 3):
        warnings.append("generated column: its values are copied, the expression is not")
    return ColumnPlan(
        name=name,
        source_name=name,
        source_type=column.declared_type,
        target_type=choice.target_type,
        transform=choice.transform,
        nullable=not column.notnull,
        identity=identity,
        default=default,
        source_default=column.default_sql,
        evidence=choice.evidence,
        warnings=tuple(warnings),
        collation=collation,
    )


def _column_collation(column: SourceColumn, target_type: str, warnings: list[str]) -> str | None:
    """NOCASE becomes the case-insensitive collation; RTRIM cannot be a column's collation."""
    declared = (column.collation or "BINARY").upper()
    if declared == "NOCASE" and is_text(target_type):
        return NOCASE
    if declared == "RTRIM" and is_text(target_type):
        warnings.append(
            "COLLATE RTRIM: PostgreSQL compares trailing spaces; only the "
            "column's indexes ignore them (rtrim() keys)"
        )
    elif declared not in ("BINARY", "NOCASE"):
        warnings.append(
            f"COLLATE {column.collation} is not migrated: PostgreSQL compares "
            "the column with its default collation"
        )
    return None


def _plan_indexes(
    table: SourceTable,
    col_types: Mapping[str, str],
    skipped: list[Skipped],
    collated: Mapping[str, str | None],
) -> list[IndexPlan]:
    planned = []
    named = source_constraint_names(table).unique
    for index in table.indexes:
        if index.origin == "pk":
            continue
        keys = []
        reason = None
        for key in index.keys:
            if key.column == "rowid" or (key.column is None and key.expression is None):
                reason = "index on the rowid has no PostgreSQL equivalent"
                break
            if key.expression is not None:
                translated = translate_expression(
                    key.expression, column_types=col_types, index_key=True
                )
                if translated.sql is None:
                    reason = translated.reason
                    break
                expression = translated.sql
            else:
                assert key.column is not None
                expression = quote_ident(key.column)
            keys.append(_collated_key(key, expression, col_types, collated))
        where = None
        if reason is None and index.where:
            translated = translate_expression(index.where, column_types=col_types)
            if translated.sql is None:
                reason = translated.reason or "predicate not portable"
            elif translated.sql.upper() != "TRUE":  # e.g. json_valid() on a jsonb column
                where = translated.sql
        if reason is not None:
            skipped.append(Skipped("index", table.name, index.name, index.sql or "", reason))
            continue
        is_constraint = (
            index.origin == "u"
            and all(k.column for k in index.keys)
            and all(is_column(k.expression) and not k.collation for k in keys)
        )
        name = index.name
        if index.origin != "c":
            columns = tuple(k.column or "expr" for k in index.keys)
            kept = named.get(tuple(c.lower() for c in columns)) if index.origin == "u" else None
            name = kept or pg_name(table.name, *columns, "key")
        planned.append(IndexPlan(name, tuple(keys), index.unique, where, is_constraint, index.sql))
    return planned


def _collated_key(
    key: SourceIndexKey,
    expression: str,
    col_types: Mapping[str, str],
    collated: Mapping[str, str | None],
) -> IndexKeyPlan:
    """A key compared as SQLite compares it: by its column's collation, ours, C or a function."""
    wanted = (key.collation or "BINARY").upper()
    own = collated.get(key.column) if key.column else None
    text = key.column is not None and is_text(col_types.get(key.column, ""))
    if wanted == "NOCASE" and own != NOCASE:
        if text:  # COLLATE NOCASE in the index only
            return IndexKeyPlan(expression, key.descending, collation=NOCASE)
        return IndexKeyPlan(f"lower({expression})", key.descending)
    if wanted == "RTRIM" and text:
        return IndexKeyPlan(f"rtrim({expression})", key.descending)
    if wanted == "BINARY" and own == NOCASE:  # COLLATE BINARY on a NOCASE column
        return IndexKeyPlan(expression, key.descending, collation="C")
    return IndexKeyPlan(expression, key.descending)


def _plan_checks(
    table: SourceTable, col_types: Mapping[str, str], skipped: list[Skipped]
) -> list[CheckPlan]:
    planned = []
    used: set[str] = set()
    for number, check in enumerate(table.checks, start=1):
        translated = translate_expression(check.expression, column_types=col_types)
        if translated.sql is None:
            skipped.append(
                Skipped(
                    "check",
                    table.name,
                    check.name,
                    check.expression,
                    translated.reason or "not portable",
                )
            )
            continue
        name = check.name or pg_name(table.name, f"check{number}")
        if name in used:  # SQLite allows two CHECKs of one name; PostgreSQL does not
            name = pg_name(name, str(number))
        used.add(name)
        planned.append(CheckPlan(name, translated.sql, check.expression))
    return planned


def _plan_foreign_keys(
    sources: list[SourceTable], planned: list[TablePlan], skipped: list[Skipped]
) -> list[TablePlan]:
    by_name = {t.name: t for t in planned}
    result = []
    for source, table in zip(sources, planned, strict=True):
        fks = []
        named = source_constraint_names(source).foreign
        for fk in source.foreign_keys:
            reason = _foreign_key_problem(fk.columns, fk.ref_table, fk.ref_columns, table, by_name)
            sql = f"FOREIGN KEY ({', '.join(fk.columns)}) REFERENCES {fk.ref_table}"
            if reason:
                skipped.append(Skipped("foreign key", table.name, None, sql, reason))
                continue
            name = named.get(tuple(c.lower() for c in fk.columns))
            fks.append(replace(fk, name=name or pg_name(table.name, *fk.columns, "fkey")))
        result.append(replace(table, foreign_keys=tuple(fks)))
    return result


def source_constraint_names(table: SourceTable) -> sqlscan.ConstraintNames:
    """The names the CREATE TABLE gives its primary key, foreign keys and UNIQUE
    constraints: kept, as its CHECKs' are (an application's later migrations drop them
    by name); a statement the scan cannot follow keeps PostgreSQL's names (``t_pkey``,
    ``t_col_fkey``, ``t_col_key``)."""
    try:
        return sqlscan.constraint_names(table.sql or "")
    except (ValueError, IndexError):
        return sqlscan.ConstraintNames()


def _foreign_key_problem(
    columns: tuple[str, ...],
    ref_table: str,
    ref_columns: tuple[str, ...],
    table: TablePlan,
    tables: Mapping[str, TablePlan],
) -> str | None:
    parent = tables.get(ref_table)
    if parent is None:
        return f"referenced table {ref_table!r} is not migrated or does not exist"
    if "rowid" in ref_columns:
        return "references the parent's rowid, which has no PostgreSQL equivalent"
    parent_columns = {c.name for c in parent.columns}
    if not set(ref_columns) <= parent_columns:
        return f"referenced column(s) {list(ref_columns)} do not exist in {ref_table}"
    unique_sets = [set(parent.primary_key)] + [
        {k.expression.strip('"') for k in i.keys}
        for i in parent.indexes
        if i.unique and not i.where
    ]
    if set(ref_columns) not in unique_sets:
        return f"referenced column(s) {list(ref_columns)} of {ref_table} are not unique"
    for child_col, parent_col in zip(columns, ref_columns, strict=True):
        child_type = table.column(child_col).target_type
        parent_type = parent.column(parent_col).target_type
        if _type_family(child_type) != _type_family(parent_type):
            return (
                f"{table.name}.{child_col} ({child_type}) cannot reference "
                f"{ref_table}.{parent_col} ({parent_type})"
            )
    return None


def _type_family(pg_type: str) -> str:
    base = base_type(pg_type)
    if base in {"bigint", "integer", "smallint", "numeric", "double precision", "real"}:
        return "number"
    if base in {"text", "varchar", "character varying", "char"}:
        return "text"
    return base
