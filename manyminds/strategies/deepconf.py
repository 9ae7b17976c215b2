"""DeepConf online (Fu et al., 2025, "Deep Think with Confidence"): stop unpromising paths while they decode.

A warm-up of `warmup` paths is drawn in full; the threshold is the lowest score among their top
`keep` share (a path's score: its lowest mean token confidence over a sliding window of `window`
tokens). Every later path is sampled with `SamplingParams.stop_below_confidence` at that
threshold: the moment its last `window` tokens fall below it, decoding stops (on the embedded
model the tokens are never generated; on other backends the path is cut where it would have
stopped, so the decision is the same and only the saving is lost). A stopped path does not vote.
Paths come in waves of `wave`, until the confidence-weighted leader holds `consensus` of the
kept paths' weight (the paper's adaptive sampling) or `n` paths are drawn. The `deepconf`
aggregator decides, with the warm-up's threshold: every path at or above it votes, weighted.

Where it differs: the paper's token confidence is the negative mean of the top-k logprobs; with
`top_logprobs=0` (the default here, as the embedded model's samples return only the sampled
token's) the sampled token's logprob is the confidence. The paper's window is 2,048 tokens, as
here by default; the small embedded model writes shorter paths, so its benchmark uses a shorter
one (`window=`). A stopped path is the prefix of the path drawn in full with the same index (the
same seeds), so its saving is measured exactly against self-consistency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, model_validator

from manyminds.aggregators.base import AggregatorSpec, get_aggregator
from manyminds.aggregators.deepconf import threshold
from manyminds.answers import extract
from manyminds.backends.base import Backend
from manyminds.extensions import Request, Settled, View
from manyminds.strategies.base import PromptedStrategy
from manyminds.types import MAX_SAMPLES, Task

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    from manyminds.agents.state import Sample


def _read(task: Task, sample: "Sample") -> str | None:
    """A stopped path has no answer: it does not vote, whatever it wrote before it stopped."""
    if sample.generation.finish_reason == "aborted":
        return None
    return extract(task, sample.generation.text)


class DeepConfOnline(PromptedStrategy):
    """Warm-up paths set a confidence threshold; later paths stop while decoding once below it."""

    name: ClassVar[str] = "deepconf-online"

    n: int = Field(default=32, ge=2, le=MAX_SAMPLES, description="most paths per question (warm-up included)")
    warmup: int = Field(default=8, ge=1, description="paths drawn in full to set the threshold (the paper: 16)")
    keep: float = Field(default=0.1, gt=0, le=1, description="the top share of warm-up paths the threshold "
                                                             "keeps: 0.1 is DeepConf-low, 0.9 DeepConf-high")
    window: int = Field(default=2048, ge=1, description="tokens per group (the paper: 2,048)")
    wave: int = Field(default=8, ge=1, description="paths per round after the warm-up")
    consensus: float = Field(default=0.95, gt=0, le=1, description="stop drawing once the weighted leader holds "
                                                                   "this share (the paper's tau); 1: draw all n")

    @model_validator(mode="after")
    def _warmup_within_n(self) -> "DeepConfOnline":
        if self.warmup >= self.n:
            raise ValueError(f"warmup ({self.warmup}) must be below n ({self.n}): later paths are the ones stopped")
        return self

    @classmethod
    def for_budget(cls, n: int, **settings: object) -> "DeepConfOnline":
        """n paths, a quarter of them (2 at least, n - 1 at most) the warm-up."""
        return cls.model_validate({"n": n, "warmup": max(1, min(n - 1, max(2, n // 4))), **settings})

    def aggregation(self) -> AggregatorSpec:
        return AggregatorSpec(name="deepconf", params={"keep": self.keep, "window": self.window,
                                                       "warmup": self.warmup})

    def build(self, backend: Backend) -> "CompiledStateGraph":
        full = self.sampling_params(logprobs=True)
        decide = get_aggregator(self.aggregation())

        def warm(v: View) -> list[Request]:
            return [Request("", self.messages(v.task), self.warmup)]

        def wave(v: View) -> list[Request]:
            size = min(self.wave, self.n - v.drawn)
            floor = threshold(v.candidates, self.keep, self.window, self.warmup)
            if size <= 0 or floor is None:
                return []
            stopping = full.model_copy(update={"stop_below_confidence": floor, "confidence_window": self.window})
            return [Request("", self.messages(v.task), size, params=stopping, first_index=v.drawn)]

        def settled(v: View) -> Settled | None:
            decision = decide(v.task, v.candidates)
            if self.consensus < 1 and decision.answer is not None and decision.confidence >= self.consensus:
                return Settled(f"consensus: {decision.confidence:.2f} of the kept paths' weight >= {self.consensus}")
            return Settled(f"{self.n} paths drawn") if v.drawn >= self.n else None

        p = self.pipeline(backend)
        p.sample(warm, full, name="warmup", read=_read)
        p.repeat(lambda p: p.sample(wave, full, read=_read), until=settled, name="waves")
        return p.aggregate()
