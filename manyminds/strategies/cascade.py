"""Cascade: a cheap strategy first, a larger one only for the questions it is unsure of.

The first strategy runs on the whole batch; questions whose confidence is
under `threshold` (the samples disagree) are routed to the second strategy.
Each result records the path it took, and its usage is the sum of both
stages. With a cache and the same sampling settings, escalating from
self-consistency with 3 samples to 12 pays only for the 9 new ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, SerializeAsAny

from manyminds.agents.state import EnsembleState
from manyminds.backends.base import Backend
from manyminds.strategies.base import Strategy
from manyminds.strategies.self_consistency import SelfConsistency
from manyminds.types import Result

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph


class CascadeState(EnsembleState, total=False):
    first: list[Result]
    """The first strategy's result per task."""
    then: dict[int, Result]
    """The second strategy's result for each escalated task, by task index."""


def _escalated(first: Result, then: Result, why: str, record: dict[str, Any]) -> Result:
    """The second stage's decision, with both stages' candidates, cost and path."""
    candidates = [
        c.model_copy(update={"index": k, "source": c.source.within(stage)})
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
                      f"escalated: {why}",
                      f"then: {then.strategy}", *then.trace],
        }
    )


def _kept(first: Result, why: str, record: dict[str, Any]) -> Result:
    return first.model_copy(
        update={
            "strategy": Cascade.name,
            "strategy_params": record,
            "trace": [f"first: {first.strategy}", *first.trace,
                      f"kept: {why}"],
        }
    )


class Cascade(Strategy):
    """Try `first`; escalate to `then` where its confidence is below `threshold`."""

    name: ClassVar[str] = "cascade"

    first: SerializeAsAny[Strategy] = Field(default_factory=lambda: SelfConsistency(n=3))
    then: SerializeAsAny[Strategy] = Field(default_factory=lambda: SelfConsistency(n=12))
    threshold: float = Field(default=0.75, ge=0, le=1, description="escalate when confidence is below this")
    escalate_on: Literal["confidence", "disagreement"] = Field(
        default="confidence", description="escalate on low confidence, or on any disagreement within `window`")
    window: int = Field(default=0, ge=0, description="with escalate_on='disagreement': the first `window` "
                                                    "answers of the first stage must agree (0: all of them)")

    def reason(self, first: Result) -> tuple[bool, str]:
        """Whether to escalate `first`'s question, and why (the trace says it)."""
        if self.escalate_on == "confidence":
            low = first.confidence < self.threshold
            return low, f"confidence {first.confidence:.2f} {'<' if low else '>='} {self.threshold:.2f}"
        answers = [c.answer for c in sorted(first.candidates, key=lambda c: c.index) if c.source.votes]
        seen = answers[:self.window] if self.window else answers
        split = not seen or None in seen or len(set(seen)) > 1
        shown = f"the first {len(seen)} answers"
        return split, f"{shown} {'disagree' if split else 'agree'}"

    @classmethod
    def for_budget(cls, n: int, **settings: Any) -> "Cascade":
        """Self-consistency with about n/4 samples, escalating to n."""
        own = {k: settings.pop(k) for k in ("threshold", "escalate_on", "window", "budget") if k in settings}
        return cls(first=SelfConsistency(n=max(1, n // 4), **settings), then=SelfConsistency(n=n, **settings), **own)

    @classmethod
    def settings(cls) -> set[str]:
        """A budget's cascade is self-consistency at both stages: its settings go to both."""
        return (SelfConsistency.settings() - {"n"}) | {"threshold", "escalate_on", "window", "budget"}

    def params(self) -> dict[str, Any]:
        return {
            "first": {"strategy": self.first.name, **self.first.params()},
            "then": {"strategy": self.then.name, **self.then.params()},
            "threshold": self.threshold,
            **({"escalate_on": self.escalate_on, "window": self.window} if self.escalate_on != "confidence" else {}),
            **({"budget": self.budget.model_dump()} if self.budget is not None else {}),
        }

    def build(self, backend: Backend) -> "CompiledStateGraph":
        from dataclasses import replace

        from manyminds.agents.builder import outputs
        from manyminds.agents.nodes import run_batch, run_context

        first_graph = self.first.compiled(backend)
        then_graph = self.then.compiled(backend)
        record = self.params()

        def bounded() -> Any:
            """The run's context with the cascade's per-question budget, applied to both stages together."""
            context = run_context()
            if self.budget is None:
                return context
            return replace(context, question_budget=self.budget.tighter(context.question_budget))

        async def first(state: CascadeState) -> dict[str, Any]:
            return {"first": await run_batch(first_graph, state["batch"], bounded())}

        async def escalate(state: CascadeState) -> dict[str, Any]:
            chosen = [i for i, r in enumerate(state["first"]) if self.reason(r)[0]]
            if not chosen:
                return {"then": {}}
            # a question is counted once, by the first stage; the second stage starts from what the first spent
            spent = tuple((state["first"][i].usage.completion_tokens + state["first"][i].usage.speculative_tokens,
                           state["first"][i].usage.samples + state["first"][i].usage.speculative_samples)
                          for i in chosen)
            quiet = replace(bounded(), progress=None, spent=spent)
            then = await run_batch(then_graph, [state["batch"][i] for i in chosen], quiet)
            return {"then": dict(zip(chosen, then))}

        def finish(state: CascadeState) -> dict[str, Any]:
            then = state.get("then", {})
            results = [
                _escalated(r, then[i], self.reason(r)[1], record) if i in then else _kept(r, self.reason(r)[1], record)
                for i, r in enumerate(state["first"])
            ]
            return outputs(state, results)

        p = self.pipeline(backend, state=CascadeState)
        p.step(first, "first").step(escalate, "escalate").update(finish, "finish")
        return p.compile()
