"""A cheap identity of the source file, taken before a run reads it: the resume's proof,
until the run's SHA-256 (computed beside the load) is recorded, that the file a re-run
reads is the one the interrupted run read.

The identity is the file's device, inode, size, modification and change times (in
nanoseconds), the SQLite header's file change counter (bytes 24-27: every commit in
rollback-journal mode moves it), and the WAL's size and header (a commit in WAL mode
appends to the WAL; a WAL started over gets new salts in its header; a missing or
empty WAL holds nothing). Any write after the identity was taken changes at least one
of them: the change time moves on every write and on every ``touch``, and cannot be
set back by a user.

Timestamps are only as fine as the filesystem keeps them (a clock tick, or 2 s on
some): a file written within :data:`RACY_NS` of the moment its identity is taken could
be written again without its times moving, so it gets no identity (None), and a run
that has none resumes only on its SHA-256 (git's "racily clean" index entries are
treated the same way).
"""

from __future__ import annotations

import time
from pathlib import Path

RACY_NS = 2_000_000_000
CHANGE_COUNTER = slice(24, 28)  # the SQLite header's file change counter
WAL_HEADER_BYTES = 32  # magic, version, page size, checkpoint sequence, salts, checksums


def source_identity(path: Path) -> str | None:
    """The identity (see the module docstring), or None when the file (or its WAL) was
    written too recently for its timestamps to prove anything."""
    taken = time.time_ns()
    stat = path.stat()
    with path.open("rb") as stream:
        counter = stream.read(100)[CHANGE_COUNTER].hex()
    parts = [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, counter]
    newest = max(stat.st_mtime_ns, stat.st_ctime_ns)
    wal = _wal(Path(f"{path}-wal"))
    parts += wal or ["no-wal"]
    if wal:
        newest = max(newest, int(wal[2]))
    if newest > taken - RACY_NS:
        return None
    return ":".join(str(p) for p in parts)


def _wal(wal: Path) -> list[str]:
    """The WAL's inode, size, modification time and header; none when it is missing or
    empty (which holds nothing: a reader may create it). Not its change time: SQLite
    moves that when a reader opens the database."""
    try:
        with wal.open("rb") as stream:
            header = stream.read(WAL_HEADER_BYTES).hex()
            stat = wal.stat()
    except FileNotFoundError:
        return []
    if stat.st_size == 0:
        return []
    return [str(stat.st_ino), str(stat.st_size), str(stat.st_mtime_ns), header]
