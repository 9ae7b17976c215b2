"""Strategies that use a verifier: best-of-n, verifier resampling, and the verified vote.

Imperfect verifiers have false positives, and resampling cannot remove them
(Stroebl et al., "Inference Scaling fLaws: The Limits of LLM Resampling with
Imperfect Verifiers", 2024): the more samples a resampler draws, the more
chances a wrong answer has to slip through. So resampling has a budget, may
abstain when nothing passes, and every candidate keeps its verdict; with a
gold answer, `Result.false_positives` counts the candidates that passed but
are wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from manyminds.agents.state import EnsembleState
from manyminds.aggregators import get_aggregator
from manyminds.aggregators.majority import tally
from manyminds.backends.base import Backend
from manyminds.strategies.base import OnePromptStrategy, PromptedStrategy
from manyminds.types import Candidate, Decision, Task

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph


def best_verified(task: Task, candidates: Sequence[Candidate], *, abstain: bool, name: str,
                  params: dict[str, Any]) -> Decision:
    """The best-scored answer; ties among the best broken by vote, then by lowest index.

    With `abstain`, no passing candidate means no answer. The tally holds the
    best score of each answer; confidence is the winner's score.
    """
    scored = [c for c in candidates if c.answer is not None and c.verdict is not None]
    best: dict[str, float] = {}
    for c in sorted(scored, key=lambda c: c.index):
        best[c.answer] = max(best.get(c.answer, 0.0), c.verdict.score)  # type: ignore[union-attr,index]
    if not best or (abstain and not any(c.verdict.passed for c in scored)):  # type: ignore[union-attr]
        return Decision(answer=None, confidence=0.0, tally=best, aggregator=name, params={**params, "abstained": True})
    top = max(best.values())
    leaders = [c for c in scored if c.verdict.score >= top - 1e-9]  # type: ignore[union-attr]
    votes = tally(leaders)
    winner = max(votes, key=lambda k: votes[k])
    return Decision(answer=winner, confidence=top, tally=best, aggregator=name, params=params)


class VerifierConfig(PromptedStrategy):
    """A verifier (excluded from the config's JSON, recorded by name and parameters)."""

    verifier: Any = Field(exclude=True, description="a Verifier: unit tests, math, judge, panel, reward")

    def params(self) -> dict[str, Any]:
        record = super().params()
        record["verifier"] = {"name": self.verifier.name, **self.verifier.params()}
        return record


class BestOfN(OnePromptStrategy, VerifierConfig):
    """n samples, each verified (concurrently); the best score wins, ties broken by vote."""

    name: ClassVar[str] = "best-of-n"

    abstain: bool = Field(default=False, description="answer nothing when no candidate passes")

    def build(self, backend: Backend) -> "CompiledStateGraph":
        from manyminds.agents.nodes import aggregate_node, inline_node, verify_node, with_verdicts

        def choose(state: EnsembleState) -> dict[str, Any]:
            decisions = [
                best_verified(task, with_verdicts(c, v), abstain=self.abstain, name=self.name, params={"n": self.n})
                for task, c, v in zip(state["batch"], state["candidates"], state["verdicts"])
            ]
            return {"decisions": decisions}

        return self.sampled(
            backend,
            ("verify", verify_node(self.verifier)),
            ("choose", inline_node(choose, "choose")),
            ("aggregate", aggregate_node(get_aggregator(self.aggregator), self.name, self.params())),
        )


class VerifierResampling(VerifierConfig):
    """Sample in batches until a candidate passes or the budget is spent; abstain if none passes.

    The graph loops sample -> extract -> verify while any question of the
    batch is undecided and has budget left; only undecided questions are
    sampled again.
    """

    name: ClassVar[str] = "verifier-resampling"

    batch: int = Field(default=4, ge=1, description="samples drawn per round")
    budget: int = Field(default=16, ge=1, description="most samples per question")
    abstain: bool = Field(default=True, description="no answer when nothing passes within the budget")

    @model_validator(mode="after")
    def _batch_within_budget(self) -> "VerifierResampling":
        if self.batch > self.budget:
            raise ValueError(f"batch ({self.batch}) must not exceed budget ({self.budget})")
        return self

    @classmethod
    def for_budget(cls, n: int, **settings: Any) -> "VerifierResampling":
        return cls(batch=max(1, n // 4), budget=n, **settings)

    def build(self, backend: Backend) -> "CompiledStateGraph":
        from langgraph.graph import END, START

        from manyminds.agents.graphs import new_graph
        from manyminds.agents.nodes import Request, aggregate_node, extract_node, inline_node, prepare, sample_node, verify_node, with_verdicts

        def settled(state: EnsembleState, i: int) -> bool:
            passed = any(v.passed for v in state["verdicts"][i].values())
            return passed or len(state["samples"][i]) >= self.budget

        def plan(i: int, task: Task, state: EnsembleState) -> list:
            if settled(state, i):
                return []
            drawn = len(state["samples"][i])
            return [Request("sample", self.messages(task), min(self.batch, self.budget - drawn), first_index=drawn)]

        def again(state: EnsembleState) -> str:
            return "choose" if all(settled(state, i) for i in range(len(state["batch"]))) else "sample"

        def choose(state: EnsembleState) -> dict[str, Any]:
            decisions, traces = [], []
            for task, c, v, t in zip(state["batch"], state["candidates"], state["verdicts"], state["traces"]):
                d = best_verified(task, with_verdicts(c, v), abstain=self.abstain, name=self.name,
                                  params={"batch": self.batch, "budget": self.budget})
                decisions.append(d)
                passed = any(x.passed for x in v.values())
                traces.append(t + [f"stopped: {'a candidate passed' if passed else 'budget spent'} after {len(c)} samples"
                                   + ("; abstained" if d.answer is None and not passed else "")])
            return {"decisions": decisions, "traces": traces}

        graph = new_graph()
        graph.add_node("prepare", inline_node(prepare, "prepare"))
        graph.add_node("sample", sample_node(backend, plan, self.sampling_params()))
        graph.add_node("extract", extract_node())
        graph.add_node("verify", verify_node(self.verifier))
        graph.add_node("choose", inline_node(choose, "choose"))
        graph.add_node("aggregate", aggregate_node(get_aggregator(self.aggregator), self.name, self.params()))
        graph.add_edge(START, "prepare")
        graph.add_edge("prepare", "sample")
        graph.add_edge("sample", "extract")
        graph.add_edge("extract", "verify")
        graph.add_conditional_edges("verify", again, ["sample", "choose"])
        graph.add_edge("choose", "aggregate")
        graph.add_edge("aggregate", END)
        return graph.compile(name=self.name)


class VerifiedVote(OnePromptStrategy, VerifierConfig):
    """n samples, each verified; votes weighted by verifier score."""

    name: ClassVar[str] = "verified-vote"

    def build(self, backend: Backend) -> "CompiledStateGraph":
        from manyminds.agents.nodes import aggregate_node, verify_node

        return self.sampled(
            backend,
            ("verify", verify_node(self.verifier)),
            ("aggregate", aggregate_node(get_aggregator("weighted", by="verifier"), self.name, self.params())),
        )
