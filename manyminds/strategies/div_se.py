"""DIV-SE: diverse approaches and personas, one prompt each, answers pooled by vote.

Naik et al., "Diversity of Thought Improves Reasoning Abilities of LLMs"
(2023). The model first proposes approaches suited to the question and
personas to solve it; every approach-persona pair becomes its own prompt;
each prompt is sampled; all answers vote together. The proposal call is
greedy, so it is one cached row, and it counts in usage. Users may give
their own approaches and personas and skip the proposal.

Differs from the paper by default: the paper discovers approaches and
personas once per data set and keeps the combinations that do best on a
held-out slice; the default here proposes per question, which needs no
labelled data. The paper's setup is `strategies.discovery.discover` (or
`manyminds discover`), then `DivSE(pairs=plan.pairs)` / `DivSE.from_plan`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from manyminds.agents.state import EnsembleState
from manyminds.backends.base import Backend
from manyminds.errors import ConfigError
from manyminds.strategies.base import SampledStrategy, Voting
from manyminds.strategies.prompting import answer_form, render_question
from manyminds.types import Message, Source, Task
from manyminds.extensions import Request, View

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    from manyminds.agents.builder import Pipeline

class Diversity(NamedTuple):
    """The approaches and personas one question is solved with."""

    approaches: list[str]
    personas: list[str]


class DiversityState(EnsembleState, total=False):
    diversity: list[Diversity]
    """Per task, the approaches and personas chosen (proposed, filled from the defaults, or given)."""

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
    pairs: tuple[tuple[str, str], ...] | None = Field(
        default=None, description="(persona, approach) pairs, e.g. a discovered plan; no proposal")
    propose_max_tokens: int = Field(default=256, ge=16)

    templates: ClassVar[dict[str, str]] = {"propose": PROPOSE_PROMPT}

    @model_validator(mode="after")
    def _pairs_alone(self) -> "DiversityConfig":
        if self.pairs is not None:
            if not self.pairs:
                raise ValueError("pairs= needs at least one (persona, approach) pair")
            if self.given_approaches is not None or self.given_personas is not None:
                raise ValueError("give pairs= or given_approaches=/given_personas=, not both")
        return self

    @classmethod
    def from_plan(cls, path: "str | Path", **settings: Any) -> Self:
        """This strategy over the pairs of a plan that `strategies.discovery.discover` saved."""
        return cls(pairs=DiversityPlan.load(path).pairs, **settings)

    def proposal_messages(self, task: Task) -> list[Message]:
        template = "\n".join(
            [f"Approach {i + 1}: <approach>" for i in range(self.approaches)]
            + [f"Persona {i + 1}: <kind of expert>" for i in range(self.personas)]
        )
        return self.chat(
            self.template("propose").format(
                question=render_question(task), k=self.approaches, p=self.personas, template=template
            )
        )

    def needs_proposal(self) -> bool:
        return self.pairs is None and (self.given_approaches is None or self.given_personas is None)

    def propose(self, p: "Pipeline") -> "Pipeline":
        """Ask for approaches and personas (greedy, one cached row, counted in usage) unless given,
        then settle each task's `diversity`, filling a short proposal from the defaults.
        Explicit `pairs` need neither step."""
        if self.pairs is not None:
            return p
        params = self.sampling_params(temperature=0.0, max_tokens=self.propose_max_tokens)
        p.ask("proposal", lambda v: self.proposal_messages(v.task) if self.needs_proposal() else None, params,
              name="propose")

        def choose(state: DiversityState) -> dict[str, Any]:
            chosen, traces = [], []
            for cands, trace in zip(state["candidates"], state["traces"]):
                replies = [c for c in cands if c.source.kind == "proposal"]
                proposed_a, proposed_p = parse_proposal(replies[-1].text) if replies else ([], [])
                note = []
                if self.given_approaches is not None:
                    approaches = list(self.given_approaches)
                else:
                    approaches, got = _fill(proposed_a, DEFAULT_APPROACHES, self.approaches)
                    note.append(f"{got}/{self.approaches} approaches proposed")
                if self.given_personas is not None:
                    personas = list(self.given_personas)
                else:
                    personas, got = _fill(proposed_p, DEFAULT_PERSONAS, self.personas)
                    note.append(f"{got}/{self.personas} personas proposed")
                chosen.append(Diversity(approaches, personas))
                traces.append(trace + ([f"proposal: {', '.join(note)}"] if note else []))
            return {"diversity": chosen, "traces": traces}

        return p.update(choose, "choose")

    def slots(self) -> int:
        if self.pairs is not None:
            return len(self.pairs)
        a = len(self.given_approaches) if self.given_approaches is not None else self.approaches
        p = len(self.given_personas) if self.given_personas is not None else self.personas
        return a * p


class DivSE(DiversityConfig, Voting):
    """One prompt per approach-persona pair, each sampled, all answers voting (Naik et al., 2023)."""

    name: ClassVar[str] = "div-se"

    samples_per_prompt: int = Field(default=1, ge=1, description="samples of each approach prompt")

    templates: ClassVar[dict[str, str]] = {"solve": SOLVE_PROMPT}

    @classmethod
    def for_budget(cls, n: int, **settings: Any) -> "DivSE":
        approaches = min(n, 4)
        personas = max(1, min(len(DEFAULT_PERSONAS), n // approaches))
        return cls(approaches=approaches, personas=personas,
                   samples_per_prompt=max(1, n // (approaches * personas)), **settings)

    def solve_messages(self, task: Task, approach: str, persona: str) -> list[Message]:
        return self.with_shots(task, lambda t: self.template("solve").format(
            persona=persona, approach=approach, question=render_question(t), form=answer_form(t)))

    def build(self, backend: Backend) -> "CompiledStateGraph":
        def solve(v: "View") -> "list[Request]":
            if self.pairs is not None:
                persona, approach = self.pairs[v.slot]
                messages = self.solve_messages(v.task, approach, persona)
                return [Request(Source(prompt=f"pair-{v.slot + 1}"), messages, self.samples_per_prompt)]
            approaches, personas = v.get("diversity")
            a, q = divmod(v.slot, len(personas))
            source = Source(prompt=f"approach-{a + 1}/persona-{q + 1}")
            return [Request(source, self.solve_messages(v.task, approaches[a], personas[q]), self.samples_per_prompt)]

        p = self.propose(self.pipeline(backend, state=DiversityState))
        p.sample(solve, self.sampling_params(), name="solve", slots=self.slots())
        return p.aggregate(self.aggregation())


class DiversityPlan(BaseModel):
    """The (persona, approach) pairs to use for a data set, and what choosing them measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pairs: tuple[tuple[str, str], ...] = Field(min_length=1)
    accuracy: tuple[float, ...] = ()
    """Held-out accuracy of each kept pair, in order."""
    tried: int = 0
    """How many pairs were tried on the held-out slice."""
    held_out: int = 0
    model: str = ""
    created: str = ""
    seen: tuple[str, ...] = ()
    """Ids of the questions the plan was made from (proposed on and scored on): a benchmark with
    this plan leaves them out (`bench --plan`), so the plan is never tuned on what it is tested on."""

    def overlap(self, tasks: "Sequence[Task]") -> list[str]:
        """The ids among `tasks` this plan was tuned on."""
        seen = set(self.seen)
        return [t.id for t in tasks if t.id in seen]

    def save(self, path: "str | Path") -> Path:
        target = Path(path)
        target.write_text(self.model_dump_json(indent=2) + "\n")
        return target

    @classmethod
    def load(cls, path: "str | Path") -> "DiversityPlan":
        source = Path(path)
        if not source.is_file():
            raise ConfigError(f"no DIV-SE plan at {source}: make one with strategies.discovery.discover")
        try:
            return cls.model_validate(json.loads(source.read_text()))
        except ValueError as error:
            raise ConfigError(f"{source} is not a DIV-SE plan: {error}") from error
