"""PostgreSQL DDL for a :class:`~asyncmig.plan.model.Plan`, one function per migration phase.

The statements are split by phase (bare tables before the data; indexes, keys and
CHECKs after it; foreign keys last) because building indexes and validating
constraints once over loaded data is far cheaper than maintaining them row by row.
Every name goes through :mod:`asyncmig.quoting`; nothing here quotes by itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncmig.ddl.constraints import constraint_sql, foreign_key_sql
    from asyncmig.ddl.extras import drop_extras_sql, function_sql, statistics_sql, trigger_sql
    from asyncmig.ddl.indexes import index_sql
    from asyncmig.ddl.script import render_script
    from asyncmig.ddl.sequences import sequence_reset_sql
    from asyncmig.ddl.tables import (
        analyze_sql,
        create_schema_sql,
        create_table_sql,
        drop_tables_sql,
    )

# each name's module, imported when the name is first used (PEP 562): a sync, which
# needs only sequence_reset_sql, does not load the script renderer and the view
# translator behind it (about 80 ms of a command's start)
HOMES = {
    "analyze_sql": "tables",
    "constraint_sql": "constraints",
    "create_schema_sql": "tables",
    "create_table_sql": "tables",
    "drop_extras_sql": "extras",
    "drop_tables_sql": "tables",
    "foreign_key_sql": "constraints",
    "function_sql": "extras",
    "index_sql": "indexes",
    "render_script": "script",
    "sequence_reset_sql": "sequences",
    "statistics_sql": "extras",
    "trigger_sql": "extras",
}


def __getattr__(name: str) -> object:
    home = HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


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
