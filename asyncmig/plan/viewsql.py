"""A SQLite view's query printed as PostgreSQL that returns the same rows.

The query is parsed (:mod:`asyncmig.plan.viewparse`) and printed again with every column
reference resolved against the FROM clause, so each expression knows its PostgreSQL
type, and SQLite's loose typing is made explicit where PostgreSQL would refuse or
answer differently:

* a literal compared with a column takes the column's type, as SQLite applies the
  column's affinity (``Discontinued = 0`` on a text column compares with ``'0'``);
* ``+ - * / %`` on text reads the text's leading number, as SQLite does (``'Nancy' +
  ' '`` is 0); ``||`` renders numbers, booleans and timestamps as SQLite's text;
* date functions become ``to_char`` and interval arithmetic (:mod:`asyncmig.plan.sqldates`);
* ORDER BY sorts text bytewise (``COLLATE "C"``, SQLite's BINARY) with NULLs first
  ascending, as SQLite does; ``group_concat`` is ``string_agg``, ``total`` a float sum.

Names are quoted with their target spelling. Anything not understood raises
:class:`Untranslatable`; the view is then tried as written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from asyncmig.plan import sqldates
from asyncmig.plan.model import base_type
from asyncmig.plan.sqlexpr import (
    INTEGERS,
    P_ADD,
    P_ATOM,
    P_CAST,
    P_CMP,
    P_MUL,
    P_OP,
    Binary,
    Cast,
    Collate,
    Func,
    In,
    Lit,
    Misleading,
    Node,
    Out,
    Printer,
    Untranslatable,
    kind,
    sqlite_cast_type,
    text_cast,
)
from asyncmig.plan.viewparse import (
    WINDOW_FUNCTIONS,
    Aggregate,
    Core,
    InSelect,
    OrderTerm,
    QueryParser,
    Ref,
    Select,
    Source,
    Star,
    Subquery,
    Window,
)
from asyncmig.quoting import quote_ident, quote_literal

Column = tuple[str, str | None]  # (name as PostgreSQL knows it, PostgreSQL type or None)


@dataclass(frozen=True)
class Relation:
    """A table or view the query can name: its target name and columns by SQLite name."""

    name: str
    columns: Mapping[str, Column]  # lower-case SQLite name -> column
    collated: frozenset[str] = frozenset()  # columns with their own collation (NOCASE)
    folded: frozenset[str] = frozenset()  # NOCASE columns left without it: use lower()

    def outputs(self) -> list[Column]:
        return list(self.columns.values())


class MissingRelation(Untranslatable):
    """The query names a relation not (yet) known: a view translated later, or a typo."""


@dataclass
class Scope:
    # (printed qualifier, the name SQLite knows it by in lower case, relation)
    sources: list[tuple[str, str, Relation]]
    aliases: dict[str, Node] = field(default_factory=dict)  # result aliases, lower case
    parent: Scope | None = None


_TEXT_FORMAT = {"date": "YYYY-MM-DD", "time": "HH24:MI:SS"}
_WINDOW_TYPES = {
    "row_number": "bigint",
    "rank": "bigint",
    "dense_rank": "bigint",
    "ntile": "integer",
    "percent_rank": "double precision",
    "cume_dist": "double precision",
}


def translate_query(sql: str, relations: Mapping[str, Relation]) -> tuple[str, list[Column]]:
    """(PostgreSQL query, its result columns) for a SQLite view's query."""
    try:
        query = QueryParser(sql).parse_query()
        return QueryPrinter(relations).select(query, None)
    except RecursionError as exc:
        raise Untranslatable("the view's query is nested too deeply") from exc


# SQLite functions PostgreSQL also has, doing something else: a view calling one is
# created as written and answers otherwise, or stops at its first query
MISLEADING_FUNCTIONS = {
    "format": "printf-style in SQLite (%d, %.2f), PostgreSQL's takes %s, %I, %L only",
    "random": "a 64-bit integer in SQLite, a float between 0 and 1 in PostgreSQL",
}
# SQLite's math functions give NULL outside their domain, where PostgreSQL's stop the
# query: the test an argument must pass (sqrt(0) is 0, ln(0) has no value)
MATH_DOMAINS = {"sqrt": ">=", "ln": ">", "log10": ">", "log": ">"}


def nocase(node: Node | None) -> bool:
    return isinstance(node, Collate) and node.collation == "NOCASE"


class QueryPrinter(Printer):
    def __init__(self, relations: Mapping[str, Relation]) -> None:
        super().__init__()
        self.relations = {name.lower(): r for name, r in relations.items()}
        self.scope: Scope | None = None
        self.collated: set[str] = set()  # printed references to collated columns
        self.folded: set[str] = set()  # ... and to NOCASE columns compared through lower()
        self.ctes: list[dict[str, Relation]] = []  # WITH names in scope, innermost last

    @contextmanager
    def within(self, scope: Scope | None) -> Iterator[None]:
        """Resolve names in ``scope`` (a query's FROM items, then its enclosing ones)."""
        saved, self.scope = self.scope, scope
        try:
            yield
        finally:
            self.scope = saved

    # statements

    def select(self, query: Select, parent: Scope | None) -> tuple[str, list[Column]]:
        self.ctes.append({})
        try:
            prefix = self.with_clause(query, parent)
            sql, columns = self.body(query, parent)
        finally:
            self.ctes.pop()
        return prefix + sql, columns

    def with_clause(self, query: Select, parent: Scope | None) -> str:
        """``WITH name (columns) AS (query), ...``; each name readable by what follows."""
        printed = []
        for cte in query.ctes:
            sql, columns = self.select(cte.query, parent)
            if cte.columns:
                if len(cte.columns) != len(columns):
                    raise Untranslatable(f"WITH {cte.name} names {len(cte.columns)} columns")
                columns = [(n, t) for n, (_, t) in zip(cte.columns, columns, strict=True)]
            names = ", ".join(quote_ident(n) for n, _ in columns)
            printed.append(f"{quote_ident(cte.name)} ({names}) AS ({sql})")
            self.ctes[-1][cte.name.lower()] = Relation(
                cte.name, {n.lower(): (n, t) for n, t in columns}
            )
        return f"WITH {', '.join(printed)} " if printed else ""

    def body(self, query: Select, parent: Scope | None) -> tuple[str, list[Column]]:
        compound = len(query.cores) > 1
        parts: list[str] = []
        columns: list[Column] = []
        for op, core in query.cores:
            order = () if compound else query.order_by
            sql, outputs = self.core(core, parent, order)
            parts.append(f"{op} {sql}" if op else sql)
            columns = columns or outputs
        if compound and query.order_by:  # sorted outside: COLLATE is refused inside a UNION
            parts = [
                f"SELECT * FROM ({' '.join(parts)}) AS {quote_ident('compound')}",
                self.compound_order(query.order_by, columns),
            ]
        with self.within(parent):
            if query.limit is not None:
                parts.append(f"LIMIT {self.out(query.limit).sql}")
            if query.offset is not None:
                parts.append(f"OFFSET {self.out(query.offset).sql}")
        return " ".join(parts), columns

    def core(
        self, core: Core, parent: Scope | None, order: tuple[OrderTerm, ...]
    ) -> tuple[str, list[Column]]:
        scope = Scope([], parent=parent)
        from_sql = self.sources(core.sources, scope)
        scope.aliases = {i.alias.lower(): i.expr for i in core.items if i.alias}
        with self.within(scope):
            items, outputs = self.items(core, scope)
            parts = ["SELECT DISTINCT" if core.distinct else "SELECT", ", ".join(items)]
            if from_sql:
                parts.append(f"FROM {from_sql}")
            if core.where is not None:
                parts.append(f"WHERE {self.condition(core.where).sql}")
            if core.group_by:
                parts.append(
                    "GROUP BY " + ", ".join(self.group_key(g, core) for g in core.group_by)
                )
            if core.having is not None:
                parts.append(f"HAVING {self.condition(core.having).sql}")
            if order:
                parts.append("ORDER BY " + ", ".join(self.order_term(t) for t in order))
        return " ".join(parts), outputs

    def sources(self, sources: tuple[Source, ...], scope: Scope) -> str:
        parts = []
        for source in sources:
            if source.query is not None:
                sql, columns = self.select(source.query, scope.parent)
                alias = source.alias or "subquery"
                relation = Relation(alias, {n.lower(): (n, t) for n, t in columns if n})
                text = f"({sql}) AS {quote_ident(alias)}"
            else:
                assert source.name is not None
                relation = self.relation(source.name)
                alias = source.alias or relation.name
                text = quote_ident(relation.name)
                if source.alias:
                    text += f" AS {quote_ident(source.alias)}"
            scope.sources.append(
                (quote_ident(alias), (source.alias or source.name or alias).lower(), relation)
            )
            if source.join:
                text = f"{source.join} {text}" if source.join != "," else f", {text}"
            if source.on is not None:
                with self.within(scope):
                    text += f" ON {self.condition(source.on).sql}"
            if source.using:
                text += (
                    " USING ("
                    + ", ".join(quote_ident(self.column_name(scope, u)) for u in source.using)
                    + ")"
                )
            parts.append(text)
        return " ".join(parts)

    def relation(self, name: str) -> Relation:
        for ctes in reversed(self.ctes):
            if name.lower() in ctes:
                return ctes[name.lower()]
        found = self.relations.get(name.lower())
        if found is None:
            raise MissingRelation(f"the view reads {name!r}, which is not migrated")
        return found

    def column_name(self, scope: Scope, name: str) -> str:
        for _, _, relation in scope.sources:
            if name.lower() in relation.columns:
                return relation.columns[name.lower()][0]
        return name

    def items(self, core: Core, scope: Scope) -> tuple[list[str], list[Column]]:
        texts: list[str] = []
        outputs: list[Column] = []
        for item in core.items:
            if isinstance(item.expr, Star):
                texts.append(self.star(item.expr, scope, outputs))
                continue
            # a collation changes how a value compares, not the value: a result column
            # `name COLLATE NOCASE` is the name as written ('Ann', not lower()'s 'ann')
            expr = (
                item.expr.operand
                if isinstance(item.expr, Collate) and item.expr.collation == "NOCASE"
                else item.expr
            )
            out = self.out(expr)
            name = item.alias or (self.ref_name(expr) if isinstance(expr, Ref) else None)
            texts.append(f"{out.sql} AS {quote_ident(item.alias)}" if item.alias else out.sql)
            outputs.append((name or "?column?", out.pg_type))
        return texts, outputs

    def group_key(self, key: Node, core: Core) -> str:
        """A GROUP BY key. Grouping under NOCASE makes one group of 'Ann' and 'ann', whose
        row shows the spelling SQLite happens to take: no PostgreSQL query gives that
        one, and as written PostgreSQL would take the target's ICU ``nocase``."""
        chosen = key
        if isinstance(key, Lit) and key.kind == "number" and key.value.isdigit():
            position = int(key.value)
            if 1 <= position <= len(core.items):
                chosen = core.items[position - 1].expr
        if nocase(chosen) or (isinstance(chosen, Ref) and nocase(self.alias_of(chosen))):
            raise Misleading("GROUP BY ... COLLATE NOCASE: each group shows SQLite's own pick")
        return self.out(key).sql

    def alias_of(self, ref: Ref) -> Node | None:
        """The result expression a bare name in GROUP BY may stand for, if any."""
        return self.scope.aliases.get(ref.name.lower()) if self.scope is not None else None

    def star(self, star: Star, scope: Scope, outputs: list[Column]) -> str:
        chosen = [
            (q, r)
            for q, _, r in scope.sources
            if star.qualifier is None or q == self.qualifier(star.qualifier, scope)
        ]
        if not chosen:
            raise Untranslatable(f"{star.qualifier}.* names no table of the view")
        for _, relation in chosen:
            outputs.extend(relation.outputs())
        return "*" if star.qualifier is None else f"{chosen[0][0]}.*"

    def ref_name(self, ref: Ref) -> str:
        found = self.lookup(ref)
        return found[1][0] if found else ref.name

    def compound_order(self, terms: tuple[OrderTerm, ...], columns: list[Column]) -> str:
        """ORDER BY of a compound SELECT: result columns by name (or position)."""
        names = {n.lower(): (n, t) for n, t in columns}
        printed = []
        for term in terms:
            expr = term.expr.operand if isinstance(term.expr, Collate) else term.expr
            if isinstance(expr, Ref) and expr.name.lower() in names:
                name, pg_type = names[expr.name.lower()]
                printed.append(self.sort_key(quote_ident(name), pg_type, term))
            elif isinstance(expr, Lit) and expr.value in {
                str(i) for i in range(1, len(columns) + 1)
            }:
                name, pg_type = columns[int(expr.value) - 1]
                printed.append(self.sort_key(quote_ident(name), pg_type, term))
            else:
                raise Untranslatable("ORDER BY of a compound SELECT must name a result column")
        return "ORDER BY " + ", ".join(printed)

    def order_term(self, term: OrderTerm) -> str:
        if isinstance(term.expr, Lit) and term.expr.kind == "number":
            return self.sort_key(term.expr.value, None, term)
        out = self.out(term.expr)
        return self.sort_key(out.at(P_CAST), out.pg_type, term)

    def sort_key(self, sql: str, pg_type: str | None, term: OrderTerm) -> str:
        """SQLite sorts text bytewise (unless the column has its own collation) and NULLs
        first (ascending): say so to PostgreSQL."""
        if sql in self.folded:
            sql = f'lower({sql} COLLATE "C")'
        elif self.binary_text(sql, pg_type):
            sql += ' COLLATE "C"'
        direction = " DESC" if term.descending else ""
        nulls = term.nulls or ("LAST" if term.descending else "FIRST")
        return f"{sql}{direction} NULLS {nulls}"

    def binary_text(self, sql: str, pg_type: str | None) -> bool:
        """Whether ``sql`` is text SQLite compares bytewise, so it needs COLLATE "C"."""
        return kind(pg_type) == "text" and "COLLATE" not in sql and sql not in self.collated

    # expressions

    def out(self, node: Node) -> Out:
        if isinstance(node, Ref):
            return self.ref(node)
        if isinstance(node, Subquery):
            return self.subquery(node)
        if isinstance(node, InSelect):
            operand = self.out(node.operand)
            assert node.query is not None
            sql, _ = self.select(node.query, self.scope)
            word = "NOT IN" if node.negated else "IN"
            return Out(f"{operand.at(P_OP)} {word} ({sql})", P_OP - 1, "boolean")
        if isinstance(node, Window):
            return self.window(node)
        if isinstance(node, Aggregate):
            return self.aggregate(node)
        if isinstance(node, Cast) and sqlite_cast_type(node.type_name) == "text":
            return self.cast_to_text(self.out(node.operand))
        return super().out(node)

    def cast_to_text(self, operand: Out) -> Out:
        """``CAST(x AS TEXT)``: the text SQLite gives, as in ``||`` (:meth:`as_text`): a
        DECIMAL(10,2) of 1 is ``'1'``, not numeric's ``'1.00'``, a whole REAL ``'2.0'``,
        a timestamp in SQLite's spelling."""
        if kind(operand.pg_type) is None:  # a type the translation does not know
            return Out(f"CAST({operand.sql} AS text)", P_ATOM, "text")
        return self.as_text(operand)

    @staticmethod
    def qualifier(written: str, scope: Scope | None) -> str | None:
        """The printed qualifier of the FROM item a query calls ``written``."""
        while scope is not None:
            for printed, known_as, _ in scope.sources:
                if written.lower() == known_as:
                    return printed
            scope = scope.parent
        return None

    def lookup(self, ref: Ref) -> tuple[str, Column, Relation] | None:
        """(printed qualifier, column, its relation) of a reference, in enclosing queries
        too."""
        scope = self.scope
        while scope is not None:
            for printed, known_as, relation in scope.sources:
                if ref.qualifier is not None and ref.qualifier.lower() != known_as:
                    continue
                column = relation.columns.get(ref.name.lower())
                if column is not None:
                    return printed, column, relation
            scope = scope.parent
        return None

    def ref(self, ref: Ref) -> Out:
        found = self.lookup(ref)
        if found is not None:
            printed, (name, pg_type), relation = found
            qualifier = f"{printed}." if ref.qualifier is not None else ""
            sql = f"{qualifier}{quote_ident(name)}"
            if name in relation.collated:
                self.collated.add(sql)
            if name in relation.folded:
                self.folded.add(sql)
            return Out(sql, P_ATOM, pg_type)
        alias = self.scope.aliases.get(ref.name.lower()) if self.scope else None
        if ref.qualifier is None and alias is not None:
            return self.out(alias)  # SQLite lets WHERE/GROUP BY name a result column
        raise Untranslatable(f"column {ref.name!r} is not found in the view's tables")

    def subquery(self, node: Subquery) -> Out:
        assert node.query is not None
        sql, columns = self.select(node.query, self.scope)
        if node.name == "exists":
            word = "NOT EXISTS" if node.negated else "EXISTS"
            return Out(f"{word} ({sql})", P_ATOM, "boolean")
        return Out(f"({sql})", P_ATOM, columns[0][1] if columns else None)

    def literal(self, lit: Lit) -> Out:
        if lit.kind == "current":  # SQLite's clock, as SQLite's text, evaluated per query
            pattern = {"CURRENT_DATE": "YYYY-MM-DD", "CURRENT_TIME": "HH24:MI:SS"}.get(
                lit.value, "YYYY-MM-DD HH24:MI:SS"
            )
            return Out(f"to_char({sqldates.NOW_SQL}, {quote_literal(pattern)})", P_ATOM, "text")
        return super().literal(lit)

    def own_collation(self, *sides: Out) -> bool:
        return any(o.sql in self.collated for o in sides)

    def pair(self, left: Node, right: Node) -> tuple[Out, Out]:
        """A comparison; a NOCASE column left without its collation compares lower()."""
        a, b = super().pair(left, right)
        if (a.sql in self.folded or b.sql in self.folded) and {
            kind(a.pg_type),
            kind(b.pg_type),
        } <= {None, "text"}:
            return self.lower(a), self.lower(b)
        return a, b

    def condition(self, node: Node) -> Out:
        """SQLite tests a number or text for non-zero where PostgreSQL wants a boolean."""
        out = self.out(node)
        family = kind(out.pg_type)
        if family == "num":
            return Out(f"{out.at(P_CMP + 1)} <> 0", P_CMP, "boolean")
        if family == "text":
            return Out(f"{self.number(node).sql} <> 0", P_CMP, "boolean")
        return super().condition(node)

    def in_list(self, node: In) -> Out:
        if not isinstance(node.operand, Collate) and self.out(node.operand).sql in self.folded:
            node = In(Collate(node.operand, "NOCASE"), node.items, node.negated)
        return super().in_list(node)

    def typed(self, a: Node, b: Node) -> tuple[Out, Out]:
        """As for CHECKs, but a timestamp compared with computed text compares as text."""
        try:
            return super().typed(a, b)
        except Untranslatable:
            left, right = self.out(a), self.out(b)
            kinds = (kind(left.pg_type), kind(right.pg_type))
            if kinds == ("time", "text"):
                return self.as_text(left), right
            if kinds == ("text", "time"):
                return left, self.as_text(right)
            raise

    def binary(self, node: Binary) -> Out:
        if node.op == "||":
            left, right = self.as_text(self.out(node.left)), self.as_text(self.out(node.right))
            return Out(f"{left.at(P_OP)} || {right.at(P_OP + 1)}", P_OP, "text")
        if node.op in ("+", "-", "*", "/", "%"):
            left, right = self.number(node.left), self.number(node.right)
            if "text" in (left.pg_type, right.pg_type):
                prec = P_ADD if node.op in "+-" else P_MUL
                return Out(f"{left.at(prec)} {node.op} {right.at(prec + 1)}", prec, "numeric")
        return super().binary(node)

    def number(self, node: Node) -> Out:
        """An arithmetic operand; text read as its leading number (0 if none), as SQLite."""
        out = self.out(node)
        is_text = kind(out.pg_type) == "text" or (isinstance(node, Lit) and node.kind == "string")
        if not is_text:
            return out
        return replace(text_cast(out, "numeric"), pg_type="text")  # "text": read as a number

    def as_text(self, out: Out) -> Out:
        """``out`` as the text SQLite would render for it."""
        family = kind(out.pg_type)
        if family in (None, "text"):
            return out
        if family == "bool":
            return Out(
                f"CASE WHEN {out.sql} THEN '1' WHEN NOT {out.sql} THEN '0' END", P_ATOM, "text"
            )
        if family == "time":
            base = base_type(out.pg_type)
            timestamp = sqldates.timestamp_sql(out.sql, out.pg_type, family)
            pattern = _TEXT_FORMAT.get(base, "YYYY-MM-DD HH24:MI:SS")
            return Out(f"to_char({timestamp}, {quote_literal(pattern)})", P_ATOM, "text")
        if family == "bytea":
            raise Untranslatable(f"{out.sql} (bytea) used as text")
        base = base_type(out.pg_type) if out.pg_type else ""
        if base == "numeric":  # SQLite keeps 10.50 as the REAL 10.5, 10.00 as the integer 10
            return Out(f"CAST(trim_scale({out.sql}) AS text)", P_ATOM, "text")
        if base in ("double precision", "real"):  # SQLite prints a whole REAL as 1.0
            whole = f"{out.sql} = trunc({out.sql}) AND abs({out.sql}) < 1e15"
            return Out(
                f"CASE WHEN {whole} THEN CAST(CAST({out.sql} AS numeric) AS text) || '.0' "
                f"ELSE CAST({out.sql} AS text) END",
                P_ATOM,
                "text",
            )
        return Out(f"CAST({out.sql} AS text)", P_ATOM, "text")

    def function(self, node: Func) -> Out:
        if node.name in MISLEADING_FUNCTIONS:
            raise Misleading(f"{node.name}(): {MISLEADING_FUNCTIONS[node.name]}")
        if node.name in MATH_DOMAINS and len(node.args) == 1:
            return self.math(node)
        if node.name in sqldates.FUNCTIONS:
            return self.date_function(node)
        if node.name == "round":
            if not 1 <= len(node.args) <= 2:
                raise Untranslatable(f"round() with {len(node.args)} arguments")
            args = [self.out(a) for a in node.args]
            digits = f", {args[1].sql}" if len(args) > 1 else ""
            return Out(
                f"CAST(round(CAST({args[0].sql} AS numeric){digits}) AS float8)",
                P_ATOM,
                "double precision",
            )
        return super().function(node)

    def math(self, node: Func) -> Out:
        """sqrt/ln/log of one number: NULL outside the function's domain, as in SQLite."""
        arg = self.number(node.args[0])
        if kind(arg.pg_type) not in (None, "num", "text"):
            raise Untranslatable(f"{node.name}() of {arg.sql} ({arg.pg_type})")
        operator = MATH_DOMAINS[node.name]
        value = f"CAST({arg.sql} AS double precision)"
        return Out(
            f"CASE WHEN {value} {operator} 0 THEN {node.name}({value}) END",
            P_ATOM,
            "double precision",
        )

    def text_args(self, args: list[Out]) -> str:
        """Text functions read numbers and timestamps as SQLite's text of them."""
        return ", ".join(self.as_text(a).sql for a in args)

    def date_function(self, node: Func) -> Out:
        args = list(node.args)
        fmt = None
        if node.name == "strftime":
            if not args or not isinstance(args[0], Lit) or args[0].kind != "string":
                raise Untranslatable("strftime() with a computed format")
            fmt, args = args[0].value, args[1:]
        value_node = args[0] if args else Lit("string", "now")
        if isinstance(value_node, Lit) and value_node.value.strip().lower() == "now":
            timestamp, value = sqldates.NOW_SQL, sqldates.NOW_SQL
        else:
            out = self.out(value_node)
            value = out.sql
            timestamp = sqldates.timestamp_sql(out.at(P_CAST), out.pg_type, kind(out.pg_type))
        for modifier in args[1:]:
            if not isinstance(modifier, Lit) or modifier.kind != "string":
                raise Untranslatable(f"{node.name}() with a computed modifier")
            timestamp = sqldates.modifier_sql(timestamp, modifier.value, value)
        sql, pg_type = sqldates.render_sql(node.name, timestamp, fmt)
        return Out(f"({sql})" if " || " in sql else sql, P_ATOM, pg_type)

    def window(self, node: Window) -> Out:
        call = node.call
        assert call is not None
        if call.name == "total" or (call.name in ("min", "max") and len(call.args) > 1):
            raise Untranslatable(f"{call.name}() OVER (...) is not translated")
        spec = []
        if node.partition:
            spec.append("PARTITION BY " + ", ".join(self.out(p).sql for p in node.partition))
        if node.order:
            spec.append("ORDER BY " + ", ".join(self.order_term(t) for t in node.order))
        over = f" OVER ({' '.join(spec)})"
        if call.name == "avg" and len(call.args) == 1 and not call.star:
            return self.average(self.out(call.args[0]), "DISTINCT " if call.distinct else "", over)
        if call.name in WINDOW_FUNCTIONS:
            args = [self.out(a) for a in call.args]
            pg_type = _WINDOW_TYPES.get(call.name, args[0].pg_type if args else None)
            inner = Out(f"{call.name}({', '.join(a.sql for a in args)})", P_ATOM, pg_type)
        else:
            inner = self.aggregate(call)
        return Out(f"{inner.sql}{over}", P_ATOM, inner.pg_type)

    def aggregate(self, node: Aggregate) -> Out:
        if node.star:
            if node.name != "count":
                raise Untranslatable(f"{node.name}(*) is not an aggregate")
            return Out("count(*)", P_ATOM, "bigint")
        if node.name in ("min", "max") and len(node.args) > 1 and not node.distinct:
            outs = self.unified(list(node.args))  # SQLite's scalar min/max: NULL if any is
            word = "least" if node.name == "min" else "greatest"
            nulls = " OR ".join(f"{o.at(P_CAST)} IS NULL" for o in outs)
            return Out(
                f"CASE WHEN {nulls} THEN NULL ELSE {word}({', '.join(o.sql for o in outs)}) END",
                P_ATOM,
                outs[0].pg_type,
            )
        if len(node.args) != 1 and not (node.name == "group_concat" and len(node.args) == 2):
            raise Untranslatable(f"{node.name}() with {len(node.args)} arguments")
        args = [self.out(a) for a in node.args]
        distinct = "DISTINCT " if node.distinct else ""
        first = args[0]
        if node.name == "group_concat":
            separator = args[1].sql if len(args) > 1 else "','"
            text = self.as_text(first).sql
            return Out(f"string_agg({distinct}{text}, {separator})", P_ATOM, "text")
        if node.name == "total":
            return Out(
                f"coalesce(sum({distinct}{first.sql}), 0)::float8", P_CAST, "double precision"
            )
        if node.name == "avg":
            return self.average(first, distinct)
        if node.name in ("min", "max") and self.binary_text(first.sql, first.pg_type):
            return Out(f'{node.name}({distinct}{first.sql} COLLATE "C")', P_ATOM, first.pg_type)
        pg_type = {"count": "bigint"}.get(
            node.name, "numeric" if node.name == "sum" else first.pg_type
        )
        sql = ", ".join(a.sql for a in args)
        return Out(f"{node.name}({distinct}{sql})", P_ATOM, pg_type)

    def average(self, value: Out, distinct: str, over: str = "") -> Out:
        """SQLite's ``avg()`` is always a REAL: of integers, their exact sum as a double
        divided by the count (PostgreSQL's ``avg`` of integers is a numeric, 2.5000...);
        of anything else, PostgreSQL's average as a double. ``over``: a window's
        ``OVER (...)``, after each aggregate."""
        of = f"({distinct}{value.sql}){over}"
        if value.pg_type in INTEGERS:
            return Out(f"((sum{of})::float8 / count{of})", P_ATOM, "double precision")
        if value.pg_type == "double precision":
            return Out(f"avg{of}", P_ATOM, "double precision")
        return Out(f"(avg{of})::float8", P_CAST, "double precision")
