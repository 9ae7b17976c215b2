"""Selective answers: answer only when the vote is significant, abstain otherwise.

The leader must beat the runner-up at level `alpha` under the mixture sequential probability
ratio test (`stopping.MixtureSPRT`: the likelihood ratio of "the leader's share of the top two is
above one half" averaged over a uniform prior, against 2/alpha), over the samples drawn. A vote
that does not clear it is an abstention: `answer` None, with the would-be answer in the params.
Reports then read accuracy over the answered questions (selective accuracy) and the share
answered (coverage); a lower alpha trades coverage for accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import decide, tally
from manyminds.errors import ConfigError
from manyminds.plugins import RecordsArguments
from manyminds.stopping import MixtureSPRT
from manyminds.types import Candidate, Decision, Task


@aggregator("selective")
class Selective(RecordsArguments):
    """The majority answer when it beats the runner-up at level alpha; no answer otherwise."""

    name = "selective"

    def __init__(self, alpha: float = 0.05) -> None:
        if not 0 < alpha < 0.5:
            raise ConfigError(f"selective: alpha must be in (0, 0.5), got {alpha}")
        self.alpha = alpha
        self._test = MixtureSPRT(alpha=alpha)

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        votes = tally(candidates)
        vote = decide(votes, self.name, self.params())
        ranked = sorted(votes.values(), reverse=True)
        leader, runner_up = (int(ranked[0]) if ranked else 0), (int(ranked[1]) if len(ranked) > 1 else 0)
        ratio = self._test.log_ratio(leader, runner_up)
        if vote.answer is not None and ratio >= self._test.bound():
            return vote.model_copy(update={"params": {**vote.params, "log_ratio": round(ratio, 3)}})
        return Decision(answer=None, confidence=0.0, tally=votes, aggregator=self.name, params={
            **self.params(), "abstained": True, "would_answer": vote.answer, "log_ratio": round(ratio, 3),
            "note": f"abstained: {leader} against {runner_up} does not clear log(2/{self.alpha:g})"})
