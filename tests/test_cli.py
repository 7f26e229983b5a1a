"""The command line as a user meets it: one-line errors, exit codes, no secrets shown.

In-process (``run_main``): what is checked is the exit code and the output.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from asyncmig.target import conninfo
from asyncmig.target.connect import scrub
from tests.fix_cli import RunMain, assert_one_line_error
from tests.fix_pg import execute, fetch, with_database
from tests.sources import build_kitchen_sink


def test_missing_file(run_main: RunMain, tmp_path: Path) -> None:
    """A path that does not exist: exit 3 and say so."""
    result = run_main(
        "run", "--sqlite", str(tmp_path / "nope.db"), "--pg", "postgresql://x@127.0.0.1:1/x"
    )
    assert_one_line_error(result, 3, "no such file")


def test_not_a_sqlite_file(run_main: RunMain, tmp_path: Path) -> None:
    """A text file is refused before anything touches PostgreSQL."""
    path = tmp_path / "notes.db"
    path.write_text("hello, this is not a database\n" * 10)
    result = run_main("plan", "--sqlite", str(path))
    assert_one_line_error(result, 3, "not a SQLite database")


def test_corrupt_sqlite_file(run_main: RunMain, tmp_path: Path) -> None:
    """A database with a damaged page is reported as corrupt, not as a traceback."""
    path = build_kitchen_sink(tmp_path / "corrupt.db")
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # overwrite the second page
    path.write_bytes(bytes(data))
    result = run_main("plan", "--sqlite", str(path))
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "corrupt" in result.stderr or "malformed" in result.stderr


def test_unreachable_server(run_main: RunMain, tmp_path: Path) -> None:
    """Nothing listens on port 1: a one-line connection error without the password."""
    source = build_kitchen_sink(tmp_path / "a.db")
    result = run_main(
        "run", "--sqlite", str(source), "--pg", "postgresql://me:s3cret-pw@127.0.0.1:1/db"
    )
    assert_one_line_error(result, 4, "cannot connect to postgresql://me:***@127.0.0.1:1/db")
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_missing_database(run_main: RunMain, tmp_path: Path, pg_server: str) -> None:
    source = build_kitchen_sink(tmp_path / "a.db")
    result = run_main("run", "--sqlite", str(source), "--pg", with_database(pg_server, "nope_db"))
    assert_one_line_error(result, 4, "the database does not exist")


def test_wrong_password(
    run_main: RunMain, tmp_path: Path, pg_dsn: str, password_role: str | None
) -> None:
    """A wrong password is reported as such, and the password never appears in the output."""
    if password_role is None:
        pytest.skip("needs a server whose authentication the tests configure")
    asyncio.run(
        execute(
            pg_dsn,
            f"DROP ROLE IF EXISTS {password_role}",
            f"CREATE ROLE {password_role} LOGIN PASSWORD 'right-one'",
        )
    )
    source = build_kitchen_sink(tmp_path / "a.db")
    dsn = pg_dsn.replace("postgres:@", f"{password_role}:Wr0ng-pw@", 1)
    assert "Wr0ng-pw" in dsn
    result = run_main("run", "--sqlite", str(source), "--pg", dsn)
    assert_one_line_error(result, 4, "password authentication failed")
    assert "Wr0ng-pw" not in result.stderr + result.stdout


def test_run_prints_a_summary_and_exits_zero(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    source = build_kitchen_sink(tmp_path / "a.db")
    result = run_main("run", "--sqlite", str(source), "--pg", pg_dsn)
    assert result.returncode == 0, result.stderr
    assert "values" in result.stdout and "checks passed" in result.stdout
    again = run_main("run", "--sqlite", str(source), "--pg", pg_dsn)
    assert_one_line_error(again, 4, "already exists")


def test_an_empty_path_is_a_usage_error(run_main: RunMain) -> None:
    """``--sqlite ""`` (an unset variable in a script) is refused as empty, not read as
    the working directory."""
    assert_one_line_error(run_main("plan", "--sqlite", ""), 2, "--sqlite is empty")


def test_env_configuration_and_bad_values(run_main: RunMain, tmp_path: Path) -> None:
    """Options come from ASYNCMIG_* variables; bad values are usage errors (exit 2)."""
    source = build_kitchen_sink(tmp_path / "a.db")
    result = run_main("plan", env={"ASYNCMIG_SQLITE": str(source), "ASYNCMIG_JOBS": "zero"})
    assert_one_line_error(result, 2, "ASYNCMIG_JOBS is expected to be a whole number")
    ok = run_main("plan", "--format", "json", env={"ASYNCMIG_SQLITE": str(source)})
    assert ok.returncode == 0, ok.stderr
    assert '"target_type": "jsonb"' in ok.stdout


def test_scrub_hides_passwords() -> None:
    assert scrub("postgresql://u:pw@h:5/d") == "postgresql://u:***@h:5/d"
    assert scrub("postgresql://u@h/d?password=pw&sslmode=require") == (
        "postgresql://u@h/d?password=***&sslmode=require"
    )
    assert scrub("host=h password=pw user=u") == "host=h password=*** user=u"


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [  # spellings libpq reads a secret from, each once shown in clear
        (r"host=h password=Q\ S1 user=u", "host=h password=*** user=u"),  # escaped blank
        ("postgresql://u@h/d?pass%77ord=S2&x=1", "postgresql://u@h/d?pass%77ord=***&x=1"),
        ("host=h sslpassword=S3 user=u", "host=h sslpassword=*** user=u"),  # key passphrase
        ("postgresql://u@h/d?sslpassword=S4", "postgresql://u@h/d?sslpassword=***"),
        (
            "postgresql://u@h/d?password=S5#6&sslmode=require",
            "postgresql://u@h/d?password=***&sslmode=require",
        ),
        ("host=h PassWord = 'S 7\\\\' user=u", "host=h PassWord = *** user=u"),
    ],
)
def test_scrub_hides_every_spelling_of_a_secret(dsn: str, shown: str) -> None:
    assert scrub(dsn) == shown


def test_an_escaped_blank_in_a_key_value_string_is_part_of_the_value() -> None:
    """libpq reads ``password=Q\\ S`` as ``Q S``; asyncmig refused the string."""
    assert conninfo.parse(r"host=h password=Q\ S user=u\\x") == {
        "host": "h",
        "password": "Q S",
        "user": "u\\x",
    }


def test_a_bad_value_beyond_the_sample_names_its_row(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    """A malformed UUID deep in a large table stops the run with its key; nothing is left."""
    path = tmp_path / "ids.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE tokens (id INTEGER PRIMARY KEY, token_id TEXT)")
    conn.executemany(
        "INSERT INTO tokens VALUES (?, ?)",
        [(i, f"{i:08x}-d9cb-469f-a165-70867728950e") for i in range(1, 5001)],
    )
    conn.execute(
        "UPDATE tokens SET token_id = 'not-a-uuid-but-thirty-six-characters' WHERE id = 2500"
    )
    conn.commit()
    conn.close()
    result = run_main("run", "--sqlite", str(path), "--pg", pg_dsn, "--on-error", "fail")
    assert_one_line_error(result, 5, "tokens.token_id at key 2500")
    assert "not-a-uuid-but-thirty-six-characters" in result.stderr
    assert fetch(pg_dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == []
