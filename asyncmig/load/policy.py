"""What happens to a value that does not fit, and to the rows that cannot be loaded.

Each column has a policy (``ColumnPlan.on_error``), chosen globally (``--on-error``),
per table or per column (a profile's ``on_error``):

* ``coerce``: a documented conversion, announced in the log: NUL characters stripped
  from text, invalid UTF-8 decoded with U+FFFD replacement characters, '1'/'yes'/'on'
  and their opposites to booleans, whole-number text or reals to integers, epoch
  numbers to timestamps; a value no rule converts is rejected (never a silent NULL);
* ``default``: the column's literal default (e.g. ``'{}'::jsonb``), else as ``null``;
* ``null``: NULL where the column allows it, else the row is rejected;
* ``reject``: the whole row goes to the reject store instead of the table;
* ``fail``: the run stops, naming table, column, key and value.

A :class:`TableGuard` applies them for one table and keeps the accounts: every
replacement and rejection is counted, logged with its row key, and every rejected row
is written, with its original values, to ``<rejects dir>/<table>.jsonl``. For every
table, rows read = rows loaded + rows rejected.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, final

import orjson

from asyncmig.errors import DataError, LocalFileError, MigrationError
from asyncmig.plan.model import ColumnPlan, TablePlan, base_type
from asyncmig.target import files

REPORTED = 100  # per table: replacements kept with their keys for the log


@final  # found by its exact type (resolve_invalid_text)
class InvalidText:
    """A TEXT value whose bytes are not UTF-8 (SQLite stores whatever it is given)."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes):
        self.raw = raw

    def __repr__(self) -> str:
        return f"<invalid UTF-8 {self.raw[:40]!r}>"

    def __eq__(self, other: object) -> bool:  # a rejected row's value, read back, is found
        return isinstance(other, InvalidText) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


def lenient_text(raw: bytes) -> str | InvalidText:
    """sqlite3 text factory used once a table has shown invalid UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidText(raw)


@dataclass
class Replacement:
    column: str
    key: Any
    value: Any
    action: str  # coerced / default / null
    reason: str


@dataclass
class Accounts:
    """What a table's guard did; travels back from worker processes."""

    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # reason -> rejected rows
    replaced: dict[str, int] = field(default_factory=dict)  # "column: action" -> values
    examples: list[Replacement] = field(default_factory=list)
    reject_file: str | None = None


class TooManyRejects(DataError):
    """More rows rejected than a limit allows: a count, not one value, so it is said
    as such (it read ``cannot convert t.? at key None: value None``)."""

    def __init__(self, table: str, message: str, *, hint: str):
        MigrationError.__init__(self, message, hint=hint)
        self.table, self.column, self.key, self.value = table, "?", None, None


def check_rejects(table: str, accounts: Accounts, limit: int | None) -> None:
    """More rejects than --max-rejects (over a table's ranges or chunks): the table fails."""
    if limit is not None and accounts.rejected > limit:
        raise TooManyRejects(
            table,
            f"table {table}: {accounts.rejected} rows rejected, more than "
            f"--max-rejects {limit}; the table is rolled back",
            hint="clean the source, choose other policies, or raise the limit",
        )


def combine(parts: Sequence[Accounts]) -> Accounts:
    """Several loads' accounts (a table's ranges or chunks) as one; the reject file is
    the latest part's that has one."""
    merged = Accounts()
    for part in parts:
        merged.rejected += part.rejected
        for reason, count in part.reasons.items():
            merged.reasons[reason] = merged.reasons.get(reason, 0) + count
        for label, count in part.replaced.items():
            merged.replaced[label] = merged.replaced.get(label, 0) + count
        merged.examples.extend(part.examples)
        merged.reject_file = part.reject_file or merged.reject_file
    return merged


def json_value(value: Any) -> Any:
    """A source value as JSON, exactly: blobs and invalid text as base64, odd floats named."""
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, InvalidText):
        return {"base64": base64.b64encode(value.raw).decode(), "invalid_utf8": True}
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    return value


def from_json_value(value: Any) -> Any:
    """The source value :func:`json_value` wrote, as SQLite gives it again."""
    if isinstance(value, dict):
        if "float" in value:
            return float(value["float"])
        raw = base64.b64decode(value["base64"])
        return InvalidText(raw) if value.get("invalid_utf8") else raw
    return value


_LITERAL = re.compile(r"\s*'((?:[^']|'')*)'\s*(?:::\s*[a-z ]+)?\s*", re.IGNORECASE)


def literal_default(column: ColumnPlan) -> tuple[bool, Any]:
    """(True, value) when the column's default is a plain literal usable as a value."""
    text = (column.default or "").strip()
    if not text:
        return False, None
    match = _LITERAL.fullmatch(text)
    if match:
        return True, match.group(1).replace("''", "'")
    lowered = text.lower()
    if lowered in ("true", "false"):
        return True, lowered == "true"
    if re.fullmatch(r"-?\d+", text):
        return True, int(text)
    if re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", lowered):
        return True, Decimal(text)
    return False, None


_TRUE = {"1", "t", "true", "y", "yes", "on"}
_FALSE = {"0", "f", "false", "n", "no", "off"}


def coerce(column: ColumnPlan, value: Any) -> Any:
    """The documented lossless-or-announced conversions; ValueError when none applies."""
    base = base_type(column.target_type)
    if isinstance(value, InvalidText):
        value = value.raw.decode("utf-8", errors="replace")
        if base in ("text", "varchar", "character varying"):
            return value.replace("\x00", "")
    if isinstance(value, str) and "\x00" in value and base in ("text", "varchar"):
        return value.replace("\x00", "")
    if base == "boolean":
        word = str(value).strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    if base in ("bigint", "integer", "smallint"):
        number = Decimal(str(value).strip())
        if number == number.to_integral_value():
            return int(number)
    if base in ("timestamptz", "timestamp") and isinstance(value, (int, float)):
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=value)
    raise ValueError("no coercion applies")


def key_positions(table: TablePlan) -> list[int]:
    return [i for i, c in enumerate(table.columns) if c.name in table.primary_key]


def row_key(positions: list[int], row: tuple[Any, ...]) -> Any:
    """A row's primary key as a person reads it: the value, a tuple, or None without one."""
    key = tuple(row[i] for i in positions) if positions else None
    return key[0] if key is not None and len(key) == 1 else key


class Rejected(ValueError):
    """The column's policy sends the whole row to the reject store."""


# what a transform (or a replacement) raises for a value it cannot convert; the one
# list, for the load, the policies and check --deep alike
VALUE_ERRORS = (
    ValueError,
    TypeError,
    OverflowError,
    ArithmeticError,
    orjson.JSONDecodeError,
    UnicodeDecodeError,
    ipaddress.AddressValueError,
)


def replacement(
    column: ColumnPlan, value: Any, function: Callable[[Any], Any] | None
) -> tuple[str, Any]:
    """(action, new value) the column's policy puts in place of a bad value.

    Raises :class:`Rejected` when the row is rejected instead. The load applies it
    (:class:`TableGuard`) and so does ``check --deep`` on the SQLite side, so both
    agree on what a replaced value became.
    """
    policy = column.on_error
    if policy == "coerce":
        try:
            fixed = coerce(column, value)
            converted = (
                function(fixed) if function and not isinstance(fixed, dt.datetime) else fixed
            )
        except VALUE_ERRORS:
            raise Rejected("no coercion applies") from None
        return "coerced", converted
    if policy == "default":
        usable, default = literal_default(column)
        if usable:
            try:
                return "default", function(default) if function else default
            except VALUE_ERRORS:
                pass  # an unusable default: the column is treated as under `null`
        policy = "null"
    if policy == "null" and column.nullable:
        return "null", None
    raise Rejected(f"policy {column.on_error}")


def reject_path(reject_dir: Path, table: str) -> Path:
    """Where a table's rejected rows go: one file per table in the run's reject directory."""
    return (reject_dir / f"{files.safe_name(table)}.jsonl").absolute()


class TableGuard:
    """Applies one table's column policies and keeps its accounts and reject file."""

    def __init__(
        self,
        table: TablePlan,
        reject_dir: Path | None,
        max_rejects: int | None,
        *,
        append: bool = False,
    ):
        self.append = append  # a later phase (orphans) adds to the load's reject file
        self.table = table
        self.max_rejects = max_rejects
        self.accounts = Accounts()
        self.keys = key_positions(table)
        self._bytea = frozenset(
            i for i, c in enumerate(table.columns) if base_type(c.target_type) == "bytea"
        )
        self._path = reject_path(reject_dir, table.name) if reject_dir is not None else None
        self._stream: IO[bytes] | None = None

    @property
    def lenient(self) -> bool:
        """Whether any column lets a bad value pass in some form (else: fail fast)."""
        return any(c.on_error != "fail" for c in self.table.columns)

    def key(self, row: tuple[Any, ...]) -> Any:
        return row_key(self.keys, row)

    def convert(
        self, rows: list[tuple[Any, ...]], work: list[tuple[int, Callable[[Any], Any]]]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The slow path: row by row, value by value, policies applied; (converted, originals)."""
        converted, kept = [], []
        for row in rows:
            result = self._row(row, work)
            if result is not None:
                converted.append(result)
                kept.append(row)
        return converted, kept

    def resolve_invalid_text(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Before the transforms: settle every invalid-UTF-8 value by its column's policy;
        a bytea column keeps its bytes as they are (it holds any bytes exactly)."""
        resolved = []
        for row in rows:
            if InvalidText not in map(type, row):  # a third of any(isinstance(...)) per row
                resolved.append(row)
                continue
            values = list(row)
            ok = True
            for position, value in enumerate(row):
                if isinstance(value, InvalidText) and position in self._bytea:
                    values[position] = value.raw
                elif isinstance(value, InvalidText):
                    ok = self._settle(row, values, position, value, "invalid UTF-8 in text")
                    if not ok:
                        break
            if ok:
                resolved.append(tuple(values))
        return resolved

    def _row(
        self, row: tuple[Any, ...], work: list[tuple[int, Callable[[Any], Any]]]
    ) -> tuple[Any, ...] | None:
        values = list(row)
        for position, function in work:
            value = values[position]
            if value is None:
                continue
            try:
                values[position] = function(value)
            except VALUE_ERRORS as exc:
                column = self.table.columns[position]
                reason = f"not a valid {column.target_type}: {exc}"
                if not self._settle(row, values, position, value, reason, function):
                    return None
        return tuple(values)

    def _settle(
        self,
        row: tuple[Any, ...],
        values: list[Any],
        position: int,
        value: Any,
        reason: str,
        function: Callable[[Any], Any] | None = None,
    ) -> bool:
        """Apply the column's policy to one bad value; False when the row is rejected."""
        column = self.table.columns[position]
        if column.on_error == "fail":
            raise DataError(self.table.name, column.name, self.key(row), value, reason)
        try:
            action, values[position] = replacement(column, value, function)
        except Rejected:
            self.reject(row, column.name, reason, "transform")
            return False
        self._replaced(row, column, value, action, reason)
        return True

    def _replaced(
        self, row: tuple[Any, ...], column: ColumnPlan, value: Any, action: str, reason: str
    ) -> None:
        label = f"{column.name}: {action}"
        self.accounts.replaced[label] = self.accounts.replaced.get(label, 0) + 1
        if len(self.accounts.examples) < REPORTED:
            shown = value if not isinstance(value, InvalidText) else repr(value)
            self.accounts.examples.append(
                Replacement(column.name, self.key(row), shown, action, reason)
            )

    def reject(self, row: tuple[Any, ...], column: str | None, reason: str, stage: str) -> None:
        """The whole row to the reject store, with its original values and why."""
        accounts = self.accounts
        accounts.rejected += 1
        short = reason.split(":")[0] if stage == "transform" else reason.splitlines()[0][:120]
        accounts.reasons[short] = accounts.reasons.get(short, 0) + 1
        if self.max_rejects is not None and accounts.rejected > self.max_rejects:
            raise TooManyRejects(
                self.table.name,
                f"table {self.table.name}: more than --max-rejects {self.max_rejects} rows "
                f"rejected, the last at key {self.key(row)!r} ({short}); the table is rolled "
                "back",
                hint="clean the source, choose other policies, or raise --max-rejects",
            )
        if self._path is None:
            return
        record = {
            "table": self.table.name,
            "key": json_value(self.key(row))
            if not isinstance(self.key(row), tuple)
            else [json_value(v) for v in self.key(row)],
            "column": column,
            "reason": reason,
            "stage": stage,
            "row": {
                c.source_name: json_value(v) for c, v in zip(self.table.columns, row, strict=True)
            },
        }
        self._write(self._path, orjson.dumps(record, default=str) + b"\n")

    def _write(self, path: Path, data: bytes) -> None:
        try:
            if self._stream is None:
                files.private_dir(path.parent)
                self._stream = files.append(path) if self.append else files.rewrite(path)
                self.accounts.reject_file = str(path)
            self._stream.write(data)
        except OSError as exc:
            raise rejects_unwritable(path, exc, self.table.name) from None

    def flush(self) -> None:
        """Every rejected row on disk: called before the table's load commits, so a
        table is never committed with its reject file cut short."""
        if self._stream is not None and self._path is not None:
            try:
                self._stream.flush()
            except OSError as exc:
                raise rejects_unwritable(self._path, exc, self.table.name) from None

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and self._path is not None:
            try:
                stream.close()  # the file is closed even when its last flush fails
            except OSError as exc:
                raise rejects_unwritable(self._path, exc, self.table.name) from None


def rejects_unwritable(path: Path, exc: OSError, table: str) -> LocalFileError:
    """The one error for a table's reject file that cannot be written."""
    return LocalFileError(
        f"cannot write the reject file {path}: {exc.strerror or exc} (the only record of "
        f"the rows {table} rejects: nothing is loaded without it)",
        hint="free space there, or pass --rejects DIR naming a directory with room",
    )
