"""LangGraph state and shared nodes from which strategies assemble their graphs."""

from manyminds.agents.state import EnsembleInput, EnsembleOutput, EnsembleState, Sample, SlotSamples

__all__ = ["EnsembleInput", "EnsembleOutput", "EnsembleState", "Sample", "SlotSamples"]
