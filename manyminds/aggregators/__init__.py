"""Aggregators: from candidates to a decision. Plugins register under `manyminds.aggregators`."""

from manyminds.aggregators.base import Aggregator, aggregator, available, get_aggregator
from manyminds.aggregators.majority import Majority, decide, tally
from manyminds.aggregators.model_consistency import ModelConsistency
from manyminds.aggregators.rpc import RPC
from manyminds.aggregators.weighted import WeightedMajority

__all__ = ["RPC", "Aggregator", "Majority", "ModelConsistency", "WeightedMajority", "aggregator", "available", "decide", "get_aggregator", "tally"]
