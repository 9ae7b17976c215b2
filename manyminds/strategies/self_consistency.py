"""Self-consistency: sample several reasoning paths and take the majority answer.

Wang et al., "Self-Consistency Improves Chain of Thought Reasoning in
Language Models" (ICLR 2023). The graph is prepare -> sample -> extract ->
aggregate over a batch of tasks; a task's n samples are one backend request.
With a stopping rule (ESC, Adaptive-Consistency, SPRT) it samples in waves.

Follows the paper's method; differs in its defaults: the paper prompts with
few-shot chains of thought (8 exemplars on GSM8K) and samples 40 paths at
T = 0.5-0.7; the default here is zero-shot, n = 8, T = 0.7. For the paper's
setup: `SelfConsistency(n=40, exemplars="gsm8k-cot-8")` (the exemplars come
from GSM8K's training split, not the paper's hand-written ones).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from manyminds.backends.base import Backend
from manyminds.strategies.base import OnePromptStrategy, Voting

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph


class SelfConsistency(OnePromptStrategy, Voting):
    """Majority vote (or any aggregator) over n sampled answers (Wang et al., 2023)."""

    name: ClassVar[str] = "self-consistency"

    def build(self, backend: Backend) -> "CompiledStateGraph":
        # LangGraph is imported inside pipeline(), not at module level: it takes most of a second
        # to import, and configuring a strategy (or starting the model) should not wait for it.
        return self.draw(self.pipeline(backend)).aggregate(self.aggregation())
