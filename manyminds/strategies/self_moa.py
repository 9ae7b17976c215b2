"""Self-MoA and Self-MoA-Seq: many samples of one model, synthesised by that model.

Li et al., "Rethinking Mixture-of-Agents: Is Mixing Different Large Language
Models Beneficial?" (2025). Self-MoA: the proposers are n samples of one
model, then one synthesis with the aggregate-and-synthesize prompt of MoA.
Self-MoA-Seq: the samples are synthesised with a sliding window, so the
context never holds them all: round 1 synthesises the first `window`
samples; every later round synthesises the running answer with the next
`window` samples; N samples take ceil(N / window) rounds and none is skipped.

Follows the paper, Seq drawing each round's samples when the round comes.
Differs: the synthesize prompt paraphrases MoA's (`prompts={"synthesize": ...}`);
Seq takes no stopping rule (refused rather than ignored).
"""

from __future__ import annotations

from math import ceil
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, model_validator

from manyminds.backends.base import Backend
from manyminds.strategies.base import OnePromptStrategy
from manyminds.strategies.moa import SynthesisConfig
from manyminds.types import MAX_SAMPLES
from manyminds.extensions import Request, View

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

class SelfMoA(SynthesisConfig, OnePromptStrategy):
    """n samples of the backend's model, then one synthesis by the same model (Li et al., 2025)."""

    name: ClassVar[str] = "self-moa"

    n: int = Field(default=6, ge=1, le=MAX_SAMPLES, description="samples synthesised (the cap with a stop rule)")

    def build(self, backend: Backend) -> "CompiledStateGraph":
        p = self.draw(self.pipeline(backend))
        p.ask("synthesis", lambda v: self.synthesis(v.task, [c.text for c in v.ballots]), self.synthesis_params())
        return p.aggregate(self.aggregation())


class SelfMoASeq(SelfMoA):
    """Self-MoA with a sliding window: each round synthesises the running answer and the next samples.

    The samples are drawn round by round (`window` per round, indices
    continuing), so a round's synthesis sees the running synthesis and the
    samples drawn for it; N samples take ceil(N / window) rounds.
    """

    name: ClassVar[str] = "self-moa-seq"

    n: int = Field(default=8, ge=1, le=MAX_SAMPLES, description="samples synthesised")
    window: int = Field(default=3, ge=1, description="new samples per synthesis round")

    @model_validator(mode="after")
    def _no_stop_rule(self) -> "SelfMoASeq":
        if self.stop is not None:
            raise ValueError("self-moa-seq synthesises every window; it takes no stopping rule (stop=)")
        return self

    def build(self, backend: Backend) -> "CompiledStateGraph":
        def window(v: "View") -> "list[Request]":
            size = min(self.window, self.n - v.drawn)
            return [Request("", self.messages(v.task), size, first_index=v.drawn)] if size > 0 else []

        def synthesis(v: "View") -> list:
            running = v.evidence("synthesis")[-1:]
            shown = [c.text for c in running] + [c.text for c in v.ballots[v.round * self.window:]]
            return self.synthesis(v.task, shown)

        def body(p):
            p.sample(window, self.sampling_params()).ask("synthesis", synthesis, self.synthesis_params())

        p = self.pipeline(backend).repeat(body, times=ceil(self.n / self.window), name="rounds")
        return p.aggregate(self.aggregation())
