"""What a terminated session looks like when it surfaces, and the one line it becomes.

``pg_terminate_backend`` (or a restart) reaches asyncmig in more shapes than asyncpg's
own "connection does not exist": a cleanup's call on the dead connection, another
task's call on a connection still busy with the COPY the termination cut off. Seen
under faults (all of a run's sessions terminated while it built indexes; a sync's
session terminated in its transaction) as exit 70, "internal error". These are the
exceptions asyncpg raised there, chained as Python chained them; the end-to-end case
is ``tests/test_sync.py::test_a_sync_whose_session_is_terminated_says_lost_connection``.
"""

from __future__ import annotations

import signal

import asyncpg
import pytest

from asyncmig.cli.main import connection_fault
from asyncmig.cli.signals import SignalReceived
from asyncmig.errors import ConnectionLost, DataError
from asyncmig.target.faults import as_error, timed_out
from asyncmig.target.sync import copy_refusal

TERMINATED = "terminating connection due to administrator command"


def _during(handling: BaseException, raised: BaseException) -> BaseException:
    """``raised`` as Python chains it when raised while ``handling`` is handled."""
    try:
        try:
            raise handling
        except BaseException:  # noqa: BLE001 -- the chain is the point
            raise raised  # noqa: B904 -- implicit chaining, as a finally block gives
    except BaseException as chained:  # noqa: BLE001
        return chained


@pytest.mark.parametrize(
    "raised",
    [
        asyncpg.InterfaceError(
            "cannot call Connection.execute(): connection has been released back to the pool"
        ),
        asyncpg.InterfaceError(
            "cannot call Transaction.__aexit__(): the underlying connection is closed"
        ),
        asyncpg.InternalClientError(
            "cannot switch to state 11; another operation (2) is in progress"
        ),
        RuntimeError("anything a cleanup raised on the way out"),
    ],
)
def test_an_error_raised_while_a_terminated_session_was_handled_is_that_loss(
    raised: BaseException,
) -> None:
    found = as_error(_during(asyncpg.AdminShutdownError(TERMINATED), raised))
    assert isinstance(found, ConnectionLost) and found.exit_code == 4
    assert str(found).startswith(f"lost connection to PostgreSQL ({TERMINATED})")


def test_a_task_that_met_the_loss_beside_another_tasks_confusion() -> None:
    """Two tasks of one group: one met the terminated session, the other tried its
    connection while the COPY cut off by the termination still held it."""
    group = BaseExceptionGroup(
        "tasks",
        [
            asyncpg.InternalClientError(
                "cannot switch to state 11; another operation (2) is in progress"
            ),
            asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ],
    )
    assert isinstance(as_error(group), ConnectionLost)


def test_a_migration_error_explains_the_failure_before_any_connection_noise() -> None:
    """A value that did not fit failed the run; the connections the run then dropped
    itself are not the story."""
    data = DataError("t", "c", 1, "x", "not an integer")
    group = BaseExceptionGroup(
        "tasks", [data, asyncpg.InterfaceError("cannot call ...: the connection is closed")]
    )
    assert as_error(group) is data


def test_a_signal_is_never_taken_for_a_lost_connection() -> None:
    stop = SignalReceived(signal.SIGTERM)
    assert as_error(_during(asyncpg.AdminShutdownError(TERMINATED), stop)) is stop


def test_an_error_with_no_fault_behind_it_is_itself() -> None:
    bug = RuntimeError("a bug")
    assert as_error(bug) is bug
    assert as_error(_during(ValueError("unrelated"), bug)) is bug


def test_a_server_that_did_not_answer_is_found_in_any_task_of_a_group() -> None:
    """The run skips its cleanup (which would wait for the frozen server again) when
    any task met the client-side timeout, not only when the group's first error did:
    a task whose connection was closed under it, with no timeout in its own chain, may
    come first."""
    closed = asyncpg.InterfaceError("cannot perform operation: connection is closed")
    waited = _during(TimeoutError(), asyncpg.InterfaceError("connection is closed"))
    group = BaseExceptionGroup(
        "load", [BaseExceptionGroup("one table", [closed]), BaseExceptionGroup("other", [waited])]
    )
    assert timed_out(group)
    assert not timed_out(BaseExceptionGroup("load", [closed, RuntimeError("unrelated")]))
    found = as_error(group)
    assert isinstance(found, ConnectionLost) and not found.transient


def test_any_command_that_loses_its_session_says_so() -> None:
    """A rollback whose session was terminated while it wrote its backup ended as an
    internal error (exit 70, "Transaction.__aexit__(): the underlying connection is
    closed"): the command line's last resort reads it as the lost connection it is."""
    raised = _during(
        asyncpg.AdminShutdownError(TERMINATED),
        asyncpg.InterfaceError(
            "cannot call Transaction.__aexit__(): the underlying connection is closed"
        ),
    )
    assert isinstance(raised, Exception)
    found = connection_fault(raised)
    assert isinstance(found, ConnectionLost) and found.exit_code == 4
    assert connection_fault(RuntimeError("a bug")) is None


def test_a_sync_that_meets_a_full_disk_says_so_in_one_line() -> None:
    """It said "refused a changed row" over two lines (PostgreSQL's HINT on its own)
    and advised a full migration, which needs far more room."""
    full = asyncpg.DiskFullError('could not extend file "base/5/t3": No space left on device')
    full.hint = "Check free disk space."  # as the server sends it
    error = copy_refusal("users", full)
    line = f"{error}"
    assert "\n" not in line and "No space left on device" in line
    assert "Check free disk space." in line and "run --replace" not in line
    bad = copy_refusal("users", asyncpg.CheckViolationError("new row violates check constraint"))
    assert "refused a changed row" in str(bad) and "run --replace" in str(bad)
