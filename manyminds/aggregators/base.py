"""The Aggregator protocol, its registry, and the spec a strategy records.

An aggregator turns a task's candidates into a Decision. Every decision in
manyminds is one: majority and weighted votes, RPC, and the deciders that
read a strategy's evidence (a model's selection, a synthesis, judges'
rankings, verifier scores). So `reaggregate` can replay any of them offline.

A new aggregator is one file in this package with one decorator::

    @aggregator("min-entropy")
    class MinEntropy: ...

Every module here is imported on first lookup, so it appears in
`run --aggregator` and `reaggregate -a` with nothing else to edit. Other
distributions register theirs under the `manyminds.aggregators` entry-point
group. Candidates given to an aggregator are ballots (`source.kind ==
"sample"`) and evidence (other kinds); a vote counts ballots only
(`Candidate.votes`, `majority.tally`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from manyminds.extensions import Aggregator as Aggregator  # the protocol's home: extensions.py
from manyminds.plugins import checked_call, parse_spec as parse, records_arguments, Registry
from manyminds.types import ballots, Candidate, Decision, Task


F = TypeVar("F", bound=Callable[..., Aggregator])

REGISTRY: Registry[Callable[..., Aggregator]] = Registry("aggregator", "manyminds.aggregators", "manyminds.aggregators")


def aggregator(name: str) -> Callable[[F], F]:
    """Register an aggregator class (or factory) under `name`."""
    def register(entry: F) -> F:
        if isinstance(entry, type):
            records_arguments(entry)  # its params() are the arguments it was built with, unless it says otherwise
        REGISTRY.decorator(name)(entry)
        return entry

    return register


def available() -> dict[str, Callable[..., Aggregator]]:
    """Every aggregator: this package's, installed plugins' and those registered in this process."""
    return REGISTRY.all()


def get_aggregator(spec: "str | AggregatorSpec | Aggregator", **params: Any) -> Aggregator:
    """An aggregator by name (with parameters), from a spec, or the instance given."""
    if isinstance(spec, AggregatorSpec):
        return spec.build()
    if not isinstance(spec, str):
        return spec

    return checked_call(REGISTRY.get(spec), params, f"aggregator {spec!r}")


class AggregatorSpec(BaseModel):
    """A registered aggregator by name, with its parameters: what a strategy holds and records.

    Given as a name (``"majority"``), a mapping (``{"name": "weighted",
    "by": "logprob"}``) or a spec. Recorded as the bare name when it has no
    parameters. The name is checked when the spec is made, so a typo fails
    at configuration, not mid-run.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_short_forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "params" not in value and set(value) - {"name"}:
            return {"name": value.get("name"), "params": {k: v for k, v in value.items() if k != "name"}}
        return value

    @model_validator(mode="after")
    def _known(self) -> "AggregatorSpec":
        REGISTRY.get(self.name)
        return self

    @model_serializer(mode="plain")
    def _recorded(self) -> Any:
        return self.name if not self.params else {"name": self.name, **self.params}

    def build(self) -> Aggregator:
        return get_aggregator(self.name, **self.params)

    @property
    def factory(self) -> Callable[..., Aggregator]:
        """The registered class or factory behind the name (whose distribution a run records)."""
        return REGISTRY.get(self.name)

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted((k, repr(v)) for k, v in self.params.items()))))


def parse_spec(text: str) -> AggregatorSpec:
    """The command line's form, the one spec grammar (`plugins.parse_spec`): `NAME` or
    `NAME:KEY=VALUE,KEY=VALUE`: `weighted:by=logprob`, `selection:fallback=rpc`."""
    name, params = parse(text, "aggregator")
    return AggregatorSpec(name=name, params=params)


def resolve(spec: "str | dict[str, Any] | AggregatorSpec | Aggregator") -> Aggregator:
    """An Aggregator from any of the forms a strategy or a user gives (`parse_spec`'s text included)."""
    if isinstance(spec, str):
        return parse_spec(spec).build()
    if isinstance(spec, dict):
        return AggregatorSpec.model_validate(spec).build()
    return get_aggregator(spec)


class Decider:
    """What the aggregators that read a strategy's evidence share: a `fallback` for when it cannot be read.

    The fallback votes over the ballots; its tally is the decision's tally
    either way, so a model's choice is always shown against the vote.
    """

    name = "decider"

    def __init__(self, fallback: "str | dict[str, Any] | AggregatorSpec" = "majority") -> None:
        self.fallback = AggregatorSpec.model_validate(fallback)
        self._fallback = self.fallback.build()

    def params(self) -> dict[str, Any]:
        return {"fallback": self.fallback.model_dump()}

    def vote(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        """The fallback's decision over the ballots."""
        return self._fallback(task, ballots(candidates))

    def fell_back(self, decision: Decision, why: str, **params: Any) -> Decision:
        """The fallback's decision, recorded as this decider's, saying why it fell back."""
        return decision.model_copy(update={"aggregator": self.name, "params": {
            **self.params(), **params, "fallback": decision.aggregator, "note": f"{why}; {decision.aggregator} decided"}})
