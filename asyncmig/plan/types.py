"""Choose each column's PostgreSQL type from its declared type *and* its values.

The rule everywhere: a richer type (jsonb, uuid, inet, boolean, timestamptz) is
chosen only when every stored value converts to it exactly; otherwise the column
keeps a type that holds every value losslessly (text, numeric, bytea) and the plan
carries a warning saying why. The evidence string records the counts behind each
choice so that ``asyncmig plan`` can show them.

Timezone policy: SQLite has no timestamp type, and applications store naive UTC
(CURRENT_TIMESTAMP, Django with USE_TZ). Naive timestamps therefore become
``timestamptz`` read as UTC; values with an explicit offset keep their instant.
Override a column to ``timestamp`` to keep wall-clock values without a zone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from asyncmig.errors import UsageError
from asyncmig.plan import datenums
from asyncmig.plan.model import base_type
from asyncmig.source.catalog import ColumnProfile, SourceColumn
from asyncmig.source.scan import DOUBLE_EXACT_INT, family

_UUID_HINT = re.compile(r"(id|uuid|guid)$", re.IGNORECASE)  # not "key": md5 keys, API keys
_INET_HINT = re.compile(r"ip|addr|host|remote|client", re.IGNORECASE)
_LENGTH = re.compile(
    r"^\s*(?:NATIVE\s+|NATIONAL\s+|VARYING\s+)?N?(?:VAR)?(?:CHARACTER|CHAR)"
    r"(?:\s+VARYING)?\s*\(\s*(\d+)\s*\)\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TypeChoice:
    target_type: str
    transform: str  # key into asyncmig.load.transforms.TRANSFORMS
    evidence: str
    warnings: tuple[str, ...] = ()
    # the declared type kept although some values do not fit (asyncmig.plan.contract): they
    # go through the value policy, counted by the planner
    contract: bool = False


def describe(profile: ColumnProfile) -> str:
    """'3 integer, 1 text, 2 null' — the storage-class counts, for evidence strings."""
    parts = [f"{n} {k}" for k, n in sorted(profile.classes.items()) if n]
    return ", ".join(parts) or "no rows"


def declared_length(declared_type: str) -> int | None:
    match = _LENGTH.match(declared_type)
    return int(match.group(1)) if match else None


def type_for_declared(declared_type: str) -> tuple[str, str]:
    """The type an empty column gets: from its declaration alone (SQLite affinity rules)."""
    upper = declared_type.upper()
    for word, pg_type, transform in (
        ("UUID", "uuid", "uuid_checked"),
        ("GUID", "uuid", "uuid_checked"),
        ("JSON", "jsonb", "json"),
        ("INET", "inet", "inet_checked"),
    ):
        if word in upper:
            return pg_type, transform
    kind_family = family(declared_type)
    if kind_family == "bool":
        return "boolean", "bool"
    if kind_family == "temporal":
        if "DATETIME" in upper or "TIMESTAMP" in upper:
            return "timestamptz", "timestamptz_checked"
        if "DATE" in upper:
            return "date", "date"
        return "time", "time"
    if kind_family == "integer":
        return "bigint", "none"
    if kind_family == "real":
        return "double precision", "none"
    length = declared_length(declared_type)
    if length:
        return f"varchar({length})", "none"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")) or not upper:
        return "text", "none"
    if "BLOB" in upper:
        return "bytea", "none"
    return "numeric", "numeric"


def choose_type(
    column: SourceColumn,
    profile: ColumnProfile,
    *,
    rowid_alias: bool = False,
    json_checked: bool = False,
) -> TypeChoice:
    """Pick the target type; ``json_checked`` when a CHECK (json_valid(col)) guards the column."""
    counts = describe(profile)
    if rowid_alias:
        return TypeChoice("bigint", "none", f"INTEGER PRIMARY KEY (rowid alias): {counts}")
    if profile.non_null == 0:
        pg_type, transform = type_for_declared(column.declared_type)
        return TypeChoice(
            pg_type,
            transform,
            f"declared {column.declared_type or 'no type'}, no values: type from the declaration",
        )
    if profile.count("blob"):
        return _with_blobs(profile, counts)
    kind_family = family(column.declared_type)
    special = None
    if kind_family == "bool":
        special = _boolean(profile, counts)
    elif kind_family == "temporal":
        special = _temporal(column, profile, counts)
    elif profile.count("text") == profile.non_null:
        special = _rich_text(column, profile, counts, json_checked)
    elif "JSON" in column.declared_type.upper() or json_checked:
        special = _json_with_numbers(profile, counts)
    return special or _plain(column, profile, counts)


def _json_with_numbers(profile: ColumnProfile, counts: str) -> TypeChoice | None:
    """A column declared JSON holding JSON text and numbers: SQLite's numeric affinity
    stores an ORM's ``json.dumps(42)`` as the integer 42, a JSON document to SQLite's
    json functions as to the application. jsonb, each number a JSON number."""
    texts = profile.count("text")
    finite = all(v is None or math.isfinite(v) for v in (profile.real_min, profile.real_max))
    if texts and profile.text_kinds.get("json_any", 0) == texts and finite:
        return TypeChoice("jsonb", "json", f"every value valid JSON (numbers too): {counts}")
    return None


def _with_blobs(profile: ColumnProfile, counts: str) -> TypeChoice:
    if profile.count("blob") == profile.non_null:
        return TypeChoice("bytea", "none", f"blobs: {counts}")
    return TypeChoice(
        "bytea",
        "bytes_from_any",
        f"blobs mixed with other values: {counts}",
        (
            (
                "holds blobs and other values: all stored as bytea "
                "(text as UTF-8, numbers as their decimal text)"
            ),
        ),
    )


def _all_text(profile: ColumnProfile, kind: str) -> bool:
    return profile.count("text") > 0 and profile.text_kinds.get(kind, 0) == profile.count("text")


def _boolean(profile: ColumnProfile, counts: str) -> TypeChoice | None:
    if profile.count("real"):
        return None
    if profile.count("integer") and not (
        profile.int_min is not None
        and profile.int_max is not None
        and profile.int_min >= 0
        and profile.int_max <= 1
    ):
        return None
    if profile.count("text") and not _all_text(profile, "bool"):
        return None
    transform = "bool" if profile.count("text") else "bool_int"
    return TypeChoice("boolean", transform, f"declared boolean, every value 0/1 or t/f: {counts}")


def _temporal(column: SourceColumn, profile: ColumnProfile, counts: str) -> TypeChoice | None:
    upper = column.declared_type.upper()
    texts = profile.count("text")
    numbers = profile.count("integer") + profile.count("real")
    if numbers:
        return _dated_numbers(column, profile, counts)
    zoned = profile.text_kinds.get("timestamptz", 0)
    if (
        "TIME" in upper
        and "STAMP" not in upper
        and "DATETIME" not in upper
        and _all_text(profile, "time")
    ):
        return TypeChoice("time", "time", f"declared TIME, every value a time of day: {counts}")
    if "DATE" in upper and "DATETIME" not in upper and _all_text(profile, "date"):
        return TypeChoice("date", "date", f"declared DATE, every value YYYY-MM-DD: {counts}")
    if _all_text(profile, "timestamp"):
        policy = (
            "with an offset"
            if zoned == texts
            else (
                "naive, read as UTC"
                if not zoned
                else f"{zoned} with an offset, the rest read as UTC"
            )
        )
        return TypeChoice(
            "timestamptz",
            "timestamptz",
            f"declared {column.declared_type}, every value an ISO timestamp ({policy}): {counts}",
        )
    return None


def number_readings(profile: ColumnProfile) -> str:
    """'2 Julian day numbers, 1 Unix seconds': how a column's numbers are read."""
    return ", ".join(
        f"{profile.number_kinds[k]} {datenums.NAMES[k]}"
        for k in datenums.KINDS
        if profile.number_kinds.get(k)
    )


def _dated_numbers(column: SourceColumn, profile: ColumnProfile, counts: str) -> TypeChoice | None:
    """Numbers in a date column, each read as SQLite's date functions read it.

    A column with a number that has no reading (0, 1, negative: a Julian day before
    year 1, or a Unix time before 1970?) is ambiguous: it keeps its numbers, and says so.
    """
    upper = column.declared_type.upper()
    numbers = profile.count("integer") + profile.count("real")
    readable = numbers - unreadable_numbers(profile)
    if "TIME" in upper and "STAMP" not in upper and "DATETIME" not in upper:
        return None  # TIME: numbers are not times of day
    if readable < numbers and profile.count("text"):
        return None
    if readable < numbers:
        plain = _plain(column, profile, counts)
        return replace(
            plain,
            warnings=(
                *plain.warnings,
                (
                    f"declared {column.declared_type} but {numbers - readable} of {numbers} numbers "
                    "have no date reading (a Julian day is 1721425.5 to 5373484.5, a Unix time "
                    f"5373484.5 to 1e17): ambiguous, kept as numbers ({plain.target_type}); set the "
                    "column's type and epoch unit in a profile to read them as dates"
                ),
            ),
        )
    readings = number_readings(profile)
    evidence = (
        f"declared {column.declared_type}, numbers read as SQLite's date functions "
        f"read them: {readings}: {counts}"
    )
    units = sum(1 for k in datenums.KINDS if profile.number_kinds.get(k))
    warnings: tuple[str, ...] = (
        (f"numbers of several kinds ({readings}): each read by its magnitude",) if units > 1 else ()
    )
    if "DATE" in upper and "DATETIME" not in upper:
        whole = profile.number_kinds.get("midnight", 0)
        if whole == numbers and _all_text_or_none(profile, "date"):
            return TypeChoice("date", "sqlite_date", evidence, warnings)
        if profile.count("text"):
            return None
        warnings += (
            (
                f"declared {column.declared_type} but {numbers - whole} number(s) "
                "carry a time of day: timestamptz keeps it"
            ),
        )
    elif profile.count("text") and not _all_text(profile, "timestamp"):
        return None
    return TypeChoice("timestamptz", "sqlite_timestamptz", evidence, warnings)


def unreadable_numbers(profile: ColumnProfile) -> int:
    """Numbers of a date column that have no date reading (asyncmig.plan.datenums)."""
    numbers = profile.count("integer") + profile.count("real")
    return numbers - sum(profile.number_kinds.get(k, 0) for k in datenums.KINDS)


def _only_text(profile: ColumnProfile) -> bool:
    return profile.count("text") > 0 and not any(
        profile.count(k) for k in ("integer", "real", "blob")
    )


def _all_text_or_none(profile: ColumnProfile, kind: str) -> bool:
    return not profile.count("text") or _all_text(profile, kind)


def _rich_text(
    column: SourceColumn, profile: ColumnProfile, counts: str, json_checked: bool
) -> TypeChoice | None:
    upper = column.declared_type.upper()
    declared_json = "JSON" in upper or json_checked
    if _all_text(profile, "json") or (declared_json and _all_text(profile, "json_any")):
        return TypeChoice("jsonb", "json_text", f"every value valid JSON: {counts}")
    if declared_json and "json_any" in profile.text_kinds and _only_text(profile):
        others = profile.count("text") - profile.text_kinds["json_any"]
        return TypeChoice(
            "text",
            "none",
            f"declared {column.declared_type or 'TEXT'}, {others} value(s) not JSON: {counts}",
            (
                (
                    f"declared {column.declared_type or 'JSON'} but {others} value(s) are not "
                    "JSON that jsonb keeps as written (not valid, a \\u0000, or an object "
                    "repeating a key): stored as text"
                ),
            ),
        )
    hinted_uuid = bool(_UUID_HINT.search(column.name)) or "UUID" in upper or "GUID" in upper
    if _all_text(profile, "uuid") or (hinted_uuid and _all_text(profile, "hex32")):
        return TypeChoice("uuid", "uuid", f"every value a UUID: {counts}")
    if (_INET_HINT.search(column.name) or "INET" in upper) and _all_text(profile, "inet"):
        return TypeChoice("inet", "inet", f"every value an IP address: {counts}")
    return None


def _plain(column: SourceColumn, profile: ColumnProfile, counts: str) -> TypeChoice:
    """Numbers and text: the lossless type for the mix of storage classes present."""
    declared = column.declared_type or "no type"
    integers, reals, texts = (profile.count(k) for k in ("integer", "real", "text"))
    kind_family = family(column.declared_type)
    upper = column.declared_type.upper()
    wants_numeric = ("NUM" in upper or "DEC" in upper) and kind_family == "text"
    if texts:
        warnings: tuple[str, ...] = ()
        if integers or reals:
            warnings = (
                (f"declared {declared} but holds text and numbers ({counts}): stored as text"),
            )
        elif kind_family not in ("text",) or wants_numeric:
            warnings = (f"declared {declared} but holds {texts} text value(s): stored as text",)
        target = "text"
        length = declared_length(column.declared_type)
        if length and not (integers or reals) and (profile.max_text_length or 0) <= length:
            target = f"varchar({length})"
        elif length:
            warnings += (f"values longer than the declared {declared}: text without a limit",)
        transform = "text" if integers or reals else "none"
        if profile.nul_text:
            transform = "text_nul_check"
        return TypeChoice(target, transform, f"{declared}: {counts}", warnings)
    infinite = any(
        v is not None and abs(v) == float("inf") for v in (profile.real_min, profile.real_max)
    )
    evidence = f"{declared}: {counts}"
    if wants_numeric and not infinite:
        return TypeChoice("numeric", "numeric", evidence)
    if not reals and kind_family != "real":
        return TypeChoice("bigint", "none", evidence)
    if not integers:
        return TypeChoice("double precision", "none", evidence)
    if _fits_double(profile):
        if kind_family == "real" or infinite:
            return TypeChoice("double precision", "float", evidence)
        return TypeChoice("numeric", "numeric", evidence)
    if infinite:
        return TypeChoice(
            "text",
            "text",
            evidence,
            ("integers beyond 2^53 mixed with infinite reals: stored as text",),
        )
    return TypeChoice(
        "numeric",
        "numeric",
        evidence,
        ("integers beyond 2^53 mixed with reals: numeric keeps both exactly",),
    )


def _fits_double(profile: ColumnProfile) -> bool:
    return all(v is None or abs(v) <= DOUBLE_EXACT_INT for v in (profile.int_min, profile.int_max))


# target type (as a user writes it in a config) -> transform that enforces it per value
OVERRIDE_TRANSFORMS = {
    "bigint": "int",
    "integer": "int",
    "int": "int",
    "smallint": "int",
    "int8": "int",
    "int4": "int",
    "int2": "int",
    "double precision": "float",
    "float8": "float",
    "real": "float",
    "float4": "float",
    "numeric": "numeric",
    "decimal": "numeric",
    "text": "text",
    "varchar": "text",
    "character varying": "text",
    "char": "text",
    "bytea": "bytes_from_any",
    "jsonb": "json",
    "json": "json",
    "uuid": "uuid_checked",
    "inet": "inet_checked",
    "cidr": "inet_checked",
    "boolean": "bool",
    "bool": "bool",
    "date": "date",
    "time": "time",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "timestamptz": "timestamptz_checked",
    "timestamp with time zone": "timestamptz_checked",
}


def override_type(
    column: SourceColumn, profile: ColumnProfile, target_type: str, *, epoch_unit: str | None = None
) -> TypeChoice:
    """The user's type for ``column``; every value is still converted and checked on the way."""
    base = base_type(target_type)
    transform = OVERRIDE_TRANSFORMS.get(base)
    modifier = re.search(r"\(\s*(\d+)", target_type)
    if transform is not None and modifier is not None and int(modifier.group(1)) < 1:
        raise UsageError(  # PostgreSQL refused it at CREATE TABLE, after the planning
            f"config sets {column.name} to {target_type!r}: a length or precision is at least 1"
        )
    if transform is None:
        raise UsageError(
            f"config sets {column.name} to {target_type!r}, which asyncmig cannot convert to; "
            f"supported: {', '.join(sorted(set(OVERRIDE_TRANSFORMS)))}"
        )
    numbers = profile.count("integer") or profile.count("real")
    if base.startswith("timestamp") and numbers:
        aware = transform == "timestamptz_checked"
        transform = epoch_unit or ("sqlite_timestamptz" if aware else "sqlite_timestamp")
    elif base == "date" and numbers:
        transform = "sqlite_date"
    return TypeChoice(
        target_type,
        transform,
        f"set by config (was declared {column.declared_type or 'no type'}): {describe(profile)}",
    )
