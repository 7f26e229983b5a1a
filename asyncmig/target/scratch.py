"""Folders in the temporary directory that outlive a killed run only until the next one.

A run keeps two things in ``$TMPDIR``: its live progress counts and, with
``--snapshot``, a whole copy of the source. A run killed outright (kill -9, the
out-of-memory killer) removes neither, and a scheduled job killed every night would
fill the disk with copies of its database. So each such folder holds an ``owner``
file its process keeps locked (``flock``) while it lives; the kernel drops the lock
when the process dies, however it dies. Before making its own, a run removes this
user's folders of the same kind whose lock it can take: their process is gone. The
lock, not a process id, says so: a process id means nothing in another container
sharing the directory, and may have been reused.

A folder is never swept in its first minute (its maker may be between making it and
locking it), and one without an owner file (made by an earlier version) only once it
is a day old.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Self

import structlog

from asyncmig.target import files

log = structlog.get_logger(__name__)

OWNER = "owner"
SETTING_UP = 60  # seconds: a folder younger than this may not be locked yet
UNOWNED_AGE = 24 * 3600  # seconds: an unowned folder this old is nobody's


class Scratch:
    """A private folder in the temporary directory, owned while this object is open."""

    def __init__(self, prefix: str) -> None:
        """Sweep the dead runs' folders of this ``prefix``, then make and lock our own
        (OSError when the temporary directory cannot hold it)."""
        parent = Path(tempfile.gettempdir())
        sweep(parent, prefix)
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        try:
            self._owner = files.create(self.path / OWNER)
            fcntl.flock(self._owner.fileno(), fcntl.LOCK_EX)
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise

    def close(self) -> None:
        """Remove the folder and everything in it, then let go of it."""
        try:
            shutil.rmtree(self.path)
        finally:
            self._owner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sweep(parent: Path, prefix: str) -> None:
    """Remove the folders under ``parent`` named ``prefix*`` whose owner is gone."""
    for entry in parent.glob(f"{prefix}*"):
        try:
            if entry.is_symlink() or not entry.is_dir() or entry.stat().st_uid != os.getuid():
                continue
            if _abandoned(entry):
                shutil.rmtree(entry)
                log.debug("scratch_swept", path=str(entry))
        except FileNotFoundError:
            continue  # another run swept it first
        except OSError as exc:  # not ours to remove after all: left where it is
            log.info("scratch_sweep_skipped", path=str(entry), reason=str(exc))


def _abandoned(folder: Path) -> bool:
    age = time.time() - folder.stat().st_mtime
    if age < SETTING_UP:
        return False
    try:
        descriptor = os.open(folder / OWNER, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return age > UNOWNED_AGE
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its process holds it: alive
    finally:
        os.close(descriptor)  # a lock taken here goes with it
    return True
