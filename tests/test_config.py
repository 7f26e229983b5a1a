"""Profiles: what they may say, what they refuse, and renamed or excluded tables end to end."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from asyncmig.errors import UsageError
from asyncmig.plan.builder import build_plan
from asyncmig.plan.overrides import load_overrides, parse_overrides
from tests.fix_run import migrate
from tests.sources import build_kitchen_sink


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tables.t]\nexclud = true\n", "unknown key(s) ['exclud']"),
        ('[tables.t.columns.c]\nrename = ""\n', "rename must be a non-empty string"),
        ('[tables.t.columns.c]\non_invalid_json = "maybe"\n', "on_invalid_json must be one of"),
        ('[tables.t.columns.c]\nepoch = "days"\n', "epoch must be one of"),
        ('[[tables.t.indexes]]\nname = "i"\ncolumns = []\n', "needs at least one column"),
        ('[[tables.t.indexes]]\nname = "i"\nmethod = "rtree"\ncolumns = ["c"]\n', "method must be"),
        ('colour = "blue"\n', "unknown key(s) ['colour']"),
    ],
)
def test_mistakes_in_a_profile_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_overrides(path)
    assert message in str(caught.value)


def test_a_profile_naming_what_the_source_lacks_is_refused(tmp_path: Path) -> None:
    source = build_kitchen_sink(tmp_path / "k.db")
    for data, missing in (
        ({"tables": {"nope": {"exclude": True}}}, "'nope'"),
        ({"tables": {"user": {"columns": {"nope": {"type": "text"}}}}}, "user.nope"),
    ):
        with pytest.raises(UsageError, match=missing):
            build_plan(source, overrides=parse_overrides(data, "test"))


async def test_renamed_and_excluded_tables(tmp_path: Path, pg_dsn: str) -> None:
    """A renamed parent keeps its children's foreign keys; an excluded table is not created."""
    source = build_kitchen_sink(tmp_path / "k.db")
    overrides = parse_overrides(
        {
            "tables": {
                "user": {"rename": "app_user"},
                "chicken": {"exclude": True},
                "egg": {"exclude": True},
            }
        },
        "test",
    )
    report = await migrate(source, pg_dsn, overrides=overrides)
    assert all(c.ok for c in report.checks)
    conn = await asyncpg.connect(pg_dsn)
    try:
        tables = {
            r[0]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        parents = {
            r[0]
            for r in await conn.fetch(
                "SELECT confrelid::regclass::text FROM pg_constraint WHERE contype = 'f'"
            )
        }
        emails = [r[0] for r in await conn.fetch("SELECT email FROM app_user ORDER BY id")]
    finally:
        await conn.close()
    assert "app_user" in tables and "user" not in tables
    assert not {"chicken", "egg"} & tables
    assert "app_user" in parents
    assert emails == ["ann@example.com", "bob@example.com", "cé@example.com"]
