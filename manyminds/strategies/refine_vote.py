"""Self-Refine then vote: n drafts, each refined once by the model, the refinements voting.

An example of a method in one file (after Madaan et al., "Self-Refine", 2023,
feedback and revision in one turn). The refining step replaces the drafts as
the voting samples; the drafts still count in usage.
"""

from __future__ import annotations

from typing import Any, ClassVar

from manyminds.strategies.base import OnePromptStrategy, Voting
from manyminds.strategies.prompting import answer_form, render_question
from manyminds.extensions import Request, View

REFINE_PROMPT = (
    "{question}\n\nHere is a draft solution:\n\n{draft}\n\nCheck it step by step and correct any mistake. "
    "Finish with a line of the form 'The answer is X.', where X is {form}."
)


class SelfRefineVote(OnePromptStrategy, Voting):
    """n drafts; each draft refined once; the refined answers vote."""

    name: ClassVar[str] = "self-refine-vote"
    templates: ClassVar[dict[str, str]] = {"refine": REFINE_PROMPT}

    def build(self, backend: Any) -> Any:
        def refine(v: View) -> list[Request]:
            shown = render_question(v.task), answer_form(v.task)
            return [Request(f"refine-{k + 1}", self.chat(self.template("refine").format(
                question=shown[0], draft=s.generation.text.strip(), form=shown[1])))
                for k, s in enumerate(v.samples)]

        p = self.draw(self.pipeline(backend))
        return p.sample(refine, self.sampling_params(), name="refine", replace=True).aggregate()
