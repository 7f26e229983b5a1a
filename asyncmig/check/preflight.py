"""The ``validate`` command's engine: everything a run needs, checked before it starts.

A migration that stops half-way (a missing extension, a privilege, a full disk, a
table that already exists) costs the user the time spent loading until then. These
checks ask the same questions up front, read-only on both sides, and report every
problem at once with how to fix it, instead of one error per attempted run.

Nothing here raises for a problem it finds: every finding is a :class:`Check`, and a
check that cannot be made (the server is not reachable, the file could not be
planned) is reported as failed with the reason, so the user always sees the list.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import asyncpg

from asyncmig import cutover
from asyncmig.errors import SourceError, TargetError
from asyncmig.plan import collations
from asyncmig.plan.model import Plan
from asyncmig.quoting import quote_ident
from asyncmig.source.sqlite import open_sync, source_error
from asyncmig.target import dependents
from asyncmig.target.connect import Target, connect, hang_up
from asyncmig.target.history import SCHEMA as HISTORY_SCHEMA

PASS, WARN, FAIL = "pass", "warn", "fail"
# gen_random_uuid() is core from 13 on, and runs need 13+
MIN_SERVER_VERSION = 13
MIN_SERVER_VERSION_NUM = MIN_SERVER_VERSION * 10000
SIZE_FACTOR = 1.5  # PostgreSQL's row headers and indexes make data about this much larger
CONNECT_TIMEOUT = 10.0
NOT_REACHABLE = "not checked: PostgreSQL is not reachable"
NOT_PLANNED = "not checked: the SQLite file could not be planned"

# extensions shipped in PostgreSQL's contrib, packaged separately by some distributions
CONTRIB_EXTENSIONS = frozenset(
    {
        "pg_trgm",
        "pgcrypto",
        "btree_gin",
        "btree_gist",
        "citext",
        "hstore",
        "fuzzystrmatch",
        "unaccent",
        "uuid-ossp",
        "intarray",
        "ltree",
        "cube",
        "earthdistance",
        "tablefunc",
        "pg_stat_statements",
        "postgres_fdw",
        "tsm_system_rows",
        "isn",
        "seg",
        "bloom",
    }
)


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, whether a run would work, and how to fix it."""

    name: str
    status: str  # "pass" | "warn" | "fail"
    message: str  # what was found, one line
    fix: str = ""  # what to do when warn/fail, one line


@dataclass(frozen=True)
class Server:
    """What the extension and privilege checks need to know about the connection."""

    version: str
    version_num: int
    user: str
    database: str
    superuser: bool
    database_create: bool


@dataclass(frozen=True)
class Intent:
    """What the run being validated will be given: ``--replace`` makes tables in the way
    its work (a warning), and then only the application's dependents stop it, unless
    ``--cascade``."""

    replace: bool = False
    cascade: bool = False


async def validate(
    source: Path, target: Target, plan: Plan | None, intent: Intent = Intent()
) -> list[Check]:
    """Run every check; never raises for what it finds (see the module docstring)."""
    checks, size = await anyio.to_thread.run_sync(source_checks, source)
    return checks + declared_type_checks(plan) + await target_checks(target, plan, size, intent)


def declared_type_checks(plan: Plan | None) -> list[Check]:
    """Values that do not fit the declared type the plan keeps (asyncmig.plan.contract):
    counted, with examples, before anything is loaded. A warning when their policy
    accounts for them, a failure when it would stop the run (``fail``)."""
    if plan is None:
        return [Check("declared types", FAIL, NOT_PLANNED, "fix the SQLite file first")]
    found = [(t, c) for t in plan.tables for c in t.columns if c.misfits]
    if not found:
        return [Check("declared types", PASS, "every value fits its column's declared type")]
    return [
        Check(
            "declared types",
            FAIL if column.on_error == "fail" else WARN,
            f"{table.name}.{column.name} declared {column.source_type}: "
            f"{column.misfits} value(s) do not fit {column.target_type}, e.g. "
            f"{', '.join(column.misfit_examples)}; policy {column.on_error}",
            "clean those values, choose another --on-error for them, or --widen to "
            "keep every value in a wider type",
        )
        for table, column in found
    ]


# --- the SQLite side --------------------------------------------------------------------


def source_checks(source: Path) -> tuple[list[Check], int | None]:
    """The file and integrity checks, and the file's size (None when unreadable).

    Blocking (sqlite3 reads the whole file for quick_check): run it in a thread.
    """
    try:
        conn = open_sync(source)
    except SourceError as exc:
        return [
            Check("SQLite file", FAIL, one_line(exc.message), exc.hint or ""),
            Check("SQLite integrity", FAIL, "not checked: the file could not be opened"),
        ], None
    try:
        size = source_size(source)
        file_check = Check("SQLite file", PASS, f"{source} is readable, {human_size(size)}")
        return [file_check, integrity_check(conn, source)], size
    finally:
        conn.close()


def source_size(source: Path) -> int:
    """Bytes of the database plus its WAL: both hold rows a read-only reader sees."""
    wal = Path(f"{source}-wal")
    return source.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def integrity_check(conn: sqlite3.Connection, source: Path) -> Check:
    """``PRAGMA quick_check``: a damaged page would otherwise stop the run mid-table."""
    name = "SQLite integrity"
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        error = source_error(source, exc)
        return Check(name, FAIL, one_line(error.message), error.hint or "")
    if problems == ["ok"]:
        return Check(name, PASS, "PRAGMA quick_check found no problems")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return Check(
        name,
        FAIL,
        one_line(f"the database is damaged: {problems[0]}{more}"),
        "try `sqlite3 FILE .recover` on a copy and migrate the recovered copy",
    )


# --- the PostgreSQL side ----------------------------------------------------------------


async def target_checks(
    target: Target, plan: Plan | None, size: int | None, intent: Intent = Intent()
) -> list[Check]:
    """Connect once and run the server checks; all fail as 'not reachable' without it."""
    try:
        conn = await connect(target, timeout=CONNECT_TIMEOUT)
    except TargetError as exc:
        connection = Check("PostgreSQL connection", FAIL, one_line(exc.message), exc.hint or "")
        return [connection, *unreachable_checks(plan)]
    try:
        return await server_checks(conn, target, plan, size, intent)
    finally:
        await hang_up(conn)


def unreachable_checks(plan: Plan | None) -> list[Check]:
    """The checks that need a server, each failed: a user must not read them as passed."""
    names = ["PostgreSQL version"]
    names += [f"extension {e}" for e in plan.extensions] if plan else ["extensions"]
    names += ["privileges", "history", "disk space", "existing objects"]
    return [Check(name, FAIL, NOT_REACHABLE, "fix the connection first") for name in names]


async def server_checks(
    conn: asyncpg.Connection,
    target: Target,
    plan: Plan | None,
    size: int | None,
    intent: Intent = Intent(),
) -> list[Check]:
    """Every check after a successful connection, in the order a run meets them."""
    try:
        server = await describe_server(conn)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        failure = Check(
            "PostgreSQL connection", FAIL, one_line(f"connected to {target.safe}, then: {exc}")
        )
        return [failure, *unreachable_checks(plan)]
    checks = [
        Check(
            "PostgreSQL connection",
            PASS,
            f"connected to {target.safe} as {server.user}, database {server.database}",
        ),
        version_check(server),
    ]
    checks += await guarded(["extensions"], lambda: extension_checks(conn, server, plan))
    checks += await guarded(["privileges"], lambda: privilege_checks(conn, server, plan))
    checks += await guarded(["history"], lambda: history_checks(conn, server))
    checks += await guarded(["disk space"], lambda: disk_checks(conn, size))
    checks += await guarded(["existing objects"], lambda: existing_checks(conn, plan, intent))
    checks += await guarded(["collations"], lambda: collation_checks(conn, plan))
    return checks


async def collation_checks(conn: asyncpg.Connection, plan: Plan | None) -> list[Check]:
    """NOCASE columns stay case-insensitive only where the server has ICU: say which."""
    if plan is None or not collations.uses_nocase(plan):
        return []
    columns = ", ".join(collations.without_nocase(plan)[1]) or "index keys"
    reason = await collations.icu_refusal(conn)
    if reason is None:
        return [Check("collations", PASS, f"case-insensitive ICU collation for {columns}")]
    return [
        Check(
            "collations",
            WARN,
            one_line(
                f"no ICU collation ({reason}): NOCASE {columns} will compare "
                "case-sensitively; their indexes use lower()"
            ),
            "use a PostgreSQL built with ICU to keep them case-insensitive",
        )
    ]


async def guarded(names: list[str], run: Callable[[], Awaitable[list[Check]]]) -> list[Check]:
    """Run one group of checks; a query that fails becomes a failed check, not an exception."""
    try:
        return await run()
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        return [Check(name, FAIL, one_line(f"could not be checked: {exc}")) for name in names]


async def describe_server(conn: asyncpg.Connection) -> Server:
    """One query for who we are and what we may do in this database."""
    row = await conn.fetchrow(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
        " current_user, current_database(),"
        " coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false),"
        " has_database_privilege(current_database(), 'CREATE')"
    )
    return Server(str(row[0]), int(row[1]), str(row[2]), str(row[3]), bool(row[4]), bool(row[5]))


def version_check(server: Server) -> Check:
    """Runs rely on 13+ features (gen_random_uuid in core, trusted extensions, ...)."""
    message = f"PostgreSQL {server.version}"
    if server.version_num < MIN_SERVER_VERSION_NUM:
        return Check(
            "PostgreSQL version",
            FAIL,
            f"{message}: version 13 or newer needed",
            "upgrade the server to PostgreSQL 13 or newer",
        )
    return Check("PostgreSQL version", PASS, message)


# --- extensions -------------------------------------------------------------------------


def required_extensions(plan: Plan, version_num: int) -> list[str]:
    """The plan's extensions, plus pgcrypto where gen_random_uuid() is not yet core (< 13)."""
    needed = list(plan.extensions)
    if version_num < MIN_SERVER_VERSION_NUM and uses_gen_random_uuid(plan):
        needed.append("pgcrypto")
    return list(dict.fromkeys(needed))


def uses_gen_random_uuid(plan: Plan) -> bool:
    return any(
        "gen_random_uuid(" in (column.default or "")
        for table in plan.tables
        for column in table.columns
    )


async def extension_checks(
    conn: asyncpg.Connection, server: Server, plan: Plan | None
) -> list[Check]:
    """One check per extension the run will CREATE: a refused CREATE EXTENSION stops it."""
    if plan is None:
        return [Check("extensions", FAIL, NOT_PLANNED, "fix the SQLite file first")]
    return [
        await extension_check(conn, server, name)
        for name in required_extensions(plan, server.version_num)
    ]


async def extension_check(conn: asyncpg.Connection, server: Server, name: str) -> Check:
    """Installed, or available and creatable by this user (superuser, or trusted + CREATE)."""
    check = f"extension {name}"
    row = await conn.fetchrow(
        "SELECT installed_version, default_version FROM pg_available_extensions WHERE name = $1",
        name,
    )
    if row is None:
        return Check(
            check,
            FAIL,
            f"{name} is not available on the server",
            f"install {package_hint(name, server)} on the server",
        )
    if row[0] is not None:
        return Check(check, PASS, f"{name} {row[0]} is installed")
    trusted = await is_trusted(conn, server, name, str(row[1]))
    if server.superuser:
        return Check(check, PASS, f"{name} is available; {server.user} is a superuser")
    if trusted and server.database_create:
        return Check(check, PASS, f"{name} is available and trusted; {server.user} can create it")
    why = "needs CREATE on the database" if trusted else "is not trusted"
    return Check(
        check,
        FAIL,
        f"{name} is available but {server.user} cannot create it: it {why}",
        f"ask a superuser to run CREATE EXTENSION {quote_ident(name)} "
        f"in database {quote_ident(server.database)}",
    )


async def is_trusted(conn: asyncpg.Connection, server: Server, name: str, version: str) -> bool:
    """Trusted extensions (13+) may be created by any user with CREATE on the database."""
    if server.version_num < MIN_SERVER_VERSION_NUM:
        return False
    value = await conn.fetchval(
        "SELECT trusted FROM pg_available_extension_versions WHERE name = $1 AND version = $2",
        name,
        version,
    )
    return bool(value)


def package_hint(name: str, server: Server) -> str:
    """The OS package that usually provides ``name``: contrib, or the extension's own."""
    major = server.version_num // 10000
    if name in CONTRIB_EXTENSIONS:
        return f"the contrib package (postgresql-contrib; postgresql-{major}-contrib on Debian)"
    return f"the package providing the {name} extension for PostgreSQL {major}"


# --- privileges -------------------------------------------------------------------------


async def privilege_checks(
    conn: asyncpg.Connection, server: Server, plan: Plan | None
) -> list[Check]:
    """CREATE in the target schema, or on the database when the run must create the schema."""
    if plan is None:
        return [Check("privileges", FAIL, NOT_PLANNED, "fix the SQLite file first")]
    if await conn.fetchval("SELECT current_setting('transaction_read_only')") == "on":
        return [  # a standby, or default_transaction_read_only: privileges are moot
            Check(
                "privileges",
                FAIL,
                f"{server.user} can write nothing in database {quote_ident(server.database)}: "
                "its sessions are read-only (a standby, or default_transaction_read_only)",
                "connect to the primary, or ALTER ROLE ... SET default_transaction_read_only = off",
            )
        ]
    row = await conn.fetchrow(
        "SELECT has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = $1",
        plan.schema,
    )
    if row is None:
        return [database_privilege_check(server, plan.schema)]
    return [schema_privilege_check(server, plan.schema, bool(row[0]))]


async def require_create_privilege(conn: asyncpg.Connection, plan: Plan) -> None:
    """A run stops here, before reading any row, when it could not create its tables."""
    for check in await privilege_checks(conn, await describe_server(conn), plan):
        if check.status == FAIL:
            raise TargetError(f"cannot create the tables: {check.message}", hint=check.fix)


def database_privilege_check(server: Server, schema: str) -> Check:
    """The schema does not exist yet: creating it needs CREATE on the database."""
    if server.database_create:
        return Check(
            "privileges",
            PASS,
            f"{server.user} can create schema {quote_ident(schema)}"
            f" in database {quote_ident(server.database)}",
        )
    return Check(
        "privileges",
        FAIL,
        f"{server.user} cannot create schema {quote_ident(schema)}: "
        f"no CREATE on database {quote_ident(server.database)}",
        f"GRANT CREATE ON DATABASE {quote_ident(server.database)} TO {quote_ident(server.user)};",
    )


def schema_privilege_check(server: Server, schema: str, allowed: bool) -> Check:
    """The schema exists: creating tables in it needs CREATE on it.

    Without CREATE on the database a run still works in an existing schema, but the
    migration history needs its own schema (``asyncmig``) to exist already: a warning
    here, so the user learns of it before the run does.
    """
    if not allowed:
        return Check(
            "privileges",
            FAIL,
            f"{server.user} cannot create tables in schema {quote_ident(schema)}",
            f"GRANT CREATE ON SCHEMA {quote_ident(schema)} TO {quote_ident(server.user)};",
        )
    return Check(
        "privileges", PASS, f"{server.user} can create tables in schema {quote_ident(schema)}"
    )


async def history_checks(conn: asyncpg.Connection, server: Server) -> list[Check]:
    """Every run records itself in schema ``asyncmig``: can this user create or write it?

    Without CREATE on the database the schema must already exist; when it exists, the
    user needs USAGE on it and, for tables not made yet, CREATE; for tables already
    there (made by another user), the rights to read and write them.
    """
    row = await conn.fetchrow(
        "SELECT has_schema_privilege(n.oid, 'USAGE'), has_schema_privilege(n.oid, 'CREATE'), "
        "(SELECT bool_and(has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE')) "
        " FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname IN ('runs', "
        " 'run_tables')), "
        "(SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid "
        " AND c.relname IN ('runs', 'run_tables')) "
        "FROM pg_namespace n WHERE n.nspname = $1",
        HISTORY_SCHEMA,
    )
    return [history_check(server, None if row is None else tuple(row))]


def history_check(server: Server, state: tuple[bool, bool, bool | None, int] | None) -> Check:
    user, schema = quote_ident(server.user), quote_ident(HISTORY_SCHEMA)
    if state is None:
        if server.database_create:
            return Check("history", PASS, f"{server.user} can create schema {schema}")
        return Check(
            "history",
            FAIL,
            f"schema {schema} does not exist and {server.user} has no CREATE on "
            f"database {quote_ident(server.database)} to create it",
            f"as its owner or a superuser: CREATE SCHEMA {schema} AUTHORIZATION {user};",
        )
    usage, create, writable, tables = state
    if not usage or (tables < 2 and not create):
        return Check(
            "history",
            FAIL,
            f"{server.user} cannot create the history in schema {schema}",
            f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {user};",
        )
    if tables and not writable:
        return Check(
            "history",
            FAIL,
            f"{server.user} cannot write the history tables in schema {schema}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {user};",
        )
    return Check("history", PASS, f"{server.user} can keep the history in schema {schema}")


# --- disk space -------------------------------------------------------------------------


async def disk_checks(conn: asyncpg.Connection, size: int | None) -> list[Check]:
    """Free space where the server keeps its data, when this machine can see it."""
    if size is None:
        return [
            Check(
                "disk space",
                FAIL,
                "not checked: the SQLite file could not be read",
                "fix the SQLite file first",
            )
        ]
    estimate = int(size * SIZE_FACTOR)
    needs = f"needs about {human_size(estimate)} (1.5x the SQLite file's {human_size(size)})"
    free = await local_free_space(conn)
    if free is None:  # a remote server, or no right to see its data directory: not a risk
        return [
            Check(
                "disk space",
                PASS,
                f"not measured (the server's disk is not visible from here); {needs}",
            )
        ]
    return [disk_space_check(free, estimate, needs)]


def disk_space_check(free: int, estimate: int, needs: str) -> Check:
    """Fail below the estimate; warn below twice it (indexes are built after the data)."""
    message = f"{human_size(free)} free; {needs}"
    if free < estimate:
        return Check(
            "disk space",
            FAIL,
            message,
            f"free at least {human_size(estimate - free)} on the server's data disk",
        )
    if free < 2 * estimate:
        return Check("disk space", WARN, message, "little room to spare: free some space")
    return Check("disk space", PASS, message)


async def local_free_space(conn: asyncpg.Connection) -> int | None:
    """Free bytes of the data directory, or None when the server's disk is not ours to see.

    The server is local when it was reached over a Unix socket (inet_server_addr() is
    NULL) or loopback; SHOW data_directory needs superuser or pg_read_all_settings.
    """
    address = await conn.fetchval("SELECT inet_server_addr()")
    if address is not None and not address.is_loopback:
        return None
    try:
        directory = str(await conn.fetchval("SHOW data_directory"))
    except asyncpg.InsufficientPrivilegeError:
        return None
    return await anyio.to_thread.run_sync(free_bytes, directory)


def free_bytes(directory: str) -> int | None:
    """Free bytes for ``directory``, or None when it is not on (or not visible to) us."""
    try:
        if not os.path.isdir(directory):
            return None
        return shutil.disk_usage(directory).free
    except OSError:
        return None


# --- existing objects -------------------------------------------------------------------


async def existing_checks(
    conn: asyncpg.Connection, plan: Plan | None, intent: Intent = Intent()
) -> list[Check]:
    """Relations named like the plan's tables and views: CREATE TABLE would fail on them.

    pg_class, not information_schema, so objects this user has no privilege on count too.
    """
    if plan is None:
        return [Check("existing objects", FAIL, NOT_PLANNED, "fix the SQLite file first")]
    names = [t.name for t in plan.tables] + [v.name for v in plan.views]
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) ORDER BY 1",
        plan.schema,
        names,
    )
    found = [str(row[0]) for row in rows]
    blocking = await cutover.in_the_way(conn, plan)
    if blocking:  # whatever else is there: the run stops on these first
        shown = ", ".join(quote_ident(name) for name in blocking[:5])
        return [
            Check(
                "existing objects",
                FAIL,
                f"in schema {quote_ident(plan.schema)}, named like an index or sequence "
                f"the run makes, and not of its tables: {shown}",
                "rename or drop them, or choose another --schema",
            )
        ]
    if not found:
        return [
            Check(
                "existing objects",
                PASS,
                f"none of the {len(names)} tables and views exist in schema "
                f"{quote_ident(plan.schema)}",
            )
        ]
    shown = ", ".join(quote_ident(name) for name in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    checks = [
        Check(
            "existing objects",
            WARN,
            f"already in schema {quote_ident(plan.schema)}: {shown}{more}; --replace replaces them",
        )
        if intent.replace
        else Check(
            "existing objects",
            FAIL,
            f"already in schema {quote_ident(plan.schema)}: {shown}{more}",
            "drop them, choose another --schema, or use --replace",
        )
    ]
    checks.append(await kept_space_check(conn, plan.schema, found))
    depending = await dependents.find(conn, plan.schema, found)
    if depending:
        checks.append(
            Check(
                "dependent objects",
                FAIL if intent.replace and not intent.cascade else WARN,
                one_line(
                    "the application's "
                    + ", ".join(str(d) for d in depending[:6])
                    + (f" and {len(depending) - 6} more" if len(depending) > 6 else "")
                    + " depend on them: run --replace stops on them"
                ),
                "drop or change them first, or pass --cascade with --replace to drop them",
            )
        )
    return checks


async def kept_space_check(conn: asyncpg.Connection, schema: str, found: list[str]) -> Check:
    """The disk space `run --replace` keeps taking: the replaced tables move to a backup
    schema rather than being dropped, until `cleanup` (or with --no-backup-schema)."""
    size = await conn.fetchval(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 "
        "AND c.relname = ANY($2::text[]) AND c.relkind IN ('r', 'm')",
        schema,
        found,
    )
    return Check(
        "replaced tables kept",
        WARN,
        f"run --replace keeps the {len(found)} replaced relations ({human_size(int(size))}) "
        "in a backup schema, for rollback, until `asyncmig cleanup`: that much more disk",
        "pass --no-backup-schema to drop them in the cut-over instead",
    )


# --- output -----------------------------------------------------------------------------


def render_text(checks: list[Check]) -> str:
    """One aligned line per check, for people; the fix follows on the same line."""
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for check in checks:
        line = f"{check.status.upper():<4}  {check.name:<{width}}  {one_line(check.message)}"
        if check.fix and check.status != PASS:
            line += f" — fix: {one_line(check.fix)}"
        lines.append(line)
    return "\n".join(lines)


def checks_json(checks: list[Check]) -> list[dict[str, str]]:
    """The checks as plain dicts (name, status, message, fix), for --json."""
    return [asdict(check) for check in checks]


def failed(checks: list[Check]) -> bool:
    """Whether a run would stop: any failed check (warnings do not count)."""
    return any(check.status == FAIL for check in checks)


def one_line(text: str) -> str:
    """Messages are one line: driver and SQLite messages sometimes are not."""
    return " ".join(text.split())


def human_size(size: float) -> str:
    """Bytes as people read them: 512 B, 3.2 MB, 1.5 GB."""
    if size < 1000:
        return f"{size:.0f} B"
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} TB"


__all__ = ["Check", "checks_json", "failed", "render_text", "validate"]
