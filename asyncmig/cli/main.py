"""Command line: a thin shell that turns MigrationErrors into one line and an exit code.

Options come from one declaration (:mod:`asyncmig.cli.settings`); each command lists the
ones it uses, and ``--help`` shows them grouped. Values are resolved command line >
``ASYNCMIG_*`` environment > the job file's ``[job]`` table > the declared default.
Exit codes:

    0 success              2 usage / configuration     3 source (SQLite) problem
    4 target (PostgreSQL)  5 a value did not fit        6 verification failed
    7 a reject file or backup cannot be written (disk full): the work is undone
    8 loaded, with rows in the reject store             9 another run is in progress
    10 rollback refused: unsafe                         70 internal error
    130 / 143 interrupted by SIGINT / SIGTERM

Only click and the settings are imported here: ``--help`` stays fast, and the heavy
modules (asyncpg, aiosqlite, the planner) load inside the command that needs them.
"""

from __future__ import annotations

import difflib
import importlib
import itertools
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

from asyncmig.cli import output, settings, signals
from asyncmig.cli.output import package_version
from asyncmig.cli.resolve import resolve
from asyncmig.cli.settings import Group, Option, OutputFormat
from asyncmig.errors import InternalError, MigrationError, TargetError, UsageError

GROUP_TITLES = {
    Group.SOURCE: "Source",
    Group.TARGET: "Target",
    Group.LOAD: "Load",
    Group.POLICIES: "Policy",
    Group.CHECK: "Check",
    Group.COMMAND: "Command",
    Group.OUTPUT: "Output",
}
TARGET = ("pg", "pg_file", "schema", "connect_timeout", "data_dir")
OUTPUT = ("output", "log_format", "verbose", "quiet", "debug")
LOAD = (
    "jobs",
    "batch_size",
    "queue_size",
    "workers",
    "lock_timeout",
    "statement_timeout",
    "replace",
    "cascade",
    "no_backup_schema",
    "rejects",
    "max_rejects",
    "max_rejects_total",
    "on_error",
    "orphans",
    "duplicates",
)


class ValueType(click.ParamType):  # type: ignore[type-arg]  # generic in click 8.5 only
    """Parses a value with the same strict parser as the environment and the job file."""

    def __init__(self, option: Option):
        self.option = option
        self.name = option.metavar or option.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return settings.parse_text(self.option, value, self.option.flags[0])
        except UsageError as exc:
            self.fail(exc.message, param, ctx)


def help_text(option: Option) -> str:
    extra = []
    if option.choices:
        extra.append("one of " + ", ".join(option.choices))
    shown = option.default_text().replace("`", "")
    if shown and shown not in ("off", ""):
        extra.append(f"default {shown}")
    if option.env:
        extra.append(f"env {option.env}")
    return option.help + (f" [{'; '.join(extra)}]" if extra else "")


def click_option(option: Option) -> click.Option:
    if option.is_flag:
        return click.Option(
            [*option.flags, option.name],
            is_flag=True,
            default=None,
            show_default=False,
            help=help_text(option),
        )
    return click.Option(
        [*option.flags, option.name],
        type=ValueType(option),
        metavar=option.metavar,
        default=None,
        show_default=False,
        help=help_text(option),
    )


class Command(click.Command):
    """A command whose options are listed by group, with an example after them."""

    def __init__(self, *args: Any, example: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.example = example

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            declared = settings.BY_NAME.get(param.name or "")
            title = GROUP_TITLES[declared.group] if declared else "Other"
            sections.setdefault(title, []).append(record)
        for title in [*GROUP_TITLES.values(), "Other"]:
            if title in sections:
                with formatter.section(f"{title} options"):
                    formatter.write_dl(sections[title])

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.example:
            with formatter.section("Example"):
                formatter.write_text(self.example)
        super().format_epilog(ctx, formatter)


class Commands(click.Group):
    """The top level: a mistyped command gets "did you mean"."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            near = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            guess = f" (did you mean {near[0]!r}?)" if near else ""
            raise click.UsageError(f"no such command {name!r}{guess}", ctx)
        return super().resolve_command(ctx, args)


Action = Callable[..., int]  # (command name, resolved options, environment, *extra args)


@dataclass(frozen=True)
class Spec:
    """One command: its help paragraph, an example, the options it takes, what it runs."""

    name: str
    summary: str
    description: str
    example: str
    options: tuple[str, ...]
    action: str  # "module:function", imported only when the command runs


# commands that record the source's SHA-256 and need nothing else first: it is begun
# before the heavy modules are imported, on the core that is idle meanwhile
# (asyncmig.source.digest); `run` hashes beside its load once copying has begun
HASHED_EARLY = frozenset({"sync"})
# commands that change nothing in the target: a signal's line says so (signals.message)
READ_ONLY = frozenset({"plan", "check", "validate", "status"})


def make_command(spec: Spec, *, extra_args: bool = False) -> Command:
    """The click command for ``spec``; with ``extra_args``, arguments it does not know
    are passed on to the action (``server psql -- -c ...``)."""

    def callback(**_given: Any) -> int:
        ctx = click.get_current_context()
        given = {
            name: value
            for name, value in ctx.params.items()
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
        }
        invocation: Invocation = ctx.obj
        invocation.command = spec.name
        if spec.name in READ_ONLY:
            signals.reading_only()
        values = resolve(spec.options, given, invocation.environ)
        invocation.as_json = OutputFormat.JSON in (values["output"], values["format"])
        if spec.name in HASHED_EARLY and values["sqlite"] is not None:
            from asyncmig.source import digest  # the standard library only

            digest.begin(values["sqlite"])  # in a thread, while the imports below run
        module, _, function = spec.action.partition(":")
        with signals.deferred():  # the heavy modules (asyncpg, ...) load here
            action: Action = getattr(importlib.import_module(module), function)
        return action(spec.name, values, invocation.environ, *ctx.args)

    params: list[click.Parameter] = [click_option(settings.BY_NAME[n]) for n in spec.options]
    return Command(
        spec.name,
        callback=callback,
        params=params,
        help=spec.description,
        short_help=spec.summary,
        example=spec.example,
        context_settings={
            "help_option_names": ["-h", "--help"],
            "ignore_unknown_options": extra_args,
            "allow_extra_args": extra_args,
        },
    )


def asks_json(args: Sequence[str], environ: Mapping[str, str]) -> bool:
    """JSON output asked for on the command line or in the environment, read from the
    raw arguments: an error parsing or resolving the options is reported as JSON too."""
    asked = environ.get("ASYNCMIG_OUTPUT", "")
    for arg, value in itertools.pairwise([*args, ""]):
        if arg in ("--output", "--format"):
            asked = value
        elif arg.startswith(("--output=", "--format=")):
            asked = arg.partition("=")[2]
    return asked == OutputFormat.JSON


A = "asyncmig.cli.actions:"
RUN_OPTIONS = (
    "sqlite",
    "snapshot",
    "config",
    "widen",
    *TARGET,
    *LOAD,
    "if_changed",
    "restart",
    "chunk_rows",
    "sync_marks",
    *OUTPUT,
    "log_dir",
)
SPECS = (
    Spec(
        "run",
        "validate, create the schema, load, index, verify (alias: full)",
        "Migrate everything in one go: check the source and the server, create the tables, "
        "load every row through the COPY pipeline, build indexes, keys and constraints, "
        "check the result against the source, record the run in the target's history and "
        "write a rollback script. With no PostgreSQL given, an embedded one is started.",
        "asyncmig run --sqlite app.db --pg postgresql://me@db.example.com/app",
        RUN_OPTIONS,
        A + "migrate",
    ),
    Spec(
        "full",
        "the same as run",
        "The same as run (the reference migrator's name for it).",
        "asyncmig full --sqlite app.db --postgres postgresql://me@localhost/app",
        RUN_OPTIONS,
        A + "migrate",
    ),
    Spec(
        "schema",
        "create the tables (before the data), or --print all the DDL",
        "Create the bare tables and the profile's functions, the pre-data part of run; "
        "with --print, print the SQL of every phase instead, for a DBA to review.",
        "asyncmig schema --sqlite app.db --print > schema.sql",
        (
            "sqlite",
            "config",
            "widen",
            *TARGET,
            "jobs",
            "lock_timeout",
            "statement_timeout",
            "replace",
            "cascade",
            "print_sql",
            *OUTPUT,
            "log_dir",
        ),
        A + "migrate",
    ),
    Spec(
        "data",
        "load the data into tables `schema` created, then index them",
        "Load the rows into the tables schema created (they must exist and be empty; "
        "--replace empties them), then build indexes, keys, constraints and foreign keys.",
        "asyncmig data --sqlite app.db --pg postgresql://me@localhost/app --jobs 4",
        ("sqlite", "snapshot", "config", "widen", *TARGET, *LOAD, *OUTPUT, "log_dir"),
        A + "migrate",
    ),
    Spec(
        "sync",
        "bring a target an earlier run made up to date: only what changed",
        "Compare the source with the target an earlier run loaded, table by table and key "
        "range by key range (checksums computed on both sides), and apply only the rows "
        "inserted, updated and deleted since, in one transaction. A changed source schema "
        "stops it (exit 6): migrate again with run --replace.",
        "asyncmig sync --sqlite app.db --pg-file /run/secrets/pg-url --if-changed",
        (
            "sqlite",
            "config",
            "widen",
            *TARGET,
            "jobs",
            "lock_timeout",
            "if_changed",
            "full_compare",
            *OUTPUT,
            "log_dir",
        ),
        A + "sync_command",
    ),
    Spec(
        "check",
        "compare the PostgreSQL copy with the source",
        "Compare the copy with the source: row counts, foreign keys, JSON columns and "
        "sequences; with --deep also a checksum of every table's values, computed inside "
        "SQLite and inside PostgreSQL. Rows the last load rejected are allowed for.",
        "asyncmig check --sqlite app.db --pg postgresql://me@localhost/app --deep",
        ("sqlite", "config", "widen", *TARGET, "jobs", "deep", "explain", "sample", *OUTPUT),
        A + "check",
    ),
    Spec(
        "validate",
        "pre-flight checks, each with its fix",
        "Check, before anything is written, that a run can succeed: the source is readable "
        "and sound, the server is new enough, reachable and has the extensions, privileges "
        "and disk space needed, and no table is in the way. Each check says PASS, WARN or "
        "FAIL with its fix.",
        "asyncmig validate --sqlite app.db --pg postgresql://me@localhost/app",
        ("sqlite", "config", "widen", *TARGET, "jobs", "replace", "cascade", *OUTPUT),
        A + "validate_command",
    ),
    Spec(
        "status",
        "the migration history (latest 20 runs)",
        "Show the migration history kept in the target (schema asyncmig): each run's "
        "command, times, outcome, rows and rollback script; then the backup schemas kept "
        "for --schema (the tables a run --replace replaced), each with its run and size.",
        "asyncmig status --pg postgresql://me@localhost/app",
        ("config", "pg", "pg_file", "schema", "connect_timeout", "data_dir", *OUTPUT),
        A + "status",
    ),
    Spec(
        "rollback",
        "check, back up, then undo a run (see status)",
        "Undo one run with the rollback script it wrote: refused for a run that failed, was "
        "already rolled back, or was followed by a later run into the same schema. First it "
        "checks what the rollback would lose or break (rows the application wrote since, "
        "sessions using the tables, views and keys built on them; --check only reports) and "
        "refuses, exit 10, unless --force; then it writes a backup that psql -f restores.",
        "asyncmig rollback --pg postgresql://me@localhost/app --run 3 --check",
        (
            "config",
            "pg",
            "pg_file",
            "connect_timeout",
            "data_dir",
            "run_id",
            "check",
            "force",
            "backup_dir",
            "no_backup",
            "log_dir",
            *OUTPUT,
        ),
        A + "rollback",
    ),
    Spec(
        "cleanup",
        "remove backup schemas, stale stages and load schemas (--dry-run lists)",
        "Remove what runs into --schema kept or left behind: the backup schemas holding the "
        "tables a run --replace replaced (all of them; --run N: that run's only; --keep K: "
        "all but the newest K), the stages and asyncmig_load_<run> schemas of runs that "
        "did not finish (a removed stage cannot be resumed). Takes the schema's run lock first (a live run's: exit 9), so a "
        "live run's schemas are never touched; --dry-run lists what would go, with sizes, "
        "and changes nothing. A removed backup schema cannot be swapped back by rollback.",
        "asyncmig cleanup --pg postgresql://me@localhost/app --keep 1 --dry-run",
        (
            "config",
            "pg",
            "pg_file",
            "schema",
            "connect_timeout",
            "data_dir",
            "run_id",
            "keep",
            "dry_run",
            *OUTPUT,
        ),
        A + "cleanup",
    ),
    Spec(
        "plan",
        "print the migration plan",
        "Print the plan without touching any PostgreSQL: each table with its columns' "
        "source and target types and the evidence for each choice, indexes, keys, checks, "
        "warnings and what will not be migrated.",
        "asyncmig plan --sqlite app.db --config profile.toml --output json",
        ("sqlite", "config", "widen", "schema", "jobs", "format", *OUTPUT),
        A + "plan",
    ),
)


def show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``; the version is looked up only when asked (see package_version)."""
    if value and not ctx.resilient_parsing:
        click.echo(f"asyncmig {package_version()}")
        ctx.exit()


def build_cli() -> click.Group:
    from asyncmig.cli.server import server_group

    top = Commands(
        "asyncmig",
        help="Move a SQLite database into PostgreSQL, typed and "
        "verified. Run `asyncmig COMMAND --help` for a command's options.",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    top = click.option(
        "--version",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=show_version,
        help="Show the version and exit.",
    )(top)
    for spec in SPECS:
        top.add_command(make_command(spec))
    top.add_command(server_group())
    return top


LOADED_WITH_REJECTS = 8  # done, but some rows are in the reject store, not in the table


def run_in_utc() -> None:
    """Naive SQLite timestamps are UTC (the documented policy); asyncpg reads naive
    datetimes as local time, so the process (and the workers it starts) runs in UTC."""
    os.environ["TZ"] = "UTC"
    time.tzset()


@dataclass
class Invocation:
    """What main() needs to know about the command that ran, also when it failed."""

    environ: Mapping[str, str]
    command: str = ""
    as_json: bool = False  # --output json (as resolved): errors go to stdout as JSON too


def entry() -> int:
    """The console script: :func:`main`, then no signal can change the exit code."""
    try:
        code = main()
    except signals.SignalReceived as stop:  # before main's own handling began
        code = signals.report(stop)
    signals.ignore()
    stop_idle_worker_threads()
    return code


def stop_idle_worker_threads() -> None:
    """Stop anyio's idle worker threads that outlived their event loop. anyio stops them
    when the loop's root task ends; a signal that cut the loop short left one waiting on
    its queue, and the interpreter, which waits for every thread that is not a daemon,
    never exited (seen once in ten runs: `plan` hung after its one line). A ``None`` in
    its queue is anyio's own request to stop."""
    for thread in threading.enumerate():
        work = getattr(thread, "queue", None) if thread.name == "AnyIO worker thread" else None
        if work is not None and thread.is_alive():
            work.put_nowait(None)
            thread.join(timeout=1)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    output.closed_streams_to_devnull()
    signals.install()
    signals.forget()
    run_in_utc()
    args = list(sys.argv[1:] if argv is None else argv)
    invocation = Invocation(os.environ if environ is None else environ)
    invocation.as_json = asks_json(args, invocation.environ)
    try:
        result = build_cli().main(args, prog_name="asyncmig", standalone_mode=False, obj=invocation)
        return result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:  # `asyncmig`, `asyncmig server`
        output.emit(exc.format_message() + "\n")
        return UsageError.exit_code
    except click.Abort:
        return fail(invocation, KeyboardInterrupt(), "interrupted", 130, "asyncmig: ")
    except click.UsageError as exc:
        line = usage_message(exc)
        return fail(invocation, UsageError(line), line, UsageError.exit_code)
    except MigrationError as exc:
        return fail(invocation, exc, str(exc), exc.exit_code, debug="--debug" in args)
    except signals.SignalReceived as stop:
        return fail(invocation, stop, signals.message(stop), stop.exit_code, "asyncmig: ")
    except KeyboardInterrupt:  # SIGINT before main installed its handler
        early = signals.SignalReceived(signal.SIGINT)
        return fail(invocation, early, signals.message(early), early.exit_code, "asyncmig: ")
    except BrokenPipeError:  # the reader of stdout has gone: nothing left to say
        output.silence_stdout()
        return 0
    except Exception as exc:  # noqa: BLE001 -- the last resort: a bug gets one line
        wrapped = signals.caused_by_signal(exc)  # a signal some library wrapped
        if wrapped is not None:
            line = signals.message(wrapped)
            return fail(invocation, wrapped, line, wrapped.exit_code, "asyncmig: ")
        lost = connection_fault(exc)  # any command's session terminated, or the server gone
        if lost is not None:
            return fail(invocation, lost, str(lost), lost.exit_code, debug="--debug" in args)
        return unexpected(invocation, exc, debug="--debug" in args)


def connection_fault(exc: Exception) -> MigrationError | None:
    """``exc`` as "lost connection to PostgreSQL" (exit 4) when a connection fault is
    behind or beside it (a rollback's session terminated while it wrote its backup gave
    exit 70), else None."""
    from asyncmig.target import faults  # asyncpg: only once something went wrong

    mapped = faults.as_error(exc)
    return mapped if isinstance(mapped, MigrationError) and mapped is not exc else None


def fail(
    invocation: Invocation,
    exc: BaseException,
    line: str,
    code: int,
    prefix: str = "asyncmig: error: ",
    *,
    debug: bool = False,
) -> int:
    """One line on stderr (a traceback only with --debug); with --output json, the
    error document on stdout as well."""
    if debug:
        traceback.print_exception(exc)
    print(f"{prefix}{line}", file=sys.stderr)
    if invocation.as_json:
        output.emit(
            output.render(
                output.document(invocation.command, code, error=output.error_data(exc, code))
            )
        )
    return code


def usage_message(exc: click.UsageError) -> str:
    """One line, like every other error; the command's --help is named as the fix."""
    command = exc.ctx.command_path if exc.ctx is not None else "asyncmig"
    if isinstance(exc, click.NoSuchOption):
        message = no_such_option(exc, command)
    elif isinstance(exc, click.BadParameter) and isinstance(exc.param, click.Option):
        message = exc.message  # our parsers' messages name the option already
    else:
        message = exc.format_message().replace("\n", " ")
    return f"{message[:1].lower()}{message[1:]}; hint: see `{command} --help`"


def no_such_option(exc: click.NoSuchOption, command: str) -> str:
    """Say when the option exists but this command does not use it; else suggest."""
    if exc.option_name in {flag for o in settings.OPTIONS for flag in o.flags}:
        return f"{command} does not take {exc.option_name}"
    near = [p for p in exc.possibilities or () if p not in ("-h", "--help")]  # best first
    guess = f" (did you mean {near[0]}?)" if near else ""
    return f"no such option {exc.option_name}{guess}"


def unexpected(invocation: Invocation, exc: Exception, *, debug: bool) -> int:
    import asyncpg

    line = (str(exc).splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, asyncpg.PostgresError):  # a statement the phases did not expect to fail
        return fail(
            invocation, exc, f"PostgreSQL refused: {line}", TargetError.exit_code, debug=debug
        )
    return fail(
        invocation,
        exc,
        f"{type(exc).__name__}: {line} (rerun with --debug and report it)",
        InternalError.exit_code,
        "asyncmig: internal error: ",
        debug=debug,
    )
