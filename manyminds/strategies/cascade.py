"""Cascade: a cheap strategy first, a larger one only for the questions it is unsure of.

The first strategy runs on the whole batch; questions whose confidence is
under `threshold` (the samples disagree) are routed to the second strategy.
Each result records the path it took, and its usage is the sum of both
stages. With a cache and the same sampling settings, escalating from
self-consistency with 3 samples to 12 pays only for the 9 new ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, SerializeAsAny

from manyminds.agents.state import EnsembleState
from manyminds.backends.base import Backend
from manyminds.strategies.base import Strategy
from manyminds.strategies.self_consistency import SelfConsistency
from manyminds.types import Result

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph


def _escalated(first: Result, then: Result, threshold: float, record: dict[str, Any]) -> Result:
    """The second stage's decision, with both stages' candidates, cost and path."""
    candidates = [
        c.model_copy(update={"index": k, "source": f"{stage}/{c.source}"})
        for k, (stage, c) in enumerate(
            [("first", c) for c in first.candidates] + [("then", c) for c in then.candidates]
        )
    ]
    return then.model_copy(
        update={
            "candidates": candidates,
            "usage": first.usage + then.usage,
            "strategy": Cascade.name,
            "strategy_params": record,
            "trace": [f"first: {first.strategy}", *first.trace,
                      f"escalated: confidence {first.confidence:.2f} < {threshold:.2f}",
                      f"then: {then.strategy}", *then.trace],
        }
    )


def _kept(first: Result, threshold: float, record: dict[str, Any]) -> Result:
    return first.model_copy(
        update={
            "strategy": Cascade.name,
            "strategy_params": record,
            "trace": [f"first: {first.strategy}", *first.trace,
                      f"kept: confidence {first.confidence:.2f} >= {threshold:.2f}"],
        }
    )


class Cascade(Strategy):
    """Try `first`; escalate to `then` where its confidence is below `threshold`."""

    name: ClassVar[str] = "cascade"

    first: SerializeAsAny[Strategy] = Field(default_factory=lambda: SelfConsistency(n=3))
    then: SerializeAsAny[Strategy] = Field(default_factory=lambda: SelfConsistency(n=12))
    threshold: float = Field(default=0.75, ge=0, le=1, description="escalate when confidence is below this")

    @classmethod
    def for_budget(cls, n: int, **settings: Any) -> "Cascade":
        """Self-consistency with about n/4 samples, escalating to n."""
        return cls(first=SelfConsistency(n=max(1, n // 4), **settings), then=SelfConsistency(n=n, **settings))

    def params(self) -> dict[str, Any]:
        return {
            "first": {"strategy": self.first.name, **self.first.params()},
            "then": {"strategy": self.then.name, **self.then.params()},
            "threshold": self.threshold,
        }

    def build(self, backend: Backend) -> "CompiledStateGraph":
        from langgraph.graph import END, START

        from manyminds.agents.graphs import new_graph
        from manyminds.agents.nodes import async_node, configured, inline_node, prepare

        first_graph = self.first.compiled(backend)
        then_graph = self.then.compiled(backend)
        record = self.params()

        def stage_config(config: Any, progress: bool) -> dict[str, Any]:
            options = {"manyminds_concurrency": configured(config, "concurrency", 16)}
            if progress:
                options["manyminds_progress"] = configured(config, "progress", None)
            return {"configurable": options}

        async def first(state: EnsembleState, config: Any) -> dict[str, Any]:
            out = await first_graph.ainvoke({"tasks": state["batch"]}, config=stage_config(config, True))
            return {"scratch": {**state["scratch"], "first": out["results"]}}

        def unsure(state: EnsembleState) -> list[int]:
            return [i for i, r in enumerate(state["scratch"]["first"]) if r.confidence < self.threshold]

        async def escalate(state: EnsembleState, config: Any) -> dict[str, Any]:
            chosen = unsure(state)
            out = await then_graph.ainvoke({"tasks": [state["batch"][i] for i in chosen]},
                                           config=stage_config(config, False))
            return {"scratch": {**state["scratch"], "then": dict(zip(chosen, out["results"]))}}

        def finish(state: EnsembleState) -> dict[str, Any]:
            then = state["scratch"].get("then", {})
            results = [
                _escalated(r, then[i], self.threshold, record) if i in then else _kept(r, self.threshold, record)
                for i, r in enumerate(state["scratch"]["first"])
            ]
            update: dict[str, Any] = {"results": results}
            if state.get("single"):
                update.update(result=results[0], answer=results[0].answer, confidence=results[0].confidence)
            return update

        graph = new_graph()
        graph.add_node("prepare", inline_node(prepare, "prepare"))
        graph.add_node("first", async_node(first, "first"))
        graph.add_node("escalate", async_node(escalate, "escalate"))
        graph.add_node("finish", inline_node(finish, "finish"))
        graph.add_edge(START, "prepare")
        graph.add_edge("prepare", "first")
        graph.add_conditional_edges("first", lambda s: "escalate" if unsure(s) else "finish", ["escalate", "finish"])
        graph.add_edge("escalate", "finish")
        graph.add_edge("finish", END)
        return graph.compile(name=self.name)
