"""Load order: parents before children, largest first among equals.

Foreign keys are created after the data, so the order is not needed for
correctness; it keeps a partially loaded target understandable and mirrors what
users expect. Cycles (and self-references) are broken and reported.
"""

from __future__ import annotations

from collections.abc import Sequence

from asyncmig.plan import TablePlan


def load_order(tables: Sequence[TablePlan]) -> tuple[list[TablePlan], list[str]]:
    """Tables sorted topologically by foreign key; the names of FKs inside cycles."""
    by_name = {t.name: t for t in tables}
    parents = {
        t.name: {fk.ref_table for fk in t.foreign_keys if fk.ref_table in by_name} - {t.name}
        for t in tables
    }
    ordered: list[TablePlan] = []
    done: set[str] = set()
    cycles: list[str] = []
    remaining = set(by_name)
    while remaining:
        ready = [n for n in remaining if parents[n] <= done]
        if not ready:
            # a cycle: take the largest remaining table and note its unmet references
            victim = max(remaining, key=lambda n: (by_name[n].row_count, n))
            cycles.extend(
                fk.name for fk in by_name[victim].foreign_keys if fk.ref_table in remaining
            )
            ready = [victim]
        for name in sorted(ready, key=lambda n: (-by_name[n].row_count, n)):
            ordered.append(by_name[name])
            done.add(name)
            remaining.discard(name)
    return ordered, cycles
