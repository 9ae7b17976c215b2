"""Judges' rankings decide by Borda count (ranked voting).

Each judge ranked all ballots best first (evidence of kind "ranking"). A
ballot ranked r-th among m gets m - 1 - r points from a judge; an answer's
score is the points of its ballots. A ranking that cannot be read counts for
nothing; with no readable ranking at all, `fallback` decides.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from manyminds.aggregators.base import Decider, aggregator
from manyminds.types import Candidate, Decision, Task, ballots, evidence


def parse_ranking(text: str, m: int) -> list[int] | None:
    """Ballot positions (0-based) best first, or None unless the reply ranks 1..m validly."""
    line = re.search(r"ranking\s*:\s*(.*)", text, re.IGNORECASE)
    numbers = [int(x) - 1 for x in re.findall(r"\d+", line.group(1) if line else text)]
    seen: list[int] = []
    for k in numbers:
        if 0 <= k < m and k not in seen:
            seen.append(k)
    return seen if len(seen) == m else None


def borda(rankings: Sequence[Sequence[int]], m: int) -> list[float]:
    """Borda points per position: m - 1 - rank (best gets m - 1 ... worst 0), summed over rankings."""
    points = [0.0] * m
    for ranking in rankings:
        for rank, position in enumerate(ranking):
            points[position] += m - 1 - rank
    return points


@aggregator("borda")
class Borda(Decider):
    """Borda count over the judges' rankings; confidence is the winner's share of the points."""

    name = "borda"

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        shown = ballots(candidates)
        replies = evidence(candidates, "ranking")
        read = [(c, parse_ranking(c.text, len(shown))) for c in replies]
        valid = [r for _, r in read if r]
        if not valid:
            return self.fell_back(self.vote(task, shown), "no readable ranking")
        scores: dict[str, float] = {}
        for c, p in zip(shown, borda(valid, len(shown))):
            if c.answer is not None:
                scores[c.answer] = scores.get(c.answer, 0.0) + p
        total = sum(scores.values())
        best = max(scores, key=lambda k: scores[k]) if scores else None
        confidence = scores[best] / total if best is not None and total else 0.0
        params = {**self.params(), "judges": len(replies), "readable": len(valid)}
        unreadable = [c.source.agent.replace("-", " ") for c, r in read if not r]
        if unreadable:
            params["note"] = "; ".join(f"{judge}: ranking unreadable" for judge in unreadable)
        return Decision(answer=best, confidence=confidence, tally=scores, aggregator=self.name, params=params)
