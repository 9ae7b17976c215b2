"""Shared graph nodes: prepare, sample, extract, aggregate.

Strategies assemble their graphs from these. Each node takes the batch state
and returns an update; a node that needs a backend or a prompt receives it
when the node is built, so the graph holds no global state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig, RunnableLambda

from manyminds.aggregators import Aggregator
from manyminds.answers import extract
from manyminds.backends.base import Backend
from manyminds.errors import ConfigError
from manyminds.agents.state import EnsembleState
from manyminds.types import Candidate, Generation, Message, Result, SamplingParams, Task, Usage

DEFAULT_CONCURRENCY = 16
T = TypeVar("T")

Node = Callable[[EnsembleState, RunnableConfig], Awaitable[dict[str, Any]]]


def configured(config: RunnableConfig | None, name: str, default: Any) -> Any:
    """A run-time option passed as `config={"configurable": {"manyminds_NAME": ...}}`."""
    return ((config or {}).get("configurable") or {}).get(f"manyminds_{name}", default)


def prepare(state: EnsembleState) -> dict[str, Any]:
    """Normalise the input (question, task or tasks) into `batch`."""
    if state.get("tasks") is not None:
        raw: Sequence[Task | str] = state["tasks"]
        single = False
    elif state.get("task") is not None:
        raw, single = [state["task"]], True
    elif state.get("question") is not None:
        raw, single = [state["question"]], True
    else:
        raise ConfigError("the graph needs a 'question', a 'task' or a list of 'tasks' in its input")
    return {"batch": [Task.of(t) for t in raw], "single": single}


def sample_node(
    backend: Backend,
    messages_for: Callable[[Task], list[Message]],
    params: SamplingParams,
    n: int,
) -> RunnableLambda:
    """Ask the backend for n samples of each task's prompt, the batch concurrently.

    A task's n samples are one backend request (the backend's native n), so
    the fan-out across samples costs no graph steps. At most `concurrency`
    tasks (run-time option, default 16) are in flight; `progress`, if given,
    is called once per finished task.
    """

    async def sample(state: EnsembleState, config: RunnableConfig) -> dict[str, Any]:
        batch = state["batch"]
        limit = asyncio.Semaphore(max(1, int(configured(config, "concurrency", DEFAULT_CONCURRENCY))))
        progress = configured(config, "progress", None)

        async def one(task: Task) -> list[Generation]:
            async with limit:
                generations = await backend.generate(messages_for(task), params, n)
            if progress is not None:
                progress(1)
            return generations

        return {"generations": list(await asyncio.gather(*(one(t) for t in batch)))}

    return async_node(sample, "sample")


def inline_node(func: Callable[[EnsembleState], dict[str, Any]], name: str) -> RunnableLambda:
    """A quick synchronous node that runs on the event loop under `ainvoke`.

    LangGraph runs plain sync functions on a worker thread in async mode; for
    nodes that take microseconds per task the thread hop costs more than
    the work.
    """

    async def afunc(state: EnsembleState) -> dict[str, Any]:
        return func(state)

    return RunnableLambda(func, afunc=afunc, name=name)


def async_node(afunc: Node, name: str) -> RunnableLambda:
    """A node whose work is async, usable from `invoke` as well as `ainvoke`.

    Under `invoke` the coroutine runs on a private event loop (a fresh thread
    if the calling thread already runs one), so a user's synchronous parent
    graph can embed an ensemble graph.
    """

    def func(state: EnsembleState, config: RunnableConfig) -> dict[str, Any]:
        return run_sync(afunc(state, config))

    return RunnableLambda(func, afunc=afunc, name=name)


def run_sync(coroutine: Awaitable[T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()  # type: ignore[arg-type]


def extract_node(state: EnsembleState) -> dict[str, Any]:
    """Read an answer key out of every generation; unreadable ones stay, without a vote."""
    # model_construct: every field comes from validated values, so skip re-validation.
    candidates = [
        [
            Candidate.model_construct(
                index=g.index, text=g.text, answer=extract(task, g.text), generation=g, source="sample"
            )
            for g in gens
        ]
        for task, gens in zip(state["batch"], state["generations"])
    ]
    return {"candidates": candidates}


def aggregate_node(
    aggregator: Aggregator, strategy: str, strategy_params: dict[str, Any]
) -> Callable[[EnsembleState], dict[str, Any]]:
    """Decide each task's answer and assemble its Result."""

    def aggregate(state: EnsembleState) -> dict[str, Any]:
        results = []
        for task, gens, cands in zip(state["batch"], state["generations"], state["candidates"]):
            decision = aggregator(task, cands)
            results.append(
                Result(
                    task=task,
                    answer=decision.answer,
                    confidence=decision.confidence,
                    tally=decision.tally,
                    candidates=list(cands),
                    usage=Usage.of(gens),
                    decision=decision,
                    strategy=strategy,
                    strategy_params=strategy_params,
                    trace=["prepare", "sample", "extract", "aggregate"],
                )
            )
        update: dict[str, Any] = {"results": results}
        if state.get("single"):
            update.update(result=results[0], answer=results[0].answer, confidence=results[0].confidence)
        return update

    return aggregate
