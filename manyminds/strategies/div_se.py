"""DIV-SE: diverse approaches and personas, one prompt each, answers pooled by vote.

Naik et al., "Diversity of Thought Improves Reasoning Abilities of LLMs"
(2023). The model first proposes approaches suited to the question and
personas to solve it; every approach-persona pair becomes its own prompt;
each prompt is sampled; all answers vote together. The proposal call is
greedy, so it is one cached row, and it counts in usage. Users may give
their own approaches and personas and skip the proposal.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from manyminds.agents.state import EnsembleState
from manyminds.backends.base import Backend
from manyminds.strategies.base import SampledStrategy
from manyminds.strategies.prompting import answer_form, render_question
from manyminds.types import Generation, Message, Task

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

# -- prompts (after Naik et al. 2023: approaches proposed by the model, then one
#    prompt per approach, each written in a persona's voice) --------------------
PROPOSE_PROMPT = (
    "Here is a problem:\n\n{question}\n\n"
    "Do not solve it. Instead list {k} different approaches that could be used to solve it, "
    "and {p} kinds of expert who would solve it well. Write one item per line, exactly in this form:\n"
    "{template}"
)
SOLVE_PROMPT = (
    "You are {persona}. Solve the problem below using this approach: {approach}.\n\n{question}\n\n"
    "Think step by step, then finish with a line of the form 'The answer is X.', where X is {form}."
)
# Used when the proposal gives fewer items than asked for (small models often do).
DEFAULT_APPROACHES = (
    "work it out directly, step by step",
    "break it into smaller parts and solve each",
    "work backwards from what is asked",
    "estimate first, then compute exactly and compare",
    "write the quantities down as a simple equation",
    "explain it as you would to a student",
)
DEFAULT_PERSONAS = (
    "a careful mathematician",
    "a patient teacher",
    "a meticulous accountant",
    "a logical puzzle solver",
)

_ITEM = re.compile(r"^\W*(approach|persona)\s*\d*\s*[:.)\-]\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def parse_proposal(text: str) -> tuple[list[str], list[str]]:
    """The approaches and personas a proposal lists, in order, without duplicates."""
    approaches: list[str] = []
    personas: list[str] = []
    for kind, item in _ITEM.findall(text):
        target = approaches if kind.lower() == "approach" else personas
        item = item.strip(" *\"'")
        if item and item not in target:
            target.append(item)
    return approaches, personas


def _fill(proposed: list[str], defaults: tuple[str, ...], k: int) -> tuple[list[str], int]:
    chosen = proposed[:k]
    for item in defaults:
        if len(chosen) >= k:
            break
        if item not in chosen:
            chosen.append(item)
    return chosen, min(len(proposed), k)


class DiversityConfig(SampledStrategy):
    """What DIV-SE and IDIV-SE share: how many approaches and personas, and where they come from."""

    approaches: int = Field(default=4, ge=1, le=len(DEFAULT_APPROACHES), description="approaches per question")
    personas: int = Field(default=1, ge=1, le=len(DEFAULT_PERSONAS), description="personas per question")
    given_approaches: tuple[str, ...] | None = Field(default=None, description="use these; skip the proposal")
    given_personas: tuple[str, ...] | None = Field(default=None, description="use these; skip the proposal")
    propose_max_tokens: int = Field(default=256, ge=16)

    def proposal_messages(self, task: Task) -> list[Message]:
        template = "\n".join(
            [f"Approach {i + 1}: <approach>" for i in range(self.approaches)]
            + [f"Persona {i + 1}: <kind of expert>" for i in range(self.personas)]
        )
        return self.chat(
            PROPOSE_PROMPT.format(
                question=render_question(task), k=self.approaches, p=self.personas, template=template
            )
        )

    def needs_proposal(self) -> bool:
        return self.given_approaches is None or self.given_personas is None

    def proposal_node(self, backend: Backend) -> Any:
        """An `ask` node storing each task's approaches and personas in scratch["diversity"]."""
        from manyminds.agents.nodes import ask_node

        def build(i: int, task: Task, state: EnsembleState) -> list[Message] | None:
            return self.proposal_messages(task) if self.needs_proposal() else None

        def apply(state: EnsembleState, replies: list[Generation | None]) -> dict[str, Any]:
            chosen, traces = [], []
            for reply, trace in zip(replies, state["traces"]):
                proposed_a, proposed_p = parse_proposal(reply.text) if reply is not None else ([], [])
                approaches, got_a = (
                    (list(self.given_approaches), -1)
                    if self.given_approaches is not None
                    else _fill(proposed_a, DEFAULT_APPROACHES, self.approaches)
                )
                personas, got_p = (
                    (list(self.given_personas), -1)
                    if self.given_personas is not None
                    else _fill(proposed_p, DEFAULT_PERSONAS, self.personas)
                )
                chosen.append((approaches, personas))
                note = []
                if got_a >= 0:
                    note.append(f"{got_a}/{self.approaches} approaches proposed")
                if got_p >= 0:
                    note.append(f"{got_p}/{self.personas} personas proposed")
                traces.append(trace + ([f"proposal: {', '.join(note)}"] if note else []))
            return {"scratch": {**state["scratch"], "diversity": chosen}, "traces": traces}

        return ask_node(backend, self.sampling_params(temperature=0.0, max_tokens=self.propose_max_tokens),
                        build, apply, "propose")

    def slots(self) -> int:
        a = len(self.given_approaches) if self.given_approaches is not None else self.approaches
        p = len(self.given_personas) if self.given_personas is not None else self.personas
        return a * p


class DivSE(DiversityConfig):
    """One prompt per approach-persona pair, each sampled, all answers voting (Naik et al., 2023)."""

    name: ClassVar[str] = "div-se"

    samples_per_prompt: int = Field(default=1, ge=1, description="samples of each approach prompt")

    @classmethod
    def for_budget(cls, n: int, **settings: Any) -> "DivSE":
        approaches = min(n, 4)
        personas = max(1, min(len(DEFAULT_PERSONAS), n // approaches))
        return cls(approaches=approaches, personas=personas,
                   samples_per_prompt=max(1, n // (approaches * personas)), **settings)

    def solve_messages(self, task: Task, approach: str, persona: str) -> list[Message]:
        return self.chat(
            SOLVE_PROMPT.format(persona=persona, approach=approach, question=render_question(task), form=answer_form(task))
        )

    def build(self, backend: Backend) -> "CompiledStateGraph":
        from manyminds.agents.graphs import new_graph
        from manyminds.agents.nodes import Request, aggregate_node, extract_node, fan_out, inline_node, join_node, prepare, slot_node
        from manyminds.aggregators import get_aggregator
        from langgraph.graph import END, START

        def plan(slot: int, i: int, task: Task, state: EnsembleState) -> list[Request]:
            approaches, personas = state["scratch"]["diversity"][i]
            approach, persona = approaches[slot // len(personas)], personas[slot % len(personas)]
            return [Request(f"approach-{slot // len(personas) + 1}/persona-{slot % len(personas) + 1}",
                            self.solve_messages(task, approach, persona), self.samples_per_prompt)]

        graph = new_graph()
        graph.add_node("prepare", inline_node(prepare, "prepare"))
        graph.add_node("propose", self.proposal_node(backend))
        graph.add_node("solve", slot_node(lambda slot: backend, plan, self.sampling_params(), "solve"))
        graph.add_node("join", join_node())
        graph.add_node("extract", extract_node())
        graph.add_node("aggregate", aggregate_node(get_aggregator(self.aggregator), self.name, self.params()))
        graph.add_edge(START, "prepare")
        graph.add_edge("prepare", "propose")
        graph.add_conditional_edges("propose", fan_out("solve", lambda state: self.slots()), ["solve"])
        graph.add_edge("solve", "join")
        graph.add_edge("join", "extract")
        graph.add_edge("extract", "aggregate")
        graph.add_edge("aggregate", END)
        return graph.compile(name=self.name)
