"""Worker processes anyio keeps idle, retired before the event loop ends.

Every command that reads the source in worker processes (``run``'s load, ``check
--deep``'s and ``sync``'s source side) calls :func:`retire_workers` when it is done
with them, so that no worker is left for anyio's shutdown to kill.
"""

from __future__ import annotations

import anyio
import anyio.to_process

from asyncmig.cli import signals

RETIRE_WAIT = 10  # seconds the retirement may take in all


async def retire_workers() -> None:
    """Let anyio's idle worker processes exit now, and reap them, instead of being killed
    when the event loop shuts down. Shielded (callers retire their workers in ``finally``
    blocks, cancelled by a signal too) and time-boxed to RETIRE_WAIT seconds in all.

    At shutdown anyio kills every worker it still holds, twice (the root task's done
    callback, then its pool task); the second ``kill()`` runs ``Popen.poll()``, which
    reaps a worker the first one already killed, and asyncio's child-watcher thread,
    waiting for that same pid, then prints "Unknown child process pid N, will report
    returncode 255" on stderr. A worker whose stdin is closed leaves its loop and exits
    0; once the watcher has reaped it, anyio has nothing left to kill. Call it once the
    workers have no job left: an idle worker is the only kind it retires.
    """
    with anyio.move_on_after(RETIRE_WAIT, shield=True):
        await _retire_idle()


async def _retire_idle() -> None:
    try:  # anyio keeps its pool in run variables (anyio.to_process): read, not changed
        workers = anyio.to_process._process_pool_workers.get()
        idle = anyio.to_process._process_pool_idle_workers.get()
    except LookupError:  # no worker was started in this event loop
        return
    while idle:
        process, _since = idle.pop()
        workers.discard(process)
        if process.stdin is not None:
            await process.stdin.aclose()
        with anyio.move_on_after(10):
            await process.wait()
        if process.returncode is None:  # a worker that did not leave: as anyio would
            signals.stop_child(process)
        await process.aclose()  # its pipes closed now, not by the garbage collector
