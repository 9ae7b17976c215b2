"""A run-off election: plurality first; without a majority, a second round between the top two.

The leader wins outright with more than half of the votes. Otherwise the two leading answers go
to a second round decided by the paths' mean token probability (the answer whose paths the model
found likelier on average; `by="logprob"`), so a narrow plurality of improbable paths does not
carry the vote. Without logprobs the plurality stands, and the decision says so. Ties: lowest
sample index, as everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import decide, tally
from manyminds.plugins import RecordsArguments
from manyminds.types import Candidate, Decision, Task


@aggregator("run-off")
class RunOff(RecordsArguments):
    """Plurality, then the top two by mean token probability when no answer has a majority."""

    name = "run-off"

    def __init__(self, by: Literal["logprob"] = "logprob") -> None:
        self.by = by

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        votes = tally(candidates)
        first = decide(votes, self.name, self.params())
        total = sum(votes.values())
        if first.answer is None or len(votes) < 2 or votes[first.answer] * 2 > total:
            return first
        top_two = sorted(votes, key=lambda k: -votes[k])[:2]  # stable: the earlier answer first on a tie
        mean: dict[str, float] = {}
        for answer in top_two:
            probabilities = [p for c in candidates if c.votes and c.answer == answer and c.generation is not None
                             and (p := c.generation.mean_token_probability) is not None]
            if not probabilities:
                return first.model_copy(update={"params": {**first.params, "note": "no logprobs: plurality"}})
            mean[answer] = sum(probabilities) / len(probabilities)
        winner = max(top_two, key=lambda k: (mean[k], -top_two.index(k)))
        return Decision(answer=winner, confidence=votes[winner] / total, tally=votes, aggregator=self.name,
                        params={**self.params(), "second_round": {k: round(v, 4) for k, v in mean.items()}})
