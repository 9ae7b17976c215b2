"""The synthesis decides: Mixture-of-Agents, Self-MoA and Self-MoA-Seq.

The strategy asked the model for one answer written from the ballots; the
reply is evidence of kind "synthesis" with its own answer key. The last
synthesis's answer is the decision; the ballots' vote stays the tally and
confidence is the share of votes agreeing with it. A synthesis without a
readable answer leaves the decision to `fallback`, and the decision says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from manyminds.aggregators.base import AggregatorSpec, aggregator
from manyminds.aggregators.selection import endorsed, fell_back
from manyminds.types import AnswerFormat, Candidate, Decision, Task, ballots, evidence


def free_form(task: Task) -> bool:
    return task.format is AnswerFormat.TEXT


@aggregator("synthesis")
class Synthesis:
    """The answer of the last synthesis; `fallback` over the ballots when it has none."""

    name = "synthesis"

    def __init__(self, fallback: "str | dict[str, Any] | AggregatorSpec" = "majority") -> None:
        self.fallback = AggregatorSpec.model_validate(fallback)
        self._fallback = self.fallback.build()

    def params(self) -> dict[str, Any]:
        return {"fallback": self.fallback.model_dump()}

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        vote = self._fallback(task, ballots(candidates))
        syntheses = evidence(candidates, "synthesis")
        if not syntheses:
            return fell_back(vote, self.name, self.params(), "no synthesis")
        last = syntheses[-1]
        if last.answer is None:
            if free_form(task):  # an open-ended answer has no key to read: the synthesis itself is the answer
                return Decision(answer=last.text.strip()[:200] or None, confidence=0.0, tally=vote.tally,
                                aggregator=self.name, params=self.params(), chosen=last.index)
            return fell_back(vote, self.name, self.params(), "no answer in the synthesis")
        return endorsed(vote, last.answer, self.name, self.params(), chosen=last.index)
