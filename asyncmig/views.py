"""A SQLite view's query in PostgreSQL's spelling, as far as a token rewrite can go.

Views are created from their query as written when PostgreSQL accepts it. SQLite's
dialect often differs only in quoting: ``[Order Details]`` and backticks instead of
double quotes, and unquoted names whose case PostgreSQL would fold (``OrderID``
naming a column created as ``"OrderID"``). This rewrite fixes exactly that: bracketed
and backticked names become quoted identifiers, and bare words that name a migrated
table or column (compared case-insensitively) are quoted with that name's spelling.
Anything else (functions, ``is_active = 1`` on a boolean) is left for PostgreSQL to
judge; a view it still refuses is reported, not created.
"""

from __future__ import annotations

from collections.abc import Iterable

from asyncmig.quoting import quote_ident, quote_literal
from asyncmig.sqlexpr import Untranslatable, tokenize


def requote(sql: str, names: Iterable[str]) -> str | None:
    """The query with SQLite quoting turned into PostgreSQL's; None if it cannot be read."""
    known = {name.lower(): name for name in names}
    try:
        tokens = tokenize(sql)
    except Untranslatable:
        return None
    parts = []
    for token in tokens:
        if token.kind in ("ident", "dqident"):
            parts.append(quote_ident(known.get(token.value.lower(), token.value)))
        elif token.kind == "word" and token.value.lower() in known:
            parts.append(quote_ident(known[token.value.lower()]))
        elif token.kind == "string":
            parts.append(quote_literal(token.value))
        elif token.kind == "blob":
            parts.append(f"'\\x{token.value}'::bytea")
        elif token.kind != "end":
            parts.append(token.value)
    return " ".join(parts)
