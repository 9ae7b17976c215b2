"""LangGraph state and the pipeline builder from which every strategy assembles its graph.

`agents.builder` imports LangGraph; this package's top level does not, so
configuring a strategy never waits for it.
"""

from manyminds.agents.state import EnsembleInput, EnsembleOutput, EnsembleState, Sample, SlotSamples

__all__ = ["EnsembleInput", "EnsembleOutput", "EnsembleState", "Sample", "SlotSamples"]
