"""Every option asyncmig takes, declared once: name, type, default, choices, help.

The command line (``cli.py``), the environment (``ASYNCMIG_*``), the job file
(``[job]`` in the ``--config`` TOML) and the README's option table are all read from
:data:`OPTIONS`, so an option cannot exist in one place and be missing, or default
differently, in another. Precedence: command line, then environment, then job file,
then the declared default. Values are parsed strictly wherever they come from:
``ASYNCMIG_SNAPSHOT=false`` is off, ``ASYNCMIG_JOBS=abc`` is a usage error (exit 2).

``python -m asyncmig.cli.settings --markdown`` prints the README's option table.

This module imports nothing heavy: ``asyncmig --help`` reads it.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from asyncmig.errors import UsageError


class OnError(StrEnum):
    """What a value that does not fit its column becomes."""

    COERCE = "coerce"
    DEFAULT = "default"
    NULL = "null"
    REJECT = "reject"
    FAIL = "fail"


class Orphans(StrEnum):
    """What happens to a row whose foreign key finds no parent."""

    KEEP = "keep"
    NULL = "null"
    REJECT = "reject"


class Duplicates(StrEnum):
    """What happens when the data breaks a unique index SQLite let through."""

    FAIL = "fail"
    NONUNIQUE = "nonunique"
    REJECT = "reject"


class Workers(StrEnum):
    """Where each table's pipeline runs."""

    AUTO = "auto"
    PROCESS = "process"
    INLINE = "inline"


class LogFormat(StrEnum):
    AUTO = "auto"
    CONSOLE = "console"
    JSON = "json"


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class Group(StrEnum):
    """Where an option is listed in ``--help``, in this order."""

    SOURCE = "source"
    TARGET = "target"
    LOAD = "load"
    POLICIES = "policies"
    CHECK = "check"
    COMMAND = "command"
    OUTPUT = "output"


@dataclass(frozen=True)
class DeepCheck:
    """What `check --deep` compares: every row, or ``sample_ranges`` key ranges."""

    explain: bool = False
    sample_ranges: int | None = None


OptionType = type[str] | type[Path] | type[int] | type[bool] | type[StrEnum]


# timeouts in seconds: PostgreSQL's settings hold milliseconds in an int4 (24 days)
SECONDS_MAX = (2**31 - 1) // 1000
# each job holds two connections (its load and its index builds) and a worker process
JOBS_MAX = 256


@dataclass(frozen=True)
class Option:
    """One option. ``name`` is its key in the job file and its Python name."""

    name: str
    flags: tuple[str, ...]
    type: OptionType
    default: Any
    help: str
    group: Group
    metavar: str | None = None
    twin: bool = True  # has an ASYNCMIG_* environment variable
    in_job: bool = True  # may be set in the job file's [job] table
    minimum: int | None = None
    # the largest value taken: PostgreSQL keeps timeouts in int4 milliseconds, and
    # a number beyond 64 bits reached a driver as an internal error
    maximum: int = 2**31 - 1
    shown_default: str | None = None  # the default as the docs say it, when not the value

    @property
    def env(self) -> str | None:
        return f"ASYNCMIG_{self.name.upper()}" if self.twin else None

    @property
    def is_flag(self) -> bool:
        return self.type is bool

    @property
    def choices(self) -> tuple[str, ...]:
        kind = self.type
        return (
            tuple(c.value for c in kind)
            if isinstance(kind, type) and issubclass(kind, StrEnum)
            else ()
        )

    def default_text(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if self.is_flag:
            return "on" if self.default else "off"
        return "" if self.default is None else f"`{self.default}`"


def _opt(
    name: str,
    type_: OptionType,
    default: Any,
    help_: str,
    group: Group,
    metavar: str | None = None,
    **extra: Any,
) -> Option:
    flags = extra.pop("flags", ("--" + name.replace("_", "-"),))
    return Option(name, flags, type_, default, help_, group, metavar, **extra)


S, T, L, P, C, X, O = (
    Group.SOURCE,
    Group.TARGET,
    Group.LOAD,
    Group.POLICIES,
    Group.CHECK,
    Group.COMMAND,
    Group.OUTPUT,
)

OPTIONS: tuple[Option, ...] = (
    _opt("sqlite", Path, None, "the SQLite database file to migrate (opened read-only)", S, "FILE"),
    _opt(
        "snapshot",
        bool,
        False,
        "first copy the source in one read transaction and migrate "
        "the copy: one consistent snapshot while the application keeps writing (needs the "
        "disk space of the file)",
        S,
    ),
    _opt(
        "config",
        Path,
        None,
        "TOML job file and profile: a [job] table of these options, and the overrides of the plan",
        S,
        "FILE",
        in_job=False,
    ),
    _opt(
        "pg",
        str,
        None,
        "target PostgreSQL URL (on a shared machine prefer --pg-file or "
        "DATABASE_URL: the command line is visible to other users)",
        T,
        "URL",
        flags=("--pg", "--postgres"),
        shown_default="`DATABASE_URL`, then `PG*`, then an embedded server",
    ),
    _opt(
        "pg_file",
        Path,
        None,
        "read the target URL from this file (a Docker or Kubernetes "
        "secret); a trailing newline is ignored",
        T,
        "FILE",
    ),
    _opt("schema", str, "public", "target schema (created if missing)", T, "NAME"),
    _opt(
        "connect_timeout",
        int,
        0,
        "keep retrying a target that is not up yet (still "
        "booting) for this many seconds, with backoff; 0: try once",
        T,
        "SECONDS",
        minimum=0,
        maximum=SECONDS_MAX,
    ),
    _opt(
        "lock_timeout",
        int,
        10,
        "seconds the run's DDL (creating, replacing, dropping "
        "tables), or a sync's lock on the tables, waits for a lock an application holds "
        "before it stops, naming the session; 0: wait for ever",
        T,
        "SECONDS",
        minimum=0,
        maximum=SECONDS_MAX,
    ),
    _opt(
        "statement_timeout",
        int,
        0,
        "seconds any statement may run; the client also "
        "stops waiting for a server that does not answer for this long (plus 10 s); "
        "0: no limit",
        T,
        "SECONDS",
        minimum=0,
        maximum=SECONDS_MAX,
    ),
    _opt(
        "data_dir",
        Path,
        Path("asyncmig-data"),
        "where the embedded PostgreSQL keeps its data when no PostgreSQL is given",
        T,
        "DIR",
        shown_default="`./asyncmig-data`",
    ),
    _opt(
        "jobs",
        int,
        2,
        "tables loaded (and indexes built) in parallel",
        L,
        "N",
        minimum=1,
        maximum=JOBS_MAX,
    ),
    _opt("batch_size", int, 5000, "rows per batch read from SQLite", L, "N", minimum=1),
    _opt("queue_size", int, 4, "batches buffered between stages", L, "N", minimum=1),
    _opt(
        "workers",
        Workers,
        Workers.AUTO,
        "where tables load: worker processes (process), "
        "the main process (inline), or processes for sources of 200,000 rows or more "
        "(auto)",
        L,
        "WHERE",
    ),
    _opt(
        "replace",
        bool,
        False,
        "run/schema: drop and recreate target tables that already "
        "exist; data: empty non-empty tables first; validate: judge the target as such a "
        "run would",
        L,
    ),
    _opt(
        "if_changed",
        bool,
        False,
        "run/sync: exit 0 at once when the source is "
        "byte-identical to the one the last successful run into this schema loaded",
        L,
    ),
    _opt(
        "sync_marks",
        bool,
        False,
        "run: also record the source marks the next sync compares with, so that sync "
        "copies only what changed (about 3 µs of CPU per source row beside the load); "
        "without them the first sync compares every row and records them",
        L,
    ),
    _opt(
        "full_compare",
        bool,
        False,
        "sync: compare every row of both sides, not only the key ranges whose source "
        "rows changed since the last run or sync",
        L,
    ),
    _opt(
        "restart",
        bool,
        False,
        "run: do not resume an interrupted run of the same command; drop what it left "
        "and start over",
        L,
    ),
    _opt(
        "chunk_rows",
        int,
        0,
        "run: commit a table of more rows than this in rowid ranges of about this many "
        "rows, each recorded, so a resumed run goes on after the last; 0: one transaction "
        "per table",
        L,
        "N",
        minimum=0,
    ),
    _opt(
        "cascade",
        bool,
        False,
        "with --replace: drop the application's views and foreign "
        "keys that depend on the replaced tables (listed; without it the run stops before "
        "changing anything)",
        L,
    ),
    _opt(
        "no_backup_schema",
        bool,
        False,
        "run --replace: drop the replaced tables in the cut-over instead of keeping them "
        "in a backup schema (asyncmig_backup_<key>_<run>) that rollback swaps back and "
        "cleanup removes; saves their disk space, but rollback can then only drop",
        L,
    ),
    _opt(
        "rejects",
        Path,
        None,
        "directory for rejected rows: DIR/run<N>-<id>/<table>.jsonl",
        L,
        "DIR",
        shown_default="`<log-dir>/asyncmig-rejects`",
    ),
    _opt(
        "max_rejects",
        int,
        None,
        "roll a table back (and fail the run) when it rejects more rows than this",
        L,
        "N",
        minimum=1,
        shown_default="no limit",
    ),
    _opt(
        "max_rejects_total",
        int,
        None,
        "fail the run (every table rolled back) when all "
        "tables together reject more rows than this",
        L,
        "N",
        minimum=1,
        shown_default="no limit",
    ),
    _opt(
        "on_error",
        OnError,
        None,
        "a value that does not fit its column: coerce, default, "
        "null, reject (the row goes to the reject store) or fail; a profile may set it per "
        "table or column",
        P,
        "POLICY",
        shown_default="`reject`",
    ),
    _opt(
        "orphans",
        Orphans,
        None,
        "rows whose foreign key finds no parent: keep (the key is "
        "left NOT VALID), null (clear the reference) or reject",
        P,
        "POLICY",
        shown_default="`keep`",
    ),
    _opt(
        "widen",
        bool,
        False,
        "keep every value in a lossless type chosen from the values "
        "(text, numeric, bytea) instead of the column's declared type, whose misfits "
        "otherwise go through --on-error; a profile may set widen per column",
        P,
    ),
    _opt(
        "duplicates",
        Duplicates,
        Duplicates.FAIL,
        "a unique index the data breaks (NOCASE "
        "or mixed-type duplicates SQLite allowed): fail naming the keys, build it without "
        "UNIQUE (nonunique), or keep each key's first row and reject the others",
        P,
        "POLICY",
    ),
    _opt("deep", bool, False, "also a checksum of every table's values, computed on both sides", C),
    _opt("explain", bool, False, "with --deep: name the first differing key of a failing table", C),
    _opt(
        "sample",
        int,
        None,
        "with --deep: check N key ranges of large tables, not every row",
        C,
        "N",
        minimum=1,
        shown_default="every row",
    ),
    _opt(
        "print_sql",
        bool,
        False,
        "print the SQL of every phase instead of running it",
        X,
        flags=("--print",),
        twin=False,
        in_job=False,
    ),
    _opt(
        "run_id",
        int,
        None,
        "rollback: the run to undo; cleanup: the run whose backup schema to remove "
        "(as `status` numbers them)",
        X,
        "N",
        flags=("--run",),
        twin=False,
        in_job=False,
        minimum=1,
    ),
    _opt(
        "check",
        bool,
        False,
        "only report what rolling back would lose or break, changing "
        "nothing (exit 10 when it finds anything)",
        X,
        twin=False,
        in_job=False,
    ),
    _opt(
        "keep",
        int,
        None,
        "cleanup: keep the backup schemas of the newest N runs, remove older ones",
        X,
        "N",
        twin=False,
        in_job=False,
        minimum=0,
        shown_default="keep none",
    ),
    _opt(
        "dry_run",
        bool,
        False,
        "cleanup: list what would be removed, with sizes, and change nothing",
        X,
        twin=False,
        in_job=False,
    ),
    _opt(
        "force",
        bool,
        False,
        "roll back even though the check warns (after the backup)",
        X,
        twin=False,
        in_job=False,
    ),
    _opt(
        "backup_dir",
        Path,
        None,
        "where the backup of what a rollback removes is written",
        X,
        "DIR",
        shown_default="`--log-dir`",
    ),
    _opt(
        "no_backup",
        bool,
        False,
        "write no backup (only together with --force)",
        X,
        twin=False,
        in_job=False,
    ),
    _opt("output", OutputFormat, OutputFormat.TEXT, "result format on stdout", O, "FORMAT"),
    _opt(
        "format", OutputFormat, None, "the same as --output", O, "FORMAT", twin=False, in_job=False
    ),
    _opt(
        "log_format",
        LogFormat,
        LogFormat.AUTO,
        "log lines on stderr: console on a terminal, else JSON lines",
        O,
        "FORMAT",
    ),
    _opt(
        "log_dir",
        Path,
        Path("."),
        "where run, schema and data write migration_YYYYMMDD_HHMMSS.log and the rollback script",
        O,
        "DIR",
    ),
    _opt(
        "verbose",
        bool,
        False,
        "log every decision and table, not only warnings",
        O,
        flags=("--verbose", "-v"),
    ),
    _opt(
        "quiet",
        bool,
        False,
        "no live progress display on a terminal (JSON progress events elsewhere are unaffected)",
        O,
        flags=("--quiet", "-q"),
    ),
    _opt("debug", bool, False, "show a traceback with errors", O),
)

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
JOB_KEYS = frozenset(o.name for o in OPTIONS if o.in_job) | {"pg_env"}
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def default(name: str) -> Any:
    """The declared default of option ``name`` (the one place defaults are written)."""
    return BY_NAME[name].default


def parse_text(option: Option, text: str, origin: str) -> Any:
    """A value given as text (the command line or the environment), strictly checked."""
    kind = option.type
    if kind is bool:
        word = text.strip().lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        raise UsageError(
            f"{origin} is expected to be true or false (also 1/0, yes/no, on/off), got {text!r}"
        )
    if kind is int:
        try:
            value = int(text.strip())
        except ValueError:
            raise UsageError(f"{origin} is expected to be a whole number, got {text!r}") from None
        return check_minimum(option, value, origin)
    if kind is Path:
        readable_path(text, origin)
    if option.name == "schema":
        target_schema(text, origin)
    return parse_choice(option, text, origin) if option.choices else kind(text)


# schemas asyncmig keeps for itself: its history, and its stages, backups and load areas
OWN_SCHEMAS = ("asyncmig", "asyncmig_stage_", "asyncmig_backup_", "asyncmig_load_")


def target_schema(name: str, origin: str) -> None:
    """Refuse, before anything is done, a schema PostgreSQL cannot hold the tables in:
    the run found out at its cut-over, after the whole load."""
    size = len(name.encode("utf-8", "surrogatepass"))
    problem = (
        "is empty: give a schema name"
        if not name.strip()
        else f"is {size} bytes long; PostgreSQL's names hold at most 63"
        if size > 63
        else "starts with pg_, which PostgreSQL reserves for its own schemas"
        if name.lower().startswith("pg_")
        else "holds a NUL character"
        if "\x00" in name
        else "is asyncmig's own (its history, stages and backups)"
        if name == OWN_SCHEMAS[0] or name.startswith(OWN_SCHEMAS[1:])
        else None
    )
    if problem is not None:
        raise UsageError(f"{origin} {problem}")


def parse_choice(option: Option, text: str, origin: str) -> StrEnum:
    if text in option.choices:
        enum: type[StrEnum] = option.type  # type: ignore[assignment]  # choices: an enum
        return enum(text)
    near = difflib.get_close_matches(text, option.choices, n=1)
    guess = f" (did you mean {near[0]!r}?)" if near else ""
    raise UsageError(
        f"{origin} is expected to be one of {', '.join(option.choices)}, got {text!r}{guess}"
    )


def readable_path(text: str, origin: str) -> None:
    """Refuse an empty path (``Path("")`` is the working directory, and a job file's
    ``base / ""`` its directory) and a path whose bytes are not UTF-8 (legal on Linux):
    paths are recorded in the target's history and logs, as text, so such a run failed
    late, as an internal error."""
    if not text.strip():
        raise UsageError(f"{origin} is empty: give a path")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise UsageError(
            f"{origin} is not valid UTF-8 ({shown})",
            hint="rename the file, or link it under a UTF-8 name",
        ) from None


def check_minimum(option: Option, value: int, origin: str) -> int:
    """``value`` within the option's bounds (else exit 2, before anything is done)."""
    if option.minimum is not None and value < option.minimum:
        raise UsageError(f"{origin} is expected to be at least {option.minimum}, got {value}")
    if value > option.maximum:
        raise UsageError(f"{origin} is expected to be at most {option.maximum}, got {value}")
    return value


def parse_job_value(option: Option, value: Any, origin: str, base: Path) -> Any:
    """A value from the job file: TOML types must match (``jobs = "4"`` is refused);
    relative paths are relative to the job file's directory."""
    kind = option.type
    if kind is bool or kind is int:
        if type(value) is not kind:
            what = "true or false" if kind is bool else "a whole number"
            raise UsageError(f"{origin} is expected to be {what}, got {value!r}")
        return check_minimum(option, value, origin) if kind is int else value
    if not isinstance(value, str):
        raise UsageError(f"{origin} is expected to be a string, got {value!r}")
    if kind is Path:
        readable_path(value, origin)
        return base / Path(value).expanduser()
    return parse_text(option, value, origin)


def from_environment(option: Option, environ: Mapping[str, str]) -> Any:
    """The option's value from its environment twin, or None if unset (or empty)."""
    name = option.env
    raw = environ.get(name) if name else None
    if not raw:
        return None
    return parse_text(option, raw, name or option.name)


def job_section(data: Mapping[str, Any], origin: str, base: Path) -> dict[str, Any]:
    """The ``[job]`` table of a config file, each value parsed by its option."""
    section = data.get("job", {})
    if not isinstance(section, dict):
        raise UsageError(f"config {origin}: job is expected to be a table of options")
    values: dict[str, Any] = {}
    for key, value in section.items():
        where = f"config {origin}: job.{key}"
        if key == "pg_env":
            values[key] = _string(value, where)
        elif key in JOB_KEYS:
            values[key] = parse_job_value(BY_NAME[key], value, where, base)
        else:
            near = difflib.get_close_matches(key, sorted(JOB_KEYS), n=1)
            guess = f" (did you mean {near[0]!r}?)" if near else ""
            raise UsageError(
                f"config {origin}: unknown key job.{key}{guess}",
                hint="the [job] keys are the options' names with underscores",
            )
    targets = [k for k in ("pg", "pg_env", "pg_file") if k in values]
    if len(targets) > 1:
        raise UsageError(f"config {origin}: job has {', '.join(targets)}; give only one")
    return values


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{where} is expected to be a non-empty string")
    return value


def markdown_table() -> str:
    """The README's option table, generated from :data:`OPTIONS`."""
    lines = ["| option | env | default | meaning |", "|---|---|---|---|"]
    for option in OPTIONS:
        flags = ", ".join(
            f"`{flag}{' ' + option.metavar if option.metavar else ''}`"
            for flag in option.flags
            if flag.startswith("--")
        )
        env = f"`{option.env}`" if option.env else ""
        meaning = option.help + (
            f"; one of {', '.join(f'`{c}`' for c in option.choices)}" if option.choices else ""
        )
        lines.append(f"| {flags} | {env} | {option.default_text()} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m asyncmig.cli.settings --markdown")
    sys.stdout.write(markdown_table())
