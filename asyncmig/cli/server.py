"""``asyncmig server``: the embedded PostgreSQL that ``run`` starts when no target is
given (start, status, stop, url, psql)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import click

from asyncmig.cli.output import emit
from asyncmig.cli.resolve import Resolved
from asyncmig.errors import UsageError
from asyncmig.target.embedded import EmbeddedServer, psql_path

OPTIONS = ("data_dir", "debug")
M = "asyncmig.cli.server:"


def server_group() -> click.Group:
    from asyncmig.cli.main import Commands, Spec, make_command

    group = Commands(
        "server",
        help="The embedded PostgreSQL that `run` starts when no "
        "PostgreSQL is given. It lives in --data-dir and keeps running after "
        "the run, so its URL keeps working, until `asyncmig server stop`.",
        short_help="the embedded PostgreSQL started by `run`",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    specs = (
        Spec(
            "start",
            "start it (or find it running) and print its URL",
            "Start the embedded PostgreSQL (creating it if needed) and print its URL.",
            "asyncmig server start",
            OPTIONS,
            M + "start",
        ),
        Spec(
            "status",
            "say whether it is running, and its URL",
            "Say whether the embedded PostgreSQL is running, with its URL; exits 1 when it is not.",
            "asyncmig server status",
            OPTIONS,
            M + "status",
        ),
        Spec(
            "stop",
            "stop it",
            "Stop the embedded PostgreSQL; says so when nothing was running.",
            "asyncmig server stop",
            OPTIONS,
            M + "stop",
        ),
        Spec(
            "url",
            "print its URL (starting it if needed)",
            "Print the embedded PostgreSQL's URL, starting it if it is not running.",
            'psql "$(asyncmig server url)"',
            OPTIONS,
            M + "url",
        ),
        Spec(
            "psql",
            "open the bundled psql on it",
            "Open the psql client bundled with the embedded server, connected to it; "
            "arguments after -- go to psql.",
            "asyncmig server psql -- -c '\\dt'",
            OPTIONS,
            M + "psql",
        ),
    )
    for spec in specs:
        group.add_command(make_command(spec, extra_args=spec.name == "psql"))
    return group


def server_for(values: Resolved, *, must_exist: bool = True) -> EmbeddedServer:
    server = EmbeddedServer(Path(values["data_dir"]) / "pgdata")
    if must_exist and not (server.pgdata / "PG_VERSION").exists():
        raise UsageError(
            f"no embedded PostgreSQL in {server.pgdata}",
            hint="`asyncmig run` without --pg creates one, or pass its --data-dir",
        )
    return server


def start(_command: str, values: Resolved, _environ: Mapping[str, str]) -> int:
    emit(server_for(values, must_exist=False).start() + "\n")
    return 0


def status(_command: str, values: Resolved, _environ: Mapping[str, str]) -> int:
    server = server_for(values, must_exist=False)
    url = server.running_url()
    emit(f"running at {url}\n" if url else f"not running (data directory {server.pgdata})\n")
    return 0 if url else 1


def stop(_command: str, values: Resolved, _environ: Mapping[str, str]) -> int:
    server = server_for(values, must_exist=False)
    if server.stop():
        emit(f"stopped the embedded PostgreSQL in {server.pgdata}\n")
    else:
        emit(f"nothing to stop: no embedded PostgreSQL is running in {server.pgdata}\n")
    return 0


def url(_command: str, values: Resolved, _environ: Mapping[str, str]) -> int:
    emit(server_for(values).start() + "\n")
    return 0


def psql(_command: str, values: Resolved, _environ: Mapping[str, str], *args: str) -> int:
    """psql runs in the foreground with this terminal; its exit code is ours."""
    address = server_for(values).start()
    return subprocess.run([str(psql_path()), address, *args], check=False).returncode
