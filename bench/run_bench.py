"""Time asyncmig against a C pipeline (sqlite3 -csv | psql \\copy) on the same server.

A ratio only means something when both sides load the same typed tables into the
same server in the same run, so this script starts a throw-away PostgreSQL cluster,
runs asyncmig into one schema, copies asyncmig's own schema (pg_dump pre-data and
post-data) into a second schema, and loads that one with the C tools, two tables at
a time. Each side's wall time, rows/s and peak RSS are printed, plus the ratio.

    python -m bench.run_bench [--rows 2000000] [--db FILE] [--jobs 2] [--repeat 1]
                              [--json OUT]

If asyncmig fails, its last stderr lines are shown and the C pipeline is measured
against a hand-written typed schema instead (marked as such in the output).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import meter
from bench.report import Report, Workload, ok, render, to_json

ASYNCMIG_SCHEMA = "asyncmig_bench"
C_SCHEMA = "c_bench"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Measure:
    """One tool's run: what the table prints and the JSON records."""

    tool: str
    ok: bool
    seconds: float
    rows: int
    peak_rss_mb: float
    note: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase
    cpu_s: float = 0.0  # CPU seconds of the tool's processes (user + system)
    server_cpu_s: float = 0.0  # and of the PostgreSQL server meanwhile

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.ok and self.seconds > 0 else 0.0


@dataclass
class Proc:
    """A finished child process with its own peak RSS."""

    returncode: int
    peak_rss_mb: float
    stderr: str = ""


GNU_TIME = Path("/usr/bin/time")


@dataclass
class Metered:
    """A started child whose peak RSS is measured by GNU time when it is installed.

    A child exec'd straight from this Python process reports our own RSS high-water
    mark in ru_maxrss (Linux carries it across exec), so a small ``time`` process sits
    in between; without it, wait4's figure is an upper bound.
    """

    popen: subprocess.Popen[bytes]
    rss_file: Path | None

    def wait(self) -> Proc:
        _, status, usage = os.wait4(self.popen.pid, 0)
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        kib = usage.ru_maxrss
        if self.rss_file is not None:
            lines = self.rss_file.read_text().split()
            kib = int(lines[-1]) if lines and lines[-1].isdigit() else kib
            self.rss_file.unlink()
        return Proc(self.popen.returncode, kib / 1024)


def spawn(
    cmd: Sequence[str],
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    env: dict[str, str] | None = None,
) -> Metered:
    rss_file = None
    if GNU_TIME.exists():
        fd, name = tempfile.mkstemp(prefix="rss-")
        os.close(fd)
        rss_file = Path(name)
        cmd = [str(GNU_TIME), "-f", "%M", "-o", name, *cmd]
    popen = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=stderr, env=env)
    return Metered(popen, rss_file)


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, stdin: int | None = None) -> Proc:
    """Run a command to completion, keeping stderr for the report."""
    with tempfile.TemporaryFile() as err:
        proc = spawn(
            cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=err.fileno(), env=env
        ).wait()
        err.seek(0)
        proc.stderr = err.read().decode(errors="replace")
    return proc


def check(proc: Proc, what: str) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {tail(proc.stderr)}")


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --- the throw-away cluster -------------------------------------------------------------


def pg_bin() -> Path:
    """The newest installed server's bin directory (client tools must not be older)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    return found[-1].parent


def as_owner(cmd: list[str]) -> list[str]:
    """The server refuses to run as root, so root runs it as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def cluster(bindir: Path) -> Iterator[str]:
    """Start a private cluster on a Unix socket only; yield its DSN; remove it after."""
    top = Path(tempfile.mkdtemp(prefix="asyncmig-bench-"))
    data, sock = top / "data", top / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        for path in (top, sock):
            shutil.chown(path, "postgres", "postgres")
    try:
        check(
            run(
                as_owner(
                    [
                        str(bindir / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                )
            ),
            "initdb",
        )
        opts = f"-c listen_addresses='' -k {sock}"
        check(
            run(
                as_owner(
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(data),
                        "-l",
                        str(top / "log"),
                        "-o",
                        opts,
                        "-w",
                        "start",
                    ]
                )
            ),
            "pg_ctl start",
        )
        yield f"postgresql://postgres@/postgres?host={sock}"
    finally:
        if (data / "postmaster.pid").exists():
            run(as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]))
        shutil.rmtree(top, ignore_errors=True)


def postmaster(dsn: str) -> int | None:
    """The cluster's postmaster pid, from the data directory next to its socket."""
    pid_file = Path(dsn.split("host=", 1)[1]).parent / "data" / "postmaster.pid"
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def psql_cmd(bindir: Path, dsn: str, *args: str) -> list[str]:
    return [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, *args]


def psql(bindir: Path, dsn: str, sql: str) -> str:
    """Run SQL and return unaligned, tuples-only output (for small catalog queries)."""
    out = subprocess.run(
        psql_cmd(bindir, dsn, "-A", "-t", "-F", "\t", "-c", sql),
        capture_output=True,
        text=True,
        check=False,
        env=utc_env(),
    )
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {tail(out.stderr)}")
    return out.stdout


def utc_env() -> dict[str, str]:
    """Naive source timestamps are UTC; make the C side read them as asyncmig does."""
    return {**os.environ, "PGTZ": "UTC"}


# --- (a) asyncmig ------------------------------------------------------------------------


def asyncmig_run(
    db: Path, dsn: str, schema: str, jobs: int, logs: Path, extra: Sequence[str] = ()
) -> list[str]:
    """The command line of asyncmig's `run`, logging JSON into ``logs`` (``extra``: more
    options)."""
    options = ["--schema", schema, "--jobs", str(jobs), "--log-format", "json", *extra]
    return [*ASYNCMIG_RUN, "--sqlite", str(db), "--pg", dsn, *options, "--log-dir", str(logs)]


ASYNCMIG_RUN = (sys.executable, "-P", "-m", "asyncmig", "run")


AUTOVACUUM_WAIT = 120.0  # seconds at most


def settle(dsn: str) -> None:
    """Before a timed command: wait for the autovacuum workers to finish (bounded), then
    a CHECKPOINT, so that neither the work the command before left behind nor its
    autovacuum is timed with this one (single syncs on this machine varied from 4.2 to
    5.5 s without the CHECKPOINT; a sync started while autovacuum held one of its tables
    waited a deadlock_timeout, 1 s, for it to give way)."""
    import psycopg  # the test extras' driver: run_bench itself goes through psql

    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + AUTOVACUUM_WAIT
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ).fetchone()
            if row is None or row[0] == 0:
                break
            time.sleep(0.2)
        conn.execute("CHECKPOINT")


def tree_environment(tree: Path) -> dict[str, str]:
    """The environment a child runs ``tree``'s asyncmig in: imported from bytecode, as
    an installed package is (pip compiles a wheel's modules when it installs them), not
    compiled again at every start where PYTHONDONTWRITEBYTECODE is set (about 0.15 s of
    every command, more in each worker process). See :func:`compile_tree`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": str(tree)}


def compile_tree(tree: Path) -> None:
    """Compile ``tree``'s asyncmig once, before anything is timed."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(tree / "asyncmig")],
        check=True,
        env=tree_environment(tree),
    )


def run_asyncmig(
    db: Path,
    dsn: str,
    jobs: int,
    rows: int,
    schema: str = ASYNCMIG_SCHEMA,
    root: Path = ROOT,
    extra: Sequence[str] = (),
) -> Measure:
    """asyncmig's `run` as a child; RSS summed over its process tree, phases from its log.

    Exit code 8 (done, some rows in the reject store) is a success for a dirty source.
    ``root``: the tree whose asyncmig runs (--baseline's, or this one); ``extra``: more
    options for it.
    """
    compile_tree(root)
    logs = Path(tempfile.mkdtemp(prefix="asyncmig-bench-logs-"))
    cmd = asyncmig_run(db, dsn, schema, jobs, logs, extra)
    wall, started = time.time(), time.perf_counter()
    with tempfile.TemporaryFile() as err, meter.cpu_used(postmaster(dsn)) as cpu:
        child = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=err.fileno(),
            env=tree_environment(root),
        )
        with meter.sampling(child.pid) as sampler:
            code = child.wait()
        seconds = time.perf_counter() - started
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    ok = code in (0, 8)
    if not ok:
        print(
            f"asyncmig failed with exit code {code}; last stderr lines:\n{tail(stderr)}",
            file=sys.stderr,
        )
    phases = meter.asyncmig_phases(logs, wall)
    shutil.rmtree(logs, ignore_errors=True)
    return Measure(
        "asyncmig",
        ok,
        seconds,
        rows,
        sampler.peak_mb,
        "" if code == 0 else f"exit {code}",
        phases,
        cpu.tool,
        cpu.server,
    )


# --- (c) pgloader, when installed --------------------------------------------------------

PGLOADER_DB = "pgloader_bench"


def run_pgloader(bindir: Path, dsn: str, db: Path, rows: int) -> Measure | None:
    """pgloader's default SQLite load into its own database, timed end to end.

    pgloader creates its own schema (indexes, keys, sequences included) from the SQLite
    file, so it runs into a separate database of the same cluster.
    """
    exe = shutil.which("pgloader")
    if exe is None:
        return None
    psql(bindir, dsn, f"DROP DATABASE IF EXISTS {PGLOADER_DB}")
    psql(bindir, dsn, f"CREATE DATABASE {PGLOADER_DB}")
    socket_dir = dsn.split("host=", 1)[1]
    target = f"postgresql://postgres@unix:{socket_dir}:5432/{PGLOADER_DB}"
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err, meter.cpu_used(postmaster(dsn)) as cpu:
        child = subprocess.Popen(
            [exe, "--no-ssl-cert-verification", str(db), target],
            stdout=subprocess.DEVNULL,
            stderr=err.fileno(),
        )
        with meter.sampling(child.pid) as sampler:
            code = child.wait()
        seconds = time.perf_counter() - started
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    ok = code == 0
    if not ok:
        print(f"pgloader failed with exit code {code}:\n{tail(stderr)}", file=sys.stderr)
    note = "" if ok else f"exit {code}"
    return Measure("pgloader", ok, seconds, rows, sampler.peak_mb, note, {}, cpu.tool, cpu.server)


# --- (b) the C pipeline ------------------------------------------------------------------


FALLBACK_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.users (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, email text NOT NULL UNIQUE,
    password_hash text NOT NULL, name text, score bigint NOT NULL DEFAULT 0,
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
    is_active boolean DEFAULT true, last_login timestamptz, is_premium boolean DEFAULT false);
CREATE TABLE {s}.challenges (
    challenge_id uuid PRIMARY KEY, creator_id text NOT NULL, title text,
    status text NOT NULL DEFAULT 'draft', lie_statement_id text NOT NULL,
    view_count bigint DEFAULT 0, guess_count bigint DEFAULT 0,
    correct_guess_count bigint DEFAULT 0, is_merged_video boolean DEFAULT false,
    statements_json jsonb NOT NULL, merged_video_metadata_json jsonb, tags_json jsonb,
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
    published_at timestamptz);
CREATE TABLE {s}.guesses (
    guess_id uuid PRIMARY KEY,
    challenge_id uuid NOT NULL REFERENCES {s}.challenges ON DELETE CASCADE,
    user_id text NOT NULL, guessed_lie_statement_id text NOT NULL, is_correct boolean NOT NULL,
    response_time_seconds double precision, submitted_at timestamptz DEFAULT now());
CREATE TABLE {s}.guess_history (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES {s}.users ON DELETE CASCADE,
    challenge_id uuid NOT NULL, was_correct boolean NOT NULL,
    created_at timestamptz DEFAULT now());
CREATE TABLE {s}.user_reports (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    challenge_id uuid NOT NULL CHECK (length(challenge_id::text) > 0),
    user_id bigint NOT NULL REFERENCES {s}.users ON DELETE CASCADE ON UPDATE CASCADE,
    reason text NOT NULL CHECK (reason IN ('inappropriate_language', 'spam', 'personal_info',
        'violence', 'hate_speech', 'adult_content', 'copyright', 'misleading', 'low_quality')),
    details text CHECK (details IS NULL OR length(details) <= 1000),
    created_at timestamptz NOT NULL DEFAULT now(), UNIQUE (challenge_id, user_id));
CREATE TABLE {s}.token_balances (
    user_id text PRIMARY KEY, balance bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    last_updated timestamptz DEFAULT now(), created_at timestamptz DEFAULT now());
CREATE TABLE {s}.token_transactions (
    transaction_id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id text NOT NULL,
    transaction_type text NOT NULL
        CHECK (transaction_type IN ('purchase', 'spend', 'adjustment', 'refund')),
    amount bigint NOT NULL, balance_before bigint NOT NULL CHECK (balance_before >= 0),
    balance_after bigint NOT NULL CHECK (balance_after >= 0), description text NOT NULL,
    metadata jsonb DEFAULT '{{}}', revenuecat_transaction_id text, revenuecat_product_id text,
    created_at timestamptz DEFAULT now());
CREATE TABLE {s}.user_sessions (
    session_id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id text NOT NULL,
    jwt_token text NOT NULL, token_hash text NOT NULL UNIQUE,
    session_type text NOT NULL DEFAULT 'user' CHECK (session_type IN ('user', 'guest', 'admin')),
    permissions jsonb DEFAULT '[]', created_at timestamptz DEFAULT now(),
    expires_at timestamptz NOT NULL, last_accessed timestamptz DEFAULT now(),
    is_active boolean DEFAULT true, user_agent text, ip_address inet);
CREATE TABLE {s}.rate_limit_records (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, user_id text NOT NULL,
    "timestamp" timestamptz NOT NULL);
CREATE INDEX ON {s}.users (is_active);
CREATE INDEX ON {s}.users (created_at);
CREATE INDEX ON {s}.users (last_login);
CREATE INDEX ON {s}.challenges (creator_id);
CREATE INDEX ON {s}.challenges (status);
CREATE INDEX ON {s}.challenges (created_at DESC);
CREATE INDEX ON {s}.challenges (published_at DESC);
CREATE INDEX ON {s}.challenges (view_count DESC);
CREATE INDEX ON {s}.guesses (challenge_id);
CREATE INDEX ON {s}.guesses (user_id);
CREATE INDEX ON {s}.guesses (submitted_at DESC);
CREATE INDEX ON {s}.guess_history (user_id, challenge_id);
CREATE INDEX ON {s}.guess_history (challenge_id);
CREATE INDEX ON {s}.user_reports (user_id, created_at DESC);
CREATE INDEX ON {s}.user_reports (challenge_id, created_at, reason, id);
CREATE INDEX ON {s}.user_reports (created_at);
CREATE INDEX ON {s}.user_reports (reason);
CREATE INDEX ON {s}.token_balances (last_updated);
CREATE INDEX ON {s}.token_transactions (user_id);
CREATE INDEX ON {s}.token_transactions (created_at DESC);
CREATE INDEX ON {s}.token_transactions (transaction_type);
CREATE INDEX ON {s}.token_transactions (revenuecat_transaction_id);
CREATE INDEX ON {s}.token_transactions USING gin (metadata);
CREATE INDEX ON {s}.user_sessions (user_id);
CREATE INDEX ON {s}.user_sessions (expires_at);
CREATE INDEX ON {s}.user_sessions (is_active, expires_at);
CREATE INDEX ON {s}.rate_limit_records (user_id);
"""


def create_fallback_schema(bindir: Path, dsn: str) -> None:
    """A typed schema like asyncmig's intended one, for when asyncmig cannot run yet."""
    psql(bindir, dsn, f"DROP SCHEMA IF EXISTS {ASYNCMIG_SCHEMA} CASCADE")
    psql(bindir, dsn, FALLBACK_DDL.format(s=ASYNCMIG_SCHEMA))


def dump_section(bindir: Path, dsn: str, section: str) -> str:
    """asyncmig's schema as DDL for ``section``, renamed to the C schema."""
    out = subprocess.run(
        [
            str(bindir / "pg_dump"),
            "--schema-only",
            f"--section={section}",
            "-n",
            ASYNCMIG_SCHEMA,
            "-d",
            dsn,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {tail(out.stderr)}")
    return out.stdout.replace(ASYNCMIG_SCHEMA, C_SCHEMA)


def apply_sql(bindir: Path, dsn: str, sql: str, what: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(sql)
        script.flush()
        check(run(psql_cmd(bindir, dsn, "-f", script.name), env=utc_env()), what)


@dataclass(frozen=True)
class Column:
    """A column both sides have: SQLite declared type and PostgreSQL target type."""

    name: str
    declared: str
    target: str


def target_columns(bindir: Path, dsn: str) -> dict[str, dict[str, str]]:
    """Target table -> column -> data_type, read from asyncmig's result schema."""
    rows = psql(
        bindir,
        dsn,
        "SELECT table_name, column_name, data_type"
        " FROM information_schema.columns"
        f" WHERE table_schema = '{ASYNCMIG_SCHEMA}' ORDER BY ordinal_position",
    )
    tables: dict[str, dict[str, str]] = {}
    for line in rows.splitlines():
        table, column, data_type = line.split("\t")
        tables.setdefault(table, {})[column] = data_type
    return tables


def source_columns(db: Path, table: str) -> dict[str, str]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {r[1]: (r[2] or "").upper() for r in conn.execute(f'PRAGMA table_info("{table}")')}


def shared_columns(db: Path, table: str, target: dict[str, str]) -> list[Column]:
    """Columns by name, never by position (older files order them differently)."""
    source = source_columns(db, table)
    return [Column(name, source[name], target[name]) for name in source if name in target]


def qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def is_numeric_decl(declared: str) -> bool:
    return any(word in declared for word in ("INT", "REAL", "FLOA", "DOUB"))


def select_expr(col: Column) -> str:
    """SQL that makes sqlite3's CSV spelling acceptable to the target type's input."""
    c = qi(col.name)
    if col.target.startswith("timestamp") and is_numeric_decl(col.declared):
        whole = f"CAST({c} AS INTEGER)"
        micro = f"min(999999, CAST(round(({c} - {whole}) * 1000000) AS INTEGER))"
        return (
            f"CASE WHEN {c} IS NULL THEN NULL ELSE datetime({whole}, 'unixepoch')"
            f" || printf('.%06d', {micro}) || '+00' END"
        )
    if col.target == "bytea":
        return f"CASE WHEN {c} IS NULL THEN NULL ELSE '\\x' || hex({c}) END"
    return c


def load_table(bindir: Path, dsn: str, db: Path, table: str, cols: list[Column]) -> float:
    """One ``sqlite3 -csv | psql \\copy`` pipe; returns the pair's summed peak RSS."""
    select = f"SELECT {', '.join(select_expr(c) for c in cols)} FROM {qi(table)}"
    copy = (
        f"\\copy {qi(C_SCHEMA)}.{qi(table)} ({', '.join(qi(c.name) for c in cols)})"
        " FROM pstdin WITH (FORMAT csv)"
    )
    reader = spawn(
        ["sqlite3", "-batch", "-readonly", "-noheader", "-csv", str(db), select],
        stdout=subprocess.PIPE,
    )
    pipe = reader.popen.stdout
    assert pipe is not None
    try:
        writer = run(psql_cmd(bindir, dsn, "-c", copy), env=utc_env(), stdin=pipe.fileno())
    finally:
        pipe.close()
        read = reader.wait()
    check(writer, f"psql \\copy into {table}")
    check(read, f"sqlite3 reading {table}")
    return read.peak_rss_mb + writer.peak_rss_mb


def dependency_order(bindir: Path, dsn: str, tables: list[str]) -> list[str]:
    """Referenced tables first (as the FKs in asyncmig's schema say), then the rest."""
    edges = psql(
        bindir,
        dsn,
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text"
        " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
        f" WHERE c.contype = 'f' AND n.nspname = '{ASYNCMIG_SCHEMA}'",
    )
    parents: dict[str, set[str]] = {t: set() for t in tables}
    for line in edges.splitlines():
        child, parent = (part.split(".")[-1].strip('"') for part in line.split("\t"))
        if child in parents and parent != child:
            parents[child].add(parent)
    ordered: list[str] = []
    while len(ordered) < len(tables):
        ready = [t for t in tables if t not in ordered and parents[t] <= set(ordered)]
        ordered += ready or [t for t in tables if t not in ordered]  # cycle: load anyway
    return ordered


RESET_SEQUENCES = """
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT a.attrelid::regclass AS tbl, a.attname AS col,
                    pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) AS seq
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             WHERE c.relnamespace = '{s}'::regnamespace AND c.relkind = 'r'
               AND a.attnum > 0 AND NOT a.attisdropped
               AND pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) IS NOT NULL
    LOOP
        EXECUTE format('SELECT setval(%L, coalesce(max(%I), 0) + 1, false) FROM %s',
                       r.seq, r.col, r.tbl);
    END LOOP;
END$$;
ANALYZE {tables};
"""


def finish_sql(tables: Sequence[str]) -> str:
    """Reset identity sequences and ANALYZE, as asyncmig does, so the work is the same."""
    names = ", ".join(f"{qi(C_SCHEMA)}.{qi(t)}" for t in tables)
    return RESET_SEQUENCES.format(s=C_SCHEMA, tables=names)


def run_c_pipeline(bindir: Path, dsn: str, db: Path, jobs: int, rows: int, note: str) -> Measure:
    """Pre-data, two parallel ``sqlite3 | psql`` pipes per step, post-data; all timed.

    Peak RSS: the sum over this script's child processes (the pipes, psql), sampled.
    """
    started = time.perf_counter()
    phases: dict[str, float] = {}
    with (
        meter.cpu_used(postmaster(dsn)) as cpu,
        meter.sampling(os.getpid(), include_root=False) as sampler,
    ):
        targets = target_columns(bindir, dsn)
        apply_sql(bindir, dsn, dump_section(bindir, dsn, "pre-data"), "pre-data")
        order = dependency_order(bindir, dsn, list(targets))
        mark = time.perf_counter()
        phases["first_copy"] = round(mark - started, 2)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [
                pool.submit(load_table, bindir, dsn, db, t, shared_columns(db, t, targets[t]))
                for t in order
            ]
            for future in futures:
                future.result()
        phases["load"] = round(time.perf_counter() - mark, 2)
        mark = time.perf_counter()
        apply_sql(bindir, dsn, dump_section(bindir, dsn, "post-data"), "post-data")
        phases["indexes+fks"] = round(time.perf_counter() - mark, 2)
        mark = time.perf_counter()
        apply_sql(bindir, dsn, finish_sql(order), "sequences and ANALYZE")
        phases["analyze"] = round(time.perf_counter() - mark, 2)
    seconds = time.perf_counter() - started
    return Measure(
        "sqlite3 | psql",
        True,
        seconds,
        rows,
        sampler.peak_mb,
        note,
        phases,
        cpu.tool,
        cpu.server,
    )


def verify_counts(bindir: Path, dsn: str, counts: dict[str, int], schema: str) -> list[str]:
    """Tables whose row count differs from SQLite's: a fast wrong load is no result."""
    wrong = []
    for table, expected in counts.items():
        got = int(psql(bindir, dsn, f"SELECT count(*) FROM {qi(schema)}.{qi(table)}").strip())
        if got != expected:
            wrong.append(f"{schema}.{table}: {got} rows, SQLite has {expected}")
    return wrong


# --- workloads, rounds, the command line ------------------------------------------------


def one_round(bindir: Path, dsn: str, db: Path, jobs: int, work: Workload) -> None:
    """asyncmig, then the C pipeline, then pgloader, once each, from empty schemas."""
    for schema in (ASYNCMIG_SCHEMA, C_SCHEMA):
        psql(bindir, dsn, f"DROP SCHEMA IF EXISTS {qi(schema)} CASCADE")
    mig = run_asyncmig(db, dsn, jobs, work.rows)
    work.add(mig)
    if mig.ok:
        work.problems += verify_counts(bindir, dsn, work.counts, ASYNCMIG_SCHEMA)
        note = ""
    else:
        create_fallback_schema(bindir, dsn)
        note = "asyncmig failed: loaded into the hand-written fallback schema"
    work.add(run_c_pipeline(bindir, dsn, db, jobs, work.rows, note))
    work.problems += verify_counts(bindir, dsn, work.counts, C_SCHEMA)
    loaded = run_pgloader(bindir, dsn, db, work.rows)
    if loaded is not None:
        work.add(loaded)
        psql(bindir, dsn, f"DROP DATABASE IF EXISTS {PGLOADER_DB}")


def dirty_round(
    bindir: Path,
    dsn: str,
    clean: Path,
    dirty: Path,
    jobs: int,
    works: tuple[Workload, Workload] | None,
    root: Path = ROOT,
) -> float | None:
    """asyncmig (of tree ``root``) on the clean twin, then on the dirty database: their
    time ratio; ``works`` (None: --baseline's runs, not tabled) gets the measures.

    The C pipeline has no reject path (one bad value stops its COPY), so only asyncmig
    runs here; its own final check accounts for every row, loaded or rejected.
    """
    measures = []
    for number, db in enumerate((clean, dirty)):
        psql(bindir, dsn, f"DROP SCHEMA IF EXISTS {qi(ASYNCMIG_SCHEMA)} CASCADE")
        rows = sum(source_counts(db).values())
        measures.append(run_asyncmig(db, dsn, jobs, rows, root=root))
        if works is not None:
            works[number].add(measures[-1])
    if all(m.ok for m in measures):
        return round(measures[1].seconds / measures[0].seconds, 2)
    return None


def dirty_rounds(
    args: argparse.Namespace,
    bindir: Path,
    dsn: str,
    dbs: dict[str, Path],
    works: dict[str, Workload],
    report: Report,
) -> None:
    """One round of the dirty comparison: this tree's, and --baseline's beside it,
    the two taking turns going first; the load average once both are done."""
    pair = (dbs["dirty-clean"], dbs["dirty"])
    trees: list[tuple[Path, list[float]]] = [(ROOT, report.dirty_ratios)]
    if args.baseline is not None:
        trees.append((args.baseline.resolve(), report.baseline_dirty_ratios))
        if len(report.dirty_loads) % 2:
            trees.reverse()
    for root, ratios in trees:
        mine = (works["dirty-clean"], works["dirty"]) if root == ROOT else None
        found = dirty_round(bindir, dsn, *pair, args.jobs, mine, root)
        if found is not None:
            ratios.append(found)
    report.dirty_loads.append(round(os.getloadavg()[0], 1))


def source_counts(db: Path) -> dict[str, int]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {n: conn.execute(f"SELECT count(*) FROM {qi(n)}").fetchone()[0] for n in names}


def generate(module: str, db: Path, *args: str) -> Path:
    """Run a generator in a child (so this process stays small); returns ``db``."""
    cmd = [sys.executable, "-m", module, str(db), *args]
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        raise RuntimeError(f"{module} failed: {tail(out.stderr)}")
    return db


def databases(args: argparse.Namespace, workdir: Path) -> dict[str, Path]:
    """The workloads' files: given with --db / --northwind-db, or generated."""
    dbs: dict[str, Path] = {}
    if not args.only_dirty:
        dbs["2truths"] = args.db or generate(
            "bench.gen_2truths",
            workdir / "2truths.db",
            "--rows",
            str(args.rows),
            "--seed",
            str(args.seed),
        )
    if not args.no_northwind and not args.only_dirty:
        dbs["northwind"] = args.northwind_db or generate(
            "bench.gen_northwind", workdir / "northwind.db", "--rows", str(args.northwind_rows)
        )
    if args.dirty or args.only_dirty:
        faults = max(1, args.dirty_rows // 100 // DIRTY_KINDS)  # about 1 % of rows dirty
        dbs["dirty-clean"] = generate(
            "bench.gen_dirty", workdir / "clean.db", "--rows", str(args.dirty_rows), "--faults", "0"
        )
        dbs["dirty"] = generate(
            "bench.gen_dirty",
            workdir / "dirty.db",
            "--rows",
            str(args.dirty_rows),
            "--faults",
            str(faults),
        )
    return dbs


DIRTY_KINDS = 8  # fault kinds gen_dirty plants, each --faults times


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=1_000_000,
        help="rows in the generated 2Truths database (ignored with --db)",
    )
    parser.add_argument("--db", type=Path, help="use this 2Truths file instead of generating")
    parser.add_argument(
        "--northwind-rows",
        type=int,
        default=1_000_000,
        help="rows in the generated Northwind-shaped database",
    )
    parser.add_argument("--northwind-db", type=Path, help="use this Northwind-shaped file")
    parser.add_argument("--no-northwind", action="store_true", help="skip that workload")
    parser.add_argument(
        "--dirty",
        action="store_true",
        help="also time asyncmig on a 1%%-dirty database against its clean twin",
    )
    parser.add_argument("--dirty-rows", type=int, default=500_000)
    parser.add_argument("--only-dirty", action="store_true", help="--dirty, and no other workload")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="with --dirty: also time this other asyncmig tree (e.g. a `git archive` of an "
        "older commit) on the same two databases, in the same rounds",
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--jobs", type=int, default=2, help="tables loaded in parallel")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the median is shown")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bindir = pg_bin()
    report = Report(args.jobs, f"PostgreSQL {bindir.parent.name}")
    with tempfile.TemporaryDirectory(prefix="asyncmig-bench-db-") as work:
        dbs = databases(args, Path(work))
        works = {
            name: Workload(name, sum(c.values()), c)
            for name, c in ((n, source_counts(db)) for n, db in dbs.items())
        }
        report.workloads = list(works.values())
        with cluster(bindir) as dsn:
            for _ in range(max(1, args.repeat)):  # rounds interleave tools and workloads
                for name in ("2truths", "northwind"):
                    if name in dbs:
                        one_round(bindir, dsn, dbs[name], args.jobs, works[name])
                if args.dirty or args.only_dirty:
                    dirty_rounds(args, bindir, dsn, dbs, works, report)
    print(render(report))
    if args.json is not None:
        args.json.write_text(to_json(report) + "\n")
    return 0 if ok(report) else 1


if __name__ == "__main__":
    raise SystemExit(main())
