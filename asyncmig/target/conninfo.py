"""Connection strings read the way libpq reads them, handed to asyncpg as plain arguments.

People bring libpq's conventions from psql and pg_dump: URLs and ``key=value`` strings,
``service=`` and ``PGSERVICE`` with the service file, the ``PG*`` variables. asyncpg
knows only part of them (it ignores ``PGSERVICE``, reads no ``key=value`` string, and
lets a URL's empty database win over the service's), so asyncmig resolves every
parameter itself, in libpq's order, and passes asyncpg explicit values:

1. the connection string (URL components and query parameters, or ``key=value``);
2. the service (``service=`` in the string, else ``PGSERVICE``) from the service file
   (``PGSERVICEFILE``, else ``~/.pg_service.conf``, then ``PGSYSCONFDIR/pg_service.conf``),
   for parameters the string left unset;
3. the ``PG*`` variables, for parameters still unset.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode

from asyncmig.errors import UsageError

# libpq keyword -> its environment variable (the keywords asyncmig can honour)
ENVIRONMENT = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslpassword": "PGSSLPASSWORD",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}
KEYWORDS = frozenset(ENVIRONMENT) | {
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "gssencmode",
    "krbsrvname",
}
# passed to asyncpg through a query string: it reads them only there or from PG*
_SSL_FILES = ("sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword", "target_session_attrs")
# a value: quoted, or up to a blank; a backslash escapes the next character in both
_QUOTED_TEXT = r"'(?:[^'\\]|\\.)*'"  # a single-quoted value, backslash escapes inside
_QUOTED = re.compile(_QUOTED_TEXT)
_PAIR = re.compile(rf"\s*([A-Za-z_]+)\s*=\s*({_QUOTED_TEXT}|(?:\\.|[^\s\\])*)")


def parse(conninfo: str) -> dict[str, str]:
    """The parameters a URL or a ``key=value`` string sets (nothing else)."""
    if not conninfo.strip():
        return {}
    params = _parse_url(conninfo) if "://" in conninfo else _parse_pairs(conninfo)
    unknown = sorted(set(params) - KEYWORDS)
    if unknown:
        raise UsageError(
            f"unknown connection parameter {unknown[0]!r}",
            hint="use libpq's keywords: host, port, dbname, user, sslmode, ...",
        )
    return params


def url_parts(url: str) -> tuple[str, str, str, str]:
    """The host part, path, query and fragment of ``url``, split where ``urlsplit``
    splits, by hand: newer Pythons' ``urlsplit`` refuses libpq's multi-host form
    (``h1:5433,[::1]:5434``) as an invalid IPv6 URL."""
    rest = url.partition("://")[2]
    rest, _, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    return netloc, slash + path, query, fragment


_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _parse_url(url: str) -> dict[str, str]:
    if _BAD_PERCENT.search(url):  # libpq refuses it; unquote() would keep it as text
        raise UsageError(
            "the connection URL holds an invalid percent-encoding (% not followed by two "
            "hex digits)",
            hint="write % itself as %25",
        )
    netloc, path, query, _fragment = url_parts(url)  # the hosts are split below
    params: dict[str, str] = {}
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if user:
            params["user"] = unquote(user)
        if colon:
            params["password"] = unquote(password)
    host, port = _split_host_port(netloc)
    if host:
        params["host"] = unquote(host)
    if port:
        params["port"] = port
    if path.strip("/"):
        params["dbname"] = unquote(path[1:])
    params.update(parse_qsl(query, keep_blank_values=True))
    return params


def _split_host_port(netloc: str) -> tuple[str, str]:
    """``host:port`` (or ``[v6]:port``, or ``h1:p1,h2:p2``) as libpq's host and port lists."""
    hosts, ports = [], []
    for item in netloc.split(",") if netloc else []:
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        hosts.append(host)
        ports.append(port)
    return ",".join(hosts), ",".join(ports) if any(ports) else ""


def _parse_pairs(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    position = 0
    while position < len(text.rstrip()):
        match = _PAIR.match(text, position)
        if match is None:
            raise UsageError(
                "cannot parse the connection string",
                hint="write it as key=value pairs separated by spaces, quoting "
                "values with spaces in single quotes",
            )
        key, value = match.group(1).lower(), match.group(2)
        if value.startswith("'") and not _QUOTED.fullmatch(value):
            raise UsageError(
                f"the connection string's {key} value has an unterminated quote",
                hint="close it, or escape a quote inside the value as \\'",
            )
        if value.startswith("'"):
            value = value[1:-1]
        value = re.sub(r"\\(.)", r"\1", value)
        params[key] = value
        position = match.end()
    return params


def resolve(conninfo: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    """Every parameter, from the string, then its service, then the environment."""
    params = parse(conninfo or "")
    service = params.pop("service", None) or environ.get("PGSERVICE")
    if service:
        for key, value in read_service(service, environ).items():
            params.setdefault(key, value)
    for key, variable in ENVIRONMENT.items():
        if key != "service" and key not in params and environ.get(variable):
            params[key] = environ[variable]
    return params


def service_files(environ: Mapping[str, str]) -> list[Path]:
    """Where libpq looks for services, in its order."""
    files = []
    if environ.get("PGSERVICEFILE"):
        files.append(Path(environ["PGSERVICEFILE"]))
    else:
        files.append(Path(environ.get("HOME", str(Path.home()))) / ".pg_service.conf")
    sysconf = environ.get("PGSYSCONFDIR", "/etc/postgresql-common")
    files.append(Path(sysconf) / "pg_service.conf")
    return files


def read_service(name: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The parameters of service ``name``: the first file that defines it wins, as in libpq."""
    for path in service_files(environ):
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as exc:
            raise UsageError(
                f"cannot read the service file {path}: {str(exc).splitlines()[0]}"
            ) from None
        if parser.has_section(name):
            params = {k.lower(): v.strip() for k, v in parser.items(name)}
            unknown = sorted(set(params) - KEYWORDS)
            if unknown:
                raise UsageError(
                    f"service {name!r} in {path} sets unknown parameter {unknown[0]!r}"
                )
            return params
    raise UsageError(
        f"service {name!r} is not defined",
        hint="define it in ~/.pg_service.conf or the file PGSERVICEFILE names "
        f"(looked in {', '.join(str(p) for p in service_files(environ))})",
    )


# the values libpq takes for its enumerated parameters
CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
    "gssencmode": ("disable", "prefer", "require"),
}


def check_choices(params: Mapping[str, str]) -> None:
    """A parameter libpq would refuse is a bad option (exit 2), not a failed connection."""
    for key, allowed in CHOICES.items():
        value = params.get(key)
        if value and value not in allowed:
            raise UsageError(f"the connection's {key} {value!r} is not one of {', '.join(allowed)}")


def asyncpg_arguments(params: Mapping[str, str]) -> dict[str, object]:
    """asyncpg.connect() keyword arguments for resolved libpq parameters.

    Everything is explicit, so asyncpg's own reading of the environment changes
    nothing; the application name defaults to ``asyncmig`` (visible in
    ``pg_stat_activity``, where a DBA looks for what holds a lock).
    """
    check_choices(params)
    kwargs: dict[str, object] = {}
    host = params.get("host") or params.get("hostaddr")
    if host:
        kwargs["host"] = host.split(",") if "," in host else host
    if params.get("port"):
        ports = [_port(p) for p in params["port"].split(",") if p]
        hosts = len(host.split(",")) if host else 1
        if len(ports) > 1 and len(ports) != hosts:
            raise UsageError(f"the connection has {len(ports)} ports for {hosts} host(s)")
        kwargs["port"] = ports if len(ports) > 1 else ports[0]
    for key, argument in (
        ("dbname", "database"),
        ("user", "user"),
        ("password", "password"),
        ("passfile", "passfile"),
        ("sslmode", "ssl"),
    ):
        if params.get(key):
            kwargs[argument] = params[key]
    if params.get("connect_timeout"):
        kwargs["timeout"] = float(max(2, _number(params["connect_timeout"], "connect_timeout")))
    settings = {
        "application_name": params.get("application_name")
        or params.get("fallback_application_name")
        or "asyncmig"
    }
    if params.get("options"):
        settings["options"] = params["options"]
    kwargs["server_settings"] = settings
    ssl_files = {k: params[k] for k in _SSL_FILES if params.get(k)}
    if ssl_files:
        kwargs["dsn"] = "postgresql://?" + urlencode(ssl_files)
    return kwargs


def _port(text: str) -> int:
    port = _number(text, "port")
    if not 1 <= port <= 65535:
        raise UsageError(f"the connection's port {port} is not a TCP port (1 to 65535)")
    return port


def _number(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"the connection's {what} {text!r} is not a number") from None
