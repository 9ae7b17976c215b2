"""Run strategies over a task set and score them.

A benchmark compares methods at their sample budgets: accuracy, samples per
question, backend calls made now and tokens. With a cache, single sampling
reads sample 0 of the self-consistency request, so it costs no generation.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from manyminds.backends.base import Backend
from manyminds.cache import GenerationCache
from manyminds.strategies.base import Strategy
from manyminds.types import Result, Task, Usage


class MethodScore(BaseModel):
    method: str
    questions: int
    correct: int
    usage: Usage

    @property
    def accuracy(self) -> float:
        return self.correct / self.questions if self.questions else 0.0

    @property
    def samples_per_question(self) -> float:
        return self.usage.samples / self.questions if self.questions else 0.0


class BenchReport(BaseModel):
    scores: list[MethodScore]
    results: dict[str, list[Result]]


def score(method: str, results: Sequence[Result]) -> MethodScore:
    usage = Usage()
    for r in results:
        usage = usage + r.usage
    return MethodScore(
        method=method, questions=len(results), correct=sum(bool(r.correct) for r in results), usage=usage
    )


async def run_methods(
    methods: dict[str, Strategy],
    tasks: Sequence[Task],
    *,
    backend: Backend,
    cache: GenerationCache | None,
    concurrency: int = 16,
    progress: bool | None = None,
) -> BenchReport:
    """Each method over all tasks, in the order given; results keep the task order."""
    results: dict[str, list[Result]] = {}
    for label, strategy in methods.items():
        results[label] = await strategy.asolve_many(
            tasks, backend=backend, cache=cache, concurrency=concurrency, progress=progress
        )
    return BenchReport(scores=[score(label, rs) for label, rs in results.items()], results=results)


def most_split(results: Sequence[Result]) -> Result:
    """The result whose vote was closest (lowest confidence among those that voted) for display."""
    voted = [r for r in results if r.tally] or list(results)
    return min(voted, key=lambda r: (r.confidence, r.task.id or ""))
