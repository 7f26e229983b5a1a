"""structlog configuration, done once at the entry point.

Two destinations:

* the console (stderr): warnings only, or everything with ``--verbose``; coloured
  lines on a terminal, otherwise (a container, a scheduled job) or with
  ``--log-format json`` one JSON object per line;
* the run's log file (``migration_YYYYMMDD_HHMMSS.log``, JSON lines): every event,
  every warning and every type decision, whatever the console shows.

Library modules only call ``structlog.get_logger()``. Nothing logged carries a
password: targets are logged by their scrubbed URL only.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson
import structlog

from asyncmig.cli import output
from asyncmig.target import files

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _json_dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def log_file_stem(now: datetime | None = None) -> str:
    return f"migration_{(now or datetime.now()).strftime('%Y%m%d_%H%M%S')}"


class FileTee:
    """Write every event to the log file as JSON, then pass it on to the console.

    A write that fails (the disk full, the file system gone read-only) is not the
    run's failure: the data and the history in the target are what a run is for. The
    file is closed, :attr:`failed` keeps the error, one warning says so on the
    console, and the run goes on logging there only. A first event that cannot be
    written is not warned about: the command then refuses to start, in one line
    (:func:`file_error`).
    """

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.failed: OSError | None = None
        self.written = False

    def __call__(self, _logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        # closed: the command has ended, and a thread still logs (asyncio's child
        # watcher reaping a worker after the loop closed): the console alone shows it
        if self.failed is None and not self.stream.closed:
            try:
                self.stream.write(_json_dumps(event) + "\n")
                self.stream.flush()
                self.written = True
            except OSError as exc:
                self._give_up(exc)
            except ValueError:  # closed by the main thread between the test and the write
                if not self.stream.closed:
                    raise
        return event

    def _give_up(self, exc: OSError) -> None:
        self.failed = exc
        # the fd is released even when close's own flush fails again on the same full
        # disk: that second error is this one, reported just below
        with contextlib.suppress(OSError):
            self.stream.close()
        if self.written:
            structlog.get_logger(__name__).warning(
                "log_file_failed",
                error=exc.strerror or str(exc),
                note="the rest of this command logs to the console only",
            )


_tee: FileTee | None = None  # the current configuration's, when it writes a log file


def file_error() -> OSError | None:
    """The error that stopped the log file's writes, if one did."""
    return _tee.failed if _tee is not None else None


# what a log collector follows a scheduled job by: shown in JSON whatever the level
LIFECYCLE = frozenset(
    {"run_started", "phase_started", "progress", "run_finished", "run_failed", "run_warning"}
)


class ConsoleLevel:
    """Drop events below the console's level (the file has already seen them).

    In JSON mode the run's lifecycle events always pass: a container's logs must
    show a run start, progress and end without ``--verbose``.
    """

    def __init__(self, level: int, lifecycle: bool = False):
        self.level = level
        self.lifecycle = lifecycle

    def __call__(self, _logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        if self.lifecycle and event.get("event") in LIFECYCLE:
            return event
        if LEVELS.get(event.get("level", "info"), logging.INFO) < self.level:
            raise structlog.DropEvent
        return event


class Forward(logging.Handler):
    """Warnings of the libraries that log through the standard library (asyncio's
    child watcher, asyncpg, the embedded server's helper) passed on as events of this
    configuration: in the run's log file, and on the console as the console shows
    everything else (one JSON object per line in a container), never as a bare line
    of text in the middle of a JSON stream."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            structlog.get_logger(record.name).log(
                record.levelno,
                record.getMessage(),
                logger=record.name,
                exc_info=record.exc_info or False,
            )
        except Exception:  # noqa: BLE001 -- logging's own way to report a broken handler
            self.handleError(record)


def _forward_standard_logging() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, Forward)]:
        root.removeHandler(handler)
    root.addHandler(Forward(logging.WARNING))


class StderrLogger(structlog.PrintLogger):
    """structlog's PrintLogger, but a reader of stderr that went away (a log shipper
    restarting, ``2>&1 | head``) silences it instead of failing the run: a
    BrokenPipeError is a ConnectionError, and was taken for a lost connection to
    PostgreSQL (exit 4, the history row left ``running``).

    A line and its newline go out in one write: ``print`` writes them in two, and a
    worker process (unbuffered, ``python -u``) killed between them left half a line,
    onto which the run's own last line (``asyncmig: interrupted ...``) was written."""

    def msg(self, message: str) -> None:
        try:
            with self._lock:
                self._file.write(message + "\n")
                self._file.flush()
        except BrokenPipeError:
            output.silence(sys.stderr)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    """A logger on the current ``sys.stderr``, looked up when used, not when configured:
    whoever replaces stderr later (a test harness, an embedding application) is
    followed, and a closed stream is never written to."""
    return StderrLogger(sys.stderr)


def configure(
    *, log_format: str = "auto", verbose: bool = False, log_file: Path | None = None
) -> IO[str] | None:
    """Set up logging; returns the opened log file (the caller closes it at exit)."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    stream = io.TextIOWrapper(files.append(log_file), encoding="utf-8") if log_file else None
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    global _tee
    _tee = FileTee(stream) if stream is not None else None
    if _tee is not None:
        processors.append(_tee)
    processors.append(
        ConsoleLevel(logging.DEBUG if verbose else logging.WARNING, lifecycle=use_json)
    )
    if use_json:
        processors += [
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(serializer=_json_dumps),
        ]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    _forward_standard_logging()
    return stream
