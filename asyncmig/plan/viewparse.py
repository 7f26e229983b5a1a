"""Parse a SQLite view's SELECT statement into a tree that :mod:`asyncmig.plan.viewsql` prints.

The expression grammar is :class:`asyncmig.plan.sqlexpr.Parser`'s, with what a query adds:
qualified column references resolved later against the FROM clause (``Ref``), ``*``
and ``t.*``, subqueries, EXISTS, ``IN (SELECT ...)``, aggregates with DISTINCT or
``*``, and the statement around them (compound SELECTs, joins, GROUP BY, ORDER BY,
LIMIT). SQLite's date functions over constant text (``DATETIME('1997-01-01')``) are
evaluated here, so the printer can type them like any literal. Anything else is
refused with a reason (:class:`Untranslatable`) and the view is tried as written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from asyncmig.plan import sqldates
from asyncmig.plan.sqlexpr import Col, Func, In, Lit, Node, Parser, Token, Untranslatable

# words that end an expression or a FROM item, so they are never taken as an alias
_RESERVED = {
    "FROM",
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "UNION",
    "INTERSECT",
    "EXCEPT",
    "ON",
    "USING",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "CROSS",
    "NATURAL",
    "OUTER",
    "AS",
    "WINDOW",
    "ASC",
    "DESC",
    "NULLS",
    "AND",
    "OR",
    "NOT",
    "SELECT",
    "BY",
    "INDEXED",
}
_JOIN_WORDS = ("JOIN", "INNER", "LEFT", "RIGHT", "FULL", "CROSS", "NATURAL")
T = TypeVar("T")
AGGREGATES = {"count", "sum", "avg", "min", "max", "total", "group_concat"}
WINDOW_FUNCTIONS = {
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
}


@dataclass(frozen=True)
class Ref(Col):
    """A column reference, typed later from the FROM clause (``pg_type`` is empty here)."""

    qualifier: str | None = None


@dataclass(frozen=True)
class Star(Col):
    """``*`` or ``qualifier.*`` in a result column list."""

    qualifier: str | None = None


@dataclass(frozen=True)
class Aggregate(Func):
    distinct: bool = False
    star: bool = False  # count(*)


@dataclass(frozen=True)
class Subquery(Func):
    """``(SELECT ...)`` as a value, or ``EXISTS (SELECT ...)`` when name is 'exists'."""

    query: Select | None = None
    negated: bool = False


@dataclass(frozen=True)
class InSelect(In):
    query: Select | None = None


@dataclass(frozen=True)
class Window(Func):
    """``call OVER (PARTITION BY ... ORDER BY ...)`` (no frame clause)."""

    call: Aggregate | None = None
    partition: tuple[Node, ...] = ()
    order: tuple[OrderTerm, ...] = ()


@dataclass(frozen=True)
class Item:
    expr: Node
    alias: str | None


@dataclass(frozen=True)
class Source:
    """A FROM item: a table or view by name, or a subquery; with its join to the left."""

    join: str  # "" for the first, "," or e.g. "LEFT JOIN"
    name: str | None
    query: Select | None
    alias: str | None
    on: Node | None = None
    using: tuple[str, ...] = ()


@dataclass(frozen=True)
class Core:
    distinct: bool
    items: tuple[Item, ...]
    sources: tuple[Source, ...]
    where: Node | None
    group_by: tuple[Node, ...]
    having: Node | None


@dataclass(frozen=True)
class OrderTerm:
    expr: Node
    descending: bool
    nulls: str | None  # FIRST / LAST as written, None when not


@dataclass(frozen=True)
class Select:
    cores: tuple[tuple[str, Core], ...]  # (compound operator, "" for the first; core)
    order_by: tuple[OrderTerm, ...]
    limit: Node | None
    offset: Node | None
    ctes: tuple[Cte, ...] = ()


@dataclass(frozen=True)
class Cte:
    """``name [(columns)] AS (query)`` of a WITH clause."""

    name: str
    columns: tuple[str, ...]
    query: Select


class QueryParser(Parser):
    """The statement grammar on top of the expression parser."""

    def __init__(self, sql: str) -> None:
        super().__init__(sql, {})

    def parse_query(self) -> Select:
        query = self.select()
        if self.at(";"):
            self.next()
        if self.peek().kind != "end":
            raise Untranslatable(f"cannot parse the view near {self.peek().value!r}")
        return query

    def select(self) -> Select:
        ctes = self.with_clause() if self.at("WITH") else ()
        if self.at("VALUES"):
            raise Untranslatable("VALUES queries are not translated")
        cores = [("", self.core())]
        while self.at("UNION", "INTERSECT", "EXCEPT"):
            op = self.next().value.upper()
            if op == "UNION" and self.at("ALL"):
                self.next()
                op = "UNION ALL"
            cores.append((op, self.core()))
        order = self.order_by() if self.at("ORDER") else ()
        limit, offset = self.limit()
        return Select(tuple(cores), order, limit, offset, ctes)

    def with_clause(self) -> tuple[Cte, ...]:
        self.expect("WITH")
        if self.at("RECURSIVE"):
            raise Untranslatable("recursive WITH queries are not translated")
        return tuple(self.listed(self.cte))

    def cte(self) -> Cte:
        name = self.next()
        if name.kind not in ("word", "ident", "dqident"):
            raise Untranslatable("cannot parse the view's WITH clause")
        columns: tuple[str, ...] = ()
        if self.at("("):
            self.next()
            columns = tuple(self.listed(lambda: self.next().value))
            self.expect(")")
        self.expect("AS")
        if self.at("NOT", "MATERIALIZED"):
            raise Untranslatable("MATERIALIZED hints are not translated")
        return Cte(name.value, columns, self.subquery())

    def core(self) -> Core:
        self.expect("SELECT")
        distinct = self.at("DISTINCT")
        if self.at("DISTINCT", "ALL"):
            self.next()
        items = self.listed(self.item)
        sources = self.from_clause() if self.at("FROM") else ()
        where = self.clause("WHERE")
        group_by: tuple[Node, ...] = ()
        if self.at("GROUP"):
            self.next()
            self.expect("BY")
            group_by = tuple(self.listed(lambda: self.expr(0)))
        having = self.clause("HAVING")
        if self.at("WINDOW"):
            raise Untranslatable("WINDOW clauses are not translated")
        return Core(distinct, tuple(items), sources, where, group_by, having)

    def listed(self, parse: Callable[[], T]) -> list[T]:
        found = [parse()]
        while self.at(","):
            self.next()
            found.append(parse())
        return found

    def clause(self, word: str) -> Node | None:
        if not self.at(word):
            return None
        self.next()
        return self.expr(0)

    def item(self) -> Item:
        if self.at("*"):
            self.next()
            return Item(Star("*", ""), None)
        expr = self.expr(0)
        return Item(expr, self.alias())

    def alias(self) -> str | None:
        if self.at("AS"):
            self.next()
            return self.next().value
        token = self.peek()
        if token.kind in ("ident", "dqident", "string") or (
            token.kind == "word" and token.value.upper() not in _RESERVED
        ):
            self.next()
            return token.value
        return None

    def from_clause(self) -> tuple[Source, ...]:
        self.expect("FROM")
        sources = [self.source("")]
        while self.at(",", *_JOIN_WORDS):
            if self.at(","):
                self.next()
                join = ","
            else:
                words = []
                while not self.at("JOIN"):
                    if not self.at(*_JOIN_WORDS, "OUTER"):
                        raise Untranslatable("cannot parse the view's joins")
                    words.append(self.next().value.upper())
                self.next()
                join = " ".join([*words, "JOIN"])
            sources.append(self.source(join))
        return tuple(sources)

    def source(self, join: str) -> Source:
        query = None
        name = None
        if self.at("("):
            if not self.at_subquery():
                raise Untranslatable("parenthesised joins are not translated")
            query = self.subquery()
        else:
            name = self.table_name()
        alias = self.alias()
        if self.at("INDEXED", "NOT"):
            raise Untranslatable("INDEXED BY has no PostgreSQL equivalent")
        on = self.clause("ON")
        using: tuple[str, ...] = ()
        if on is None and self.at("USING"):
            self.next()
            self.expect("(")
            using = tuple(self.listed(lambda: self.next().value))
            self.expect(")")
        return Source(join, name, query, alias, on, using)

    def table_name(self) -> str:
        token = self.next()
        if token.kind not in ("word", "ident", "dqident"):
            raise Untranslatable(f"cannot parse the view near {token.value!r}")
        while self.at("."):  # schema.table: SQLite's main/temp schemas are left out
            self.next()
            token = self.next()
        if self.at("("):
            raise Untranslatable("table-valued functions are not translated")
        return token.value

    def order_by(self) -> tuple[OrderTerm, ...]:
        self.expect("ORDER")
        self.expect("BY")
        return tuple(self.listed(self.order_term))

    def order_term(self) -> OrderTerm:
        expr = self.expr(0)
        descending = self.at("DESC")
        if self.at("ASC", "DESC"):
            self.next()
        nulls = None
        if self.at("NULLS"):
            self.next()
            if not self.at("FIRST", "LAST"):
                raise Untranslatable("NULLS must be followed by FIRST or LAST")
            nulls = self.next().value.upper()
        return OrderTerm(expr, descending, nulls)

    def limit(self) -> tuple[Node | None, Node | None]:
        if not self.at("LIMIT"):
            return None, None
        self.next()
        first = self.expr(0)
        if self.at("OFFSET"):
            self.next()
            return first, self.expr(0)
        if self.at(","):  # SQLite's LIMIT offset, count
            self.next()
            return self.expr(0), first
        return first, None

    def at_subquery(self) -> bool:
        """At ``(SELECT``, ``(WITH`` or ``(VALUES``: a query in parentheses."""
        after = self.peek(1)
        return (
            self.at("(")
            and after.kind == "word"
            and after.value.upper() in ("SELECT", "WITH", "VALUES")
        )

    def subquery(self) -> Select:
        """A query in parentheses."""
        self.expect("(")
        query = self.select()
        self.expect(")")
        return query

    # expression grammar additions

    def prefix(self) -> Node:
        if self.at_subquery():
            return Subquery("select", (), self.subquery())
        return super().prefix()

    def word(self, token: Token) -> Node:
        upper = token.value.upper()
        if upper == "EXISTS" and self.at("("):
            return Subquery("exists", (), self.subquery())
        if upper in ("CAST", "CASE") or (
            upper in ("NULL", "TRUE", "FALSE", "CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME")
            and not self.at("(", ".")
        ):
            return super().word(token)
        if self.at("("):
            return self.call(token.value.lower())
        if upper in ("SELECT", "RAISE"):
            raise Untranslatable(f"{upper} is not translated here")
        return self.name(token)

    def name(self, token: Token) -> Node:
        parts = [token.value]
        while self.at("."):
            self.next()
            if self.at("*"):
                self.next()
                return Star("*", "", parts[-1])
            part = self.next()
            if part.kind not in ("word", "ident", "dqident"):
                raise Untranslatable("cannot parse a qualified name in the view")
            parts.append(part.value)
        return Ref(parts[-1], "", parts[-2] if len(parts) > 1 else None)

    def call(self, name: str) -> Node:
        if name in AGGREGATES or name in WINDOW_FUNCTIONS:
            call = self.aggregate(name)
            if self.at("OVER"):
                return self.window(call)
            if self.at("FILTER") or name in WINDOW_FUNCTIONS:
                raise Untranslatable(f"{name}() without OVER, or with FILTER, is not translated")
            return call
        node = super().call(name)
        assert isinstance(node, Func)
        folded = sqldates.constant(node.name, node.args)
        if folded is None:
            return node
        if isinstance(folded, str):
            return Lit("string", folded)
        return Lit("number", repr(folded))

    def aggregate(self, name: str) -> Aggregate:
        self.expect("(")
        if self.at("*"):
            self.next()
            self.expect(")")
            return Aggregate(name, (), star=True)
        distinct = self.at("DISTINCT")
        if distinct:
            self.next()
        args = self.listed(lambda: self.expr(0)) if not self.at(")") else []
        self.expect(")")
        return Aggregate(name, tuple(args), distinct=distinct)

    def window(self, call: Aggregate) -> Window:
        self.expect("OVER")
        if not self.at("("):
            raise Untranslatable("named windows are not translated")
        self.next()
        partition: tuple[Node, ...] = ()
        if self.at("PARTITION"):
            self.next()
            self.expect("BY")
            partition = tuple(self.listed(lambda: self.expr(0)))
        order = self.order_by() if self.at("ORDER") else ()
        if not self.at(")"):
            raise Untranslatable("window frames are not translated")
        self.next()
        return Window(call.name, (), call, partition, order)

    def in_list(self, left: Node, negated: bool) -> Node:
        if self.at_subquery():
            return InSelect(left, (), negated, self.subquery())
        return super().in_list(left, negated)
