"""Universal self-consistency: the model picks the most consistent of its own responses.

Chen et al., "Universal Self-Consistency for Large Language Model Generation"
(2023). For free-form answers, where votes cannot be counted by exact match:
all sampled responses go into one prompt, and the model names the response
most consistent with the others. Shares its selection node with
Self-Agreement; an unreadable choice falls back to the majority vote.

Follows the paper: responses quoted whole, the choice by response number,
`result.text` the chosen response in full (free-form tasks: `prompt="raw"`).
Differs: the fallback to the vote, which the paper does not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from manyminds.strategies.self_agreement import SelfAgreement
from manyminds.types import Candidate, Message, Task
from manyminds.strategies.prompting import numbered

# -- prompt (after Chen et al. 2023: "select the most consistent response based on
#    majority consensus", answered by response number) ----------------------------
USC_PROMPT = (
    "I have generated the following responses to the question: {question}\n\n{responses}\n\n"
    "Evaluate these responses and select the one that is most consistent with the others, "
    "by majority consensus. Start your reply with 'The most consistent response is Response K', "
    "where K is its number."
)


class UniversalSelfConsistency(SelfAgreement):
    """n samples; the model selects the response most consistent with the rest (Chen et al., 2023)."""

    name: ClassVar[str] = "usc"
    selection_prefers: ClassVar[str] = "number"
    templates: ClassVar[dict[str, str]] = {"select": USC_PROMPT}

    def selection_messages(self, task: Task, candidates: Sequence[Candidate]) -> list[Message]:
        return self.chat(self.template("select").format(question=task.render(),
                                           responses=numbered(candidates, self.max_chars_per_response)))
