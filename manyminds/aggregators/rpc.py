"""Perplexity consistency with reasoning pruning (RPC).

Zhou et al., "Bridging Internal Probability and Self-Consistency for
Effective and Efficient LLM Reasoning" (2025; NeurIPS 2025 as "A Theoretical
Study on ..."). Each reasoning path has an internal probability, the
exponentiated mean token logprob. Reasoning pruning: the probabilities are
modelled as a mixture of two Weibull distributions (fitted by maximum
likelihood); a path is pruned when it more likely belongs to the
low-probability component and its probability is below the mean.
Perplexity consistency: an answer's score is the sum of the probabilities of
its distinct reasoning paths (identical texts count once); the highest
score wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from manyminds.plugins import RecordsArguments
from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import decide
from manyminds.errors import CapabilityError
from manyminds.types import Candidate, Decision, Task


def path_probability(candidate: Candidate) -> float:
    probability = candidate.generation.mean_token_probability if candidate.generation else None
    if probability is None:
        raise CapabilityError(
            "RPC needs token logprobs for every path: sample with logprobs=True "
            "(Local, OpenAICompatible and vLLM backends return them)"
        )
    return probability


def low_component(probabilities: Sequence[float]) -> list[bool]:
    """For each probability: True when a 2-Weibull mixture assigns it to the lower component.

    The mixture is fitted by maximum likelihood (scipy); the components are
    ordered by their means.
    """
    import numpy as np
    from scipy.optimize import minimize
    from scipy.special import gamma
    from scipy.stats import weibull_min

    data = np.clip(np.asarray(probabilities, dtype=float), 1e-12, None)

    def pdf(x: Any, k: float, lam: float) -> Any:
        return weibull_min.pdf(x, k, scale=lam)

    def nll(params: Any) -> float:
        w, k1, l1, k2, l2 = params
        density = w * pdf(data, k1, l1) + (1 - w) * pdf(data, k2, l2)
        return float(-np.sum(np.log(np.clip(density, 1e-300, None))))

    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the optimiser probes extreme shapes
        fit = minimize(nll, [0.5, 1.0, 1.0, 1.5, 2.0],
                       bounds=[(0.2, 0.8), (0.01, None), (0.01, None), (0.01, None), (0.01, None)])
    w, k1, l1, k2, l2 = fit.x
    if l1 * gamma(1 + 1 / k1) < l2 * gamma(1 + 1 / k2):  # make component 1 the high one
        w, k1, l1, k2, l2 = 1 - w, k2, l2, k1, l1
    with np.errstate(all="ignore"):
        high = w * pdf(data, k1, l1)
        low = (1 - w) * pdf(data, k2, l2)
    return [bool(lo > hi) for lo, hi in zip(low, high)]


@aggregator("rpc")
class RPC(RecordsArguments):
    """Perplexity consistency over the paths left after reasoning pruning.

    Args:
        prune: apply reasoning pruning (the "R" of RPC); False gives plain
            perplexity consistency.
        min_paths: fewer voting paths than this are not pruned (a 2-component fit needs data).
    """

    name = "rpc"

    def __init__(self, prune: bool = True, min_paths: int = 4) -> None:
        self.prune = prune
        self.min_paths = min_paths

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        paths = sorted((c for c in candidates if c.votes), key=lambda c: c.index)
        probabilities = [path_probability(c) for c in paths]
        keep = [True] * len(paths)
        if self.prune and len(paths) >= self.min_paths:
            mean = sum(probabilities) / len(probabilities)
            keep = [not (low and p < mean) for low, p in zip(low_component(probabilities), probabilities)]
        scores: dict[str, float] = {}
        seen: set[tuple[str, str]] = set()
        for c, p, kept in zip(paths, probabilities, keep):
            answer = c.answer or ""  # paths are ballots with an answer (`votes`)
            scores.setdefault(answer, 0.0)
            if kept and (answer, c.text) not in seen:
                seen.add((answer, c.text))
                scores[answer] += p
        decision = decide({k: v for k, v in scores.items() if v > 0}, self.name, self.params())
        return decision.model_copy(update={"params": {**decision.params, "pruned": keep.count(False)}})
