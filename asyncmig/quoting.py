"""The one place identifiers, literals and comments are made safe for PostgreSQL.

Every table, column, index, constraint and schema name that reaches SQL passes
through :func:`quote_ident`, so names with capitals, spaces, quotes or reserved
words (``user``, ``order``) arrive intact. Quoting is unconditional: a quoted
lower-case name is the same identifier as the unquoted one, and quoting always
is simpler to reason about than deciding when it is needed.

Text that is not SQL but travels inside it (a source path, a schema name or a message
in a generated script's comment, a profile's text in a literal) goes through
:func:`quote_literal` or :func:`sql_comment`: neither can emit a line break or an
unbalanced quote, so no name or path, however hostile, can end a comment or a literal
and start a statement of its own.
"""

from __future__ import annotations

import unicodedata


def quote_ident(name: str) -> str:
    """Return ``name`` as a PostgreSQL quoted identifier, always on one line.

    A name holding a line break or another control character is written in the
    Unicode-escape form (``U&"a\\000ab"``), which is the same identifier: a generated
    script then shows it on one line, and a reviewer (or a line-based tool) never sees
    a name's second line as a statement.
    """
    return _quote(name, '"', "identifier")


def qualified(schema: str, name: str) -> str:
    """Return ``schema.name`` with both parts quoted."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def name_text(schema: str, name: str) -> str:
    """``schema.name`` as the text that name-parsing functions read (``to_regclass``,
    ``pg_get_serial_sequence``): classic double quotes, since those functions do not
    read the ``U&`` form. Pass it as a parameter or through :func:`quote_literal`."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))


def quote_literal(value: str) -> str:
    """Return ``value`` as a standard-conforming PostgreSQL string literal, on one line."""
    return _quote(value, "'", "string literal")


def _quote(text: str, quote: str, kind: str) -> str:
    if "\x00" in text:
        raise ValueError(f"{kind} {text!r} contains a NUL byte")
    if not any(unicodedata.category(c) in _BREAKING for c in text):
        return quote + text.replace(quote, quote * 2) + quote
    body = "".join(
        quote * 2
        if c == quote
        else "\\\\"
        if c == "\\"
        else _unicode_escape(c)
        if unicodedata.category(c) in _BREAKING
        else c
        for c in text
    )
    return f"U&{quote}{body}{quote}"


def _unicode_escape(char: str) -> str:
    code = ord(char)
    return f"\\{code:04x}" if code <= 0xFFFF else f"\\+{code:06x}"


def quote_sqlite_ident(name: str) -> str:
    """Return ``name`` quoted for SQLite (same rules, kept apart for clarity)."""
    return '"' + name.replace('"', '""') + '"'


def _escape_char(char: str) -> str:
    """Control and line-separator characters as visible escapes (``\\n``, ``\\x1b``)."""
    if char in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """``text`` on one line: every control, format or line/paragraph separator escaped.

    PostgreSQL ends a ``--`` comment at a line feed or carriage return; editors and
    terminals break lines at more characters (form feed, U+2028...). Escaping all of
    them keeps the text readable and inert wherever it is shown.
    """
    return "".join(_escape_char(c) if unicodedata.category(c) in _BREAKING else c for c in text)


# control, format, surrogate, unassigned/private use, line and paragraph separators
_BREAKING = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def sql_comment(text: str) -> str:
    """``text`` as one ``--`` comment line that nothing in ``text`` can end early."""
    return f"-- {one_line(text)}".rstrip()


def requote(sql: str) -> str:
    """Server-written SQL (``pg_get_indexdef`` and the like) with every double-quoted
    name and plain string literal re-quoted here, so a name with a line break is
    written in the ``U&`` form on one line, as in every script asyncmig generates.

    Dollar-quoted bodies (a function's), ``E''`` and ``U&`` strings are left as they
    are: their text means something else inside them.
    """
    out: list[str] = []
    i = 0
    while i < len(sql):
        char = sql[i]
        if char == '"':
            end = _closing(sql, i, '"')
            out.append(quote_ident(sql[i + 1 : end].replace('""', '"')))
            i = end + 1
        elif char == "'":
            end = _closing(sql, i, "'")
            body = sql[i + 1 : end]
            prefixed = i > 0 and (sql[i - 1] in "eE&" and _word_start(sql, i - 1))
            out.append(sql[i : end + 1] if prefixed else quote_literal(body.replace("''", "'")))
            i = end + 1
        elif char == "$" and (tag := _dollar_tag(sql, i)):
            end = sql.find(tag, i + len(tag))
            end = len(sql) if end < 0 else end + len(tag)
            out.append(sql[i:end])
            i = end
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _closing(sql: str, start: int, quote: str) -> int:
    """The index of the quote ending the quoted text opened at ``start`` (doubled quotes
    are part of the text); the end of ``sql`` if it is never closed."""
    i = start + 1
    while i < len(sql):
        if sql[i] == quote:
            if sql[i + 1 : i + 2] != quote:
                return i
            i += 1
        i += 1
    return len(sql)


def _word_start(sql: str, i: int) -> bool:
    """``sql[i]`` begins a token (E'..', U&'..'): not the end of a longer word."""
    if sql[i] == "&":
        return i > 0 and sql[i - 1] in "uU"
    return i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] in "_$")


def _dollar_tag(sql: str, i: int) -> str:
    """The ``$tag$`` opening a dollar-quoted string at ``i``, or "" (``$1`` is not one)."""
    if i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_"):
        return ""
    end = sql.find("$", i + 1)
    tag = sql[i : end + 1] if end > 0 else ""
    inner = tag[1:-1]
    if not tag or (inner and (inner[0].isdigit() or not inner.replace("_", "").isalnum())):
        return ""
    return tag
