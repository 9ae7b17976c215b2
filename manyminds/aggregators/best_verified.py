"""The verifier decides: best-of-n and verifier resampling.

Each ballot carries its verdict. The best-scored answer wins; ties among the
best go to the vote among them, then to the lowest index. With `abstain`, no
passing ballot means no answer: imperfect verifiers let wrong answers pass,
and answering nothing is the honest outcome when none does.
"""

from __future__ import annotations

from collections.abc import Sequence

from manyminds.plugins import RecordsArguments
from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import tally
from manyminds.types import Candidate, Decision, Task


@aggregator("best-verified")
class BestVerified(RecordsArguments):
    """The tally holds each answer's best score; confidence is the winner's score."""

    name = "best-verified"

    def __init__(self, abstain: bool = False) -> None:
        self.abstain = abstain

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        scored = sorted(((c, c.answer, c.verdict) for c in candidates
                         if c.votes and c.answer is not None and c.verdict is not None), key=lambda t: t[0].index)
        best: dict[str, float] = {}
        for _, answer, verdict in scored:
            best[answer] = max(best.get(answer, 0.0), verdict.score)
        if not best or (self.abstain and not any(verdict.passed for _, _, verdict in scored)):
            return Decision(answer=None, confidence=0.0, tally=best, aggregator=self.name,
                            params={**self.params(), "abstained": True,
                                    "note": "abstained: no candidate passed" if best else "abstained: nothing verified"})
        top = max(best.values())
        leaders = [c for c, _, verdict in scored if verdict.score >= top - 1e-9]
        votes = tally(leaders)
        winner = max(votes, key=lambda k: votes[k])
        chosen = next(c.index for c in leaders if c.answer == winner)
        return Decision(answer=winner, confidence=top, tally=best, aggregator=self.name, params=self.params(),
                        chosen=chosen)
