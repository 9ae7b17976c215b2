"""The model's selection decides: Self-Agreement and universal self-consistency.

The strategy asked the model which response most others agree on; its reply
is evidence of kind "selection". This aggregator maps the reply back to a
ballot (by response number, else by the answer it states) and picks that
ballot's answer; the vote over the ballots stays the tally, and confidence
is the share of votes that agree with the choice. When the reply cannot be
mapped back (or there is none), `fallback` decides and the decision says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from manyminds.aggregators.base import Decider, aggregator
from manyminds.answers import extract
from manyminds.types import Candidate, Decision, Task, ballots, evidence

_RESPONSE_NUMBER = re.compile(r"response\s*#?\s*(\d+)", re.IGNORECASE)
_MARKER = re.compile(r"most consistent (?:answer|response)\s*(?:is|:)\s*(.*)", re.IGNORECASE | re.DOTALL)


def read_selection(text: str, task: Task, candidates: Sequence[Candidate]) -> Candidate | None:
    """The candidate a selection reply points to ("Response K" is the K-th shown), or None."""
    marked = _MARKER.search(text)
    span = marked.group(1) if marked else text
    for number in _RESPONSE_NUMBER.findall(span)[:1] or _RESPONSE_NUMBER.findall(text)[-1:]:
        k = int(number) - 1
        if 0 <= k < len(candidates) and candidates[k].answer is not None:
            return candidates[k]
    stated = extract(task, _RESPONSE_NUMBER.sub("", span.split("\n")[0]))
    if stated is not None:
        for candidate in candidates:
            if candidate.answer == stated:
                return candidate
    return None


def endorsed(fallback: Decision, answer: str, name: str, params: dict[str, Any], chosen: int | None = None) -> Decision:
    """A decision for `answer` made by a model, with the ballots' vote as its tally and evidence."""
    total = sum(fallback.tally.values())
    share = fallback.tally.get(answer, 0.0) / total if total else 0.0
    return Decision(answer=answer, confidence=share, tally=fallback.tally, aggregator=name, params=params,
                    chosen=chosen)


@aggregator("selection")
class Selection(Decider):
    """The ballot the model selected (the last selection reply); `fallback` when none maps back."""

    name = "selection"

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        shown = ballots(candidates)
        vote = self.vote(task, shown)
        replies = evidence(candidates, "selection")
        if not replies:
            return self.fell_back(vote, "no selection")
        chosen = read_selection(replies[-1].text, task, shown)
        if chosen is None:
            return self.fell_back(vote, "selection not mapped to a response")
        position = next(k for k, c in enumerate(shown) if c is chosen)
        params = {**self.params(), "chosen": chosen.index, "note": f"chose response {position + 1}"}
        return endorsed(vote, chosen.answer, self.name, params, chosen=chosen.index)  # type: ignore[arg-type]
