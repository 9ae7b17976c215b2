"""Self-MoA and Self-MoA-Seq: many samples of one model, synthesised by that model.

Li et al., "Rethinking Mixture-of-Agents: Is Mixing Different Large Language
Models Beneficial?" (2025). Self-MoA: the proposers are n samples of one
model, then one synthesis with the aggregate-and-synthesize prompt of MoA.
Self-MoA-Seq: the samples are synthesised with a sliding window, so the
context never holds them all: round 1 synthesises the first `window`
samples; every later round synthesises the running answer with the next
`window` samples; N samples take ceil(N / window) rounds and none is skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from manyminds.agents.state import EnsembleState
from manyminds.backends.base import Backend
from manyminds.strategies.base import OnePromptStrategy
from manyminds.strategies.moa import SynthesisConfig
from manyminds.types import MAX_SAMPLES, Generation, Message, Task

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph


class SelfMoA(OnePromptStrategy, SynthesisConfig):
    """n samples of the backend's model, then one synthesis by the same model (Li et al., 2025)."""

    name: ClassVar[str] = "self-moa"

    n: int = Field(default=6, ge=1, le=MAX_SAMPLES, description="samples synthesised (the cap with a stop rule)")

    def build(self, backend: Backend) -> "CompiledStateGraph":
        from manyminds.agents.decide import synthesize_node
        from manyminds.agents.nodes import aggregate_node
        from manyminds.aggregators import get_aggregator

        aggregator = get_aggregator(self.aggregator)

        def synthesis(i: int, task: Task, state: EnsembleState) -> list[Message]:
            return self.synthesis(task, [c.text for c in state["candidates"][i]])

        return self.sampled(
            backend,
            ("synthesize", synthesize_node(backend, self.synthesis_params(), synthesis, aggregator, "synthesis",
                                           {"n": self.n})),
            ("aggregate", aggregate_node(aggregator, self.name, self.params())),
        )


class SelfMoASeq(SelfMoA):
    """Self-MoA with a sliding window: each round synthesises the running answer and the next samples."""

    name: ClassVar[str] = "self-moa-seq"

    n: int = Field(default=8, ge=1, le=MAX_SAMPLES, description="samples synthesised")
    window: int = Field(default=3, ge=1, description="new samples per synthesis round")

    def build(self, backend: Backend) -> "CompiledStateGraph":
        from langgraph.graph import END, START

        from manyminds.agents.decide import from_synthesis
        from manyminds.agents.graphs import new_graph
        from manyminds.agents.nodes import (
            Request, aggregate_node, ask_node, extract_node, inline_node, prepare, sample_node,
        )
        from manyminds.aggregators import get_aggregator

        aggregator = get_aggregator(self.aggregator)

        def window_of(state: EnsembleState, i: int) -> list[str]:
            start = state["round"] * self.window
            texts = [c.text for c in state["candidates"][i][start:start + self.window]]
            running = state["scratch"].get("running", {}).get(i)
            return ([running.text] if running is not None else []) + texts

        def build_round(i: int, task: Task, state: EnsembleState) -> list[Message]:
            return self.synthesis(task, window_of(state, i))

        def apply_round(state: EnsembleState, replies: list[Generation | None]) -> dict[str, Any]:
            start = state["round"] * self.window
            stop = min(start + self.window, self.n)
            running = dict(state["scratch"].get("running", {}))
            for i, reply in enumerate(replies):
                if reply is not None:
                    running[i] = reply
            traces = [t[:-1] + [f"round {state['round'] + 1}: samples {start}-{stop - 1}"] for t in state["traces"]]
            return {"scratch": {**state["scratch"], "running": running}, "round": state["round"] + 1, "traces": traces}

        def finish(state: EnsembleState) -> dict[str, Any]:
            decisions, candidates, traces = [], [], []
            for i, task in enumerate(state["batch"]):
                reply = state["scratch"].get("running", {}).get(i)
                decision, cands, note = from_synthesis(
                    aggregator, task, state["candidates"][i], reply, "sequential synthesis",
                    {"n": self.n, "window": self.window},
                )
                decisions.append(decision)
                candidates.append(cands)
                traces.append(state["traces"][i] + ([note] if note else []))
            return {"decisions": decisions, "candidates": candidates, "traces": traces}

        def more(state: EnsembleState) -> str:
            return "synthesize" if state["round"] * self.window < self.n else "finish"

        graph = new_graph()
        graph.add_node("prepare", inline_node(prepare, "prepare"))
        graph.add_node("sample", sample_node(backend, lambda i, task, state: [Request("sample", self.messages(task), self.n)],
                                             self.sampling_params()))
        graph.add_node("extract", extract_node())
        graph.add_node("synthesize", ask_node(backend, self.synthesis_params(), build_round, apply_round, "synthesize"))
        graph.add_node("finish", inline_node(finish, "finish"))
        graph.add_node("aggregate", aggregate_node(aggregator, self.name, self.params()))
        graph.add_edge(START, "prepare")
        graph.add_edge("prepare", "sample")
        graph.add_edge("sample", "extract")
        graph.add_edge("extract", "synthesize")
        graph.add_conditional_edges("synthesize", more, ["synthesize", "finish"])
        graph.add_edge("finish", "aggregate")
        graph.add_edge("aggregate", END)
        return graph.compile(name=self.name)
