"""Files that hold user data: private, and never overwritten.

Reject files hold whole rows (emails, password hashes), logs hold keys and values,
rollback scripts and backups name every table. Each is created 0600, inside
directories asyncmig creates 0700, whatever the umask; an existing directory the user
named (``--log-dir .``) is left as it is. Files are created exclusively (``O_EXCL``):
two runs, into the same database or into two databases from one directory, never
write into each other's files, because each run writes into a directory of its own
that it alone created.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_NAME_BYTES = 100  # well under every file system's 255, leaving room for suffixes


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents 0700; existing directories stay as they are."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue
        os.chmod(directory, PRIVATE_DIR)  # mkdir's mode is filtered by the umask
    return path


def new_dir(parent: Path, stem: str) -> Path:
    """A directory under ``parent`` that did not exist before: ``stem``, ``stem-2``, ..."""
    private_dir(parent)
    for attempt in itertools.count(1):
        candidate = parent / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            candidate.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue
        os.chmod(candidate, PRIVATE_DIR)
        return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def new_file(directory: Path, stem: str, suffix: str) -> Path:
    """Create an empty private file that did not exist before: ``stem``, ``stem-2``, ..."""
    path, stream = _exclusive(directory, stem, suffix)
    stream.close()
    return path


def write_new(directory: Path, stem: str, suffix: str, text: str) -> Path:
    """Write ``text`` to a new private file named like :func:`new_file`; returns its path."""
    path, stream = _exclusive(directory, stem, suffix)
    try:
        stream.write(text.encode("utf-8"))
        stream.close()
    except OSError:  # a disk full: no piece of the text is left to be taken for all of it
        discard(stream, path)
        raise
    return path


def discard(stream: IO[bytes], path: Path) -> None:
    """Close and remove a file whose writing failed. Closing flushes what is buffered:
    on the full disk that failed it, that fails again, and the file goes all the same."""
    with contextlib.suppress(OSError):
        stream.close()
    path.unlink(missing_ok=True)


PARTIAL = ".partial"  # a streamed file's name until it is whole (see publish)


def open_partial(directory: Path, stem: str, suffix: str) -> tuple[Path, IO[bytes]]:
    """A new private file for streamed output, named ``<name>.partial`` until
    :func:`publish` gives it its name: killed midway (``kill -9``), the process leaves
    a file that says it is cut short, never one that passes for whole."""
    private_dir(directory)
    for final in _names(directory, stem, suffix):
        if final.exists():
            continue
        try:
            partial = final.with_name(final.name + PARTIAL)
            return partial, create(partial)
        except FileExistsError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


def publish(partial: Path) -> Path:
    """The whole file under its own name (a hard link, which never replaces another
    file), the ``.partial`` name removed."""
    final = partial.with_name(partial.name.removesuffix(PARTIAL))
    try:
        os.link(partial, final)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: a rename, once sure of the name
        if final.exists():
            raise FileExistsError(final) from None
        partial.rename(final)
        return final
    partial.unlink()
    return final


def _exclusive(directory: Path, stem: str, suffix: str) -> tuple[Path, IO[bytes]]:
    private_dir(directory)
    for candidate in _names(directory, stem, suffix):
        try:
            return candidate, create(candidate)
        except FileExistsError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


def _names(directory: Path, stem: str, suffix: str) -> Iterator[Path]:
    """A file's names to try, in order: ``stem`` + ``suffix``, then ``stem-2``,
    ``stem-3``, ... (a name another file holds is never taken over)."""
    for attempt in itertools.count(1):
        yield directory / (f"{stem}{suffix}" if attempt == 1 else f"{stem}-{attempt}{suffix}")


def create(path: Path) -> IO[bytes]:
    """Open a new private file for writing; FileExistsError rather than overwrite one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return os.fdopen(fd, "wb")


def rewrite(path: Path) -> IO[bytes]:
    """Open a private file for writing from its start (created 0600 when missing).

    Only for files inside a directory this run created: a retried table starts its
    reject file afresh, and no other run can own a file there.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return os.fdopen(fd, "wb")


def append(path: Path) -> IO[bytes]:
    """Open a private file for appending (created 0600 when missing)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return os.fdopen(fd, "ab")


def safe_name(name: str) -> str:
    """A SQLite or PostgreSQL name as a file name: no path separators, no dot files.

    Names made only of letters, digits, ``.``, ``_`` and ``-`` are kept; any other gets
    its unsafe characters replaced and a short digest of the real name appended, so two
    names that clean up alike still get different files.
    """
    cleaned = _UNSAFE.sub("_", name).lstrip(".")
    if cleaned == name and cleaned and len(cleaned) <= MAX_NAME_BYTES:
        return cleaned
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned[: MAX_NAME_BYTES - 9] or '_'}-{digest}"


class NotSmallText(ValueError):
    """A file that cannot be what a small text file (a URL, a profile) should be."""


def small_text(path: Path, limit: int) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes. Anything else is
    refused unread: ``/dev/zero`` given as a secret grew the process until it died, and
    a FIFO or a device blocks or streams for ever."""
    if path.exists() and not path.is_file():
        raise NotSmallText("not a regular file")
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise NotSmallText(f"larger than {limit:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotSmallText("not text (not UTF-8)") from None
