from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.fix_pg", "tests.fix_cli"]

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")


def pytest_report_header(config: pytest.Config) -> str:
    dsn = os.environ.get("ASYNCMIG_TEST_DSN")
    return f"asyncmig tests: PostgreSQL {'from ASYNCMIG_TEST_DSN' if dsn else 'embedded'}"
