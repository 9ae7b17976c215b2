"""The synthesis decides: Mixture-of-Agents, Self-MoA and Self-MoA-Seq.

The strategy asked the model for one answer written from the ballots; the
reply is evidence of kind "synthesis" with its own answer key. The last
synthesis's answer is the decision; the ballots' vote stays the tally and
confidence is the share of votes agreeing with it. A synthesis without a
readable answer leaves the decision to `fallback`, and the decision says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from manyminds.aggregators.base import Decider, aggregator
from manyminds.aggregators.selection import endorsed
from manyminds.types import AnswerFormat, Candidate, Decision, Task, evidence


def free_form(task: Task) -> bool:
    return task.format is AnswerFormat.TEXT


@aggregator("synthesis")
class Synthesis(Decider):
    """The answer of the last synthesis; `fallback` over the ballots when it has none."""

    name = "synthesis"

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        vote = self.vote(task, candidates)
        syntheses = evidence(candidates, "synthesis")
        if not syntheses:
            return self.fell_back(vote, "no synthesis")
        last = syntheses[-1]
        if last.answer is None:
            if free_form(task):  # an open-ended answer has no key to read: the synthesis itself is the answer
                return Decision(answer=last.text.strip()[:200] or None, confidence=0.0, tally=vote.tally,
                                aggregator=self.name, params=self.params(), chosen=last.index)
            return self.fell_back(vote, "no answer in the synthesis")
        return endorsed(vote, last.answer, self.name, self.params(), chosen=last.index)
