"""SIGTERM and SIGINT: stop cleanly at any moment, record why, say how to resume.

Docker, Kubernetes and systemd stop a process with SIGTERM; a person with Ctrl-C
(SIGINT). Either may come at any instant, so there are two handlers:

* from the first line of ``main`` (even before the heavy imports, with ``python -m
  asyncmig``) a Python handler raises :class:`SignalReceived`, which ``main`` turns
  into one line and exit 128 + the signal's number (130, 143);
* while a command's event loop runs, the loop's own handlers cancel the command's
  scope instead: its shielded cleanup
  rolls back what is in flight, stops worker processes and records the run as
  ``interrupted`` with the signal's name; then :class:`SignalReceived` is raised.

A second signal during that cleanup is noted, not obeyed: the cleanup is short
(time-boxed) and interrupting it would leave the history saying ``running``.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # the module is imported first thing: nothing slow at import time
    from collections.abc import Awaitable, Callable, Iterator
    from types import FrameType

    from anyio.abc import Process

T = TypeVar("T")

HANDLED = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []
PR_SET_PDEATHSIG = 1  # linux/prctl.h  # the signals received by this process, in order
ORPHANED = 1  # a worker's exit code when its parent died before it was bound to it


class SignalReceived(BaseException):
    """The process was asked to stop; like KeyboardInterrupt, not an Exception."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def received() -> str | None:
    """The name of the first signal received (e.g. ``"SIGTERM"``), None if none was."""
    return signal.Signals(_received[0]).name if _received else None


_resume_notes: list[str] = []  # what a `run` kept for the re-run ("2 of 3 tables kept")


def note_resume(note: str | None) -> None:
    """What the interrupted command kept for its re-run, for :func:`message` to say."""
    if note:
        _resume_notes.append(note)


_committed: list[tuple[str, str]] = []  # what the command had committed, and what then


def forget() -> None:
    """A new command begins (the tests run several in one process): no notes yet."""
    _committed.clear()
    _resume_notes.clear()
    _complete[0] = False
    _reading[0] = False


_reading = [False]  # the command only reads: see reading_only()


def reading_only() -> None:
    """The command changes nothing in the target (``plan``, ``check``, ``validate``,
    ``status``): a signal says so, not that work in flight was rolled back."""
    _reading[0] = True


_complete = [False]  # the command's work is done and recorded: see complete()


def complete() -> None:
    """The command's work is done and recorded (a run's history says ``succeeded``, a
    sync's changes are in): a signal from now on is recorded, not raised. It came too
    late to stop anything, and "interrupted ... re-run the same command to finish
    recording it" with exit 143 would be false, and harmful: a scheduled job retried on
    that exit code would be refused, its tables being there."""
    _complete[0] = True


def note_committed(
    what: str, next_step: str = "re-run the same command to finish recording it"
) -> None:
    """The command's work is committed (a run's cut-over, a sync's transaction, the
    tables `data --replace` emptied): a signal from now on must not say the target was
    left as it was; ``next_step``: what to do then."""
    _committed.append((what, next_step))


def message(stop: SignalReceived) -> str:
    """What happened and how to go on, in one line."""
    if _committed:
        what, next_step = _committed[-1]
        return (
            f"interrupted by {stop.name} after {what}: that is in place, nothing "
            f"was undone; {next_step}"
        )
    if _reading[0]:
        return f"interrupted by {stop.name}: this command only reads, nothing was changed"
    kept = f"; {_resume_notes[-1]}" if _resume_notes else ""
    return (
        f"interrupted by {stop.name}: work in flight was rolled back and the target "
        f"left as it was; re-run the same command to resume{kept}"
    )


def report(stop: SignalReceived) -> int:
    """The one line on stderr (before the command line is read); the exit code."""
    print(f"asyncmig: {message(stop)}", file=sys.stderr)
    return stop.exit_code


def install() -> None:
    """Make SIGINT and SIGTERM raise :class:`SignalReceived` (outside event loops)."""
    for signum in HANDLED:
        signal.signal(signum, _raise)
    sys.unraisablehook = unraisable


def unraisable(args: sys.UnraisableHookArgs) -> None:
    """Two exceptions Python cannot raise are not tracebacks on stderr.

    * :class:`SignalReceived` raised inside a callback Python calls on its own (a
      weakref callback such as the import system's module-lock cleanup, a
      ``__del__``): Python drops it. The signal stays recorded, and the command's
      event loop, when it starts, stops at once (see :func:`run`). Delivering it again
      from here is no way out: the handler would run inside this hook.
    * A worker process whose start a signal cancelled can leave its pipe transport to
      be collected after the event loop closed: asyncio's ``__del__`` then finds the
      loop closed. The process itself is gone (killed with the run); it is logged.

    Anything else is reported as Python reports it."""
    if isinstance(args.exc_value, SignalReceived):
        _log_quietly("signal_in_callback", signal=args.exc_value.name)
        return
    if isinstance(args.exc_value, RuntimeError) and str(args.exc_value) == "Event loop is closed":
        _log_quietly("closed_loop_transport", object=repr(args.object)[:200])
        return
    sys.__unraisablehook__(args)


def _log_quietly(event: str, **values: object) -> None:
    """A debug line, if there is still a log to write it to."""
    import structlog

    try:
        structlog.get_logger(__name__).debug(event, **values)
    except (ValueError, OSError):  # at exit the log's stream may be closed already:
        return  # there is nothing left to write it to, and nothing to report


@contextmanager
def deferred() -> Iterator[None]:
    """SIGINT and SIGTERM held back (pending, not lost) while modules load, then handled
    at once. Raised from inside an extension module's initialisation, the handler's
    exception can crash the interpreter (orjson's did: exit -11, at 0.05-0.1 s after
    start) or come out as another error (Python wraps one raised in a class's
    ``__set_name__`` in a RuntimeError). Nothing that loads here starts a thread or a
    process, which would inherit the blocked mask."""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX: as before
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    try:
        yield
    finally:  # a signal that came meanwhile is delivered here, outside the import
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def caused_by_signal(exc: BaseException) -> SignalReceived | None:
    """The :class:`SignalReceived` that ``exc`` wraps (its cause or context), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SignalReceived):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def ignore() -> None:
    """The command is over and its exit code decided: a signal now (as the process
    exits, when Python's own handlers are already gone) must not turn a finished run
    into a killed process."""
    for signum in HANDLED:
        signal.signal(signum, signal.SIG_IGN)


_held: list[int] = []  # signals that came while the handler was told to hold them
_holding = [False]  # the handler records a signal and returns, instead of raising


def _raise(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)
    if _complete[0]:
        return
    if _holding[0]:
        _held.append(signum)
        return
    raise SignalReceived(signum)


def call(func: Callable[..., Awaitable[T]], *args: object) -> T:
    """``anyio.run(func, *args)``, where a signal raises only while ``func`` runs.

    The event loop's construction and its close are held (the signal is recorded and
    raised once the loop is closed, or at ``func``'s start): raised from inside asyncio's
    constructor or its ``close()``, the exception left a half-made loop whose
    ``__del__`` printed a traceback after the one line. Not a blocked signal mask, which
    the loop's threads would inherit."""
    return _loop(_released, func, args)


def run(func: Callable[..., Awaitable[T]], *args: object) -> T:
    """``anyio.run(func, *args)``, cancelled cleanly by SIGINT or SIGTERM."""
    return _loop(_guarded, func, args)


def _loop(
    body: Callable[[Callable[..., Awaitable[T]], tuple[object, ...]], Awaitable[T]],
    func: Callable[..., Awaitable[T]],
    args: tuple[object, ...],
) -> T:
    import anyio

    _holding[0] = True
    ran = False
    try:
        result = anyio.run(body, func, args, backend="asyncio")
        ran = True
        return result
    finally:
        _holding[0] = False
        # came while the loop was built (and func never ran) or while it closed: raised,
        # unless the command's work is complete (see complete()), which it cannot undo
        if _held and not (ran and _complete[0]):
            signum = _held[0]
            _held.clear()
            raise SignalReceived(signum)


async def _released(func: Callable[..., Awaitable[T]], args: tuple[object, ...]) -> T:
    """Run ``func`` with the handler raising again; a signal held so far raises now."""
    _holding[0] = False
    try:
        if _held:
            signum = _held[0]
            _held.clear()
            raise SignalReceived(signum)
        return await func(*args)
    finally:
        _holding[0] = True


async def _guarded(func: Callable[..., Awaitable[T]], args: tuple[object, ...]) -> T:
    """Run ``func`` in a scope that the loop's signal handlers cancel.

    Loop handlers (not a watcher task in a task group) so ``func``'s errors reach the
    caller as they are, not wrapped in an exception group. Python's handler holds
    what comes before they are installed and after they are removed (it is not
    raised inside this coroutine): ``_received`` says it, below.
    """
    import asyncio

    import anyio

    loop = asyncio.get_running_loop()
    work = anyio.CancelScope()

    def on_signal(signum: int) -> None:
        _received.append(signum)
        work.cancel()

    for signum in HANDLED:
        loop.add_signal_handler(signum, on_signal, signum)
    early = bool(_received)  # came while the loop was built, or Python dropped it
    if early:  # (see unraisable): the command starts cancelled
        work.cancel()
    outcome: list[T] = []
    try:
        with work:
            outcome.append(await func(*args))
    except Exception:
        if _received:  # whatever the cancellation caused, the signal is the reason
            raise SignalReceived(_received[0]) from None
        raise
    finally:
        for signum in HANDLED:
            loop.remove_signal_handler(signum)
        finished = bool(outcome) and not early
        if finished:  # the command returned its result: its work is done and recorded
            complete()
        install()  # removing the loop's handlers restored the default (fatal) actions
        _held.clear()  # what came before is in _received, raised below
    if _received and not finished:
        raise SignalReceived(_received[0])
    return outcome[0]


def bind_worker_to_parent(parent: int) -> None:
    """In a worker process: leave signals to the parent, and die with it.

    Ctrl-C reaches the whole process group; the parent decides and stops its workers
    itself. If the parent is killed outright (SIGKILL), Linux kills the worker too
    (PR_SET_PDEATHSIG), so no worker goes on writing into tables behind a later run.
    A parent (pid ``parent``) that died before this call sends no such signal: a
    worker started for a table just before the kill would load it all, orphaned, and
    commit it behind the next run's back; it exits here instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # adopted by init (or a subreaper): the parent is gone
        os._exit(ORPHANED)


def kill_stray_workers() -> None:
    """Kill this process's worker processes (Linux; elsewhere a no-op).

    anyio kills a worker whose job is cancelled, but not one cancelled while it is
    still starting up (before it runs any of asyncmig's code); such a worker would
    outlive an interrupted run. Called only when a run's load stops early.
    """
    if not sys.platform.startswith("linux"):
        return
    import os
    from pathlib import Path

    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
            if ppid == me and b"anyio.to_process" in command:
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):  # it ended meanwhile: nothing to kill
            continue


def stop_child(process: Process) -> None:
    """SIGKILL a child not yet known to have ended, by its pid.

    Not ``process.kill()``: that goes through ``Popen.send_signal``, which polls first,
    and so reaps a child that has just ended on its own before asyncio's child watcher
    does; the watcher then finds no child and logs "Unknown child process pid N" (a
    second line on a failed command's stderr, seen on a loaded machine). An ended child
    keeps its pid until the watcher reaps it, so the signal reaches no other process.
    """
    if process.returncode is not None:
        return
    try:  # Windows has no SIGKILL: there os.kill terminates the process for any signal
        os.kill(process.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    except ProcessLookupError:  # reaped by the watcher a moment ago: nothing left to stop
        return
