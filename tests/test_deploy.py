"""The deployment examples in deploy/ and the Dockerfile say what the README promises.

No container engine, cluster or systemd runs here, so these tests check what can be
checked without one: every asyncmig command line in an example is accepted by the
real command line parser (a renamed option fails here), the secret reaches the job as
a file named by ASYNCMIG_PG_FILE, the job runs as the image's non-root user on a
read-only root filesystem, and a CronJob never overlaps itself. The jobs themselves
run in tests/test_image.py, as the image runs them.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from asyncmig.cli.main import build_cli

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def accepted(args: list[str]) -> str:
    """Parse ``args`` (after ``asyncmig``) as the real CLI would; returns the command."""
    cli = build_cli()
    command = cli.get_command(click.Context(cli), args[0])
    assert command is not None, f"no command {args[0]!r}"
    command.make_context(args[0], list(args[1:]))
    return args[0]


def test_dockerfile_is_multi_stage_non_root_and_read_only_ready() -> None:
    """Two stages from python:3.11-slim, the wheel installed from the first, a numeric
    non-root USER, ENTRYPOINT asyncmig, /data the working directory and volume."""
    text = (ROOT / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["python:3.11-slim"] * 2
    assert "pip wheel" in text and "--no-index --find-links=/wheels" in text
    assert re.search(r"^USER 10001", text, re.MULTILINE)
    assert 'ENTRYPOINT ["asyncmig"]' in text and "WORKDIR /data" in text
    assert 'VOLUME ["/data"]' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*") + 1 :][:3] == ["!pyproject.toml", "!README.md", "!asyncmig/"]


def test_compose_job_waits_for_postgres_and_reads_the_url_from_a_secret() -> None:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    job = compose["services"]["asyncmig"]
    assert job["read_only"] is True and "/tmp" in job["tmpfs"]
    assert job["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert job["environment"]["ASYNCMIG_PG_FILE"] == "/run/secrets/pg-url"
    assert "pg-url" in job["secrets"] and "pg-url" in compose["secrets"]
    assert int(job["environment"]["ASYNCMIG_CONNECT_TIMEOUT"]) > 0
    assert accepted(job["command"]) == "sync"
    assert "healthcheck" in compose["services"]["postgres"]


def test_kubernetes_cronjob_forbids_overlap_and_mounts_the_secret_as_a_file() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "cronjob.yaml").read_text()))
    secret = next(d for d in docs if d["kind"] == "Secret")
    cron = next(d for d in docs if d["kind"] == "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert accepted(container["args"]) == "sync"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert all("valueFrom" not in e for e in container["env"])  # never the URL itself
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret_volume = next(n for n, v in volumes.items() if "secret" in v)
    assert volumes[secret_volume]["secret"]["secretName"] == secret["metadata"]["name"]
    key = next(iter(secret["stringData"]))
    assert env["ASYNCMIG_PG_FILE"] == f"{mounts[secret_volume]}/{key}"
    assert {"/data", "/tmp"} <= set(mounts.values())


def test_systemd_units_run_the_sync_nightly_without_privileges() -> None:
    service = (DEPLOY / "systemd" / "asyncmig-sync.service").read_text()
    timer = (DEPLOY / "systemd" / "asyncmig-sync.timer").read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", service, re.MULTILINE)
    assert exec_start is not None
    argv = shlex.split(exec_start.group(1))
    assert argv[0].endswith("/asyncmig") and accepted(argv[1:]) == "sync"
    assert "Environment=ASYNCMIG_PG_FILE=%d/pg-url" in service
    assert "LoadCredential=pg-url:" in service and "DynamicUser=yes" in service
    assert "ProtectSystem=strict" in service and "Type=oneshot" in service
    assert re.search(r"^OnCalendar=", timer, re.MULTILINE) and "Persistent=true" in timer


def test_cron_line_and_docker_run_script_use_valid_commands() -> None:
    """The cron line is five fields, a user and a command; every asyncmig call in both
    parses; the script is valid sh."""
    line = next(
        x
        for x in (DEPLOY / "crontab").read_text().splitlines()
        if x and not x.startswith("#") and "=" not in x.split()[0]
    )
    fields = line.split(None, 6)
    assert len(fields) == 7 and fields[5] == "asyncmig"
    words = shlex.split(fields[6])
    call = words[words.index("/opt/asyncmig/bin/asyncmig") + 1 : words.index(">>")]
    assert accepted(call) == "sync" and "flock" in words
    script = DEPLOY / "docker-run.sh"
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    text = script.read_text().replace("\\\n", " ")
    calls = [shlex.split(m) for m in re.findall(r"asyncmig:latest ([a-z].*)", text)]
    assert [accepted(c) for c in calls] == ["run", "sync"]


def test_a_renamed_option_would_fail_these_checks() -> None:
    """The parser check is real: an option the CLI does not have is refused."""
    with pytest.raises(click.UsageError):
        accepted(["sync", "--sqlite", "app.db", "--if-unchanged"])
