"""--output json is a contract: real output validates against docs/output.schema.json,
failures print an error document, a closed pipe ends quietly, wide names align."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from asyncmig.cli.textwidth import width
from tests.fix_cli import ROOT, RunMain, one_error_line, valid


def family(path: Path) -> Path:
    """Parents and children whose names sort against the plan order, CJK and emoji."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE "顧客" (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE a_orders (id INTEGER PRIMARY KEY,
                               customer INTEGER REFERENCES "顧客"(id), note TEXT);
        CREATE TABLE "🖊pens" (id INTEGER PRIMARY KEY, colour TEXT);
        INSERT INTO "顧客" VALUES (1, '山田'), (2, 'Ann');
        INSERT INTO a_orders VALUES (10, 1, 'x'), (11, 2, 'y'), (12, 1, 'z');
        INSERT INTO "🖊pens" VALUES (1, 'blue');
    """)
    conn.close()
    return path


def test_run_and_check_documents_validate_and_carry_structured_values(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    source = family(tmp_path / "shop.db")
    env = {"ASYNCMIG_LOG_DIR": str(tmp_path / "logs")}
    code, out, err = run_main(
        "run", "--sqlite", str(source), "--pg", pg_dsn, "--output", "json", env=env
    )
    assert code == 0, err
    run = valid(out)
    assert (run["command"], run["status"], run["exit_code"], run["error"]) == (
        "run",
        "succeeded",
        0,
        None,
    )
    assert isinstance(run["run_id"], int) and run["rows"] == 6
    names = [t["table"] for t in run["tables"]]
    assert names.index("顧客") < names.index("a_orders")  # plan order: parent first
    counts = {c["table"]: c for c in run["checks"] if c["check"] == "row count"}
    assert counts["a_orders"]["expected"]["rows"] == counts["a_orders"]["found"]["rows"] == 3

    async def lose_a_row() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("DELETE FROM a_orders WHERE id = 12")
        finally:
            await conn.close()

    asyncio.run(lose_a_row())
    code, out, _ = run_main(
        "check", "--sqlite", str(source), "--pg", pg_dsn, "--deep", "--output", "json"
    )
    checked = valid(out)
    assert (code, checked["status"], checked["exit_code"]) == (6, "checks_failed", 6)
    failing = [c for c in checked["checks"] if not c["ok"]]
    assert [
        (c["check"], c["table"], c["expected"]["rows"], c["found"]["rows"]) for c in failing
    ] == [("row count", "a_orders", 3, 2), ("checksum", "a_orders", 3, 2)]
    checksum = failing[1]
    assert checksum["expected"]["checksum"] != checksum["found"]["checksum"]
    assert checksum["expected"]["text"] == checksum["expected"]["checksum"]
    code, out, err = run_main(
        "rollback", "--pg", pg_dsn, "--run", str(run["run_id"]), "--output", "json", env=env
    )
    refused = valid(out)  # the row deleted since the run: unsafe without --force
    assert (code, refused["status"], refused["error"]["class"]) == (
        10,
        "error",
        "RollbackRefused",
    ), err
    assert refused["warnings"][0].startswith("table a_orders: 1 row deleted since run")
    code, out, err = run_main(
        "rollback",
        "--pg",
        pg_dsn,
        "--run",
        str(run["run_id"]),
        "--force",
        "--output",
        "json",
        env=env,
    )
    undone = valid(out)
    assert (code, undone["status"], undone["run_id"]) == (0, "succeeded", run["run_id"]), err
    assert undone["success"] is True and Path(undone["backup"]["path"]).exists()
    assert "DROP TABLE" in Path(undone["rollback_script"]).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "error_class", "code"),
    [
        (("status", "--pg", "postgresql://me:s3cret@127.0.0.1:1/db"), "TargetError", 4),
        (("plan", "--sqlite", "/nonexistent/app.db"), "SourceError", 3),
        (("run", "--jobs", "many"), "UsageError", 2),
    ],
)
def test_a_failure_prints_an_error_document(
    run_main: RunMain, args: tuple[str, ...], error_class: str, code: int
) -> None:
    """stdout is never empty with --output json: the error object says what failed."""
    exit_code, out, err = run_main(*args, "--output", "json")
    assert exit_code == code
    data = valid(out)
    assert data["status"] == "error" and data["exit_code"] == code
    assert data["error"]["class"] == error_class and data["error"]["exit_code"] == code
    assert data["error"]["message"] in one_error_line(err)
    assert "s3cret" not in out + err


def test_the_environment_asks_for_json_too(run_main: RunMain) -> None:
    code, out, _ = run_main(
        "status", "--pg", "postgresql://me@127.0.0.1:1/db", env={"ASYNCMIG_OUTPUT": "json"}
    )
    assert code == 4 and valid(out)["error"]["class"] == "TargetError"


def test_status_and_plan_documents(run_main: RunMain, tmp_path: Path, pg_dsn: str) -> None:
    source = family(tmp_path / "shop.db")
    code, out, _ = run_main("status", "--pg", pg_dsn, "--output", "json")
    assert code == 0 and valid(out)["runs"] == []
    code, out, _ = run_main("plan", "--sqlite", str(source), "--format", "json")
    plan = valid(out)
    assert code == 0 and plan["plan"]["schema"] == "public"
    assert {t["name"] for t in plan["tables"]} == {"顧客", "a_orders", "🖊pens"}
    code, out, _ = run_main("schema", "--sqlite", str(source), "--print", "--output", "json")
    assert code == 0 and 'CREATE TABLE "public"."顧客"' in valid(out)["sql"]


def wide_source(path: Path, tables: int) -> Path:
    conn = sqlite3.connect(path)
    for n in range(tables):
        columns = ", ".join(f"column_with_a_long_name_{c} TEXT" for c in range(12))
        conn.execute(f"CREATE TABLE table_{n} (id INTEGER PRIMARY KEY, {columns})")
    conn.close()
    return path


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`asyncmig plan --output json | head -c 600` with a document far larger than the
    pipe's buffer: no BrokenPipeError, no exit 70, the command's own exit code."""
    source = wide_source(tmp_path / "wide.db", 120)
    script = (
        f'"{sys.executable}" -m asyncmig plan --sqlite "{source}" --output json '
        '| head -c 600 > /dev/null; echo "exit=${PIPESTATUS[0]}" >&2'
    )
    result = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert result.stderr.strip().splitlines()[-1] == "exit=0", result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert "Exception ignored" not in result.stderr


def test_wide_names_align_by_display_width(run_main: RunMain, tmp_path: Path, pg_dsn: str) -> None:
    """In the run summary and the check table, each column starts at the same screen
    position whatever the width of the names before it (顧客 is 4 columns, not 2)."""
    source = family(tmp_path / "shop.db")
    env = {"ASYNCMIG_LOG_DIR": str(tmp_path / "logs")}
    code, out, err = run_main("run", "--sqlite", str(source), "--pg", pg_dsn, env=env)
    assert code == 0, err
    summary = out.splitlines()[:5]  # heading, three tables, total
    assert [line.split()[0] for line in summary] == ["table", "顧客", "a_orders", "🖊pens", "total"]
    rows_end = {
        width(line[: line.index(line.split()[1]) + len(line.split()[1])]) for line in summary
    }
    assert len(rows_end) == 1, summary  # the right-aligned row counts end in one column
    code, out, _ = run_main("check", "--sqlite", str(source), "--pg", pg_dsn)
    counts = out.split("\n\n", 1)[0].splitlines()  # the first table: row counts
    assert code == 0 and len(counts) == 4  # the heading and one line per table
    # the last column ("result", then OK) starts in one screen column on every line
    assert len({width(line[: line.rindex(line.split()[-1])]) for line in counts}) == 1, counts


def test_a_name_with_a_line_break_stays_on_its_row(
    run_main: RunMain, tmp_path: Path, pg_dsn: str
) -> None:
    """A table named ``we"ird<newline>table`` is shown escaped (``we"ird\\ntable``) in
    the run summary and in the check table: one row each, aligned with the others."""
    source = tmp_path / "odd.db"
    with sqlite3.connect(source) as conn:
        conn.execute('CREATE TABLE "we""ird\ntable" (id INTEGER PRIMARY KEY, v TEXT)')
        conn.execute("CREATE TABLE plain (id INTEGER PRIMARY KEY)")
        conn.execute('INSERT INTO "we""ird\ntable" VALUES (1, \'x\')')
    env = {"ASYNCMIG_LOG_DIR": str(tmp_path / "logs")}
    code, out, err = run_main("run", "--sqlite", str(source), "--pg", pg_dsn, env=env)
    assert code == 0, err
    summary = out.splitlines()[:4]  # heading, two tables, total
    assert sorted(line.split()[0] for line in summary[1:3]) == ["plain", 'we"ird\\ntable']
    assert summary[3].split()[0] == "total"
    ends = {width(line[: line.index(line.split()[1]) + len(line.split()[1])]) for line in summary}
    assert len(ends) == 1, summary  # the right-aligned row counts end in one column
    code, out, _ = run_main("check", "--sqlite", str(source), "--pg", pg_dsn)
    counts = out.split("\n\n", 1)[0].splitlines()
    assert code == 0 and len(counts) == 3, out  # the heading and one line per table


def test_a_process_killed_while_logging_leaves_no_half_line() -> None:
    """A worker process (unbuffered, ``python -u``) killed while it logs: each line went
    out in two writes (the text, then its newline), so a kill between them left half a
    line on the shared stderr, and the run's own last line (``asyncmig: interrupted
    ...``) was written onto it, where no reader found it. One write a line: whatever
    moment the kill comes, stderr ends with a whole line."""
    script = (
        "import sys\n"
        "from asyncmig.cli.logs import StderrLogger\n"
        "logger = StderrLogger(sys.stderr)\n"
        'line = \'{"event": "progress", "rows": 12345}\' + \' \' * 150\n'
        "print('ready', flush=True)\n"
        "while True:\n"
        "    logger.msg(line)\n"
    )
    rng = random.Random(5)
    for _ in range(20):
        child = subprocess.Popen(
            [sys.executable, "-u", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.01, 0.05))
        child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=30)
        assert err and err.endswith(b"\n"), err[-300:]
