"""Ranked voting: judges rank the sampled responses; a Borda count decides.

Users of other frameworks ask for rank-based aggregation (e.g. Borda count
over judge rankings, as in LLM-Blender's rankers and judge panels). Each
judge ranks all responses best first; a response ranked r-th among m gets
m - r points from that judge; an answer's score is the points of its
responses. A judge reply that cannot be read counts for nothing, and the
trace says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from manyminds.agents.state import EnsembleState
from manyminds.backends.base import Backend
from manyminds.strategies.base import OnePromptStrategy
from manyminds.types import MAX_SAMPLES, Candidate, Decision, Generation, Message, Task

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

# -- prompt: a listwise ranking request answered with response numbers ------------------
RANK_PROMPT = (
    "Question: {question}\n\nHere are {n} responses:\n\n{responses}\n\n"
    "Rank the responses from best to worst by correctness. Reply with one line of the form "
    "'Ranking: 3 > 1 > 2', using every response number exactly once."
)


def parse_ranking(text: str, m: int) -> list[int] | None:
    """Candidate positions (0-based) best first, or None unless the reply ranks 1..m validly."""
    line = re.search(r"ranking\s*:\s*(.*)", text, re.IGNORECASE)
    numbers = [int(x) - 1 for x in re.findall(r"\d+", line.group(1) if line else text)]
    seen: list[int] = []
    for k in numbers:
        if 0 <= k < m and k not in seen:
            seen.append(k)
    return seen if len(seen) == m else None


def borda(rankings: Sequence[Sequence[int]], m: int) -> list[float]:
    """Borda points per position: m - rank (best gets m - 1 ... worst 0), summed over rankings."""
    points = [0.0] * m
    for ranking in rankings:
        for rank, position in enumerate(ranking):
            points[position] += m - 1 - rank
    return points


class RankedVote(OnePromptStrategy):
    """n samples, ranked by each judge; Borda count over the rankings decides."""

    name: ClassVar[str] = "ranked-vote"

    n: int = Field(default=6, ge=2, le=MAX_SAMPLES)
    judges: tuple[Any, ...] = Field(default=(), exclude=True, description="judge backends; empty: the main backend")
    max_chars_per_response: int = Field(default=800, ge=50)

    def params(self) -> dict[str, Any]:
        record = super().params()
        record["judges"] = [j.cache_identity() for j in self.judges]
        return record

    def ranking_messages(self, task: Task, candidates: Sequence[Candidate]) -> list[Message]:
        from manyminds.agents.decide import numbered

        return self.chat(RANK_PROMPT.format(question=task.render(), n=len(candidates),
                                            responses=numbered(candidates, self.max_chars_per_response)))

    def build(self, backend: Backend) -> "CompiledStateGraph":
        from manyminds.agents.nodes import aggregate_node, ask_node, inline_node
        from manyminds.aggregators import get_aggregator

        judges = list(self.judges) or [backend]
        aggregator = get_aggregator(self.aggregator)
        greedy = self.sampling_params(temperature=0.0, max_tokens=64)

        def judge_node(j: int, judge: Backend) -> Any:
            def build(i: int, task: Task, state: EnsembleState) -> list[Message] | None:
                return self.ranking_messages(task, state["candidates"][i]) if state["candidates"][i] else None

            def apply(state: EnsembleState, replies: list[Generation | None]) -> dict[str, Any]:
                rankings = dict(state["scratch"].get("rankings", {}))
                traces = []
                for i, reply in enumerate(replies):
                    ranking = parse_ranking(reply.text, len(state["candidates"][i])) if reply else None
                    rankings.setdefault(i, []).append(ranking)
                    traces.append(state["traces"][i] + ([] if ranking else [f"judge {j + 1}: ranking unreadable"]))
                return {"scratch": {**state["scratch"], "rankings": rankings}, "traces": traces}

            return ask_node(judge, greedy, build, apply, f"rank-{j + 1}")

        def count(state: EnsembleState) -> dict[str, Any]:
            decisions = []
            for i, task in enumerate(state["batch"]):
                cands = state["candidates"][i]
                valid = [r for r in state["scratch"].get("rankings", {}).get(i, []) if r]
                if not valid:
                    decisions.append(None)  # no readable ranking: the aggregator decides
                    continue
                points = borda(valid, len(cands))
                scores: dict[str, float] = {}
                for c, p in zip(cands, points):
                    if c.answer is not None:
                        scores[c.answer] = scores.get(c.answer, 0.0) + p
                total = sum(scores.values())
                best = max(scores, key=lambda k: scores[k]) if scores else None
                decisions.append(Decision(answer=best, confidence=scores[best] / total if best and total else 0.0,
                                          tally=scores, aggregator="borda", params={"judges": len(judges)}))
            return {"decisions": decisions}

        steps: list[tuple[str, Any]] = [(f"rank-{j + 1}", judge_node(j, judge)) for j, judge in enumerate(judges)]
        steps += [("borda", inline_node(count, "borda")), ("aggregate", aggregate_node(aggregator, self.name, self.params()))]
        return self.sampled(backend, *steps)
