"""Indexes, built once after a table's data is loaded (phase 3).

The primary key is built as a plain unique index first so it can be built in
parallel with the others; :mod:`asyncmig.ddl.constraints` then attaches it with
``PRIMARY KEY USING INDEX``, which takes no second scan.
"""

from __future__ import annotations

import re

from asyncmig.plan.collations import collation_sql
from asyncmig.plan.model import IndexKeyPlan, IndexPlan, Plan, TablePlan
from asyncmig.quoting import qualified, quote_ident

_QUOTED_NAME = re.compile(r'"(?:[^"]|"")+"')


def is_column(expression: str) -> bool:
    """Whether an index key is a bare quoted column name (not an expression)."""
    return _QUOTED_NAME.fullmatch(expression.strip()) is not None


def key_sql(key: IndexKeyPlan, schema: str = "public") -> str:
    """One index key; expressions need their own parentheses in CREATE INDEX.

    The parts follow PostgreSQL's grammar order: expression, COLLATE, operator class
    (e.g. ``gin_trgm_ops``, which makes a GIN index serve LIKE/similarity on text),
    then DESC.
    """
    expression = key.expression.strip()
    sql = expression if is_column(expression) else f"({expression})"
    if key.collation:
        sql += f" COLLATE {collation_sql(schema, key.collation)}"
    if key.opclass:
        sql += f" {quote_ident(key.opclass)}"
    if key.descending:
        sql += " DESC"
    return sql


def method_sql(index: IndexPlan) -> str:
    """`` USING <method>`` for a non-btree index; empty for btree, so existing DDL is unchanged.

    Access method names are catalog identifiers stored lower-case; the profile may say
    ``GIN``, so the name is lower-cased before quoting rather than quoted as written.
    """
    method = index.method.strip().lower()
    if not method:
        raise ValueError(f"index {index.name!r} has an empty access method")
    return "" if method == "btree" else f" USING {quote_ident(method)}"


def create_index_sql(plan: Plan, table: TablePlan, index: IndexPlan) -> str:
    unique = "UNIQUE " if index.unique else ""
    keys = ", ".join(key_sql(k, plan.schema) for k in index.keys)
    sql = (
        f"CREATE {unique}INDEX {quote_ident(index.name)} "
        f"ON {qualified(plan.schema, table.name)}{method_sql(index)} ({keys})"
    )
    if index.where:
        sql += f" WHERE {index.where}"
    return sql


def primary_key_index_sql(plan: Plan, table: TablePlan) -> str | None:
    if not table.primary_key or not table.primary_key_name:
        return None
    columns = ", ".join(quote_ident(c) for c in table.primary_key)
    return (
        f"CREATE UNIQUE INDEX {quote_ident(table.primary_key_name)} "
        f"ON {qualified(plan.schema, table.name)} ({columns})"
    )


def index_sql(plan: Plan, table: TablePlan) -> list[str]:
    """Every index of ``table``, primary key first; the statements are independent."""
    statements = [sql for sql in [primary_key_index_sql(plan, table)] if sql]
    statements += [create_index_sql(plan, table, index) for index in table.indexes]
    return statements
