"""Weighted majority: each candidate's vote counts by a weight instead of 1.

Weights come from the candidate's verifier score (`by="verifier"`), from its
mean token probability (`by="logprob"`, the exponentiated mean token
logprob of its generation), or from a function the user supplies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from manyminds.plugins import RecordsArguments
from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import decide, tally
from manyminds.errors import CapabilityError, ConfigError
from manyminds.types import Candidate, Decision, Task


def verifier_weight(candidate: Candidate) -> float:
    if candidate.verdict is None:
        raise ConfigError("weighted vote by='verifier' needs verified candidates (run a verifying strategy)")
    return candidate.verdict.score


def logprob_weight(candidate: Candidate) -> float:
    """exp(mean token logprob): the path's per-token probability, comparable across lengths."""
    probability = candidate.generation.mean_token_probability if candidate.generation else None
    if probability is None:
        raise CapabilityError(
            "weighted vote by='logprob' needs token logprobs: sample with logprobs=True on a backend that returns them"
        )
    return probability


@aggregator("weighted")
class WeightedMajority(RecordsArguments):
    """Sum of weights per answer; the heaviest answer wins (ties: lowest sample index first).

    Confidence is the winner's share of the total weight.
    """

    name = "weighted"

    def __init__(
        self,
        by: Literal["verifier", "logprob", "given"] = "verifier",
        weight: Callable[[Candidate], float] | None = None,
    ) -> None:
        if by == "given" and weight is None:
            raise ConfigError("weighted vote by='given' needs a weight function of the candidate")
        self.by = by
        self.weight: Callable[[Candidate], float] = weight or (verifier_weight if by == "verifier" else logprob_weight)

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        weights = [self.weight(c) if c.votes else 0.0 for c in candidates]
        return decide(tally(candidates, weights), self.name, self.params())
