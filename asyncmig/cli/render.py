"""How a plan and a run's result are shown to a person (or a script)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from asyncmig.check.preflight import human_size
from asyncmig.check.verify import results_json
from asyncmig.cli.textwidth import ljust, visible, width
from asyncmig.plan.model import Plan
from asyncmig.runstate import RunReport
from asyncmig.target.cleanup import CleanupReport, Leftover
from asyncmig.target.history import RunRecord
from asyncmig.target.rollback import RollbackResult
from asyncmig.target.safety import SafetyReport


def plan_json(plan: Plan) -> str:
    return orjson.dumps(plan.to_dict(), option=orjson.OPT_INDENT_2).decode()


def plan_text(plan: Plan) -> str:
    lines = [f"plan for {plan.source_path} -> schema {plan.schema}", ""]
    for number, table in enumerate(plan.tables, start=1):
        lines.append(f"{number}. {table.name}  ({table.row_count} rows)")
        columns = max((width(c.name) for c in table.columns), default=0)
        pad = " " * columns
        for col in table.columns:
            flags = []
            if col.name in table.primary_key:
                flags.append("pk")
            if col.identity:
                flags.append("identity")
            if not col.nullable:
                flags.append("not null")
            if col.default:
                flags.append(f"default {col.default}")
            if col.collation:
                flags.append(f"collate {col.collation}")
            source = col.source_type or "(no type)"
            lines.append(
                f"   {ljust(col.name, columns)}  {source} -> {col.target_type}"
                f"{'  [' + ', '.join(flags) + ']' if flags else ''}"
            )
            lines.append(f"   {pad}    {col.evidence}")
            lines.extend(f"   {pad}    warning: {visible(w)}" for w in col.warnings)
        for index in table.indexes:
            keys = ", ".join(k.expression + (" DESC" if k.descending else "") for k in index.keys)
            kind = "unique index" if index.unique else "index"
            where = f" WHERE {index.where}" if index.where else ""
            lines.append(f"   {kind} {index.name} ({keys}){where}")
        lines.extend(
            f"   foreign key ({', '.join(fk.columns)}) -> {fk.ref_table}"
            f"({', '.join(fk.ref_columns)})"
            for fk in table.foreign_keys
        )
        lines.extend(f"   check {c.name}: {c.expression}" for c in table.checks)
        lines.append("")
    if plan.renames:
        lines.append("names (SQLite -> PostgreSQL):")
        lines.extend(
            f"  {r.kind} {r.table + '.' if r.table else ''}{r.source} -> {r.target} ({r.reason})"
            for r in plan.renames
        )
    if plan.views:
        lines.append("views (in creation order):")
        lines.extend(
            f"  {v.name}: translated"
            if v.translated
            else f"  {v.name}: tried as written at the end of the run ({v.note})"
            if v.as_written
            else f"  {v.name}: not created ({v.note})"
            for v in plan.views
        )
    if plan.warnings:
        lines.append("warnings:")
        lines.extend(f"  {w}" for w in plan.warnings)
    if plan.skipped:
        lines.append("not migrated:")
        lines.extend(
            f"  {s.kind} {s.name or ''}{' on ' + s.table if s.table else ''}: {s.reason}"
            for s in plan.skipped
        )
    return "\n".join(lines).rstrip() + "\n"


def report_text(report: RunReport, target: str, *, action: str = "migrated into") -> str:
    lines = []
    if report.tables:
        columns = max(5, *(width(t.table) for t in report.tables))
        lines.append(
            f"{ljust('table', columns)}  {'rows':>12}  {'rejected':>8}  {'replaced':>8}  "
            f"{'load s':>8}  {'index s':>8}  {'rows/s':>10}"
        )
        order = {t.name: i for i, t in enumerate(report.plan.tables)}
        for t in sorted(report.tables, key=lambda t: order.get(t.table, 0)):
            rate = int(t.rows / t.load_seconds) if t.load_seconds else 0
            lines.append(
                f"{ljust(t.table, columns)}  {t.rows:>12}  {t.rejected:>8}  "
                f"{sum(t.replaced.values()):>8}  "
                + (f"{'kept':>8}" if t.taken_over else f"{t.load_seconds:>8.2f}")
                + f"  {t.index_seconds:>8.2f}  {rate:>10}"
            )
        lines.append(
            f"{ljust('total', columns)}  {report.rows:>12}  {report.rejected:>8}  "
            f"{report.replaced:>8}  "
            f"{report.seconds:>8.2f}s end to end, "
            f"{int(report.rows / report.seconds) if report.seconds else 0} rows/s"
        )
    else:
        lines.append(
            f"created {len(report.plan.tables)} table(s) in {report.seconds:.2f}s; "
            "load them with `asyncmig data`"
        )
    if report.finished is not None:
        lines.append(
            f"run {report.finished} had completed its cut-over; finished it: "
            "state and rollback recorded"
        )
    elif report.resumed_from is not None:
        kept = sorted(t.table for t in report.tables if t.taken_over)
        lines.append(
            f"resumed run {report.resumed_from}: {len(kept)} table(s) kept as it loaded them"
            + (f" ({', '.join(kept)})" if kept else "")
            + (
                f"; went on after its recorded chunks: {', '.join(report.continued)}"
                if report.continued
                else ""
            )
        )
    lines.extend(f"warning: {visible(w)}" for w in report.warnings)
    skipped = report.plan.skipped
    if skipped:
        lines.append(f"not migrated: {len(skipped)} item(s); `asyncmig plan` lists them")
    if report.checks:
        lines.append(
            f"checked: {len(report.checks)} checks passed (row counts, foreign keys, "
            "JSON, sequences)"
        )
    lines.append(
        visible(
            f"{action} {target} (PostgreSQL {report.server_version}), "
            f"schema {report.plan.schema}; run {report.run_id} in the history"
        )
    )
    if report.rollback_script:
        lines.append(f"rollback script: {report.rollback_script}")
    return "\n".join(lines) + "\n"


def report_data(report: RunReport, target: str) -> dict[str, Any]:
    """A run's result for ``--output json`` (see asyncmig/output.py): tables in plan
    order, checks with their expected and found values."""
    order = {t.name: i for i, t in enumerate(report.plan.tables)}
    tables = sorted(report.tables, key=lambda t: order.get(t.table, len(order)))
    return {
        "target": target,
        "schema": report.plan.schema,
        "server_version": report.server_version,
        "seconds": report.seconds,
        "rows": report.rows,
        "replaced": report.replaced,
        "rejected": report.rejected,
        "tables": [t.__dict__ for t in tables],
        "warnings": report.warnings,
        "skipped": [s.__dict__ for s in report.plan.skipped],
        "checks": results_json(report.checks),
        "rollback_script": str(report.rollback_script) if report.rollback_script else None,
        "resumed_from": report.resumed_from,
        "continued": report.continued,
        "finished": report.finished,
    }


def status_text(runs: list[RunRecord]) -> str:
    if not runs:
        return "no migrations recorded in this database (schema asyncmig)\n"
    lines = []
    for run in runs:
        seconds = f"{run.seconds:.1f}s" if run.seconds is not None else "-"
        started = run.started_at.strftime("%Y-%m-%d %H:%M:%S %Z")
        rows = run.rows_loaded if run.rows_loaded is not None else "-"
        rejected = sum(t.get("rejected") or 0 for t in run.tables)
        lines.append(
            f"run {run.id}  {run.command}  {run.status}  started {started}  {seconds}  rows {rows}"
            + (f"  rejected {rejected}" if rejected else "")
        )
        lines.append(
            f"  source {run.source_path} ({run.source_size} bytes, sha256 "
            f"{run.source_sha256 or '-'}) -> schema {run.target_schema}"
        )
        lines.append(f"  options {options_text(run.options)}")
        if run.error:
            lines.append(f"  error: {run.error}")
        if run.resumed_from is not None and not run.tables:
            lines.append(f"  finished run {run.resumed_from} (killed after its cut-over)")
        elif run.resumed_from is not None:
            kept = [t["table_name"] for t in run.tables if t.get("taken_over")]
            lines.append(
                f"  resumed run {run.resumed_from}; tables taken over: {', '.join(kept) or 'none'}"
            )
        if run.rollback_script:
            lines.append(f"  rollback script: {run.rollback_script}")
        lines.extend(
            f"  {ljust(t['table_name'], 24)} {t['loaded_rows']:>12} rows  {t['seconds']:8.2f}s"
            + (f"  rejected {t['rejected']}" if t.get("rejected") else "")
            + (f"  replaced {t['replaced']}" if t["replaced"] else "")
            + ("  (taken over)" if t.get("taken_over") else "")
            for t in run.tables
        )
    return "\n".join(lines) + "\n"


# what a run records for itself (the plan it ran, resume keys and fingerprints): in
# `status --output json`, not in a person's listing
_RECORDED_ONLY = ("plan", "resume_key", "planned_from", "source_edges", "source_identity")
_SHORT = 60  # characters of a structured option shown as it is; longer ones are counted


def options_text(options: Any) -> str:
    """A run's options on one line: ``jobs=2 replace=false ...``; a history whose
    options were edited into something other than an object, as it is."""
    if not isinstance(options, dict):
        text = orjson.dumps(options).decode()
        shown = text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."
        return f"(not a JSON object, edited by hand? {shown})"
    parts = []
    for key, value in options.items():
        if key in _RECORDED_ONLY:
            continue
        text = orjson.dumps(value).decode()
        if isinstance(value, dict | list) and len(text) > _SHORT:
            text = f"<{len(value)} entries>"
        parts.append(f"{key}={text}")
    return " ".join(parts)


def backups_text(kept: Sequence[Leftover]) -> str:
    """`status`: the backup schemas kept for the schema, each with its run and size."""
    if not kept:
        return ""
    lines = [
        f"backup schemas kept ({human_size(sum(b.bytes for b in kept))}; "
        + "`asyncmig cleanup` removes them):"
    ]
    lines += [f"  {b.schema}  run {b.run_id}  {human_size(b.bytes)}" for b in kept]
    return "\n".join(lines) + "\n"


def cleanup_text(report: CleanupReport) -> str:
    """What cleanup removed (or, with --dry-run, would remove), and what --keep kept."""
    if not report.removed and not report.kept:
        return f"nothing to clean up for schema {report.target}\n"
    verb = "would remove" if report.dry_run else "removed"
    lines = [_leftover(verb, item) for item in report.removed]
    lines += [_leftover("kept", item) for item in report.kept]
    total = human_size(report.bytes)
    lines.append(
        f"{total} would be freed (dry run: nothing changed)" if report.dry_run else f"{total} freed"
    )
    return "\n".join(lines) + "\n"


def _leftover(label: str, item: Leftover) -> str:
    run = f"run {item.run_id}" if item.run_id is not None else "no run"
    return f"{label}: {item.kind} {item.schema}  {run}  {human_size(item.bytes)}"


def cleanup_data(report: CleanupReport) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run,
        "removed": [item.as_dict() for item in report.removed],
        "kept": [item.as_dict() for item in report.kept],
        "bytes": report.bytes,
    }


def status_data(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """The history for ``--output json``, latest run first."""
    return [dict(r.__dict__) for r in runs]


def safety_text(report: SafetyReport) -> str:
    """`rollback --check`: per table then and now, each warning, the verdict."""
    lines = [f"rollback of run {report.run_id} (schema {report.schema}):"]
    for t in report.tables:
        now = "gone" if t.rows_now is None else f"{t.rows_now} rows now"
        split = (
            f", {t.inserted} inserted, {t.updated} updated, {t.deleted} deleted"
            if t.inserted is not None
            else f", {t.written} written since"
            if t.written
            else ""
        )
        same = (
            ""
            if t.rows_now is None
            else (", checksum differs" if t.checksum_then != t.checksum_now else ", checksum same")
        )
        lines.append(
            f"  {t.table:<24} {t.rows_then if t.rows_then is not None else '-'} rows "
            f"at the run, {now}{same}{split}"
        )
    lines += [f"  warning: {visible(w)}" for w in report.warnings]
    lines += [f"  note: {n}" for n in report.notes()]
    lines.append(f"safe to roll back: {'yes' if report.safe_to_rollback else 'no'}")
    return "\n".join(lines) + "\n"


def safety_data(report: SafetyReport) -> dict[str, Any]:
    """``rollback`` fields of the ``--output json`` document: ``tables`` (then and now,
    inserted/updated/deleted), ``safe_to_rollback``, ``warnings``, ``sessions``, ..."""
    data = report.as_dict()
    del data["run_id"]
    return data


def rollback_data(result: RollbackResult) -> dict[str, Any]:
    backup = result.backup
    return {
        **safety_data(result.safety),
        "success": result.success,
        "forced": result.forced,
        "rollback_script": result.script,
        "restored_from": result.restored_from,
        "backup_schema_gone": result.backup_schema_gone,
        "not_restorable": list(result.not_restorable),
        "backup": None
        if backup is None
        else {
            "path": str(backup.path),
            "sha256": backup.sha256,
            "rows": backup.rows,
            "tables": list(backup.tables),
        },
    }


def rollback_text(result: RollbackResult) -> str:
    lines = [f"warning (forced): {w}" for w in result.warnings] if result.forced else []
    if result.backup is not None:
        lines.append(
            f"backup written: {result.backup.path} (sha256 {result.backup.sha256}, "
            f"{result.backup.rows} rows of {len(result.backup.tables)} tables); "
            f"restore with: psql -v ON_ERROR_STOP=1 -d DATABASE -f FILE"
        )
    else:
        lines.append("no backup written (--no-backup)")
    lines.append(f"run {result.run_id} rolled back with {result.script}")
    if result.restored_from:
        lines.append(
            f"the tables run {result.run_id} replaced were swapped back from schema "
            f"{result.restored_from} (in the same transaction)"
        )
    if result.backup_schema_gone:
        lines.append(
            f"schema {result.backup_schema_gone} (the tables run {result.run_id} replaced) "
            "was removed by cleanup before: nothing swapped back"
        )
    lines += [
        f"not restorable: {what} (dropped with --cascade by run {result.run_id})"
        for what in result.not_restorable
    ]
    return "\n".join(lines) + "\n"
