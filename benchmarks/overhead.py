"""Orchestration overhead: SelfConsistency.solve_many against a bare asyncio loop.

Both make the same backend calls to a Scripted backend with a fixed simulated
latency; the difference is what the graph, extraction, aggregation and result
assembly cost. Goal: at most 5% slower at 1,000 concurrent samples.

    .venv/bin/python benchmarks/overhead.py
"""

from __future__ import annotations

import asyncio
from collections import Counter

from _common import best_of, record

from manyminds.answers import extract
from manyminds.backends import Scripted
from manyminds.strategies import SelfConsistency

def scenario(questions: int, n: int, latency: float, repeats: int = 3) -> dict:
    tasks = [f"What is {i} + {i + 1}?" for i in range(questions)]
    strategy = SelfConsistency(n=n)
    params = strategy.sampling_params()

    def bare() -> None:
        backend = Scripted(["The answer is 3."], latency=latency)

        async def go():
            await asyncio.gather(*(backend.generate(strategy.messages(_task(t)), params, n) for t in tasks))

        asyncio.run(go())

    def hand_written() -> None:
        """The same calls, plus extraction and a Counter vote: self-consistency without the library."""
        backend = Scripted(["The answer is 3."], latency=latency)

        async def one(question: str):
            task = _task(question)
            generations = await backend.generate(strategy.messages(task), params, n)
            votes = Counter(a for g in generations if (a := extract(task, g.text)) is not None)
            return votes.most_common(1)

        async def go():
            await asyncio.gather(*(one(t) for t in tasks))

        asyncio.run(go())

    def managed() -> None:
        backend = Scripted(["The answer is 3."], latency=latency)
        strategy.solve_many(tasks, backend=backend, concurrency=questions, progress=False)

    bare_s = best_of(repeats, bare)
    hand_s = best_of(repeats, hand_written)
    graph_s = best_of(repeats, managed)
    return {
        "questions": questions,
        "samples_per_question": n,
        "concurrent_samples": questions * n,
        "latency_s": latency,
        "bare_calls_s": round(bare_s, 4),
        "hand_written_sc_s": round(hand_s, 4),
        "manyminds_s": round(graph_s, 4),
        "ratio_vs_bare_calls": round(graph_s / bare_s, 3),
        "ratio_vs_hand_written": round(graph_s / hand_s, 3),
    }


def _task(question: str):
    from manyminds.types import Task

    return Task(question=question)


if __name__ == "__main__":
    rows = []
    for latency in (0.05, 0.25, 1.0):
        for questions, n in ((125, 8), (1000, 1)):
            r = scenario(questions, n, latency)
            rows.append(r)
            print(
                f"latency {latency:>4}s, {questions:>4} questions x {n} samples: bare calls {r['bare_calls_s']:.3f}s, "
                f"hand-written SC {r['hand_written_sc_s']:.3f}s, manyminds {r['manyminds_s']:.3f}s; "
                f"ratio {r['ratio_vs_bare_calls']:.3f} vs calls, {r['ratio_vs_hand_written']:.3f} vs hand-written"
            )
    print("written", record("overhead", {"goal": "ratio <= 1.05 at 1,000 concurrent samples", "rows": rows}))
