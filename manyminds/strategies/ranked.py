"""Ranked voting: judges rank the sampled responses; a Borda count decides.

Users of other frameworks ask for rank-based aggregation (e.g. Borda count
over judge rankings, as in LLM-Blender's rankers and judge panels). Each
judge ranks all responses best first; a response ranked r-th among m gets
m - r points from that judge; an answer's score is the points of its
responses. A judge reply that cannot be read counts for nothing, and the
trace says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from manyminds.aggregators.borda import borda, parse_ranking
from manyminds.backends.base import Backend
from manyminds.strategies.base import ModelDecides, OnePromptStrategy
from manyminds.types import MAX_SAMPLES, Candidate, Message, Task
from manyminds.strategies.prompting import numbered

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

__all__ = ["RankedVote", "borda", "parse_ranking"]

# -- prompt: a listwise ranking request answered with response numbers ------------------
RANK_PROMPT = (
    "Question: {question}\n\nHere are {n} responses:\n\n{responses}\n\n"
    "Rank the responses from best to worst by correctness. Reply with one line of the form "
    "'Ranking: 3 > 1 > 2', using every response number exactly once."
)


class RankedVote(OnePromptStrategy, ModelDecides):
    """n samples, ranked by each judge; Borda count over the rankings decides (`borda`)."""

    name: ClassVar[str] = "ranked-vote"
    decider: ClassVar[str] = "borda"
    templates: ClassVar[dict[str, str]] = {"rank": RANK_PROMPT}

    n: int = Field(default=6, ge=2, le=MAX_SAMPLES)
    judges: tuple[Any, ...] = Field(default=(), exclude=True, description="judge backends; empty: the main backend")
    max_chars_per_response: int | None = Field(default=None, ge=50, description="cut each ranked response (default: never)")

    def params(self) -> dict[str, Any]:
        record = super().params()
        record["judges"] = [j.cache_identity() for j in self.judges]
        return record

    def ranking_messages(self, task: Task, candidates: Sequence[Candidate]) -> list[Message]:
        return self.chat(self.template("rank").format(question=task.render(), n=len(candidates),
                                            responses=numbered(candidates, self.max_chars_per_response)))

    def build(self, backend: Backend) -> "CompiledStateGraph":
        greedy = self.sampling_params(temperature=0.0, max_tokens=64)
        p = self.draw(self.pipeline(backend))
        for j, judge in enumerate(self.judges or (backend,)):
            p.ask("ranking", lambda v: self.ranking_messages(v.task, v.ballots) if v.ballots else None, greedy,
                  backend=judge, prompt=f"judge-{j + 1}", name=f"rank-{j + 1}")
        return p.aggregate(self.aggregation())
