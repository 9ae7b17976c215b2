"""Model agreement: a vote across models, each weighted by its self-consistency and its agreement with the rest.

For multi-model ensembles (MoA's proposers, a panel of backends). Each
model's answers are weighted by how sure the model is of itself (the share
of its own samples on its top answer, times its mean token probability
when logprobs are there) and by how much its answer distribution overlaps
the other models'. Candidates are grouped into models by their source's
agent (MoA's proposer) or by a function.

What this is not: CoRE ("Harnessing Consistency for Robust Test-Time LLM
Ensemble", 2025) measures consistency at the token level (how far each
model's per-token distribution agrees with the others while decoding) and
combines distributions token by token; that needs every model's logits at
every step. This aggregator works on answers alone, after sampling, and
only borrows CoRE's idea of weighting models by agreement. It was called
`model-consistency`; that name still finds it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from manyminds.plugins import RecordsArguments
from manyminds.aggregators.base import REGISTRY, aggregator
from manyminds.aggregators.majority import decide
from manyminds.types import Candidate, Decision, Task


def _by_source(candidate: Candidate) -> str:
    # a proposer is the same model in every layer: group by agent, not by layer
    return candidate.source.agent


@aggregator("model-agreement")
class ModelAgreement(RecordsArguments):
    """Answer scores = sum over models of weight(model) x the model's answer shares.

    weight = self-confidence x (agreement with the other models + `floor`).
    A single model reduces to majority vote.
    """

    name = "model-agreement"

    def __init__(self, group: Callable[[Candidate], str] | None = None, floor: float = 0.05) -> None:
        self.group = group or _by_source
        self.floor = floor

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        models: dict[str, list[Candidate]] = {}
        for c in sorted(candidates, key=lambda c: c.index):
            if c.votes:
                models.setdefault(self.group(c), []).append(c)
        shares = {m: {k: v / len(cs) for k, v in Counter(c.answer for c in cs if c.answer is not None).items()} for m, cs in models.items()}
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
            if c.votes and c.answer is not None:
                scores.setdefault(c.answer, 0.0)
        for m, dist in shares.items():
            for k, share in dist.items():
                scores[k] += weights[m] * share
        decision = decide(scores, self.name, self.params())
        return decision.model_copy(update={"params": {**decision.params, "model_weights": weights}})


REGISTRY.register("model-consistency", ModelAgreement)  # the name it had; stored runs and scripts still find it
ModelConsistency = ModelAgreement
