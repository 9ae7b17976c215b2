"""The Strategy base: a frozen config that builds a LangGraph graph and runs it.

Building a graph never mutates the strategy, so one strategy object can serve
many concurrent runs. `asolve` is the core; `solve` and `solve_many` are thin
sync wrappers over it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from manyminds._perf import run_sync
from manyminds.backends.base import Backend
from manyminds.cache import GenerationCache, open_cache
from manyminds.errors import ConfigError
from manyminds.stopping import ESC, AdaptiveConsistency
from manyminds.types import MAX_SAMPLES, Message, Result, SamplingParams, Task

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

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


class Strategy(BaseModel):
    """A method of combining many samples into one answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str] = "strategy"

    def build(self, backend: Backend) -> "CompiledStateGraph":
        """The compiled graph over `backend` (already wrapped by a cache, if any)."""
        raise NotImplementedError

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
        ``answer`` and ``confidence``. A cache given as a path is opened here
        and flushed when the process exits.
        """
        opened, _ = open_cache(cache)
        return self.build(opened.wrap(backend) if opened is not None else backend)

    @classmethod
    def for_budget(cls, n: int, **settings: Any) -> "Strategy":
        """This strategy spending about `n` samples per question (the CLI's -n)."""
        return cls(n=n, **settings)

    def params(self) -> dict[str, Any]:
        """The configuration recorded in every result."""
        return self.model_dump(mode="json")

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

        `progress` shows a progress bar (default: when stderr is a terminal).
        """
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        batch = [Task.of(t) for t in tasks]
        if not batch:
            return []
        opened, close = open_cache(cache)
        try:
            graph = self.compiled(opened.wrap(backend) if opened is not None else backend)
            with _progress_bar(len(batch), self.name, progress) as advance:
                configurable = {"manyminds_concurrency": concurrency, "manyminds_progress": advance}
                state = await graph.ainvoke({"tasks": batch}, config={"configurable": configurable})
            return state["results"]
        finally:
            if opened is not None:
                opened.close() if close else opened.flush()

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


class SampledStrategy(Strategy):
    """A strategy that samples one backend: the sampling settings every such strategy shares."""

    temperature: float = Field(default=0.7, ge=0, description="sampling temperature")
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_tokens: int = Field(default=512, ge=1, description="completion tokens per sample")
    seed: int | None = Field(default=None, description="base seed; each sample derives its own")
    system: str | None = Field(default=None, description="an optional system message")
    aggregator: str = Field(default="majority", description="a registered aggregator name")
    logprobs: bool = Field(default=False, description="ask for token logprobs (RPC, logprob-weighted votes)")

    def sampling_params(self, **overrides: Any) -> SamplingParams:
        values = dict(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed,
                      logprobs=self.logprobs)
        values.update(overrides)
        return SamplingParams(**values)

    def chat(self, text: str, system: str | None = None) -> list[Message]:
        """A user turn, after the system message (the given one, else the strategy's)."""
        system = system if system is not None else self.system
        return ([Message(role="system", content=system)] if system else []) + [Message(role="user", content=text)]


class PromptedStrategy(SampledStrategy):
    """A strategy that asks the question itself, with or without chain of thought."""

    prompt: Literal["cot", "direct"] = Field(default="cot", description="chain of thought or answer only")

    def messages(self, task: Task) -> list[Message]:
        from manyminds.strategies.prompting import question_prompt

        return self.chat(question_prompt(task, self.prompt))


class OnePromptStrategy(PromptedStrategy):
    """A strategy that samples one prompt n times (then votes, selects, synthesises, ranks...).

    Takes a stopping rule: with one, samples come in waves and stop early
    (ESC, Adaptive-Consistency); `n` is then the cap.
    """

    n: int = Field(default=8, ge=1, le=MAX_SAMPLES, description="samples per question (the budget; the cap with a stop rule)")
    stop: ESC | AdaptiveConsistency | None = Field(default=None, description="sample in waves and stop early")

    def params(self) -> dict[str, Any]:
        record = super().params()
        if self.stop is not None:
            record["stop"] = {"rule": self.stop.name, **self.stop.model_dump()}
        return record

    def sampled(self, backend: Backend, *after: tuple[str, Any]) -> "CompiledStateGraph":
        """prepare -> sample (in waves with a stop rule) -> extract -> `after` steps, compiled."""
        from manyminds.agents.graphs import sampled_graph

        graph = sampled_graph(backend, self.messages, self.sampling_params(), self.n, self.stop, *after)
        return graph.compile(name=self.name)


class _progress_bar:
    """A rich progress bar, or nothing when not wanted; yields an `advance(k)` callback."""

    def __init__(self, total: int, label: str, enabled: bool | None) -> None:
        self.total = total
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Any = None

    def __enter__(self) -> Callable[[int], None] | None:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.start()
        task_id = self._progress.add_task(self.label, total=self.total)
        return lambda k: self._progress.advance(task_id, k)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
