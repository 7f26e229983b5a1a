"""PostgreSQL object names derived from SQLite ones, within the 63-byte limit."""

from __future__ import annotations

import hashlib

MAX_IDENTIFIER_BYTES = 63


def pg_name(*parts: str) -> str:
    """Join ``parts`` with '_' and shorten deterministically to 63 bytes.

    A name that is too long keeps its start and gains an 8-hex-digit hash of the
    whole, so two long names that share a prefix stay distinct, and the same input
    always gives the same name wherever it is referenced.
    """
    name = "_".join(p for p in parts if p)
    encoded = name.encode()
    if len(encoded) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha1(encoded).hexdigest()[:8]
    head = encoded[: MAX_IDENTIFIER_BYTES - 9].decode(errors="ignore")
    return f"{head}_{digest}"
