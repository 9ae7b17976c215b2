"""The state an ensemble graph carries: a batch of tasks and what each has produced.

One graph invocation works on a batch of questions: every node processes the
whole batch at once (sampling concurrently inside the node), so orchestration
costs a few graph steps per batch instead of per question. A single question
is a batch of one; the `question`/`task` inputs and `result`/`answer`
outputs make the compiled graph drop into a user's StateGraph as a node.
"""

from __future__ import annotations

from typing import Any, TypedDict

from manyminds.types import Candidate, Decision, Generation, Result, Task


class EnsembleInput(TypedDict, total=False):
    """What a caller may give: one question (text or Task) or a batch of tasks."""

    question: str
    task: Task
    tasks: list[Task | str]


class EnsembleOutput(TypedDict, total=False):
    """What a caller gets back: the batch's results and, for one question, its answer."""

    results: list[Result]
    result: Result
    answer: str | None
    confidence: float


class EnsembleState(EnsembleInput, EnsembleOutput, total=False):
    """Per-task lists are aligned with `batch`: entry i belongs to task i."""

    batch: list[Task]
    single: bool
    generations: list[list[Generation]]
    candidates: list[list[Candidate]]
    decisions: list[Decision]
    scratch: dict[str, Any]
    """Strategy-specific per-batch values (e.g. proposed approaches), keyed by name."""
