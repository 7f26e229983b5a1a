"""One exception hierarchy for everything asyncmig refuses to do.

    MigrationError              message + detail + hint; exit code 1
    ├── UsageError              a bad option or configuration value (exit 2)
    ├── SourceError             the SQLite file: missing, not SQLite, corrupt, unreadable
    ├── TargetError             PostgreSQL refused: connection, privilege, existing object
    │   └── ConnectionLost      the connection broke (terminated, restarted, reset): retried
    ├── RunInProgress           another run holds the target schema's lock (exit 9)
    ├── DataError               a value did not fit its planned type (table, column, key)
    ├── VerificationError       row counts or checks differ after the load
    ├── LocalFileError          a reject file or a backup cannot be written (exit 7)
    ├── RollbackRefused         a rollback would lose or break something (exit 10)
    ├── WorkerLost              a worker process was killed from outside (exit 11)
    └── InternalError           a bug in asyncmig

The CLI prints ``str(error)`` as one line and exits with ``error.exit_code``; a
traceback is shown only with ``--debug``. Messages are lower-case, name the object,
say what could not be done and why, and the hint says how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class MigrationError(Exception):
    """Base class: a one-line message, optional detail and hint."""

    exit_code = 1

    def __init__(self, message: str, *, detail: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint

    def __reduce__(self) -> tuple[Any, ...]:
        # errors cross from worker processes to the main one by pickling, and the
        # subclasses' constructors take other arguments than Exception.args holds
        return (_restore, (type(self), self.message, dict(self.__dict__)))

    def __str__(self) -> str:
        parts = [self.message]
        if self.detail:
            parts.append(self.detail)
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "; ".join(parts)


class UsageError(MigrationError):
    """An option, environment variable or config file value is wrong."""

    exit_code = 2


class SourceError(MigrationError):
    """The SQLite source cannot be read."""

    exit_code = 3


class TargetError(MigrationError):
    """PostgreSQL cannot be reached or refused a statement."""

    exit_code = 4
    transient = False  # True: the refusal may pass (server restarting, no free connection)
    frozen = False  # True: the server did not answer at all (asking it again would wait)


class ConnectionLost(TargetError):
    """The connection to PostgreSQL broke.

    A terminated backend, a server restart, a reset connection, "too many clients":
    the server did not refuse the work, so a table's load is retried a few times
    before the run gives up with this error (exit 4, like every target problem).
    """

    transient = True


class RunInProgress(MigrationError):
    """Another run into the same target schema holds its advisory lock."""

    exit_code = 9


class DataError(MigrationError):
    """A value cannot be converted to the type the plan chose for its column."""

    exit_code = 5

    def __init__(
        self,
        table: str,
        column: str,
        key: Any,
        value: Any,
        reason: str,
        *,
        hint: str | None = None,
    ):
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(
            f"cannot convert {table}.{column} at key {key!r}: value {shown}: {reason}",
            hint=hint or "override the column's target type in a --config TOML file",
        )
        self.table = table
        self.column = column
        self.key = key
        self.value = value
        self.reason = reason


class VerificationError(MigrationError):
    """The target does not match the source after loading."""

    exit_code = 6


class RollbackRefused(MigrationError):
    """Rolling back a run would lose the application's rows or break what uses its tables."""

    exit_code = 10

    def __init__(self, run_id: int, warnings: Sequence[str], report: Any = None):
        first = warnings[0] if warnings else "unsafe"
        super().__init__(
            f"cannot roll back run {run_id} safely: {len(warnings)} warning(s), first: {first}",
            hint=f"review `asyncmig rollback --run {run_id} --check`; --force rolls back "
            "anyway, after writing a backup",
        )
        self.run_id = run_id
        self.warnings = tuple(warnings)
        self.report = report  # the safety report (asyncmig.target.safety.SafetyReport)


class LocalFileError(MigrationError):
    """A file whose content is part of the outcome cannot be written: the reject store
    (a rejected row's only record), a backup taken before a rollback. The work it
    belongs to is undone rather than finished with that file cut short. (The log file
    and the rollback script's copy are not such files: the history keeps both
    accounts.)"""

    exit_code = 7


class WorkerLost(MigrationError):
    """A worker process died from outside (the kernel's out-of-memory killer, a signal
    sent to it alone): not a bug of asyncmig, and nothing of its table committed."""

    exit_code = 11


class InternalError(MigrationError):
    """Something asyncmig should have prevented: please report it."""

    exit_code = 70


def _restore(cls: type[MigrationError], message: str, state: dict[str, Any]) -> MigrationError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a task group's failures: the first MigrationError.

    Task groups wrap failures (and the cancellations they cause) in exception groups;
    a user needs the one that explains the failure, not the nesting.
    """
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = first_error(exc)
            if isinstance(found, MigrationError):
                return found
        elif isinstance(exc, MigrationError):
            return exc
    inner = group.exceptions[0]
    return first_error(inner) if isinstance(inner, BaseExceptionGroup) else inner
