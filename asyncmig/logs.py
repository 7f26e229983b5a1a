"""structlog configuration, done once at the entry point.

On a terminal: coloured console lines. Otherwise (a container, a scheduled job) or
with ``--log-format json``: one JSON object per line with a UTC ISO timestamp.
Library modules only call ``structlog.get_logger()``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog


def _json_dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure(*, log_format: str = "auto", verbose: bool = False) -> None:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    level = logging.DEBUG if verbose else logging.WARNING
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_json:
        processors += [structlog.processors.dict_tracebacks,
                       structlog.processors.JSONRenderer(serializer=_json_dumps)]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
