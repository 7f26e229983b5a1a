"""A SQLite view's query in PostgreSQL's spelling, as far as a token rewrite can go.

Views are created from their query as written when PostgreSQL accepts it. SQLite's
dialect often differs only in quoting: ``[Order Details]`` and backticks instead of
double quotes, and unquoted names whose case PostgreSQL would fold (``OrderID``
naming a column created as ``"OrderID"``). This rewrite fixes exactly that: bracketed
and backticked names become quoted identifiers, and bare words that name a migrated
table or column (compared case-insensitively) are quoted with that name's spelling;
``==`` becomes ``=``, and a column that became boolean compared with 0 or 1 is compared
with false or true. Anything else (SQLite's date functions, ...) is left for PostgreSQL
to judge; a view it still refuses is reported, not created.
"""

from __future__ import annotations

from collections.abc import Iterable

from asyncmig.quoting import quote_ident, quote_literal
from asyncmig.sqlexpr import Token, Untranslatable, tokenize


def requote(sql: str, names: Iterable[str], booleans: Iterable[str] = ()) -> str | None:
    """The query with SQLite quoting turned into PostgreSQL's; None if it cannot be read.

    ``booleans`` names columns that became boolean: ``flag = 1`` (SQLite's spelling of a
    boolean test) becomes ``flag = true``, as in CHECKs and index predicates.
    """
    known = {name.lower(): name for name in names}
    flags = {name.lower() for name in booleans}
    try:
        tokens = tokenize(sql)
    except Untranslatable:
        return None
    tokens = _boolean_literals(tokens, flags)
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
        elif token.kind == "op" and token.value == "==":
            parts.append("=")  # SQLite's alternative spelling
        elif token.kind != "end":
            parts.append(token.value)
    return " ".join(parts)


def _boolean_literals(tokens: list[Token], flags: set[str]) -> list[Token]:
    """``flag = 1``, ``flag == 0``, ``flag <> 1`` (either side) with true/false literals."""
    result = list(tokens)
    for i in range(1, len(result) - 1):
        op = result[i]
        if op.kind != "op" or op.value not in ("=", "==", "!=", "<>"):
            continue
        for name_at, value_at in ((i - 1, i + 1), (i + 1, i - 1)):
            name, value = result[name_at], result[value_at]
            if (name.kind in ("word", "ident", "dqident") and name.value.lower() in flags
                    and value.kind == "number" and value.value in ("0", "1")):
                result[value_at] = Token("word", "true" if value.value == "1" else "false")
    return result
