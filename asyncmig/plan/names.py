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


def object_name(name1: str, name2: str, label: str) -> str:
    """The name PostgreSQL itself gives an implicit object, e.g. an identity's ``t_id_seq``.

    As PostgreSQL's ``makeObjectName``: ``name1_name2_label``, the longer of the two
    names clipped first (on a character boundary) until the whole fits in 63 bytes.
    """
    first, second = name1.encode(), name2.encode()
    available = MAX_IDENTIFIER_BYTES - len(label.encode()) - 2
    keep1, keep2 = len(first), len(second)
    while keep1 + keep2 > available:
        if keep1 > keep2:
            keep1 -= 1
        else:
            keep2 -= 1
    head = first[:keep1].decode(errors="ignore")
    tail = second[:keep2].decode(errors="ignore")
    return f"{head}_{tail}_{label}"


def fit(
    wanted: str, taken: set[str], *, reserved: frozenset[str] = frozenset(), empty: str = "unnamed"
) -> tuple[str, str | None]:
    """A name PostgreSQL takes for ``wanted`` among ``taken``, and why it differs (or None).

    ``wanted`` itself when it is not empty, fits in 63 bytes, is not ``reserved`` and not
    yet ``taken``; else the first of ``wanted_1``, ``wanted_2``, ... (shortened with a hash
    when too long) that is free. The same inputs in the same order give the same names,
    so ``plan``, ``run`` and ``check`` agree.
    """
    base = wanted or empty
    candidate = pg_name(base)
    reason = None
    if not wanted:
        reason = "an empty name"
    elif candidate != wanted:
        reason = f"longer than {MAX_IDENTIFIER_BYTES} bytes"
    number = 0
    while candidate in taken or candidate in reserved:
        reason = reason or (
            f"{wanted!r} is reserved by PostgreSQL"
            if candidate in reserved
            else f"{wanted!r} is taken by another object"
        )
        number += 1
        candidate = pg_name(f"{base}_{number}")
    return candidate, reason
