"""The whole DDL as one SQL script to review (``asyncmig schema --print``).

It lists the statements ``asyncmig run`` executes, in the same phase order, so a
reviewer sees exactly what will be created; the data copy and the sequence reset,
which only make sense during a run, appear as comments.
"""

from __future__ import annotations

from asyncmig.ddl.constraints import constraint_sql, foreign_key_sql
from asyncmig.ddl.extras import function_sql, statistics_sql, trigger_sql
from asyncmig.ddl.indexes import index_sql
from asyncmig.ddl.sequences import sequence_reset_sql
from asyncmig.ddl.tables import create_schema_sql, create_table_sql
from asyncmig.finish.views import create_view_sql
from asyncmig.plan.model import Plan
from asyncmig.quoting import sql_comment


def _block(title: str, statements: list[str]) -> str:
    body = "\n".join(f"{s};" for s in statements) if statements else "-- (none)"
    return f"{sql_comment(title)}\n{body}\n"


def render_script(plan: Plan) -> str:
    """All phases as one script, each statement terminated by ';'."""
    indexes = [s for t in plan.tables for s in index_sql(plan, t)]
    constraints = [s for t in plan.tables for s in constraint_sql(plan, t)]
    foreign_keys = [s for pair in foreign_key_sql(plan) for s in pair]
    sequences = [s for t in plan.tables for s in sequence_reset_sql(plan, t, t.next_identity)]
    extras = [s for t in plan.tables for s in statistics_sql(plan, t) + trigger_sql(plan, t)]
    views = [create_view_sql(plan, v) for v in plan.views]
    parts = [
        sql_comment(f"asyncmig: {plan.source_path} -> schema {plan.schema}"),
        "",
        _block(
            "phase 1: schema, bare tables and the profile's functions",
            create_schema_sql(plan)
            + [create_table_sql(plan, t) for t in plan.tables]
            + function_sql(plan),
        ),
        sql_comment("phase 2: data (COPY) is loaded here by asyncmig run / data") + "\n",
        _block("phase 3: indexes", indexes),
        _block("phase 4: primary keys, unique and check constraints", constraints),
        _block(
            "phase 5: statistics and triggers (after the data: triggers must not fire "
            "during the load)",
            extras,
        ),
        _block("phase 6: foreign keys", foreign_keys),
        _block(
            "phase 7: views (translated from SQLite, in dependency order; one PostgreSQL refuses is "
            "reported by a run and left out)",
            views,
        ),
        sql_comment("phase 8: after loading, identity sequences are moved past the loaded ids:"),
    ]
    parts += [sql_comment(f"{s};") for s in sequences] or [sql_comment("(no identity columns)")]
    if plan.skipped:
        parts += ["", sql_comment("not migrated:")]
        parts += [
            sql_comment(
                f"  {s.kind} {s.table or ''}{'.' if s.table and s.name else ''}"
                f"{s.name or ''}: {' '.join(s.reason.split())}"
            )
            for s in plan.skipped
        ]
    return "\n".join(parts) + "\n"
