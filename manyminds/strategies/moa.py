"""Mixture-of-Agents: layers of proposers refining each other, then one synthesis.

Wang et al., "Mixture-of-Agents Enhances Large Language Model Capabilities"
(2024). Layer 1's proposers answer the question; each later layer's
proposers see the previous layer's responses through the aggregate-and-
synthesize prompt; a final aggregator model (the strategy's backend)
synthesises the answer from the last layer. Proposers may be any mix of
backends and models; without them, every proposer is a distinct sample of
the main backend. Proposers of a layer fan out with LangGraph `Send`, one
slot per proposer, each over the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from manyminds.agents.state import EnsembleState
from manyminds.backends.base import Backend
from manyminds.strategies.base import PromptedStrategy
from manyminds.strategies.prompting import question_prompt
from manyminds.text import clip
from manyminds.types import Message, Task

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

# -- prompt (after Wang et al. 2024, the aggregate-and-synthesize prompt: earlier
#    responses go in the system message, the user's question stays the user turn) ----
SYNTHESIZE_SYSTEM = (
    "You are given several responses to the user's question, written by other assistants. "
    "Some of them may be wrong or biased. Read them critically, then write one answer of your own "
    "that keeps what is right and corrects what is wrong; do not simply copy one of them.\n\n"
    "Responses:\n\n{responses}"
)


def synthesis_messages(task: Task, responses: Sequence[str], prompt: str, max_chars: int) -> list[Message]:
    """The aggregate-and-synthesize prompt over `responses`, then the question itself."""
    blocks = []
    for k, text in enumerate(responses, 1):
        text = text.strip() or "(empty)"
        blocks.append(f"{k}. {clip(text, max_chars)}")
    return [
        Message(role="system", content=SYNTHESIZE_SYSTEM.format(responses="\n\n".join(blocks))),
        Message(role="user", content=question_prompt(task, prompt)),
    ]


class SynthesisConfig(PromptedStrategy):
    """Settings every synthesising strategy shares (MoA, Self-MoA, Self-MoA-Seq)."""

    synthesis_temperature: float = Field(default=0.0, ge=0, description="temperature of synthesis calls")
    max_chars_per_response: int = Field(default=1500, ge=50, description="each response is cut to this")

    def synthesis_params(self):
        return self.sampling_params(temperature=self.synthesis_temperature)

    def synthesis(self, task: Task, responses: Sequence[str]) -> list[Message]:
        return synthesis_messages(task, responses, self.prompt, self.max_chars_per_response)


class MixtureOfAgents(SynthesisConfig):
    """Layers of proposers, each seeing the previous layer, and a final synthesis (Wang et al., 2024)."""

    name: ClassVar[str] = "moa"

    layers: int = Field(default=2, ge=1, description="proposer layers")
    proposers: int = Field(default=3, ge=1, description="proposers per layer (without proposer_backends)")
    proposer_backends: tuple[Any, ...] = Field(
        default=(), exclude=True, description="one backend per proposer; empty: samples of the main backend"
    )

    @classmethod
    def for_budget(cls, n: int, **settings: Any) -> "MixtureOfAgents":
        layers = 2 if n >= 4 else 1
        return cls(layers=layers, proposers=max(1, n // layers), **settings)

    def params(self) -> dict[str, Any]:
        record = super().params()
        record["proposer_backends"] = [b.cache_identity() for b in self.proposer_backends]
        return record

    def build(self, backend: Backend) -> "CompiledStateGraph":
        from langgraph.graph import END, START

        from manyminds.agents.decide import synthesize_node
        from manyminds.agents.graphs import new_graph
        from manyminds.agents.nodes import (
            Request, aggregate_node, extract_node, fan_out, inline_node, prepare, slot_node, slot_outputs,
        )
        from manyminds.aggregators import get_aggregator

        proposers = list(self.proposer_backends) or [backend] * self.proposers

        def plan(slot: int, i: int, task: Task, state: EnsembleState) -> list[Request]:
            layer = state["round"]
            messages = (
                self.chat(question_prompt(task, self.prompt))
                if layer == 0
                else self.synthesis(task, state["scratch"]["previous"][i])
            )
            return [Request(f"layer-{layer + 1}/proposer-{slot + 1}", messages, 1, first_index=slot)]

        def layer_done(state: EnsembleState) -> dict[str, Any]:
            outputs = slot_outputs(state)
            layer = state["round"]
            traces = [t + [f"layer {layer + 1}: {len(o)} proposals"] for t, o in zip(state["traces"], outputs)]
            if layer + 1 < self.layers:  # an inner layer: its responses feed the next, and count as cost
                previous = [[s.generation.text for s in o] for o in outputs]
                return {
                    "scratch": {**state["scratch"], "previous": previous},
                    "aux": [a + [s.generation for s in o] for a, o in zip(state["aux"], outputs)],
                    "round": layer + 1,
                    "traces": traces,
                }
            return {"samples": [s + o for s, o in zip(state["samples"], outputs)], "round": layer + 1, "traces": traces}

        def next_layer(state: EnsembleState) -> Any:
            return fan_out("propose", lambda s: len(proposers))(state) if state["round"] < self.layers else "extract"

        def synthesis(i: int, task: Task, state: EnsembleState) -> list[Message]:
            return self.synthesis(task, [c.text for c in state["candidates"][i]])

        aggregator = get_aggregator(self.aggregator)
        graph = new_graph()
        graph.add_node("prepare", inline_node(prepare, "prepare"))
        graph.add_node("propose", slot_node(lambda slot: proposers[slot], plan, self.sampling_params(), "propose"))
        graph.add_node("layer", inline_node(layer_done, "layer"))
        graph.add_node("extract", extract_node())
        graph.add_node("synthesize", synthesize_node(backend, self.synthesis_params(), synthesis, aggregator,
                                                     "synthesis", {"layers": self.layers, "proposers": len(proposers)}))
        graph.add_node("aggregate", aggregate_node(aggregator, self.name, self.params()))
        graph.add_edge(START, "prepare")
        graph.add_conditional_edges("prepare", fan_out("propose", lambda s: len(proposers)), ["propose"])
        graph.add_edge("propose", "layer")
        graph.add_conditional_edges("layer", next_layer, ["propose", "extract"])
        graph.add_edge("extract", "synthesize")
        graph.add_edge("synthesize", "aggregate")
        graph.add_edge("aggregate", END)
        return graph.compile(name=self.name)
