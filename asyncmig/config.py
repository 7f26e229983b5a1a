"""The optional TOML file that overrides the plan.

    [tables."order items".columns.price]
    type = "numeric(10,2)"

    [tables.audit_log]
    exclude = true

Unknown keys are refused (a typo must not be silently ignored).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncmig.errors import UsageError

TABLE_KEYS = {"exclude", "columns"}
COLUMN_KEYS = {"type"}


@dataclass(frozen=True)
class Overrides:
    column_types: Mapping[tuple[str, str], str] = field(default_factory=dict)
    excluded: frozenset[str] = frozenset()


def load_overrides(path: Path | None) -> Overrides:
    if path is None:
        return Overrides()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"cannot read config {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"cannot read config {path}: {exc}") from None
    return parse_overrides(data, str(path))


def parse_overrides(data: Mapping[str, Any], origin: str) -> Overrides:
    unknown = set(data) - {"tables"}
    if unknown:
        raise UsageError(f"config {origin}: unknown section(s) {sorted(unknown)}")
    types: dict[tuple[str, str], str] = {}
    excluded: set[str] = set()
    for table, settings in data.get("tables", {}).items():
        _check_keys(settings, TABLE_KEYS, f"config {origin}: table {table!r}")
        if settings.get("exclude"):
            excluded.add(table)
        for column, col_settings in settings.get("columns", {}).items():
            _check_keys(col_settings, COLUMN_KEYS, f"config {origin}: column {table}.{column}")
            if "type" in col_settings:
                types[(table, column)] = str(col_settings["type"])
    return Overrides(types, frozenset(excluded))


def _check_keys(settings: Any, allowed: set[str], where: str) -> None:
    if not isinstance(settings, dict):
        raise UsageError(f"{where}: expected a table of settings")
    unknown = set(settings) - allowed
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(allowed)}")
