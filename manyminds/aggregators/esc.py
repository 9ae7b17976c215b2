"""The ESC decision: the first unanimous window's answer, as the official scripts decide.

Early-stopping self-consistency (Li et al., 2024) samples in windows and
stops at the first unanimous one; its official scripts (Yiwei98/ESC) answer
with that window's answer, not with a vote over every sample drawn, which
can differ (a later unanimous window can outvote nothing yet lose the vote
to earlier samples). When no window was unanimous, `fallback` decides over
all samples (the scripts' majority). A window of unreadable answers stops
ESC by default, and then the decision is to answer nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from manyminds.aggregators.base import AggregatorSpec, Decider, aggregator
from manyminds.errors import ConfigError
from manyminds.types import Candidate, Decision, Task, ballots


@aggregator("esc")
class EarlyStoppingWindow(Decider):
    """The answer of the first unanimous window of `window` ballots (in index order), else `fallback`."""

    name = "esc"

    def __init__(self, window: int = 5, unreadable_stops: bool = True,
                 fallback: "str | dict[str, Any] | AggregatorSpec" = "majority") -> None:
        if window < 1:
            raise ConfigError(f"esc: window must be at least 1, got {window}")
        super().__init__(fallback)
        self.window = window
        self.unreadable_stops = unreadable_stops

    def params(self) -> dict[str, Any]:
        return {"window": self.window, "unreadable_stops": self.unreadable_stops, **super().params()}

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        shown = sorted(ballots(candidates), key=lambda c: c.index)
        vote = self.vote(task, shown)
        for start in range(0, len(shown) - self.window + 1, self.window):
            answers = [c.answer for c in shown[start:start + self.window]]
            if all(a == answers[0] for a in answers) and (answers[0] is not None or self.unreadable_stops):
                params = {**self.params(), "window_at": start}
                if answers[0] is None:
                    params["note"] = f"window {start}-{start + self.window - 1} unanimous with no readable answer"
                share = vote.tally.get(answers[0], 0.0) / sum(vote.tally.values()) if answers[0] and vote.tally else 0.0
                return Decision(answer=answers[0], confidence=share, tally=vote.tally, aggregator=self.name,
                                params=params, chosen=shown[start].index)
        return self.fell_back(vote, "no unanimous window")
