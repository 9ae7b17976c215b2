"""Self-consistency: sample several reasoning paths and take the majority answer.

Wang et al., "Self-Consistency Improves Chain of Thought Reasoning in
Language Models" (ICLR 2023). The graph is prepare -> sample -> extract ->
aggregate over a batch of tasks; a task's n samples are one backend request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from manyminds.backends.base import Backend
from manyminds.strategies.base import SampledStrategy
from manyminds.strategies.prompting import question_prompt
from manyminds.types import Message, Task

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph



class SelfConsistency(SampledStrategy):
    """Majority vote over n sampled answers (Wang et al., 2023)."""

    name: ClassVar[str] = "self-consistency"

    n: int = Field(default=8, ge=1, description="samples per question (the sample budget)")
    prompt: Literal["cot", "direct"] = Field(default="cot", description="chain of thought or answer only")

    def messages(self, task: Task) -> list[Message]:
        return self.chat(question_prompt(task, self.prompt))

    def build(self, backend: Backend) -> "CompiledStateGraph":
        # LangGraph is imported here, not at module level: it takes most of a second to
        # import, and configuring a strategy (or starting the model) should not wait for it.
        from manyminds.agents.graphs import chain, new_graph
        from manyminds.agents.nodes import Request, aggregate_node, extract_node, inline_node, prepare, sample_node
        from manyminds.aggregators import get_aggregator

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
