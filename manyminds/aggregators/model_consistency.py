"""Model-level consistency for multi-model ensembles, after CoRE.

After "Harnessing Consistency for Robust Test-Time LLM Ensemble" (CoRE,
2025): each model's answers are weighted by how sure the model is of itself
(the share of its own samples on its top answer, times its mean token
probability when logprobs are there) and how much it agrees with the other
models (the overlap of its answer distribution with theirs). Black-box: it
needs only samples, and logprobs if available. Candidates are grouped into
models by their `source` (MoA names proposers that way) or by a function.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import decide
from manyminds.types import Candidate, Decision, Task


def _by_source(candidate: Candidate) -> str:
    # a proposer is the same model in every layer: group by agent, not by layer
    return candidate.source.agent


@aggregator("model-consistency")
class ModelConsistency:
    """Answer scores = sum over models of weight(model) x the model's answer shares.

    weight = self-confidence x (agreement with the other models + `floor`).
    A single model reduces to majority vote.
    """

    name = "model-consistency"

    def __init__(self, group: Callable[[Candidate], str] | None = None, floor: float = 0.05) -> None:
        self.group = group or _by_source
        self.floor = floor

    def params(self) -> dict[str, Any]:
        return {"floor": self.floor}

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        models: dict[str, list[Candidate]] = {}
        for c in sorted(candidates, key=lambda c: c.index):
            if c.votes:
                models.setdefault(self.group(c), []).append(c)
        shares = {m: {k: v / len(cs) for k, v in Counter(c.answer for c in cs).items()} for m, cs in models.items()}
        weights: dict[str, float] = {}
        for m, cs in models.items():
            confidence = max(shares[m].values())
            probabilities = [p for c in cs if c.generation and (p := c.generation.mean_token_probability) is not None]
            if probabilities:
                confidence *= sum(probabilities) / len(probabilities)
            others = [o for o in models if o != m]
            agreement = (
                sum(sum(min(shares[m].get(k, 0.0), shares[o].get(k, 0.0)) for k in shares[m]) for o in others) / len(others)
                if others else 1.0
            )
            weights[m] = confidence * (agreement + self.floor)
        scores: dict[str, float] = {}
        for c in sorted(candidates, key=lambda c: c.index):  # keys in order of first appearance
            if c.votes:
                scores.setdefault(c.answer, 0.0)
        for m, dist in shares.items():
            for k, share in dist.items():
                scores[k] += weights[m] * share
        decision = decide(scores, self.name, self.params())
        return decision.model_copy(update={"params": {**decision.params, "model_weights": weights}})
