"""Command line: a thin shell that turns MigrationErrors into one line and an exit code.

Every option has an ``ASYNCMIG_*`` environment twin (command line wins), so a
scheduled job can be configured entirely from its environment. Exit codes:

    0 success              2 usage / configuration     3 source (SQLite) problem
    4 target (PostgreSQL)  5 a value did not fit        6 verification failed
    8 loaded, with rows in the reject store             70 internal error
    130 interrupted
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import anyio
import asyncpg
import orjson

from asyncmig import commands, ddl, files, logs, render, validate, verify
from asyncmig.config import ON_ERROR, load_overrides
from asyncmig.connect import Target, resolve_target, scrub
from asyncmig.embedded import DEFAULT_DATA_DIR, EmbeddedServer
from asyncmig.errors import (
    InternalError,
    MigrationError,
    TargetError,
    UsageError,
    VerificationError,
)
from asyncmig.migrate import RunSettings, create_schema, load_data, make_plan, run_migration
from asyncmig.pipeline import PipelineSettings


def _env_int(environ: Mapping[str, str], name: str, default: int, low: int) -> int:
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name} is expected to be a whole number, got {raw!r}") from None
    if value < low:
        raise UsageError(f"{name} is expected to be at least {low}, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    env = environ.get
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--sqlite", type=Path, default=env("ASYNCMIG_SQLITE"),
                        help="the SQLite database file to migrate (opened read-only) "
                             "[ASYNCMIG_SQLITE]")
    common.add_argument("--pg", "--postgres", dest="pg", default=env("ASYNCMIG_PG"),
                        help="target PostgreSQL URL; default DATABASE_URL, then the PG* "
                             "variables, then an embedded server [ASYNCMIG_PG]")
    common.add_argument("--schema", default=env("ASYNCMIG_SCHEMA", "public"),
                        help="target schema (default public) [ASYNCMIG_SCHEMA]")
    common.add_argument("--config", type=Path, default=env("ASYNCMIG_CONFIG"),
                        help="TOML profile overriding and extending the plan [ASYNCMIG_CONFIG]")
    common.add_argument("--jobs", type=_positive,
                        default=_env_int(environ, "ASYNCMIG_JOBS", 2, 1),
                        help="tables loaded in parallel (default 2) [ASYNCMIG_JOBS]")
    common.add_argument("--log-format", choices=["auto", "console", "json"],
                        default=env("ASYNCMIG_LOG_FORMAT", "auto"),
                        help="log lines on stderr: auto (console on a terminal, else JSON) "
                             "[ASYNCMIG_LOG_FORMAT]")
    common.add_argument("--log-dir", type=Path, default=Path(env("ASYNCMIG_LOG_DIR", ".")),
                        help="where runs write migration_YYYYMMDD_HHMMSS.log and their rollback "
                             "script (default: the current directory) [ASYNCMIG_LOG_DIR]")
    common.add_argument("--verbose", "-v", action="store_true",
                        default=env("ASYNCMIG_VERBOSE", "") not in ("", "0"),
                        help="log every decision and table, not only warnings [ASYNCMIG_VERBOSE]")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    common.add_argument("--data-dir", type=Path,
                        default=Path(env("ASYNCMIG_DATA_DIR", str(DEFAULT_DATA_DIR))),
                        help="where the embedded PostgreSQL keeps its data when no PostgreSQL "
                             "is given [ASYNCMIG_DATA_DIR]")
    common.add_argument("--output", choices=["text", "json"],
                        default=env("ASYNCMIG_OUTPUT", "text"),
                        help="result format on stdout [ASYNCMIG_OUTPUT]")

    loading = argparse.ArgumentParser(add_help=False)
    loading.add_argument("--batch-size", type=_positive,
                         default=_env_int(environ, "ASYNCMIG_BATCH_SIZE", 5000, 1),
                         help="rows per batch read from SQLite (default 5000) "
                              "[ASYNCMIG_BATCH_SIZE]")
    loading.add_argument("--on-error", choices=list(ON_ERROR), default=env("ASYNCMIG_ON_ERROR"),
                         help="a value that does not fit its column: coerce, default, null, "
                              "reject (the row goes to the reject store; the default) or fail; "
                              "a profile may set it per table or column [ASYNCMIG_ON_ERROR]")
    loading.add_argument("--orphans", choices=["keep", "null", "reject"],
                         default=env("ASYNCMIG_ORPHANS"),
                         help="rows whose foreign key finds no parent: keep (the default; the "
                              "key is left NOT VALID), null (clear the reference) or reject "
                              "[ASYNCMIG_ORPHANS]")
    loading.add_argument("--max-rejects-total", type=_positive,
                         default=_env_int(environ, "ASYNCMIG_MAX_REJECTS_TOTAL", 0, 0) or None,
                         help="fail the run (every table rolled back) when all tables together "
                              "reject more rows than this [ASYNCMIG_MAX_REJECTS_TOTAL]")
    loading.add_argument("--duplicates", choices=["fail", "nonunique", "reject"],
                         default=env("ASYNCMIG_DUPLICATES", "fail"),
                         help="a unique index the data breaks (NOCASE or mixed-type duplicates "
                              "SQLite allowed): fail, listing the keys (default), build it "
                              "without UNIQUE (nonunique), or keep each key's first row and "
                              "reject the others (reject) [ASYNCMIG_DUPLICATES]")
    loading.add_argument("--max-rejects", type=_positive,
                         default=_env_int(environ, "ASYNCMIG_MAX_REJECTS", 0, 0) or None,
                         help="roll a table back when it rejects more rows than this "
                              "(default: no limit) [ASYNCMIG_MAX_REJECTS]")
    loading.add_argument("--rejects", type=Path, default=env("ASYNCMIG_REJECTS"),
                         help="directory for rejected rows, one <table>.jsonl per table "
                              "(default: <log-dir>/asyncmig-rejects/run<N>) [ASYNCMIG_REJECTS]")
    loading.add_argument("--snapshot", action="store_true",
                         default=env("ASYNCMIG_SNAPSHOT", "") not in ("", "0"),
                         help="first copy the source in one read transaction and migrate the "
                              "copy: one consistent snapshot while the application keeps "
                              "writing (needs the disk space of the file) [ASYNCMIG_SNAPSHOT]")
    loading.add_argument("--queue-size", type=_positive,
                         default=_env_int(environ, "ASYNCMIG_QUEUE_SIZE", 4, 1),
                         help="batches buffered between stages (default 4) [ASYNCMIG_QUEUE_SIZE]")

    parser = argparse.ArgumentParser(
        prog="asyncmig", description="Move a SQLite database into PostgreSQL, typed and verified."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "validate, create the schema, load, verify (alias: full)"),
                            ("full", "the same as run")):
        run = sub.add_parser(name, parents=[common, loading], help=help_text)
        run.add_argument("--replace", action="store_true",
                         help="drop and recreate target tables that already exist")
    schema = sub.add_parser("schema", parents=[common],
                            help="create the tables (before the data), or --print all the DDL")
    schema.add_argument("--print", action="store_true", dest="print_sql",
                        help="print the SQL of every phase instead of running it")
    schema.add_argument("--replace", action="store_true",
                        help="drop and recreate target tables that already exist")
    data = sub.add_parser("data", parents=[common, loading],
                          help="load the data into tables `schema` created, then index them")
    data.add_argument("--replace", action="store_true", help="empty non-empty tables first")
    check = sub.add_parser("check", parents=[common],
                           help="compare the PostgreSQL copy with the source")
    check.add_argument("--deep", action="store_true",
                       help="also a checksum of every table's values, computed on both sides")
    check.add_argument("--explain", action="store_true",
                       help="with --deep: name the first differing key of a failing table")
    check.add_argument("--sample", type=_positive, default=None, metavar="N",
                       help="with --deep: check N key ranges of large tables, not every row")
    sub.add_parser("validate", parents=[common], help="pre-flight checks, each with its fix")
    sub.add_parser("status", parents=[common], help="the migration history (latest 20 runs)")
    undo = sub.add_parser("rollback", parents=[common],
                          help="undo a run with its rollback script (see status)")
    undo.add_argument("--run", type=_positive, required=True, dest="run_id",
                      help="the run to undo, as `status` numbers it")
    plan = sub.add_parser("plan", parents=[common], help="print the migration plan")
    plan.add_argument("--format", choices=["text", "json"], default=None,
                      help="the same as --output")

    server = sub.add_parser("server", help="the embedded PostgreSQL started by `run`")
    server.add_argument("action", choices=["stop", "url"])
    server.add_argument("--data-dir", type=Path,
                        default=Path(env("ASYNCMIG_DATA_DIR", str(DEFAULT_DATA_DIR))))
    return parser


WRITING_COMMANDS = {"run", "full", "schema", "data"}
LOADED_WITH_REJECTS = 8  # done, but some rows are in the reject store, not in the table


def run_in_utc() -> None:
    """Naive SQLite timestamps are UTC (the documented policy); asyncpg reads naive
    datetimes as local time, so the process (and the workers it starts) runs in UTC."""
    os.environ["TZ"] = "UTC"
    time.tzset()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    run_in_utc()
    environ = os.environ if environ is None else environ
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    log_stream = None
    try:
        args = build_parser(environ).parse_args(argv)
        log_file = None
        if args.command in WRITING_COMMANDS and not getattr(args, "print_sql", False):
            log_file = open_log_file(args.log_dir)
        args.log_file = log_file
        log_stream = logs.configure(log_format=getattr(args, "log_format", "auto"),
                                    verbose=getattr(args, "verbose", False), log_file=log_file)
        return dispatch(args, environ)
    except MigrationError as exc:
        if debug:
            traceback.print_exc()
        print(f"asyncmig: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("asyncmig: interrupted", file=sys.stderr)
        return 130
    except asyncpg.PostgresError as exc:  # a statement the phases did not expect to fail
        if debug:
            traceback.print_exc()
        line = (str(exc).splitlines() or [type(exc).__name__])[0]
        print(f"asyncmig: error: PostgreSQL refused: {line}", file=sys.stderr)
        return TargetError.exit_code
    except Exception as exc:  # noqa: BLE001 -- the last resort: a bug gets one line, not a traceback
        if debug:
            traceback.print_exc()
        line = (str(exc).splitlines() or [""])[0]
        print(f"asyncmig: internal error: {type(exc).__name__}: {line} (rerun with --debug "
              "and report it)", file=sys.stderr)
        return InternalError.exit_code
    finally:
        if log_stream is not None:
            log_stream.close()


def open_log_file(directory: Path) -> Path:
    try:
        # private and exclusive: two runs started in the same second keep their own logs
        path = files.new_file(directory.absolute(), logs.log_file_stem(), ".log")
    except OSError as exc:
        raise UsageError(f"cannot write the log file in {directory}: {exc.strerror}",
                         hint="pass --log-dir (or ASYNCMIG_LOG_DIR) naming a writable "
                              "directory") from None
    return path


def dispatch(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.command == "server":
        return server_command(args)
    if args.command in ("rollback", "status"):  # they read the target's history only
        target = resolve_target(args.pg, environ)
        if target is None and (args.data_dir / "pgdata" / "PG_VERSION").exists():
            target = start_embedded(args.data_dir)  # the server `run` used by default
        if target is None:
            raise UsageError(f"{args.command} needs the PostgreSQL the runs went into",
                             hint="pass --pg URL (or set DATABASE_URL)")
        settings = RunSettings(args.sqlite or Path("."), target)
        if args.command == "status":
            return status_command(settings, args.output == "json")
        script = anyio.run(commands.rollback_command, settings, args.run_id, backend="asyncio")
        print(f"run {args.run_id} rolled back with {script}")
        return 0
    if args.sqlite is None:
        raise UsageError("no SQLite database given", hint="pass --sqlite FILE")
    overrides = load_overrides(args.config)
    if getattr(args, "on_error", None):
        overrides = replace(overrides, on_error=args.on_error)
    if getattr(args, "orphans", None):
        overrides = replace(overrides, orphans=args.orphans)
    as_json = args.output == "json" or getattr(args, "format", None) == "json"
    if args.command == "plan" or (args.command == "schema" and args.print_sql):
        settings = RunSettings(args.sqlite, Target(None, "", "none"), args.schema, args.jobs,
                               overrides=overrides)
        plan = anyio.run(make_plan, settings, backend="asyncio")
        if args.command == "schema":
            print(ddl.render_script(plan), end="")
        else:
            print(render.plan_json(plan) if as_json else render.plan_text(plan), end="")
        return 0
    target = resolve_target(args.pg, environ)
    if target is None:
        target = start_embedded(args.data_dir)
    settings = RunSettings(
        args.sqlite, target, args.schema, args.jobs, getattr(args, "replace", False),
        PipelineSettings(batch_size=getattr(args, "batch_size", 5000),
                         queue_size=getattr(args, "queue_size", 4),
                         max_rejects=getattr(args, "max_rejects", None)),
        overrides, command="run" if args.command == "full" else args.command,
        output_dir=args.log_dir, log_file=args.log_file,
        rejects_dir=getattr(args, "rejects", None) or args.log_dir / "asyncmig-rejects",
        duplicates=getattr(args, "duplicates", "fail"),
        max_rejects_total=getattr(args, "max_rejects_total", None),
        snapshot=getattr(args, "snapshot", False),
        deep=commands.DeepCheck(getattr(args, "explain", False), getattr(args, "sample", None))
        if getattr(args, "deep", False) else None,
    )
    return COMMANDS[settings.command](settings, as_json)


def run_command(settings: RunSettings, as_json: bool) -> int:
    action = {"run": run_migration, "schema": create_schema, "data": load_data}[settings.command]
    report = anyio.run(action, settings, backend="asyncio")
    shown = settings.target.safe
    verb = "created in" if settings.command == "schema" else "migrated into"
    print(render.report_json(report, shown) if as_json
          else render.report_text(report, shown, action=verb), end="")
    return LOADED_WITH_REJECTS if report.rejected else 0


def check_command(settings: RunSettings, as_json: bool) -> int:
    results = anyio.run(commands.check, settings, settings.deep, backend="asyncio")
    print(orjson.dumps(verify.results_json(results), option=orjson.OPT_INDENT_2).decode()
          if as_json else verify.render_text(results), end="\n" if as_json else "")
    return VerificationError.exit_code if any(not r.ok for r in results) else 0


def validate_command(settings: RunSettings, as_json: bool) -> int:
    checks = anyio.run(commands.validate, settings, backend="asyncio")
    print(orjson.dumps(validate.checks_json(checks), option=orjson.OPT_INDENT_2).decode()
          if as_json else validate.render_text(checks))
    return VerificationError.exit_code if validate.failed(checks) else 0


def status_command(settings: RunSettings, as_json: bool) -> int:
    runs = anyio.run(commands.status, settings, backend="asyncio")
    print(render.status_json(runs) if as_json else render.status_text(runs), end="")
    return 0


COMMANDS = {"run": run_command, "schema": run_command, "data": run_command,
            "check": check_command, "validate": validate_command, "status": status_command}


def start_embedded(data_dir: Path) -> Target:
    server = EmbeddedServer(data_dir / "pgdata")
    print(f"asyncmig: no PostgreSQL given (--pg, DATABASE_URL or PG*): starting an embedded "
          f"one in {server.pgdata}", file=sys.stderr)
    url = server.start()
    print(f"asyncmig: embedded PostgreSQL at {url}", file=sys.stderr)
    return Target(url, scrub(url), "embedded")


def server_command(args: argparse.Namespace) -> int:
    server = EmbeddedServer(args.data_dir / "pgdata")
    if not (server.pgdata / "PG_VERSION").exists():
        raise UsageError(f"no embedded PostgreSQL in {server.pgdata}")
    if args.action == "stop":
        server.stop()
        print(f"stopped the embedded PostgreSQL in {server.pgdata}")
    else:
        print(server.start())
    return 0
