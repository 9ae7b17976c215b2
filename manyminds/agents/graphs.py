"""Helpers to assemble strategy graphs over the shared ensemble state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph

from manyminds.agents.state import EnsembleInput, EnsembleOutput, EnsembleState
from manyminds.types import Message, SamplingParams, Task


def new_graph() -> StateGraph:
    """A StateGraph over the ensemble state, with the input and output a caller sees."""
    return StateGraph(EnsembleState, input_schema=EnsembleInput, output_schema=EnsembleOutput)


def chain(graph: StateGraph, *steps: tuple[str, Any]) -> StateGraph:
    """Add `steps` as nodes run one after another, from START to END."""
    previous = START
    for name, node in steps:
        graph.add_node(name, node)
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph


def sampled_graph(
    backend: Any,
    messages: Callable[[Task], list[Message]],
    params: SamplingParams,
    n: int,
    stop: Any,
    *after: tuple[str, Any],
) -> StateGraph:
    """prepare -> sample -> extract -> `after`..., for strategies that sample one prompt n times.

    With a stopping rule the samples come in waves: sample a wave -> extract
    -> check, looping back for the questions not yet settled (each wave one
    backend request with native n), until the rule stops them or n is reached.
    Waves are sized for the backend (`stopping.next_wave`); the check replays
    the rule's own schedule (`stopping.settle`), so the answer and the samples
    used are the sequential rule's, and samples drawn ahead move to `spare`.
    """
    from manyminds.agents.nodes import Request, extract_node, inline_node, prepare, sample_node

    graph = new_graph()
    graph.add_node("prepare", inline_node(prepare, "prepare"))
    graph.add_edge(START, "prepare")
    graph.add_edge("prepare", "sample")
    graph.add_node("extract", extract_node())
    graph.add_edge("sample", "extract")
    first_after = after[0][0] if after else END
    if stop is None:
        graph.add_node("sample", sample_node(backend, lambda i, task, state: [Request("sample", messages(task), n)], params))
        graph.add_edge("extract", first_after)
    else:
        plan = _wave_plan(messages, n, stop, backend.capabilities.batch_width)
        graph.add_node("sample", sample_node(backend, plan, params))
        graph.add_node("check", inline_node(_stop_check(n, stop), "check"))
        graph.add_edge("extract", "check")
        graph.add_conditional_edges(
            "check",
            lambda state: first_after if len(_stopped(state)) == len(state["batch"]) else "sample",
            ["sample", first_after],
        )
    for k, (name, node) in enumerate(after):
        graph.add_node(name, node)
        graph.add_edge(name, after[k + 1][0] if k + 1 < len(after) else END)
    return graph


def _stopped(state: EnsembleState) -> dict[int, str]:
    return state["scratch"].get("stop_reasons", {})


def _wave_plan(
    messages: Callable[[Task], list[Message]], n: int, stop: Any, batch_width: int
) -> Callable[..., list[Any]]:
    from manyminds.agents.nodes import Request
    from manyminds.stopping import next_wave

    def plan(i: int, task: Task, state: EnsembleState) -> list[Any]:
        if i in _stopped(state):
            return []
        drawn = len(state["samples"][i])
        answers = [c.answer for c in state["candidates"][i]] if state.get("candidates") else []
        size = next_wave(stop, answers, n, batch_width)
        return [Request("sample", messages(task), size, first_index=drawn)] if size else []

    return plan


def _stop_check(n: int, stop: Any) -> Callable[[EnsembleState], dict[str, Any]]:
    from manyminds.stopping import settle

    def check(state: EnsembleState) -> dict[str, Any]:
        found = dict(_stopped(state))
        traces, samples, candidates = [], list(state["samples"]), list(state["candidates"])
        spare = list(state.get("spare") or [[] for _ in state["batch"]])
        for i, (cands, trace) in enumerate(zip(state["candidates"], state["traces"])):
            if i not in found:
                used, why = settle(stop, [c.answer for c in cands], n)
                if why is not None:
                    drawn = len(cands)
                    if drawn > used:  # drawn ahead in one batched call: keep what the rule used
                        why = f"{why} ({drawn} drawn in batched waves, {drawn - used} left unused)"
                        spare[i] = spare[i] + [s.generation for s in samples[i][used:]]
                        samples[i], candidates[i] = samples[i][:used], cands[:used]
                    found[i] = why
                    trace = trace + [f"stopped: {why}"]
            traces.append(trace)
        return {"scratch": {**state["scratch"], "stop_reasons": found}, "traces": traces, "samples": samples,
                "candidates": candidates, "spare": spare}

    return check
