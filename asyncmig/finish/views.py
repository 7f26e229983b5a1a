"""Views: translated at plan time, created after the data in dependency order.

:func:`plan_views` translates each view's query (:mod:`asyncmig.plan.viewsql`), views
over views after the views they read, so each knows its columns' types. A query that
cannot be translated is kept as written, and :func:`requote` gives a second chance:

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

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from asyncmig.plan.model import Plan, Skipped, TablePlan, ViewPlan
from asyncmig.plan.sqlexpr import Misleading, Token, Untranslatable, tokenize
from asyncmig.plan.sqlscan import first_statement
from asyncmig.plan.viewsql import MissingRelation, Relation, translate_query
from asyncmig.quoting import qualified, quote_ident, quote_literal
from asyncmig.source.catalog import SourceView

_VIEW_BODY = re.compile(r"\bAS\s+((?:SELECT|WITH|VALUES)\b.*)$", re.IGNORECASE | re.DOTALL)


def plan_views(plan: Plan, sources: Sequence[SourceView]) -> Plan:
    """``plan`` with its views in dependency order, each translated when it can be."""
    bodies, skipped, warnings = _queries(sources)
    return replace(
        plan,
        views=_translated(plan, sources, bodies, frozenset()),
        skipped=plan.skipped + tuple(skipped),
        warnings=plan.warnings + tuple(warnings),
    )


def renamed_views(plan: Plan, sources: Sequence[SourceView]) -> Plan:
    """The views translated again when some were renamed (``asyncmig.plan.homes``): a view
    over a renamed view must name it by its PostgreSQL name."""
    if not any(r.kind == "view" for r in plan.renames):
        return plan
    bodies, _, _ = _queries(sources)
    return replace(plan, views=_translated(plan, sources, bodies, frozenset()))


def without_icu(plan: Plan, before: Plan) -> Plan:
    """The views translated again once NOCASE columns lost their collation (no ICU).

    ``before`` is the plan that still had it: those columns are compared and sorted
    through ``lower()`` in the views, as their indexes are.
    """
    collated = {(t.name, c.name) for t in before.tables for c in t.columns if c.collation}
    folded = frozenset(
        (t.name, c.name)
        for t in plan.tables
        for c in t.columns
        if (t.name, c.name) in collated and not c.collation
    )
    sqlite_names = {r.target: r.source for r in plan.renames if r.kind == "view"}
    sources = [
        SourceView(sqlite_names.get(v.name, v.name), v.source_sql, v.columns) for v in plan.views
    ]
    bodies, _, _ = _queries(sources)
    return replace(plan, views=_translated(plan, sources, bodies, folded))


def _translated(
    plan: Plan,
    sources: Sequence[SourceView],
    bodies: dict[str, str],
    folded: frozenset[tuple[str, str]],
) -> tuple[ViewPlan, ...]:
    """The views in dependency order: one over views waits until they are translated."""
    relations = {t.source_name.lower(): _table_relation(t, folded) for t in plan.tables}
    names = {r.source: r.target for r in plan.renames if r.kind == "view"}
    planned: list[ViewPlan] = []
    waiting = [v for v in sources if v.name in bodies]
    while waiting:  # a round without progress ends it
        done = [
            (v, p)
            for v in waiting
            if (p := _plan_view(v, bodies[v.name], relations, names, final=False))
        ]
        planned += [p for _, p in done]
        waiting = [v for v in waiting if v not in {d for d, _ in done}]
        if not done:
            for view in waiting:
                last = _plan_view(view, bodies[view.name], relations, names, final=True)
                assert last is not None  # a final attempt never waits
                planned.append(last)
            break
    return tuple(planned)


def _queries(sources: Sequence[SourceView]) -> tuple[dict[str, str], list[Skipped], list[str]]:
    """Each view's query from its CREATE VIEW text; the views without one; warnings."""
    bodies: dict[str, str] = {}
    skipped: list[Skipped] = []
    warnings: list[str] = []
    for view in sources:
        match = _VIEW_BODY.search(view.sql)
        if match is None:
            skipped.append(
                Skipped("view", None, view.name, view.sql, "cannot find the view's query")
            )
            continue
        query, rest = first_statement(match.group(1))
        if rest.strip():
            warnings.append(
                f"view {view.name}: its stored definition has text after the "
                "query, which SQLite ignores; only the query is used"
            )
        bodies[view.name] = query.strip()
    return bodies, skipped, warnings


def _plan_view(
    view: SourceView,
    body: str,
    relations: dict[str, Relation],
    names: Mapping[str, str],
    *,
    final: bool,
) -> ViewPlan | None:
    """The view translated (its relation added for views over it); None to wait.

    ``names``: PostgreSQL names of renamed views. ``final``: the relations it waits
    for will not come; keep the query as written.
    """
    target = names.get(view.name, view.name)
    try:
        sql, columns = translate_query(body, relations)
    except MissingRelation as exc:
        return ViewPlan(target, body, view.sql, view.columns, note=str(exc)) if final else None
    except Misleading as exc:
        return ViewPlan(target, body, view.sql, view.columns, note=str(exc), as_written=False)
    except Untranslatable as exc:
        return ViewPlan(target, body, view.sql, view.columns, note=str(exc) or "not translatable")
    labels = view.columns if len(view.columns) == len(columns) else tuple(n for n, _ in columns)
    relations[view.name.lower()] = Relation(
        target,
        {name.lower(): (name, pg_type) for name, (_, pg_type) in zip(labels, columns, strict=True)},
    )
    return ViewPlan(target, sql, view.sql, labels, translated=True)


def _table_relation(table: TablePlan, folded: frozenset[tuple[str, str]]) -> Relation:
    return Relation(
        table.name,
        {c.source_name.lower(): (c.name, c.target_type) for c in table.columns},
        frozenset(c.name for c in table.columns if c.collation),
        frozenset(c.name for c in table.columns if (table.name, c.name) in folded),
    )


def create_view_sql(plan: Plan, view: ViewPlan, query: str | None = None) -> str:
    """CREATE VIEW with SQLite's column names when the query was translated."""
    names = ""
    if view.translated and view.columns and query is None:
        names = " (" + ", ".join(quote_ident(c) for c in view.columns) + ")"
    return f"CREATE VIEW {qualified(plan.schema, view.name)}{names} AS {query or view.sql}"


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
            if (
                name.kind in ("word", "ident", "dqident")
                and name.value.lower() in flags
                and value.kind == "number"
                and value.value in ("0", "1")
            ):
                result[value_at] = Token("word", "true" if value.value == "1" else "false")
    return result
