"""Rollback as the reference guide promises it: check, back up, then undo.

After a run the application inserts, updates and deletes rows and builds a view on a
migrated table; `rollback --check` must name each change, `rollback` must refuse, and
`rollback --force` must back everything up (restorable with psql into an empty
database, the application's rows included) before it removes the run's tables.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from asyncmig.rollback import RollbackManager
from asyncmig.target import tablestate
from bench.gen_2truths import generate
from tests.fix_cli import Cli, one_error_line, valid
from tests.fix_faults import start
from tests.fix_pg import create_database, drop_database, execute, fetch
from tests.sources import build_kitchen_sink

PSQL = shutil.which("psql") or "/usr/bin/psql"
TABLES = {
    "user": "id",
    "group": '"group id"',
    "membership": "user_id, group_id",
    "values": "id",
    "empty_auto": "id",
    "chicken": "id",
    "egg": "id",
}
GUIDE_URL = "postgresql://user:pass@localhost/db"


async def contents(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows (and both views'), as values, in key order."""
    conn = await asyncpg.connect(dsn)
    try:
        found = {
            name: [tuple(r) for r in await conn.fetch(f'SELECT * FROM "{name}" ORDER BY {key}')]
            for name, key in TABLES.items()
        }
        for view in ("active", "app_view"):
            found[view] = [tuple(r) for r in await conn.fetch(f"SELECT * FROM {view} ORDER BY 1")]
        return found
    finally:
        await conn.close()


APPLICATION_WRITES = (
    "INSERT INTO \"user\" (id, email, \"Display Name\") VALUES (10, 'dan@example.com', 'Dan')",
    'UPDATE "user" SET "Display Name" = \'Ann B.\' WHERE id = 1',
    'DELETE FROM "values" WHERE id = 4',
    "DELETE FROM membership WHERE user_id = 2 AND group_id = 2",
    'CREATE VIEW app_view AS SELECT id, "Display Name" FROM "user" WHERE id < 100',
)


def test_check_refuse_force_backup_restore(
    cli: Cli, tmp_path: Path, pg_dsn: str, pg_server: str
) -> None:
    """The issue's scenario end to end, through the command line."""
    source = build_kitchen_sink(tmp_path / "app.db")
    done = cli("run", "--sqlite", str(source), "--pg", pg_dsn, log_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    clean = cli("rollback", "--pg", pg_dsn, "--run", "1", "--check", log_dir=tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.rstrip().endswith("safe to roll back: yes")

    asyncio.run(execute(pg_dsn, *APPLICATION_WRITES))
    with psycopg.connect(pg_dsn) as reader:  # an open transaction that read a table
        reader.execute('SELECT count(*) FROM "values"')
        checked = cli("rollback", "--pg", pg_dsn, "--run", "1", "--check", log_dir=tmp_path)
        pid = reader.info.backend_pid
    assert checked.returncode == 10, checked.stdout + checked.stderr
    out = checked.stdout
    assert "warning: table user: 1 row inserted, 1 row updated since run 1 (rows 3 -> 4" in out
    assert "warning: table values: 1 row deleted since run 1 (rows 5 -> 4" in out
    assert "warning: table membership: 1 row deleted since run 1 (rows 3 -> 2" in out
    assert "warning: view app_view depends on table user and was created after run 1" in out
    assert f"warning: session {pid} " in out and "holds locks on table values" in out
    for untouched in ("group", "chicken", "egg", "empty_auto"):
        assert f"table {untouched}:" not in out
    assert out.rstrip().endswith("safe to roll back: no")
    as_json = valid(
        cli(
            "rollback",
            "--pg",
            pg_dsn,
            "--run",
            "1",
            "--check",
            "--output",
            "json",
            log_dir=tmp_path,
        ).stdout
    )
    by_table = {t["table"]: t for t in as_json["tables"]}
    assert (
        by_table["user"]["inserted"],
        by_table["user"]["updated"],
        by_table["user"]["deleted"],
    ) == (1, 1, 0)
    assert as_json["safe_to_rollback"] is False and as_json["status"] == "rollback_unsafe"
    assert as_json["warnings"] == [  # the same, but for the reader's session, closed since
        line.removeprefix("  warning: ")
        for line in out.splitlines()
        if line.startswith("  warning: ") and not line.startswith("  warning: session")
    ]

    refused = cli("rollback", "--pg", pg_dsn, "--run", "1", log_dir=tmp_path)
    assert refused.returncode == 10, refused.stderr
    assert refused.stderr.count("\n") == 1 and "cannot roll back run 1 safely" in refused.stderr
    assert "table user: 1 row inserted" in refused.stdout
    refused_json = cli(
        "rollback", "--pg", pg_dsn, "--run", "1", "--output", "json", log_dir=tmp_path
    )
    document = valid(refused_json.stdout)
    assert (refused_json.returncode, document["error"]["class"]) == (10, "RollbackRefused")
    assert document["warnings"] == as_json["warnings"]
    assert (
        cli("rollback", "--pg", pg_dsn, "--run", "1", "--no-backup", log_dir=tmp_path).returncode
        == 2
    )
    before = asyncio.run(contents(pg_dsn))

    backups = tmp_path / "backups"
    forced = cli(
        "rollback",
        "--pg",
        pg_dsn,
        "--run",
        "1",
        "--force",
        "--backup-dir",
        str(backups),
        log_dir=tmp_path,
    )
    assert forced.returncode == 0, forced.stderr
    assert (
        rows(
            pg_dsn,
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON "
            "n.oid = c.relnamespace WHERE nspname = 'public'",
        )
        == []
    )
    [run] = rows(pg_dsn, "SELECT status, backup_file, backup_sha256 FROM asyncmig.runs")
    assert run[0] == "rolled back"
    [path] = backups.iterdir()
    assert re.fullmatch(r"postgres_backup_before_rollback_\d{8}_\d{6}\.sql", path.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert run[1:] == (str(path), digest)
    assert f"backup written: {path} (sha256 {digest}" in forced.stdout
    assert "warning (forced): table user: 1 row inserted" in forced.stdout

    with restored_into_fresh(path, pg_server) as fresh:
        assert asyncio.run(contents(fresh)) == before  # the application's rows included
        assert before["user"][-1][:3] == (10, "dan@example.com", "Dan")
        assert 4 not in [row[0] for row in before["values"]]
        # identity (where it stood: the application gave 10 itself), keys, foreign keys
        assert rows(fresh, "INSERT INTO \"user\" (email) VALUES ('eve@x.org') RETURNING id") == [
            (6,)
        ]
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            asyncio.run(execute(fresh, "INSERT INTO membership VALUES (99, 1, 'member')"))


@contextmanager
def restored_into_fresh(backup: Path, server: str) -> Iterator[str]:
    """A new database the backup was restored into with psql -f (dropped afterwards)."""
    if not Path(PSQL).exists():
        pytest.skip("psql is not installed: the restore cannot be tried")
    name, fresh = asyncio.run(create_database(server))
    try:
        restored = subprocess.run(
            [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", fresh, "-f", str(backup)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert restored.returncode == 0, restored.stderr
        yield fresh
    finally:
        asyncio.run(drop_database(server, name))


def guide_examples() -> list[str]:
    """The README's three Python examples, as the reference guide writes them."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = re.findall(
        r'python -c "\n(from asyncmig\.rollback import RollbackManager\n.*?)"\n', readme, re.DOTALL
    )
    assert len(blocks) == 3
    return [b.replace('\\"', '"') for b in blocks]


def run_example(code: str, dsn: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code.replace(GUIDE_URL, dsn)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_guides_three_python_calls(cli: Cli, tmp_path: Path, pg_dsn: str) -> None:
    """validate_rollback_safety, create_backup_before_rollback, perform_safe_rollback,
    run as the README (and the reference guide) writes them: safe, then unsafe."""
    source = build_kitchen_sink(tmp_path / "app.db")
    logs, work = tmp_path / "logs", tmp_path / "work"
    work.mkdir()
    check, backup, perform = guide_examples()

    def migrate(run_id: int) -> None:
        assert cli("run", "--sqlite", str(source), "--pg", pg_dsn, log_dir=logs).returncode == 0
        shutil.copy(
            next(logs.glob(f"asyncmig_rollback_run{run_id}-*.sql")),
            work / "rollback_postgres_schema.sql",
        )

    migrate(1)
    assert run_example(check, pg_dsn, work) == "Safe to rollback: True\n"
    printed = run_example(backup, pg_dsn, work).strip()
    assert printed.startswith("Backup created: ")
    backup_file = Path(printed.removeprefix("Backup created: "))
    assert backup_file.parent == work and backup_file.name.startswith("postgres_backup_before")
    assert 'COPY "public"."values" (' in backup_file.read_text()
    assert run_example(perform, pg_dsn, work) == "Rollback success: True\n"
    assert _statuses(pg_dsn) == [(1, "rolled back")]

    migrate(2)
    asyncio.run(execute(pg_dsn, 'DELETE FROM "values" WHERE id = 5'))
    out = run_example(check, pg_dsn, work)
    assert out == (
        "Safe to rollback: False\nWarning: table values: 1 row deleted since run 2 "
        "(rows 5 -> 4, checksum differs)\n"
    )
    assert run_example(perform, pg_dsn, work) == "Rollback success: False\n"
    assert _statuses(pg_dsn) == [(1, "rolled back"), (2, "succeeded")]


def _statuses(dsn: str) -> list[tuple[Any, ...]]:
    return rows(dsn, "SELECT id, status FROM asyncmig.runs ORDER BY id")


def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in fetch(dsn, sql)]


def test_a_sync_since_the_run_is_named_and_forced_past(
    cli: Cli, tmp_path: Path, pg_dsn: str
) -> None:
    """A sync writes into the run's tables and has no rollback of its own: the check names
    it (and its rows), and only --force rolls the run back, after the backup."""
    source = build_kitchen_sink(tmp_path / "app.db")
    assert cli("run", "--sqlite", str(source), "--pg", pg_dsn, log_dir=tmp_path).returncode == 0
    with sqlite3.connect(source) as conn:
        conn.execute("INSERT INTO chicken VALUES (3, NULL)")
    conn.close()
    synced = cli("sync", "--sqlite", str(source), "--pg", pg_dsn, log_dir=tmp_path)
    assert synced.returncode == 0, synced.stderr
    checked = cli("rollback", "--pg", pg_dsn, "--run", "1", "--check", log_dir=tmp_path)
    assert checked.returncode == 10, checked.stdout + checked.stderr
    assert (
        "warning: a later sync (run 2) into schema public may have written the tables of run 1"
    ) in checked.stdout
    assert "warning: table chicken: 1 row inserted since run 1 (rows 2 -> 3" in checked.stdout
    assert cli("rollback", "--pg", pg_dsn, "--run", "1", log_dir=tmp_path).returncode == 10
    forced = cli("rollback", "--pg", pg_dsn, "--run", "1", "--force", log_dir=tmp_path)
    assert forced.returncode == 0, forced.stderr
    [backup] = tmp_path.glob("postgres_backup_before_rollback_*.sql")
    assert "\n3\t\\N\n" in backup.read_text()  # the synced chicken, in its COPY block
    assert _statuses(pg_dsn) == [(1, "rolled back"), (2, "succeeded")]


HOSTILE = 'we"ird\nDROP TABLE victim; --'


def test_a_name_with_a_line_break_and_a_quote_is_backed_up_on_one_line(
    cli: Cli, tmp_path: Path, pg_dsn: str, pg_server: str
) -> None:
    """Names in the backup file are quoted here (U& form for a line break), like every
    other generated script: no line of the file starts with the name's second line, and
    psql -f restores the same values under the same names."""
    source = tmp_path / "hostile.db"
    with sqlite3.connect(source) as conn:
        conn.execute(
            f'CREATE TABLE "{HOSTILE.replace(chr(34), 2 * chr(34))}" (id INTEGER PRIMARY KEY, '
            f'"co""l\nx" TEXT NOT NULL DEFAULT \'a\nb\', n INTEGER)'
        )
        conn.execute(f'CREATE INDEX "ix\n""{1}" ON "{HOSTILE.replace(chr(34), 2 * chr(34))}" (n)')
        conn.executemany(
            f'INSERT INTO "{HOSTILE.replace(chr(34), 2 * chr(34))}" VALUES (?, ?, ?)',
            [(1, "line\nbreak", 7), (2, "quote ' \" \\", None), (3, "a\nb", 9)],
        )
    conn.close()
    assert cli("run", "--sqlite", str(source), "--pg", pg_dsn, log_dir=tmp_path).returncode == 0
    path = Path(str(RollbackManager(pg_dsn, backup_dir=tmp_path).create_backup_before_rollback()))
    text = path.read_text()
    assert [line for line in text.splitlines() if line.startswith(("DROP", '"', "b'"))] == []
    assert 'U&"we""ird\\000aDROP TABLE victim; --"' in text  # the table, on one line
    query = 'SELECT id, "co""l\nx", n FROM public."we""ird\nDROP TABLE victim; --" ORDER BY id'
    before = rows(pg_dsn, query)
    assert before == [(1, "line\nbreak", 7), (2, "quote ' \" \\", None), (3, "a\nb", 9)]
    with restored_into_fresh(path, pg_server) as fresh:
        assert rows(fresh, query) == before
        indexes = "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        assert rows(fresh, indexes) == rows(pg_dsn, indexes)
        assert ('ix\n"1',) in rows(fresh, indexes)
        insert = 'INSERT INTO public."we""ird\nDROP TABLE victim; --" (id, n) VALUES (4, 1) '
        assert rows(fresh, insert + 'RETURNING "co""l\nx"') == [("a\nb",)]  # the default


def test_the_manager_without_a_run_takes_the_latest_run_with_a_rollback(
    tmp_path: Path, pg_dsn: str, cli: Cli
) -> None:
    """A sync after the run succeeds too but keeps no rollback: RollbackManager(dsn)
    works on the run, not on the sync."""
    source = tmp_path / "small.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(20)])
    conn.close()
    assert cli("run", "--sqlite", str(source), "--pg", pg_dsn, log_dir=tmp_path).returncode == 0
    assert cli("sync", "--sqlite", str(source), "--pg", pg_dsn, log_dir=tmp_path).returncode == 0
    statuses = rows(pg_dsn, "SELECT id, command, status FROM asyncmig.runs ORDER BY id")
    assert statuses == [(1, "run", "succeeded"), (2, "sync", "succeeded")]
    report = RollbackManager(pg_dsn, backup_dir=tmp_path).validate_rollback_safety()
    assert report.run_id == 1


def test_checksums_hash_each_row_and_an_older_runs_text_checksum_still_compares(
    cli: Cli, tmp_path: Path, pg_dsn: str
) -> None:
    """A run records each table's checksum as the sum of hash_record_extended of its
    rows (PostgreSQL 14 on), and says so. A column added with a default writes no row
    (no transaction id moves) and still makes the check name that table alone. A
    history an older asyncmig wrote (the rows' text summed, no kind) is compared with
    the text checksum now; a column changed to ``json`` (no hash) makes its table
    differ."""
    source = build_kitchen_sink(tmp_path / "app.db")
    assert cli("run", "--sqlite", str(source), "--pg", pg_dsn, log_dir=tmp_path).returncode == 0
    version = int(fetch(pg_dsn, "SHOW server_version_num")[0][0])
    kinds = dict(rows(pg_dsn, "SELECT table_name, checksum_kind FROM asyncmig.run_tables"))
    assert set(kinds) == set(TABLES) and set(kinds.values()) == {
        "record" if version >= 140000 else "text"
    }

    def check() -> str:
        done = cli("rollback", "--pg", pg_dsn, "--run", "1", "--check", log_dir=tmp_path)
        assert done.returncode in (0, 10), done.stderr
        return done.stdout

    assert check().rstrip().endswith("safe to roll back: yes")
    asyncio.run(execute(pg_dsn, 'ALTER TABLE "values" ADD COLUMN extra integer DEFAULT 5'))
    out = check()
    assert "warning: table values: changed since run 1 (rows 5 -> 5, checksum differs)" in out
    assert out.count("warning: table") == 1 and out.rstrip().endswith("safe to roll back: no")
    asyncio.run(execute(pg_dsn, 'ALTER TABLE "values" DROP COLUMN extra'))
    assert check().rstrip().endswith("safe to roll back: yes")

    # as an older asyncmig recorded it: the sum of the rows' text, no kind
    asyncio.run(
        execute(
            pg_dsn,
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 1; "
            "SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'; "
            "UPDATE asyncmig.run_tables SET checksum_kind = NULL, checksum = "
            '(SELECT coalesce(sum(hashtextextended(t::text, 0)), 0) FROM public."user" t) '
            "WHERE table_name = 'user'",
        )
    )
    assert check().rstrip().endswith("safe to roll back: yes")
    asyncio.run(
        execute(
            pg_dsn,
            "UPDATE asyncmig.run_tables SET checksum = checksum + 1 WHERE table_name = 'user'",
        )
    )
    assert "warning: table user: changed since run 1" in check()
    asyncio.run(
        execute(
            pg_dsn,
            "UPDATE asyncmig.run_tables SET checksum = checksum - 1 WHERE table_name = 'user'",
        )
    )

    asyncio.run(execute(pg_dsn, 'ALTER TABLE "values" ALTER COLUMN doc TYPE json'))
    out = check()
    assert "warning: table values: " in out and "checksum differs" in out
    assert out.count("warning: table") == 1
    assert asyncio.run(_state_kinds(pg_dsn)) == ("text", "record" if version >= 140000 else "text")


async def test_a_column_named_like_the_checksums_alias_does_not_hide_the_row(
    pg_dsn: str,
) -> None:
    """The checksum's scan names its table ``t``: a column of that name must not stand
    in for the row (it did for the text checksum before)."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE public.tcol (id integer, t integer)")
        await conn.execute("INSERT INTO public.tcol VALUES (1, 5)")
        async with conn.transaction():
            before = [
                await tablestate.table_state(conn, "public", "tcol", kind)
                for kind in tablestate.HASHES
            ]
        await conn.execute("UPDATE public.tcol SET id = 2")  # t unchanged
        async with conn.transaction():
            after = [
                await tablestate.table_state(conn, "public", "tcol", kind)
                for kind in tablestate.HASHES
            ]
    finally:
        await conn.close()
    assert [s.rows for s in before] == [1, 1]
    for old, new in zip(before, after, strict=True):
        assert old.checksum != new.checksum, old.kind


async def _state_kinds(dsn: str) -> tuple[str, str]:
    """The checksum a run would record now for "values" (a json column) and "user"."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            found = [
                await tablestate.table_state(conn, "public", name) for name in ("values", "user")
            ]
        return found[0].kind, found[1].kind
    finally:
        await conn.close()


def test_a_rollback_killed_while_writing_its_backup_leaves_no_backup_to_trust(
    cli: Cli, tmp_path: Path, pg_dsn: str
) -> None:
    """``kill -9`` while the backup is being written: what is left is named
    ``....sql.partial`` (it was a cut-short ``.sql`` that passed for a backup), nothing is
    rolled back; the re-run writes a whole ``.sql`` (ending in COMMIT) and rolls back."""
    source = tmp_path / "app.db"
    generate(source, 60_000, seed=11)
    logs = tmp_path / "logs"
    assert cli("run", "--sqlite", str(source), "--pg", pg_dsn, log_dir=logs).returncode == 0
    backups = tmp_path / "backups"
    argv = ("rollback", "--pg", pg_dsn, "--run", "1", "--force", "--backup-dir", str(backups))
    process = start(*argv)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        partial = list(backups.glob("*.sql.partial")) if backups.exists() else []
        if partial and partial[0].stat().st_size > 0:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    process.communicate(timeout=60)
    if process.returncode != -signal.SIGKILL:
        pytest.skip("the backup was written before the kill landed")
    assert list(backups.glob("*.sql")) == []  # nothing that passes for a whole backup
    assert len(list(backups.glob("*.sql.partial"))) == 1
    assert fetch(pg_dsn, "SELECT status FROM asyncmig.runs WHERE id = 1")[0][0] == "succeeded"
    again = cli(*argv, log_dir=logs)
    assert again.returncode == 0, again.stdout + again.stderr
    (whole,) = backups.glob("*.sql")
    assert whole.read_text().rstrip().endswith("COMMIT;")
    assert fetch(pg_dsn, "SELECT status FROM asyncmig.runs WHERE id = 1")[0][0] == "rolled back"


def test_a_backup_directory_that_cannot_be_made_is_exit_7(
    cli: Cli, tmp_path: Path, pg_dsn: str
) -> None:
    """A file where the directory should be, or a path under one: an internal error
    (exit 70) before; exit 7, nothing rolled back."""
    source = build_kitchen_sink(tmp_path / "app.db")
    logs = tmp_path / "logs"
    assert cli("run", "--sqlite", str(source), "--pg", pg_dsn, log_dir=logs).returncode == 0
    blocker = tmp_path / "a file"
    blocker.write_text("not a directory")
    for where in (blocker, blocker / "below"):
        argv = ("rollback", "--pg", pg_dsn, "--run", "1", "--force", "--backup-dir", str(where))
        refused = cli(*argv, log_dir=logs)
        assert refused.returncode == 7, refused.stderr
        assert "nothing was rolled back" in one_error_line(refused.stderr)
    assert fetch(pg_dsn, "SELECT status FROM asyncmig.runs WHERE id = 1")[0][0] == "succeeded"
