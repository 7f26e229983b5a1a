"""A plain-SQL backup of what a rollback removes, restorable with ``psql -f``.

The file holds, for the run's tables: the schema, the extensions and collations their
columns and indexes use, ``CREATE TABLE`` with every column's type, default, identity
and collation, the rows as ``COPY ... FROM stdin`` blocks (streamed from the server in
COPY's text format, so memory stays bounded whatever the table's size), identity
sequences where they stood, constraints, indexes and statistics, the triggers with their
functions; then the objects a ``DROP ... CASCADE`` removes with the tables: views built
on them and foreign keys from other tables. Those are restored only where every other
table they need exists (a guarded ``DO`` block), so the file restores into an empty
database as well as into the database it came from. It is one transaction: all of it
or nothing. It is written private and exclusive (see :mod:`asyncmig.target.files`) and its
SHA-256 computed while writing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import anyio
import asyncpg

from asyncmig.errors import LocalFileError
from asyncmig.quoting import (
    name_text,
    qualified,
    quote_ident,
    quote_literal,
    requote,
    sql_comment,
)
from asyncmig.target import files, tablestate

COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid) AS default, a.attidentity::text AS attidentity, a.attgenerated::text AS attgenerated,
       CASE WHEN a.attcollation <> t.typcollation THEN cn.nspname END AS coll_schema,
       co.collname AS coll_name
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""

# foreign keys ($2) after every table's keys: a key must exist before one references it
CONSTRAINTS_SQL = """
SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
WHERE conrelid = $1 AND contype::text = ANY($2::text[]) ORDER BY contype <> 'p', conname
"""

INDEXES_SQL = """
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
WHERE i.indrelid = $1 AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid
                                      AND c.conrelid = i.indrelid)
ORDER BY i.indexrelid
"""

EXTRAS_SQL = """
SELECT pg_get_statisticsobjdef(oid) FROM pg_statistic_ext WHERE stxrelid = $1
UNION ALL
SELECT pg_get_functiondef(t.tgfoid) || ';' FROM pg_trigger t
WHERE t.tgrelid = $1 AND NOT t.tgisinternal
UNION ALL
SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = $1 AND NOT t.tgisinternal
"""

COLLATIONS_SQL = """
SELECT DISTINCT n.nspname, c.collname,
       c.collprovider::text AS collprovider, c.collisdeterministic,
       coalesce(to_jsonb(c) ->> 'colllocale', to_jsonb(c) ->> 'colliculocale',
                c.collcollate) AS locale
FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
JOIN pg_namespace n ON n.oid = c.collnamespace
WHERE a.attrelid = ANY($1::oid[]) AND n.nspname <> 'pg_catalog'
"""

IDENTITY_SEQUENCES_SQL = """
SELECT a.attname, sn.nspname, s.relname FROM pg_attribute a
JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = a.attrelid
     AND d.refobjsubid = a.attnum AND d.classid = 'pg_class'::regclass AND d.deptype = 'i'
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_namespace sn ON sn.oid = s.relnamespace
WHERE a.attrelid = $1 AND a.attidentity <> '' AND NOT a.attisdropped ORDER BY a.attnum
"""

# views (and materialized views) over the tables, and over those views, in creation order
VIEWS_SQL = """
WITH RECURSIVE deps(view, ref, depth) AS (
    SELECT r.ev_class, d.refobjid, 1 FROM pg_depend d
    JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
    WHERE d.refobjid = ANY($1::oid[]) AND r.ev_class <> d.refobjid
    UNION
    SELECT r.ev_class, d.refobjid, deps.depth + 1 FROM deps
    JOIN pg_depend d ON d.refobjid = deps.view AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class <> d.refobjid AND deps.depth < 50
)
SELECT c.oid, c.relkind::text AS relkind, n.nspname, c.relname,
       pg_get_viewdef(c.oid) AS def, max(deps.depth) AS depth,
       (SELECT array_agg(DISTINCT ARRAY[rn.nspname, rc.relname]::text[])
        FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid
        JOIN pg_class rc ON rc.oid = d.refobjid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
        WHERE r.ev_class = c.oid AND d.refobjid <> c.oid AND rc.relkind IN ('r', 'v', 'm', 'p', 'f')
       ) AS needs
FROM deps JOIN pg_class c ON c.oid = deps.view JOIN pg_namespace n ON n.oid = c.relnamespace
GROUP BY c.oid, c.relkind, n.nspname, c.relname ORDER BY depth, n.nspname, c.relname
"""

FOREIGN_KEYS_IN_SQL = """
SELECT n.nspname, c.relname, k.conname,
       pg_get_constraintdef(k.oid) AS def
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'f' AND k.confrelid = ANY($1::oid[]) AND NOT k.conrelid = ANY($1::oid[])
ORDER BY n.nspname, c.relname, k.conname
"""


@dataclass(frozen=True)
class BackupFile:
    """The backup written before a rollback; prints as its path."""

    path: Path
    sha256: str
    tables: tuple[str, ...]
    rows: int

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __getitem__(self, key: str) -> object:
        return getattr(self, key)


def backup_stem(now: datetime | None = None) -> str:
    """The name the reference guide restores from: ..._YYYYMMDD_HHMMSS."""
    return f"postgres_backup_before_rollback_{(now or datetime.now()).strftime('%Y%m%d_%H%M%S')}"


class _Output:
    """The backup file, written from the event loop through a thread, hashed as it goes.

    A write that fails (a full disk) is kept in :attr:`failed`, not raised, and what
    follows is dropped: :meth:`write` is also the sink of asyncpg's COPY, and a sink
    that raises makes asyncpg cancel the COPY mid-stream, which can leave the
    connection waiting for good when the COPY had ended meanwhile. :meth:`check`
    raises it once the COPY is over."""

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.digest = hashlib.sha256()
        self.failed: OSError | None = None

    async def write(self, data: bytes) -> None:
        if self.failed is not None:
            return
        self.digest.update(data)
        try:
            await anyio.to_thread.run_sync(self.stream.write, data)
        except OSError as exc:
            self.failed = exc

    def check(self) -> None:
        if self.failed is not None:
            raise self.failed

    async def line(self, text: str = "") -> None:
        await self.write((text + "\n").encode("utf-8"))


async def write_backup(
    conn: asyncpg.Connection, schema: str, tables: Sequence[str], directory: Path, title: str
) -> BackupFile:
    """Write the backup of ``tables`` in ``schema``; call inside a transaction, so every
    table is read from one snapshot (the rollback's own, or a repeatable-read one)."""
    for statement in [*tablestate.STABLE_OUTPUT, "SET LOCAL search_path = pg_catalog"]:
        await conn.execute(statement)  # no search path: definitions name every schema
    try:
        path, stream = await anyio.to_thread.run_sync(
            lambda: files.open_partial(directory.absolute(), backup_stem(), ".sql")
        )
    except OSError as exc:  # read-only, a file, not creatable: nothing is rolled back
        raise LocalFileError(
            f"cannot write the backup in {directory}: {exc.strerror or exc}; "
            "nothing was rolled back",
            hint="pass --backup-dir naming a directory this user can write",
        ) from None
    out = _Output(stream)
    try:
        oids = [
            int(await conn.fetchval("SELECT to_regclass($1)::oid", name_text(schema, t)))
            for t in tables
        ]
        await _header(out, conn, schema, title, oids)
        rows = 0
        for table, oid in zip(tables, oids, strict=True):
            rows += await _table(out, conn, schema, table, oid)
            out.check()  # no further table read for a backup that cannot be written
        for table, oid in zip(tables, oids, strict=True):
            await _after_data(out, conn, schema, table, oid)
        for table, oid in zip(tables, oids, strict=True):
            await _constraints(out, conn, qualified(schema, table), oid, ["f"])
        await _dependents(out, conn, oids)
        await out.line("COMMIT;")
        out.check()
        await anyio.to_thread.run_sync(stream.close)  # its last flush may fail too
        path = await anyio.to_thread.run_sync(files.publish, path)
    except BaseException as exc:
        with anyio.CancelScope(shield=True):  # a half-written backup must not pass for one
            await anyio.to_thread.run_sync(files.discard, stream, path)
        if isinstance(exc, OSError):  # a full disk: nothing is rolled back without it
            raise LocalFileError(
                f"cannot write the backup {path.with_suffix('')}: {exc.strerror or exc}; "
                "nothing was rolled back",
                hint="free space there, or pass --backup-dir naming a directory with room",
            ) from None
        raise
    return BackupFile(path, out.digest.hexdigest(), tuple(tables), rows)


async def _header(
    out: _Output, conn: asyncpg.Connection, schema: str, title: str, oids: list[int]
) -> None:
    for text in (
        title,
        f"written {datetime.now(UTC).isoformat(timespec='seconds')}",
        "restore into an empty database (or this one) with",
        "  psql -v ON_ERROR_STOP=1 -d DATABASE -f THIS_FILE",
    ):
        await out.line(sql_comment(text))
    for statement in (
        "SET client_encoding = 'UTF8'",
        "SET standard_conforming_strings = on",
        "SET check_function_bodies = false",
        "SET DateStyle = 'ISO, YMD'",
        "SET client_min_messages = warning",
        "BEGIN",
        f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}",
    ):
        await out.line(statement + ";")
    for (name,) in await conn.fetch(
        "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY extname"
    ):
        await out.line(f"CREATE EXTENSION IF NOT EXISTS {quote_ident(name)};")
    for row in await conn.fetch(COLLATIONS_SQL, oids):
        provider = {"i": "icu", "c": "libc"}.get(row["collprovider"], "libc")
        await out.line(
            f"CREATE COLLATION IF NOT EXISTS {qualified(row['nspname'], row['collname'])} "
            f"(provider = {provider}, "
            f"locale = {quote_literal(row['locale'] or '')}, "
            f"deterministic = {'true' if row['collisdeterministic'] else 'false'});"
        )


async def _table(out: _Output, conn: asyncpg.Connection, schema: str, table: str, oid: int) -> int:
    """CREATE TABLE, then its rows in one COPY block; returns the row count."""
    target = qualified(schema, table)
    columns = await conn.fetch(COLUMNS_SQL, oid)
    await out.line(f"\nCREATE TABLE {target} (")
    await out.line(",\n".join(f"    {_column_sql(c)}" for c in columns))
    await out.line(");")
    copied = [c["attname"] for c in columns if not c["attgenerated"]]
    await out.line(f"COPY {target} ({', '.join(quote_ident(c) for c in copied)}) FROM stdin;")
    status = await conn.copy_from_query(
        f"SELECT {', '.join(quote_ident(c) for c in copied)} FROM {target}",
        output=out.write,
        format="text",
    )
    await out.line("\\.")
    return int(status.split()[-1])


def _column_sql(column: asyncpg.Record) -> str:
    parts = [quote_ident(column["attname"]), requote(column["type"])]
    if column["coll_schema"]:
        parts.append(f"COLLATE {qualified(column['coll_schema'], column['coll_name'])}")
    if column["attidentity"]:
        parts.append(
            "GENERATED "
            + ("ALWAYS" if column["attidentity"] == "a" else "BY DEFAULT")
            + " AS IDENTITY"
        )
    elif column["attgenerated"]:
        parts.append(f"GENERATED ALWAYS AS ({requote(column['default'])}) STORED")
    elif column["default"] is not None:
        parts.append(f"DEFAULT {requote(column['default'])}")
    if column["attnotnull"]:
        parts.append("NOT NULL")
    return " ".join(parts)


async def _after_data(
    out: _Output, conn: asyncpg.Connection, schema: str, table: str, oid: int
) -> None:
    """Identity sequences where they stood, constraints, indexes, statistics, triggers."""
    target = qualified(schema, table)
    for row in await conn.fetch(IDENTITY_SEQUENCES_SQL, oid):
        value = await conn.fetchrow(
            f"SELECT last_value, is_called FROM {qualified(row['nspname'], row['relname'])}"
        )
        assert value is not None
        await out.line(
            f"SELECT setval(pg_get_serial_sequence({quote_literal(name_text(schema, table))}, "
            f"{quote_literal(row['attname'])}), {int(value[0])}, "
            f"{'true' if value[1] else 'false'});"
        )
    await _constraints(out, conn, target, oid, ["p", "u", "c", "x"])
    for (statement,) in [*await conn.fetch(INDEXES_SQL, oid), *await conn.fetch(EXTRAS_SQL, oid)]:
        await out.line(requote(statement.rstrip().rstrip(";")) + ";")


async def _constraints(
    out: _Output, conn: asyncpg.Connection, target: str, oid: int, kinds: list[str]
) -> None:
    for row in await conn.fetch(CONSTRAINTS_SQL, oid, kinds):
        await out.line(
            f"ALTER TABLE {target} ADD CONSTRAINT {quote_ident(row['conname'])} "
            f"{requote(row['def'])};"
        )


async def _dependents(out: _Output, conn: asyncpg.Connection, oids: list[int]) -> None:
    """Views over the tables and foreign keys into them, each where what it needs exists."""
    backed_up = {
        (r[0], r[1])
        for r in await conn.fetch(
            "SELECT n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1::oid[])",
            oids,
        )
    }
    for view in await conn.fetch(VIEWS_SQL, oids):
        kind = "MATERIALIZED VIEW" if view["relkind"] == "m" else "VIEW"
        name = (view["nspname"], view["relname"])
        needs = [(s, n) for s, n in view["needs"] or [] if (s, n) not in backed_up]
        definition = requote(view["def"].rstrip(";"))
        await out.line(guarded(f"CREATE {kind} {qualified(*name)} AS {definition}", needs))
        backed_up.add(name)
    for key in await conn.fetch(FOREIGN_KEYS_IN_SQL, oids):
        holder = (key["nspname"], key["relname"])
        await out.line(
            guarded(
                f"ALTER TABLE {qualified(*holder)} ADD CONSTRAINT "
                f"{quote_ident(key['conname'])} {requote(key['def'])}",
                [holder],
            )
        )


def guarded(statement: str, needs: Sequence[tuple[str, str]]) -> str:
    """``statement``, run only when every relation in ``needs`` (schema, name) exists."""
    if not needs:
        return statement + ";"
    tag = "$restore$"
    while tag in statement:
        tag = tag[:-1] + "_$"
    condition = " AND ".join(
        f"to_regclass({quote_literal(name_text(*n))}) IS NOT NULL" for n in needs
    )
    return (
        f"DO {tag} BEGIN IF {condition} THEN EXECUTE {quote_literal(statement)}; END IF; END {tag};"
    )
