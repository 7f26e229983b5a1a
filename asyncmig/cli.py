"""Command line: a thin shell that turns MigrationErrors into one line and an exit code.

Every option has an ``ASYNCMIG_*`` environment twin (command line wins), so a
scheduled job can be configured entirely from its environment. Exit codes:

    0 success              2 usage / configuration     3 source (SQLite) problem
    4 target (PostgreSQL)  5 a value did not fit        6 verification failed
    70 internal error      130 interrupted
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio

from asyncmig import logs, render
from asyncmig.config import load_overrides
from asyncmig.connect import Target, resolve_target, scrub
from asyncmig.embedded import DEFAULT_DATA_DIR, EmbeddedServer
from asyncmig.errors import MigrationError, UsageError
from asyncmig.migrate import RunSettings, make_plan, run_migration
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
    common.add_argument("--pg", default=env("ASYNCMIG_PG"),
                        help="target PostgreSQL URL; default DATABASE_URL, then the PG* "
                             "variables, then an embedded server [ASYNCMIG_PG]")
    common.add_argument("--schema", default=env("ASYNCMIG_SCHEMA", "public"),
                        help="target schema (default public) [ASYNCMIG_SCHEMA]")
    common.add_argument("--config", type=Path, default=env("ASYNCMIG_CONFIG"),
                        help="TOML file overriding the plan [ASYNCMIG_CONFIG]")
    common.add_argument("--jobs", type=_positive,
                        default=_env_int(environ, "ASYNCMIG_JOBS", 2, 1),
                        help="tables loaded in parallel (default 2) [ASYNCMIG_JOBS]")
    common.add_argument("--log-format", choices=["auto", "console", "json"],
                        default=env("ASYNCMIG_LOG_FORMAT", "auto"),
                        help="log lines on stderr: auto (console on a terminal, else JSON)")
    common.add_argument("--verbose", "-v", action="store_true",
                        default=env("ASYNCMIG_VERBOSE", "") not in ("", "0"),
                        help="log every decision and table, not only warnings")
    common.add_argument("--debug", action="store_true", help="show tracebacks")

    parser = argparse.ArgumentParser(
        prog="asyncmig", description="Move a SQLite database into PostgreSQL, typed and verified."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="migrate schema and data, then verify")
    run.add_argument("--replace", action="store_true",
                     help="drop and recreate target tables that already exist")
    run.add_argument("--batch-size", type=_positive,
                     default=_env_int(environ, "ASYNCMIG_BATCH_SIZE", 5000, 1),
                     help="rows per batch read from SQLite (default 5000)")
    run.add_argument("--queue-size", type=_positive,
                     default=_env_int(environ, "ASYNCMIG_QUEUE_SIZE", 4, 1),
                     help="batches buffered between stages (default 4)")
    run.add_argument("--data-dir", type=Path,
                     default=Path(env("ASYNCMIG_DATA_DIR", str(DEFAULT_DATA_DIR))),
                     help="where the embedded PostgreSQL keeps its data when no --pg is given")
    run.add_argument("--output", choices=["text", "json"], default="text",
                     help="summary format on stdout")

    plan = sub.add_parser("plan", parents=[common], help="print the migration plan")
    plan.add_argument("--format", choices=["text", "json"], default="text")

    server = sub.add_parser("server", help="the embedded PostgreSQL started by `run`")
    server.add_argument("action", choices=["stop", "url"])
    server.add_argument("--data-dir", type=Path,
                        default=Path(env("ASYNCMIG_DATA_DIR", str(DEFAULT_DATA_DIR))))
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        args = build_parser(environ).parse_args(argv)
        logs.configure(log_format=getattr(args, "log_format", "auto"),
                       verbose=getattr(args, "verbose", False))
        return dispatch(args, environ)
    except MigrationError as exc:
        if debug:
            traceback.print_exc()
        print(f"asyncmig: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("asyncmig: interrupted", file=sys.stderr)
        return 130


def dispatch(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.command == "server":
        return server_command(args)
    if args.sqlite is None:
        raise UsageError("no SQLite database given", hint="pass --sqlite FILE")
    overrides = load_overrides(args.config)
    if args.command == "plan":
        settings = RunSettings(args.sqlite, Target(None, "", "none"), args.schema, args.jobs,
                               overrides=overrides)
        plan = anyio.run(make_plan, settings, backend="asyncio")
        print(render.plan_json(plan) if args.format == "json" else render.plan_text(plan), end="")
        return 0
    target = resolve_target(args.pg, environ)
    if target is None:
        target = start_embedded(args.data_dir)
    settings = RunSettings(
        args.sqlite, target, args.schema, args.jobs, args.replace,
        PipelineSettings(batch_size=args.batch_size, queue_size=args.queue_size),
        overrides,
    )
    report = anyio.run(run_migration, settings, backend="asyncio")
    shown = target.safe
    print(render.report_json(report, shown) if args.output == "json"
          else render.report_text(report, shown), end="")
    return 0


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
