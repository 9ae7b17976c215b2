"""A run-off vote decided by a judge: sample, and when no answer has a majority, ask the model which
of the two leading answers is right, once with each shown first.

The second round of the `run-off` aggregator (`by="judge"`): the likeliest path of each of the two
leading answers is shown, in both orders (a judge's lean towards the first or the second cancels
out); the answer picked in more orders wins, and a split goes to the paths' mean token
probability. Questions won outright in the first round ask nothing more. Greedy judge calls, our
wording (`prompts={"run-off": ...}`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from manyminds.aggregators.base import AggregatorSpec
from manyminds.aggregators.runoff import JUDGE_PROMPT, representative, top_two
from manyminds.backends.base import Backend
from manyminds.extensions import View
from manyminds.strategies.base import OnePromptStrategy
from manyminds.strategies.prompting import render_question
from manyminds.text import clip
from manyminds.types import Message

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

RUN_OFF_PROMPT = (
    "Question: {question}\n\nTwo candidate responses:\n\nAnswer 1:\n{first}\n\nAnswer 2:\n{second}\n\n"
    "Which answer is correct? Reply with just 1 or 2."
)


class RunOffVote(OnePromptStrategy):
    """n paths; without a majority, a judge decides between the two leading answers (both orders)."""

    name: ClassVar[str] = "run-off-vote"
    templates: ClassVar[dict[str, str]] = {"run-off": RUN_OFF_PROMPT}

    judge_max_tokens: int = Field(default=8, ge=1, description="tokens of each judge reply")
    max_chars_per_response: int | None = Field(default=None, ge=50, description="cut each shown path to this")

    def aggregation(self) -> AggregatorSpec:
        return AggregatorSpec(name="run-off", params={"by": "judge"})

    def run_off_messages(self, v: View, order: str) -> list[Message] | None:
        """The judge's prompt for this order, or None when the first round has a majority."""
        pair = top_two(v.candidates)
        if pair is None:
            return None
        shown = [representative(v.candidates, a).text.strip() for a in (pair if order == "ab" else pair[::-1])]
        if self.max_chars_per_response:
            shown = [clip(text, self.max_chars_per_response) for text in shown]
        return self.chat(self.template("run-off").format(question=render_question(v.task), first=shown[0],
                                                          second=shown[1]))

    def build(self, backend: Backend) -> "CompiledStateGraph":
        greedy = self.sampling_params(temperature=0.0, max_tokens=self.judge_max_tokens)
        p = self.draw(self.pipeline(backend))
        for order in ("ab", "ba"):
            p.ask("selection", functools.partial(self.run_off_messages, order=order), greedy,
                  name=f"run-off-{order}", prompt=f"{JUDGE_PROMPT}{order}", read_answer=False)
        return p.aggregate(self.aggregation())
