"""``--output json``: one JSON document on stdout, a contract scripts can rely on.

Every command prints the same envelope (schema: ``docs/output.schema.json``)::

    {"schema_version": 1, "asyncmig_version": "0.1.0", "command": "run",
     "status": "succeeded", "exit_code": 0, "run_id": 3,
     "tables": [...],          # plan order
     "checks": [...],          # each with structured "expected" and "found"
     "error": null}            # on failure: class, message, detail, hint, exit_code

plus the command's own fields (``plan``, ``runs``, ``preflight``, the run's totals).
A failure prints the envelope with its ``error`` on stdout too, so a script never gets
an empty stdout; the one-line error still goes to stderr. New fields may be added
without changing ``schema_version``; renaming or removing one changes it.

Writing to a closed pipe (``asyncmig ... | head``) ends quietly with the command's
own exit code: :func:`emit` points stdout at /dev/null once the reader is gone.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

import orjson

from asyncmig.errors import MigrationError

SCHEMA_VERSION = 1
STATUS = {0: "succeeded", 6: "checks_failed", 8: "loaded_with_rejects", 10: "rollback_unsafe"}


def package_version() -> str:
    # imported here: importlib.metadata costs every command's start, and only --version
    # and the JSON output need it
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asyncmig")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def status_of(exit_code: int) -> str:
    return STATUS.get(exit_code, "failed")


def error_data(exc: BaseException, exit_code: int) -> dict[str, Any]:
    if isinstance(exc, MigrationError):
        return {
            "class": type(exc).__name__,
            "message": exc.message,
            "detail": exc.detail,
            "hint": exc.hint,
            "exit_code": exit_code,
        }
    line = (str(exc).splitlines() or [type(exc).__name__])[0]
    return {
        "class": type(exc).__name__,
        "message": line,
        "detail": None,
        "hint": None,
        "exit_code": exit_code,
    }


def document(
    command: str,
    exit_code: int,
    *,
    run_id: int | None = None,
    tables: Sequence[Mapping[str, Any]] = (),
    checks: Sequence[Mapping[str, Any]] = (),
    error: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "asyncmig_version": package_version(),
        "command": command,
        "status": "error" if error else status_of(exit_code),
        "exit_code": exit_code,
        "run_id": run_id,
        "tables": list(tables),
        "checks": list(checks),
        "error": error,
        **fields,
    }


def render(data: Mapping[str, Any]) -> str:
    return orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode() + "\n"


def emit(text: str) -> None:
    """Write ``text`` to stdout; if the reader has gone (a closed pipe), stop quietly."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's own final flush cannot fail
    again (what the Python documentation advises for SIGPIPE)."""
    silence(sys.stdout)


def silence(stream: IO[str]) -> None:
    """Point ``stream``'s file descriptor at /dev/null (its reader has gone)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        # a stream that is not a real file (captured in a test) has nothing to flush
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


def closed_streams_to_devnull() -> None:
    """A command started with stdout or stderr closed (``>&-``) has ``sys.stdout`` None:
    printing its result failed after the work was done (exit 70). What it writes there
    goes to /dev/null instead; its exit code still says how it went."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 -- for the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 -- for the process
