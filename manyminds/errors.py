"""Errors that reach users carry a message saying what was wrong and how to fix it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class ManymindsError(Exception):
    """Base of the errors manyminds raises on purpose; the CLI prints them in one line."""

    exit_status = 2
    """The CLI's exit status: 2 for input a user can fix, 1 for work that was tried and failed."""


class RunFailed(ManymindsError):
    """Work was tried and did not succeed (every question of a benchmark run failed, say);
    what was done is recorded."""

    exit_status = 1


class ConfigError(ManymindsError, ValueError):
    """A bad argument: an unknown backend spec, an impossible parameter."""


class CacheError(ManymindsError):
    """The cache file cannot be used (missing directory, not a SQLite file, newer schema)."""


class BackendError(ManymindsError):
    """A backend call failed.

    `retryable` tells the one retry loop (manyminds.backends.retry) whether
    trying again can help: rate limits, timeouts and server errors can; a bad
    request or a missing model cannot.
    """

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class CapabilityError(ManymindsError):
    """The backend cannot do what was asked (e.g. logprobs), and we will not fake it."""


def one_line(error: "ValidationError", prefix: str = "", *, limit: int | None = None, inputs: bool = True) -> str:
    """A pydantic ValidationError as one line naming each field, what is wrong and the value given:
    what the CLI prints, the server answers (400), `strategies.make` and `plugins.checked_call` raise
    as a ConfigError. `limit` keeps the first problems only; `inputs=False` leaves the values out
    (a data record's field may be pages long)."""
    parts = []
    for e in error.errors()[:limit]:
        where = ".".join(str(p) for p in e["loc"]) or prefix or error.title
        message = e["msg"].removeprefix("Value error, ")
        given = inputs and "input" in e and "got" not in message and not isinstance(e["input"], dict)
        parts.append(f"{where}: {message}" + (f" (got {e['input']!r})" if given else ""))
    return "; ".join(parts)
