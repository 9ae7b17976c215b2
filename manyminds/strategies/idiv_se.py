"""IDIV-SE: the DIV-SE approaches in one prompt, several answers from one completion.

Naik et al., "Diversity of Thought Improves Reasoning Abilities of LLMs"
(2023), the in-call variant: one prompt asks for a solution by each approach
in turn; the answers are parsed out of the one completion and vote together.
A missing or malformed section is a candidate without a vote, not a crash.

Differs as DIV-SE does: approaches are proposed per question by default
(`given_approaches=` / `given_personas=` for a data set's discovered ones).
Explicit (persona, approach) pairs, such as a discovered plan's, are grouped
by persona: one combined prompt per persona, listing that persona's
approaches in the order given.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from manyminds.agents.state import Sample
from manyminds.backends.base import Backend
from manyminds.strategies.base import Voting
from manyminds.strategies.div_se import DiversityConfig, DiversityState
from manyminds.strategies.prompting import answer_form, render_question
from manyminds.types import Message, Source, Task
from manyminds.extensions import Request, View

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

# -- prompt (after Naik et al. 2023, IDIV-SE: all approaches within one call) ------
IDIV_PROMPT = (
    "You are {persona}. Solve the problem below {k} times, once with each of these approaches:\n"
    "{approaches}\n\n{question}\n\n"
    "For each approach, start a new part with a line 'Approach N:' (N its number), reason step by step, "
    "and end that part with a line of the form 'The answer is X.', where X is {form}."
)

_HEADER = re.compile(r"^\W*approach\s*(\d+)\b[^\n]*$", re.IGNORECASE | re.MULTILINE)


def split_sections(text: str, k: int) -> list[str | None]:
    """The text of parts 'Approach 1'..'Approach k' (None where a part is missing).

    A completion without any header is read as the first approach's part.
    """
    headers = list(_HEADER.finditer(text))
    if not headers:
        return [text] + [None] * (k - 1) if text.strip() else [None] * k
    parts: dict[int, str] = {}
    for h, nxt in zip(headers, headers[1:] + [None]):
        number = int(h.group(1))
        # From after "Approach N" on: the header's number must not read as an answer.
        body = text[h.end(1): nxt.start() if nxt else len(text)].lstrip(" :.)-*\t")
        if 1 <= number <= k and number not in parts:
            parts[number] = body
    return [parts.get(j) for j in range(1, k + 1)]


class IDivSE(DiversityConfig, Voting):
    """All approaches in one call per sample; each approach's answer votes (Naik et al., 2023)."""

    name: ClassVar[str] = "idiv-se"

    samples: int = Field(default=1, ge=1, description="completions of the combined prompt")

    templates: ClassVar[dict[str, str]] = {"solve": IDIV_PROMPT}

    @classmethod
    def for_budget(cls, n: int, **settings: Any) -> "IDivSE":
        approaches = min(n, 6)
        return cls(approaches=approaches, samples=max(1, n // approaches), **settings)

    def combined_messages(self, task: Task, approaches: list[str], persona: str) -> list[Message]:
        listed = "\n".join(f"Approach {i + 1}: {a}" for i, a in enumerate(approaches))
        return self.with_shots(task, lambda t: self.template("solve").format(
            persona=persona, k=len(approaches), approaches=listed, question=render_question(t), form=answer_form(t)))

    def persona_groups(self) -> list[tuple[str, list[str]]]:
        """Explicit pairs as (persona, its approaches), personas in order of first appearance."""
        groups: dict[str, list[str]] = {}
        for persona, approach in self.pairs or ():
            groups.setdefault(persona, []).append(approach)
        return list(groups.items())

    def build(self, backend: Backend) -> "CompiledStateGraph":
        given = self.persona_groups()
        # Sections expected in a combined completion, by its prompt's name.
        sections_of = {f"persona-{i + 1}": len(approaches) for i, (_, approaches) in enumerate(given)}

        def combined(v: View) -> list[Request]:
            if given:
                groups = given
            else:
                approaches, personas = v.get("diversity")
                groups = [(persona, approaches) for persona in personas]
            return [Request(f"persona-{i + 1}", self.combined_messages(v.task, approaches, persona), self.samples)
                    for i, (persona, approaches) in enumerate(groups)]

        def split(task: Task, sample: Sample) -> list[tuple[Source, str]]:
            base = sample.source.prompt
            k = sections_of.get(base) or self.slots() // (
                len(self.given_personas) if self.given_personas is not None else self.personas)
            sections = split_sections(sample.generation.text, k)
            return [(Source(prompt=f"{base}/approach-{j + 1}"), part or "") for j, part in enumerate(sections)]

        p = self.propose(self.pipeline(backend, state=DiversityState))
        p.sample(combined, self.sampling_params(), split=split)
        return p.aggregate(self.aggregation())
