"""The Aggregator protocol and its registry.

An aggregator turns candidates into a Decision. Aggregators are plugins: the
`@aggregator("name")` decorator registers one in this process, and the
`manyminds.aggregators` entry-point group registers them for every process
(built-ins are declared there too). Every Decision names its aggregator and
parameters, so a stored run says exactly how its answer was chosen.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from manyminds.errors import ConfigError
from manyminds.plugins import discover
from manyminds.types import Candidate, Decision, Task


@runtime_checkable
class Aggregator(Protocol):
    name: str

    def params(self) -> dict[str, Any]:
        """The parameters that decided, recorded in every Decision."""
        ...

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision: ...


_registry: dict[str, Callable[..., Aggregator]] = {}


def aggregator(name: str) -> Callable[[type], type]:
    """Register an aggregator class (or factory) under `name` for this process."""

    def register(cls: type) -> type:
        cls.name = name
        _registry[name] = cls
        return cls

    return register


@functools.lru_cache(maxsize=1)
def _installed() -> dict[str, Callable[..., Aggregator]]:
    # Entry points do not change while a process runs; scanning them costs milliseconds.
    return discover("manyminds.aggregators")


def available() -> dict[str, Callable[..., Aggregator]]:
    """Every aggregator: installed plugins (built-ins included) and those registered here."""
    found = dict(_installed())
    found.update(_registry)
    return found


def get_aggregator(spec: "str | Aggregator", **params: Any) -> Aggregator:
    """An aggregator by name (with parameters) or the instance given."""
    if not isinstance(spec, str):
        return spec
    factories = available()
    if spec not in factories:
        raise ConfigError(
            f"unknown aggregator {spec!r}: available are {', '.join(sorted(factories))}"
        )
    return factories[spec](**params)
