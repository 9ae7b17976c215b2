"""Small performance helpers shared by the hot paths (cache reads, extraction, results)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


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
