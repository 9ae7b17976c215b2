"""The state an ensemble graph carries: a batch of tasks and what each has produced.

One graph invocation works on a batch of questions: every node processes the
whole batch at once (sampling concurrently inside the node), so orchestration
costs a few graph steps per batch instead of per question. A single question
is a batch of one; the `question`/`task` inputs and `result`/`answer`
outputs make the compiled graph drop into a user's StateGraph as a node.

Fan-out with `Send` goes over *slots* (a DIV-SE prompt, an MoA proposer),
each slot handling the whole batch; slot outputs meet in the `slot_samples`
reducer and are ordered by slot before use, since parallel updates arrive in
arbitrary order.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from pydantic import BaseModel, ConfigDict

from manyminds.types import Candidate, Decision, Generation, Result, Task, Verdict


class Sample(BaseModel):
    """A generation and the prompt it answered (e.g. "approach-2", "layer-1/proposer-0")."""

    model_config = ConfigDict(frozen=True)

    source: str
    generation: Generation


class SlotSamples(BaseModel):
    """What one fanned-out slot produced for every task of the batch, in a given round."""

    model_config = ConfigDict(frozen=True)

    round: int
    slot: int
    samples: list[list[Sample]]
    aux: list[list[Generation]] = []


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
    samples: list[list[Sample]]
    """The samples that vote (or are synthesised), per task."""
    aux: list[list[Generation]]
    """Auxiliary calls per task (proposals, selections, syntheses): counted in usage, never voting."""
    spare: list[list[Generation]]
    """Samples a stopping rule drew ahead (batched waves) but did not use: cached, never voting,
    reported apart in usage (`speculative_samples`)."""
    candidates: list[list[Candidate]]
    decisions: list[Decision | None]
    """Set by a node that decides itself (selection, synthesis); None leaves it to the aggregator."""
    traces: list[list[str]]
    """Per task, the steps taken and anything notable (fallbacks, escalations)."""
    scratch: dict[str, Any]
    """Strategy-specific per-batch values (proposed approaches, MoA round), keyed by name."""
    verdicts: list[dict[int, Verdict]]
    """Per task, the verifier's verdict on each candidate, by candidate index."""
    slot_samples: Annotated[list[SlotSamples], operator.add]
    round: int
