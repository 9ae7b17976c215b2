"""Small performance helpers shared by the hot paths (cache reads, extraction, results)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around a tight, bounded loop that builds many objects.

    Building thousands of candidates and results triggers several full
    collections, each walking every object the process holds (LangGraph
    alone brings hundreds of thousands): most of the cost of a warm rerun.
    The loops this wraps never await, so the pause lasts milliseconds, and
    the collector resumes (and catches up) right after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run_sync(awaitable: "Coroutine[Any, Any, T]") -> T:
    """`asyncio.run(awaitable)`, without letting the event loop repr the result.

    On Python 3.11, `asyncio.run` restores the SIGINT handler through
    `signal.getsignal`, which formats a handler bound to the main task into an
    error message it then discards; the task's repr includes its result. For
    a benchmark's report or a thousand results that repr took seconds (2.4 s
    of a 3.3 s cached rerun). The result is handed back through a box instead,
    so the task's own result is None.
    """
    box: list[T] = []

    async def main() -> None:
        box.append(await awaitable)

    asyncio.run(main())
    return box[0]
