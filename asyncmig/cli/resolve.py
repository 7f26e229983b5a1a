"""Each option's value, from the first place that sets it: command line, environment,
job file (the ``[job]`` table of ``--config``), declared default.

The target URL has three more spellings (``--pg-file``, and ``pg_env`` in the job
file, naming the variable that holds it); the highest-precedence one wins, and two at
the same level are refused rather than one silently ignored. The URL read from a file
or a variable is never shown: only its scrubbed form is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncmig.cli import settings
from asyncmig.errors import UsageError
from asyncmig.target import files

# where a value came from, highest precedence first
LEVELS = ("command line", "environment", "job file", "default")


@dataclass(frozen=True)
class Resolved:
    """The effective options of one command, and where each came from."""

    values: Mapping[str, Any]
    origins: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def given(self) -> dict[str, str]:
        """Options not left at their default, with their origin (for the log)."""
        return {k: v for k, v in self.origins.items() if v != "default"}


def resolve(names: Iterable[str], given: Mapping[str, Any], environ: Mapping[str, str]) -> Resolved:
    """``given`` holds the values typed on the command line (already parsed)."""
    used = set(names)
    values: dict[str, Any] = {o.name: o.default for o in settings.OPTIONS}
    origins: dict[str, str] = {}
    config = _pick(settings.BY_NAME["config"], given, environ, {}) if "config" in used else None
    job = read_job(config[0]) if config is not None else {}
    for option in settings.OPTIONS:
        if option.name not in used:
            continue
        picked = _pick(option, given, environ, job)
        if picked is not None:
            values[option.name], origins[option.name] = picked
        else:
            origins[option.name] = "default"
    if "pg" in used:
        values["pg"], origins["pg"] = target_url(given, environ, job)
    return Resolved(values, origins)


def _pick(
    option: settings.Option,
    given: Mapping[str, Any],
    environ: Mapping[str, str],
    job: Mapping[str, Any],
) -> tuple[Any, str] | None:
    if option.name in given:
        return given[option.name], "command line"
    from_env = settings.from_environment(option, environ)
    if from_env is not None:
        return from_env, "environment"
    if option.name in job:
        return job[option.name], "job file"
    return None


def read_job(path: Path) -> dict[str, Any]:
    from asyncmig.plan.overrides import read_toml

    return settings.job_section(read_toml(path), str(path), path.parent)


def target_url(
    given: Mapping[str, Any], environ: Mapping[str, str], job: Mapping[str, Any]
) -> tuple[str | None, str]:
    """The target URL from --pg, --pg-file or the job's pg_env, by precedence."""
    candidates: list[tuple[int, str, str]] = []  # (level, spelling, url)
    for name, env in (("pg", "ASYNCMIG_PG"), ("pg_file", "ASYNCMIG_PG_FILE")):
        flag = settings.BY_NAME[name].flags[0]
        if name in given:
            candidates.append((0, flag, _value(name, given[name], flag)))
        elif environ.get(env):
            candidates.append((1, env, _value(name, environ[env], env)))
        elif name in job:
            candidates.append((2, f"job.{name}", _value(name, job[name], f"job.{name}")))
    if "pg_env" in job:
        candidates.append((2, "job.pg_env", from_variable(job["pg_env"], environ)))
    if not candidates:
        return None, "default"
    level = min(c[0] for c in candidates)
    chosen = [c for c in candidates if c[0] == level]
    if len(chosen) > 1:
        raise UsageError(
            f"the target is given twice ({' and '.join(c[1] for c in chosen)})",
            hint="give only one of them",
        )
    _, spelling, url = chosen[0]
    if not url.strip():  # e.g. --pg "$URL" with URL unset: never the embedded server instead
        raise UsageError(
            f"{spelling} is empty",
            hint="give postgresql://user:password@host:port/database, or leave it out "
            "to use the embedded server",
        )
    return url, LEVELS[level]


def _value(name: str, value: Any, origin: str) -> str:
    return read_url_file(Path(value), origin) if name == "pg_file" else str(value)


URL_FILE_LIMIT = 64 * 1024  # a URL with every parameter libpq knows is far shorter


def read_url_file(path: Path, origin: str) -> str:
    """A URL kept in a file (a mounted secret): surrounding whitespace, such as the
    trailing newline most editors and ``echo`` add, is not part of it."""
    try:
        text = files.small_text(path, URL_FILE_LIMIT).strip()
    except OSError as exc:
        raise UsageError(
            f"cannot read the target URL from {path} ({origin}): {exc.strerror or exc}"
        ) from None
    except files.NotSmallText as exc:
        raise UsageError(f"cannot read the target URL from {path} ({origin}): {exc}") from None
    if not text:
        raise UsageError(f"cannot read the target URL from {path} ({origin}): the file is empty")
    lines = len(text.splitlines())
    if lines > 1:  # never shown: each line may hold a password
        raise UsageError(
            f"cannot read the target URL from {path} ({origin}): the file holds {lines} "
            "lines, a URL is one",
            hint="keep one URL (or one key=value string) in the file",
        )
    return text


def from_variable(name: str, environ: Mapping[str, str]) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise UsageError(
            f"the job file's pg_env names {name}, which is not set",
            hint=f"set {name} to the target URL, or change pg_env",
        )
    return value
