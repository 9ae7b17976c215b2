"""A vote weighted per prompt by how well each prompt agrees with the rest of the ensemble.

DIV-SE's prompts (approach x persona) are not equally good on a given data set; the paper picks
the best combinations on a held-out slice. Without one, a prompt can still earn its weight on the
question itself: each prompt's weight is the share of its answers that agree with the plurality
answer of the *other* prompts' samples (leave-one-prompt-out, so a prompt cannot vouch for itself),
smoothed towards equal weights by `prior` pseudo-votes at 1/2. Each ballot then votes with its
prompt's weight. One prompt only, or samples without a prompt name: the plain majority.

This is the answer-agreement weighting of ensemble members (as in weighted self-consistency and
the prompt-ensemble literature: Naik et al. 2023 for DIV-SE's prompts; Pitis et al. 2023,
"Boosted Prompt Ensembles"), applied per question; nothing is tuned on labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import decide, tally
from manyminds.errors import ConfigError
from manyminds.plugins import RecordsArguments
from manyminds.types import Candidate, Decision, Task


@aggregator("prompt-weighted")
class PromptWeighted(RecordsArguments):
    """Ballots weighted by their prompt's agreement with the other prompts' plurality."""

    name = "prompt-weighted"

    def __init__(self, prior: float = 1.0) -> None:
        if prior < 0:
            raise ConfigError(f"prompt-weighted: prior must be >= 0 pseudo-votes, got {prior}")
        self.prior = prior

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        ballots = [c for c in candidates if c.votes]
        prompts = sorted({c.source.prompt for c in ballots})
        if len(prompts) < 2:
            decision = decide(tally(candidates), self.name, self.params())
            return decision.model_copy(update={"params": {**decision.params, "note": "one prompt: majority"}})
        weights: dict[str, float] = {}
        for prompt in prompts:
            others = Counter(c.answer for c in ballots if c.source.prompt != prompt)
            ordered = sorted(others.items(), key=lambda kv: (-kv[1], min(c.index for c in ballots if c.answer == kv[0])))
            plurality = ordered[0][0] if ordered else None
            own = [c for c in ballots if c.source.prompt == prompt]
            agree = sum(1 for c in own if c.answer == plurality)
            weights[prompt] = (agree + self.prior / 2) / (len(own) + self.prior) if own or self.prior else 0.0
        per_candidate = [weights.get(c.source.prompt, 0.0) if c.votes else 0.0 for c in candidates]
        decision = decide(tally(candidates, per_candidate), self.name, self.params())
        return decision.model_copy(update={"params": {
            **decision.params, "prompt_weights": {p: round(w, 4) for p, w in weights.items()}}})
