"""How wide a text is on a terminal, for aligned tables: a CJK character or most emoji
take two columns, a combining accent none, so ``len()`` misaligns names like 顧客 or 🖊.
wcwidth implements the Unicode East Asian Width and emoji presentation rules."""

from __future__ import annotations


def width(text: str) -> int:
    """Columns ``text`` occupies (control characters, which have none, count as one)."""
    from wcwidth import wcswidth  # here: only tables need it, and every command starts

    columns = wcswidth(text)
    return columns if columns >= 0 else sum(max(wcswidth(c), 1) for c in text)


def ljust(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def rjust(text: str, columns: int) -> str:
    return " " * max(0, columns - width(text)) + text
