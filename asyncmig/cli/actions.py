"""What each command does once its options are resolved (see :mod:`asyncmig.cli.main`).

Imported only when a command runs: this is where asyncpg, aiosqlite and the planner
come in, so ``asyncmig --help`` does not pay for them.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path

import structlog

from asyncmig import ddl
from asyncmig.cli import commands, logs, output, render, signals
from asyncmig.cli.output import emit
from asyncmig.cli.resolve import Resolved
from asyncmig.cli.settings import DeepCheck, LogFormat, OutputFormat, default
from asyncmig.errors import MigrationError, RollbackRefused, UsageError, VerificationError
from asyncmig.load import progress
from asyncmig.load.pipeline import PipelineSettings
from asyncmig.plan.overrides import Overrides, load_overrides
from asyncmig.runstate import RunSettings
from asyncmig.target import files, sync
from asyncmig.target.connect import Target, resolve_target, scrub
from asyncmig.target.embedded import EmbeddedServer, psql_path
from asyncmig.target.unchanged import unchanged_target
from asyncmig.target.wait import wait_for_target

WRITING_COMMANDS = {"run", "full", "schema", "data", "sync"}
LOADED_WITH_REJECTS = 8  # done, but some rows are in the reject store, not in the table

log = structlog.get_logger(__name__)


@contextmanager
def logging_for(command: str, values: Resolved) -> Iterator[Path | None]:
    """Configure logging once for the command; yields the run's log file (or None)."""
    log_file = None
    if command in WRITING_COMMANDS and not values["print_sql"]:
        log_file = open_log_file(values["log_dir"])
    stream = logs.configure(
        log_format=values["log_format"], verbose=values["verbose"], log_file=log_file
    )
    try:
        log.info("configuration", command=command, sources=values.given())
        if (failed := logs.file_error()) is not None:  # nothing done yet: say so and stop
            if log_file is not None:
                log_file.unlink(missing_ok=True)  # at most a piece of its first line
            raise UsageError(
                f"cannot write the log file in {values['log_dir']}: {failed.strerror or failed}",
                hint="free space there, or pass --log-dir (or ASYNCMIG_LOG_DIR) naming a "
                "writable directory with room",
            )
        yield log_file
    finally:
        if stream is not None and logs.file_error() is None:
            stream.close()


def open_log_file(directory: Path) -> Path:
    try:
        # private and exclusive: two runs started in the same second keep their own logs
        path = files.new_file(directory.absolute(), logs.log_file_stem(), ".log")
    except OSError as exc:
        raise UsageError(
            f"cannot write the log file in {directory}: {exc.strerror}",
            hint="pass --log-dir (or ASYNCMIG_LOG_DIR) naming a writable directory",
        ) from None
    return path


def as_json(values: Resolved) -> bool:
    return OutputFormat.JSON in (values["output"], values["format"])


def need_source(values: Resolved) -> Path:
    source: Path | None = values["sqlite"]
    if source is None:
        raise UsageError("no SQLite database given", hint="pass --sqlite FILE")
    return source


def overrides_for(values: Resolved) -> Overrides:
    """The profile, with the run-wide policies the options set on top."""
    overrides = load_overrides(values["config"])
    if values["on_error"] is not None:
        overrides = replace(overrides, on_error=values["on_error"])
    if values["orphans"] is not None:
        overrides = replace(overrides, orphans=values["orphans"])
    if values["widen"]:
        overrides = replace(overrides, widen=True)
    return overrides


def target_for(values: Resolved, environ: Mapping[str, str], *, start: bool = True) -> Target:
    """The configured target, waited for up to --connect-timeout (a compose or
    Kubernetes database may still be booting); else the embedded server (started only
    when ``start``, or when it exists: status and rollback read what a run left)."""
    target = resolve_target(values["pg"], environ)
    if target is not None:
        if values["connect_timeout"] > 0:
            signals.call(wait_for_target, target, values["connect_timeout"])
        return target
    pgdata = values["data_dir"] / "pgdata"
    if start or (pgdata / "PG_VERSION").exists():
        return start_embedded(values["data_dir"])
    raise UsageError(
        "this command needs the PostgreSQL the runs went into",
        hint="pass --pg URL (or set DATABASE_URL)",
    )


def start_embedded(data_dir: Path) -> Target:
    """Start (or attach to) the embedded server; its URL holds no password."""
    server = EmbeddedServer(data_dir / "pgdata")
    print(
        f"asyncmig: no PostgreSQL given (--pg, DATABASE_URL or PG*): starting an embedded "
        f"one in {server.pgdata}",
        file=sys.stderr,
    )
    url = server.start()
    print(f"asyncmig: embedded PostgreSQL at {url}", file=sys.stderr)
    return Target(url, scrub(url), "embedded")


def run_settings(
    command: str, values: Resolved, environ: Mapping[str, str], log_file: Path | None = None
) -> RunSettings:
    """The settings of a command that reads the source and the target; the source and
    the profile are checked before the target is looked for (or started)."""
    log_dir: Path = values["log_dir"]
    if values.values.get("cascade") and not values.values.get("replace"):
        raise UsageError(  # it drops what --replace would otherwise stop on: alone, nothing
            "--cascade acts only with --replace", hint="add --replace, or leave --cascade out"
        )
    source, overrides = need_source(values), overrides_for(values)
    target = replace(target_for(values, environ), statement_timeout=values["statement_timeout"])
    return RunSettings(
        source,
        target,
        values["schema"],
        values["jobs"],
        values["replace"],
        PipelineSettings(
            batch_size=values["batch_size"],
            queue_size=values["queue_size"],
            max_rejects=values["max_rejects"],
        ),
        overrides,
        command="run" if command == "full" else command,
        output_dir=log_dir,
        log_file=log_file,
        rejects_dir=values["rejects"] or log_dir / "asyncmig-rejects",
        duplicates=values["duplicates"],
        max_rejects_total=values["max_rejects_total"],
        snapshot=values["snapshot"],
        workers=values["workers"],
        lock_timeout=values["lock_timeout"],
        cascade=values["cascade"],
        restart=values.values.get("restart", False),
        chunk_rows=values.values.get("chunk_rows", 0),
        full_compare=values.values.get("full_compare", False),
        sync_marks=values.values.get("sync_marks", False),
        backup_schema=not values["no_backup_schema"],
        deep=DeepCheck(values["explain"], values["sample"]) if values["deep"] else None,
    )


def plan_settings(values: Resolved) -> RunSettings:
    return RunSettings(
        need_source(values),
        Target(None, "", "none"),
        values["schema"],
        values["jobs"],
        overrides=overrides_for(values),
    )


def migrate(command: str, values: Resolved, environ: Mapping[str, str]) -> int:
    """run, full, schema and data (schema --print only prints the SQL)."""
    from asyncmig.run import create_schema, load_data, make_plan, run_migration

    with logging_for(command, values) as log_file:
        if values["print_sql"]:
            plan = signals.call(make_plan, plan_settings(values))
            script = ddl.render_script(plan)
            emit(
                output.render(output.document(command, 0, sql=script))
                if as_json(values)
                else script
            )
            return 0
        progress.install(
            progress.for_terminal(values["quiet"], values["log_format"] == LogFormat.JSON)
        )
        settings = run_settings(command, values, environ, log_file)
        if values["if_changed"] and skip_unchanged(settings, values):
            return 0
        action = {"run": run_migration, "schema": create_schema, "data": load_data}[
            settings.command
        ]
        try:
            report = signals.run(action, settings)
        except MigrationError as exc:
            progress.current().run_failed(exc.exit_code, exc)
            raise
        except (KeyboardInterrupt, signals.SignalReceived) as exc:
            stop = exc if isinstance(exc, signals.SignalReceived) else None
            progress.current().run_failed(
                stop.exit_code if stop else 130,
                exc,
                signals.message(stop) if stop else "interrupted",  # its str() is "15"
            )
            raise
        code = LOADED_WITH_REJECTS if report.rejected else 0
        progress.current().run_finished(code, report.rows, report.rejected, report.warnings)
        shown = settings.target.safe
        if as_json(values):
            data = render.report_data(report, shown)
            emit(
                output.render(
                    output.document(
                        command,
                        code,
                        run_id=report.run_id,
                        tables=data.pop("tables"),
                        checks=data.pop("checks"),
                        **data,
                    )
                )
            )
            return code
        verb = "created in" if settings.command == "schema" else "migrated into"
        emit(render.report_text(report, shown, action=verb))
        if settings.target.source == "embedded":
            emit(next_steps(settings.target, values["data_dir"]))
        return code


def next_steps(target: Target, data_dir: Path) -> str:
    """What to do after a run into the embedded server: look at it, then stop it.
    Its URL holds no password (local trust on a Unix socket), so it is shown whole:
    the scrubbed form would not connect."""
    address = target.dsn or target.safe
    where = "" if data_dir == default("data_dir") else f" --data-dir {shlex.quote(str(data_dir))}"
    return (
        "\nnext steps:\n"
        f"  open the result:  {shlex.quote(str(psql_path()))} {shlex.quote(address)}\n"
        f"                    (or: asyncmig server psql{where})\n"
        f"  stop the server:  asyncmig server stop{where}\n"
    )


def skip_unchanged(settings: RunSettings, values: Resolved) -> bool:
    """--if-changed: say so and skip when the source is the file the last load read."""
    from asyncmig.target.plans import inputs_fingerprint

    since = signals.call(
        unchanged_target,
        settings.target,
        settings.schema,
        settings.source,
        inputs_fingerprint(settings.overrides),
    )
    if since is None:
        return False
    log.info("unchanged", since_run=since)
    emit(
        output.render(output.document(settings.command, 0, unchanged_since_run=since))
        if as_json(values)
        else f"unchanged since run {since}: nothing to do\n"
    )
    return True


def sync_command(command: str, values: Resolved, environ: Mapping[str, str]) -> int:
    with logging_for(command, values) as log_file:
        settings = run_settings(command, values, environ, log_file)
        if values["if_changed"] and skip_unchanged(settings, values):
            return 0
        report = signals.run(sync.sync, settings)
        shown = settings.target.safe
        if as_json(values):
            data = sync.report_data(report, shown)
            emit(
                output.render(
                    output.document(
                        command, 0, run_id=report.run_id, tables=data.pop("tables"), **data
                    )
                )
            )
        else:
            emit(sync.report_text(report, shown))
        return 0


def plan(command: str, values: Resolved, environ: Mapping[str, str]) -> int:
    from asyncmig.run import make_plan  # the planner: imported by the commands that plan

    with logging_for(command, values):
        result = signals.call(make_plan, plan_settings(values))
        if as_json(values):
            data = result.to_dict()
            emit(output.render(output.document(command, 0, tables=data.pop("tables"), plan=data)))
        else:
            emit(render.plan_text(result))
        return 0


def check(command: str, values: Resolved, environ: Mapping[str, str]) -> int:
    from asyncmig.check import verify

    with logging_for(command, values):
        settings = run_settings(command, values, environ)
        results = signals.call(commands.check, settings, settings.deep)
        code = VerificationError.exit_code if any(not r.ok for r in results) else 0
        emit(
            output.render(output.document(command, code, checks=verify.results_json(results)))
            if as_json(values)
            else verify.render_text(results)
        )
        return code


def validate_command(command: str, values: Resolved, environ: Mapping[str, str]) -> int:
    from asyncmig.check import preflight as validate  # its many checks: this command's only

    with logging_for(command, values):
        settings = run_settings(command, values, environ)
        checks = signals.call(commands.validate, settings)
        code = VerificationError.exit_code if validate.failed(checks) else 0
        emit(
            output.render(output.document(command, code, preflight=validate.checks_json(checks)))
            if as_json(values)
            else validate.render_text(checks) + "\n"
        )
        return code


def history_settings(values: Resolved, environ: Mapping[str, str]) -> RunSettings:
    """status, rollback and cleanup read the target's history only: no source needed."""
    return RunSettings(Path("."), target_for(values, environ, start=False), values["schema"])


def status(command: str, values: Resolved, environ: Mapping[str, str]) -> int:
    with logging_for(command, values):
        runs, kept = signals.call(commands.status, history_settings(values, environ))
        emit(
            output.render(
                output.document(
                    command,
                    0,
                    runs=render.status_data(runs),
                    backup_schemas=[b.as_dict() for b in kept],
                )
            )
            if as_json(values)
            else render.status_text(runs) + render.backups_text(kept)
        )
        return 0


def cleanup(command: str, values: Resolved, environ: Mapping[str, str]) -> int:
    """Remove (or with --dry-run list) backup schemas, stale stages and load schemas."""
    with logging_for(command, values):
        if values["run_id"] is not None and values["keep"] is not None:
            raise UsageError("cleanup takes --run or --keep, not both")
        action = partial(
            commands.cleanup_command,
            history_settings(values, environ),
            run=values["run_id"],
            keep=values["keep"],
            dry_run=values["dry_run"],
        )
        report = signals.call(action)
        emit(
            output.render(output.document(command, 0, **render.cleanup_data(report)))
            if as_json(values)
            else render.cleanup_text(report)
        )
        return 0


def rollback(command: str, values: Resolved, environ: Mapping[str, str]) -> int:
    """The safety check; unless only checking, the backup and the rollback."""
    with logging_for(command, values):
        run_id = values["run_id"]
        if run_id is None:
            raise UsageError("rollback needs the run to undo", hint="pass --run N (see status)")
        if values["no_backup"] and not values["force"]:
            raise UsageError(
                "--no-backup is only allowed with --force",
                hint="a rollback removes data: keep the backup unless you must not",
            )
        settings = history_settings(values, environ)
        if values["check"]:
            report = signals.call(commands.rollback_check, settings, run_id)
            code = 0 if report.safe_to_rollback else RollbackRefused.exit_code
            emit(
                output.render(
                    output.document(command, code, run_id=run_id, **render.safety_data(report))
                )
                if as_json(values)
                else render.safety_text(report)
            )
            return code
        action = partial(
            commands.rollback_command,
            settings,
            run_id,
            force=values["force"],
            backup=not values["no_backup"],
            backup_dir=values["backup_dir"] or values["log_dir"],
        )
        try:
            result = signals.call(action)
        except RollbackRefused as refused:  # the report on stdout, the one-line error after
            if not as_json(values):
                emit(render.safety_text(refused.report))
                raise
            print(f"asyncmig: error: {refused}", file=sys.stderr)
            emit(
                output.render(
                    output.document(
                        command,
                        refused.exit_code,
                        run_id=run_id,
                        error=output.error_data(refused, refused.exit_code),
                        **render.safety_data(refused.report),
                    )
                )
            )
            return refused.exit_code
        emit(
            output.render(
                output.document(command, 0, run_id=run_id, **render.rollback_data(result))
            )
            if as_json(values)
            else render.rollback_text(result)
        )
        return 0
