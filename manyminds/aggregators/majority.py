"""Majority vote, the aggregator of self-consistency (Wang et al., 2023)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from manyminds.plugins import RecordsArguments
from manyminds.aggregators.base import aggregator
from manyminds.types import Candidate, Decision, Task


def tally(candidates: Sequence[Candidate], weights: Sequence[float] | None = None) -> dict[str, float]:
    """Votes per answer key, keys in order of their earliest sample index."""
    ordered = sorted(range(len(candidates)), key=lambda i: (candidates[i].index, i))
    counts: dict[str, float] = {}
    for i in ordered:
        c = candidates[i]
        answer = c.answer
        # evidence (syntheses, selections) and unreadable samples do not vote (Candidate.votes, inlined)
        if answer is not None and c.source.kind == "sample":
            counts[answer] = counts.get(answer, 0.0) + (1.0 if weights is None else weights[i])
    return counts


def decide(counts: dict[str, float], name: str, params: dict[str, Any]) -> Decision:
    """The most voted key; a tie goes to the key whose first vote has the lowest sample index.

    `counts` must be ordered by first appearance (as `tally` makes it), so
    `max` keeps the earliest of the tied keys: deterministic, independent of
    the order in which parallel samples arrived.
    """
    total = sum(counts.values())
    if not counts or total <= 0:
        return Decision(answer=None, confidence=0.0, tally=counts, aggregator=name, params=params)
    winner = max(counts, key=lambda k: counts[k])
    return Decision(
        answer=winner,
        confidence=counts[winner] / total,
        tally=counts,
        aggregator=name,
        params=params,
    )


@aggregator("majority")
class Majority(RecordsArguments):
    """One candidate, one vote; candidates without an answer abstain.

    Ties: the answer whose first vote came from the lowest sample index wins.
    Confidence: the winner's share of the votes cast.
    """

    name = "majority"

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        return decide(tally(candidates), self.name, self.params())
