"""Self-consistency: sample several reasoning paths and take the majority answer.

Wang et al., "Self-Consistency Improves Chain of Thought Reasoning in
Language Models" (ICLR 2023). The graph is prepare -> sample -> extract ->
aggregate over a batch of tasks; a task's n samples are one backend request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from manyminds.backends.base import Backend
from manyminds.strategies.base import Strategy
from manyminds.strategies.prompting import answer_form, direct_instruction, render_question
from manyminds.types import Message, SamplingParams, Task

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

# The prompts of this strategy. "cot" follows the paper's chain-of-thought
# prompting (Wang et al. 2023, after Wei et al. 2022), asking for the answer
# in the "The answer is X." form the paper's answer parser reads; "direct"
# asks for the answer alone, which suits very small models (SmolLM2-135M
# answers single-digit sums better without chain of thought).
COT_PROMPT = "{question}\n\nThink step by step, then finish with a line of the form 'The answer is X.', where X is {form}."
DIRECT_PROMPT = "{question}\n\n{instruction}"


class SelfConsistency(Strategy):
    """Majority vote over n sampled answers (Wang et al., 2023)."""

    name: ClassVar[str] = "self-consistency"

    n: int = Field(default=8, ge=1, description="samples per question (the sample budget)")
    temperature: float = Field(default=0.7, ge=0, description="sampling temperature")
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_tokens: int = Field(default=512, ge=1, description="completion tokens per sample")
    seed: int | None = Field(default=None, description="base seed; each sample derives its own")
    prompt: Literal["cot", "direct"] = Field(default="cot", description="chain of thought or answer only")
    system: str | None = Field(default=None, description="an optional system message")
    aggregator: str = Field(default="majority", description="a registered aggregator name")

    def sampling_params(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed
        )

    def messages(self, task: Task) -> list[Message]:
        if self.prompt == "cot":
            text = COT_PROMPT.format(question=render_question(task), form=answer_form(task))
        else:
            text = DIRECT_PROMPT.format(question=render_question(task), instruction=direct_instruction(task))
        system = [Message(role="system", content=self.system)] if self.system else []
        return [*system, Message(role="user", content=text)]

    def build(self, backend: Backend) -> "CompiledStateGraph":
        # LangGraph is imported here, not at module level: it takes most of a second to
        # import, and configuring a strategy (or starting the model) should not wait for it.
        from langgraph.graph import END, START, StateGraph

        from manyminds.agents.nodes import aggregate_node, extract_node, inline_node, prepare, sample_node
        from manyminds.agents.state import EnsembleInput, EnsembleOutput, EnsembleState
        from manyminds.aggregators import get_aggregator

        graph = StateGraph(EnsembleState, input_schema=EnsembleInput, output_schema=EnsembleOutput)
        aggregate = aggregate_node(get_aggregator(self.aggregator), self.name, self.params())
        graph.add_node("prepare", inline_node(prepare, "prepare"))
        graph.add_node("sample", sample_node(backend, self.messages, self.sampling_params(), self.n))
        graph.add_node("extract", inline_node(extract_node, "extract"))
        graph.add_node("aggregate", inline_node(aggregate, "aggregate"))
        graph.add_edge(START, "prepare")
        graph.add_edge("prepare", "sample")
        graph.add_edge("sample", "extract")
        graph.add_edge("extract", "aggregate")
        graph.add_edge("aggregate", END)
        return graph.compile(name=self.name)
