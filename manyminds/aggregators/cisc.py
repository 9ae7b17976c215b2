"""Confidence-informed self-consistency (CISC; Taubenfeld et al., 2025): a vote weighted by each
path's confidence, normalised across the question's paths with a softmax at temperature T.

The paper's confidence is the model's own (a verbal score, P(True) or the path's length-normalised
sequence probability); this uses the last: the mean token logprob of the path, the one available
from every backend that returns logprobs. `temperature` flattens (large) or sharpens (small) the
weights; T -> infinity is the plain majority vote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import decide, tally
from manyminds.errors import ConfigError
from manyminds.plugins import RecordsArguments
from manyminds.types import Candidate, Decision, Task


def path_confidence(candidate: Candidate) -> float | None:
    """The mean token logprob of a path (None without logprobs)."""
    logprobs = candidate.generation.logprobs if candidate.generation else None
    if not logprobs:
        return None
    return sum(t.logprob for t in logprobs) / len(logprobs)


@aggregator("cisc")
class CISC(RecordsArguments):
    """Votes weighted by softmax(confidence / T) over the question's paths; ties by lowest sample index.

    A path without logprobs gets the lowest confidence among the others (no path is dropped); with
    none at all this is the majority vote, and the decision says so.
    """

    name = "cisc"

    def __init__(self, temperature: float = 0.1) -> None:
        if not temperature > 0:
            raise ConfigError(f"cisc: temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        scores = [path_confidence(c) if c.votes else None for c in candidates]
        known = [s for s in scores if s is not None]
        if not known:
            decision = decide(tally(candidates), self.name, self.params())
            return decision.model_copy(update={"params": {**decision.params, "note": "no logprobs: majority"}})
        floor = min(known)
        top = max(known)
        weights = [math.exp(((s if s is not None else floor) - top) / self.temperature) if c.votes else 0.0
                   for c, s in zip(candidates, scores)]
        return decide(tally(candidates, weights), self.name, self.params())
