"""Self-consistency: sample several reasoning paths and take the majority answer.

Wang et al., "Self-Consistency Improves Chain of Thought Reasoning in
Language Models" (ICLR 2023). The graph is prepare -> sample -> extract ->
aggregate over a batch of tasks; a task's n samples are one backend request.
With a stopping rule (ESC, Adaptive-Consistency) it samples in waves.
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
