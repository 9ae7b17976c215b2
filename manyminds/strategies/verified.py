"""Strategies that use a verifier: best-of-n, verifier resampling, and the verified vote.

Imperfect verifiers have false positives, and resampling cannot remove them
(Stroebl et al., "Inference Scaling fLaws: The Limits of LLM Resampling with
Imperfect Verifiers", 2024): the more samples a resampler draws, the more
chances a wrong answer has to slip through. So resampling has a budget, may
abstain when nothing passes, and every candidate keeps its verdict; with a
gold answer, `answers.false_positives(result)` counts the candidates that passed but
are wrong.

Verifier resampling draws `batch` samples a round (default 4, fewer round
trips); `batch=1` is the paper's sequential setting, one sample at a time
until one passes. `benchmarks/papers/false_positives.py` draws its
false-positive curve on HumanEval against tests the verifier never sees.
"""

from __future__ import annotations

import warnings

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from manyminds.aggregators.base import AggregatorSpec
from manyminds.backends.base import Backend
from manyminds.strategies.base import OnePromptStrategy, PromptedStrategy
from manyminds.extensions import Request, Settled, View

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

class VerifierConfig(PromptedStrategy):
    """A verifier (excluded from the config's JSON, recorded by name and parameters)."""

    needs_verifier: ClassVar[bool] = True

    verifier: Any = Field(exclude=True, description="a Verifier: unit tests, math, judge, panel, reward")

    def params(self) -> dict[str, Any]:
        record = super().params()
        record["verifier"] = {"name": self.verifier.name, **self.verifier.params()}
        return record


class BestOfN(OnePromptStrategy, VerifierConfig):
    """n samples, each verified (concurrently); the best score wins, ties broken by vote.

    Decided by the `best-verified` aggregator.
    """

    name: ClassVar[str] = "best-of-n"

    abstain: bool = Field(default=False, description="answer nothing when no candidate passes")

    def build(self, backend: Backend) -> "CompiledStateGraph":
        return self.draw(self.pipeline(backend)).verify(self.verifier).aggregate(self.aggregation())

    def aggregation(self) -> AggregatorSpec:
        return AggregatorSpec(name="best-verified", params={"abstain": self.abstain})


class VerifierResampling(VerifierConfig):
    """Sample in batches until a candidate passes or the budget is spent; abstain if none passes.

    Waves of `batch` samples, each verified; the loop's stopping condition
    sees the verdicts, so a question stops as soon as one passes. Only
    unsettled questions are sampled again. Decided by `best-verified`.
    """

    name: ClassVar[str] = "verifier-resampling"

    batch: int = Field(default=4, ge=1, description="samples drawn per round")
    max_samples: int = Field(default=16, ge=1, description="most samples per question")
    abstain: bool = Field(default=True, description="no answer when nothing passes within max_samples")

    @model_validator(mode="before")
    @classmethod
    def _samples_were_called_budget(cls, value: Any) -> Any:
        """`budget=16` (a number of samples) was this setting's name before budgets in tokens
        (`Strategy.budget`) existed: still read as max_samples, with a warning."""
        if isinstance(value, dict) and isinstance(value.get("budget"), int) and "max_samples" not in value:
            warnings.warn("VerifierResampling(budget=N) is now max_samples=N (budget= is the token budget "
                          "every strategy takes)", DeprecationWarning, stacklevel=4)
            value = {**value, "max_samples": value["budget"]}
            del value["budget"]
        return value

    @model_validator(mode="after")
    def _batch_within_budget(self) -> "VerifierResampling":
        if self.batch > self.max_samples:
            raise ValueError(f"batch ({self.batch}) must not exceed max_samples ({self.max_samples})")
        return self

    @classmethod
    def for_budget(cls, n: int, **settings: Any) -> "VerifierResampling":
        return cls(batch=max(1, n // 4), max_samples=n, **settings)

    def build(self, backend: Backend) -> "CompiledStateGraph":
        def batch(v: "View") -> list[Request]:
            size = min(self.batch, self.max_samples - v.drawn)
            return [Request("", self.messages(v.task), size, first_index=v.drawn)] if size > 0 else []

        def passed_or_spent(v: "View") -> "Settled | None":
            if v.passed:
                return Settled(f"a candidate passed after {v.drawn} samples")
            return Settled(f"budget spent after {v.drawn} samples") if v.drawn >= self.max_samples else None

        p = self.pipeline(backend).repeat(
            lambda p: p.sample(batch, self.sampling_params()).verify(self.verifier), until=passed_or_spent, name="rounds"
        )
        return p.aggregate(self.aggregation())

    def aggregation(self) -> AggregatorSpec:
        return AggregatorSpec(name="best-verified", params={"abstain": self.abstain})


class VerifiedVote(OnePromptStrategy, VerifierConfig):
    """n samples, each verified; votes weighted by verifier score (the `weighted` aggregator)."""

    name: ClassVar[str] = "verified-vote"

    def build(self, backend: Backend) -> "CompiledStateGraph":
        return self.draw(self.pipeline(backend)).verify(self.verifier).aggregate(self.aggregation())

    def aggregation(self) -> AggregatorSpec:
        return AggregatorSpec(name="weighted", params={"by": "verifier"})
