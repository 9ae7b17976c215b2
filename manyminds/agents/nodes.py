"""What every graph node shares: the run's context, node wrappers, per-task work, requests.

The steps themselves (sample, verify, ask, aggregate, loops) are assembled by
`agents/builder.py`; this module holds the pieces they are made of. What a
node needs (a backend, a prompt builder) is bound when the node is built, so
a graph holds no global state and a strategy is never mutated by running it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig, RunnableLambda

from manyminds._perf import run_sync as _run_on_new_loop
from manyminds.agents.state import EnsembleState
from manyminds.errors import ConfigError
from manyminds.types import Task

DEFAULT_CONCURRENCY = 16
T = TypeVar("T")
S = TypeVar("S", bound=EnsembleState)

Node = Callable[[EnsembleState, RunnableConfig], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class RunContext:
    """Run-time options of one graph invocation (LangGraph's run context, `context=`).

    `concurrency` bounds the questions in flight; `progress`, when given, is
    called once per finished question. A graph embedded in a user's app,
    whose own context is another type, runs with the defaults.
    """

    concurrency: int = DEFAULT_CONCURRENCY
    progress: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")


_DEFAULT_CONTEXT = RunContext()


async def run_batch(graph: Any, tasks: Sequence[Task], context: RunContext) -> list[Any]:
    """The one way an ensemble graph is run: on a batch of tasks, with a typed run context,
    returning one Result per task in order (a `Session`, and a cascade's stages, call it)."""
    out = await graph.ainvoke({"tasks": list(tasks)}, context=context)
    return list(out["results"])


def run_context() -> RunContext:
    """The invocation's RunContext (the defaults when none, or another type, was given)."""
    from langgraph.runtime import get_runtime

    try:
        context = get_runtime().context
    except RuntimeError:  # called outside a graph run
        return _DEFAULT_CONTEXT
    return context if isinstance(context, RunContext) else _DEFAULT_CONTEXT


# -- node wrappers --------------------------------------------------------------


def inline_node(func: Callable[[S], dict[str, Any]], name: str) -> RunnableLambda:
    """A quick synchronous node that runs on the event loop under `ainvoke`.

    LangGraph runs plain sync functions on a worker thread in async mode; for
    nodes that take microseconds per task the thread hop costs more than
    the work.
    """

    async def afunc(state: S) -> dict[str, Any]:
        return func(state)

    return _node(func, afunc, name)


def async_node(afunc: Callable[[S], Coroutine[Any, Any, dict[str, Any]]], name: str) -> RunnableLambda:
    """A node whose work is async, usable from `invoke` as well as `ainvoke`.

    Under `invoke` the coroutine runs on a private event loop (a fresh thread
    if the calling thread already runs one), so a user's synchronous parent
    graph can embed an ensemble graph.
    """

    def func(state: S) -> dict[str, Any]:
        return run_sync(afunc(state))

    return _node(func, afunc, name)


def _node(func: Callable[..., Any], afunc: Callable[..., Any], name: str) -> Any:
    """A node with a sync and an async form (LangGraph's public runnable for a function pair)."""
    return RunnableLambda(func, afunc=afunc, name=name)


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_on_new_loop(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_run_on_new_loop, coroutine).result()


async def per_task(
    state: "EnsembleState | Mapping[str, Any]",
    work: Callable[[int, Task], Awaitable[T]],
    *,
    finishes: bool = False,
) -> list[T]:
    """Run `work` for every task of the batch, at most `concurrency` tasks at once.

    With `finishes`, a task is done once its work is: the run's progress advances then.
    """
    context = run_context()
    limit = asyncio.Semaphore(context.concurrency)
    progress = context.progress if finishes else None

    async def one(i: int, task: Task) -> T:
        async with limit:
            out = await work(i, task)
        if progress is not None:
            progress(1)
        return out

    return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(state["batch"]))))


def advance(finished: int) -> None:
    """Tell the run's progress that `finished` more questions are done."""
    progress = run_context().progress
    if progress is not None and finished:
        progress(finished)


# -- prepare ----------------------------------------------------------------------


def prepare(state: EnsembleState) -> dict[str, Any]:
    """Normalise the input (question, task or tasks) into `batch`, with empty per-task lists."""
    if state.get("tasks") is not None:
        raw: Sequence[Task | str] = state["tasks"]
        single = False
    elif state.get("task") is not None:
        raw, single = [state["task"]], True
    elif state.get("question") is not None:
        raw, single = [state["question"]], True
    else:
        raise ConfigError("the graph needs a 'question', a 'task' or a list of 'tasks' in its input")
    batch = [Task.of(t) for t in raw]
    return {
        "batch": batch,
        "single": single,
        "samples": [[] for _ in batch],
        "candidates": [[] for _ in batch],
        "issued": [0 for _ in batch],
        "aux": [[] for _ in batch],
        "spare": [[] for _ in batch],
        "traces": [["prepare"] for _ in batch],
        "stop_reasons": [None for _ in batch],
        "rounds": {},
    }
