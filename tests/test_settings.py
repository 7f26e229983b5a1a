"""One declaration of the options: the command line, the environment, the job file and
the README all read it, strictly. These run the command line in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import asyncpg
import pytest

from asyncmig.cli import settings
from asyncmig.cli.resolve import resolve
from asyncmig.cli.settings import Duplicates, OnError
from asyncmig.load.pipeline import PipelineSettings
from asyncmig.runstate import RunSettings
from tests.fix_cli import RunMain, one_error_line, write_source

ROOT = Path(__file__).resolve().parent.parent
RUN = tuple(o.name for o in settings.OPTIONS if o.in_job)


def test_readme_option_table_is_generated_from_the_declaration() -> None:
    """The README's table is exactly what `python -m asyncmig.cli.settings --markdown` prints."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("| option | env | default | meaning |")
    end = readme.index("<!-- options end -->")
    assert readme[start:end] == settings.markdown_table(), (
        "README option table is stale: regenerate it with python -m asyncmig.cli.settings --markdown"
    )


def test_defaults_are_written_once() -> None:
    """The settings objects take their defaults from the declaration."""
    assert RunSettings(Path("x"), None).jobs == settings.default("jobs") == 2  # type: ignore[arg-type]
    assert PipelineSettings().batch_size == settings.default("batch_size") == 5000
    assert PipelineSettings().queue_size == settings.default("queue_size")
    assert RunSettings(Path("x"), None).duplicates is Duplicates.FAIL  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("false", False),
        ("0", False),
        ("off", False),
        ("No", False),
        ("true", True),
        ("1", True),
        ("yes", True),
        ("", False),
    ],
)
def test_environment_booleans_are_strict(raw: str, expected: bool) -> None:
    """ASYNCMIG_SNAPSHOT=false means off (it used to mean on); empty means unset."""
    env = {"ASYNCMIG_SNAPSHOT": raw, "ASYNCMIG_VERBOSE": raw, "ASYNCMIG_REPLACE": raw}
    values = resolve(RUN, {}, env)
    assert (values["snapshot"], values["verbose"], values["replace"]) == (expected,) * 3


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("ASYNCMIG_SNAPSHOT", "maybe", "ASYNCMIG_SNAPSHOT is expected to be true or false"),
        ("ASYNCMIG_JOBS", "abc", "ASYNCMIG_JOBS is expected to be a whole number, got 'abc'"),
        ("ASYNCMIG_JOBS", "0", "ASYNCMIG_JOBS is expected to be at least 1, got 0"),
        (
            "ASYNCMIG_ON_ERROR",
            "bogus",
            "ASYNCMIG_ON_ERROR is expected to be one of coerce, default",
        ),
        ("ASYNCMIG_DUPLICATES", "rejct", "(did you mean 'reject'?)"),
        ("ASYNCMIG_LOG_DIR", "  ", "ASYNCMIG_LOG_DIR is empty: give a path"),
    ],
)
def test_bad_environment_values_exit_2_with_one_line(
    run_main: RunMain, tmp_path: Path, name: str, raw: str, message: str
) -> None:
    code, out, err = run_main("run", "--sqlite", str(tmp_path / "a.db"), env={name: raw})
    assert code == 2
    assert message in one_error_line(err)
    assert out == ""


def test_a_bad_environment_value_never_breaks_help(run_main: RunMain) -> None:
    code, out, _ = run_main("run", "--help", env={"ASYNCMIG_JOBS": "abc"})
    assert code == 0
    assert "--jobs N" in out and "ASYNCMIG_JOBS" in out


def test_no_prefix_matching(run_main: RunMain, tmp_path: Path) -> None:
    """--sql is not taken as --sqlite: an error that suggests it."""
    code, _, err = run_main("plan", "--sql", str(tmp_path / "a.db"))
    assert code == 2
    assert "no such option --sql (did you mean --sqlite?)" in one_error_line(err)


def test_command_line_wins_over_environment_and_the_choice_is_an_enum() -> None:
    values = resolve(
        RUN,
        {"on_error": OnError.FAIL, "jobs": 7},
        {"ASYNCMIG_ON_ERROR": "null", "ASYNCMIG_JOBS": "3", "ASYNCMIG_BATCH_SIZE": "10"},
    )
    assert values["on_error"] is OnError.FAIL
    assert (values["jobs"], values["batch_size"]) == (7, 10)
    assert values.origins["jobs"] == "command line"
    assert values.origins["batch_size"] == "environment"
    assert values.origins["queue_size"] == "default"


def test_every_option_has_help_a_group_and_a_metavar_when_it_takes_a_value() -> None:
    for option in settings.OPTIONS:
        assert option.help and option.group in settings.Group
        assert option.is_flag or option.metavar, option.name
        assert all(flag.startswith("-") for flag in option.flags)


async def fetch_items(dsn: str, schema: str, table: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f'SELECT id, name FROM "{schema}"."{table}" ORDER BY id')
    finally:
        await conn.close()
    return [(r["id"], r["name"]) for r in rows]


def write_job(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def test_a_job_file_holds_source_secret_target_options_and_profile(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    """`run --config job.toml` alone migrates: the source path is relative to the file,
    the URL comes from a secret file (trailing newline and all), the profile applies."""
    write_source(tmp_path / "app.db")
    (tmp_path / "pg_url").write_text(pg_dsn + "\n", encoding="utf-8")
    job = write_job(
        tmp_path / "job.toml",
        '[job]\nsqlite = "app.db"\npg_file = "pg_url"\n'
        'schema = "reporting"\non_error = "fail"\njobs = 1\n\n'
        '[tables.item]\nrename = "items"\n',
    )
    env = {"ASYNCMIG_LOG_DIR": str(tmp_path / "logs")}
    code, out, err = run_main("run", "--config", str(job), env=env)
    assert code == 0, err
    assert "migrated into" in out
    assert asyncio.run(fetch_items(pg_dsn, "reporting", "items")) == [
        (1, "pen"),
        (2, "筆"),
        (3, "🖊"),
    ]
    code, out, err = run_main("status", env={"ASYNCMIG_CONFIG": str(job)})
    assert code == 0, err
    assert "run" in out and "succeeded" in out


def test_job_file_precedence_command_line_then_environment_then_file(tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "job.toml",
        "[job]\njobs = 3\nbatch_size = 100\nqueue_size = 9\nsnapshot = true\n",
    )
    env = {"ASYNCMIG_CONFIG": str(job), "ASYNCMIG_JOBS": "5", "ASYNCMIG_BATCH_SIZE": "50"}
    values = resolve((*RUN, "config"), {"jobs": 7}, env)
    assert (values["jobs"], values["batch_size"], values["queue_size"]) == (7, 50, 9)
    assert values["snapshot"] is True
    assert values.origins["queue_size"] == "job file"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[job]\njbos = 3\n", "unknown key job.jbos (did you mean 'jobs'?)"),
        ('[job]\njobs = "4"\n', "job.jobs is expected to be a whole number, got '4'"),
        ('[job]\nsnapshot = "false"\n', "job.snapshot is expected to be true or false"),
        ('[job]\non_error = "sometimes"\n', "job.on_error is expected to be one of"),
        ('[job]\npg = "postgresql://a@b/c"\npg_file = "x"\n', "job has pg, pg_file; give only one"),
        ('[job]\npg_env = "NOT_SET_ANYWHERE"\n', "pg_env names NOT_SET_ANYWHERE, which is not set"),
        ("[jbo]\njobs = 3\n", "unknown key(s) ['jbo']"),
        ('[job]\nlog_dir = " "\n', "job.log_dir is empty: give a path"),
    ],
)
def test_job_files_are_strictly_validated(
    run_main: RunMain, tmp_path: Path, body: str, message: str
) -> None:
    job = write_job(tmp_path / "job.toml", body)
    code, _, err = run_main(
        "validate",
        "--sqlite",
        str(write_source(tmp_path / "a.db")),
        "--config",
        str(job),
        "--pg",
        "postgresql://me@127.0.0.1:1/db",
    )
    assert code == 2, err
    assert message in one_error_line(err)


def test_the_target_twice_at_one_level_is_refused(run_main: RunMain, tmp_path: Path) -> None:
    secret = tmp_path / "pg_url"
    secret.write_text("postgresql://me:pw@127.0.0.1:1/db\n", encoding="utf-8")
    code, _, err = run_main(
        "status", env={"ASYNCMIG_PG": "postgresql://a@b/c", "ASYNCMIG_PG_FILE": str(secret)}
    )
    assert code == 2
    assert "the target is given twice (ASYNCMIG_PG and ASYNCMIG_PG_FILE)" in one_error_line(err)


def test_an_empty_target_is_refused_not_replaced_by_the_embedded_server(
    run_main: RunMain, tmp_path: Path
) -> None:
    """``--pg "$URL"`` with URL unset (or ``pg = ""`` in a job file) is a usage error:
    a scheduled job must not quietly migrate into a server of its own instead."""
    source = str(write_source(tmp_path / "a.db"))
    code, _, err = run_main("run", "--sqlite", source, "--pg", "")
    assert code == 2 and "--pg is empty" in one_error_line(err)
    job = write_job(tmp_path / "job.toml", f'[job]\nsqlite = "{source}"\npg = " "\n')
    code, _, err = run_main("validate", "--config", str(job))
    assert code == 2 and "job.pg is empty" in one_error_line(err)


def test_pg_file_errors_are_usage_errors(run_main: RunMain, tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    code, _, err = run_main("status", "--pg-file", str(tmp_path / "empty"))
    assert code == 2 and "the file is empty" in one_error_line(err)
    code, _, err = run_main("status", "--pg-file", str(tmp_path / "missing"))
    assert code == 2 and "No such file" in one_error_line(err)
    two = tmp_path / "two"  # a primary's and a replica's URL: neither is shown
    two.write_text("postgresql://a@/b?host=/nowhere\npostgresql://r:S3CRET@replica/app\n")
    code, _, err = run_main("status", "--pg-file", str(two))
    assert code == 2 and "holds 2 lines, a URL is one" in one_error_line(err)
    assert "S3CRET" not in err and "replica" not in err


def test_a_target_that_never_comes_up_is_retried_then_reported(
    run_main: RunMain, tmp_path: Path
) -> None:
    """--connect-timeout retries a refused connection, one log line per attempt, then
    fails with the usual one-line connection error (exit 4), password hidden."""
    secret = tmp_path / "pg_url"
    secret.write_text("postgresql://me:s3cret@127.0.0.1:1/db\n", encoding="utf-8")
    code, _, err = run_main(
        "status",
        "--pg-file",
        str(secret),
        "--connect-timeout",
        "2",
        "--log-format",
        "json",
        "--debug",
    )
    assert code == 4, err
    lines = err.splitlines()
    assert any('"event":"target_not_ready"' in line and '"attempt":1' in line for line in lines)
    assert lines[-1].startswith("asyncmig: error: cannot connect to postgresql://me:***@")
    assert "s3cret" not in err


def test_pg_env_names_the_variable_that_holds_the_url(tmp_path: Path) -> None:
    """The job file can point at a variable (the value is never written in the file);
    the command line still wins over it."""
    job = write_job(tmp_path / "job.toml", '[job]\npg_env = "REPORTING_URL"\n')
    env = {"ASYNCMIG_CONFIG": str(job), "REPORTING_URL": " postgresql://r:pw@db/reports\n"}
    values = resolve(("config", "pg", "pg_file"), {}, env)
    assert (values["pg"], values.origins["pg"]) == ("postgresql://r:pw@db/reports", "job file")
    values = resolve(("config", "pg", "pg_file"), {"pg": "postgresql://a@b/c"}, env)
    assert (values["pg"], values.origins["pg"]) == ("postgresql://a@b/c", "command line")


STARTING_UP = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"


class BootingServer:
    """A TCP front for the test server that answers its first ``refusals`` connections
    as a PostgreSQL still starting up does (SQLSTATE 57P03), then forwards every byte
    to the real server's Unix socket."""

    def __init__(self, unix_socket: str, refusals: int):
        self.unix_socket, self.refusals = unix_socket, refusals
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        with contextlib.suppress(OSError):  # the listener is closed at the end of the test
            while True:
                client, _ = self.listener.accept()
                if self.refusals > 0:
                    self.refusals -= 1
                    self.refuse(client)
                    continue
                backend = socket.socket(socket.AF_UNIX)
                self.open += [client, backend]
                backend.connect(self.unix_socket)
                for src, dst in ((client, backend), (backend, client)):
                    threading.Thread(target=pump, args=(src, dst), daemon=True).start()

    def close(self) -> None:
        for sock in [self.listener, *self.open]:
            sock.close()

    @staticmethod
    def refuse(client: socket.socket) -> None:
        with client:
            length = struct.unpack("!i", client.recv(4, socket.MSG_WAITALL))[0]
            client.recv(length - 4, socket.MSG_WAITALL)  # the startup message
            client.sendall(b"E" + struct.pack("!i", len(STARTING_UP) + 4) + STARTING_UP)


def pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def test_a_target_still_starting_up_is_waited_for(run_main: RunMain, pg_dsn: str) -> None:
    """Two 'the database system is starting up' refusals, then the server answers:
    --connect-timeout retries (a log line per refusal) and the command succeeds."""
    parts = urlsplit(pg_dsn)
    host_dir = dict(parse_qsl(parts.query))["host"]
    # the socket, not its .lock file beside it (which one a glob lists first varies)
    unix_socket = str(next(p for p in Path(host_dir).glob(".s.PGSQL.*") if p.is_socket()))
    server = BootingServer(unix_socket, refusals=2)
    try:
        url = f"postgresql://postgres@127.0.0.1:{server.port}{parts.path}?sslmode=disable"
        code, out, err = run_main(
            "status", "--pg", url, "--connect-timeout", "60", "--log-format", "json"
        )
    finally:
        server.close()
    assert code == 0, err
    assert "no migrations recorded" in out
    waits = [json.loads(line) for line in err.splitlines() if "target_not_ready" in line]
    assert [w["attempt"] for w in waits] == [1, 2]
    assert all("starting up" in w["error"] for w in waits)


def test_the_effective_configuration_is_logged_once_with_its_origins(
    run_main: RunMain, tmp_path: Path
) -> None:
    """One `configuration` event says where each option not left at its default came
    from (values are not logged: a URL could hold a password)."""
    source = write_source(tmp_path / "a.db")
    code, _, err = run_main(
        "plan",
        "--sqlite",
        str(source),
        "--verbose",
        "--log-format",
        "json",
        env={"ASYNCMIG_JOBS": "3"},
    )
    assert code == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    configuration = [e for e in events if e["event"] == "configuration"]
    assert len(configuration) == 1
    assert configuration[0]["sources"] == {
        "sqlite": "command line",
        "jobs": "environment",
        "verbose": "command line",
        "log_format": "command line",
    }
