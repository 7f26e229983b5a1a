"""Hostile input and careful operation: nothing a user supplies becomes SQL, nothing private leaks.

Each attack is built for real: a source path or schema name carrying a statement after a
line break, a view whose stored definition smuggles a second statement, passwords that
break URL parsers, files read by other users of the machine, and two target databases
migrated from one directory.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import tomllib
from pathlib import Path

import asyncpg
import pytest

from asyncmig import ddl
from asyncmig.cli import commands
from asyncmig.cli.settings import DeepCheck
from asyncmig.plan.overrides import parse_overrides
from asyncmig.quoting import requote, sql_comment
from asyncmig.run import make_plan, run_migration
from asyncmig.runstate import RunSettings
from asyncmig.target.connect import Target, scrub
from tests.fix_cli import RunMain, run_cli
from tests.fix_pg import create_database, drop_database
from tests.sources import small_source

INJECTED = "DROP TABLE public.victim"
EVIL_LINE = re.compile(r"^\s*DROP TABLE public\.victim", re.MULTILINE)


async def make_victim(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE public.victim (x int); INSERT INTO victim VALUES (42)")
    finally:
        await conn.close()


async def victim_alive(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SELECT to_regclass('public.victim') IS NOT NULL"))
    finally:
        await conn.close()


async def stored_rollbacks(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [
            r[0]
            for r in await conn.fetch(
                "SELECT rollback_sql FROM asyncmig.runs WHERE rollback_sql IS NOT NULL"
            )
        ]
    finally:
        await conn.close()


# scores.score stays bigint: its text values are rejected (the default policy)
PROFILE = '[tables.scores.columns.score]\ntype = "bigint"\n'


def settings_for(source: Path, dsn: str, out: Path, schema: str = "public") -> RunSettings:
    overrides = parse_overrides(tomllib.loads(PROFILE), "test")
    return RunSettings(
        source,
        Target(dsn, scrub(dsn), "test"),
        schema,
        output_dir=out,
        rejects_dir=out / "rejects",
        overrides=overrides,
    )


def test_sql_comment_cannot_be_ended() -> None:
    """Every line break PostgreSQL, psql or a terminal honours is escaped, nothing else."""
    hostile = "a\nDROP\rX\u2028Y\u2029Z\x0bW\x0cV\x85U\x1b[31m é 'q' \"d\""
    comment = sql_comment(hostile)
    assert len(comment.splitlines()) == 1
    assert comment == ("-- a\\nDROP\\rX\\u2028Y\\u2029Z\\x0bW\\x0cV\\x85U\\x1b[31m é 'q' \"d\"")


async def test_newline_in_source_path_is_inert(tmp_path: Path, pg_dsn: str) -> None:
    """The attack from the issue: the path's second line must not run on rollback."""
    source = small_source(tmp_path / f"a\n{INJECTED};\n--.db")
    await make_victim(pg_dsn)
    report = await run_migration(settings_for(source, pg_dsn, tmp_path / "out"))
    assert report.run_id is not None and report.rollback_script is not None
    for script in [report.rollback_script.read_text(), *await stored_rollbacks(pg_dsn)]:
        assert not EVIL_LINE.search(script), script
    plan = await make_plan(settings_for(source, pg_dsn, tmp_path / "out"))
    assert not EVIL_LINE.search(ddl.render_script(plan))
    await commands.rollback_command(settings_for(source, pg_dsn, tmp_path), report.run_id)
    assert await victim_alive(pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('public.t')") is None  # rolled back
        assert await conn.fetchval("SELECT status FROM asyncmig.runs") == "rolled back"
    finally:
        await conn.close()


async def test_newline_in_schema_name_is_inert(tmp_path: Path, pg_dsn: str) -> None:
    schema = f"s\n{INJECTED};\n--"
    source = small_source(tmp_path / "app.db")
    await make_victim(pg_dsn)
    settings = settings_for(source, pg_dsn, tmp_path / "out", schema)
    report = await run_migration(settings)
    assert not EVIL_LINE.search(ddl.render_script(report.plan))
    for script in await stored_rollbacks(pg_dsn):
        assert not EVIL_LINE.search(script)
    conn = await asyncpg.connect(pg_dsn)
    try:  # the data went into the schema of that odd name, values intact
        rows = await conn.fetch(f'SELECT id, name FROM "{schema}".t ORDER BY id')
        assert [tuple(r) for r in rows] == [(i, f"n{i}") for i in range(1, 21)]
    finally:
        await conn.close()
    assert report.run_id is not None
    await commands.rollback_command(settings, report.run_id)
    assert await victim_alive(pg_dsn)


async def test_view_with_a_smuggled_statement(tmp_path: Path, pg_dsn: str) -> None:
    """A hand-edited schema: SQLite ignores text after a view's query; so must PostgreSQL."""
    source = small_source(tmp_path / "app.db")
    conn = sqlite3.connect(source)
    conn.execute("CREATE VIEW v AS SELECT id FROM t WHERE id < 3")
    conn.commit()
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute(
        "UPDATE sqlite_master SET sql = ? WHERE name = 'v'",
        (f"CREATE VIEW v AS SELECT id FROM t WHERE id < 3; {INJECTED}",),
    )
    conn.commit()
    conn.close()
    assert sqlite3.connect(source).execute("SELECT count(*) FROM v").fetchone() == (2,)
    await make_victim(pg_dsn)
    report = await run_migration(settings_for(source, pg_dsn, tmp_path / "out"))
    assert await victim_alive(pg_dsn)
    assert any("text after the query" in w for w in report.warnings)
    pg = await asyncpg.connect(pg_dsn)
    try:
        assert [r[0] for r in await pg.fetch("SELECT id FROM v ORDER BY id")] == [1, 2]
    finally:
        await pg.close()


async def test_view_bracket_quoting_cannot_hide_a_statement(tmp_path: Path, pg_dsn: str) -> None:
    """SQLite reads [..] as a name; PostgreSQL does not: one statement at a time still."""
    source = small_source(tmp_path / "app.db")
    conn = sqlite3.connect(source)
    conn.execute("CREATE VIEW w AS SELECT 1 AS x")
    conn.commit()
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute(
        "UPDATE sqlite_master SET sql = ? WHERE name = 'w'",
        (f"CREATE VIEW w AS SELECT 1 AS [x;{INJECTED};--]",),
    )
    conn.commit()
    conn.close()
    await make_victim(pg_dsn)
    await run_migration(settings_for(source, pg_dsn, tmp_path / "out"))
    assert await victim_alive(pg_dsn)


PASSWORD_SPELLINGS = ["Zq9x/Kw7v", "Zq9x#Kw7v", "Zq9x?Kw7v", "Zq9x@Kw7v"]


@pytest.mark.parametrize("password", PASSWORD_SPELLINGS)
def test_malformed_url_never_shows_the_password(
    run_main: RunMain, tmp_path: Path, password: str
) -> None:
    """Unencoded / # ? @ in a password: refused before connecting, no fragment shown."""
    source = small_source(tmp_path / "a.db")
    url = f"postgresql://mig:{password}@127.0.0.1:1/db"
    result = run_main(
        "run", "--sqlite", str(source), "--pg", url, env={"ASYNCMIG_LOG_DIR": str(tmp_path)}
    )
    shown = result.stdout + result.stderr
    assert result.returncode == 2, shown
    assert "Zq9x" not in shown and "Kw7v" not in shown, shown
    assert "percent-encode" in shown and "postgresql://mig:***@" in shown
    assert "Traceback" not in shown
    logs = [p for p in Path(tmp_path).rglob("*.log")]
    assert all("Kw7v" not in p.read_text() for p in logs)


async def test_special_password_percent_encoded_and_passfile(
    tmp_path: Path, pg_dsn: str, password_role: str | None
) -> None:
    """The documented ways work: a percent-encoded URL, and PGPASSFILE with no password."""
    if password_role is None:
        pytest.skip("needs a server whose authentication the tests configure")
    password = "Zq9x/Kw7v#?@%"
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"DROP ROLE IF EXISTS {password_role}")
        await conn.execute(f"CREATE ROLE {password_role} LOGIN SUPERUSER PASSWORD '{password}'")
    finally:
        await conn.close()
    from urllib.parse import quote, urlsplit

    encoded = quote(password, safe="")
    dsn = pg_dsn.replace("postgres:@", f"{password_role}:{encoded}@", 1)
    source = small_source(tmp_path / "a.db")
    ok = run_cli(
        "run",
        "--sqlite",
        str(source),
        "--pg",
        dsn,
        env={"ASYNCMIG_LOG_DIR": str(tmp_path / "logs")},
    )
    assert ok.returncode == 0, ok.stderr
    assert "Kw7v" not in ok.stdout + ok.stderr
    assert all("Kw7v" not in p.read_text() for p in (tmp_path / "logs").rglob("*"))
    history = await asyncpg.connect(pg_dsn)
    try:
        row = await history.fetchrow("SELECT options::text, error, rollback_sql FROM asyncmig.runs")
        assert row is not None and "Kw7v" not in " ".join(str(v) for v in row)
    finally:
        await history.close()
    parts = urlsplit(pg_dsn)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:{password_role}:{password}\n")
    passfile.chmod(0o600)
    bare = pg_dsn.replace("postgres:@", f"{password_role}@", 1)
    assert parts.path and "Kw7v" not in bare
    again = run_cli("status", "--pg", bare, env={"PGPASSFILE": str(passfile)})
    assert again.returncode == 0, again.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_private_whatever_the_umask(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    """Rejects, rollback script and log: 0600 in 0700 directories, even under umask 000."""
    source = small_source(tmp_path / "a.db", bad_rows=3)
    out = tmp_path / "fresh" / "logs"
    old = os.umask(0)
    try:
        profile = tmp_path / "profile.toml"
        profile.write_text(PROFILE)
        result = run_main(
            "run",
            "--sqlite",
            str(source),
            "--pg",
            pg_dsn,
            "--config",
            str(profile),
            env={"ASYNCMIG_LOG_DIR": str(out)},
        )
    finally:
        os.umask(old)
    assert result.returncode == 8, result.stderr  # loaded with rejects
    written = [p for p in out.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in written}
    assert {".log", ".sql", ".jsonl"} <= kinds, written
    for path in written:
        assert mode(path) == 0o600, (path, oct(mode(path)))
    for directory in [out, out.parent, *[p for p in out.rglob("*") if p.is_dir()]]:
        assert mode(directory) == 0o700, (directory, oct(mode(directory)))


async def test_two_targets_from_one_directory(tmp_path: Path, pg_server: str) -> None:
    """Run 1 into A, then run 1 into B: each keeps its own rejects and rollback."""
    a_name, a_dsn = await create_database(pg_server)
    b_name, b_dsn = await create_database(pg_server)
    try:
        out = tmp_path / "shared"
        first = small_source(tmp_path / "first.db", bad_rows=7)
        second = small_source(tmp_path / "second.db", bad_rows=40)
        report_a = await run_migration(settings_for(first, a_dsn, out))
        report_b = await run_migration(settings_for(second, b_dsn, out))
        assert report_a.run_id == report_b.run_id == 1
        files_a = {t.table: t.reject_file for t in report_a.tables if t.reject_file}
        files_b = {t.table: t.reject_file for t in report_b.tables if t.reject_file}
        assert files_a["scores"] != files_b["scores"]
        kept = Path(files_a["scores"]).read_text().splitlines()
        assert len(kept) == 7
        assert {json.loads(line)["row"]["score"] for line in kept} == {
            f"not a number {i}" for i in range(7)
        }
        assert report_a.rollback_script != report_b.rollback_script
        assert report_a.rollback_script is not None and report_a.rollback_script.exists()
        # A's check --deep reads A's reject file; A's rollback drops A's tables only
        deep = await commands.check(settings_for(first, a_dsn, out), DeepCheck())
        assert all(c.ok for c in deep), [c for c in deep if not c.ok]
        await commands.rollback_command(settings_for(first, a_dsn, out), 1)
        b = await asyncpg.connect(b_dsn)
        try:
            assert await b.fetchval("SELECT count(*) FROM scores") == 40
        finally:
            await b.close()
    finally:
        await drop_database(pg_server, a_name)
        await drop_database(pg_server, b_name)


def test_requote_puts_server_written_names_and_literals_on_one_line() -> None:
    """Definitions PostgreSQL writes (pg_get_indexdef...) re-quoted here: names and plain
    literals with a line break in the U& form; E'', U&'' and dollar-quoted text untouched."""
    written = 'CREATE INDEX "a\nb" ON s."t""x" (c) WHERE (x = \'it\'\'s\nok\'::text)'
    assert requote(written) == (
        'CREATE INDEX U&"a\\000ab" ON s."t""x" (c) WHERE (x = U&\'it\'\'s\\000aok\'::text)'
    )
    for untouched in ("CHECK ((a = E'x\\n'))", 'AS $f$ "a\nb" $f$', "SELECT $1, U&'\\0061'"):
        assert requote(untouched) == untouched


def test_new_files_never_take_another_files_name(tmp_path: Path) -> None:
    """A second script or streamed file of the same name gets ``-2``, then ``-3``: the
    first is never replaced, a ``.partial`` one included, and both are private."""
    from asyncmig.target import files

    first = files.write_new(tmp_path, "asyncmig_rollback_run1", ".sql", "one")
    second = files.write_new(tmp_path, "asyncmig_rollback_run1", ".sql", "two")
    assert (first.name, second.name) == (
        "asyncmig_rollback_run1.sql",
        "asyncmig_rollback_run1-2.sql",
    )
    assert (first.read_text(), second.read_text()) == ("one", "two")
    partial, out = files.open_partial(tmp_path, "asyncmig_rollback_run1", ".sql")
    with out:
        out.write(b"three")
    assert partial.name == "asyncmig_rollback_run1-3.sql.partial"
    held, other = files.open_partial(tmp_path, "asyncmig_rollback_run1", ".sql")
    other.close()
    assert held.name == "asyncmig_rollback_run1-4.sql.partial"  # -3 is taken while partial
    published = files.publish(partial)
    assert published.name == "asyncmig_rollback_run1-3.sql" and published.read_bytes() == b"three"
    for path in (first, second, published, held):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
