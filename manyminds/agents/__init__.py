"""LangGraph state and shared nodes from which strategies assemble their graphs."""

from manyminds.agents.state import EnsembleInput, EnsembleOutput, EnsembleState

__all__ = ["EnsembleInput", "EnsembleOutput", "EnsembleState"]
