"""Just enough SQLite DDL parsing for what PRAGMAs do not report.

PRAGMA table_xinfo / index_xinfo / foreign_key_list give columns, keys and foreign
keys, but not CHECK constraints, index expressions, partial-index predicates or
DEFERRABLE clauses: those exist only in the stored CREATE statement. This module
scans that text, respecting quotes and parentheses, and never evaluates it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

_QUOTES = {"'": "'", '"': '"', "`": "`", "[": "]"}


def _skip_quoted(sql: str, i: int) -> int:
    """Return the index just past the quoted token starting at ``sql[i]``."""
    close = _QUOTES[sql[i]]
    j = i + 1
    while j < len(sql):
        if sql[j] == close:
            if close != "]" and j + 1 < len(sql) and sql[j + 1] == close:
                j += 2
                continue
            return j + 1
        j += 1
    return j


def _skip_comment(sql: str, i: int) -> int:
    if sql.startswith("--", i):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end + 1
    if sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        return len(sql) if end < 0 else end + 2
    return i


def _outside_quotes(sql: str, start: int = 0) -> Iterator[int]:
    """Positions of the characters of ``sql`` that are code: not quoted, not comments."""
    i = start
    while i < len(sql):
        if sql[i] in _QUOTES:
            i = _skip_quoted(sql, i)
            continue
        skipped = _skip_comment(sql, i)
        if skipped != i:
            i = skipped
            continue
        yield i
        i += 1


def matching_paren(sql: str, start: int) -> int:
    """Index of the ')' closing the '(' at ``start``."""
    depth = 0
    for i in _outside_quotes(sql, start):
        if sql[i] == "(":
            depth += 1
        elif sql[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses")


def split_top_level(sql: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside quotes and parentheses."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i in _outside_quotes(sql):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(sql[start:i].strip())
            start = i + 1
    parts.append(sql[start:].strip())
    return [p for p in parts if p]


def first_statement(sql: str) -> tuple[str, str]:
    """``sql`` cut at its first ``;`` outside quotes and comments: (statement, the rest).

    SQLite parses a stored CREATE statement only up to its end and ignores what follows,
    so a file whose schema was edited by hand can carry extra text after a view's query;
    that text is the rest, never part of the query.
    """
    for i in _outside_quotes(sql):
        if sql[i] == ";":
            return sql[:i], sql[i + 1 :]
    return sql, ""


def body(sql: str) -> str:
    """The text inside the outermost parentheses of a CREATE TABLE / INDEX."""
    start = sql.index("(")
    return sql[start + 1 : matching_paren(sql, start)]


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def _words_outside_quotes(sql: str) -> list[tuple[int, str]]:
    """(position, upper-case word) for every bare word outside quotes/comments."""
    words: list[tuple[int, str]] = []
    end = 0  # the end of the last word: its other characters are not word starts
    for i in _outside_quotes(sql):
        if i < end:
            continue
        match = _WORD.match(sql, i)
        if match:
            words.append((i, match.group(0).upper()))
            end = match.end()
    return words


def check_constraints(create_table_sql: str) -> list[tuple[str | None, str]]:
    """(constraint name or None, expression SQL) for every CHECK in a CREATE TABLE."""
    inner = body(create_table_sql)
    found: list[tuple[str | None, str]] = []
    words = _words_outside_quotes(inner)
    for index, (pos, word) in enumerate(words):
        if word != "CHECK":
            continue
        paren = inner.index("(", pos)
        expression = inner[paren + 1 : matching_paren(inner, paren)].strip()
        name = None
        # CONSTRAINT name CHECK: a quoted name ("x_pos", as Django writes it) is no word
        named = [i for i in (index - 1, index - 2) if i >= 0 and words[i][1] == "CONSTRAINT"]
        if named:
            name_start = words[named[0]][0] + len("CONSTRAINT")
            name = unquote(inner[name_start:pos].strip()) or None
        found.append((name, expression))
    return found


_TOKEN = re.compile(
    r'"(?:[^"]|"")*"|\[[^\]]*\]|`(?:[^`]|``)*`|\'(?:[^\']|\'\')*\'|[A-Za-z_][A-Za-z0-9_$]*|\S'
)


@dataclass(frozen=True)
class ConstraintNames:
    """The names a CREATE TABLE gives its constraints: the primary key's, and the foreign
    keys' and UNIQUE constraints' by their columns (lower-case)."""

    primary: str | None = None
    foreign: Mapping[tuple[str, ...], str] = field(default_factory=dict)
    unique: Mapping[tuple[str, ...], str] = field(default_factory=dict)


def constraint_names(create_table_sql: str) -> ConstraintNames:
    """The names a CREATE TABLE gives its primary key, foreign keys and UNIQUE
    constraints: ``CONSTRAINT "PK_Blogs" PRIMARY KEY``, ``CONSTRAINT
    "FK_Posts_Blogs_BlogId" FOREIGN KEY ("BlogId") REFERENCES ...``, ``CONSTRAINT
    uq_author_title UNIQUE (author_id, title)``, or on a column, ``"BlogId" INTEGER
    CONSTRAINT fk_b REFERENCES ...``, ``label TEXT CONSTRAINT uq_label UNIQUE`` (Entity
    Framework's, Rails' and Alembic's forms: their later migrations drop constraints by
    these names)."""
    primary: str | None = None
    foreign: dict[tuple[str, ...], str] = {}
    unique: dict[tuple[str, ...], str] = {}
    for segment in split_top_level(body(create_table_sql)):
        tokens = _TOKEN.findall(segment)
        words = [t.upper() for t in tokens]
        if words[:1] == ["CONSTRAINT"] and len(tokens) > 3:  # a named table constraint
            name = unquote(tokens[1])
            if words[2] == "PRIMARY":
                primary = name
            elif words[2] in ("FOREIGN", "UNIQUE") and "(" in tokens and ")" in tokens:
                inside = tokens[tokens.index("(") + 1 : tokens.index(")")]
                key = tuple(unquote(t).lower() for t in inside if t != ",")
                (foreign if words[2] == "FOREIGN" else unique)[key] = name
            continue
        if not tokens or words[0] in ("PRIMARY", "FOREIGN", "UNIQUE", "CHECK"):
            continue
        column = unquote(tokens[0]).lower()  # a column: its own named constraints
        for at in range(1, len(tokens) - 2):
            if words[at] != "CONSTRAINT":
                continue
            if words[at + 2] == "PRIMARY":
                primary = unquote(tokens[at + 1])
            elif words[at + 2] == "REFERENCES":
                foreign[(column,)] = unquote(tokens[at + 1])
            elif words[at + 2] == "UNIQUE":
                unique[(column,)] = unquote(tokens[at + 1])
    return ConstraintNames(primary, foreign, unique)


def unquote(name: str) -> str:
    """Strip SQLite identifier quotes: "x", [x], `x`."""
    if len(name) >= 2 and name[0] in _QUOTES and name[-1] == _QUOTES[name[0]]:
        inner = name[1:-1]
        return inner.replace(name[0] * 2, name[0]) if name[0] != "[" else inner
    return name


def index_parts(create_index_sql: str) -> tuple[list[str], str | None]:
    """(key SQL texts, WHERE predicate or None) of a CREATE INDEX statement."""
    start = create_index_sql.index("(")
    end = matching_paren(create_index_sql, start)
    keys = split_top_level(create_index_sql[start + 1 : end])
    rest = create_index_sql[end + 1 :]
    where = None
    for pos, word in _words_outside_quotes(rest):
        if word == "WHERE":
            where = rest[pos + len("WHERE") :].strip().rstrip(";").strip()
            break
    return keys, where


_KEY_SUFFIX = re.compile(r"\s+(COLLATE\s+(\"[^\"]+\"|\w+))?\s*(ASC|DESC)?\s*$", re.IGNORECASE)


def strip_key_suffix(key: str) -> str:
    """Remove a trailing COLLATE x / ASC / DESC from an index key's SQL."""
    stripped = key
    while True:
        match = re.search(r"\s+(ASC|DESC)\s*$", stripped, re.IGNORECASE) or re.search(
            r"\s+COLLATE\s+(\"[^\"]+\"|\w+)\s*$", stripped, re.IGNORECASE
        )
        if not match:
            return stripped.strip()
        stripped = stripped[: match.start()]


def has_autoincrement(create_table_sql: str) -> bool:
    return any(word == "AUTOINCREMENT" for _, word in _words_outside_quotes(create_table_sql))


def column_collations(create_table_sql: str) -> dict[str, str]:
    """Column name -> declared COLLATE name, from the column definitions."""
    found: dict[str, str] = {}
    for part in split_top_level(body(create_table_sql)):
        words = _words_outside_quotes(part)
        if not words or words[0][1] in {"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"}:
            continue
        for index, (_, word) in enumerate(words):
            if word == "COLLATE" and index + 1 < len(words):
                found[unquote(_first_token(part))] = words[index + 1][1]
    return found


def deferrable_references(create_table_sql: str) -> list[tuple[str, bool]]:
    """(referenced table, DEFERRABLE INITIALLY DEFERRED?) per REFERENCES clause, in order."""
    found: list[tuple[str, bool]] = []
    words = _words_outside_quotes(create_table_sql)
    for index, (pos, word) in enumerate(words):
        if word != "REFERENCES":
            continue
        table = unquote(_first_token(create_table_sql[pos + len(word) :].strip()))
        following = [w for _, w in words[index + 1 : index + 12]]
        deferred = False
        for j, w in enumerate(following):
            if w == "REFERENCES":
                break
            if w == "DEFERRABLE" and "NOT" not in following[max(j - 1, 0) : j]:
                deferred = "DEFERRED" in following[j : j + 3]
        found.append((table, deferred))
    return found


def _first_token(text: str) -> str:
    text = text.strip()
    if text and text[0] in _QUOTES:
        return text[: _skip_quoted(text, 0)]
    match = re.match(r"[^\s(,]+", text)
    return match.group(0) if match else text
