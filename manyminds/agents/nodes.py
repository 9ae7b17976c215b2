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
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from langgraph.runtime import Runtime

from manyminds._perf import run_sync as _run_on_new_loop
from manyminds.agents.state import EnsembleState
from manyminds.budget import Allowance, Budget, cost, Ledger
from manyminds.errors import ConfigError
from manyminds.types import Task

DEFAULT_CONCURRENCY = 16
T = TypeVar("T")
S = TypeVar("S", bound=EnsembleState)

Node = Callable[..., Awaitable[dict[str, Any]]]
"""A step as LangGraph runs it: `node(state, runtime)`."""


@dataclass(frozen=True)
class RunContext:
    """Run-time options of one graph invocation (LangGraph's run context, `context=`).

    `concurrency` bounds the questions in flight; `progress`, when given, is
    called once per finished question. `ledger` is the run's budget across
    its questions (`Session(budget=)`); `question_budget` a parent's limit per
    question (a cascade's), applied with the strategy's own; `spent` what each
    question of the batch spent in an earlier stage, as (tokens, samples). A
    graph embedded in a user's app, whose own context is another type, runs
    with the defaults.
    """

    concurrency: int = DEFAULT_CONCURRENCY
    progress: Callable[[int], None] | None = None
    ledger: Ledger | None = None
    question_budget: Budget | None = None
    spent: tuple[tuple[int, int], ...] = ()
    runner: str = "langgraph"
    """How `run_batch` runs a pipeline's graph: "langgraph" (its compiled graph) or "direct" (the
    same steps in the same order without LangGraph's scheduler: `builder.DirectRun`), a cascade's
    stages as their parent."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.runner not in RUNNERS:
            raise ConfigError(f"runner must be one of {', '.join(RUNNERS)}, got {self.runner!r}")


RUNNERS = ("langgraph", "direct")

_DEFAULT_CONTEXT = RunContext()

DIRECT = "_manyminds_direct"
"""The attribute of a compiled pipeline graph holding its direct form (`builder.DirectRun`), set when
it is compiled: held by the graph itself, so it goes when the graph goes (a registry beside the
graphs would keep them alive: the steps reach the backend, whose memo holds the graphs)."""


async def run_batch(graph: Any, tasks: Sequence[Task], context: RunContext) -> list[Any]:
    """The one way an ensemble graph is run: on a batch of tasks, with a typed run context,
    returning one Result per task in order (a `Session`, and a cascade's stages, call it).

    With `context.runner == "direct"` a pipeline's graph runs as its `DirectRun`: the same node
    functions in the same order with the same state updates, without LangGraph's per-step
    scheduling (about 2 ms of CPU an invocation: what a server answering one question a request
    pays per request). Graphs not built by a `Pipeline` always run through LangGraph."""
    direct = getattr(graph, DIRECT, None) if context.runner == "direct" else None
    if direct is not None:
        return await direct(tasks, context)
    out = await graph.ainvoke({"tasks": list(tasks)}, context=context)
    return list(out["results"])


_CURRENT: ContextVar[RunContext] = ContextVar("manyminds_run_context", default=_DEFAULT_CONTEXT)


_TEXT_SINK: ContextVar["Callable[[str], None] | None"] = ContextVar("manyminds_text_sink", default=None)


def stream_text_to(sink: "Callable[[str], None] | None") -> Any:
    """Until the returned token is `reset`, the ensembles this context starts hand the text of their
    answer-making generation (a synthesis that is a pipeline's last model call) to `sink` as it is
    generated, when they run one question: `manyminds serve` streams it to the client. Tasks
    created meanwhile keep the sink (contextvars are copied into them)."""
    return _TEXT_SINK.set(sink)


def text_sink() -> "Callable[[str], None] | None":
    return _TEXT_SINK.get()


def stop_streaming(token: Any) -> None:
    _TEXT_SINK.reset(token)


def run_context() -> RunContext:
    """The running node's RunContext (the defaults outside a graph, or where a parent graph's
    context is another type)."""
    return _CURRENT.get()


# -- node wrappers --------------------------------------------------------------


def inline_node(func: Callable[[S], dict[str, Any]], name: str) -> Node:
    """A quick synchronous step, run on the event loop (LangGraph would run a plain sync function
    on a worker thread in async mode; for steps of microseconds the hop costs more than the work)."""

    async def afunc(state: S) -> dict[str, Any]:
        return func(state)

    return async_node(afunc, name)


def async_node(afunc: Callable[[S], Coroutine[Any, Any, dict[str, Any]]], name: str) -> Node:
    """A node as LangGraph's public API takes one: an async function, to which LangGraph passes the
    run's `Runtime` (the graph declares `context_schema=RunContext`). It makes the RunContext the
    one `run_context()` returns while the step runs.

    Ensemble graphs run asynchronously (a Session, a cascade's stages); a synchronous caller gets
    `agents.builder.embeddable(graph)`, one node with a sync and an async form around the graph.
    """

    async def node(state: S, runtime: Runtime[Any]) -> dict[str, Any]:
        context = runtime.context if isinstance(runtime.context, RunContext) else _DEFAULT_CONTEXT
        token = _CURRENT.set(context)
        try:
            return await afunc(state)
        finally:
            _CURRENT.reset(token)

    node.__name__ = node.__qualname__ = name
    return node


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

    if len(state["batch"]) == 1:  # one question (a server's request): no task of its own
        return [await one(0, state["batch"][0])]
    return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(state["batch"]))))


def allowance(state: "EnsembleState | Mapping[str, Any]", i: int, own: Budget | None, *, slot: int = 0,
              slots: int = 1, unit: int = 1) -> Allowance | None:
    """Task i's budget for one step (None when nothing limits it): the strategy's own per-question
    budget with a parent's, less what the task spent (here and in an earlier stage), and the run's
    ledger. A fanned-out step divides what its task has left among its `slots` in whole samples
    (`unit`: a sample's max_tokens; the first slots take the remainder), so slots running at once
    cannot overspend it together."""
    context = run_context()
    budget = own.tighter(context.question_budget) if own is not None else context.question_budget
    if budget is None and context.ledger is None:
        return None
    tokens, samples = cost([*(s.generation for s in state["samples"][i]), *state["aux"][i], *state["spare"][i]])
    if i < len(context.spent):
        tokens, samples = tokens + context.spent[i][0], samples + context.spent[i][1]
    shown = budget
    if budget is not None and slots > 1:
        unit = max(1, unit)
        budget = Budget.model_construct(  # a share may be 0: not a limit a user could set, so not validated
            tokens=None if budget.tokens is None else tokens + unit * _share((budget.tokens - tokens) // unit, slot, slots),
            samples=None if budget.samples is None else samples + _share(budget.samples - samples, slot, slots))
    return Allowance(budget, tokens, samples, context.ledger, shown=shown)


def _share(left: int, slot: int, slots: int) -> int:
    left = max(0, left)
    return left // slots + (1 if slot < left % slots else 0)


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
        "withheld": [0 for _ in batch],
        "rounds": {},
    }
