"""Self-Agreement: sample diverse reasoning paths, then ask the model which answer most agree on.

Lin et al., "Ask One More Time: Self-Agreement Improves Reasoning of
Language Models in (Almost) All Scenarios" (2023). Works when answers are
free text: the model's selection is mapped back to one of the candidates
(by the answer it states when a candidate gives it, else by its response
number); if it cannot be, the majority vote decides and the trace records
the fallback.

Follows the paper's two steps. Differs: the selection call is greedy and its
wording is ours (`prompts={"select": ...}` for theirs); paths are quoted whole
unless `max_chars_per_response` is set; the paper has no fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from manyminds.aggregators.base import AggregatorSpec
from manyminds.backends.base import Backend
from manyminds.strategies.base import ModelDecides, OnePromptStrategy
from manyminds.strategies.prompting import numbered, render_question
from manyminds.types import Candidate, Message, Task

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

# -- prompt (after Lin et al. 2023: show all paths, ask for the most agreed answer) ----
SELECT_PROMPT = (
    "Question: {question}\n\nHere are {n} responses to it:\n\n{responses}\n\n"
    "Which answer do most of these responses agree on? Do not solve the question again. "
    "Finish with a line of the form 'The most consistent answer is X (Response K).', "
    "where K is the number of a response that gives that answer."
)


class SelfAgreement(OnePromptStrategy, ModelDecides):
    """n sampled paths, then one more call selecting the answer most paths agree on.

    Decided by the `selection` aggregator, which reads the model's reply.
    """

    name: ClassVar[str] = "self-agreement"
    decider: ClassVar[str] = "selection"
    selection_prefers: ClassVar[str] = "answer"
    """Self-Agreement asks for the answer most paths agree on: the stated answer decides when a
    path gives it, the response number only otherwise (USC, which asks for a response, overrides)."""
    templates: ClassVar[dict[str, str]] = {"select": SELECT_PROMPT}

    max_chars_per_response: int | None = Field(
        default=None, ge=50, description="cut each path in the selection prompt to this (default: never)")
    select_max_tokens: int = Field(default=256, ge=8)

    def selection_messages(self, task: Task, candidates: Sequence[Candidate]) -> list[Message]:
        return self.chat(
            self.template("select").format(
                question=render_question(task), n=len(candidates),
                responses=numbered(candidates, self.max_chars_per_response),
            )
        )

    def aggregation(self) -> AggregatorSpec:
        spec = super().aggregation()
        if self.selection_prefers == "number":
            return spec
        return AggregatorSpec(name=spec.name, params={**spec.params, "prefer": self.selection_prefers})

    def build(self, backend: Backend) -> "CompiledStateGraph":
        greedy = self.sampling_params(temperature=0.0, max_tokens=self.select_max_tokens)
        p = self.draw(self.pipeline(backend))
        p.ask("selection", lambda v: self.selection_messages(v.task, v.ballots) if v.ballots else None, greedy)
        return p.aggregate(self.aggregation())
