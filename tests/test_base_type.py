"""The one parser of a target type's base name, which every phase compares types by."""

from __future__ import annotations

import pytest

from asyncmig.plan.model import base_type


@pytest.mark.parametrize(
    ("pg_type", "base"),
    [
        ("numeric(12, 2)", "numeric"),
        ("Numeric (12,2)", "numeric"),
        ("varchar(255)", "varchar"),
        ("double  precision", "double precision"),
        (" timestamp(3) with time zone", "timestamp"),
        ("timestamptz", "timestamptz"),
        ("JSONB", "jsonb"),
        ("", ""),
        (None, ""),
    ],
)
def test_base_type(pg_type: str | None, base: str) -> None:
    assert base_type(pg_type) == base
