"""Property tests for the value transforms: exact where they convert, loud where they cannot."""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import sqlite3
import uuid
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncmig.cli.commands import check
from asyncmig.cli.settings import DeepCheck
from asyncmig.errors import DataError
from asyncmig.load import codecs, policy, transforms
from asyncmig.plan.model import ColumnPlan, TablePlan
from asyncmig.run import run_migration
from asyncmig.runstate import RunSettings
from asyncmig.source.scan import is_inet
from asyncmig.target.connect import Target

UTC = dt.UTC
finite = st.floats(allow_nan=False, allow_infinity=False)
moments = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31))


@given(finite)
def test_numeric_keeps_the_decimal_a_float_prints_as(value: float) -> None:
    result = transforms.to_numeric(value)
    assert result == Decimal(repr(value))
    assert float(result) == value


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_integers_pass_through_numeric_and_text_exactly(value: int) -> None:
    assert transforms.to_numeric(value) == value
    assert transforms.to_text(value) == str(value)
    assert transforms.to_int(str(value)) == value


@given(finite)
def test_text_of_a_float_reads_back_as_the_same_float(value: float) -> None:
    text = transforms.to_text(value)
    assert float(text) == value and math.copysign(1, float(text)) == math.copysign(1, value)


@given(st.integers(min_value=2**53 + 1, max_value=2**63 - 1))
def test_float_refuses_integers_it_would_round(value: int) -> None:
    if float(value) != value:
        with pytest.raises(ValueError, match="rounding"):
            transforms.to_float(value)


@given(
    moments,
    st.sampled_from([" ", "T"]),
    st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]),
)
def test_naive_timestamps_are_read_as_utc(moment: dt.datetime, sep: str, spec: str) -> None:
    text = moment.isoformat(sep=sep, timespec=spec)
    if moment in (dt.datetime.min, dt.datetime.max):
        with pytest.raises(ValueError, match="infinity"):
            transforms.to_timestamptz(text)
        return
    parsed = transforms.to_timestamptz(text)
    assert parsed == dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@given(
    st.datetimes(min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 31)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_offsets_keep_their_instant(moment: dt.datetime, minutes: int) -> None:
    zone = dt.timezone(dt.timedelta(minutes=minutes))
    text = moment.replace(tzinfo=zone).isoformat()
    instant = moment.replace(tzinfo=zone)
    assert transforms.to_timestamptz(text) == instant
    assert transforms.to_timestamp(text) == instant.astimezone(UTC).replace(tzinfo=None)


def test_more_than_six_fraction_digits_are_refused_not_rounded() -> None:
    with pytest.raises(ValueError, match="6 fraction digits"):
        transforms.to_timestamptz("2025-03-01 12:00:00.1234567")
    assert transforms.to_timestamptz("2025-03-01 12:00:00.123456").microsecond == 123456


@given(
    st.times(),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
    st.sampled_from(["seconds", "milliseconds", "microseconds"]),
)
def test_a_time_with_an_offset_is_read_as_sqlite_reads_it(
    moment: dt.time, minutes: int, spec: str
) -> None:
    """SQLite's ``time()`` applies a time's zone offset (``10:00+02:00`` is 08:00): so
    does the load, where the offset was dropped before (10:00 kept, silently)."""
    text = moment.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes))).isoformat(spec)
    with sqlite3.connect(":memory:") as conn:
        (expected,) = conn.execute("SELECT strftime('%H:%M:%f', ?)", (text,)).fetchone()
    got = transforms.to_time(text)
    assert got.tzinfo is None
    apart = abs(_micros(got) - _micros(dt.time.fromisoformat(expected))) % DAY_MICROS
    assert min(apart, DAY_MICROS - apart) <= 500  # SQLite keeps milliseconds, rounded


DAY_MICROS = 86_400_000_000


def _micros(moment: dt.time) -> int:
    return ((moment.hour * 60 + moment.minute) * 60 + moment.second) * 10**6 + moment.microsecond


def test_a_time_with_more_than_six_fraction_digits_is_refused() -> None:
    """As for timestamps: PostgreSQL keeps microseconds, and Python cut the rest off."""
    for text in ("10:00:00.1234567", "23:59:59.9999999", "10:00:00.1234567+02:00"):
        with pytest.raises(ValueError, match="6 fraction digits"):
            transforms.to_time(text)
    assert transforms.to_time("23:59:59.999999") == dt.time(23, 59, 59, 999999)


async def test_times_arrive_as_sqlite_reads_them_and_the_rest_is_rejected(
    tmp_path: Path, pg_dsn: str
) -> None:
    """End to end: offsets applied, over-long fractions in the reject store (counted by
    the plan beforehand), and ``check --deep`` agreeing with what arrived."""
    source = tmp_path / "t.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE j (id INTEGER PRIMARY KEY, t TIME)")
        conn.executemany(
            "INSERT INTO j VALUES (?, ?)",
            [
                (1, "10:00:00+02:00"),
                (2, "10:00:00.1234567"),
                (3, "01:00:00+02:00"),
                (4, "12:34:56.5"),
                (5, None),
            ],
        )
    settings = RunSettings(source, Target(pg_dsn, pg_dsn, "test"), rejects_dir=tmp_path)
    report = await run_migration(settings)
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT id, t FROM j ORDER BY id")
        assert [tuple(r) for r in rows] == [
            (1, dt.time(8)),
            (3, dt.time(23)),
            (4, dt.time(12, 34, 56, 500000)),
            (5, None),
        ]
        assert any("j.t" in w and "10:00:00.1234567" in w for w in report.plan.warnings)
        assert [r for r in await check(settings, DeepCheck()) if not r.ok] == []
    finally:
        await conn.close()


@given(st.integers(min_value=0, max_value=10**10))
def test_epoch_seconds(value: int) -> None:
    assert transforms.TRANSFORMS["epoch_s"](value) == (  # type: ignore[misc]
        dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=value)
    )


@given(st.floats(min_value=0, max_value=1e10, allow_nan=False))
def test_epoch_seconds_with_fractions_round_to_the_microsecond(value: float) -> None:
    result = transforms.TRANSFORMS["epoch_s"](value)  # type: ignore[misc]
    micros = (result - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)
    assert abs(Decimal(micros) - Decimal(repr(value)) * 1_000_000) <= Decimal("0.5")


@given(st.integers(min_value=0, max_value=10**13))
def test_epoch_milliseconds(value: int) -> None:
    assert transforms.TRANSFORMS["epoch_ms"](value) == (  # type: ignore[misc]
        dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=value)
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, False),
        (1, True),
        ("t", True),
        ("F", False),
        ("true", True),
        ("FALSE", False),
        ("1", True),
        ("0", False),
    ],
)
def test_booleans(value: Any, expected: bool) -> None:
    assert transforms.to_bool(value) is expected


@pytest.mark.parametrize("value", [2, -1, "yes", "", 0.5, b"1"])
def test_non_booleans_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        transforms.to_bool(value)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=10,
    )
)
def test_json_text_is_passed_on_unchanged(document: Any) -> None:
    import json

    text = json.dumps(document, ensure_ascii=False)
    if "\\u0000" in text:
        with pytest.raises(ValueError):
            transforms.to_json(text)
    else:
        assert transforms.to_json(text) is text


@given(st.uuids())
def test_uuids_in_both_spellings(value: uuid.UUID) -> None:
    assert transforms.to_uuid(str(value).upper()) == value
    assert transforms.to_uuid(value.hex.upper()) == value


@given(st.uuids())
def test_a_canonical_uuid_is_passed_on_and_any_other_spelling_parsed(value: uuid.UUID) -> None:
    """What a sync sends for a UUID column: the canonical text as it is (asyncpg encodes
    it to the same 16 bytes), other spellings as the UUID they spell, nonsense refused."""
    for text in (str(value), str(value).upper()):
        sent = transforms.to_uuid_text(text)
        assert sent is text and uuid.UUID(str(sent)) == value
    for other in (value.hex, "{" + str(value) + "}", value.bytes):
        assert transforms.to_uuid_text(other) == value
    with pytest.raises(ValueError):
        transforms.to_uuid_text(str(value)[:-1] + "g")


@given(st.ip_addresses())
def test_every_ip_address_is_recognised(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    assert is_inet(str(address))
    assert is_inet(f"{address}/{address.max_prefixlen}")


@pytest.mark.parametrize(
    "value",
    ["fe80::1%eth0", "1.2.3", "01.2.3.4", "10.0.0.0/255.0.0.0", "unknown", "1.2.3.4/33", ""],
)
def test_addresses_postgresql_would_refuse_or_rewrite(value: str) -> None:
    assert not is_inet(value)


@given(st.text())
def test_text_refuses_only_nul(value: str) -> None:
    if "\x00" in value:
        with pytest.raises(ValueError, match="NUL"):
            transforms.to_text(value)
    else:
        assert transforms.to_text(value) is value


def _table(*columns: tuple[str, str, str]) -> TablePlan:
    return TablePlan(
        name="t",
        source_name="t",
        columns=tuple(ColumnPlan(n, n, "", t, tr) for n, t, tr in columns),
        primary_key=("id",),
    )


@given(
    st.lists(
        st.tuples(
            st.integers(),
            st.one_of(st.none(), st.sampled_from([0, 1])),
            st.one_of(st.none(), finite),
        ),
        max_size=30,
    )
)
def test_batch_transform_converts_only_the_columns_that_need_it(
    rows: list[tuple[Any, ...]],
) -> None:
    table = _table(
        ("id", "bigint", "none"), ("flag", "boolean", "bool"), ("amount", "numeric", "numeric")
    )
    transform = transforms.build_batch_transform(table)
    assert transform is not None
    out, originals = transform((rows, rows))
    assert originals is rows
    assert out == [
        (i, None if f is None else bool(f), None if a is None else Decimal(repr(a)))
        for i, f, a in rows
    ]


def test_batch_transform_is_skipped_when_nothing_needs_converting() -> None:
    assert (
        transforms.build_batch_transform(_table(("id", "bigint", "none"), ("body", "text", "none")))
        is None
    )


def test_a_bad_value_is_named_with_its_table_column_and_key() -> None:
    table = _table(("id", "bigint", "none"), ("seen", "timestamptz", "timestamptz"))
    transform = transforms.build_batch_transform(table)
    assert transform is not None
    with pytest.raises(DataError) as caught:
        batch = [(1, "2025-01-01 10:00:00"), (7, "yesterday")]
        transform((batch, batch))
    error = caught.value
    assert (error.table, error.column, error.key, error.value) == ("t", "seen", 7, "yesterday")
    assert "t.seen at key 7" in str(error)


@pytest.mark.parametrize("encode", [False, True])
def test_a_batch_with_bad_values_comes_out_as_the_row_by_row_path_makes_it(
    tmp_path: Path, encode: bool
) -> None:
    """Bad values spread over a batch (the 1 %-dirty case: one in nearly every batch) are
    settled piece by piece, the rest converted by the fast forms: the rows, the rows kept
    for the reject store, the accounts and the reject file are those of the row-by-row
    path over the whole batch."""
    table = TablePlan(
        name="t",
        source_name="t",
        columns=(
            ColumnPlan("id", "id", "", "bigint", "none"),
            ColumnPlan("seen", "seen", "", "timestamptz", "timestamptz", on_error="reject"),
            ColumnPlan("flag", "flag", "", "boolean", "bool", on_error="null"),
            ColumnPlan("amount", "amount", "", "numeric", "numeric", on_error="reject"),
        ),
        primary_key=("id",),
    )
    rows: list[tuple[Any, ...]] = [
        (i, f"2025-01-{i % 28 + 1:02d} 10:00:00", i % 2, i / 4) for i in range(1000)
    ]
    for i in (3, 31, 32, 33, 64, 500, 517, 998, 999):  # piece edges, neighbours, the end
        rows[i] = (i, "2025-02-30 10:00:00", rows[i][2], rows[i][3])
    for i in (7, 33, 640):
        rows[i] = (i, rows[i][1], "maybe", rows[i][3])
    rows[700] = (700, rows[700][1], 1, "n/a")
    fast = policy.TableGuard(table, tmp_path / "fast", None)
    slow = policy.TableGuard(table, tmp_path / "slow", None)
    transform = transforms.build_batch_transform(table, fast, encode=encode)
    assert transform is not None
    out, kept = transform((rows, rows))
    expected, expected_kept = slow.convert(rows, transforms.column_transforms(table))
    fast.close()
    slow.close()
    # as the COPY sends them: the fast forms hand timestamptz over naive where the local
    # time is UTC (or as bytes with encode), the row-by-row path aware
    out = [(i, codecs.encode_timestamptz(s), f, codecs.encode_numeric(a)) for i, s, f, a in out]
    expected = [
        (i, codecs.encode_timestamptz(s), f, codecs.encode_numeric(a)) for i, s, f, a in expected
    ]
    assert out == expected and kept == expected_kept
    assert len(kept) == 1000 - 9 - 1 and kept[0] == rows[0]
    assert [r[2] for r in out if r[0] in (7, 640)] == [None, None]
    assert replace(fast.accounts, reject_file=None) == replace(slow.accounts, reject_file=None)
    assert fast.accounts.rejected == 10
    files = [sorted((tmp_path / side).rglob("*.jsonl")) for side in ("fast", "slow")]
    assert [p.read_text() for p in files[0]] == [p.read_text() for p in files[1]] != []


def test_single_column_tables_work() -> None:
    transform = transforms.build_batch_transform(_table(("flag", "boolean", "bool")))
    assert transform is not None
    batch: list[tuple[Any, ...]] = [(1,), (None,), ("f",)]
    assert transform((batch, batch))[0] == [(True,), (None,), (False,)]


@pytest.mark.parametrize(
    ("text", "repeated"),
    [
        ('{"a":1,"a":2}', "a"),
        ('{"a":{"b":1,"b":2}}', "b"),
        ('{"a":1,"\\u0061":2}', "a"),  # the same key, escaped
        ('{"a\\u003a":1,"a:":2}', "a:"),  # an escaped colon does not hide it
        ('{"n":123456789012345678901234567890123,"n":1}', "n"),  # beyond orjson
        ('[{"a":1},{"a":2}]', None),  # one key per object
        ('{"x":"a:b","y":"c:d"}', None),  # colons in strings
        ('{"c": 1e2}', None),
        ('["read","write"]', None),
    ],
)
def test_a_json_object_repeating_a_key_is_refused(text: str, repeated: str | None) -> None:
    """jsonb keeps a repeated key's last value where SQLite's json functions read the
    first: such a document is refused (the column's policy decides), never collapsed."""
    if repeated is None:
        assert transforms.to_json(text) == text
        return
    with pytest.raises(ValueError, match=f"the key {repeated!r} twice"):
        transforms.to_json(text)
