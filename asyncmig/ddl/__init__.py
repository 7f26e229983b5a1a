"""PostgreSQL DDL for a :class:`~asyncmig.plan.model.Plan`, one function per migration phase.

The statements are split by phase (bare tables before the data; indexes, keys and
CHECKs after it; foreign keys last) because building indexes and validating
constraints once over loaded data is far cheaper than maintaining them row by row.
Every name goes through :mod:`asyncmig.quoting`; nothing here quotes by itself.
"""

from __future__ import annotations

from asyncmig.ddl.constraints import constraint_sql, foreign_key_sql
from asyncmig.ddl.extras import drop_extras_sql, function_sql, statistics_sql, trigger_sql
from asyncmig.ddl.indexes import index_sql
from asyncmig.ddl.script import render_script
from asyncmig.ddl.sequences import sequence_reset_sql
from asyncmig.ddl.tables import analyze_sql, create_schema_sql, create_table_sql, drop_tables_sql

__all__ = [
    "analyze_sql",
    "constraint_sql",
    "create_schema_sql",
    "create_table_sql",
    "drop_extras_sql",
    "drop_tables_sql",
    "foreign_key_sql",
    "function_sql",
    "index_sql",
    "render_script",
    "sequence_reset_sql",
    "statistics_sql",
    "trigger_sql",
]
