"""The optional TOML file (a *profile*) that overrides and extends the plan.

A ``[job]`` table may also hold the run's options (the same names as the command-line
options, with underscores; read by :mod:`asyncmig.cli.resolve`), so one file describes a
whole scheduled job:

    [job]
    sqlite = "app.db"               # relative to this file
    pg_env = "REPORTING_URL"        # or pg_file = "/run/secrets/pg_url", or pg = "..."
    on_error = "reject"

    extensions = ["pg_trgm"]

    [tables."order items"]
    rename = "order_items"          # or: exclude = true

    [tables."order items".columns.price]
    rename = "unit_price"           # the column's PostgreSQL name
    type = "numeric(10,2)"          # the column's PostgreSQL type
    default = "0"                   # PostgreSQL default expression
    on_invalid_json = "default"     # jsonb: fail | default | null
    epoch = "s"                     # numbers into a timestamp: s | ms | us
    widen = true                    # a lossless value-driven type, not the declared one

    [[tables."order items".indexes]]
    name = "order_items_note_trgm"
    method = "gin"
    columns = [{ column = "note", opclass = "gin_trgm_ops" }]   # or "col", or {column, order}
    where = "note IS NOT NULL"
    unique = false

    [[tables."order items".statistics]]
    name = "order_items_stats"
    columns = ["price", "note"]

    [[tables."order items".checks]]
    name = "price_positive"
    expression = "price > 0"

    [tables."order items".triggers]
    updated_at = "order_items_touch"   # column -> trigger keeping it current on UPDATE

    [[functions]]
    name = "purge()"
    sql = "CREATE OR REPLACE FUNCTION {schema}.purge() ..."

Table and column names are the SQLite names. Unknown keys are refused: a typo must
not be silently ignored. SQL written here (defaults, predicates, CHECKs, functions)
is the profile author's and is applied as written, in the phase where it belongs.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncmig.cli.settings import OnError, Orphans
from asyncmig.errors import UsageError
from asyncmig.target import files

TOP_KEYS = {"tables", "extensions", "functions", "on_error", "orphans", "widen", "job"}
TABLE_KEYS = {
    "exclude",
    "rename",
    "columns",
    "indexes",
    "statistics",
    "checks",
    "triggers",
    "on_error",
    "orphans",
}
ORPHANS = tuple(p.value for p in Orphans)
COLUMN_KEYS = {"type", "default", "on_invalid_json", "epoch", "on_error", "rename", "widen"}
ON_ERROR = tuple(p.value for p in OnError)
INDEX_KEYS = {"name", "method", "columns", "where", "unique"}
INDEX_COLUMN_KEYS = {"column", "order", "opclass"}
JSON_POLICIES = {"fail", "default", "null"}
EPOCH_UNITS = {"s": "epoch_s", "ms": "epoch_ms", "us": "epoch_us"}
METHODS = {"btree", "gin", "gist", "hash", "brin", "spgist"}


@dataclass(frozen=True)
class ColumnSettings:
    type: str | None = None
    default: str | None = None
    on_invalid_json: str = "fail"
    epoch: str | None = None  # transform name: epoch_s / epoch_ms / epoch_us
    on_error: str | None = None  # None: the table's, else the run's policy
    rename: str | None = None  # the column's PostgreSQL name (asyncmig.plan.homes)
    widen: bool | None = None  # None: the run's --widen (asyncmig.plan.contract)


@dataclass(frozen=True)
class IndexColumn:
    column: str
    descending: bool = False
    opclass: str | None = None


@dataclass(frozen=True)
class ExtraIndex:
    name: str
    columns: tuple[IndexColumn, ...]
    method: str = "btree"
    where: str | None = None
    unique: bool = False


@dataclass(frozen=True)
class ExtraStatistics:
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class ExtraCheck:
    name: str
    expression: str


@dataclass(frozen=True)
class TableSettings:
    exclude: bool = False
    rename: str | None = None
    columns: Mapping[str, ColumnSettings] = field(default_factory=dict)
    indexes: tuple[ExtraIndex, ...] = ()
    statistics: tuple[ExtraStatistics, ...] = ()
    checks: tuple[ExtraCheck, ...] = ()
    triggers: Mapping[str, str] = field(default_factory=dict)  # column -> trigger name
    on_error: str | None = None
    orphans: str | None = None


@dataclass(frozen=True)
class ExtraFunction:
    name: str
    sql: str


@dataclass(frozen=True)
class Overrides:
    tables: Mapping[str, TableSettings] = field(default_factory=dict)
    extensions: tuple[str, ...] = ()
    functions: tuple[ExtraFunction, ...] = ()
    origin: str | None = None  # the file it came from
    on_error: str = OnError.REJECT  # the run's policy for values that do not fit
    orphans: str = Orphans.KEEP  # the run's policy for rows whose foreign key finds no parent
    widen: bool = False  # value-driven lossless types instead of the declared ones

    def widens(self, table: str, column: str) -> bool:
        """Whether ``column`` takes the lossless value-driven type (the column's
        ``widen``, else the run's ``--widen``) instead of its declared type."""
        setting = self.column(table, column).widen
        return self.widen if setting is None else setting

    def orphan_policy(self, table: str) -> str:
        return self.table(table).orphans or self.orphans

    def policy(self, table: str, column: str) -> str:
        """The policy for one column: the column's, else its table's, else the run's.

        ``on_invalid_json`` (the reference migrator's promise for JSON columns) counts as
        the column's policy when set to something other than fail.
        """
        settings = self.column(table, column)
        if settings.on_error:
            return settings.on_error
        if settings.on_invalid_json != "fail":
            return settings.on_invalid_json
        return self.table(table).on_error or self.on_error

    @property
    def excluded(self) -> frozenset[str]:
        return frozenset(name for name, t in self.tables.items() if t.exclude)

    def column(self, table: str, column: str) -> ColumnSettings:
        settings = self.tables.get(table)
        return settings.columns.get(column, ColumnSettings()) if settings else ColumnSettings()

    def table(self, table: str) -> TableSettings:
        return self.tables.get(table, TableSettings())


def load_overrides(path: Path | None) -> Overrides:
    if path is None:
        return Overrides()
    return parse_overrides(read_toml(path), str(path))


CONFIG_LIMIT = 16 * 2**20  # a profile of thousands of tables is a few megabytes


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed file, or a one-line UsageError (exit 2)."""
    try:
        return tomllib.loads(files.small_text(path, CONFIG_LIMIT))
    except FileNotFoundError:
        raise UsageError(f"cannot read config {path}: no such file") from None
    except (OSError, files.NotSmallText) as exc:
        raise UsageError(f"cannot read config {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"cannot read config {path}: {exc}") from None


def parse_overrides(data: Mapping[str, Any], origin: str) -> Overrides:
    _check_keys(data, TOP_KEYS, f"config {origin}")
    tables = {
        str(name): _table(settings, f"config {origin}: table {name!r}")
        for name, settings in _mapping(data.get("tables", {}), f"config {origin}: tables").items()
    }
    extensions = tuple(_strings(data.get("extensions", []), f"config {origin}: extensions"))
    functions = tuple(
        ExtraFunction(*_fields(f, ("name", "sql"), f"config {origin}: function #{n}"))
        for n, f in enumerate(_list(data.get("functions", []), f"config {origin}"), 1)
    )
    on_error = _policy(data.get("on_error"), f"config {origin}") or OnError.REJECT
    orphans = _choice(data.get("orphans"), ORPHANS, f"config {origin}: orphans") or Orphans.KEEP
    widen = _flag(data.get("widen"), f"config {origin}: widen") or False
    return Overrides(tables, extensions, functions, origin, on_error, orphans, widen)


def _table(settings: Any, where: str) -> TableSettings:
    _check_keys(settings, TABLE_KEYS, where)
    columns = {
        str(name): _column(col, f"{where}: column {name!r}")
        for name, col in _mapping(settings.get("columns", {}), where).items()
    }
    indexes = tuple(
        _index(i, f"{where}: index #{n}")
        for n, i in enumerate(_list(settings.get("indexes", []), where), 1)
    )
    statistics = tuple(
        _statistics(s, f"{where}: statistics #{n}")
        for n, s in enumerate(_list(settings.get("statistics", []), where), 1)
    )
    checks = tuple(
        ExtraCheck(*_fields(c, ("name", "expression"), f"{where}: check #{n}"))
        for n, c in enumerate(_list(settings.get("checks", []), where), 1)
    )
    triggers = {str(k): str(v) for k, v in _mapping(settings.get("triggers", {}), where).items()}
    return TableSettings(
        on_error=_policy(settings.get("on_error"), where),
        orphans=_choice(settings.get("orphans"), ORPHANS, f"{where}: orphans"),
        exclude=bool(_flag(settings.get("exclude"), f"{where}: exclude")),
        rename=_string(settings, "rename", where) if "rename" in settings else None,
        columns=columns,
        indexes=indexes,
        statistics=statistics,
        checks=checks,
        triggers=triggers,
    )


def _column(settings: Any, where: str) -> ColumnSettings:
    _check_keys(settings, COLUMN_KEYS, where)
    policy = str(settings.get("on_invalid_json", "fail"))
    if policy not in JSON_POLICIES:
        raise UsageError(f"{where}: on_invalid_json must be one of {sorted(JSON_POLICIES)}")
    epoch = settings.get("epoch")
    if epoch is not None and epoch not in EPOCH_UNITS:
        raise UsageError(f"{where}: epoch must be one of {sorted(EPOCH_UNITS)}")
    return ColumnSettings(
        on_error=_policy(settings.get("on_error"), where),
        type=_type(settings, where),
        default=_optional(settings, "default"),
        on_invalid_json=policy,
        epoch=EPOCH_UNITS[epoch] if epoch else None,
        rename=_string(settings, "rename", where) if "rename" in settings else None,
        widen=_flag(settings.get("widen"), f"{where}: widen"),
    )


def _flag(value: Any, where: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise UsageError(f"{where} is expected to be true or false, got {value!r}")


def _index(settings: Any, where: str) -> ExtraIndex:
    _check_keys(settings, INDEX_KEYS, where)
    method = str(settings.get("method", "btree")).lower()
    if method not in METHODS:
        raise UsageError(f"{where}: method must be one of {sorted(METHODS)}")
    columns = []
    for entry in _list(settings.get("columns"), where):
        if isinstance(entry, str):
            columns.append(IndexColumn(entry))
            continue
        _check_keys(entry, INDEX_COLUMN_KEYS, where)
        order = str(entry.get("order", "asc")).lower()
        if order not in ("asc", "desc"):
            raise UsageError(f"{where}: order must be 'asc' or 'desc'")
        columns.append(
            IndexColumn(
                _string(entry, "column", where), order == "desc", _optional(entry, "opclass")
            )
        )
    if not columns:
        raise UsageError(f"{where}: needs at least one column")
    return ExtraIndex(
        _string(settings, "name", where),
        tuple(columns),
        method,
        _optional(settings, "where"),
        bool(settings.get("unique", False)),
    )


def _policy(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if value not in ON_ERROR:
        raise UsageError(f"{where}: on_error must be one of {list(ON_ERROR)}")
    return str(value)


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str | None:
    if value is None:
        return None
    if value not in allowed:
        raise UsageError(f"{where} must be one of {list(allowed)}")
    return str(value)


def _statistics(settings: Any, where: str) -> ExtraStatistics:
    _check_keys(settings, {"name", "columns"}, where)
    return ExtraStatistics(
        _string(settings, "name", where), tuple(_strings(settings.get("columns"), where))
    )


def _fields(settings: Any, keys: tuple[str, ...], where: str) -> tuple[str, ...]:
    """The required string fields ``keys`` of a small settings table, nothing else allowed."""
    _check_keys(settings, set(keys), where)
    return tuple(_string(settings, key, where) for key in keys)


def _type(settings: Mapping[str, Any], where: str) -> str | None:
    """A column's type: an empty one was ignored, the column keeping its planned type."""
    value = _optional(settings, "type")
    if value is not None and not value.strip():
        raise UsageError(f"{where}: type is empty; leave it out for the planned type")
    return value


def _optional(settings: Mapping[str, Any], key: str) -> str | None:
    value = settings.get(key)
    return None if value is None else str(value)


def _string(settings: Mapping[str, Any], key: str, where: str) -> str:
    value = settings.get(key)
    if not isinstance(value, str) or not value:
        raise UsageError(f"{where}: {key} must be a non-empty string")
    if "\x00" in value:  # PostgreSQL's names cannot hold one
        raise UsageError(f"{where}: {key} holds a NUL character")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: expected a list of strings")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise UsageError(f"{where}: expected a list")
    return value


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a table of settings")
    return value


def _check_keys(settings: Any, allowed: set[str], where: str) -> None:
    if not isinstance(settings, dict):
        raise UsageError(f"{where}: expected a table of settings")
    unknown = set(settings) - allowed
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(allowed)}")
