"""A run-off election: plurality first; without a majority, a second round between the top two.

The leader wins outright with more than half of the votes. Otherwise the two leading answers go
to a second round, decided by

- `by="logprob"`: the paths' mean token probability (the answer whose paths the model found
  likelier on average), so a narrow plurality of improbable paths does not carry the vote; or
- `by="judge"`: a judge's verdict on the two, asked by the `run-off-vote` strategy in both
  orders (`Source(kind="selection", prompt="run-off/ab" or ".../ba")`; each reply names answer 1
  or 2); the answer the judge picks in more orders wins, and a split (or an unreadable reply) goes
  to the mean token probability, then the plurality.

Without what the round needs, the plurality stands, and the decision says so. Ties: lowest
sample index, as everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import decide, tally
from manyminds.plugins import RecordsArguments
from manyminds.types import Candidate, Decision, Task

JUDGE_PROMPT = "run-off/"
"""The prompt name of the judge's run-off replies (then "ab" or "ba": which answer was shown first)."""

_CHOICE = re.compile(r"\b(?:answer\s*)?([12])\b", re.IGNORECASE)


def top_two(candidates: Sequence[Candidate]) -> list[str] | None:
    """The two leading answers when none has a majority of the votes (earlier first on a tie); else None."""
    votes = tally(candidates)
    total = sum(votes.values())
    if len(votes) < 2:
        return None
    ordered = sorted(votes, key=lambda k: -votes[k])  # stable: the earlier answer first on a tie
    if votes[ordered[0]] * 2 > total:
        return None
    return ordered[:2]


def representative(candidates: Sequence[Candidate], answer: str) -> Candidate:
    """The path shown for `answer` in the second round: its likeliest (mean token probability), else its earliest."""
    paths = sorted((c for c in candidates if c.votes and c.answer == answer), key=lambda c: c.index)
    return max(paths, key=lambda c: (c.generation.mean_token_probability or 0.0) if c.generation else 0.0)


def judge_choice(reply: str) -> int | None:
    """1 or 2, as the judge's reply names it (its first such number), else None."""
    match = _CHOICE.search(reply)
    return None if match is None else int(match.group(1))


@aggregator("run-off")
class RunOff(RecordsArguments):
    """Plurality, then the top two by mean token probability or a judge when no answer has a majority."""

    name = "run-off"

    def __init__(self, by: Literal["logprob", "judge"] = "logprob") -> None:
        self.by = by

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        votes = tally(candidates)
        first = decide(votes, self.name, self.params())
        pair = top_two(candidates)
        if first.answer is None or pair is None:
            return first
        total = sum(votes.values())
        if self.by == "judge":
            picks = self._judged(candidates, pair)
            if picks is not None:
                winner = max(pair, key=lambda k: (picks[k], -pair.index(k)))
                if picks[pair[0]] != picks[pair[1]]:
                    return Decision(answer=winner, confidence=votes[winner] / total, tally=votes,
                                    aggregator=self.name, params={**self.params(), "second_round": picks})
        mean = self._probabilities(candidates, pair)
        if mean is None:
            note = "no logprobs: plurality" if self.by == "logprob" else "no judge verdict and no logprobs: plurality"
            return first.model_copy(update={"params": {**first.params, "note": note}})
        winner = max(pair, key=lambda k: (mean[k], -pair.index(k)))
        params = {**self.params(), "second_round": {k: round(v, 4) for k, v in mean.items()}}
        if self.by == "judge":
            params["note"] = "the judge split or was not asked: mean token probability"
        return Decision(answer=winner, confidence=votes[winner] / total, tally=votes, aggregator=self.name,
                        params=params)

    @staticmethod
    def _probabilities(candidates: Sequence[Candidate], pair: list[str]) -> dict[str, float] | None:
        mean: dict[str, float] = {}
        for answer in pair:
            probabilities = [p for c in candidates if c.votes and c.answer == answer and c.generation is not None
                             and (p := c.generation.mean_token_probability) is not None]
            if not probabilities:
                return None
            mean[answer] = sum(probabilities) / len(probabilities)
        return mean

    @staticmethod
    def _judged(candidates: Sequence[Candidate], pair: list[str]) -> dict[str, int] | None:
        """How many of the judge's orders picked each of the two (None: the judge was not asked)."""
        replies = [c for c in candidates if c.source.kind == "selection" and c.source.prompt.startswith(JUDGE_PROMPT)]
        if not replies:
            return None
        picks = {pair[0]: 0, pair[1]: 0}
        for reply in replies:
            choice = judge_choice(reply.text)
            if choice is None:
                continue
            shown = pair if reply.source.prompt.endswith("/ab") else [pair[1], pair[0]]
            picks[shown[choice - 1]] += 1
        return picks
