"""The Strategy base: a frozen config that builds a LangGraph graph and runs it.

Building a graph never mutates the strategy, so one strategy object can serve
many concurrent runs. `asolve` is the core; `solve` and `solve_many` are thin
sync wrappers over it.
"""

from __future__ import annotations

import functools
import logging

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from manyminds._perf import run_sync
from manyminds.aggregators.base import AggregatorSpec
from manyminds.backends.base import Backend
from manyminds.budget import Budget
from manyminds.cache import GenerationCache
from manyminds.exemplars import Exemplars
from manyminds.strategies.prompting import COT_PROMPT, DIRECT_PROMPT, question_prompt
from manyminds.plugins import Registry
from manyminds.types import MAX_SAMPLES, Message, Result, SamplingParams, Task
from manyminds.extensions import Request, Settled, View
from manyminds.stopping import next_wave, parse_rule, settle, StopRule

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    from manyminds.agents.builder import Pipeline

REGISTRY: "Registry[type[Strategy]]" = Registry("strategy", "manyminds.strategies", "manyminds.strategies")
"""Every strategy class with a `name` of its own registers itself here when defined."""

CacheArg = GenerationCache | str | Path | None

# Compiled graphs are memoised on the backend object itself ({strategy config -> graph};
# strategies are frozen, hence hashable). A graph refers to its backend, so a mapping keyed
# by backends, even a weak one, would keep every backend and graph alive for good; held by
# the backend, both go together when the backend is no longer used.
_MEMO = "_manyminds_graphs"
MAX_GRAPHS_PER_BACKEND = 32


def _graph_memo(backend: Backend) -> "dict[Strategy, CompiledStateGraph] | None":
    """The backend's own memo of compiled graphs (None where it takes no attributes)."""
    memo = getattr(backend, _MEMO, None)
    if memo is None:
        memo = {}
        try:
            object.__setattr__(backend, _MEMO, memo)
        except (AttributeError, TypeError):
            return None
    return memo


log = logging.getLogger("manyminds.strategies")


class Strategy(BaseModel):
    """A method of combining many samples into one answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str] = "strategy"
    needs_verifier: ClassVar[bool] = False
    """Whether the strategy must be given a `verifier` (the CLI's --verifier)."""

    budget: Budget | None = Field(default=None, description=(
        "at most this many completion tokens and/or samples per question, over every model call "
        "(manyminds.budget); None: only the method's own n"))

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            REGISTRY.register(cls.name, cls)

    def build(self, backend: Backend) -> "CompiledStateGraph":
        """The compiled graph over `backend` (already wrapped by a cache, if any).

        Assemble it with `agents.builder.Pipeline` (`self.pipeline(backend)`).
        """
        raise NotImplementedError

    def pipeline(self, backend: Backend, **options: Any) -> "Pipeline":
        """An empty pipeline for this strategy over `backend` (LangGraph is imported here)."""
        from manyminds.agents.builder import Pipeline
        return Pipeline(self, backend, **options)

    def compiled(self, backend: Backend) -> "CompiledStateGraph":
        """`build(backend)`, memoised per backend: compiling costs milliseconds per call,
        which a warm rerun of many small batches would otherwise pay each time."""
        graphs = _graph_memo(backend)
        if graphs is None:
            return self.build(backend)
        graph = graphs.pop(self, None)
        if graph is None:
            graph = self.build(backend)
            while len(graphs) >= MAX_GRAPHS_PER_BACKEND:  # least recently used first
                graphs.pop(next(iter(graphs)))
        graphs[self] = graph
        return graph

    def graph(self, backend: Backend, cache: CacheArg = None) -> "CompiledStateGraph":
        """A compiled LangGraph graph, usable alone or as a node of a user's StateGraph.

        Input: ``{"question": str}``, ``{"task": Task}`` or ``{"tasks": [...]}``.
        Output: ``results`` (one per task) and, for one question, ``result``,
        ``answer`` and ``confidence``. The graph runs over a `Session` of
        `backend` and `cache`; a cache given as a path stays open as long as
        the process (`Session.graph` closes it when you choose).
        """
        from manyminds.session import Session

        return Session(backend, cache=cache, keep_pools=True).graph(self)

    @classmethod
    def for_budget(cls, n: int, **settings: Any) -> "Strategy":
        """This strategy spending about `n` samples per question (the CLI's -n)."""
        return cls.model_validate({"n": n, **settings})

    def aggregation(self) -> AggregatorSpec | None:
        """The registered aggregator that decides this strategy's answers (None: its stages do)."""
        return None

    @classmethod
    def settings(cls) -> set[str]:
        """The settings `strategies.make` accepts besides the budget."""
        return set(cls.model_fields)

    def params(self) -> dict[str, Any]:
        """The configuration recorded in every result (a budget and decoding controls only when set,
        so runs recorded before they existed keep their fingerprints)."""
        record = self.model_dump(mode="json")
        if record.get("budget") is None:
            record.pop("budget", None)
        sampling = record.get("sampling")
        if isinstance(sampling, dict):  # manyminds' decoding controls too, only when set
            for name in SamplingParams.CONTROLS:
                if sampling.get(name) is None:
                    sampling.pop(name, None)
        return record

    @field_validator("budget", mode="before")
    @classmethod
    def _budget_from_short_forms(cls, value: Any) -> Any:
        """`budget=4000` is 4,000 completion tokens; a mapping gives tokens and samples."""
        if isinstance(value, int) and not isinstance(value, bool):
            return {"tokens": value}
        return value

    async def asolve(self, task: Task | str, *, backend: Backend, cache: CacheArg = None) -> Result:
        (result,) = await self.asolve_many([task], backend=backend, cache=cache, progress=False)
        return result

    def solve(self, task: Task | str, *, backend: Backend, cache: CacheArg = None) -> Result:
        return run_sync(self.asolve(task, backend=backend, cache=cache))

    async def asolve_many(
        self,
        tasks: Sequence[Task | str],
        *,
        backend: Backend,
        cache: CacheArg = None,
        concurrency: int = 16,
        progress: bool | None = None,
    ) -> list[Result]:
        """Results for `tasks`, in their order; at most `concurrency` tasks in flight.

        A one-call `Session`: a cache given as a path is opened and closed
        here, one given as an object is flushed. `progress` shows a progress
        bar (default: when stderr is a terminal).
        """
        from manyminds.session import Session

        with Session(backend, cache=cache, concurrency=concurrency, progress=progress, keep_pools=True) as session:
            return await session.asolve_many(self, tasks)

    def solve_many(
        self,
        tasks: Sequence[Task | str],
        *,
        backend: Backend,
        cache: CacheArg = None,
        concurrency: int = 16,
        progress: bool | None = None,
    ) -> list[Result]:
        return run_sync(
            self.asolve_many(tasks, backend=backend, cache=cache, concurrency=concurrency, progress=progress)
        )


SAMPLING_SETTINGS = ("temperature", "top_p", "max_tokens", "seed", "logprobs", "top_logprobs", "top_k", "min_p")
"""Fields of SamplingParams a sampled strategy also takes flat (`stop` stays the stopping rule)."""


@functools.lru_cache(maxsize=None)
def _warn_greedy(name: str, n: int) -> None:
    log.warning("%s with n=%d at temperature 0 draws one sample: greedy decoding gives the same one every "
                "time, and copies of one draw are not agreement (sample at temperature > 0 for an ensemble)",
                name, n)


class SampledStrategy(Strategy):
    """A strategy that samples one backend: the sampling settings every such strategy shares."""

    sampling: SamplingParams = Field(default_factory=SamplingParams,
                                     description="every sample's parameters (temperature, max_tokens, seed, ...)")
    system: str | None = Field(default=None, description="an optional system message")
    exemplars: Exemplars | None = Field(
        default=None, description="few-shot exemplars before the question: a named set ('gsm8k-cot-8') or pairs")
    prompts: tuple[tuple[str, str], ...] = Field(
        default=(), description="replacements for named prompt templates, e.g. {'select': '...{question}...'}")

    templates: ClassVar[dict[str, str]] = {}
    """The prompts this strategy sends, by name; `prompts=` replaces any of them (`all_templates()`)."""
    one_prompt_repeats: ClassVar[bool] = True
    """Every sample `draw` asks for sees the same prompt (False where `requests` varies the prompt
    per sample: exemplar resampling, choice shuffling), so at temperature 0 they are one draw."""

    def greedy_copies(self) -> bool:
        """True when the n samples `draw` asks for would be copies of one greedy draw."""
        return self.one_prompt_repeats and getattr(self, "n", 1) > 1 and self.sampling.greedy

    def draws(self) -> int:
        """How many samples `draw` asks for: n, or one where they would be copies of one greedy
        draw (a vote over copies is one draw, not agreement; it is reported as one)."""
        n = getattr(self, "n", 1)
        if self.greedy_copies():
            _warn_greedy(type(self).__name__, n)
            return 1
        return n

    @classmethod
    def all_templates(cls) -> dict[str, str]:
        """Every named template of the class and its bases (the nearest class's wins)."""
        found: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            found.update(getattr(klass, "__dict__", {}).get("templates", {}))
        return found

    @model_validator(mode="after")
    def _budget_fits_a_sample(self) -> "SampledStrategy":
        if self.budget is not None and self.budget.tokens is not None and self.budget.tokens < self.sampling.max_tokens:
            raise ValueError(f"a budget of {self.budget.tokens} tokens cannot fit one sample of max_tokens = "
                             f"{self.sampling.max_tokens}: no request may start that could exceed it, so nothing "
                             "would be drawn; raise the budget or lower max_tokens")
        return self

    @field_validator("prompts", mode="before")
    @classmethod
    def _prompts_as_pairs(cls, value: Any) -> Any:
        return tuple(sorted(value.items())) if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _known_templates(self) -> "SampledStrategy":
        import string

        known = self.all_templates()
        for name, text in self.prompts:
            if name not in known:
                raise ValueError(f"{self.name} has no prompt {name!r}: its prompts are {', '.join(sorted(known)) or 'none'}")
            allowed = {f for _, f, _, _ in string.Formatter().parse(known[name]) if f}
            used = {f for _, f, _, _ in string.Formatter().parse(text) if f}
            if used - allowed:
                raise ValueError(f"prompt {name!r} uses {sorted(used - allowed)}, which it is not given: "
                                 f"its fields are {sorted(allowed)}")
        return self

    def template(self, name: str) -> str:
        """The named prompt: the user's replacement, else the strategy's own."""
        for key, text in self.prompts:
            if key == name:
                return text
        return self.all_templates()[name]

    @model_validator(mode="before")
    @classmethod
    def _flat_sampling(cls, values: Any) -> Any:
        """`temperature=0.5` and the like are shorthands for `sampling=`'s fields, and a partial
        `sampling={...}` keeps the class's own defaults (MoA's 2,048 tokens) for the rest."""
        if not isinstance(values, dict):
            return values
        given = values.get("sampling")
        flat = {k: values[k] for k in SAMPLING_SETTINGS if k in values}
        if not flat and not isinstance(given, dict):
            return values
        values = {k: v for k, v in values.items() if k not in flat}
        if isinstance(given, SamplingParams):  # a whole SamplingParams is the caller's, as given
            base = given.model_dump(exclude_unset=True)
        else:
            default = cls.model_fields["sampling"].get_default(call_default_factory=True)
            base = {**default.model_dump(exclude_unset=True), **(given or {})}
        values["sampling"] = {**base, **flat}
        return values

    @classmethod
    def settings(cls) -> set[str]:
        return set(cls.model_fields) | set(SAMPLING_SETTINGS)

    @property
    def temperature(self) -> float:
        return self.sampling.temperature

    @property
    def max_tokens(self) -> int:
        return self.sampling.max_tokens

    @property
    def seed(self) -> int | None:
        return self.sampling.seed

    @property
    def logprobs(self) -> bool:
        return self.sampling.logprobs

    def sampling_params(self, **overrides: Any) -> SamplingParams:
        """The strategy's sampling parameters, with `overrides` (a greedy selection call, a synthesis)."""
        if not overrides:
            return self.sampling
        return SamplingParams.model_validate({**self.sampling.model_dump(), **overrides})

    def chat(self, text: str, system: str | None = None) -> list[Message]:
        """A user turn, after the system message (the given one, else the strategy's)."""
        system = system if system is not None else self.system
        return ([Message(role="system", content=system)] if system else []) + [Message(role="user", content=text)]

    def with_shots(self, task: Task, render: Callable[[Task], str], exemplars: Exemplars | None = None) -> list[Message]:
        """The question as `render` asks it, after the few-shot exemplars (the strategy's, or those given).

        "turns": each exemplar's question asked as `render` asks the real one, its answer as
        the assistant's reply; "text": one block of Q:/A: pairs ending with the question. A
        conversation's earlier turns (`task.history`) are sent as turns before the last one.
        """
        shots = exemplars if exemplars is not None else self.exemplars
        head = [Message(role="system", content=self.system)] if self.system else []
        history, task = list(task.history), task.last_turn()
        if shots is None:
            return head + history + [Message(role="user", content=render(task))]
        shots = shots.for_task(task)
        asked = [render(task.model_copy(update={"question": e.question, "choices": e.choices, "gold": None, "id": None}))
                 for e in shots.items]
        if shots.style == "text":
            blocks = [f"Q: {q}\nA: {e.answer}" for q, e in zip(asked, shots.items)]
            return head + history + [Message(role="user", content="\n\n".join(blocks + [f"Q: {render(task)}\nA:"]))]
        turns = [m for q, e in zip(asked, shots.items)
                 for m in (Message(role="user", content=q), Message(role="assistant", content=e.answer))]
        return head + turns + history + [Message(role="user", content=render(task))]


class PromptedStrategy(SampledStrategy):
    """A strategy that asks the question itself, with or without chain of thought."""

    prompt: Literal["cot", "direct", "raw"] = Field(
        default="cot", description="chain of thought, answer only, or the question exactly as given (raw)")

    templates: ClassVar[dict[str, str]] = {"cot": COT_PROMPT, "direct": DIRECT_PROMPT}

    def ask(self, task: Task) -> str:
        """The question as this strategy's prompt style asks it (its "cot" or "direct" template; raw as is)."""
        return question_prompt(task, self.prompt, dict(self.prompts).get(self.prompt))  # None: the style's own

    def messages(self, task: Task) -> list[Message]:
        """The question as this strategy asks it, after its few-shot exemplars if any."""
        return self.with_shots(task, self.ask)


class OnePromptStrategy(PromptedStrategy):
    """A strategy that samples one prompt n times (then votes, selects, synthesises, ranks...).

    Takes a stopping rule: with one, samples come in waves and stop early
    (ESC, Adaptive-Consistency); `n` is then the cap.
    """

    n: int = Field(default=8, ge=1, le=MAX_SAMPLES, description="samples per question (the budget; the cap with a stop rule)")
    stop: Any = Field(default=None, exclude=True,
                      description="a stopping rule (ESC, AdaptiveConsistency, SPRT, ... or 'esc:5'): sample in waves")

    @field_validator("stop", mode="before")
    @classmethod
    def _stopping_rule(cls, value: Any) -> Any:
        if value is None or isinstance(value, StopRule):
            return value
        if isinstance(value, str):
            return parse_rule(value)
        raise ValueError(f"stop must be a stopping rule (ESC(), AdaptiveConsistency(), SPRT(), ...), got {value!r}")

    def params(self) -> dict[str, Any]:
        record = super().params()
        record["stop"] = None if self.stop is None else {"rule": self.stop.name, **self.stop.model_dump()}
        return record

    def draw(self, p: "Pipeline") -> "Pipeline":
        """Add the n samples of the strategy's prompt to `p`: one request, or waves with a stop rule.

        With a rule the samples come in waves, each one backend request with
        native n, until the rule stops the question or n is reached. Waves are
        sized for the backend (`stopping.next_wave`); the stopping condition
        replays the rule's own schedule (`stopping.settle`), so the answer and
        the samples used are the sequential rule's, and samples drawn ahead
        become `spare`.
        """
        params = self.sampling_params()
        read = getattr(self, "read", None)
        n = self.draws()
        if self.stop is None:
            return p.sample(lambda v: self.requests(v.task, 0, n), params, read=read)
        rule, width = self.stop, p.backend.capabilities.batch_width

        def wave(v: View) -> list[Request]:
            size = next_wave(rule, [c.answer for c in v.ballots], n, width)
            return self.requests(v.task, v.drawn, size) if size else []

        def stopped(v: View) -> Settled | None:
            used, why = settle(rule, [c.answer for c in v.ballots], n)
            return Settled(why, keep=used) if why is not None else None

        return p.repeat(lambda p: p.sample(wave, params, read=read), until=stopped, name="waves")

    def requests(self, task: Task, first: int, size: int) -> "list[Request]":
        """The requests for samples first .. first + size - 1: one request of the strategy's prompt.

        A strategy whose samples see different prompts (exemplar resampling,
        choice shuffling) returns one request per sample instead.
        """
        return [Request("", self.messages(task), size, first_index=first)]


class Voting(SampledStrategy):
    """A strategy whose samples vote: the aggregator is a registered one, with its parameters.

    Left unset, the vote is `majority`, or, with a stopping rule that decides
    itself (ESC: the unanimous window's answer), that rule's decider with
    majority as its fallback.
    """

    aggregator: AggregatorSpec | None = Field(
        default=None,
        description="a registered aggregator: a name, or {'name': ..., <params>} (default majority)",
    )

    def aggregation(self) -> AggregatorSpec:
        if self.aggregator is not None:
            return self.aggregator
        decider = getattr(getattr(self, "stop", None), "decider", None)
        if decider is not None:
            spec = decider()
            return AggregatorSpec(name=spec.pop("name"), params={**spec, "fallback": "majority"})
        return AggregatorSpec(name="majority")


class ModelDecides(SampledStrategy):
    """A strategy in which a model call decides (selection, synthesis, ranking), not a vote.

    `fallback` decides when the model's reply cannot be read; it is the only
    aggregator such a strategy takes.
    """

    decider: ClassVar[str] = ""
    """The registered aggregator reading the model's evidence ("selection", "synthesis", "borda")."""
    fallback: AggregatorSpec = Field(default=AggregatorSpec(name="majority"),
                                     description="decides when the model's reply cannot be read")

    def aggregation(self) -> AggregatorSpec:
        return AggregatorSpec(name=self.decider, params={"fallback": self.fallback.model_dump()})
