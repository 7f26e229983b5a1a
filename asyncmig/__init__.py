"""asyncmig: move a SQLite database into PostgreSQL, typed, fast and verified."""

from __future__ import annotations

import sys
from typing import Any

__version__ = "0.1.0"


class _RichNotForStructlog:
    """An import hook that refuses ``rich`` to structlog, and only to structlog.

    structlog imports rich whenever it is installed, for coloured exception output and
    pretty locals that asyncmig's logs never use (they carry no tracebacks): 0.10-0.15 s
    of every process's start (the command, each load worker), measured, against a
    whole ``asyncmig sync`` of a few seconds. structlog then falls back to plain output.
    asyncmig's own progress bars import rich as usual (this hook lets any other
    importer through), and nothing changes once rich is loaded."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name != "rich":
            return
        frame = sys._getframe(1)  # who imports it: only the stack knows
        while frame is not None:
            importer = str(frame.f_globals.get("__name__", ""))
            if importer == "structlog" or importer.startswith("structlog."):
                raise ModuleNotFoundError("rich is not loaded for structlog", name=name)
            if not importer.startswith(("importlib", "_frozen_importlib")):
                return  # anyone else's import of rich: as usual
            frame = frame.f_back  # type: ignore[assignment]


if not any(isinstance(f, _RichNotForStructlog) for f in sys.meta_path):
    sys.meta_path.insert(0, _RichNotForStructlog())
