"""Aggregators: from candidates to a decision. A new one is a module here with `@aggregator`."""

from manyminds.aggregators.base import (
    REGISTRY, Aggregator, AggregatorSpec, aggregator, available, get_aggregator, resolve,
)
from manyminds.aggregators.majority import Majority, decide, tally
from manyminds.aggregators.model_agreement import ModelAgreement, ModelConsistency
from manyminds.aggregators.rpc import RPC
from manyminds.aggregators.weighted import WeightedMajority

__all__ = [
    "REGISTRY", "RPC", "Aggregator", "AggregatorSpec", "Majority", "ModelAgreement", "ModelConsistency", "WeightedMajority",
    "aggregator", "available", "decide", "get_aggregator", "resolve", "tally",
]
