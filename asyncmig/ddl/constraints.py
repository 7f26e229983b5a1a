"""Keys and constraints over loaded data (phases 3 and 4).

PRIMARY KEY and UNIQUE are attached to the indexes already built. CHECKs and
foreign keys are added ``NOT VALID`` (instant) and validated in a separate
statement, so a violation by existing rows is reported on its own and the caller
can drop just that constraint (see ``finish.indexes.add_constraints``), and validation
takes only a SHARE UPDATE EXCLUSIVE lock.
"""

from __future__ import annotations

from asyncmig.ddl.indexes import is_column
from asyncmig.plan.model import ForeignKeyPlan, IndexPlan, Plan, TablePlan
from asyncmig.quoting import qualified, quote_ident

_ACTIONS = {"NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"}


def attachable(index: IndexPlan) -> bool:
    """PostgreSQL attaches only plain unique indexes: columns, default order, no WHERE."""
    return (
        index.unique
        and index.where is None
        and all(
            is_column(k.expression) and not k.descending and not k.collation for k in index.keys
        )
    )


def validate_sql(table_sql: str, name: str) -> str:
    """Kept in this exact shape: the caller reads the quoted name after VALIDATE CONSTRAINT."""
    return f"ALTER TABLE {table_sql} VALIDATE CONSTRAINT {quote_ident(name)}"


def constraint_sql(plan: Plan, table: TablePlan) -> list[str]:
    """PRIMARY KEY / UNIQUE from the built indexes, then each CHECK added and validated."""
    target = qualified(plan.schema, table.name)
    statements = []
    if table.primary_key and table.primary_key_name:
        name = quote_ident(table.primary_key_name)
        statements.append(
            f"ALTER TABLE {target} ADD CONSTRAINT {name} PRIMARY KEY USING INDEX {name}"
        )
    for index in table.indexes:
        if index.constraint and attachable(index):
            name = quote_ident(index.name)
            statements.append(
                f"ALTER TABLE {target} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}"
            )
    for check in table.checks:
        if check.expression.strip().upper() == "TRUE":
            continue  # e.g. json_valid() on a jsonb column: the type already guarantees it
        statements.append(
            f"ALTER TABLE {target} ADD CONSTRAINT {quote_ident(check.name)} "
            f"CHECK ({check.expression}) NOT VALID"
        )
        statements.append(validate_sql(target, check.name))
    return statements


def _action(kind: str, action: str) -> str:
    normalised = " ".join(action.upper().split())
    if normalised not in _ACTIONS:
        raise ValueError(f"unknown foreign key action {action!r}")
    return "" if normalised == "NO ACTION" else f" ON {kind} {normalised}"


def add_foreign_key_sql(plan: Plan, table: TablePlan, fk: ForeignKeyPlan) -> str:
    columns = ", ".join(quote_ident(c) for c in fk.columns)
    sql = (
        f"ALTER TABLE {qualified(plan.schema, table.name)} "
        f"ADD CONSTRAINT {quote_ident(fk.name)} FOREIGN KEY ({columns}) "
        f"REFERENCES {qualified(plan.schema, fk.ref_table)}"
    )
    if fk.ref_columns:
        sql += f" ({', '.join(quote_ident(c) for c in fk.ref_columns)})"
    sql += _action("UPDATE", fk.on_update) + _action("DELETE", fk.on_delete)
    if fk.deferrable:
        sql += " DEFERRABLE INITIALLY DEFERRED"
    return sql + " NOT VALID"


def foreign_key_sql(plan: Plan) -> list[tuple[str, str]]:
    """(add NOT VALID, validate) per foreign key, tables in plan order."""
    return [
        (
            add_foreign_key_sql(plan, table, fk),
            validate_sql(qualified(plan.schema, table.name), fk.name),
        )
        for table in plan.tables
        for fk in table.foreign_keys
    ]
