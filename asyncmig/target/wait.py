"""Wait for a target that is still booting (a compose service, a Kubernetes pod).

A scheduled job often starts together with its database; rather than fail at once,
``--connect-timeout N`` retries the first connection with exponential backoff for at
most N seconds, logging one line per failed attempt. Only failures that a booting
server causes are retried (refused or reset connections, a name not resolvable yet,
"the database system is starting up"); a wrong password or a missing database fails
at once. tenacity supplies the retry loop (stop after a delay, backoff with jitter,
a hook per attempt) so none of that is hand-written here.
"""

from __future__ import annotations

import anyio
import asyncpg
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_before_delay,
    wait_exponential,
    wait_random,
)

from asyncmig.target.connect import Target, connection_error, hang_up

log = structlog.get_logger(__name__)


def is_transient(exc: BaseException) -> bool:
    """Failures a server that is not up yet produces."""
    return isinstance(exc, (OSError, TimeoutError, asyncpg.CannotConnectNowError))


def log_attempt(state: RetryCallState) -> None:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    seconds = state.next_action.sleep if state.next_action is not None else 0.0
    reason = (str(error).splitlines() or [type(error).__name__])[0] if error else ""
    log.warning(
        "target_not_ready", attempt=state.attempt_number, error=reason, retry_in_s=round(seconds, 1)
    )


async def wait_for_target(target: Target, seconds: float) -> None:
    """Return once ``target`` accepts a connection; raise its TargetError after
    ``seconds`` of transient failures (or at once for a permanent one)."""
    retrying = AsyncRetrying(
        stop=stop_before_delay(seconds),
        reraise=True,
        sleep=anyio.sleep,
        wait=wait_exponential(multiplier=0.5, max=5) + wait_random(0, 0.3),
        retry=retry_if_exception(is_transient),
        before_sleep=log_attempt,
    )
    try:
        async for attempt in retrying:
            with attempt:
                conn = await asyncpg.connect(
                    **target.connect_kwargs(), timeout=max(1.0, min(seconds, 10.0))
                )
                await hang_up(conn)
    except Exception as exc:
        error = connection_error(target, exc)
        if error is None:
            raise
        raise error from None
