"""The source file's SHA-256, begun as soon as a command knows its source.

A sync records the digest of the file it synced: ``--if-changed`` compares the next
source with it. That is one read of the whole file, about a third of a second of CPU
per 500 MB, which used to compete with the marks processes for the two cores. Begun
in a thread while the command's modules are still being imported (one core is idle
then; hashing releases the GIL), it is ready before the sync needs it.

The file's fingerprint (size and mtime, :func:`asyncmig.source.sqlite.fingerprint`)
is taken just before hashing begins: a file written after that, while it was being
hashed or synced, is not the file the digest describes, and the sync records none
(see :mod:`asyncmig.target.sync`).

This module is imported before the heavy ones: it needs only the standard library.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from asyncmig.source.sqlite import fingerprint

BLOCK = 1 << 20


def sha256_of(path: Path) -> str:
    """The file's digest (read in 1 MiB blocks: bounded memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Begun:
    """A digest being computed: of the file as ``state`` describes it."""

    state: tuple[tuple[int, int], ...]
    digest: Future[str]


_begun: dict[Path, Begun] = {}


def begin(path: Path) -> None:
    """Start hashing ``path`` in a daemon thread (a SIGTERM never waits for it); nothing
    for a path that is not a file: the command says what is wrong with it."""
    try:
        key = path.resolve()
    except (OSError, RuntimeError):
        return
    if key in _begun or not key.is_file():
        return
    future: Future[str] = Future()
    _begun[key] = Begun(fingerprint(key), future)

    def work() -> None:
        try:
            future.set_result(sha256_of(key))
        except BaseException as exc:  # noqa: BLE001 -- raised again by whoever waits for it
            future.set_exception(exc)

    threading.Thread(target=work, name="asyncmig-source-digest", daemon=True).start()


def begun(path: Path) -> Begun | None:
    """The digest :func:`begin` started for ``path``, if any."""
    try:
        return _begun.get(path.resolve())
    except (OSError, RuntimeError):
        return None


def first_seen(path: Path) -> tuple[tuple[int, int], ...]:
    """``path``'s fingerprint when this process first looked at it: when :func:`begin`
    started its digest, else now. A later change is one made while the command ran."""
    early = begun(path)
    return early.state if early is not None else fingerprint(path)


def sha256(path: Path) -> str:
    """``path``'s digest: the one begun, while the file is still as it was then, else
    computed now. Blocks: call it from a worker thread."""
    early = begun(path)
    if early is not None and fingerprint(path) == early.state:
        return early.digest.result()
    return sha256_of(path)
