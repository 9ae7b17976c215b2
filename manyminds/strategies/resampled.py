"""Samples that each see a different prompt: exemplar resampling and choice shuffling.

- Exemplar resampling (after self-ensembled in-context learning: each
  sample is prompted with its own draw of k exemplars from a pool, and the
  answers vote): the variety comes from the prompt as well as from sampling.
  Draw i of a question is seeded by the question and i, so a rerun shows
  every sample the same exemplars and hits the cache.
- Template variation (self-ensembled in-context learning's prompt-template
  variation): sample i is asked with template i mod t of `templates`, the
  same question worded t ways (each with the `{question}` and `{form}`
  fields), so no single wording's quirks decide the vote.
- Choice shuffling (as in Medprompt's choice-shuffle ensemble): for a
  multiple-choice task each sample sees the options in its own seeded
  order, and the letter it picks is mapped back to the original option
  before the vote, which cancels a model's bias for a position. A task
  without options is asked as it is (the trace does not change).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from manyminds.answers import extract
from manyminds.exemplars import Exemplars
from manyminds.strategies.base import OnePromptStrategy, Voting
from manyminds.types import OPTION_LETTERS, Task
from manyminds.extensions import Request
from manyminds.strategies.prompting import question_prompt

if TYPE_CHECKING:
    from manyminds.agents.state import Sample


def _key(strategy: Any, task: Task, index: int) -> str:
    return f"{strategy.seed}/{task.id or task.question}/{index}"


class ExemplarResampling(OnePromptStrategy, Voting):
    """n samples, sample i prompted with its own seeded draw of `k` exemplars from `pool`."""

    one_prompt_repeats: ClassVar[bool] = False

    name: ClassVar[str] = "exemplar-resampling"

    pool: Exemplars = Field(default_factory=lambda: Exemplars.model_validate("gsm8k-train"),
                            description="the exemplars drawn from: a named set or pairs")
    k: int = Field(default=8, ge=1, description="exemplars per sample")

    @model_validator(mode="after")
    def _one_source_of_exemplars(self) -> "ExemplarResampling":
        if self.exemplars is not None:
            raise ValueError("exemplar-resampling draws its exemplars from pool=; it takes no exemplars=")
        if self.k > len(self.pool.items):
            raise ValueError(f"k = {self.k} exemplars per sample, but the pool has {len(self.pool.items)}")
        return self

    def build(self, backend: Any) -> Any:
        return self.draw(self.pipeline(backend)).aggregate()

    def requests(self, task: Task, first: int, size: int) -> "list[Request]":
        pool = self.pool.for_task(task)
        return [Request(f"shots-{i + 1}", self.with_shots(task, lambda t: question_prompt(t, self.prompt),
                                                          pool.draw(self.k, _key(self, task, i))), 1, first_index=i)
                for i in range(first, first + size)]


def permutation(strategy: Any, task: Task, index: int) -> list[int]:
    """Sample `index`'s order of the options: position p shows original option order[p]."""
    order = list(range(len(task.choices or ())))
    random.Random(_key(strategy, task, index)).shuffle(order)
    return order


class ChoiceShuffle(OnePromptStrategy, Voting):
    """n samples of a multiple-choice task, each with the options in its own order, mapped back to vote."""

    one_prompt_repeats: ClassVar[bool] = False

    name: ClassVar[str] = "choice-shuffle"

    def build(self, backend: Any) -> Any:
        return self.draw(self.pipeline(backend)).aggregate()

    def shown(self, task: Task, index: int) -> Task:
        if not task.choices:
            return task
        order = permutation(self, task, index)
        return task.model_copy(update={"choices": tuple(task.choices[j] for j in order)})

    def requests(self, task: Task, first: int, size: int) -> "list[Request]":
        if not task.choices:
            return [Request("", self.messages(task), size, first_index=first)]
        return [Request(f"order-{i + 1}", self.messages(self.shown(task, i)), 1, first_index=i)
                for i in range(first, first + size)]

    def read(self, task: Task, sample: "Sample") -> str | None:
        """The original option's letter for the letter this sample picked in its own order."""
        if not task.choices:
            return extract(task, sample.generation.text)
        index = sample.generation.index
        picked = extract(self.shown(task, index), sample.generation.text)
        if picked is None or picked not in OPTION_LETTERS[:len(task.choices)]:
            return None
        return OPTION_LETTERS[permutation(self, task, index)[OPTION_LETTERS.index(picked)]]


TEMPLATES = (
    "{question}\n\nThink step by step, then finish with a line of the form 'The answer is X.', where X is {form}.",
    "Solve this carefully.\n\n{question}\n\nExplain your reasoning briefly, then write 'The answer is X.', "
    "where X is {form}.",
    "Question: {question}\n\nWork it out, checking each step, and end with 'The answer is X.', where X is {form}.",
    "{question}\n\nFirst restate what is asked, then solve it. Conclude with 'The answer is X.', where X is {form}.",
)
"""Four wordings of the chain-of-thought request (the first is the `cot` prompt)."""


class TemplateVariation(OnePromptStrategy, Voting):
    """n samples, sample i asked with template i mod len(templates); the answers vote."""

    one_prompt_repeats: ClassVar[bool] = False

    name: ClassVar[str] = "template-variation"

    wordings: tuple[str, ...] = Field(default=TEMPLATES, min_length=2,
                                      description="the wordings rotated over (fields: question, form)")

    @model_validator(mode="after")
    def _wordings_have_the_question(self) -> "TemplateVariation":
        import string

        for text in self.wordings:
            fields = {f for _, f, _, _ in string.Formatter().parse(text) if f}
            if "question" not in fields or fields - {"question", "form", "instruction"}:
                raise ValueError(f"a wording must use {{question}} (and may use {{form}}, {{instruction}}): {text!r}")
        return self

    def build(self, backend: Any) -> Any:
        return self.draw(self.pipeline(backend)).aggregate()

    def requests(self, task: Task, first: int, size: int) -> "list[Request]":
        def asked(i: int) -> Request:
            wording = self.wordings[i % len(self.wordings)]
            return Request(f"wording-{i % len(self.wordings) + 1}",
                           self.with_shots(task, lambda t: question_prompt(t, "cot", wording)), 1, first_index=i)

        return [asked(i) for i in range(first, first + size)]
