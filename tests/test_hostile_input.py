"""Hostile but legal input: each is refused in one line with its documented exit code,
or read as the tools it comes from read it, never an internal error or a hang."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fix_cli import RunMain, assert_one_line_error, cli_environment, write_source
from tests.fix_faults import start
from tests.fix_pg import fetch


def test_a_pipe_given_as_the_source_is_refused_at_once(run_main: RunMain, tmp_path: Path) -> None:
    """Opening a FIFO waits for a writer, for ever, and ignored SIGTERM meanwhile."""
    fifo = tmp_path / "app.db"
    os.mkfifo(fifo)
    result = run_main("plan", "--sqlite", str(fifo))
    assert_one_line_error(result, 3, "not a regular file (a pipe or a device)")


def test_a_source_path_that_is_not_utf8_is_refused_before_anything(
    run_main: RunMain, tmp_path: Path
) -> None:
    """Legal on Linux; the run failed late, as an internal error, recording the path."""
    name = os.fsdecode(bytes(tmp_path) + b"/app\xff.db")
    write_source(Path(name))
    result = run_main("plan", "--sqlite", name)
    assert_one_line_error(result, 2, "--sqlite is not valid UTF-8 (")
    assert "app\\xff.db" in result.stderr


def test_numbers_beyond_what_an_option_can_mean_are_bad_options(
    run_main: RunMain, tmp_path: Path
) -> None:
    source = write_source(tmp_path / "app.db")
    huge = "99999999999999999999"  # beyond 64 bits: an internal error in the driver
    result = run_main("plan", "--sqlite", str(source), "--jobs", huge)
    assert_one_line_error(result, 2, f"--jobs is expected to be at most 256, got {huge}")
    result = run_main("run", "--sqlite", str(source), env={"ASYNCMIG_LOCK_TIMEOUT": huge})
    assert_one_line_error(result, 2, "ASYNCMIG_LOCK_TIMEOUT is expected to be at most 2147483")
    for url in ("postgresql://u:pw@127.0.0.1:99999/db", "host=127.0.0.1 port=70000 user=u"):
        result = run_main("status", "--pg", url)
        assert_one_line_error(result, 2, "is not a TCP port (1 to 65535)")
        assert "pw" not in result.stderr


def test_a_wal_database_closed_cleanly_is_read_without_files_beside_it(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    """An application's WAL database after it stopped: no -wal or -shm beside it. Opened
    read-only, SQLite made both next to the source and left them (on a read-only mount
    it could not open it at all)."""
    folder = tmp_path / "app"
    folder.mkdir()
    source = folder / "app.db"
    conn = sqlite3.connect(source)
    conn.execute("PRAGMA journal_mode = wal")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(1, 201)])
    conn.commit()
    conn.close()
    assert sorted(p.name for p in folder.iterdir()) == ["app.db"]
    before = source.read_bytes()
    result = run_main("run", "--sqlite", str(source), "--pg", pg_dsn)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["app.db"]
    assert source.read_bytes() == before
    rows = fetch(pg_dsn, "SELECT id, x FROM t ORDER BY id")
    assert [tuple(r) for r in rows] == [(i, f"v{i}") for i in range(1, 201)]


def test_a_schema_postgresql_cannot_hold_the_tables_in_is_a_bad_option(
    run_main: RunMain, tmp_path: Path
) -> None:
    """Such a run planned, loaded and checked everything, then failed at the cut-over."""
    source = write_source(tmp_path / "app.db")
    for schema, says in [
        ("", "--schema is empty"),
        ("pg_temp", "starts with pg_"),
        ("s" * 64, "is 64 bytes long; PostgreSQL's names hold at most 63"),
        ("é" * 32, "is 64 bytes long"),
        ("asyncmig", "is asyncmig's own"),
        ("asyncmig_backup_1_2", "is asyncmig's own"),
    ]:
        assert_one_line_error(
            run_main("plan", "--sqlite", str(source), "--schema", schema), 2, says
        )
    assert run_main("plan", "--sqlite", str(source), "--schema", "s" * 63).returncode == 0


def test_connection_parameters_libpq_would_refuse_are_bad_options(run_main: RunMain) -> None:
    """They were tried as connections: exit 4, "is the server running?", and a Python
    repr in the message for target_session_attrs."""
    base = "postgresql://u:pw@127.0.0.1:1/db?"
    for parameter, says in [
        ("sslmode=bogus", "sslmode 'bogus' is not one of disable, allow, prefer"),
        ("target_session_attrs=x", "target_session_attrs 'x' is not one of any, read-write"),
        ("connect_timeout=abc", "connect_timeout 'abc' is not a number"),
    ]:
        result = run_main("status", "--pg", base + parameter)
        assert_one_line_error(result, 2, says)
        assert "pw" not in result.stderr


def test_a_profile_giving_two_tables_one_name_is_a_bad_profile(
    run_main: RunMain, tmp_path: Path
) -> None:
    source = tmp_path / "app.db"
    with sqlite3.connect(source) as conn:
        conn.executescript(
            "CREATE TABLE users (id INTEGER PRIMARY KEY);"
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));"
        )
    profile = tmp_path / "profile.toml"
    profile.write_text('[tables.users]\nrename = "orders"\n')
    result = run_main("plan", "--sqlite", str(source), "--config", str(profile))
    assert_one_line_error(
        result, 2, "the profile gives tables 'orders' and 'users' one name, 'orders'"
    )
    profile.write_text('[tables.users]\nrename = "orders"\n[tables.orders]\nrename = "old"\n')
    swapped = run_main("plan", "--sqlite", str(source), "--config", str(profile))
    assert swapped.returncode == 0, swapped.stderr


def test_many_jobs_on_few_tables_hold_few_connections(tmp_path: Path, pg_dsn: str) -> None:
    """--jobs 40 on a one-table source held 2 x 40 connections through the whole run
    (50 exhausted a default server's 100 for every other client)."""
    source = tmp_path / "one.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", ((i, "x" * 50) for i in range(60_000)))
    process = start("run", "--sqlite", str(source), "--pg", pg_dsn, "--jobs", "40")
    peak = 0
    while process.poll() is None:
        rows = fetch(
            pg_dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'asyncmig' "
            "AND pid <> pg_backend_pid()",
        )
        peak = max(peak, int(rows[0][0]))
    _, err = process.communicate()
    assert process.returncode == 0, err
    assert 0 < peak <= 8, peak


@pytest.mark.parametrize(
    ("profile", "says"),
    [  # each was taken: the table left out, or an internal error (exit 70)
        ('[tables.users]\nexclude = "false"\n', "exclude is expected to be true or false"),
        ('[tables.users]\nrename = "a\\u0000b"\n', "rename holds a NUL character"),
        ('[tables.users.columns.id]\nrename = "a\\u0000b"\n', "rename holds a NUL character"),
        # an empty type was ignored; a zero length failed at CREATE TABLE (exit 4)
        ('[tables.users.columns.id]\ntype = ""\n', "column 'id': type is empty"),
        (
            '[tables.users.columns.id]\ntype = "varchar(0)"\n',
            "'varchar(0)': a length or precision is at least 1",
        ),
    ],
)
def test_profile_values_of_the_wrong_kind_are_bad_profiles(
    run_main: RunMain, tmp_path: Path, profile: str, says: str
) -> None:
    source = tmp_path / "app.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    (tmp_path / "profile.toml").write_text(profile)
    result = run_main("plan", "--sqlite", str(source), "--config", str(tmp_path / "profile.toml"))
    assert_one_line_error(result, 2, says)


def test_a_job_whose_output_channels_are_closed_or_go_away_ends_as_it_went(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Started with stdout closed (``>&-``), a run that succeeded exited 70 printing its
    result; with a stderr reader that went away (a log shipper restarting), it exited 1,
    logged a lost connection to PostgreSQL and left its history row ``running``."""
    source = write_source(tmp_path / "app.db")
    argv = [sys.executable, "-m", "asyncmig", "run", "--sqlite", str(source), "--pg", pg_dsn]
    argv += ["--replace", "--log-format", "json"]
    closed = subprocess.run(
        argv,
        env=cli_environment(),
        preexec_fn=lambda: os.close(1),  # the point: no stdout at all
        stderr=subprocess.PIPE,
        timeout=120,
        check=False,
    )
    assert closed.returncode == 0, closed.stderr
    reader = subprocess.Popen(
        argv, env=cli_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert reader.stderr is not None
    reader.stderr.readline()
    reader.stderr.close()  # the reader goes away; the run's next log line meets EPIPE
    assert reader.wait(timeout=120) == 0
    statuses = fetch(pg_dsn, "SELECT status FROM asyncmig.runs ORDER BY id")
    assert [r[0] for r in statuses] == ["succeeded", "succeeded"]


def test_a_device_or_a_huge_file_given_as_a_secret_or_a_profile_is_refused_unread(
    run_main: RunMain, tmp_path: Path
) -> None:
    """``--pg-file /dev/zero`` grew the process until it died (exit 70 under a memory
    limit); ``--config /dev/urandom`` took seconds to read, deaf to SIGTERM."""
    huge = tmp_path / "huge"
    huge.write_bytes(b"a" * 70_000)
    for argv, says in [
        (("--pg-file", "/dev/zero"), "(--pg-file): not a regular file"),
        (("--pg-file", str(huge)), "(--pg-file): larger than 65,536 bytes"),
        (("--config", "/dev/urandom"), "cannot read config /dev/urandom: not a regular file"),
    ]:
        assert_one_line_error(run_main("status", *argv), 2, says)


def test_every_message_of_a_run_stays_on_its_line(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    """A name with a line break, and PostgreSQL's own DETAIL line, split a warning or the
    last line of the summary in two (the table rows were already escaped)."""
    source = tmp_path / "app.db"
    with sqlite3.connect(source) as conn:
        conn.executescript("""
            CREATE TABLE "new
line" (id INTEGER PRIMARY KEY, ctid TEXT);
            CREATE TABLE users (id INTEGER PRIMARY KEY);
            CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));
            INSERT INTO "new
line" VALUES (1, 'a');
            INSERT INTO users VALUES (1);
            INSERT INTO orders VALUES (1, 1), (2, 99);
        """)
    result = run_main("run", "--sqlite", str(source), "--pg", pg_dsn, "--schema", "multi\nline")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("warning: column of new\\nline 'ctid'") for line in lines)
    orphans = [line for line in lines if "left NOT VALID" in line]
    assert len(orphans) == 1 and "\\nDETAIL:" in orphans[0]
    assert any("schema multi\\nline; run" in line for line in lines)
    assert not any(line.startswith(("DETAIL", "line")) for line in lines), lines


def test_a_relation_named_like_an_index_the_run_makes_stops_it_before_the_load(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    """An unrelated table ``users_pkey`` in the target: validate passed, and the run
    loaded and checked everything, then failed at the cut-over."""
    source = tmp_path / "app.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users VALUES (1, 'ann')")
    fetch(pg_dsn, "CREATE TABLE public.users_pkey (x int)")
    checked = run_main("validate", "--sqlite", str(source), "--pg", pg_dsn)
    assert checked.returncode == 6
    assert "named like an index or sequence the run makes" in checked.stdout
    result = run_main("run", "--sqlite", str(source), "--pg", pg_dsn, "--log-format", "json")
    assert_one_line_error(result, 4, '"public"."users_pkey" already exists in the target')
    assert '"phase":"loading"' not in result.stderr  # refused before any row was read
    assert fetch(pg_dsn, "SELECT to_regclass('public.users')") == [(None,)]


def test_what_libpq_refuses_in_a_connection_string_is_refused(run_main: RunMain) -> None:
    """These were taken as something else: a literal %zz, a quote left open (its value
    ran to the end), ports that cannot be matched to the hosts."""
    for dsn, says in [
        ("postgresql://u@h/db?password=%zz", "invalid percent-encoding"),
        ("host=h password='abc user=u", "password value has an unterminated quote"),
        ("host=a,b port=1,2,3 user=u", "3 ports for 2 host(s)"),
    ]:
        result = run_main("status", "--pg", dsn)
        assert_one_line_error(result, 2, says)
        assert "abc" not in result.stderr


def test_options_that_mean_nothing_alone_or_empty_job_paths_are_bad_options(
    run_main: RunMain, tmp_path: Path
) -> None:
    source = write_source(tmp_path / "app.db")
    alone = run_main("run", "--sqlite", str(source), "--pg", "postgresql://u@h/db", "--cascade")
    assert_one_line_error(alone, 2, "--cascade acts only with --replace")
    job = tmp_path / "job.toml"
    job.write_text('[job]\nsqlite = ""\n')  # was the job file's directory: exit 3
    assert_one_line_error(run_main("plan", "--config", str(job)), 2, "job.sqlite is empty")


def test_a_wal_with_commits_in_a_read_only_directory_says_why_it_cannot_be_read(
    tmp_path: Path,
) -> None:
    """A :ro volume holding a database and a -wal with commits, no -shm: SQLite cannot
    open it even read-only, and the error was its bare "unable to open database file".
    (Root ignores directory permissions: the command runs without that capability.)"""
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to drop the capability that ignores permissions")
    live, ro = tmp_path / "live", tmp_path / "ro"
    live.mkdir()
    ro.mkdir()
    conn = sqlite3.connect(live / "app.db")
    conn.execute("PRAGMA journal_mode = wal")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    conn.commit()
    shutil.copy(live / "app.db", ro / "app.db")
    shutil.copy(live / "app.db-wal", ro / "app.db-wal")
    conn.close()
    ro.chmod(0o555)
    drop = ["--bounding-set", "-dac_override,-dac_read_search"]
    drop += ["--inh-caps", "-dac_override,-dac_read_search"]
    done = subprocess.run(
        [setpriv, *drop, sys.executable, "-m", "asyncmig", "plan", "--sqlite", str(ro / "app.db")],
        env=cli_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ro.chmod(0o755)
    assert done.returncode == 3, done.stderr
    assert "its -wal file holds commits" in done.stderr and "hint: copy the database" in done.stderr


def test_rowids_at_the_ends_of_the_64_bit_range(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    """Rowids -2^63 and 2^63 - 1 made the plan's row estimate 2^64 (exit 70); the
    largest rowid, or a full AUTOINCREMENT counter, made the sequence's max + 1 overflow
    (exit 4, nothing migrated). The sequence now stands at its end: the next insert
    fails, as SQLite's AUTOINCREMENT does."""
    source = tmp_path / "ends.db"
    with sqlite3.connect(source) as conn:
        conn.executescript("""
            CREATE TABLE span (id INTEGER PRIMARY KEY, v TEXT);
            INSERT INTO span VALUES (-9223372036854775808, 'min'), (9223372036854775807, 'max');
            CREATE TABLE ai (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
            INSERT INTO ai (v) VALUES ('a');
            UPDATE sqlite_sequence SET seq = 9223372036854775807 WHERE name = 'ai';
            CREATE TABLE other (id INTEGER PRIMARY KEY, v TEXT);
            INSERT INTO other VALUES (1, 'innocent');
        """)
    result = run_main("run", "--sqlite", str(source), "--pg", pg_dsn)
    assert result.returncode == 0, result.stderr
    assert [tuple(r) for r in fetch(pg_dsn, "SELECT id, v FROM span ORDER BY id")] == [
        (-9223372036854775808, "min"),
        (9223372036854775807, "max"),
    ]
    assert [tuple(r) for r in fetch(pg_dsn, "INSERT INTO other (v) VALUES ('x') RETURNING id")] == [
        (2,)
    ]
    with pytest.raises(Exception, match="reached maximum value"):
        fetch(pg_dsn, "INSERT INTO ai (v) VALUES ('b')")


def test_a_collation_the_application_registers_at_run_time(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    """Anki's notes are ``COLLATE unicase``, a collation its code registers: SQLite
    stops any statement needing it (exit 3, "no such collation sequence"). It is read as
    BINARY, and the column's collation reported as not migrated."""
    source = tmp_path / "collection.anki2"
    conn = sqlite3.connect(source)
    conn.create_collation("unicase", lambda a, b: (a.lower() > b.lower()) - (a.lower() < b.lower()))
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, sfld TEXT COLLATE unicase, f TEXT)")
    conn.execute("CREATE INDEX ix_notes_sfld ON notes (sfld)")
    conn.executemany("INSERT INTO notes (sfld, f) VALUES (?, ?)", [("Apple", "x"), ("apple", "y")])
    conn.commit()
    conn.close()
    result = run_main("run", "--sqlite", str(source), "--pg", pg_dsn)
    assert result.returncode == 0, result.stderr
    assert "COLLATE UNICASE is not migrated" in result.stdout
    rows = fetch(pg_dsn, "SELECT id, sfld, f FROM notes ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, "Apple", "x"), (2, "apple", "y")]
    checked = run_main("check", "--sqlite", str(source), "--pg", pg_dsn, "--deep")
    assert checked.returncode == 0, checked.stderr


def test_checks_take_the_rows_sqlite_takes(run_main: RunMain, tmp_path: Path, pg_dsn: str) -> None:
    """``up = upper(up)`` refused 'é' (PostgreSQL's upper() folds it, SQLite's does not),
    and ``cast(num AS integer) > 0`` stopped on '12abc' (SQLite reads its leading 12):
    the application's ordinary writes failed after the migration."""
    source = tmp_path / "checks.db"
    with sqlite3.connect(source) as conn:
        conn.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, up TEXT CHECK (up = upper(up)), "
            "lo TEXT CHECK (lo = lower(lo)), num TEXT CHECK (CAST(num AS INTEGER) > 0), "
            "r TEXT CHECK (CAST(r AS REAL) < 10))"
        )
        conn.execute("INSERT INTO t VALUES (1, 'A', 'a', '5', '1.5')")
        for row in [(2, "é", "É", "12abc", "9.5kg"), (3, None, None, " 7", "abc")]:
            conn.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", row)  # SQLite takes them
        refused = [(9, "a", "a", "1", "1"), (10, "A", "A", "1", "1"), (11, "A", "a", "x1", "1")]
        for row in refused:
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", row)
    result = run_main("run", "--sqlite", str(source), "--pg", pg_dsn)
    assert result.returncode == 0, result.stderr
    assert "NOT VALID" not in result.stdout  # every old row holds
    fetch(pg_dsn, "INSERT INTO t VALUES (4, 'ü', 'Ü', '3rd', '2e0x')")  # SQLite takes it too
    # the sign and the exponent are the number's too: -50.5 and -1e3 are below 10
    fetch(
        pg_dsn, "INSERT INTO t VALUES (5, 'A', 'a', ' +4', '-50.5kg'), (6, 'A', 'a', '1', '-1e3')"
    )
    for row in refused:
        with pytest.raises(Exception, match="violates check constraint"):
            fetch(pg_dsn, "INSERT INTO t VALUES ($1, $2, $3, $4, $5)", *row)
