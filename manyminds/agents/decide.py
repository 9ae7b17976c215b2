"""Nodes where a model decides: selection among candidates, and synthesis of a new answer.

Self-Agreement (and universal self-consistency) ask the model which answer
most candidates agree on; the choice must map back to a candidate. Mixture-
of-Agents and Self-MoA ask the model to synthesise one answer from the
candidates. Either way the candidates' vote is kept as the tally, and when
the model's reply cannot be read the aggregator decides instead, and the
trace says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.runnables import RunnableLambda

from manyminds.agents.nodes import ask_node, decided
from manyminds.agents.state import EnsembleState
from manyminds.aggregators import Aggregator
from manyminds.answers import extract
from manyminds.backends.base import Backend
from manyminds.text import clip
from manyminds.types import Candidate, Decision, Generation, Message, SamplingParams, Task

_RESPONSE_NUMBER = re.compile(r"response\s*#?\s*(\d+)", re.IGNORECASE)
_MARKER = re.compile(r"most consistent (?:answer|response)\s*(?:is|:)\s*(.*)", re.IGNORECASE | re.DOTALL)


def read_selection(text: str, task: Task, candidates: Sequence[Candidate]) -> Candidate | None:
    """The candidate a selection reply points to, or None when it cannot be mapped back.

    First a response number ("Response 3"), then the stated answer matched
    against the candidates' answer keys.
    """
    marked = _MARKER.search(text)
    span = marked.group(1) if marked else text
    for number in _RESPONSE_NUMBER.findall(span)[:1] or _RESPONSE_NUMBER.findall(text)[-1:]:
        k = int(number) - 1
        if 0 <= k < len(candidates) and candidates[k].answer is not None:
            return candidates[k]
    stated = extract(task, _RESPONSE_NUMBER.sub("", span.split("\n")[0]))
    if stated is not None:
        for candidate in candidates:
            if candidate.answer == stated:
                return candidate
    return None


def numbered(candidates: Sequence[Candidate], max_chars: int) -> str:
    """Candidates as 'Response 1: ...' blocks, each cut to `max_chars`."""
    blocks = []
    for k, c in enumerate(candidates, 1):
        blocks.append(f"Response {k}:\n{clip(c.text.strip() or '(empty)', max_chars)}")
    return "\n\n".join(blocks)


def select_node(
    backend: Backend,
    params: SamplingParams,
    build: Callable[[Task, Sequence[Candidate]], list[Message]],
    aggregator: Aggregator,
    name: str,
    record: dict[str, Any],
) -> RunnableLambda:
    """Ask the model which candidate's answer most candidates agree on; decide by its choice."""

    def ask(i: int, task: Task, state: EnsembleState) -> list[Message] | None:
        return build(task, state["candidates"][i]) if state["candidates"][i] else None

    def apply(state: EnsembleState, replies: list[Generation | None]) -> dict[str, Any]:
        decisions, traces = [], []
        for i, (task, reply) in enumerate(zip(state["batch"], replies)):
            cands = state["candidates"][i]
            chosen = read_selection(reply.text, task, cands) if reply is not None else None
            if chosen is None:
                decisions.append(None)  # the aggregator decides
                traces.append(state["traces"][i] + [f"{name}: reply not mapped to a candidate; fell back to {aggregator.name}"])
            else:
                decisions.append(decided(aggregator, task, cands, chosen.answer, name, record))
                traces.append(state["traces"][i] + [f"{name}: chose response {chosen.index + 1}"])
        return {"decisions": decisions, "traces": traces}

    return ask_node(backend, params, ask, apply, name)


def from_synthesis(
    aggregator: Aggregator,
    task: Task,
    candidates: Sequence[Candidate],
    reply: Generation | None,
    name: str,
    record: dict[str, Any],
) -> tuple[Decision, list[Candidate], str | None]:
    """The decision a synthesis makes, the candidates with the synthesis added, and a note.

    The synthesis joins the candidates (source "synthesis") but not the vote;
    with no readable answer in it, the aggregator decides and the note says so.
    """
    cands = list(candidates)
    answer = extract(task, reply.text) if reply is not None else None
    if reply is not None:
        cands.append(
            Candidate.model_construct(
                index=len(cands), text=reply.text, answer=answer, generation=reply, source="synthesis"
            )
        )
    if answer is None:
        return aggregator(task, candidates), cands, f"{name}: no answer in the synthesis; fell back to {aggregator.name}"
    return decided(aggregator, task, candidates, answer, name, record), cands, None


def synthesize_node(
    backend: Backend,
    params: SamplingParams,
    build: Callable[[int, Task, EnsembleState], list[Message] | None],
    aggregator: Aggregator,
    name: str,
    record: dict[str, Any],
) -> RunnableLambda:
    """Ask the model for one answer written from the candidates; that answer is the decision."""

    def apply(state: EnsembleState, replies: list[Generation | None]) -> dict[str, Any]:
        decisions, traces, candidates = [], [], []
        for i, (task, reply) in enumerate(zip(state["batch"], replies)):
            decision, cands, note = from_synthesis(aggregator, task, state["candidates"][i], reply, name, record)
            decisions.append(decision)
            candidates.append(cands)
            traces.append(state["traces"][i] + ([note] if note else []))
        return {"decisions": decisions, "traces": traces, "candidates": candidates}

    return ask_node(backend, params, build, apply, name)
