"""The extension points, in one file, importable without LangGraph: what a plugin author types against.

Every way to extend manyminds is here, as simonw/llm keeps its hookspecs:

- `Backend` (and `Capabilities`): where samples come from; a factory in the `manyminds.backends`
  entry-point group makes one from a spec.
- `Aggregator`: candidates -> Decision; `@aggregator("name")` (`manyminds.aggregators`).
- `Verifier`: a Verdict on one candidate; `@verifier("name")` on a factory (`manyminds.verifiers`).
- `StopRule`: when to stop sampling; `@stopping_rule("name")` (`manyminds.stopping`).
- `Scorer`: a benchmark's score of a Result (`bench.run(scorer=...)`).
- Strategies: a `Strategy` subclass with a `name`; its plans see a `View` of a task and return
  `Request`s (each with a `Source`), its stopping conditions return `Settled`.
- Evidence: a strategy that asks the model something besides sampling (a selection, a
  verification) records the reply as a candidate of an evidence kind; declare a new one with
  `evidence_kind(name, description)`.

Built-ins register exactly as plugins do; a name is taken once (`plugins.Registry`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast, runtime_checkable

from pydantic import BaseModel, ConfigDict

from manyminds.types import (
    EVIDENCE_KINDS, Candidate, Decision, Generation, Message, Result, SamplingParams, Source, Task, Verdict,
    evidence_kind,
)

if TYPE_CHECKING:
    from manyminds.agents.state import EnsembleState, Sample
    from manyminds.bench.scoring import Score

S = TypeVar("S", bound="EnsembleState")

__all__ = [
    "EVIDENCE_KINDS", "Aggregator", "Backend", "Candidate", "Capabilities", "Decision", "Generation", "Message",
    "StreamingBackend",
    "Request", "Result", "SamplingParams", "Scorer", "Settled", "Source", "StopRule", "Task", "Verdict", "Verifier",
    "View", "evidence_kind",
]


# -- backends ------------------------------------------------------------------------------

class Capabilities(BaseModel):
    """What a backend can do natively; strategies and the cache plan around it."""

    model_config = ConfigDict(frozen=True)

    native_n: bool = False
    """One call returns n samples (vLLM, OpenAI); otherwise n calls are made."""
    logprobs: bool = False
    """Per-token logprobs of sampled tokens can be returned."""
    max_concurrency: int = 1
    """How many calls may be in flight at once."""
    batch_width: int = 1
    """Samples one call can draw for about the price (in time) of one: 1 for sequential
    decoding (the embedded model), larger for batching engines (vLLM, a GPU server). Stopping
    rules then draw ahead by up to this many samples per wave instead of paying a round trip
    per wave; the answer and the samples used stay those of the sequential rule."""
    stops_samples: bool = False
    """`SamplingParams.stop_below_confidence` stops a sample while it decodes (the embedded
    model), saving its remaining tokens; otherwise the sample is generated in full and cut after."""


@runtime_checkable
class Backend(Protocol):
    """Samples completions of a chat.

    `first_index` is the sample index of the first requested sample: the
    cache asks for exactly the samples it is missing (8..15 after a run of 8),
    and a backend derives a distinct, reproducible seed per sample from it.
    Returned generations carry their sample index.
    """

    name: str
    model: str

    @property
    def capabilities(self) -> Capabilities:
        """What it can do natively (an attribute or a property)."""
        ...

    async def generate(
        self, messages: list[Message], params: SamplingParams, n: int = 1, first_index: int = 0
    ) -> list[Generation]: ...

    def cache_identity(self) -> dict[str, Any]:
        """What, besides messages and parameters, decides the output: kind, model, endpoint.

        Never include secrets: this goes into the cache key and the cache file.
        """
        ...


@runtime_checkable
class StreamingBackend(Protocol):
    """A backend that can also hand over one sample's text as it is generated (optional: a
    backend without `stream` has its whole text handed over at once, `backends.base.streamed`).
    `manyminds serve` streams a synthesis this way. The returned Generation is the sample that
    `generate(messages, params, 1, first_index)` would return (same seed, same key in the cache)."""

    async def stream(self, messages: list[Message], params: SamplingParams, on_text: "Callable[[str], None]",
                     first_index: int = 0) -> Generation: ...


# -- aggregators, verifiers, stopping rules, scorers ----------------------------------------

@runtime_checkable
class Aggregator(Protocol):
    """Candidates to a Decision. One that does slow work (runs programs, calls out) sets a class
    attribute `blocking = True`: the aggregate step then calls it on a worker thread."""

    name: str

    def params(self) -> dict[str, Any]:
        """The parameters that decided, recorded in every Decision."""
        ...

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision: ...


@runtime_checkable
class Verifier(Protocol):
    name: str

    async def verify(self, task: Task, candidate: Candidate) -> Verdict:
        """Score one candidate: 1 is surely right, 0 surely wrong."""
        ...

    def params(self) -> dict[str, Any]:
        """The settings recorded with every verdict."""
        ...


class ReadsOthers(Protocol):
    """A verifier that reads the question's other samples too (`sees_other_samples = True`):
    `verifiers.base.check` calls it with `others=`."""

    name: str
    sees_other_samples: bool

    async def verify(self, task: Task, candidate: Candidate, others: Sequence[Candidate] = ()) -> Verdict: ...


@runtime_checkable
class StopRule(Protocol):
    name: str

    def wave(self, drawn: int) -> int:
        """How many samples to draw next, given `drawn` so far."""
        ...

    def check(self, answers: Sequence[str | None]) -> str | None:
        """Why to stop now, or None to sample another wave."""
        ...


class Scorer(Protocol):
    name: str

    async def score(self, result: Result) -> Score: ...


# -- what a strategy's plans see and return --------------------------------------------------

@dataclass(frozen=True)
class View(Generic[S]):
    """What a plan, a prompt builder or a stopping condition sees of one task.

    Generic over the graph state's type: a strategy declaring its own state (DIV-SE's
    `DiversityState`) reads its fields with `get`, typed as that state."""

    i: int
    task: Task
    state: S
    round: int = 0
    """Completed rounds of the innermost loop around the step (0 outside loops)."""
    slot: int = 0
    """The fanned-out slot (DIV-SE prompt, MoA proposer) a slot plan is asked about."""

    @property
    def samples(self) -> list[Sample]:
        return self.state["samples"][self.i]

    @property
    def drawn(self) -> int:
        return len(self.state["samples"][self.i])

    @property
    def candidates(self) -> list[Candidate]:
        return self.state["candidates"][self.i]

    @property
    def ballots(self) -> list[Candidate]:
        return [c for c in self.state["candidates"][self.i] if c.source.kind == "sample"]

    def evidence(self, kind: str) -> list[Candidate]:
        return [c for c in self.state["candidates"][self.i] if c.source.kind == kind]

    @property
    def passed(self) -> bool:
        """Whether a verified ballot passed."""
        return any(c.verdict is not None and c.verdict.passed for c in self.ballots)

    def get(self, key: str) -> Any:
        """Task i's entry of a per-task list the strategy's own state declares."""
        return cast("Mapping[str, Any]", self.state)[key][self.i]  # a key of the strategy's own state type


@dataclass(frozen=True)
class Settled:
    """A stopping condition's verdict on a task: why it stops, and how many samples it keeps."""

    reason: str
    keep: int | None = None
    """Voting samples to keep (a rule that drew ahead in a batch); the rest become `spare`."""


@dataclass(frozen=True)
class Request:
    """One backend request a strategy plans for a task: `n` samples of `messages`."""

    source: Source | str
    messages: list[Message]
    n: int = 1
    params: SamplingParams | None = None
    """Overrides the step's parameters (e.g. greedy for a selection call)."""
    first_index: int = 0
    """Sample index of the first sample: requests sharing one backend and prompt take
    distinct indices, so they are distinct samples (and distinct cache rows)."""

    @property
    def origin(self) -> Source:
        return self.source if isinstance(self.source, Source) else Source.parse(self.source)
