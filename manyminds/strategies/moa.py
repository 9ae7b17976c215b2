"""Mixture-of-Agents: layers of proposers refining each other, then one synthesis.

Wang et al., "Mixture-of-Agents Enhances Large Language Model Capabilities"
(2024). Layer 1's proposers answer the question; each later layer's
proposers see the previous layer's responses through the aggregate-and-
synthesize prompt; a final aggregator model (the strategy's backend)
synthesises the answer from the last layer. Proposers may be any mix of
backends and models; without them, every proposer is a distinct sample of
the main backend. Proposers of a layer fan out with LangGraph `Send`, one
slot per proposer, each over the whole batch.

Follows the paper's structure and its reference defaults (synthesis at
T = 0.7, 2,048 tokens, responses quoted whole). Differences: the paper
counts the aggregator's layer (its 3-layer MoA is `layers=2` here, or
`MixtureOfAgents.from_paper(layers=3)`); our aggregate-and-synthesize prompt
paraphrases theirs (`prompts={"synthesize": ...}` takes their wording); the
default is 3 proposers of one backend where the paper mixes 6 models;
`vote=` can decide by an aggregator over the last layer instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from manyminds.aggregators.base import AggregatorSpec
from manyminds.backends.base import Backend
from manyminds.errors import ConfigError
from manyminds.strategies.base import ModelDecides, PromptedStrategy
from manyminds.text import clip
from manyminds.types import Message, SamplingParams, Source, Task
from manyminds.extensions import Request, View

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

# -- prompt (after Wang et al. 2024, the aggregate-and-synthesize prompt: earlier
#    responses go in the system message, the user's question stays the user turn) ----
SYNTHESIZE_SYSTEM = (
    "You are given several responses to the user's question, written by other assistants. "
    "Some of them may be wrong or biased. Read them critically, then write one answer of your own "
    "that keeps what is right and corrects what is wrong; do not simply copy one of them.\n\n"
    "Responses:\n\n{responses}"
)


def synthesis_messages(question: str, responses: Sequence[str], template: str, max_chars: int | None) -> list[Message]:
    """The aggregate-and-synthesize system prompt over `responses`, then the question as asked."""
    blocks = []
    for k, text in enumerate(responses, 1):
        text = text.strip() or "(empty)"
        blocks.append(f"{k}. {clip(text, max_chars) if max_chars else text}")
    return [
        Message(role="system", content=template.format(responses="\n\n".join(blocks))),
        Message(role="user", content=question),
    ]


class SynthesisConfig(PromptedStrategy, ModelDecides):
    """Settings every synthesising strategy shares (MoA, Self-MoA, Self-MoA-Seq).

    The `synthesis` aggregator decides: the last synthesis's answer.
    """

    decider: ClassVar[str] = "synthesis"
    templates: ClassVar[dict[str, str]] = {"synthesize": SYNTHESIZE_SYSTEM}

    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(max_tokens=2048),
                                     description="every call's parameters; room for long answers by default")
    synthesis_temperature: float = Field(default=0.7, ge=0, description="temperature of synthesis calls "
                                         "(0.7, as the reference setup of Wang et al.)")
    max_chars_per_response: int | None = Field(default=None, ge=50,
                                               description="cut each quoted response to this (default: never)")

    def synthesis_params(self) -> "SamplingParams":
        return self.sampling_params(temperature=self.synthesis_temperature)

    def synthesis(self, task: Task, responses: Sequence[str]) -> list[Message]:
        """The synthesis prompt, then the conversation's earlier turns and its last one as asked."""
        system, last = synthesis_messages(self.ask(task.last_turn()), responses, self.template("synthesize"),
                                          self.max_chars_per_response)
        return [system, *task.history, last]


class MixtureOfAgents(SynthesisConfig):
    """Layers of proposers, each seeing the previous layer, and a final synthesis (Wang et al., 2024)."""

    name: ClassVar[str] = "moa"

    layers: int = Field(default=2, ge=1, description="proposer layers")
    proposers: int = Field(default=3, ge=1, description="proposers per layer (without proposer_backends)")
    proposer_backends: tuple[Any, ...] = Field(
        default=(), exclude=True, description="one backend per proposer; empty: samples of the main backend"
    )
    vote: AggregatorSpec | None = Field(
        default=None, description="decide by this aggregator over the last layer's proposals instead of a "
                                  "synthesis, e.g. 'model-agreement' for proposers that are different models")

    def aggregation(self) -> AggregatorSpec:
        return self.vote if self.vote is not None else super().aggregation()

    @classmethod
    def from_paper(cls, layers: int = 3, proposers: int = 6, **settings: Any) -> "MixtureOfAgents":
        """MoA as Wang et al. count it: their `layers` include the last one, where the aggregator
        synthesises, so their 3-layer MoA with 6 proposers is `layers=2, proposers=6` here."""
        if layers < 2:
            raise ConfigError(f"the paper's MoA has at least 2 layers (proposers, then the aggregator), got {layers}")
        return cls(layers=layers - 1, proposers=proposers, **settings)

    @classmethod
    def for_budget(cls, n: int, **settings: Any) -> "MixtureOfAgents":
        layers = 2 if n >= 4 else 1
        return cls(layers=layers, proposers=max(1, n // layers), **settings)

    def params(self) -> dict[str, Any]:
        record = super().params()
        record["proposer_backends"] = [b.cache_identity() for b in self.proposer_backends]
        return record

    def build(self, backend: Backend) -> "CompiledStateGraph":
        proposers = list(self.proposer_backends) or [backend] * self.proposers

        def propose(v: View) -> list[Request]:
            messages = (self.messages(v.task) if v.round == 0
                        else self.synthesis(v.task, [s.generation.text for s in v.samples]))
            source = Source(prompt=f"proposer-{v.slot + 1}", layer=v.round + 1)
            return [Request(source, messages, 1, first_index=v.slot)]

        p = self.pipeline(backend).repeat(
            lambda p: p.sample(propose, self.sampling_params(), name="propose", replace=True,
                               slots=len(proposers), backends=proposers),
            times=self.layers, name="layers",
        )
        if self.vote is None:
            p.ask("synthesis", lambda v: self.synthesis(v.task, [c.text for c in v.ballots]), self.synthesis_params())
        return p.aggregate(self.aggregation())
