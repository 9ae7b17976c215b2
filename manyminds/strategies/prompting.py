"""How a task is shown to a model: the question, its options, and how to state the answer.

Shared by every strategy so that all of them ask for answers in a form the
extractors of `manyminds.answers` read.
"""

from __future__ import annotations

from manyminds.answers import LETTERS
from manyminds.types import AnswerFormat, Task

_ANSWER_FORM = {
    AnswerFormat.NUMBER: "a number",
    AnswerFormat.CHOICE: "the letter of one option",
    AnswerFormat.YES_NO: "yes or no",
    AnswerFormat.TEXT: "a short phrase",
}

_DIRECT = {
    AnswerFormat.NUMBER: "Reply with just the number.",
    AnswerFormat.CHOICE: "Reply with just the letter of the correct option.",
    AnswerFormat.YES_NO: "Reply with just yes or no.",
    AnswerFormat.TEXT: "Reply with just the answer, in a few words.",
}


def render_question(task: Task) -> str:
    """The question, followed by lettered options for multiple-choice tasks."""
    if not task.choices:
        return task.question
    options = "\n".join(f"({LETTERS[i]}) {text}" for i, text in enumerate(task.choices))
    return f"{task.question}\n\nOptions:\n{options}"


def answer_form(task: Task) -> str:
    return _ANSWER_FORM[task.format]


def direct_instruction(task: Task) -> str:
    return _DIRECT[task.format]
