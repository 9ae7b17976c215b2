"""The one retry loop every remote backend goes through.

Backends classify their failures as `BackendError(retryable=...)`; this
module decides how long to wait and when to give up: jittered exponential
backoff, a server's Retry-After honoured up to 120 s, and a deadline
(by default 120 s; at least 1 s) before a request is abandoned. The deadline is kept: no
wait is started that would end past it, and an attempt still running at the
deadline is cancelled.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_random_exponential,
)

from manyminds.errors import BackendError

log = logging.getLogger("manyminds.retry")

T = TypeVar("T")

MAX_RETRY_AFTER = 120.0
MIN_DEADLINE = 1.0

_backoff = wait_random_exponential(multiplier=0.5, max=20.0)


def parse_retry_after(headers: dict[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


def _wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, BackendError) and error.retry_after is not None:
        return min(error.retry_after, MAX_RETRY_AFTER)
    return _backoff(state)


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, BackendError) and error.retryable


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("attempt %d failed (%s); retrying in %.1fs", state.attempt_number, error, wait)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    deadline: float = 120.0,
    _clock: Callable[[], float] = time.monotonic,
    _sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `call` until it succeeds, a non-retryable error occurs, or `deadline` seconds pass.

    The last error is raised once the next wait would end past the deadline; an
    attempt that is still running at the deadline is cancelled and reported as such.
    """
    budget = max(deadline, MIN_DEADLINE)
    start = _clock()

    async def bounded() -> T:
        left = budget - (_clock() - start)
        try:
            if hasattr(asyncio, "timeout"):  # Python 3.11+: no task of its own, unlike wait_for
                async with asyncio.timeout(max(left, 0.001)):
                    return await call()
            return await asyncio.wait_for(call(), timeout=max(left, 0.001))
        except asyncio.TimeoutError:
            raise BackendError(f"no reply within the retry deadline of {budget:.0f} s") from None

    # The first attempt runs without tenacity (its machinery costs more CPU than a local server's
    # reply); a retryable failure is handed to tenacity as its first attempt's, so the waits,
    # the log and the deadline are what they would have been.
    try:
        return await bounded()
    except BaseException as error:
        if not _is_retryable(error):
            raise
        first: list[BaseException] = [error]

    async def attempt() -> T:
        if first:
            raise first.pop()
        return await bounded()

    retrying = AsyncRetrying(
        retry=retry_if_exception(_is_retryable),
        wait=_wait,
        stop=_StopBefore(budget, start, _clock),
        before_sleep=_log_retry,
        reraise=True,
        sleep=_sleep,
    )
    return await retrying(attempt)


class _StopBefore:
    """Stop when the next wait would end at or past the deadline (tenacity's stop_before_delay,
    on a clock that tests can replace)."""

    def __init__(self, budget: float, start: float, clock: Callable[[], float]) -> None:
        self.budget, self.start, self.clock = budget, start, clock

    def __call__(self, state: RetryCallState) -> bool:
        return (self.clock() - self.start) + (state.upcoming_sleep or 0.0) >= self.budget
