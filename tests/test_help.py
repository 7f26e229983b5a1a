"""Help that teaches: every command described with an example, only its own options,
grouped; a generated reference that cannot drift; the embedded server's commands."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from asyncmig.cli import docs as cli_docs
from asyncmig.cli.main import build_cli, main
from asyncmig.cli.output import package_version
from tests.fix_cli import RunMain, one_error_line, write_source

ROOT = Path(__file__).resolve().parent.parent


def command_paths() -> list[tuple[str, ...]]:
    return [tuple(path.split()[1:]) for path, _ in cli_docs.walk(build_cli(), None, "asyncmig")]


def test_the_cli_reference_is_generated_from_the_declarations() -> None:
    """docs/cli.md is exactly `python -m asyncmig.cli.docs`, and holds every command."""
    checked_in = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert checked_in == cli_docs.reference(), (
        "docs/cli.md is stale: regenerate it with python -m asyncmig.cli.docs > docs/cli.md"
    )
    for path in command_paths():
        assert f"\n## {' '.join(('asyncmig', *path))}\n" in checked_in


@pytest.mark.parametrize("path", [p for p in command_paths() if p and p != ("server",)])
def test_every_command_has_a_paragraph_and_an_example(
    run_main: RunMain, path: tuple[str, ...]
) -> None:
    code, out, _ = run_main(*path, "--help")
    assert code == 0
    description = out.split("\n\n")[1].strip()
    assert len(description.split()) >= 8, description
    example = out.split("Example:\n", 1)[1].strip()
    assert example.startswith(("asyncmig ", "psql ")), out


def test_commands_list_only_the_options_they_use(run_main: RunMain) -> None:
    """status has no --jobs, plan no --pg; run shows its options by group with metavars."""
    _, status, _ = run_main("status", "--help")
    _, plan, _ = run_main("plan", "--help")
    _, run, _ = run_main("run", "--help")
    assert "--jobs" not in status and "--pg-file FILE" in status
    assert "--pg" not in plan and "--sqlite FILE" in plan
    headings = [line for line in run.splitlines() if line.endswith(" options:")]
    assert headings == [
        "Source options:",
        "Target options:",
        "Load options:",
        "Policy options:",
        "Output options:",
        "Other options:",
    ]
    assert "--pg, --postgres URL" in run and "--on-error POLICY" in run
    code, _, err = run_main("status", "--jobs", "3")
    assert code == 2 and "asyncmig status does not take --jobs" in one_error_line(err)


def test_version(run_main: RunMain) -> None:
    code, out, _ = run_main("--version")
    assert (code, out) == (0, f"asyncmig {package_version()}\n")
    assert package_version()[0].isdigit()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rnu",), "no such command 'rnu' (did you mean 'run'?)"),
        (("server", "stp"), "no such command 'stp' (did you mean 'stop'?)"),
        (("check", "--dep"), "no such option --dep (did you mean --deep?)"),
    ],
)
def test_typos_get_did_you_mean(run_main: RunMain, args: tuple[str, ...], message: str) -> None:
    code, _, err = run_main(*args)
    assert code == 2
    assert message in one_error_line(err)


def test_help_does_not_import_the_heavy_modules() -> None:
    """`--help` loads neither the drivers nor the planner (a fresh interpreter is the
    only place to observe sys.modules untouched by other tests)."""
    probe = (
        "import sys; from asyncmig.cli.main import main; main(['run', '--help']); "
        "print(sorted(m for m in ('asyncpg', 'aiosqlite', 'asyncmig.plan.builder', "
        "'asyncmig.run', 'structlog') if m in sys.modules), file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "[]"
    assert "Load options:" in result.stdout


def test_the_embedded_server_commands_and_the_next_steps(
    run_main: RunMain, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """run with no target starts the embedded server and says how to open and stop it;
    server status/url/psql/stop work on it, and a second stop says nothing was running."""
    # like the session server: under /tmp itself, which the server's own user can reach
    data_dir = tempfile.mkdtemp(prefix="asyncmig-test-")
    source = write_source(tmp_path / "app.db")
    env = {"ASYNCMIG_DATA_DIR": data_dir, "ASYNCMIG_LOG_DIR": str(tmp_path / "logs")}
    try:
        assert main(["run", "--sqlite", str(source)], environ=env) == 0
        out = capfd.readouterr().out
        steps = out.split("next steps:\n", 1)[1]
        assert "psql" in steps and f"asyncmig server stop --data-dir {data_dir}" in steps
        command = shlex.split(steps.splitlines()[0].split(":", 1)[1])
        opened = subprocess.run(
            [*command, "-A", "-t", "-c", "SELECT count(*) FROM item"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert (opened.returncode, opened.stdout.strip()) == (0, "3"), opened.stderr
        assert main(["server", "status", "--data-dir", data_dir], environ={}) == 0
        assert capfd.readouterr().out.startswith("running at postgresql://")
        code = main(
            [
                "server",
                "psql",
                "--data-dir",
                data_dir,
                "--",
                "-A",
                "-t",
                "-c",
                "SELECT string_agg(name, ',' ORDER BY id) FROM public.item",
            ],
            environ={},
        )
        assert (code, capfd.readouterr().out.strip()) == (0, "pen,筆,🖊")
    finally:
        assert main(["server", "stop", "--data-dir", data_dir], environ={}) == 0
    assert capfd.readouterr().out.startswith("stopped the embedded PostgreSQL")
    assert main(["server", "stop", "--data-dir", data_dir], environ={}) == 0
    assert capfd.readouterr().out.startswith("nothing to stop")
    assert main(["server", "status", "--data-dir", data_dir], environ={}) == 1
    assert "not running" in capfd.readouterr().out
    shutil.rmtree(data_dir)


@pytest.mark.parametrize("args", [(), ("server",)])
def test_no_command_shows_the_help(run_main: RunMain, args: tuple[str, ...]) -> None:
    code, out, err = run_main(*args)
    assert (code, err) == (2, "")
    assert out.startswith(f"Usage: {' '.join(('asyncmig', *args))} [OPTIONS] COMMAND")
    assert "Commands:" in out
