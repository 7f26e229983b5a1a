"""How wide a text is on a terminal, for aligned tables: a CJK character or most emoji
take two columns, a combining accent none, so ``len()`` misaligns names like 顧客 or 🖊.
wcwidth implements the Unicode East Asian Width and emoji presentation rules."""

from __future__ import annotations


def width(text: str) -> int:
    """Columns ``text`` occupies (control characters, which have none, count as one)."""
    from wcwidth import wcswidth  # here: only tables need it, and every command starts

    text = visible(text)
    columns = wcswidth(text)
    return columns if columns >= 0 else sum(max(wcswidth(c), 1) for c in text)


def visible(text: str) -> str:
    """``text`` on one line: control characters (a table named with a line break) as
    their escapes, ``\\n``, ``\\t``, ``\\x1b``, so a table's row stays one row."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else _escape(c) for c in text)


def _escape(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii")


def ljust(text: str, columns: int) -> str:
    text = visible(text)
    return text + " " * max(0, columns - width(text))


def rjust(text: str, columns: int) -> str:
    text = visible(text)
    return " " * max(0, columns - width(text)) + text
