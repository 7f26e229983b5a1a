"""Translate SQLite SQL expressions (CHECKs, index keys and predicates, defaults) to PostgreSQL.

SQLite keeps these only as the text the user wrote, and its dialect differs from
PostgreSQL's in ways that silently change meaning (``IS`` compares values, ``LIKE``
ignores case, ``||`` binds tighter than ``*``, booleans are 0/1). So the text is
tokenized and parsed into a small tree using SQLite's precedence, checked against
the columns' chosen PostgreSQL types, and printed again with PostgreSQL's precedence
and identifiers re-quoted by :mod:`asyncmig.quoting`. Whatever is not understood is
refused with a reason rather than guessed at: the planner then reports it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from asyncmig.plan.model import base_type
from asyncmig.quoting import quote_ident, quote_literal


@dataclass(frozen=True)
class Translation:
    sql: str | None  # PostgreSQL SQL, None when not translatable
    reason: str | None = None  # why not (or a note), None when translated cleanly


class Untranslatable(Exception):
    """Raised anywhere during translation; its message becomes Translation.reason."""


class Misleading(Untranslatable):
    """SQLite syntax PostgreSQL also accepts, with another meaning: a view holding it is
    never tried as written (it would be created, and answer differently)."""


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Token:
    kind: str  # word, ident, dqident, string, number, blob, op, end
    value: str  # unquoted name / string value / number text / hex digits / operator


_OPERATORS = (
    "->>",
    "||",
    "==",
    "!=",
    "<>",
    "<=",
    ">=",
    "<<",
    ">>",
    "->",
    "=",
    "<",
    ">",
    "+",
    "-",
    "*",
    "/",
    "%",
    "&",
    "|",
    "~",
    "(",
    ")",
    ",",
    ".",
)
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
_CLOSE = {'"': '"', "`": "`", "[": "]", "'": "'"}


def tokenize(sql: str) -> list[Token]:
    """Split SQLite SQL into tokens; raise Untranslatable on anything unexpected."""
    tokens: list[Token] = []
    i = 0
    while i < len(sql):
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = len(sql) if end < 0 else end + 2
        elif ch in "xX" and sql.startswith("'", i + 1):
            text, i = _quoted(sql, i + 1)
            if not re.fullmatch(r"(?:[0-9a-fA-F]{2})*", text):
                raise Untranslatable(f"malformed blob literal X'{text}'")
            tokens.append(Token("blob", text.lower()))
        elif ch in _CLOSE:
            text, i = _quoted(sql, i)
            kind = {"'": "string", '"': "dqident"}.get(ch, "ident")
            tokens.append(Token(kind, text))
        elif (match := _NUMBER.match(sql, i)) and (ch.isdigit() or ch == "."):
            tokens.append(Token("number", match.group(0)))
            i = match.end()
        elif match := _WORD.match(sql, i):
            tokens.append(Token("word", match.group(0)))
            i = match.end()
        else:
            op = next((o for o in _OPERATORS if sql.startswith(o, i)), None)
            if op is None:
                raise Untranslatable(f"unexpected character {ch!r} in {sql!r}")
            tokens.append(Token("op", op))
            i += len(op)
    tokens.append(Token("end", ""))
    return tokens


def _quoted(sql: str, start: int) -> tuple[str, int]:
    """(unescaped text, index after) of the quoted token opening at ``sql[start]``."""
    close = _CLOSE[sql[start]]
    parts: list[str] = []
    i = start + 1
    while i < len(sql):
        if sql[i] == close:
            if close != "]" and sql.startswith(close * 2, i):
                parts.append(close)
                i += 2
                continue
            return "".join(parts), i + 1
        parts.append(sql[i])
        i += 1
    raise Untranslatable(f"unterminated quote in {sql!r}")


# --------------------------------------------------------------------------- tree


@dataclass(frozen=True)
class Col:
    name: str
    pg_type: str


@dataclass(frozen=True)
class Lit:
    kind: str  # string, number, blob, null, true, false, current
    value: str


@dataclass(frozen=True)
class Unary:
    op: str  # NOT, -, +, ~
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str  # normalised SQLite operator (upper case for words)
    left: Node
    right: Node
    negated: bool = False  # NOT LIKE / NOT GLOB / IS NOT
    escape: Node | None = None


@dataclass(frozen=True)
class In:
    operand: Node
    items: tuple[Node, ...]
    negated: bool


@dataclass(frozen=True)
class Between:
    operand: Node
    low: Node
    high: Node
    negated: bool


@dataclass(frozen=True)
class Func:
    name: str  # lower case
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Cast:
    operand: Node
    type_name: str


@dataclass(frozen=True)
class Collate:
    operand: Node
    collation: str


@dataclass(frozen=True)
class Case:
    base: Node | None
    whens: tuple[tuple[Node, Node], ...]
    otherwise: Node | None


Node = Col | Lit | Unary | Binary | In | Between | Func | Cast | Collate | Case

# SQLite binding powers (higher binds tighter)
_OR, _AND, _NOT, _EQ, _REL, _BIT, _ADD, _MUL, _CONCAT, _UNARY, _COLLATE = range(1, 12)
_INFIX = {
    "OR": _OR,
    "AND": _AND,
    "=": _EQ,
    "==": _EQ,
    "!=": _EQ,
    "<>": _EQ,
    "IS": _EQ,
    "IN": _EQ,
    "LIKE": _EQ,
    "GLOB": _EQ,
    "MATCH": _EQ,
    "REGEXP": _EQ,
    "BETWEEN": _EQ,
    "ISNULL": _EQ,
    "NOTNULL": _EQ,
    "NOT": _EQ,
    "<": _REL,
    "<=": _REL,
    ">": _REL,
    ">=": _REL,
    "&": _BIT,
    "|": _BIT,
    "<<": _BIT,
    ">>": _BIT,
    "+": _ADD,
    "-": _ADD,
    "*": _MUL,
    "/": _MUL,
    "%": _MUL,
    "||": _CONCAT,
    "->": _CONCAT,
    "->>": _CONCAT,
    "COLLATE": _COLLATE,
}
_CONSTANTS = {
    "NULL": "null",
    "TRUE": "true",
    "FALSE": "false",
    "CURRENT_TIMESTAMP": "current",
    "CURRENT_DATE": "current",
    "CURRENT_TIME": "current",
}


class Parser:
    """Pratt parser over :func:`tokenize` output, with SQLite's precedence."""

    def __init__(self, sql: str, columns: Mapping[str, str], *, dq_strings: bool = False):
        self.sql = sql
        self.dq_strings = dq_strings  # SQLite's legacy "x" string literals (defaults only)
        self.tokens = tokenize(sql)
        self.pos = 0
        self.columns = {name.lower(): (name, pg_type) for name, pg_type in columns.items()}

    def parse(self) -> Node:
        node = self.expr(0)
        if self.peek().kind != "end":
            raise Untranslatable(f"cannot parse {self.sql!r} near {self.peek().value!r}")
        return node

    # token helpers
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        token = self.peek()
        self.pos += 1
        return token

    def at(self, *values: str) -> bool:
        token = self.peek()
        text = token.value.upper() if token.kind == "word" else token.value
        return token.kind in ("word", "op") and text in values

    def expect(self, value: str) -> None:
        if not self.at(value):
            raise Untranslatable(f"cannot parse {self.sql!r}: expected {value}")
        self.pos += 1

    def infix_power(self) -> int:
        token = self.peek()
        if token.kind not in ("word", "op"):
            return 0
        return _INFIX.get(token.value.upper(), 0)

    # grammar
    def expr(self, min_power: int) -> Node:
        left = self.prefix()
        while self.infix_power() > min_power:
            left = self.infix(left)
        return left

    def prefix(self) -> Node:
        token = self.next()
        upper = token.value.upper()
        if token.kind == "op" and token.value == "(":
            if self.at("SELECT", "VALUES", "WITH"):
                raise Untranslatable("subqueries are not translated")
            inner = self.expr(0)
            if self.at(","):
                raise Untranslatable("row values are not translated")
            self.expect(")")
            return inner
        if token.kind == "op" and token.value in ("-", "+", "~"):
            operand = self.expr(_UNARY)
            if token.value in "+-" and isinstance(operand, Lit) and operand.kind == "number":
                value = operand.value
                if token.value == "-":
                    value = value[1:] if value.startswith("-") else "-" + value
                return Lit("number", value)
            return Unary(token.value, operand)
        if token.kind == "word" and upper == "NOT":
            return Unary("NOT", self.expr(_NOT))
        if token.kind == "string":
            return Lit("string", token.value)
        if token.kind == "number":
            return Lit("number", _number_text(token.value))
        if token.kind == "blob":
            return Lit("blob", token.value)
        if token.kind in ("ident", "dqident"):
            return self.name(token)
        if token.kind == "word":
            return self.word(token)
        raise Untranslatable(f"cannot parse {self.sql!r} near {token.value!r}")

    def word(self, token: Token) -> Node:
        upper = token.value.upper()
        if self.at(".") or token.value.lower() in self.columns:
            return self.name(token)
        if upper in _CONSTANTS and not self.at("("):
            return Lit(_CONSTANTS[upper], upper)
        if upper == "CAST" and self.at("("):
            self.expect("(")
            operand = self.expr(0)
            self.expect("AS")
            type_words: list[str] = []
            while not self.at(")") and self.peek().kind != "end":
                type_words.append(self.next().value)
            self.expect(")")
            return Cast(operand, " ".join(type_words))
        if upper == "CASE":
            return self.case()
        if upper in ("EXISTS", "SELECT", "RAISE"):
            raise Untranslatable(f"{upper} is not translated")
        if self.at("("):
            return self.call(token.value.lower())
        raise Untranslatable(f"unknown name {token.value!r} in {self.sql!r}")

    def name(self, token: Token) -> Node:
        name = token.value
        while self.at("."):  # table.column or schema.table.column: keep the column
            self.next()
            token = self.next()
            if token.kind not in ("word", "ident", "dqident"):
                raise Untranslatable(f"cannot parse {self.sql!r} near '.'")
            name = token.value
        found = self.columns.get(name.lower())
        if found is not None:
            return Col(*found)
        if token.kind == "dqident" and self.dq_strings:
            return Lit("string", name)  # SQLite's legacy fallback: "x" is a string literal
        if token.kind == "dqident":
            raise Untranslatable(
                f"{name!r} is not a column (SQLite would read a string"
                " literal: write it in single quotes)"
            )
        raise Untranslatable(f"unknown column {name!r} in {self.sql!r}")

    def call(self, name: str) -> Node:
        self.expect("(")
        args: list[Node] = []
        if self.at("DISTINCT", "*"):
            raise Untranslatable(f"aggregate call {name}(...) is not translated")
        if not self.at(")"):
            args.append(self.expr(0))
            while self.at(","):
                self.next()
                args.append(self.expr(0))
        self.expect(")")
        if self.at("FILTER", "OVER"):
            raise Untranslatable(f"window/aggregate call {name}(...) is not translated")
        return Func(name, tuple(args))

    def case(self) -> Node:
        base = None if self.at("WHEN") else self.expr(0)
        whens: list[tuple[Node, Node]] = []
        while self.at("WHEN"):
            self.next()
            condition = self.expr(0)
            self.expect("THEN")
            whens.append((condition, self.expr(0)))
        otherwise = None
        if self.at("ELSE"):
            self.next()
            otherwise = self.expr(0)
        self.expect("END")
        if not whens:
            raise Untranslatable("CASE without WHEN")
        return Case(base, tuple(whens), otherwise)

    def infix(self, left: Node) -> Node:
        token = self.next()
        op = token.value.upper()
        power = _INFIX[op]
        if op == "COLLATE":
            name = self.next()
            if name.kind not in ("word", "ident", "dqident", "string"):
                raise Untranslatable("COLLATE without a collation name")
            return Collate(left, name.value.upper())
        if op in ("ISNULL", "NOTNULL"):
            return Binary("IS", left, Lit("null", "NULL"), negated=op == "NOTNULL")
        negated = False
        if op == "NOT":
            negated = True
            if self.at("NULL"):
                self.next()
                return Binary("IS", left, Lit("null", "NULL"), negated=True)
            op = self.next().value.upper()
            if op not in ("IN", "LIKE", "GLOB", "BETWEEN", "MATCH", "REGEXP"):
                raise Untranslatable(f"cannot parse {self.sql!r} near NOT {op}")
        if op == "IS":
            if self.at("NOT"):
                self.next()
                negated = True
            if self.at("DISTINCT"):
                self.next()
                self.expect("FROM")
                negated = not negated
            return Binary("IS", left, self.expr(power), negated)
        if op == "IN":
            return self.in_list(left, negated)
        if op == "BETWEEN":
            low = self.expr(power)
            self.expect("AND")
            return Between(left, low, self.expr(power), negated)
        right = self.expr(power)
        escape = None
        if op in ("LIKE", "GLOB") and self.at("ESCAPE"):
            self.next()
            escape = self.expr(power)
        return Binary(op, left, right, negated, escape)

    def in_list(self, left: Node, negated: bool) -> Node:
        if not self.at("("):
            raise Untranslatable("IN of a table or function is not translated")
        self.next()
        if self.at("SELECT", "VALUES", "WITH"):
            raise Untranslatable("IN (subquery) is not translated")
        items: list[Node] = []
        if not self.at(")"):
            items.append(self.expr(0))
            while self.at(","):
                self.next()
                items.append(self.expr(0))
        self.expect(")")
        if not items:
            raise Untranslatable("empty IN list has no PostgreSQL spelling")
        return In(left, tuple(items), negated)


def _number_text(text: str) -> str:
    """Number literal text PostgreSQL accepts (no hex literals before version 16)."""
    if text.lower().startswith("0x"):
        value = int(text, 16)
        return str(value - (1 << 64) if value >= 1 << 63 else value)  # SQLite: 64-bit two's
    return text


# --------------------------------------------------------------------------- types


_NUMERIC_TYPES = {
    "bigint",
    "integer",
    "int",
    "int4",
    "int8",
    "smallint",
    "int2",
    "numeric",
    "decimal",
    "double precision",
    "real",
    "float4",
    "float8",
}
_TEXT_TYPES = {"text", "varchar", "character varying", "char", "character", "citext", "name"}
_TIME_TYPES = {
    "timestamptz",
    "timestamp",
    "timestamp with time zone",
    "timestamp without time zone",
    "date",
}
INTEGERS = ("bigint", "integer", "smallint", "int", "int2", "int4", "int8")
_INT_RANGES = {
    "smallint": 16,
    "int2": 16,
    "integer": 32,
    "int": 32,
    "int4": 32,
    "bigint": 64,
    "int8": 64,
}


def kind(pg_type: str | None) -> str | None:
    """Coarse family of a PostgreSQL type, for deciding which comparisons are valid."""
    if pg_type is None:
        return None
    base = base_type(pg_type)
    if base in ("boolean", "bool"):
        return "bool"
    if base in _NUMERIC_TYPES:
        return "num"
    if base in _TEXT_TYPES:
        return "text"
    if base in _TIME_TYPES:
        return "time"
    if base in ("json", "jsonb"):
        return "json"
    return base


def sqlite_cast_type(type_name: str) -> str:
    """PostgreSQL type for a SQLite type name, by SQLite's affinity rules."""
    upper = type_name.upper()
    if "INT" in upper:
        return "bigint"
    if any(t in upper for t in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if "BLOB" in upper or not upper.strip():
        return "bytea"
    if any(t in upper for t in ("REAL", "FLOA", "DOUB")):
        return "double precision"
    return "numeric"


def _sqlite_text_of_number(text: str) -> str:
    """How SQLite renders a numeric literal as TEXT (integer as is, real via repr)."""
    try:
        return str(int(text))
    except ValueError:
        return repr(float(text))


def _parse_number(text: str) -> str | None:
    text = text.strip()
    if re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text):
        return text.lstrip("+")
    return None


_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}


def literal_sql(lit: Lit, pg_type: str, *, for_default: bool = False) -> str | None:
    """``lit`` as PostgreSQL SQL of type ``pg_type``, or None when it does not fit.

    Used for defaults (where the value must fit the column exactly) and for literals
    compared with a typed column (where PostgreSQL would otherwise reject the query
    or, for booleans and text, compare differently than SQLite did).
    """
    if lit.kind == "null":
        return "NULL"
    family = kind(pg_type)
    base = base_type(pg_type)
    value = lit.value
    if lit.kind in ("true", "false"):
        if family == "bool":
            return lit.kind
        value, lit = ("1" if lit.kind == "true" else "0"), Lit("number", value)
    if family == "bool":
        text = value.strip().lower()
        if lit.kind not in ("number", "string"):
            return None
        if text in _TRUE or (lit.kind == "number" and text in ("1.0",)):
            return "true"
        if text in _FALSE or (lit.kind == "number" and text in ("0.0",)):
            return "false"
        return None
    if family == "num":
        if lit.kind not in ("number", "string"):
            return None
        number = _parse_number(value)
        if number is None:
            return None
        bits = _INT_RANGES.get(base)
        if bits is not None and for_default:
            as_float = float(number)
            if not as_float.is_integer():
                return None
            integer = int(number) if re.fullmatch(r"-?\d+", number) else int(as_float)
            if not -(1 << (bits - 1)) <= integer < 1 << (bits - 1):
                return None
            return str(integer)
        return number
    if family == "text":
        if lit.kind == "number":
            value = _sqlite_text_of_number(value)
        elif lit.kind != "string":
            return None
        length = re.search(r"\((\d+)\)", pg_type)
        if for_default and length and len(value) > int(length.group(1)):
            return None
        return quote_literal(value)
    if family == "bytea":
        if lit.kind == "blob":
            return f"'\\x{value}'::bytea"
        if lit.kind == "string":
            return f"'\\x{value.encode().hex()}'::bytea"
        return None
    if lit.kind not in ("string", "number"):
        return None
    checked = _checked_text(value, base, family)
    return (
        None
        if checked is None
        else quote_literal(checked) + ("" if family == "time" else f"::{base}")
    )


def _checked_text(value: str, base: str, family: str | None) -> str | None:
    """``value`` normalised for jsonb/uuid/inet/date/timestamp types, None if invalid."""
    try:
        if family == "json":
            json.loads(value, parse_constant=_reject_constant)
            return value
        if base == "uuid":
            return str(uuid.UUID(value))
        if base == "inet":
            ipaddress.ip_interface(value.strip())
            return value.strip()
        if base == "cidr":
            ipaddress.ip_network(value.strip())
            return value.strip()
        if base == "date":
            return dt.date.fromisoformat(value.strip()).isoformat()
        if family == "time":
            parsed = dt.datetime.fromisoformat(value.strip())
            if base in ("timestamptz", "timestamp with time zone"):
                # naive SQLite timestamps are UTC, as the data transform reads them
                aware = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
                return aware.isoformat(sep=" ")
            if parsed.tzinfo:
                parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
            return parsed.isoformat(sep=" ")
    except ValueError:
        return None
    return None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON PostgreSQL accepts")


# --------------------------------------------------------------------------- printing

# PostgreSQL precedence (higher binds tighter)
P_OR, P_AND, P_NOT, P_IS, P_CMP, P_LIKE, P_OP, P_ADD, P_MUL, P_UNARY, P_CAST, P_ATOM = range(1, 13)
_PG_BINARY = {
    "OR": ("OR", P_OR),
    "AND": ("AND", P_AND),
    "=": ("=", P_CMP),
    "==": ("=", P_CMP),
    "!=": ("<>", P_CMP),
    "<>": ("<>", P_CMP),
    "<": ("<", P_CMP),
    "<=": ("<=", P_CMP),
    ">": (">", P_CMP),
    ">=": (">=", P_CMP),
    "&": ("&", P_OP),
    "|": ("|", P_OP),
    "<<": ("<<", P_OP),
    ">>": (">>", P_OP),
    "||": ("||", P_OP),
    "+": ("+", P_ADD),
    "-": ("-", P_ADD),
    "*": ("*", P_MUL),
    "/": ("/", P_MUL),
    "%": ("%", P_MUL),
}
_TEXT_FUNCS = {
    "lower": "lower",
    "upper": "upper",
    "trim": "trim",
    "ltrim": "ltrim",
    "rtrim": "rtrim",
    "replace": "replace",
    "substr": "substr",
    "substring": "substr",
}
_ARG_COUNTS = {
    "lower": (1, 1),
    "upper": (1, 1),
    "trim": (1, 2),
    "ltrim": (1, 2),
    "rtrim": (1, 2),
    "replace": (3, 3),
    "substr": (2, 3),
    "substring": (2, 3),
    "abs": (1, 1),
    "coalesce": (2, 99),
    "ifnull": (2, 2),
    "nullif": (2, 2),
    "instr": (2, 2),
    "length": (1, 1),
    "json_valid": (1, 1),
}
_DATE_FUNCS = {"datetime", "date", "time", "julianday", "strftime", "unixepoch", "timediff"}
_VOLATILE = {"random", "randomblob", "changes", "last_insert_rowid", "total_changes"}


@dataclass(frozen=True)
class Out:
    """Printed PostgreSQL SQL with its precedence and (when known) its type."""

    sql: str
    prec: int
    pg_type: str | None = None

    def at(self, prec: int) -> str:
        """The SQL, parenthesised if it binds looser than ``prec``."""
        return self.sql if self.prec >= prec else f"({self.sql})"


_TRUE_OUT = Out("TRUE", P_ATOM, "boolean")


class Printer:
    """Print a parsed SQLite tree as PostgreSQL SQL, checking types as it goes."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.native_case = False  # lower()/upper() as PostgreSQL's (index keys)

    def out(self, node: Node) -> Out:
        if isinstance(node, Col):
            return Out(quote_ident(node.name), P_ATOM, node.pg_type)
        if isinstance(node, Lit):
            return self.literal(node)
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, In):
            return self.in_list(node)
        if isinstance(node, Between):
            return self.between(node)
        if isinstance(node, Func):
            return self.function(node)
        if isinstance(node, Cast):
            pg_type = sqlite_cast_type(node.type_name)
            operand = self.out(node.operand)
            if base_type(pg_type) in _CAST_PREFIXES and kind(operand.pg_type) == "text":
                return text_cast(operand, pg_type)
            return Out(f"CAST({operand.sql} AS {pg_type})", P_ATOM, pg_type)
        if isinstance(node, Collate):
            return self.collate(node)
        return self.case(node)

    def own_collation(self, *sides: Out) -> bool:
        """Whether a side is a column with a collation of its own (a NOCASE column
        under its case-insensitive collation), which orders the comparison as SQLite's
        NOCASE does; else text compares bytewise (:func:`bytewise`)."""
        return False

    def literal(self, lit: Lit) -> Out:
        if lit.kind == "string":
            return Out(quote_literal(lit.value), P_ATOM)
        if lit.kind == "number":
            integer = re.fullmatch(r"-?\d+", lit.value) is not None
            return Out(
                lit.value,
                P_ATOM if not lit.value.startswith("-") else P_UNARY,
                "bigint" if integer else "numeric",
            )
        if lit.kind == "blob":
            return Out(f"'\\x{lit.value}'::bytea", P_CAST, "bytea")
        if lit.kind == "null":
            return Out("NULL", P_ATOM)
        if lit.kind in ("true", "false"):
            return Out(lit.value, P_ATOM, "boolean")
        raise Untranslatable(
            f"{lit.value} is not allowed: PostgreSQL requires immutable CHECK constraints and"
            f" index predicates, and {lit.value} is not"
        )

    def condition(self, node: Node) -> Out:
        """An operand of AND/OR/NOT/WHEN: PostgreSQL needs a boolean, SQLite takes any."""
        out = self.out(node)
        if kind(out.pg_type) not in (None, "bool"):
            raise Untranslatable(
                f"{out.sql} ({out.pg_type}) is used as a condition; "
                "PostgreSQL needs a boolean there"
            )
        return out

    def unary(self, node: Unary) -> Out:
        if node.op == "NOT":
            operand = self.condition(node.operand)
            if operand.sql == "TRUE":
                return Out("FALSE", P_ATOM, "boolean")
            return Out(f"NOT {operand.at(P_NOT)}", P_NOT, "boolean")
        operand = self.out(node.operand)
        if kind(operand.pg_type) not in (None, "num"):
            raise Untranslatable(f"unary {node.op} on {operand.sql} ({operand.pg_type})")
        # a nested sign is parenthesised, so "--" (a comment) cannot appear
        return Out(f"{node.op}{operand.at(P_UNARY + 1)}", P_UNARY, operand.pg_type)

    def binary(self, node: Binary) -> Out:
        op = node.op
        if op in ("AND", "OR"):
            left, right = self.condition(node.left), self.condition(node.right)
            if "TRUE" in (left.sql, right.sql):  # from json_valid on jsonb: fold it away
                if op == "OR":
                    return _TRUE_OUT
                return right if left.sql == "TRUE" else left
            prec = _PG_BINARY[op][1]
            return Out(f"{left.at(prec)} {op} {right.at(prec)}", prec, "boolean")
        if op == "IS":
            return self.is_(node)
        if op in ("LIKE", "GLOB"):
            return self.like(node) if op == "LIKE" else self.glob(node)
        if op in ("->", "->>"):
            raise Misleading(
                f"{op} reads a JSON path ('$.a') in SQLite and a key in PostgreSQL, and "
                "their results differ (SQLite's ->> of true is 1)"
            )
        if op in ("MATCH", "REGEXP"):
            raise Untranslatable(f"{op} has no PostgreSQL equivalent")
        pg_op, prec = _PG_BINARY[op]
        if prec == P_CMP:
            left, right = self.pair(node.left, node.right)
            if pg_op in ("<", "<=", ">", ">=") and not self.own_collation(left, right):
                left = bytewise(left, right)
            return Out(f"{left.at(prec + 1)} {pg_op} {right.at(prec + 1)}", prec, "boolean")
        left, right = self.out(node.left), self.out(node.right)
        if op == "||":
            for side in (left, right):
                if kind(side.pg_type) not in (None, "text", "num"):
                    raise Untranslatable(f"|| on {side.sql} ({side.pg_type})")
            return Out(f"{left.at(prec)} || {right.at(prec + 1)}", prec, "text")
        left, right = real_literal(node.left, left), real_literal(node.right, right)
        for side in (left, right):
            if kind(side.pg_type) not in (None, "num"):
                raise Untranslatable(f"arithmetic on {side.sql} ({side.pg_type})")
            if op in ("%", "&", "|", "<<", ">>") and side.pg_type not in (None, *INTEGERS):
                # SQLite casts to integer first; PostgreSQL has no such operator for reals
                raise Untranslatable(f"{op} on {side.sql} ({side.pg_type})")
        bases = {_base(left), _base(right)}
        if bases & {"double precision", "real"}:  # a REAL makes it REAL, in both
            result: str | None = "double precision"
        else:
            result = left.pg_type if left.pg_type == right.pg_type else "numeric"
        divisor = right.at(prec + 1)
        if op in ("/", "%") and not _nonzero_number(node.right):
            divisor = f"NULLIF({right.sql}, 0)"  # SQLite's x / 0 is NULL; PostgreSQL raises
        sql = f"{left.at(prec)} {pg_op} {divisor}"
        decimals = [o.sql for o in (left, right) if _base(o) == "numeric"]
        if (
            op == "/"
            and decimals  # integers alone: PostgreSQL divides them as integers too
            and _whole_numbers(node.left, left)
            and _whole_numbers(node.right, right)
        ):
            whole = " AND ".join(f"{d} = trunc({d})" for d in decimals)
            return Out(f"CASE WHEN {whole} THEN trunc({sql}) ELSE {sql} END", P_ATOM, "numeric")
        return Out(sql, prec, result)

    def pair(self, left: Node, right: Node) -> tuple[Out, Out]:
        """Both operands of a comparison: literals typed after the other side, NOCASE applied."""
        nocase = False
        unwrapped = []
        for side in (left, right):
            if isinstance(side, Collate) and side.collation == "NOCASE":
                nocase = True
                side = side.operand
            unwrapped.append(side)
        a, b = unwrapped
        outs = self.typed(a, b)
        if nocase:
            return self.lower(outs[0]), self.lower(outs[1])
        return outs

    def typed(self, a: Node, b: Node) -> tuple[Out, Out]:
        if isinstance(a, Lit) and not isinstance(b, Lit):
            b_out = self.out(b)
            return self.literal_as(a, b_out), b_out
        a_out = self.out(a)
        if isinstance(b, Lit) and not isinstance(a, Lit):
            return a_out, self.literal_as(b, a_out)
        b_out = self.out(b)
        compatible(a_out, b_out)
        return a_out, b_out

    def literal_as(self, lit: Lit, other: Out) -> Out:
        """``lit`` typed for comparison with ``other``: 1 -> true for booleans, etc."""
        if other.pg_type is None or lit.kind in ("null", "current"):
            return self.literal(lit)
        sql = literal_sql(lit, other.pg_type)
        if sql is None:
            raise Untranslatable(
                f"literal {self.literal(lit).sql} cannot be compared with {other.sql}"
                f" ({other.pg_type}) in PostgreSQL"
            )
        return Out(sql, P_CAST if "::" in sql else P_ATOM, other.pg_type)

    def lower(self, out: Out) -> Out:
        if kind(out.pg_type) not in (None, "text"):
            raise Untranslatable(f"COLLATE NOCASE on {out.sql} ({out.pg_type})")
        return Out(f"lower({out.sql})", P_ATOM, "text")

    def is_(self, node: Binary) -> Out:
        left = self.out(node.left)
        right_node = node.right
        if isinstance(right_node, Lit) and right_node.kind == "null":
            word = "IS NOT NULL" if node.negated else "IS NULL"
            return Out(f"{left.at(P_IS + 1)} {word}", P_IS, "boolean")
        if isinstance(right_node, Lit) and right_node.kind in ("true", "false"):
            if kind(left.pg_type) not in (None, "bool"):
                raise Untranslatable(
                    f"IS {right_node.value} on {left.sql} ({left.pg_type}):"
                    " SQLite tests for non-zero, PostgreSQL needs a boolean"
                )
            word = "IS NOT" if node.negated else "IS"
            return Out(f"{left.at(P_IS + 1)} {word} {right_node.value}", P_IS, "boolean")
        left, right = self.pair(node.left, node.right)
        word = "IS DISTINCT FROM" if node.negated else "IS NOT DISTINCT FROM"
        return Out(f"{left.at(P_IS + 1)} {word} {right.at(P_IS + 1)}", P_IS, "boolean")

    def like(self, node: Binary) -> Out:
        left_node = node.left.operand if isinstance(node.left, Collate) else node.left
        left = self.out(left_node)
        pattern = self.out(node.right)
        for side in (left, pattern):
            if kind(side.pg_type) not in (None, "text"):
                raise Untranslatable(f"LIKE on {side.sql} ({side.pg_type})")
        # SQLite's LIKE folds the case of ASCII letters only ('É' is not 'é'); ILIKE
        # folds every letter: both sides' ASCII letters lowered, then a plain LIKE
        word = "NOT LIKE" if node.negated else "LIKE"
        right = node.right
        letterless = (
            isinstance(right, Lit)
            and right.kind == "string"
            and not any(c.isascii() and c.isalpha() for c in right.value)
        )
        if not letterless:
            left, pattern = ascii_lowered(left), ascii_lowered(pattern, right)
        # and bytewise: PostgreSQL before 18 refuses LIKE under a NOCASE column's
        # nondeterministic collation
        left = bytewise(left)
        sql = f"{left.at(P_LIKE + 1)} {word} {pattern.at(P_LIKE + 1)}"
        if node.escape is not None:
            sql += f" ESCAPE {self.out(node.escape).at(P_LIKE + 1)}"
        elif not (isinstance(node.right, Lit) and "\\" not in node.right.value):
            sql += " ESCAPE ''"  # SQLite's LIKE has no escape character; PostgreSQL's is \
        return Out(sql, P_LIKE, "boolean")

    def glob(self, node: Binary) -> Out:
        if not isinstance(node.right, Lit) or node.right.kind != "string" or node.escape:
            raise Untranslatable("GLOB has no PostgreSQL equivalent")
        left = self.out(node.left)
        if kind(left.pg_type) not in (None, "text"):
            raise Untranslatable(f"GLOB on {left.sql} ({left.pg_type})")
        regex = glob_to_regex(node.right.value)
        op = "!~" if node.negated else "~"
        return Out(f"{left.at(P_OP)} {op} {quote_literal(regex)}", P_OP, "boolean")

    def in_list(self, node: In) -> Out:
        operand_node = node.operand
        nocase = isinstance(operand_node, Collate) and operand_node.collation == "NOCASE"
        if isinstance(operand_node, Collate) and nocase:
            operand_node = operand_node.operand
        operand = self.out(operand_node)
        items = []
        for item in node.items:
            out = self.literal_as(item, operand) if isinstance(item, Lit) else self.out(item)
            compatible(operand, out)
            items.append(self.lower(out).sql if nocase else out.sql)
        if nocase:
            operand = self.lower(operand)
        word = "NOT IN" if node.negated else "IN"
        return Out(f"{operand.at(P_LIKE + 1)} {word} ({', '.join(items)})", P_LIKE, "boolean")

    def between(self, node: Between) -> Out:
        operand, low = self.pair(node.operand, node.low)
        _, high = self.pair(node.operand, node.high)
        if not self.own_collation(operand, low, high):
            operand = bytewise(operand, low, high)
        word = "NOT BETWEEN" if node.negated else "BETWEEN"
        return Out(
            f"{operand.at(P_LIKE + 1)} {word} {low.at(P_OP)} AND {high.at(P_OP)}", P_LIKE, "boolean"
        )

    def collate(self, node: Collate) -> Out:
        if node.collation == "NOCASE":
            return self.lower(self.out(node.operand))
        if node.collation == "BINARY":  # bytewise comparison, which "C" gives on UTF-8
            operand = self.out(node.operand)
            return Out(f'{operand.at(P_CAST)} COLLATE "C"', P_CAST, operand.pg_type)
        raise Untranslatable(f"collation {node.collation} has no PostgreSQL equivalent")

    def case(self, node: Case) -> Out:
        """CASE with literal branches typed after the others (PostgreSQL unifies them)."""
        parts = ["CASE"]
        base = self.out(node.base) if node.base is not None else None
        if base is not None:
            parts.append(base.sql)
        branches = [then for _, then in node.whens]
        if node.otherwise is not None:
            branches.append(node.otherwise)
        results = self.unified(branches)
        for (when, _), result in zip(node.whens, results, strict=False):
            if base is None:
                condition = self.condition(when)
            else:
                condition = self.literal_as(when, base) if isinstance(when, Lit) else self.out(when)
                compatible(base, condition)
            parts += ["WHEN", condition.sql, "THEN", result.sql]
        if node.otherwise is not None:
            parts += ["ELSE", results[-1].sql]
        parts.append("END")
        return Out(" ".join(parts), P_ATOM, results[0].pg_type if results else None)

    def unified(self, nodes: list[Node]) -> list[Out]:
        """Print ``nodes`` that must share one type: literals follow the first typed one."""
        typed = next((self.out(n) for n in nodes if not isinstance(n, Lit)), None)
        outs = []
        for node in nodes:
            if isinstance(node, Lit) and typed is not None:
                out = self.literal_as(node, typed)
            else:
                out = self.out(node)
            if typed is not None:
                compatible(typed, out)
            outs.append(out)
        return [Out(o.sql, o.prec, typed.pg_type if typed else o.pg_type) for o in outs]

    def function(self, node: Func) -> Out:
        name = node.name
        if name == "typeof":
            raise Untranslatable(
                "typeof() checks SQLite storage classes; PostgreSQL columns"
                " are typed, so the CHECK has no equivalent"
            )
        if name in _DATE_FUNCS:
            raise Untranslatable(
                f"{name}() is SQLite's date function: not portable, and with 'now' not"
                " immutable (PostgreSQL requires immutable index predicates and CHECKs"
                " must not depend on the clock)"
            )
        if name in _VOLATILE:
            raise Untranslatable(
                f"{name}() is volatile; PostgreSQL requires immutable expressions here"
            )
        if name not in _ARG_COUNTS:
            raise Untranslatable(f"function {name}() has no known PostgreSQL translation")
        low, high = _ARG_COUNTS[name]
        if not low <= len(node.args) <= high:
            raise Untranslatable(f"{name}() with {len(node.args)} arguments")
        if name == "json_valid":
            return self.json_valid(node.args[0])
        if name in ("coalesce", "ifnull", "nullif"):
            return self.coalesce("nullif" if name == "nullif" else "coalesce", node.args)
        args = [self.out(arg) for arg in node.args]
        first = args[0]
        if name == "length":
            family = kind(first.pg_type)
            if family == "bytea":
                return Out(f"octet_length({first.sql})", P_ATOM, "integer")
            if family in (None, "text"):
                return Out(f"length({first.sql})", P_ATOM, "integer")
            if first.pg_type in ("bigint", "integer", "smallint"):
                return Out(f"length({first.at(P_CAST)}::text)", P_ATOM, "integer")
            raise Untranslatable(f"length() of {first.sql} ({first.pg_type})")
        if name == "abs":
            if kind(first.pg_type) not in (None, "num"):
                raise Untranslatable(f"abs() of {first.sql} ({first.pg_type})")
            return Out(f"abs({first.sql})", P_ATOM, first.pg_type)
        if name == "instr":
            return Out(f"strpos({self.text_args(args)})", P_ATOM, "integer")
        pg_name = _TEXT_FUNCS[name]
        if pg_name in ("lower", "upper") and not self.native_case:  # SQLite's: ASCII only
            self.text_args(args)
            return ascii_cased(first, lower=pg_name == "lower")
        if pg_name == "trim" and len(args) == 2:
            pg_name = "btrim"
        if pg_name == "substr":
            for arg in args[1:]:
                if kind(arg.pg_type) not in (None, "num"):
                    raise Untranslatable(f"substr() position {arg.sql} ({arg.pg_type})")
            return Out(substr_sql(self.text_args(args[:1]), args[1].sql, args[2:]), P_ATOM, "text")
        return Out(f"{pg_name}({self.text_args(args)})", P_ATOM, "text")

    def text_args(self, args: list[Out]) -> str:
        for arg in args:
            if kind(arg.pg_type) not in (None, "text"):
                raise Untranslatable(f"text function on {arg.sql} ({arg.pg_type})")
        return ", ".join(a.sql for a in args)

    def json_valid(self, arg: Node) -> Out:
        out = self.out(arg)
        if kind(out.pg_type) == "json":
            self.notes.append("redundant: jsonb validates JSON")
            return _TRUE_OUT
        raise Untranslatable("json_valid() on a non-jsonb value needs IS JSON (PostgreSQL 16+)")

    def coalesce(self, pg_name: str, args: tuple[Node, ...]) -> Out:
        outs = self.unified(list(args))
        sql = f"{pg_name}({', '.join(o.sql for o in outs)})"
        return Out(sql, P_ATOM, outs[0].pg_type)


def compatible(a: Out, b: Out) -> None:
    """Refuse comparing values PostgreSQL will not compare (SQLite compares anything)."""
    ka, kb = kind(a.pg_type), kind(b.pg_type)
    if ka is not None and kb is not None and ka != kb:
        raise Untranslatable(f"{a.sql} ({a.pg_type}) is compared with {b.sql} ({b.pg_type})")


def glob_to_regex(pattern: str) -> str:
    """A SQLite GLOB pattern as an anchored POSIX regular expression."""
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise Untranslatable(f"GLOB pattern {pattern!r} has an unclosed [")
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\").replace("[", "\\[")
            out.append(f"[{'^' if negate else ''}{body}]")
            i = end
        else:
            out.append(re.sub(r"([\\.^$|()\[\]{}*+?])", r"\\\1", ch))
        i += 1
    out.append("$")
    return "".join(out)


# --------------------------------------------------------------------------- entry points


def translate_expression(
    sql: str, *, column_types: Mapping[str, str], index_key: bool = False
) -> Translation:
    """A CHECK, index key or partial-index predicate, as PostgreSQL SQL (or why not).

    ``index_key``: ``lower()``/``upper()`` stay PostgreSQL's own, so the application's
    ``WHERE lower(email) = ...`` finds the index (two keys that differ only by a
    non-ASCII letter's case then collide, and the run stops, naming them); elsewhere
    they fold ASCII letters only, as SQLite's do."""
    printer = Printer()
    printer.native_case = index_key
    try:
        out = printer.out(Parser(sql, column_types).parse())
    except (Untranslatable, RecursionError) as exc:
        return Translation(None, str(exc) or "not translatable")
    if out.sql == "TRUE":
        return Translation("TRUE", "; ".join(printer.notes) or "always true")
    return Translation(out.sql)


def translate_default(sql: str, target_type: str) -> Translation:
    """A column DEFAULT as PostgreSQL SQL that fits ``target_type`` (or why not).

    Never returns the expression as a quoted string: a default that is not a literal
    of the target type or one of the known clock/random idioms is refused.
    """
    text = _strip_parens(sql.strip())
    try:
        node = Parser(text, {}, dq_strings=True).parse()
        result = _default(node, target_type)
    except (Untranslatable, RecursionError) as exc:
        return Translation(None, str(exc) or f"default {sql} is not translated")
    if result is None:
        return Translation(
            None, f"default {sql} is neither a {target_type} value nor a known SQLite idiom"
        )
    return Translation(result)


def _strip_parens(text: str) -> str:
    while text.startswith("(") and text.endswith(")") and _encloses(text):
        text = text[1:-1].strip()
    return text


def _encloses(text: str) -> bool:
    """Whether the '(' at 0 closes at the last character (quote-aware)."""
    from asyncmig.plan.sqlscan import matching_paren

    try:
        return matching_paren(text, 0) == len(text) - 1
    except ValueError:
        return False


def _default(node: Node, target_type: str) -> str | None:
    from asyncmig.plan.sqldates import clock_default  # it builds on this module

    clock = clock_default(node, target_type)
    if clock is not None:
        return clock
    if isinstance(node, Lit):
        return literal_sql(node, target_type, for_default=True)
    if isinstance(node, Func):
        return _random_id(node, kind(target_type), target_type)
    return None


def _random_id(node: Func, family: str | None, target_type: str) -> str | None:
    """hex(randomblob(16)) and lower(...) idioms: a random 32-hex-digit id."""
    case = "upper"
    if node.name in ("lower", "upper") and len(node.args) == 1 and isinstance(node.args[0], Func):
        case = node.name
        node = node.args[0]
    is_blob = node.name == "randomblob" and node.args == (Lit("number", "16"),)
    if is_blob and family == "bytea" and case == "upper":
        return "decode(replace(gen_random_uuid()::text, '-', ''), 'hex')"
    if not (node.name == "hex" and len(node.args) == 1 and isinstance(node.args[0], Func)):
        return None
    inner = node.args[0]
    if not (inner.name == "randomblob" and inner.args == (Lit("number", "16"),)):
        return None
    if base_type(target_type) == "uuid":
        return "gen_random_uuid()"
    if family == "text":
        length = re.search(r"\((\d+)\)", target_type)
        if length and int(length.group(1)) < 32:
            raise Untranslatable(f"a 32-digit random id does not fit {target_type}")
        hex_id = "replace(gen_random_uuid()::text, '-', '')"
        return f"upper({hex_id})" if case == "upper" else hex_id
    return None


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def bytewise(side: Out, *others: Out) -> Out:
    """``side`` compared as SQLite compares text (BINARY: bytes), whatever the
    database's collation: ``COLLATE "C"`` when either side is text and none has a
    collation of its own yet (``'Banana' < 'b'`` in SQLite, not under en_US)."""
    texts = [o for o in (side, *others) if kind(o.pg_type) == "text"]
    if not texts or any("COLLATE" in o.sql for o in (side, *others)):
        return side
    return Out(f'{side.at(P_CAST)} COLLATE "C"', P_CAST, side.pg_type)


def ascii_lowered(side: Out, node: Node | None = None) -> Out:
    """``side`` with its ASCII letters (only) in lower case, as SQLite's LIKE compares
    them; a string literal is lowered here."""
    if isinstance(node, Lit) and node.kind == "string":
        lowered = "".join(c.lower() if c in _UPPER else c for c in node.value)
        return Out(quote_literal(lowered), P_ATOM, side.pg_type)
    return Out(f"translate({side.sql}, '{_UPPER}', '{_UPPER.lower()}')", P_ATOM, side.pg_type)


# the prefix of a text SQLite reads as a number (the rest is ignored). One group around
# all of it: PostgreSQL's substring() returns the first group's match when there is one
NUMBER_PREFIX = r"^\s*([-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?)"
_CAST_PREFIXES = {
    "bigint": r"^\s*([-+]?[0-9]+)",
    "double precision": NUMBER_PREFIX,
    "numeric": NUMBER_PREFIX,
}


def text_cast(operand: Out, pg_type: str) -> Out:
    """SQLite's CAST of text to a number: its leading number, 0 if none (``'12abc'`` is
    12), where PostgreSQL's stops the query (or refuses the row a CHECK tests)."""
    pattern = quote_literal(_CAST_PREFIXES[base_type(pg_type)])
    number = f"coalesce(CAST(substring({operand.sql} FROM {pattern}) AS {pg_type}), 0)"
    return Out(f"CASE WHEN {operand.sql} IS NULL THEN NULL ELSE {number} END", P_ATOM, pg_type)


def real_literal(node: Node, side: Out) -> Out:
    """A number literal with a point or an exponent in arithmetic: SQLite's REAL, so
    ``score * 1.0 / 4`` divides as REAL (2.5), where PostgreSQL's numeric literal made
    the product a whole numeric that divided as an integer (2)."""
    if isinstance(node, Lit) and node.kind == "number" and side.pg_type == "numeric":
        return Out(f"CAST({side.sql} AS double precision)", P_ATOM, "double precision")
    return side


def ascii_cased(side: Out, *, lower: bool) -> Out:
    """SQLite's ``lower()``/``upper()`` (built without ICU): ASCII letters only, where
    PostgreSQL's follow the collation (``lower('Émile')`` is ``émile`` there)."""
    source, target = (_UPPER, _UPPER.lower()) if lower else (_UPPER.lower(), _UPPER)
    return Out(f"translate({side.sql}, '{source}', '{target}')", P_ATOM, "text")


def substr_sql(text: str, start: str, more: list[Out]) -> str:
    """SQLite's ``substr``: a negative start counts from the end (``substr(x, -3)``, the
    last three characters), where PostgreSQL's would start before the first one."""
    rest = "".join(f", {_as_int(m.sql)}" for m in more)
    if start.isdigit():
        return f"substr({text}, {start}{rest})"
    if start.startswith("-") and start[1:].isdigit():  # a constant from the end
        return f"substr({text}, length({text}) - {start[1:]} + 1{rest})"
    start = _as_int(start)  # substr takes integers; a bigint column's arithmetic is not one
    counted = f"substr({text}, length({text}) + {start} + 1{rest})"
    return f"CASE WHEN {start} < 0 THEN {counted} ELSE substr({text}, {start}{rest}) END"


def _as_int(sql: str) -> str:
    return sql if sql.isdigit() else f"({sql})::integer"


def _nonzero_number(node: Node) -> bool:
    """A number literal other than zero: no NULLIF needed to divide by it."""
    if not (isinstance(node, Lit) and node.kind == "number"):
        return False
    try:
        return float(node.value) != 0
    except ValueError:
        return False


def _whole_numbers(node: Node, out: Out) -> bool:
    """Whether SQLite may hold ``node`` as an integer: an integer type, or a NUMERIC
    column (whose whole values SQLite stores as integers, so ``7 / 2`` is 3); not a
    REAL, nor a literal written with a point or an exponent."""
    if isinstance(node, Lit):
        return node.kind == "number" and node.value.lstrip("-").isdigit()
    return out.pg_type in INTEGERS or _base(out) == "numeric"


def _base(out: Out) -> str:
    return base_type(out.pg_type) if out.pg_type else ""
