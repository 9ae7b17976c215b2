"""The direct runner (`agents.builder.DirectRun`, `Session(runner="direct")`, what `manyminds serve`
uses) gives every strategy the Results its LangGraph graph gives: same samples, candidates,
verdicts, decisions, usage, traces and stop reasons."""

from __future__ import annotations

import asyncio

import pytest

from manyminds import Session
from manyminds.agents.nodes import DIRECT, RunContext, run_batch
from manyminds.backends.scripted import Scripted
from manyminds.errors import BackendError, ConfigError
from manyminds.strategies import STRATEGIES, make

QUESTIONS = ["What is 2 + 2?", "What is 3 + 4?", "What is 10 - 7?"]


def varied(messages, params, index):
    """Replies that depend only on the request (so the order calls are made in cannot matter) and
    disagree across samples, so votes, stopping rules, cascades and judges all have work."""
    text = messages[-1].content
    if "Do not solve it" in text:
        return "Approach 1: add\nApproach 2: count\nPersona 1: a teacher"
    if "most consistent" in text:
        return f"The most consistent answer is {4 + index % 2} (Response {1 + index % 2})."
    if "Ranking" in text or "rank" in text.lower():
        return "Ranking: 2 > 1 > 3"
    seed = sum(map(ord, text)) + index + (params.seed or 0)
    return f"Approach 1:\nThe answer is {seed % 3 + 4}.\nApproach 2:\nThe answer is {seed % 2 + 4}."


def comparable(result):
    dumped = result.model_dump(mode="json")
    for candidate in dumped["candidates"]:
        if candidate.get("generation"):
            candidate["generation"]["request_id"] = None  # the Scripted backend numbers its calls
    return dumped


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_gives_the_same_results_both_ways(name):
    strategy = make(name, 4)
    runs = {}
    for runner in ("langgraph", "direct"):
        backend = Scripted(varied)
        with Session(backend, runner=runner, progress=False) as session:
            runs[runner] = ([comparable(r) for r in session.solve_many(strategy, QUESTIONS)], backend.calls)
    assert runs["direct"] == runs["langgraph"]
    assert runs["direct"][1] > 0


def judged(name: str, n: int, **settings):
    from manyminds.verifiers.base import VerifierOptions

    def judge(messages, params, index):
        return "Yes" if sum(map(ord, messages[-1].content)) % 3 else "No"

    return make(name, n, verifier="p-true", verifier_options=VerifierOptions(backend=Scripted(judge)), **settings)


@pytest.mark.parametrize("build", [
    lambda: make("self-consistency", 16, stop="esc:window=2"),
    lambda: make("self-consistency", 16, stop="adaptive"),
    lambda: make("self-consistency", 12, stop="sprt"),
    lambda: judged("best-of-n", 4),
    lambda: judged("verifier-resampling", 6),
    lambda: judged("verified-vote", 4),
], ids=["esc", "adaptive-consistency", "sprt", "best-of-n", "verifier-resampling", "verified-vote"])
def test_loops_stopping_rules_and_verifiers_give_the_same_results_both_ways(build):
    runs = {}
    for runner in ("langgraph", "direct"):
        backend = Scripted(varied)
        with Session(backend, runner=runner, progress=False) as session:
            runs[runner] = ([comparable(r) for r in session.solve_many(build(), QUESTIONS)], backend.calls)
    assert runs["direct"] == runs["langgraph"]


def test_a_budget_and_a_ledger_hold_the_same_way():
    strategy = make("self-consistency", 8, budget={"samples": 5})
    out = {}
    for runner in ("langgraph", "direct"):
        with Session(Scripted(varied), runner=runner, progress=False, budget={"samples": 12}) as session:
            out[runner] = ([comparable(r) for r in session.solve_many(strategy, QUESTIONS)], session.ledger.samples)
    assert out["direct"] == out["langgraph"] and out["direct"][1] <= 12


def test_a_failing_slot_fails_the_run_as_langgraph_does():
    def failing(messages, params, index):
        if "teacher" in messages[-1].content.lower() or "count" in messages[-1].content.lower():
            raise BackendError("the upstream is down", retryable=False)
        return varied(messages, params, index)

    graph = make("div-se", 2).compiled(Scripted(failing))
    assert getattr(graph, DIRECT, None) is not None
    for runner in ("langgraph", "direct"):
        with pytest.raises(BackendError, match="the upstream is down"):
            asyncio.run(run_batch(graph, [QUESTIONS[0]], RunContext(runner=runner)))


def test_an_unknown_runner_is_refused_by_name():
    with pytest.raises(ConfigError, match="runner must be one of langgraph, direct, got 'pregel'"):
        Session(Scripted(varied), runner="pregel")
    with pytest.raises(ConfigError, match="runner must be one of"):
        RunContext(runner="fast")
