"""Shared graph nodes from which every strategy is assembled.

prepare -> (propose) -> sample | fan-out over slots -> join -> extract ->
(select | synthesize) -> aggregate. Each node takes the batch state and
returns an update; what a node needs (a backend, a prompt builder) is bound
when the node is built, so a graph holds no global state and a strategy is
never mutated by running it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.types import Send

from manyminds._perf import gc_paused
from manyminds.aggregators import Aggregator
from manyminds.answers import FORMATS, extract
from manyminds.backends.base import Backend
from manyminds.errors import ConfigError
from manyminds.agents.state import EnsembleState, Sample, SlotSamples
from manyminds.types import Candidate, Decision, Generation, Message, Result, SamplingParams, Task, Usage, Verdict, trusted

DEFAULT_CONCURRENCY = 16
T = TypeVar("T")

Node = Callable[[EnsembleState, RunnableConfig], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Request:
    """One backend request a strategy plans for a task: `n` samples of `messages`."""

    source: str
    messages: list[Message]
    n: int = 1
    params: SamplingParams | None = None
    """Overrides the node's parameters (e.g. greedy for a selection call)."""
    first_index: int = 0
    """Sample index of the first sample: proposers sharing one backend and prompt take
    distinct indices, so they are distinct samples (and distinct cache rows)."""


# A plan: (task index, task, state) -> the requests to make for that task.
Plan = Callable[[int, Task, EnsembleState], list[Request]]
# A slot plan: (slot, task index, task, state) -> requests of that slot for that task.
SlotPlan = Callable[[int, int, Task, EnsembleState], list[Request]]


def configured(config: RunnableConfig | None, name: str, default: Any) -> Any:
    """A run-time option passed as `config={"configurable": {"manyminds_NAME": ...}}`."""
    return ((config or {}).get("configurable") or {}).get(f"manyminds_{name}", default)


# -- node wrappers --------------------------------------------------------------


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
        "aux": [[] for _ in batch],
        "spare": [[] for _ in batch],
        "decisions": [None for _ in batch],
        "traces": [["prepare"] for _ in batch],
        "verdicts": [{} for _ in batch],
        "scratch": {},
        "round": 0,
    }


# -- sampling -------------------------------------------------------------------


async def _run_plan(
    backend: Backend, params: SamplingParams, requests: list[Request]
) -> list[Sample]:
    if len(requests) == 1:  # the common case: no extra asyncio task per question
        r = requests[0]
        batches = [await backend.generate(r.messages, r.params or params, r.n, r.first_index)]
    else:
        batches = await asyncio.gather(
            *(backend.generate(r.messages, r.params or params, r.n, r.first_index) for r in requests)
        )
    return [trusted(Sample, source=r.source, generation=g) for r, gens in zip(requests, batches) for g in gens]


async def _per_task(
    state: EnsembleState, config: RunnableConfig, work: Callable[[int, Task], Awaitable[T]], *, count: bool
) -> list[T]:
    """Run `work` for every task of the batch, at most `concurrency` tasks at once."""
    limit = asyncio.Semaphore(max(1, int(configured(config, "concurrency", DEFAULT_CONCURRENCY))))
    progress = configured(config, "progress", None) if count else None

    async def one(i: int, task: Task) -> T:
        async with limit:
            out = await work(i, task)
        if progress is not None:
            progress(1)
        return out

    return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(state["batch"]))))


def sample_node(backend: Backend, plan: Plan, params: SamplingParams, *, name: str = "sample") -> RunnableLambda:
    """Make each task's planned requests and append the samples to the task's list.

    A request's n samples are one backend call (the backend's native n), so
    sampling a question costs no graph steps. At most `concurrency` tasks
    (run-time option, default 16) are in flight; `progress` is called once
    per finished task.
    """

    async def sample(state: EnsembleState, config: RunnableConfig) -> dict[str, Any]:
        async def work(i: int, task: Task) -> list[Sample]:
            return await _run_plan(backend, params, plan(i, task, state))

        new = await _per_task(state, config, work, count=True)
        return {
            "samples": [old + add for old, add in zip(state["samples"], new)],
            "traces": [t + [name] for t in state["traces"]],
        }

    return async_node(sample, name)


def fan_out(node: str, slots: Callable[[EnsembleState], int]) -> Callable[[EnsembleState], list[Send]]:
    """A conditional edge sending the batch to `node` once per slot (prompt, proposer)."""

    def route(state: EnsembleState) -> list[Send]:
        return [Send(node, {**state, "slot": j}) for j in range(slots(state))]

    return route


def slot_node(backend_for: Callable[[int], Backend], plan: SlotPlan, params: SamplingParams, name: str) -> RunnableLambda:
    """One fanned-out slot: make that slot's requests for every task, with the slot's backend."""

    async def run_slot(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        slot = state["slot"]
        backend = backend_for(slot)

        async def work(i: int, task: Task) -> list[Sample]:
            return await _run_plan(backend, params, plan(slot, i, task, state))  # type: ignore[arg-type]

        samples = await _per_task(state, config, work, count=False)  # type: ignore[arg-type]
        return {"slot_samples": [SlotSamples(round=state["round"], slot=slot, samples=samples)]}

    return async_node(run_slot, name)


def slot_outputs(state: EnsembleState) -> list[list[Sample]]:
    """This round's slot outputs merged per task, in slot order (arrival order is arbitrary)."""
    mine = sorted((s for s in state.get("slot_samples", []) if s.round == state["round"]), key=lambda s: s.slot)
    merged: list[list[Sample]] = [[] for _ in state["batch"]]
    for slot in mine:
        for i, samples in enumerate(slot.samples):
            merged[i].extend(samples)
    return merged


def join_node(name: str = "join") -> RunnableLambda:
    """Append this round's fanned-out samples to each task's voting samples."""

    def join(state: EnsembleState) -> dict[str, Any]:
        merged = slot_outputs(state)
        return {
            "samples": [old + add for old, add in zip(state["samples"], merged)],
            "traces": [t + [name] for t in state["traces"]],
        }

    return inline_node(join, name)


# -- auxiliary model calls (proposals, selections, syntheses) -----------------------


def ask_node(
    backend: Backend,
    params: SamplingParams,
    build: Callable[[int, Task, EnsembleState], list[Message] | None],
    apply: Callable[[EnsembleState, list[Generation | None]], dict[str, Any]],
    name: str,
) -> RunnableLambda:
    """One extra call per task (None from `build` skips the task); `apply` turns replies into an update.

    The calls are recorded in each task's `aux` generations, so they count in usage.
    """

    async def ask(state: EnsembleState, config: RunnableConfig) -> dict[str, Any]:
        async def work(i: int, task: Task) -> Generation | None:
            messages = build(i, task, state)
            if messages is None:
                return None
            (reply,) = await backend.generate(messages, params, 1)
            return reply

        replies = await _per_task(state, config, work, count=False)
        state = {**state, "traces": [t + [name] for t in state["traces"]]}  # type: ignore[typeddict-item]
        update = {"traces": state["traces"], **apply(state, replies)}
        update.setdefault(
            "aux", [old + ([r] if r is not None else []) for old, r in zip(state["aux"], replies)]
        )
        return update

    return async_node(ask, name)


# -- candidates and decisions ---------------------------------------------------------

Split = Callable[[Task, Sample], list[tuple[str, str]]]


def extract_node(split: Split | None = None) -> RunnableLambda:
    """Read an answer key out of every sample; unreadable ones stay, without a vote.

    Candidates are numbered by their position in the task's sample list, so
    the majority tie rule (lowest index first) follows prompt order, then
    sample order. `split` turns one sample into several answers (IDIV-SE).
    """

    def extract_all(state: EnsembleState) -> dict[str, Any]:
        with gc_paused():
            return _extract_all(state)

    def _extract_all(state: EnsembleState) -> dict[str, Any]:
        candidates = []
        for task, samples in zip(state["batch"], state["samples"]):
            mine: list[Candidate] = []
            for sample in samples:
                g = sample.generation
                parts = split(task, sample) if split else [(sample.source, g.text)]
                for source, text in parts:
                    # every field is already valid: skip validation (the hot path of warm reruns)
                    mine.append(
                        trusted(Candidate, index=len(mine), text=text, answer=extract(task, text), generation=g,
                                source=source)
                    )
            if FORMATS[task.format].merge_by_value:
                mine = _merge_equivalent(mine)
            candidates.append(mine)
        return {"candidates": candidates, "traces": [t + ["extract"] for t in state["traces"]]}

    return inline_node(extract_all, "extract")


def _merge_equivalent(candidates: list[Candidate]) -> list[Candidate]:
    """Math answers equal in value get one key (math-verify), so they never split the vote."""
    from manyminds.verifiers.math_answer import unify_keys

    mapping = unify_keys([c.answer for c in candidates if c.answer is not None])
    return [
        c if c.answer is None or mapping[c.answer] == c.answer else c.model_copy(update={"answer": mapping[c.answer]})
        for c in candidates
    ]


def aggregate_node(aggregator: Aggregator, strategy: str, strategy_params: dict[str, Any]) -> RunnableLambda:
    """Decide each task (unless a node already did) and assemble its Result."""

    def aggregate(state: EnsembleState) -> dict[str, Any]:
        with gc_paused():
            return _aggregate(state)

    def _aggregate(state: EnsembleState) -> dict[str, Any]:
        results = []
        for i, task in enumerate(state["batch"]):
            cands = with_verdicts(state["candidates"][i], state.get("verdicts", [{}] * len(state["batch"]))[i])
            decided = state["decisions"][i]
            decision = decided if decided is not None else aggregator(task, cands)
            generations = [s.generation for s in state["samples"][i]] + state["aux"][i]
            results.append(
                trusted(
                    Result,
                    task=task,
                    answer=decision.answer,
                    confidence=decision.confidence,
                    tally=decision.tally,
                    candidates=list(cands),
                    usage=Usage.of(generations, spare=state["spare"][i] if state.get("spare") else ()),
                    decision=decision,
                    strategy=strategy,
                    strategy_params=strategy_params,
                    trace=state["traces"][i] + ["aggregate"],
                    stop_reason=state["scratch"].get("stop_reasons", {}).get(i),
                )
            )
        update: dict[str, Any] = {"results": results}
        if state.get("single"):
            update.update(result=results[0], answer=results[0].answer, confidence=results[0].confidence)
        return update

    return inline_node(aggregate, "aggregate")


def with_verdicts(candidates: Sequence[Candidate], verdicts: dict[int, Verdict]) -> list[Candidate]:
    """Candidates carrying their verdicts (extraction rebuilds candidates; verdicts live apart)."""
    if not verdicts:
        return list(candidates)
    return [c.model_copy(update={"verdict": verdicts[c.index]}) if c.index in verdicts else c for c in candidates]


def verify_node(verifier: Any, *, name: str = "verify", max_parallel: int = 16) -> RunnableLambda:
    """Verify every candidate not verified yet, concurrently, keeping verdicts by candidate index."""

    async def verify(state: EnsembleState, config: RunnableConfig) -> dict[str, Any]:
        limit = asyncio.Semaphore(max_parallel)

        async def check(task: Task, candidate: Candidate) -> tuple[int, Verdict]:
            async with limit:
                return candidate.index, await verifier.verify(task, candidate)

        async def work(i: int, task: Task) -> dict[int, Verdict]:
            done = state["verdicts"][i]
            todo = [c for c in state["candidates"][i] if c.index not in done]
            return {**done, **dict(await asyncio.gather(*(check(task, c) for c in todo)))}

        verdicts = await _per_task(state, config, work, count=False)
        traces = [
            t + [f"{name}: {sum(v.passed for v in vs.values())}/{len(vs)} passed"]
            for t, vs in zip(state["traces"], verdicts)
        ]
        return {"verdicts": verdicts, "traces": traces}

    return async_node(verify, name)


def decided(
    aggregator: Aggregator, task: Task, candidates: Sequence[Candidate], answer: str | None, name: str, params: dict[str, Any]
) -> Decision:
    """A decision made by a model (selection, synthesis), with the candidates' vote as evidence.

    The tally is the candidates' vote; confidence is the share of votes that
    agree with the model's answer.
    """
    vote = aggregator(task, candidates)
    total = sum(vote.tally.values())
    share = vote.tally.get(answer, 0.0) / total if answer is not None and total else 0.0
    return Decision(answer=answer, confidence=share, tally=vote.tally, aggregator=name, params=params)
