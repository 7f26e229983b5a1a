"""Where the target PostgreSQL is, and connecting to it with one-line errors.

Resolution follows other PostgreSQL tools: ``--pg`` URL, else ``DATABASE_URL``, else
the libpq ``PG*`` variables, else (for trying asyncmig) an embedded server. The
password is kept only inside :class:`Target`; everything printed or logged uses
:attr:`Target.safe`, where it is replaced by ``***``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg

from asyncmig.errors import TargetError, UsageError

LIBPQ_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSERVICE")


@dataclass(frozen=True)
class Target:
    """A PostgreSQL to connect to. ``dsn`` is None when libpq variables describe it."""

    dsn: str | None = field(repr=False)
    safe: str  # shown to people: password replaced
    source: str  # where it came from: "--pg", "DATABASE_URL", "PG* variables", "embedded"

    def connect_kwargs(self) -> dict[str, object]:
        return {"dsn": self.dsn} if self.dsn else {}


def scrub(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL or key=value form)."""
    if "://" not in dsn:
        parts = []
        for item in dsn.split():
            key, _, _value = item.partition("=")
            parts.append(f"{key}=***" if key.strip().lower() == "password" else item)
        return " ".join(parts)
    parts_url = urlsplit(dsn)
    netloc = parts_url.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:***@{hostinfo}" if sep and _password else f"{userinfo}@{hostinfo}"
    query = "&".join(
        f"{k}={'***' if k.lower() == 'password' else v}" for k, v in parse_qsl(parts_url.query)
    )
    return urlunsplit(parts_url._replace(netloc=netloc, query=query))


def resolve_target(pg: str | None, environ: Mapping[str, str]) -> Target | None:
    """The configured target, or None when nothing is configured (use the embedded one)."""
    if pg:
        return Target(_check_url(pg, "--pg"), scrub(pg), "--pg")
    url = environ.get("DATABASE_URL")
    if url:
        return Target(_check_url(url, "DATABASE_URL"), scrub(url), "DATABASE_URL")
    present = [name for name in LIBPQ_VARIABLES if environ.get(name)]
    if present:
        shown = " ".join(f"{n}={environ[n]}" for n in present if n != "PGPASSWORD")
        return Target(None, shown or "PG* variables", "PG* variables")
    return None


def _check_url(url: str, origin: str) -> str:
    if "://" in url and not url.startswith(("postgresql://", "postgres://")):
        raise UsageError(
            f"cannot use {origin} {scrub(url)}: not a PostgreSQL URL",
            hint="use postgresql://user:password@host:port/database",
        )
    return url


async def connect(target: Target, **kwargs: object) -> asyncpg.Connection:
    """Connect, turning every failure into a one-line :class:`TargetError`."""
    try:
        return await asyncpg.connect(**target.connect_kwargs(), **kwargs)
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


def connection_error(target: Target, exc: BaseException) -> TargetError | None:
    """A one-line error for a failed connection; None for exceptions that are not ours."""
    where = target.safe
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return TargetError(f"cannot connect to {where}: password authentication failed",
                           hint="check the user and password")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return TargetError(f"cannot connect to {where}: the database does not exist",
                           hint="create it first (createdb), or name an existing one")
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return TargetError(f"cannot connect to {where}: {_redact(str(exc), target)}",
                           hint="check the user name and pg_hba.conf")
    if isinstance(exc, asyncpg.PostgresError):
        return TargetError(f"cannot connect to {where}: {_redact(str(exc), target)}")
    if isinstance(exc, socket.gaierror):
        return TargetError(f"cannot connect to {where}: unknown host",
                           hint="check the host name")
    if isinstance(exc, (OSError, TimeoutError, asyncpg.InterfaceError)):
        return TargetError(f"cannot connect to {where}: {_redact(str(exc), target)}",
                           hint="is the server running and accepting connections there?")
    if isinstance(exc, (ValueError, TypeError)):
        return TargetError(f"cannot connect to {where}: invalid connection string")
    return None


def _redact(message: str, target: Target) -> str:
    """Remove the password from a driver message, should it ever contain it."""
    password = _password(target)
    return message.replace(password, "***") if password else message


def _password(target: Target) -> str | None:
    if target.dsn and "://" in target.dsn:
        return urlsplit(target.dsn).password or dict(parse_qsl(urlsplit(target.dsn).query)).get(
            "password"
        )
    return os.environ.get("PGPASSWORD") if target.dsn is None else None
