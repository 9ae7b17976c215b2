"""Helpers to assemble strategy graphs over the shared ensemble state."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from manyminds.agents.state import EnsembleInput, EnsembleOutput, EnsembleState


def new_graph() -> StateGraph:
    """A StateGraph over the ensemble state, with the input and output a caller sees."""
    return StateGraph(EnsembleState, input_schema=EnsembleInput, output_schema=EnsembleOutput)


def chain(graph: StateGraph, *steps: tuple[str, Any]) -> StateGraph:
    """Add `steps` as nodes run one after another, from START to END."""
    previous = START
    for name, node in steps:
        graph.add_node(name, node)
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph
