"""The model's selection decides: Self-Agreement and universal self-consistency.

The strategy asked the model which response most others agree on; its reply
is evidence of kind "selection". This aggregator maps the reply back to a
ballot and picks that ballot's answer. `prefer="number"` (USC, whose model
names a response) maps by the response number, else by the answer stated;
`prefer="answer"` (Self-Agreement, whose model names an answer) maps by the
stated answer when a ballot gives it, else by the number: "the answer is 42
(Response 3)" with response 3 saying 41 decides 42, the model's answer; the vote over the ballots stays the tally, and confidence
is the share of votes that agree with the choice. When the reply cannot be
mapped back (or there is none), `fallback` decides and the decision says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from manyminds.aggregators.base import AggregatorSpec, Decider, aggregator
from manyminds.answers import extract
from manyminds.types import Candidate, Decision, Task, ballots, evidence

_RESPONSE_NUMBER = re.compile(r"response\s*#?\s*(\d+)", re.IGNORECASE)
_MARKER = re.compile(r"most consistent (?:answer|response)\s*(?:is|:)\s*(.*)", re.IGNORECASE | re.DOTALL)


def read_selection(text: str, task: Task, candidates: Sequence[Candidate],
                   prefer: Literal["number", "answer"] = "number") -> Candidate | None:
    """The candidate a selection reply points to ("Response K" is the K-th shown), or None.

    With `prefer="answer"` the answer the reply states wins over its response number
    when some ballot gives that answer (the numbered one, if it does)."""
    marked = _MARKER.search(text)
    span = marked.group(1) if marked else text
    numbered = None
    for number in _RESPONSE_NUMBER.findall(span)[:1] or _RESPONSE_NUMBER.findall(text)[-1:]:
        k = int(number) - 1
        if 0 <= k < len(candidates) and candidates[k].answer is not None:
            numbered = candidates[k]
    if numbered is not None and prefer == "number":
        return numbered
    stated = extract(task, _RESPONSE_NUMBER.sub("", span.split("\n")[0]))
    if stated is not None:
        if numbered is not None and numbered.answer == stated:
            return numbered
        for candidate in candidates:
            if candidate.answer == stated:
                return candidate
    return numbered


def endorsed(fallback: Decision, answer: str | None, name: str, params: dict[str, Any], chosen: int | None = None) -> Decision:
    """A decision for `answer` made by a model, with the ballots' vote as its tally and evidence."""
    total = sum(fallback.tally.values())
    share = fallback.tally.get(answer, 0.0) / total if total and answer is not None else 0.0
    return Decision(answer=answer, confidence=share, tally=fallback.tally, aggregator=name, params=params,
                    chosen=chosen)


@aggregator("selection")
class Selection(Decider):
    """The ballot the model selected (the last selection reply); `fallback` when none maps back."""

    name = "selection"

    def __init__(self, prefer: Literal["number", "answer"] = "number",
                 fallback: "str | dict[str, Any] | AggregatorSpec" = "majority") -> None:
        super().__init__(fallback)
        self.prefer = prefer

    def params(self) -> dict[str, Any]:
        return {"prefer": self.prefer, **super().params()} if self.prefer != "number" else super().params()

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        shown = ballots(candidates)
        vote = self.vote(task, shown)
        replies = evidence(candidates, "selection")
        if not replies:
            return self.fell_back(vote, "no selection")
        chosen = read_selection(replies[-1].text, task, shown, self.prefer)
        if chosen is None:
            return self.fell_back(vote, "selection not mapped to a response")
        position = next(k for k, c in enumerate(shown) if c is chosen)
        params = {**self.params(), "chosen": chosen.index, "note": f"chose response {position + 1}"}
        return endorsed(vote, chosen.answer, self.name, params, chosen=chosen.index)
