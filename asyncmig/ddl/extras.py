"""A profile's extras: SQL functions, extended statistics and ``updated_at`` triggers.

None of these exist in a SQLite source; a profile (e.g. profiles/2truths1lie.toml) adds
them to the :class:`~asyncmig.plan.model.Plan`. They are created after the data is loaded:
a trigger firing on every copied row would only slow the copy (COPY fires BEFORE
triggers) and overwrite the source's ``updated_at`` values with the load time, and
statistics are only useful once ANALYZE can sample real rows.

Every statement here can be run again on a database that already has the objects
(``CREATE OR REPLACE``, ``IF NOT EXISTS``, ``DROP ... IF EXISTS`` first), so a
resumed or repeated run does not fail half-way as the app's own guide did. Extensions
are not created here: :func:`asyncmig.ddl.tables.create_schema_sql` already emits
``CREATE EXTENSION IF NOT EXISTS`` for ``plan.extensions``, before the tables, because
column defaults and indexes may need them. Nothing here drops an extension either:
another schema or application may use it, and it may have existed before the run.
"""

from __future__ import annotations

import re

from asyncmig.plan.model import FunctionPlan, Plan, StatisticsPlan, TablePlan, TriggerPlan
from asyncmig.plan.names import MAX_IDENTIFIER_BYTES
from asyncmig.quoting import qualified, quote_ident

# PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes.
STATISTICS_KINDS = frozenset({"ndistinct", "dependencies", "mcv"})
TRIGGER_FUNCTION_SUFFIX = "_fn"

# "name" or "name(arg types)": the signature DROP FUNCTION needs for overloaded names.
_FUNCTION_NAME = re.compile(r"\s*(?P<name>[^()]+?)\s*(?P<args>\(.*\))?\s*", re.DOTALL)


def _truncate(name: str, max_bytes: int) -> str:
    """``name`` cut to ``max_bytes`` of UTF-8 without splitting a character."""
    encoded = name.encode()
    if len(encoded) <= max_bytes:
        return name
    return encoded[:max_bytes].decode(errors="ignore")


def trigger_function_name(trigger: TriggerPlan) -> str:
    """The per-trigger function's name: ``<trigger>_fn``.

    One function per trigger, not one shared function, because the column it sets
    differs between tables and a plpgsql function cannot name a column it receives as
    an argument without dynamic SQL. The trigger name is shortened when needed so the
    suffix survives PostgreSQL's 63-byte truncation: otherwise two long trigger names
    could silently map to the same function.
    """
    limit = MAX_IDENTIFIER_BYTES - len(TRIGGER_FUNCTION_SUFFIX)
    return _truncate(trigger.name, limit) + TRIGGER_FUNCTION_SUFFIX


def dollar_quote(body: str, tag: str = "asyncmig") -> str:
    """``body`` as a dollar-quoted string whose tag does not occur in it.

    The body contains a quoted column name, and a column may be called anything,
    including ``$$``; a tag absent from the body means no name can end the string early.
    """
    candidate = tag
    counter = 0
    # Searched in body + closing tag: a body ending in "$tag" would otherwise close early.
    while (body + f"${candidate}$").find(f"${candidate}$") != len(body):
        counter += 1
        candidate = f"{tag}{counter}"
    return f"${candidate}${body}${candidate}$"


def _function_signature(schema: str, function: FunctionPlan) -> str:
    """``"schema"."name"(args)`` from a FunctionPlan name such as ``cleanup()``.

    The name is quoted; the argument list, when given, is SQL type names the profile
    wrote and is passed through. Without one, DROP FUNCTION finds the function by name
    alone, which works as long as the name is not overloaded.
    """
    match = _FUNCTION_NAME.fullmatch(function.name)
    if match is None:
        raise ValueError(f"cannot read a function name from {function.name!r}")
    return qualified(schema, match["name"]) + (match["args"] or "")


def function_sql(plan: Plan) -> list[str]:
    """Each profile function's SQL, with ``{schema}`` replaced by the quoted target schema.

    ``str.replace`` rather than ``str.format``: function bodies are full of braces
    (JSON literals, plpgsql arrays) that format() would try to interpret.
    """
    schema = quote_ident(plan.schema)
    return [function.sql.replace("{schema}", schema) for function in plan.functions]


def _statistics_kinds(statistics: StatisticsPlan) -> str:
    if not statistics.kinds:
        return ""  # PostgreSQL builds every kind it supports
    unknown = [k for k in statistics.kinds if k not in STATISTICS_KINDS]
    if unknown:
        raise ValueError(
            f"statistics {statistics.name!r}: unknown kinds {unknown}; "
            f"expected some of {sorted(STATISTICS_KINDS)}"
        )
    return " (" + ", ".join(quote_ident(k) for k in statistics.kinds) + ")"


def statistics_sql(plan: Plan, table: TablePlan) -> list[str]:
    """``CREATE STATISTICS IF NOT EXISTS`` (PostgreSQL 10+) for each of ``table``'s statistics.

    Multi-column statistics tell the planner that columns are correlated (a creator's
    challenges are mostly in one status), which per-column statistics cannot express.
    They are named in the target schema explicitly: unqualified, they would land in
    whatever schema comes first on the search path.
    """
    statements = []
    for statistics in table.statistics:
        if len(statistics.columns) < 2:
            raise ValueError(
                f"statistics {statistics.name!r} on {table.name!r}: "
                "extended statistics need at least two columns"
            )
        columns = ", ".join(quote_ident(c) for c in statistics.columns)
        statements.append(
            f"CREATE STATISTICS IF NOT EXISTS {qualified(plan.schema, statistics.name)}"
            f"{_statistics_kinds(statistics)} ON {columns} "
            f"FROM {qualified(plan.schema, table.name)}"
        )
    return statements


def trigger_function_sql(plan: Plan, trigger: TriggerPlan) -> str:
    """The trigger's function: set the column to the transaction's time before each UPDATE."""
    body = f" BEGIN NEW.{quote_ident(trigger.column)} := now(); RETURN NEW; END "
    return (
        f"CREATE OR REPLACE FUNCTION "
        f"{qualified(plan.schema, trigger_function_name(trigger))}() "
        f"RETURNS trigger LANGUAGE plpgsql AS {dollar_quote(body)}"
    )


def drop_trigger_sql(plan: Plan, table: TablePlan, trigger: TriggerPlan) -> str:
    target = qualified(plan.schema, table.name)
    return f"DROP TRIGGER IF EXISTS {quote_ident(trigger.name)} ON {target}"


def trigger_sql(plan: Plan, table: TablePlan) -> list[str]:
    """Function, DROP TRIGGER IF EXISTS, CREATE TRIGGER: three statements per trigger.

    Dropping first makes the set re-runnable on PostgreSQL older than 14, which has no
    CREATE OR REPLACE TRIGGER. Run the three in one transaction if the table is live,
    so no UPDATE slips through between the drop and the create.
    """
    statements = []
    target = qualified(plan.schema, table.name)
    for trigger in table.triggers:
        function = qualified(plan.schema, trigger_function_name(trigger))
        statements += [
            trigger_function_sql(plan, trigger),
            drop_trigger_sql(plan, table, trigger),
            (
                f"CREATE TRIGGER {quote_ident(trigger.name)} BEFORE UPDATE ON {target} "
                f"FOR EACH ROW EXECUTE FUNCTION {function}()"
            ),
        ]
    return statements


def drop_extras_sql(plan: Plan) -> list[str]:
    """Statements removing everything this module creates, for a rollback script.

    Order: triggers before their functions (a function a trigger uses cannot be
    dropped without CASCADE), then statistics, then the profile's functions in
    reverse order of creation. Everything uses IF EXISTS, so the script also works
    after a run that stopped early. Extensions are left alone (see the module notes).
    """
    statements = [
        drop_trigger_sql(plan, table, trigger)
        for table in plan.tables
        for trigger in table.triggers
    ]
    statements += [
        f"DROP FUNCTION IF EXISTS {qualified(plan.schema, trigger_function_name(trigger))}()"
        for table in plan.tables
        for trigger in table.triggers
    ]
    statements += [
        f"DROP STATISTICS IF EXISTS {qualified(plan.schema, statistics.name)}"
        for table in plan.tables
        for statistics in table.statistics
    ]
    statements += [
        f"DROP FUNCTION IF EXISTS {_function_signature(plan.schema, function)}"
        for function in reversed(plan.functions)
    ]
    return statements
