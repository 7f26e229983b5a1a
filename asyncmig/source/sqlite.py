"""Opening the SQLite source: read-only, validated, with clear errors.

The source is opened with ``mode=ro`` through a ``file:`` URI, so asyncmig can never
write to it. A missing path, a file that is not SQLite, or a corrupt database
raises :class:`SourceError` with a one-line message instead of sqlite3's exception.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from asyncmig.errors import SourceError

if TYPE_CHECKING:  # imported where used: the marks processes need source_uri only
    import aiosqlite

SQLITE_MAGIC = b"SQLite format 3\x00"


def source_uri(path: Path) -> str:
    """The read-only URI for ``path`` (its bytes percent-encoded, so any file name works,
    one that is not UTF-8 too); ``immutable`` for a WAL database closed cleanly."""
    resolved = path.resolve()
    uri = f"file:{quote(os.fsencode(resolved))}?mode=ro"
    return uri + "&immutable=1" if settled_wal(resolved) else uri


def settled_wal(path: Path) -> bool:
    """A WAL-mode database with no ``-wal`` file beside it (its application closed it):
    nothing is pending in a log, so it is read as it is, ``immutable``. Opened merely
    read-only, SQLite would create ``-wal`` and ``-shm`` files next to it, and leave
    them, or fail on a read-only mount. A writer that starts meanwhile changes the file
    or makes a ``-wal``, which the run's fingerprint (:func:`fingerprint`) finds."""
    if not path.is_file() or Path(f"{path}-wal").exists():
        return False
    try:
        with path.open("rb") as handle:
            header = handle.read(20)
    except OSError:
        return False
    return header[:16] == SQLITE_MAGIC and len(header) == 20 and header[18] == 2


def check_source_file(path: Path) -> None:
    """Refuse paths that are missing, unreadable, or not SQLite, before opening them."""
    if not path.exists():
        raise SourceError(f"cannot read {path}: no such file", hint="check the --sqlite path")
    if path.is_dir():
        raise SourceError(f"cannot read {path}: it is a directory, not a SQLite file")
    if not path.is_file():  # opening a FIFO would wait for a writer, for ever
        raise SourceError(
            f"cannot read {path}: not a regular file (a pipe or a device), not a SQLite file",
            hint="copy the database to a file first",
        )
    if not os.access(path, os.R_OK):
        raise SourceError(f"cannot read {path}: permission denied")
    with path.open("rb") as handle:
        header = handle.read(len(SQLITE_MAGIC))
    if header != SQLITE_MAGIC:
        if not header:
            raise SourceError(f"cannot read {path}: the file is empty, not a SQLite database")
        raise SourceError(f"cannot read {path}: not a SQLite database (wrong file header)")


# SQLite's own collations; any other one in the schema is the application's, registered
# at run time (Anki's `unicase`), and SQLite stops any statement that needs it
BUILTIN_COLLATIONS = frozenset({"BINARY", "NOCASE", "RTRIM"})
_COLLATE = re.compile(
    r"""COLLATE\s+("(?:[^"]|"")+"|\[[^\]]+\]|`[^`]+`|'[^']+'|\w+)""", re.IGNORECASE
)


def register_collations(conn: sqlite3.Connection) -> list[str]:
    """Register every collation the schema names that SQLite does not know, comparing
    as BINARY, so the source can be read (each column's collation is reported by the
    plan, not migrated). Returns their names."""
    names: set[str] = set()
    for (sql,) in conn.execute("SELECT sql FROM sqlite_schema WHERE sql LIKE '%COLLATE%'"):
        for token in _COLLATE.findall(sql or ""):
            name = token[1:-1] if token[0] in "\"[`'" else token
            if name.upper() not in BUILTIN_COLLATIONS:
                names.add(name)
    for name in sorted(names):
        conn.create_collation(name, _binary)
    return sorted(names)


def _binary(left: str, right: str) -> int:
    return (left > right) - (left < right)  # code points: UTF-8's byte order


# No memory mapping: every mapped page the scans touch counts in the process's RSS (a
# 1 GiB mapping made a 2.4M-row run peak at 579 MB over its process tree), and
# measured full scans of a 240 MB source were no faster with 16 MiB, 64 MiB or 1 GiB
# mapped than with ordinary reads (see bench/README.md).
READ_TUNING = "PRAGMA mmap_size = 0"


def open_sync(path: Path) -> sqlite3.Connection:
    """A read-only stdlib connection (introspection, profiling)."""
    check_source_file(path)
    try:
        conn = sqlite3.connect(source_uri(path), uri=True, check_same_thread=False)
        conn.execute(READ_TUNING)
        register_collations(conn)
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    except sqlite3.DatabaseError as exc:
        raise source_error(path, exc) from exc
    return conn


@contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection for one piece of work: SQLite's errors meanwhile become
    one-line SourceErrors, and it is closed after."""
    conn = open_sync(path)
    try:
        yield conn
    except sqlite3.DatabaseError as exc:
        raise source_error(path, exc) from exc
    finally:
        conn.close()


async def open_async(path: Path) -> aiosqlite.Connection:
    """A read-only aiosqlite connection (the pipeline's readers).

    Its worker thread is not a daemon: a connection opened and then dropped (a
    cancellation, a SIGTERM, while the tuning runs) would keep the process from
    exiting. aiosqlite stops the thread itself when the connect is what fails; after
    that, ``stop()`` (no await, so no cancellation can skip it) ends it here."""
    import aiosqlite

    try:
        conn = await aiosqlite.connect(source_uri(path), uri=True)
    except sqlite3.DatabaseError as exc:
        raise source_error(path, exc) from exc
    try:
        await conn.execute(READ_TUNING)
        # in aiosqlite's own thread, which the connection belongs to (aiosqlite has no
        # create_collation of its own)
        await conn._execute(register_collations, conn._conn)  # type: ignore[no-untyped-call]
    except BaseException as exc:
        conn.stop()  # the thread closes the connection and ends
        if isinstance(exc, sqlite3.DatabaseError):
            raise source_error(path, exc) from exc
        raise
    return conn


def undecodable(exc: sqlite3.Error) -> bool:
    """Whether sqlite3 raised ``exc`` because a TEXT value is not UTF-8 (its text
    factory could not decode it): the reader may read again leniently."""
    return "decode" in str(exc)


def source_error(path: Path, exc: sqlite3.Error) -> SourceError:
    """Turn a sqlite3 exception into a one-line SourceError."""
    text = str(exc)
    if "malformed" in text or "corrupt" in text:
        return SourceError(
            f"cannot read {path}: the database is corrupt ({text})",
            hint="try `sqlite3 FILE .recover` on a copy",
        )
    if "not a database" in text or "encrypted" in text:
        return SourceError(f"cannot read {path}: not a SQLite database ({text})")
    if undecodable(exc) or "UTF-8" in text:
        return SourceError(f"cannot read {path}: a TEXT value is not valid UTF-8 ({text})")
    if "unable to open" in text and wal_needs_shm(path):
        return SourceError(
            f"cannot read {path}: {text} (its -wal file holds commits, and SQLite must "
            "create a -shm file beside it to read them, which this directory does not allow)",
            hint="copy the database with its -wal file to a writable directory, or let the "
            "application checkpoint it (PRAGMA wal_checkpoint(TRUNCATE))",
        )
    return SourceError(f"cannot read {path}: {text}")


def wal_needs_shm(path: Path) -> bool:
    """A WAL with commits beside the database, no -shm, in a directory this process
    cannot write: SQLite cannot open it, even read-only."""
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    try:
        has_commits = wal.stat().st_size > 0
    except OSError:
        return False
    return has_commits and not shm.exists() and not os.access(path.parent, os.W_OK)


def fingerprint(path: Path) -> tuple[tuple[int, int], ...]:
    """Size and mtime of the database and its WAL: a change means someone wrote to it."""
    parts = []
    for candidate in (path, Path(str(path) + "-wal")):
        try:
            stat = candidate.stat()
        except FileNotFoundError:
            parts.append((-1, -1))
        else:
            parts.append((stat.st_size, stat.st_mtime_ns))
    return tuple(parts)
