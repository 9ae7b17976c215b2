"""Aggregators: from candidates to a decision. Plugins register under `manyminds.aggregators`."""

from manyminds.aggregators.base import Aggregator, aggregator, available, get_aggregator
from manyminds.aggregators.majority import Majority, decide, tally
from manyminds.aggregators.weighted import WeightedMajority

__all__ = ["Aggregator", "Majority", "WeightedMajority", "aggregator", "available", "decide", "get_aggregator", "tally"]
