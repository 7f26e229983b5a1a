"""Load order: parents before children, the longest chain of work first.

Foreign keys are created after the data, so the order is not needed for
correctness; it keeps a partially loaded target understandable and mirrors what
users expect. Among the tables whose parents are placed, the next one is the head
of the heaviest remaining chain (its rows plus its heaviest child chain's), so a
large child of a small parent is not left to run alone at the end (list scheduling
by critical path). Cycles (and self-references) are broken and reported.
"""

from __future__ import annotations

from collections.abc import Sequence

from asyncmig.plan.model import TablePlan


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
    weights = chain_weights(tables, parents)
    while remaining:
        ready = [n for n in remaining if parents[n] <= done]
        if not ready:
            # a cycle: take the largest remaining table and note its unmet references
            victim = max(remaining, key=lambda n: (by_name[n].row_count, n))
            cycles.extend(
                fk.name for fk in by_name[victim].foreign_keys if fk.ref_table in remaining
            )
            ready = [victim]
        name = min(ready, key=lambda n: (-weights[n], -by_name[n].row_count, n))
        ordered.append(by_name[name])
        done.add(name)
        remaining.discard(name)
    return ordered, cycles


def chain_weights(tables: Sequence[TablePlan], parents: dict[str, set[str]]) -> dict[str, int]:
    """Rows of each table plus those of its heaviest chain of descendants."""
    children: dict[str, list[str]] = {t.name: [] for t in tables}
    for child, its_parents in parents.items():
        for parent in its_parents:
            children[parent].append(child)
    rows = {t.name: t.row_count for t in tables}
    weights: dict[str, int] = {}

    def weight(name: str, path: frozenset[str]) -> int:
        if name in weights:
            return weights[name]
        below = [weight(c, path | {name}) for c in children[name] if c not in path | {name}]
        result = rows[name] + max(below, default=0)
        weights[name] = result
        return result

    for name in rows:
        weight(name, frozenset())
    return weights
