"""Warm cache: a rerun of 1,000 questions x 16 samples served entirely from the cache.

The first run fills the cache from a Scripted backend; the timed run is a
fresh process-level rerun (new cache connection, new graph) that must make no
backend call. Goal: under 2 seconds.

    .venv/bin/python benchmarks/warm_cache.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import record

from manyminds.backends import Scripted
from manyminds.cache import GenerationCache
from manyminds.strategies import SelfConsistency
from manyminds.types import Task

QUESTIONS, N = 1000, 16


def reply(messages, params, index):
    return f"Adding step by step, the answer is {index % 3 + 10}."


def main() -> None:
    tasks = [Task(question=f"What is {i} + {i + 1}?", gold=str(2 * i + 1)) for i in range(QUESTIONS)]
    strategy = SelfConsistency(n=N)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "warm.db"
        filler = Scripted(reply)
        start = time.perf_counter()
        strategy.solve_many(tasks, backend=filler, cache=path, concurrency=64, progress=False)
        cold = time.perf_counter() - start

        timings = []
        for _ in range(3):
            backend = Scripted(reply)
            start = time.perf_counter()
            with GenerationCache(path) as cache:
                results = strategy.solve_many(tasks, backend=backend, cache=cache, concurrency=64, progress=False)
            timings.append(time.perf_counter() - start)
            assert backend.calls == 0 and all(r.usage.cached_samples == N for r in results)
    warm = min(timings)
    print(f"cold fill {cold:.2f}s; warm rerun of {QUESTIONS} x {N} from cache: {warm:.3f}s (best of 3)")
    print("written", record("warm_cache", {
        "questions": QUESTIONS, "samples": N, "cold_fill_s": round(cold, 3),
        "warm_s": round(warm, 3), "warm_runs_s": [round(t, 3) for t in timings], "goal_s": 2.0,
    }))


if __name__ == "__main__":
    main()
