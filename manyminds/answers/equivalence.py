"""Answer equivalence by value: math-verify, in a small process pool.

math-verify's timeout uses signals, which work only in a main thread, so
every check runs in a worker process, never in a thread. Equivalent forms
are equal: `0.5` and `\\frac{1}{2}`, `\\boxed{\\dfrac12}`. Answers use it to merge
keys that vote together and to score math; the math verifier uses it too.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

_pool: ProcessPoolExecutor | None = None


def _executor() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        # spawn: a fork of a process running threads (the cache writer, asyncio) is unsafe.
        _pool = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))
    return _pool


def pool_running() -> bool:
    """Whether math-verify's worker processes are up."""
    return _pool is not None


def shutdown_pool() -> None:
    """Stop math-verify's worker processes (started again on next use)."""
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _as_math(text: str) -> str:
    # math-verify reads LaTeX best inside $...$ or \boxed{}; plain numbers parse either way.
    return text if ("$" in text or "\\boxed" in text) else f"${text}$"


def equivalent(gold: str, answer: str, timeout: int = 5) -> bool:
    """Whether `answer` equals `gold` mathematically (runs in the calling process)."""
    from math_verify import parse, verify

    gold_parsed = parse(_as_math(gold), parsing_timeout=timeout)
    answer_parsed = parse(answer, parsing_timeout=timeout) or parse(_as_math(answer), parsing_timeout=timeout)
    if not gold_parsed or not answer_parsed:
        return False
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=timeout))


def equivalent_keys(a: str, b: str, timeout: int = 5) -> bool:
    """Whether two answer keys (bare LaTeX such as '3x+2') are equal in value (in this process)."""
    from math_verify import parse, verify

    left, right = parse(_as_math(a), parsing_timeout=timeout), parse(_as_math(b), parsing_timeout=timeout)
    return bool(left and right and verify(left, right, timeout_seconds=timeout))


@functools.lru_cache(maxsize=4096)
def keys_equal(a: str, b: str, timeout: int = 5) -> bool:
    """`equivalent_keys` in the process pool (math-verify's timeout needs a main thread); memoised."""
    return _executor().submit(equivalent_keys, a, b, timeout).result()


async def math_equivalent(gold: str, answer: str, timeout: int = 5) -> bool:
    """`equivalent` in the process pool, from async code."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), equivalent, gold, answer, timeout)


def _equivalence_classes(keys: list[str], timeout: int) -> dict[str, str]:
    """Each key -> the first key (in order) math-verify finds equal to it; runs in a worker."""
    representative: dict[str, str] = {}
    leaders: list[str] = []
    for key in keys:
        for leader in leaders:
            if equivalent_keys(leader, key, timeout):
                representative[key] = leader
                break
        else:
            leaders.append(key)
            representative[key] = key
    return representative


async def aunify_keys(keys: list[str], timeout: int = 5) -> dict[str, str]:
    """`unify_keys`, awaited: the event loop keeps serving other questions meanwhile."""
    distinct = list(dict.fromkeys(keys))
    if len(distinct) < 2:
        return {k: k for k in distinct}
    return await asyncio.wrap_future(_executor().submit(_equivalence_classes, distinct, timeout))


def unify_keys(keys: list[str], timeout: int = 5) -> dict[str, str]:
    """Merge answer keys that are mathematically equal, so they vote together (blocking).

    Runs in the process pool (math-verify's timeout needs a main thread).
    """
    distinct = list(dict.fromkeys(keys))
    if len(distinct) < 2:
        return {k: k for k in distinct}
    return _executor().submit(_equivalence_classes, distinct, timeout).result()
