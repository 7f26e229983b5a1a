"""Where the target PostgreSQL is, and connecting to it with one-line errors.

Resolution follows other PostgreSQL tools: ``--pg`` URL, else ``DATABASE_URL``, else
the libpq ``PG*`` variables, else (for trying asyncmig) an embedded server. The
password is kept only inside :class:`Target`; everything printed or logged uses
:attr:`Target.safe`, where it is replaced by ``***``.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

import anyio
import asyncpg
import structlog

from asyncmig.errors import TargetError, UsageError
from asyncmig.target import conninfo

# refusals that pass: the server is starting up, or has no free connection for now
BUSY_STATES = ("57P03", "53300")

log = structlog.get_logger(__name__)

LIBPQ_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSERVICE")


# the server probes an idle connection after 60 s, then every 10 s, 6 times: a client
# that vanished (its host crashed, the network broke) frees its locks within 2 minutes
KEEPALIVES = {
    "tcp_keepalives_idle": "60",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "6",
}
ANSWER_MARGIN = 10.0  # seconds the client waits beyond the server's statement_timeout
# seconds the server has to take a CancelRequest (see Connection) or to see a closing
# connection go: a server that answers does either in milliseconds, and one that does
# not (frozen, cut off) would otherwise hold each for the whole command timeout, one
# after another, before the run can exit
GRACE = 2.0
# A session whose statements the planner prices far above what they do: PostgreSQL
# JIT-compiles a statement estimated above jit_above_cost, and inlining and optimising
# it cost more than the statement. The sync's joins with its differing ranges, priced
# by default estimates, run without it (212 ms of a 325 ms DELETE). `check --deep` and
# the load showed no difference with it off, so they keep the server's setting.
NO_JIT = {"jit": "off"}


class Connection(asyncpg.Connection):  # type: ignore[misc]
    """asyncmig's connections: a statement the client stopped waiting for (its timeout, or
    its task cancelled) is cancelled as asyncpg does, through a CancelRequest on a new
    connection; when the server does not even take that request within
    :data:`GRACE`, the connection is dropped. asyncpg would otherwise hold the
    next statement (a transaction's ROLLBACK, a pool's reset) for the whole command
    timeout again, waiting for a frozen server to acknowledge; dropped, the server rolls
    back what was open when it sees the socket gone."""

    __slots__ = ()

    def _cancel_current_command(self, sent: asyncio.Future[None], *more: object) -> None:
        super()._cancel_current_command(sent, *more)
        timer = self._loop.call_later(GRACE, self._drop_unless_sent, sent)
        sent.add_done_callback(lambda _: timer.cancel())

    def _drop_unless_sent(self, sent: asyncio.Future[None]) -> None:
        if not sent.done() and not self.is_closed():
            log.warning("connection_dropped", reason=f"cancel not taken within {GRACE:g} s")
            self.terminate()


@dataclass(frozen=True)
class Target:
    """A PostgreSQL to connect to. ``dsn`` is None when libpq variables describe it."""

    dsn: str | None = field(repr=False)
    safe: str  # shown to people: password replaced
    source: str  # where it came from: "--pg", "DATABASE_URL", "PG* variables", "embedded"
    statement_timeout: float = 0.0  # seconds (0: no limit): --statement-timeout

    def connect_kwargs(self) -> dict[str, object]:
        """asyncpg's arguments, resolved as libpq would (see :mod:`asyncmig.target.conninfo`),
        with keepalives and, when set, the statement timeout on both sides: the server
        cancels a statement that runs too long, and the client stops waiting for a
        server that no longer answers at all (frozen, or cut off)."""
        kwargs = conninfo.asyncpg_arguments(conninfo.resolve(self.dsn, os.environ))
        settings = dict(KEEPALIVES, **kwargs.get("server_settings", {}))  # type: ignore[arg-type]
        if self.statement_timeout:
            settings["statement_timeout"] = str(int(self.statement_timeout * 1000))
            kwargs["command_timeout"] = self.statement_timeout + ANSWER_MARGIN
            kwargs.setdefault("timeout", self.statement_timeout + ANSWER_MARGIN)  # connecting
        kwargs["server_settings"] = settings
        kwargs["connection_class"] = Connection
        return kwargs


# libpq's secrets: the server's password and the client key's passphrase
_SECRETS = frozenset({"password", "sslpassword"})
# a key=value pair's value: quoted, or up to a blank not escaped by a backslash
_KEYWORD_PASSWORD = re.compile(
    r"""(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:\\.|[^\s\\])*\\?)"""
)


def scrub(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL or key=value form).

    Works on the raw text, before any parser sees it: a password holding ``/``, ``#``,
    ``?`` or ``@`` (base64 passwords often do) confuses URL parsers, and whatever they
    make of it, everything between the scheme's ``user:`` and the last ``@`` is hidden.
    """
    if "://" not in dsn:
        return _KEYWORD_PASSWORD.sub(r"\1***", dsn)
    scheme, _, rest = dsn.partition("://")
    # a URL that parses cleanly has its user info in the host part (a prefix of rest);
    # for any other, take the last "@" anywhere, whatever a parser would make of it
    at = rest.rfind("@") if _malformed(dsn) else conninfo.url_parts(dsn)[0].rfind("@")
    if at >= 0:
        user, colon, _password = rest[:at].partition(":")
        rest = f"{user}:***@{rest[at + 1 :]}" if colon else rest
    return f"{scheme}://" + _scrub_query(rest)


def _scrub_query(rest: str) -> str:
    """A URL's query parameters with each secret's value hidden, its name read as libpq
    reads it (percent-decoded: ``pass%77ord`` is ``password``)."""
    head, question, query = rest.partition("?")
    if not question:
        return rest
    pairs = []  # a "#" is part of a value: libpq's URLs have no fragment
    for pair in query.split("&"):
        name, equals, _value = pair.partition("=")
        secret = equals and unquote_plus(name).strip().lower() in _SECRETS
        pairs.append(f"{name}=***" if secret else pair)
    return f"{head}?{'&'.join(pairs)}"


def resolve_target(pg: str | None, environ: Mapping[str, str]) -> Target | None:
    """The configured target, or None when nothing is configured (use the embedded one)."""
    if pg:
        return Target(_checked(pg, "--pg", environ), scrub(pg), "--pg")
    url = environ.get("DATABASE_URL")
    if url:
        return Target(_checked(url, "DATABASE_URL", environ), scrub(url), "DATABASE_URL")
    present = [name for name in LIBPQ_VARIABLES if environ.get(name)]
    if present:
        shown = " ".join(f"{n}={environ[n]}" for n in present if n != "PGPASSWORD")
        return Target(None, shown or "PG* variables", "PG* variables")
    return None


def _checked(dsn: str, origin: str, environ: Mapping[str, str]) -> str:
    """``dsn`` once it is known to parse and its service to exist (else exit 2, now)."""
    _check_url(dsn, origin)
    try:
        conninfo.resolve(dsn, environ)
    except UsageError as exc:
        raise UsageError(
            f"cannot use {origin} {scrub(dsn)}: {exc.message}", hint=exc.hint
        ) from None
    return dsn


def _check_url(url: str, origin: str) -> str:
    if "://" not in url:
        return url
    if not url.startswith(("postgresql://", "postgres://")):
        raise UsageError(
            f"cannot use {origin} {scrub(url)}: not a PostgreSQL URL",
            hint="use postgresql://user:password@host:port/database",
        )
    if _malformed(url):
        raise UsageError(
            f"cannot use {origin} {scrub(url)}: the URL cannot be parsed",
            hint="percent-encode special characters in the user name and password "
            "(/ as %2F, # as %23, ? as %3F, @ as %40, : as %3A, % as %25)",
        )
    return url


def _malformed(url: str) -> bool:
    """Whether a URL parser would split ``url`` somewhere other than its author meant.

    An unencoded ``/``, ``#`` or ``?`` in the password ends the host part early: the
    ``@`` then lands in the path, query or fragment, or the password's start is taken
    for a port. Connecting to what the parser made of it would put part of the
    password into an error message (as a host or a port), so such a URL is refused.
    libpq's list of hosts (``h1:5432,[::1]:5433``) is a URL like any other.
    """
    netloc, path, query, fragment = conninfo.url_parts(url)
    if "@" not in netloc and "@" in path + fragment:
        return True
    if netloc.count("@") > 1:  # drivers split at the first "@", libpq at the last
        return True
    if any(not _host_port_ok(item) for item in netloc.rpartition("@")[2].split(",")):
        return True
    return any("=" not in item for item in query.split("&") if item)


def _host_port_ok(item: str) -> bool:
    """Whether ``host``, ``host:port`` or ``[v6]:port`` has a port that is a number."""
    if item.startswith("["):
        _, bracket, rest = item.partition("]")
        return bool(bracket) and (not rest or (rest[0] == ":" and rest[1:].isdigit()))
    if item.count(":") > 1 or "[" in item or "]" in item:
        return False
    port = item.partition(":")[2]
    return port == "" or (port.isascii() and port.isdigit())


async def connect(
    target: Target, settings: Mapping[str, str] | None = None, **kwargs: object
) -> asyncpg.Connection:
    """Connect, turning every failure into a one-line :class:`TargetError`. ``settings``:
    the session's own, beside the target's (sent with the connection, no round trip)."""
    arguments = target.connect_kwargs()
    if settings:
        arguments["server_settings"] = {**arguments["server_settings"], **settings}  # type: ignore[dict-item]
    try:
        return await asyncpg.connect(**arguments, **kwargs)
    except BaseException as exc:
        error = connection_error(target, exc)
        if error is None:
            raise
        raise error from None


async def create_pool(target: Target, size: int, **kwargs: object) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            **target.connect_kwargs(), min_size=size, max_size=size, **kwargs
        )
    except BaseException as exc:
        error = connection_error(target, exc)
        if error is None:
            raise
        raise error from None
    assert pool is not None
    return pool


async def hang_up(conn: asyncpg.Connection) -> None:
    """Close ``conn`` gracefully, or within :data:`GRACE` drop its socket (which
    asyncpg does when a close fails): the server rolls back whatever was open either way.
    Shielded, so a cancelled run still lets go of its connections; never raises: a
    connection that broke has nothing left to report."""
    with anyio.CancelScope(shield=True):
        try:
            await conn.close(timeout=GRACE)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.info("connection_dropped", reason=str(exc) or type(exc).__name__)


@asynccontextmanager
async def transaction(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """``async with conn.transaction()``, except that a cancelled body drops the
    connection instead of sending a ROLLBACK the cancellation would cut short.

    A task group cancels a table's writer when its reader fails (a plan refuted, a
    value that does not fit): asyncpg's ``__aexit__`` then sends its ROLLBACK inside
    the cancelled scope, which cancels it too, and the connection went back to its
    pool still in the transaction (asyncpg's "Resetting connection with an active
    transaction" error). Shielding that ROLLBACK instead would wait on a server that
    does not answer (frozen, cut off), and on asyncpg's cancel request after it. The
    connection is dropped at once: PostgreSQL rolls back as it goes, and the pool
    opens another when one is needed. Any other error exits exactly as asyncpg's own
    block does."""
    tx = conn.transaction()
    await tx.__aenter__()
    try:
        yield
    except anyio.get_cancelled_exc_class():
        conn.terminate()
        log.info("connection_dropped", reason="its transaction was cancelled")
        raise
    except BaseException as exc:
        await tx.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    await tx.__aexit__(None, None, None)


async def hang_up_pool(pool: asyncpg.Pool) -> None:
    """:func:`hang_up` for a pool: asyncpg terminates each connection when its graceful
    close is cancelled."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(GRACE) as waited:
        await pool.close()
    if waited.cancelled_caught:
        log.info("connection_dropped", reason=f"no answer within {GRACE:g} s")


def connection_error(target: Target, exc: BaseException) -> TargetError | None:
    """A one-line error for a failed connection; None for exceptions that are not ours."""
    where = target.safe
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return TargetError(
            f"cannot connect to {where}: password authentication failed",
            hint="check the user and password",
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return TargetError(
            f"cannot connect to {where}: the database does not exist",
            hint="create it first (createdb), or name an existing one",
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        encryption = "no encryption" in str(exc)
        return TargetError(
            f"cannot connect to {where}: {_redact(str(exc), target)}",
            hint="the server accepts this user only over SSL: set sslmode=require"
            if encryption
            else "check the user name and pg_hba.conf",
        )
    if isinstance(exc, ConnectionError) and "SSL" in str(exc):
        return TargetError(
            f"cannot connect to {where}: the server does not accept SSL",
            hint="set sslmode=prefer (or disable), or enable SSL on the server",
        )
    if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate in BUSY_STATES:
        return passing(
            TargetError(
                f"cannot connect to {where}: {_redact(str(exc), target)}",
                hint="the server is busy or restarting: try again shortly",
            )
        )
    if isinstance(exc, asyncpg.PostgresError):
        return TargetError(f"cannot connect to {where}: {_redact(str(exc), target)}")
    if isinstance(exc, ConnectionError):
        return passing(
            TargetError(
                f"cannot connect to {where}: {_redact(str(exc), target)}",
                hint="is the server running and accepting connections there?",
            )
        )
    if isinstance(exc, TimeoutError):
        silent = TargetError(
            f"cannot connect to {where}: no answer within {_connect_seconds(target):g} s",
            hint="is the server (or the network to it) frozen? check it, then run the same "
            "command again",
        )
        silent.frozen = True  # the run's cleanup asks such a server nothing more
        return silent
    if isinstance(exc, socket.gaierror):
        return TargetError(f"cannot connect to {where}: unknown host", hint="check the host name")
    if isinstance(exc, (OSError, TimeoutError, asyncpg.InterfaceError)):
        return TargetError(
            f"cannot connect to {where}: {_redact(str(exc), target)}",
            hint="is the server running and accepting connections there?",
        )
    if isinstance(exc, (ValueError, TypeError)):
        return TargetError(f"cannot connect to {where}: invalid connection string")
    return None


def _connect_seconds(target: Target) -> float:
    """How long asyncpg waited to connect: connect_timeout, --statement-timeout, or 60 s."""
    try:
        return float(target.connect_kwargs().get("timeout", 60.0))  # type: ignore[arg-type]
    except UsageError:
        return 60.0


def passing(error: TargetError) -> TargetError:
    """Mark a refusal that may pass (a restart, no free connection): worth a retry."""
    error.transient = True
    return error


def _redact(message: str, target: Target) -> str:
    """Remove the password from a driver message, should it ever contain it."""
    password = _password(target)
    return message.replace(password, "***") if password else message


def _password(target: Target) -> str | None:
    try:
        return conninfo.resolve(target.dsn, os.environ).get("password")
    except UsageError:
        return None
