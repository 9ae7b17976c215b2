"""DeepConf offline (Fu et al., 2025, "Deep Think with Confidence"): keep the most confident paths,
judged by their weakest stretch, and vote among them.

A path's group confidence is the mean token confidence over a sliding window of `window` tokens;
its score is the lowest group confidence along the path (a path that loses its way somewhere
scores low however well it ends). The top `keep` share of paths by that score vote, weighted by
their score mapped to (0, 1] (`weighted=True`, as the paper's confidence-weighted majority) or
one vote each.

Differs from the paper: its token confidence is the negative mean logprob of the top-k candidate
tokens; where a backend returns only the sampled token's logprob (the embedded model, most pools),
the sampled token's logprob is the confidence. Offline filtering saves no tokens: every path was
generated (the online variant, stopping paths mid-generation, is what saves them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import decide, tally
from manyminds.errors import ConfigError
from manyminds.plugins import RecordsArguments
from manyminds.types import Candidate, Decision, Task, TokenLogprob


def token_confidence(token: TokenLogprob) -> float:
    """The paper's -mean(top-k logprobs) where alternatives were returned, else the sampled logprob
    (`TokenLogprob.confidence`, which the online test while decoding reads too)."""
    return token.confidence


def lowest_group_confidence(tokens: Sequence[TokenLogprob], window: int) -> float:
    """min over sliding windows of the mean token confidence (the whole path when it is shorter)."""
    values = [token_confidence(t) for t in tokens]
    width = min(window, len(values))
    running = sum(values[:width])
    lowest = running
    for k in range(width, len(values)):
        running += values[k] - values[k - width]
        lowest = min(lowest, running)
    return lowest / width


@aggregator("deepconf")
class DeepConf(RecordsArguments):
    """The top `keep` share of voting paths by lowest group confidence vote (ties: lowest sample index)."""

    name = "deepconf"

    def __init__(self, keep: float = 0.1, window: int = 2048, weighted: bool = True, warmup: int = 0) -> None:
        if not 0 < keep <= 1:
            raise ConfigError(f"deepconf: keep is a share of the paths in (0, 1], got {keep}")
        if window < 1:
            raise ConfigError(f"deepconf: window must be >= 1 token, got {window}")
        if warmup < 0:
            raise ConfigError(f"deepconf: warmup must be >= 0 paths, got {warmup}")
        self.keep, self.window, self.weighted, self.warmup = keep, window, weighted, warmup

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        scored = [(c, lowest_group_confidence(c.generation.logprobs, self.window))
                  for c in candidates if c.votes and c.generation is not None and c.generation.logprobs]
        if not scored:
            decision = decide(tally(candidates), self.name, self.params())
            return decision.model_copy(update={"params": {**decision.params, "note": "no logprobs: majority"}})
        if self.warmup:
            # online: the threshold the warm-up paths set (the top `keep` share of them); every path
            # at or above it votes (later paths below it were stopped while decoding, or are dropped here)
            floor = threshold(candidates, self.keep, self.window, self.warmup)
            kept = [cs for cs in scored if floor is None or cs[1] >= floor] or scored
        else:
            count = max(1, math.ceil(self.keep * len(scored)))
            kept = sorted(scored, key=lambda cs: (-cs[1], cs[0].index))[:count]
        top = max(s for _, s in kept)
        weight = {c.index: (math.exp(s - top) if self.weighted else 1.0) for c, s in kept}
        weights = [weight.get(c.index, 0.0) for c in candidates]  # paths not kept do not vote
        decision = decide(tally(candidates, weights), self.name, self.params())
        return decision.model_copy(update={"params": {**decision.params, "kept": len(kept), "of": len(scored)}})


def threshold(candidates: Sequence[Candidate], keep: float, window: int, warmup: int) -> float | None:
    """DeepConf online's stopping threshold: the lowest score among the top `keep` share of the first
    `warmup` paths (by sample index; the 90th percentile at keep=0.1). None without logprobs."""
    paths = sorted(((c.index, c.generation.logprobs) for c in candidates if c.source.kind == "sample"
                    and c.generation is not None and c.generation.logprobs), key=lambda p: p[0])[:warmup]
    scores = sorted((lowest_group_confidence(tokens, window) for _, tokens in paths), reverse=True)
    if not scores:
        return None
    return scores[max(1, math.ceil(keep * len(scores))) - 1]
