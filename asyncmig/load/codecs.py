"""Binary COPY values for ``timestamptz``, ``numeric`` and ``inet``, encoded in the
transform.

asyncpg's own encoders for these types do Python object work per value (a
``Decimal.as_tuple()`` and a digit loop; an ``astimezone`` and a ``timedelta``; an
``ipaddress`` object): measured, about 0.9, 1.1 and 4 µs a value, most of a row's
encoding time. The load's transform therefore hands them over already in PostgreSQL's
binary form, as ``bytes``:

- ``timestamptz`` from ISO text: ``(datetime - 2000-01-01) // 1 µs`` packed as int64,
  two C-level operations on the datetime the transform parses anyway;
- ``numeric`` from a REAL or an INTEGER: the bytes asyncpg would send for the same
  ``Decimal``, kept in a bounded cache per value (prices, quantities and rates repeat);
- ``inet`` from a plain address: packed by ``inet_pton`` (:func:`inet_bytes`).

The load's connection then encodes these types with :func:`encode_timestamptz`,
:func:`encode_numeric` and :func:`encode_inet` (``set_type_codec``): ``bytes`` pass
through as they are, and anything else (values from the per-row paths, other
statements) is encoded exactly as asyncpg does, so a value never depends on which path
it took. The ``decode_*`` functions read results back as asyncpg does.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import asyncpg

UTC = dt.UTC
PG_EPOCH = dt.datetime(2000, 1, 1)
PG_EPOCH_UTC = dt.datetime(2000, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = dt.timedelta(microseconds=1)
INT64 = struct.Struct("!q")
pack_int64 = INT64.pack

# asyncpg's infinity conventions (asyncpg/pgproto/codecs/datetime.pyx)
INFINITY = dt.datetime(dt.MAXYEAR, 12, 31, 23, 59, 59, 999999)
NEGATIVE_INFINITY = dt.datetime(dt.MINYEAR, 1, 1)
INFINITY_MICROS = 252455615999999999
NEGATIVE_INFINITY_MICROS = -63082281600000000
PG_INFINITY = pack_int64(0x7FFFFFFFFFFFFFFF)
PG_NEGATIVE_INFINITY = pack_int64(-0x8000000000000000)

# the types whose values the load's transform may hand over as bytes
ENCODED_TYPES = ("timestamptz", "numeric", "inet")


def timestamptz_micros(value: dt.datetime) -> bytes:
    """A naive datetime read as UTC (the load's policy), as PostgreSQL's int64."""
    return pack_int64((value - PG_EPOCH) // ONE_MICROSECOND)


def encode_timestamptz(value: Any) -> bytes:
    """``bytes`` as they are; anything else as asyncpg's timestamptz encoder, but
    exactly: ``0001-01-01 00:00:00`` (``datetime.min``) and ``9999-12-31
    23:59:59.999999`` are those instants, not -infinity and infinity (SQLite has no
    infinite dates, and .NET writes year 1 as its default date)."""
    if type(value) is bytes:
        return value
    if not isinstance(value, dt.datetime):
        if not isinstance(value, dt.date):
            raise TypeError(
                f"expected a datetime.date or datetime.datetime instance, got {type(value).__name__!r}"
            )
        local = dt.datetime.now(UTC).astimezone().utcoffset() or dt.timedelta(0)
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone(local))
    if value.tzinfo is None:  # naive: UTC (the load's policy), as timestamptz_micros
        return timestamptz_micros(value)
    delta = value.astimezone(UTC) - PG_EPOCH_UTC
    return pack_int64((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)


def decode_timestamptz(data: bytes) -> dt.datetime:
    """As asyncpg: an aware UTC datetime, or its infinity stand-ins."""
    (micros,) = INT64.unpack(data)
    if data == PG_INFINITY:
        return INFINITY
    if data == PG_NEGATIVE_INFINITY:
        return NEGATIVE_INFINITY
    return PG_EPOCH_UTC + dt.timedelta(0, micros // 1_000_000, micros % 1_000_000)


# numeric, as asyncpg/pgproto/codecs/numeric.pyx
DEC_DIGITS = 4
MAX_DSCALE = 0x3FFF
NUMERIC_POS, NUMERIC_NEG = 0x0000, 0x4000
NUMERIC_NAN, NUMERIC_PINF, NUMERIC_NINF = 0xC000, 0xD000, 0xF000
HEADER = struct.Struct("!hhHH")


def encode_numeric(value: Any) -> bytes:
    """``bytes`` as they are; anything else exactly as asyncpg's numeric encoder."""
    if type(value) is bytes:
        return value
    return numeric_bytes(value)


def numeric_bytes(value: Any) -> bytes:
    """PostgreSQL's binary numeric for ``value``, byte for byte what asyncpg sends."""
    number = value if isinstance(value, Decimal) else Decimal(value)
    sign_bit, digits, exponent = number.as_tuple()
    if exponent in ("n", "N"):
        return HEADER.pack(0, 0, NUMERIC_NAN, 0)
    if exponent == "F":
        return HEADER.pack(0, 0, NUMERIC_NINF if sign_bit else NUMERIC_PINF, 0)
    assert isinstance(exponent, int)
    if exponent < 0 and -exponent > MAX_DSCALE:
        raise ValueError("cannot encode Decimal value into numeric: exponent is too small")
    dweight = len(digits) + exponent - 1
    if dweight >= 0:
        weight = (dweight + DEC_DIGITS) // DEC_DIGITS - 1
    else:
        weight = -((-dweight - 1) // DEC_DIGITS + 1)
    if weight > 2**16 - 1:
        raise ValueError("cannot encode Decimal value into numeric: exponent is too large")
    padding = (weight + 1) * DEC_DIGITS - (dweight + 1)
    count = (len(digits) + padding + DEC_DIGITS - 1) // DEC_DIGITS
    if count > 2**16 - 1:
        raise ValueError("cannot encode Decimal value into numeric: number of digits is too large")
    padded = (0,) * DEC_DIGITS + digits + (0,) * DEC_DIGITS
    start = DEC_DIGITS - padding
    groups = [
        padded[j] * 1000 + padded[j + 1] * 100 + padded[j + 2] * 10 + padded[j + 3]
        for j in range(start, start + count * DEC_DIGITS, DEC_DIGITS)
    ]
    scale = -exponent if exponent < 0 else 0
    sign = NUMERIC_NEG if sign_bit else NUMERIC_POS
    # int16 wrap-around as asyncpg's C casts do (weight and count fit, as checked above)
    return HEADER.pack(_int16(count), _int16(weight), sign, scale) + struct.pack(
        f"!{count}h", *groups
    )


# header and ``n`` digit groups in one pack, for the group counts a double's repr gives
_PACK_GROUPS = [struct.Struct(f"!hhHH{n}h").pack for n in range(16)]


def float_numeric_bytes(value: float) -> bytes:
    """``numeric_bytes(Decimal(repr(value)))`` (a double as the decimal it prints as),
    computed from ``repr`` directly for the plain spellings (no exponent, not zero):
    about two thirds of the Decimal route's time, for columns of distinct prices."""
    text = repr(value)
    whole, dot, fraction = text.partition(".")
    if not dot or "e" in fraction or not value:  # 1e+16, 1.5e-05, nan, inf, 0.0, -0.0
        return numeric_bytes(Decimal(text))
    negative = whole[0] == "-"
    if negative:
        whole = whole[1:]
    if whole == "0":  # a leading zero is no digit; repr's at most three zeros after
        whole = ""  # the point leave the first group of the fraction non-zero
    lead = -len(whole) % DEC_DIGITS
    digits = "0" * lead + whole + fraction + "0" * (-len(fraction) % DEC_DIGITS)
    count = len(digits) // DEC_DIGITS
    if count >= len(_PACK_GROUPS):
        return numeric_bytes(Decimal(text))
    number = int(digits)
    groups = [0] * count
    for i in range(count - 1, -1, -1):
        number, groups[i] = divmod(number, 10_000)
    weight = (lead + len(whole)) // DEC_DIGITS - 1
    sign = NUMERIC_NEG if negative else NUMERIC_POS
    return _PACK_GROUPS[count](count, weight, sign, len(fraction), *groups)


def _int16(number: int) -> int:
    return (number + 2**15) % 2**16 - 2**15


def decode_numeric(data: bytes) -> Decimal:
    """As asyncpg: the same Decimal, exponent and digits alike (its text form, rebuilt)."""
    count, weight, sign, scale = HEADER.unpack_from(data)
    if sign == NUMERIC_NAN:
        return Decimal("NaN")
    if sign == NUMERIC_PINF:
        return Decimal("Infinity")
    if sign == NUMERIC_NINF:
        return Decimal("-Infinity")
    if count == 0:
        return Decimal(f"0e-{scale}")
    groups = struct.unpack_from(f"!{count}h", data, HEADER.size)
    first = groups[0]
    padding = 0
    if weight >= 0:
        padding = 3 if first < 10 else 2 if first < 100 else 1 if first < 1000 else 0
    digits = (str(first) if weight >= 0 else f"{first:04d}") + "".join(
        f"{group:04d}" for group in groups[1:]
    )
    if scale:  # exactly ``scale`` fraction digits
        adjust = scale - (count - weight - 1) * DEC_DIGITS
        digits = digits + "0" * adjust if adjust > 0 else digits[: len(digits) + adjust]
    exponent = (weight + 1) * DEC_DIGITS - padding
    text = ("-" if sign == NUMERIC_NEG else "") + "0." + digits
    if exponent:
        text += f"E{exponent:+d}"
    return Decimal(text)


class EncodedCache(dict[Any, bytes]):
    """Values' encodings (``encode``), computed once each: a bounded memo for repeating
    values.

    Keys are of one Python type per cache (``1`` and ``1.0`` are equal dict keys but
    different numerics). Zero is never kept (``0.0`` and ``-0.0`` are equal keys).
    """

    LIMIT = 50_000  # about 5 MB of small bytes objects and keys at most

    def __init__(self, encode: Callable[[Any], bytes]) -> None:
        super().__init__()
        self.encode = encode

    def __missing__(self, value: Any) -> bytes:
        encoded = self.encode(value)
        if value and len(self) < self.LIMIT:
            self[value] = encoded
        return encoded


PGSQL_AF_INET, PGSQL_AF_INET6 = 2, 3  # PostgreSQL's own family numbers (AF_INET + 1)
# family, bits, is_cidr, address length: a host address's header
_HOST4 = bytes((PGSQL_AF_INET, 32, 0, 4))
_HOST6 = bytes((PGSQL_AF_INET6, 128, 0, 16))


def inet_bytes(value: str) -> bytes | str:
    """A plain address as PostgreSQL's binary inet: the bytes asyncpg sends for it
    (``ip_address(value)``: the family, all bits, not a network), packed by the C
    ``inet_pton`` instead of Python's ``ipaddress`` (about 4 µs a value). Anything
    else (a prefix, a spelling ``inet_pton`` refuses) is handed on as it is, for
    :func:`encode_inet` to encode as asyncpg does."""
    if "/" in value:
        return value
    try:
        if ":" in value:
            return _HOST6 + socket.inet_pton(socket.AF_INET6, value)
        return _HOST4 + socket.inet_pton(socket.AF_INET, value)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return value


def encode_inet(value: Any) -> bytes:
    """``bytes`` as they are; anything else exactly as asyncpg's inet encoder
    (asyncpg/pgproto/codecs/network.pyx): an address, else an interface (a network
    flag and its prefix)."""
    if type(value) is bytes:
        return value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        interface = ipaddress.ip_interface(value)
        return inet_send(interface.version, interface.network.prefixlen, 1, interface.packed)
    return inet_send(address.version, 32 if address.version == 4 else 128, 0, address.packed)


def inet_send(version: int, bits: int, is_cidr: int, packed: bytes) -> bytes:
    """PostgreSQL's binary inet or cidr (``inet_send``): its family (2 for IPv4, 3 for
    IPv6), bits, whether a network, the address's length, the address."""
    family = PGSQL_AF_INET if version == 4 else PGSQL_AF_INET6
    return bytes((family, bits, is_cidr, len(packed))) + packed


def decode_inet(data: bytes) -> Any:
    """As asyncpg: an address, or an interface when the prefix is not all bits."""
    family, bits, is_cidr, length = data[:4]
    if is_cidr:
        raise ValueError("unexpected CIDR flag set in non-cidr value")
    if family not in (PGSQL_AF_INET, PGSQL_AF_INET6):
        raise ValueError('invalid address family in "inet" value')
    most = 32 if family == PGSQL_AF_INET else 128
    if bits > most:
        raise ValueError('invalid network prefix length in "inet" value')
    if length != most // 8:
        raise ValueError('invalid address length in "inet" value')
    packed = bytes(data[4 : 4 + length])
    if bits != most:
        return ipaddress.ip_interface((packed, bits))
    return ipaddress.ip_address(packed)


CODECS = {
    "timestamptz": (encode_timestamptz, decode_timestamptz),
    "numeric": (encode_numeric, decode_numeric),
    "inet": (encode_inet, decode_inet),
}


@asynccontextmanager
async def encoded_values(conn: asyncpg.Connection, types: Iterable[str]) -> AsyncIterator[None]:
    """``conn`` takes pre-encoded ``bytes`` for ``types`` (see the module docstring)
    while inside; asyncpg's own codecs again after (the statements that record the
    table run after the COPY)."""
    names = sorted(set(types))
    for name in names:
        encoder, decoder = CODECS[name]
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=encoder, decoder=decoder, format="binary"
        )
    yield
    # not after a failure: the connection may be broken, and these codecs give the same
    # values as asyncpg's anyway
    for name in names:
        await conn.reset_type_codec(name, schema="pg_catalog")
