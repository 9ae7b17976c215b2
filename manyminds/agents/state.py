"""The state an ensemble graph carries: a batch of tasks and what each has produced.

One graph invocation works on a batch of questions: every node processes the
whole batch at once (sampling concurrently inside the node), so orchestration
costs a few graph steps per batch instead of per question. A single question
is a batch of one; the `question`/`task` inputs and `result`/`answer`
outputs make the compiled graph drop into a user's StateGraph as a node.

Every per-task list is aligned with `batch`. The invariants, kept by the
builder (`agents/builder.py`) and nobody else:

- `samples[i]` are task i's voting samples, in sample order; a sampling
  step may add to them or replace them (the replaced ones move to `aux`, so
  they still count in usage).
- `candidates[i]` holds one candidate per answer read from a sample (IDIV-SE
  reads several from one) and the strategy's evidence (proposals,
  selections, syntheses, rankings: `Source.kind`). A candidate's `index` is
  assigned once, from `issued[i]`, and never reused, so verdicts and tie
  rules can rely on it; list order is the order of issue.
- `stop_reasons[i]` is None while task i may still be sampled; a loop's
  stopping condition sets it (or a budget that withheld a request), and
  settled tasks are never sampled again.

A strategy that needs more per-task values declares them in a TypedDict
extending `EnsembleState` (DIV-SE's `DiversityState`), never in a loose dict.
"""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from pydantic import BaseModel, ConfigDict

from manyminds.types import Candidate, Generation, Result, Source, Task


class Sample(BaseModel):
    """A generation and where it came from (its prompt, proposer, layer)."""

    model_config = ConfigDict(frozen=True)

    source: Source
    generation: Generation


class SlotSamples(BaseModel):
    """What one fanned-out slot produced for every task of the batch, at one step and round."""

    model_config = ConfigDict(frozen=True)

    step: str
    """The sampling step and the loop rounds it ran in, e.g. "propose@layer=1"."""
    slot: int
    samples: list[list[Sample]]
    withheld: list[int] = []
    """Per task: samples a budget did not let this slot draw."""
    budget_stops: list[str | None] = []
    """Per task: which budget withheld them."""


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
    """The batch and, per task (aligned with `batch`), what the graph has produced."""

    batch: list[Task]
    single: bool
    samples: list[list[Sample]]
    """The samples that vote (or are synthesised), per task."""
    candidates: list[list[Candidate]]
    """Ballots read from `samples` and the strategy's evidence; indices assigned once."""
    issued: list[int]
    """The next candidate index of each task."""
    aux: list[list[Generation]]
    """Calls that never vote (proposals, selections, syntheses, replaced samples): counted in usage."""
    spare: list[list[Generation]]
    """Samples a stopping rule drew ahead (batched waves) but did not use: cached, never voting,
    reported apart in usage (`speculative_samples`)."""
    traces: list[list[str]]
    """Per task, the steps taken and anything notable (fallbacks, escalations)."""
    stop_reasons: list[str | None]
    """Why a loop stopped sampling a task; None while it may still be sampled."""
    withheld: list[int]
    """Samples and calls a budget did not let start (`manyminds.budget`), per task."""
    rounds: dict[str, int]
    """Completed rounds of each loop, by the loop's name ("waves", "layers", "rounds")."""
    slot_samples: Annotated[list[SlotSamples], operator.add]
    """Fanned-out slots' outputs, merged by the join step in slot order (arrival order is arbitrary)."""
