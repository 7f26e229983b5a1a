"""What a process of asyncmig imports at its start (every command, every worker)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import asyncmig.load.worker, structlog
print("rich" in sys.modules)
import structlog.dev
structlog.dev.ConsoleRenderer(colors=False)  # works without rich: plain exceptions
from rich.console import Console  # anyone else still gets rich
print(type(Console()).__name__)
"""


def test_structlog_is_not_given_rich_but_asyncmig_is() -> None:
    """structlog imports rich (0.1 s) for output asyncmig's logs never use: a worker's
    imports leave it out, and rich still imports for the progress bars."""
    done = subprocess.run(
        [sys.executable, "-P", "-c", PROBE], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "Console"]
