"""Strategies: ways of combining many samples into one answer, each a LangGraph graph."""

from manyminds.strategies.base import Strategy
from manyminds.strategies.self_consistency import SelfConsistency

__all__ = ["SelfConsistency", "Strategy", "by_name"]

STRATEGIES: dict[str, type[Strategy]] = {SelfConsistency.name: SelfConsistency}


def by_name(name: str) -> type[Strategy]:
    from manyminds.errors import ConfigError

    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}: available are {', '.join(STRATEGIES)}")
    return STRATEGIES[name]
