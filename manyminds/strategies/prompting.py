"""How a task is shown to a model: the question, its options, and how to state the answer.

Shared by every strategy so that all of them ask for answers in a form the
extractors of `manyminds.answers` read.
"""

from __future__ import annotations

from collections.abc import Sequence

from manyminds.answers import FORMATS
from manyminds.types import AnswerFormat, Candidate, Task
from manyminds.text import clip

# Each format's wording lives with its extraction rules: manyminds.answers.FORMATS.


# The plain prompts. "cot" follows chain-of-thought prompting as used by
# self-consistency (Wang et al. 2023, after Wei et al. 2022), asking for the
# answer in the "The answer is X." form the paper's parser reads; "direct" asks
# for the answer alone, which suits very small models (SmolLM2-135M answers
# single-digit sums better without chain of thought).
COT_PROMPT = "{question}\n\nThink step by step, then finish with a line of the form 'The answer is X.', where X is {form}."
DIRECT_PROMPT = "{question}\n\n{instruction}"


def question_prompt(task: Task, style: str = "cot", template: str | None = None) -> str:
    """The task as a prompt: with chain of thought ("cot"), asking for the answer only ("direct"),
    or the question exactly as the user wrote it, options included ("raw": free-form tasks).

    `template` replaces the style's own (fields: question, form, instruction).
    """
    if style == "raw":
        return render_question(task)
    if task.format is AnswerFormat.CODE and template is None:
        return f"{render_question(task)}\n\n{direct_instruction(task)}"
    chosen = template if template is not None else (COT_PROMPT if style == "cot" else DIRECT_PROMPT)
    return chosen.format(question=render_question(task), form=answer_form(task), instruction=direct_instruction(task))


def render_question(task: Task) -> str:
    """The question, followed by lettered options for multiple-choice tasks."""
    return task.render()


def answer_form(task: Task) -> str:
    return FORMATS[task.format].form


def direct_instruction(task: Task) -> str:
    return FORMATS[task.format].direct


def numbered(candidates: "Sequence[Candidate]", max_chars: int | None = None) -> str:
    """Candidates as 'Response 1: ...' blocks, each cut to `max_chars` if given (selection and ranking prompts)."""
    def shown(text: str) -> str:
        text = text.strip() or "(empty)"
        return clip(text, max_chars) if max_chars else text

    return "\n\n".join(f"Response {k}:\n{shown(c.text)}" for k, c in enumerate(candidates, 1))
