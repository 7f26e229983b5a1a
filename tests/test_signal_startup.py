"""A signal while asyncmig's modules load is handled once they have loaded.

Raised from inside an extension module's initialisation, the handler's exception
crashed the interpreter: SIGTERM 0.05-0.1 s after start ended ``python -m asyncmig
run`` with exit -11 in 5 of 300 trials, inside orjson's initialisation (shown by
``PYTHONFAULTHANDLER``), and once with exit 70 (a RuntimeError wrapping it, from a
class's ``__set_name__``). Such timing cannot be hit on purpose in a test; what these
tests pin down is the mechanism that closes it: the signal is held back while modules
load and handled right after, and a signal some library wrapped is still reported as
the signal; and one that arrives before main's own handling began still ends in one line.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asyncmig.cli import signals
from tests.fix_cli import cli_environment


def python_c(script: str) -> subprocess.CompletedProcess[str]:
    """``python -c script``, a process of its own (signals are process-wide)."""
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=cli_environment(),
        timeout=60,
        check=False,
    )


HELD_BACK = """
import os, signal, sys
from asyncmig.cli import signals
signals.install()
try:
    with signals.deferred():
        os.kill(os.getpid(), signal.SIGTERM)  # while the modules below load
        import asyncpg, orjson
        print("loaded", flush=True)
except signals.SignalReceived as stop:
    print("handled", stop.name, "asyncpg" in sys.modules, flush=True)
    raise SystemExit(stop.exit_code)
"""


def test_a_signal_while_modules_load_is_handled_after_them() -> None:
    """SIGTERM sent inside ``deferred()``: the imports finish, then the handler's
    SignalReceived is raised (exit 143), not in the middle of them."""
    done = python_c(HELD_BACK)
    assert done.returncode == 143, done.stderr
    assert done.stdout.split() == ["loaded", "handled", "SIGTERM", "True"], done.stdout


class Named:
    """A descriptor whose ``__set_name__`` is interrupted by a signal's handler."""

    def __set_name__(self, owner: type, name: str) -> None:
        raise signals.SignalReceived(signal.SIGTERM)


def test_a_signal_a_library_wrapped_is_still_the_signal() -> None:
    """Python wraps an exception raised in ``__set_name__`` in a RuntimeError: the
    signal is found in its cause (main then exits 143, not 70 "internal error")."""
    with pytest.raises(RuntimeError) as raised:
        type("Stack", (), {"frames": Named()})
    found = signals.caused_by_signal(raised.value)
    assert found is not None and found.exit_code == 143
    assert signals.caused_by_signal(RuntimeError("a bug")) is None


IN_THE_PREAMBLE = """
import os, signal, sys
from asyncmig.cli import main

def run_in_utc():  # main's first step, now with a SIGTERM arriving during it
    os.kill(os.getpid(), signal.SIGTERM)

main.run_in_utc = run_in_utc
sys.argv = ["asyncmig", "--help"]
raise SystemExit(main.entry())
"""


def test_a_signal_before_mains_handling_began_is_one_line() -> None:
    """A signal between main's handler and its try (seen once in 300 trials: a
    traceback and exit 1) ends with exit 143 and the one line, no traceback."""
    done = python_c(IN_THE_PREAMBLE)
    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("asyncmig: interrupted by SIGTERM"), done.stderr


def _with_a_closed_loops_transport(script: str) -> subprocess.CompletedProcess[str]:
    """``script``, then an object whose ``__del__`` raises asyncio's "Event loop is
    closed" (as a pipe transport collected after its loop closed), in a new Python."""
    script += (
        "class Transport:\n"
        "    def __del__(self):\n"
        "        raise RuntimeError('Event loop is closed')\n"
        "t = Transport(); del t\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )


def test_a_closed_loops_transport_at_exit_is_no_traceback() -> None:
    """A worker whose start a signal cancelled may leave its pipe transport to be
    collected after the loop closed: asyncio's "Event loop is closed" from __del__ is
    logged, not printed as a traceback; any other unraisable error still is."""
    script = (
        "import asyncio, sys\n"
        "from asyncmig.cli import signals\n"
        "signals.install()\n"
        "class Other:\n"
        "    def __del__(self):\n"
        "        raise ValueError('something else')\n"
        "o = Other(); del o\n"
    )
    done = _with_a_closed_loops_transport(script)
    assert done.returncode == 0, done.stderr
    assert "Event loop is closed" not in done.stderr
    assert "ValueError: something else" in done.stderr


def test_a_closed_loops_transport_after_the_log_closed_is_no_traceback() -> None:
    """The same at the very end of a run whose log stream is closed already: nothing
    to write it to, and still no traceback (seen once after a SIGTERM while planning)."""
    script = (
        "import logging, structlog, tempfile\n"
        "from asyncmig.cli import signals\n"
        "signals.install()\n"
        "stream = tempfile.TemporaryFile('w')\n"
        "structlog.configure(logger_factory=structlog.PrintLoggerFactory(stream),\n"
        "    wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))\n"
        "stream.close()\n"
    )
    done = _with_a_closed_loops_transport(script)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


IN_A_CALLBACK = """
import logging, os, signal, structlog, time, weakref
import anyio
from asyncmig.cli import signals
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
signals.install()

class Lock:  # as the import system's module locks, dropped with a weakref callback
    pass

def cleanup(_ref):
    os.kill(os.getpid(), signal.SIGTERM)  # the handler runs inside this callback
    for _ in range(1000):
        pass

lock = Lock()
ref = weakref.ref(lock, cleanup)
del lock
print("dropped", signals.received(), flush=True)

async def command():
    await anyio.sleep(30)
    print("finished", flush=True)

started = time.monotonic()
try:
    signals.run(command)
except signals.SignalReceived as stop:
    print("stopped", stop.name, time.monotonic() - started < 10, flush=True)
    raise SystemExit(stop.exit_code)
"""


def test_a_signal_python_dropped_in_a_callback_still_stops_the_command() -> None:
    """A SIGTERM whose handler ran inside a weakref callback (seen once in CI: the
    import system's module-lock cleanup) is dropped by Python with "Exception ignored"
    on stderr. Here it leaves no traceback, and the command's event loop stops at once
    (exit 143) instead of running to its end."""
    done = python_c(IN_A_CALLBACK)
    assert done.stderr == ""
    assert done.returncode == 143, done.stdout
    assert done.stdout.split() == ["dropped", "SIGTERM", "stopped", "SIGTERM", "True"]


IN_THE_LOOP = """
import asyncio, os, signal, sys
from asyncio import selector_events, unix_events
from asyncmig.cli import signals

where, entry = sys.argv[1], getattr(signals, sys.argv[2])
def kill_first(method):  # a real SIGTERM to this process, then the method itself
    def hooked(self, *args):
        os.kill(os.getpid(), signal.SIGTERM)
        return method(self, *args)
    return hooked
if where == "build":  # inside the loop's constructor, half-way through it
    selector_events.BaseSelectorEventLoop._make_self_pipe = kill_first(
        selector_events.BaseSelectorEventLoop._make_self_pipe)
elif where == "close":
    unix_events._UnixSelectorEventLoop.close = kill_first(
        unix_events._UnixSelectorEventLoop.close)
ran = []
async def body():
    ran.append(True)
    if where == "body":
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(30)
    return 42
signals.install()
try:
    print("finished", entry(body))
except signals.SignalReceived as stop:
    print("stopped", stop.name, bool(ran))
import gc; gc.collect()  # a half-made loop would be collected (and complain) here
"""


@pytest.mark.parametrize(
    ("entry", "where", "said"),
    [
        ("call", "build", "stopped SIGTERM False"),  # held while the loop is built,
        # raised before the body
        ("run", "build", "stopped SIGTERM True"),  # the body starts cancelled: it stops
        # at its first await, or, returning before any, is still stopped
        ("call", "body", "stopped SIGTERM True"),
        ("run", "body", "stopped SIGTERM True"),
        ("call", "close", "stopped SIGTERM True"),  # held while the loop closes, raised
        # after it
        ("run", "close", "finished 42"),  # the work command returned: its work is
        # recorded, the signal came too late to stop it (signals.complete)
    ],
)
def test_a_signal_while_the_event_loop_is_built_or_closed(
    entry: str, where: str, said: str
) -> None:
    """SIGTERM inside asyncio's loop constructor, inside the command, inside the loop's
    close: SignalReceived out of the call (but after a work command returned), and
    nothing on stderr. Raised inside the constructor, it had left a half-made loop
    whose ``__del__`` printed an AttributeError traceback (``_ssock``) after the one
    line."""
    done = subprocess.run(
        [sys.executable, "-c", IN_THE_LOOP, where, entry],
        capture_output=True,
        text=True,
        env=cli_environment(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert done.stdout.split() == said.split(), done.stdout


@pytest.mark.parametrize("command", ["status", "check"])
def test_a_signal_to_a_command_that_only_reads_says_nothing_was_changed(
    tmp_path: Path, command: str
) -> None:
    """``check`` and ``status`` change nothing in the target: interrupted (here while
    they wait for a target that is not up), their line says so, instead of a run's
    "work in flight was rolled back ... re-run the same command to resume"."""
    source = tmp_path / "app.db"
    sqlite3.connect(source).close()
    args = ["--sqlite", str(source)] if command == "check" else []
    target = ["--pg", "postgresql://me@127.0.0.1:1/db", "--connect-timeout", "60"]
    started = subprocess.Popen(
        [sys.executable, "-m", "asyncmig", command, *args, *target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_environment(),
    )
    time.sleep(3)  # the command is retrying the connection by now
    started.send_signal(signal.SIGTERM)
    _, stderr = started.communicate(timeout=60)
    assert started.returncode == 143, stderr
    assert stderr.splitlines()[-1] == (
        "asyncmig: interrupted by SIGTERM: this command only reads, nothing was changed"
    )
