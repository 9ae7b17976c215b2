"""Self-consistency: sample several reasoning paths and take the majority answer.

Wang et al., "Self-Consistency Improves Chain of Thought Reasoning in
Language Models" (ICLR 2023). The graph is prepare -> sample -> extract ->
aggregate over a batch of tasks; a task's n samples are one backend request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from manyminds.agents.state import EnsembleState
from manyminds.backends.base import Backend
from manyminds.stopping import ESC, AdaptiveConsistency
from manyminds.strategies.base import SampledStrategy
from manyminds.strategies.prompting import question_prompt
from manyminds.types import Message, Task

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph



class SelfConsistency(SampledStrategy):
    """Majority vote over n sampled answers (Wang et al., 2023)."""

    name: ClassVar[str] = "self-consistency"

    n: int = Field(default=8, ge=1, description="samples per question (the budget; the cap with a stop rule)")
    prompt: Literal["cot", "direct"] = Field(default="cot", description="chain of thought or answer only")
    stop: ESC | AdaptiveConsistency | None = Field(default=None, description="sample in waves and stop early")

    def params(self) -> dict[str, Any]:
        record = super().params()
        if self.stop is not None:
            record["stop"] = {"rule": self.stop.name, **self.stop.model_dump()}
        return record

    def messages(self, task: Task) -> list[Message]:
        return self.chat(question_prompt(task, self.prompt))

    def build(self, backend: Backend) -> "CompiledStateGraph":
        # LangGraph is imported here, not at module level: it takes most of a second to
        # import, and configuring a strategy (or starting the model) should not wait for it.
        from manyminds.agents.graphs import chain, new_graph
        from manyminds.agents.nodes import Request, aggregate_node, extract_node, inline_node, prepare, sample_node
        from manyminds.aggregators import get_aggregator

        if self.stop is not None:
            return self._build_waves(backend)

        def plan(i: int, task: Task, state: object) -> list[Request]:
            return [Request("sample", self.messages(task), self.n)]

        graph = chain(
            new_graph(),
            ("prepare", inline_node(prepare, "prepare")),
            ("sample", sample_node(backend, plan, self.sampling_params())),
            ("extract", extract_node()),
            ("aggregate", aggregate_node(get_aggregator(self.aggregator), self.name, self.params())),
        )
        return graph.compile(name=self.name)

    def _build_waves(self, backend: Backend) -> "CompiledStateGraph":
        """sample a wave -> extract -> check, looping for the questions not yet settled."""
        from langgraph.graph import END, START

        from manyminds.agents.graphs import new_graph
        from manyminds.agents.nodes import Request, aggregate_node, extract_node, inline_node, prepare, sample_node
        from manyminds.aggregators import get_aggregator

        rule = self.stop
        assert rule is not None

        def reasons(state: EnsembleState) -> dict[int, str]:
            return state["scratch"].get("stop_reasons", {})

        def plan(i: int, task: Task, state: EnsembleState) -> list[Request]:
            if i in reasons(state):
                return []
            drawn = len(state["samples"][i])
            return [Request("sample", self.messages(task), min(rule.wave(drawn), self.n - drawn), first_index=drawn)]

        def check(state: EnsembleState) -> dict[str, Any]:
            found = dict(reasons(state))
            traces = []
            for i, (cands, trace) in enumerate(zip(state["candidates"], state["traces"])):
                if i not in found:
                    why = rule.check([c.answer for c in cands])
                    if why is None and len(cands) >= self.n:
                        why = f"cap of {self.n} samples reached"
                    if why is not None:
                        found[i] = why
                        trace = trace + [f"stopped: {why}"]
                traces.append(trace)
            return {"scratch": {**state["scratch"], "stop_reasons": found}, "traces": traces}

        def more(state: EnsembleState) -> str:
            return "aggregate" if len(reasons(state)) == len(state["batch"]) else "sample"

        graph = new_graph()
        graph.add_node("prepare", inline_node(prepare, "prepare"))
        graph.add_node("sample", sample_node(backend, plan, self.sampling_params()))
        graph.add_node("extract", extract_node())
        graph.add_node("check", inline_node(check, "check"))
        graph.add_node("aggregate", aggregate_node(get_aggregator(self.aggregator), self.name, self.params()))
        graph.add_edge(START, "prepare")
        graph.add_edge("prepare", "sample")
        graph.add_edge("sample", "extract")
        graph.add_edge("extract", "check")
        graph.add_conditional_edges("check", more, ["sample", "aggregate"])
        graph.add_edge("aggregate", END)
        return graph.compile(name=self.name)
