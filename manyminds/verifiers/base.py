"""The Verifier protocol: an async check of one candidate against its task.

Verifiers are imperfect (a judge says yes to wrong answers, unit tests miss
cases), so a verdict carries a graded score as well as pass/fail, and the
strategies that use verifiers keep every verdict for inspection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from manyminds.errors import ConfigError
from manyminds.extensions import ReadsOthers, Verifier as Verifier
from manyminds.plugins import checked_call, parse_spec, Registry
from manyminds.types import Candidate, Task, Verdict

if TYPE_CHECKING:
    from manyminds.backends.base import Backend

__all__ = ["REGISTRY", "Verdict", "Verifier", "VerifierOptions", "check", "make_verifier", "reads_others", "verifier"]


def reads_others(verifier: Verifier) -> bool:
    """Whether `verifier` reads the question's other samples (a P(True) judge with `show_others`,
    or a combination with such a member): those take `verify(..., others=)`."""
    return bool(getattr(verifier, "sees_other_samples", False))


async def check(verifier: Verifier, task: Task, candidate: Candidate, others: Sequence[Candidate] = ()) -> Verdict:
    """`verifier`'s verdict on `candidate`, shown the question's other samples if it reads them."""
    if reads_others(verifier):
        return await cast(ReadsOthers, verifier).verify(task, candidate, others=others)
    return await verifier.verify(task, candidate)


@dataclass(frozen=True)
class VerifierOptions:
    """What a verifier factory may use: the run's backend (judges) and the code-execution opt-ins."""

    backend: "Backend | None" = None
    allow_code_execution: bool = False
    allow_unisolated_execution: bool = False
    visible_tests_only: bool = False
    """Unit tests: verify against the task's visible tests only (what a model may be shown), keeping
    the hidden ones for scoring; a verifier that runs the scorer's tests is an oracle."""


REGISTRY: "Registry[Callable[[VerifierOptions], Verifier]]" = Registry(
    "verifier", "manyminds.verifiers", "manyminds.verifiers")
"""Verifier factories by name (the CLI's --verifier): this package's modules and plugins."""


def verifier(name: str) -> Callable[[Callable[[VerifierOptions], Verifier]], Callable[[VerifierOptions], Verifier]]:
    """Register a factory `options -> Verifier` under `name`."""

    def register(factory: Callable[[VerifierOptions], Verifier]) -> Callable[[VerifierOptions], Verifier]:
        return REGISTRY.register(name, factory)

    return register


def is_oracle(verifier: Any) -> bool:
    """True for a verifier that reads the gold answer or the scorer's own tests (its `oracle`
    attribute): what it passes is right by construction, so a method it decides is an upper bound,
    not an accuracy, and benchmarks label it so."""
    return bool(getattr(verifier, "oracle", False))


def make_verifier(spec: str, options: VerifierOptions | None = None) -> Verifier:
    """A verifier from the one spec grammar, `NAME[:KEY=VALUE,...]` (`p-true:samples=3,threshold=0.6`):
    the factory is given `options` and the parameters, each checked against its signature."""
    name, params = parse_spec(spec, "verifier")
    factory = REGISTRY.get(name)
    if "options" in params:
        raise ConfigError(f"verifier {spec!r}: 'options' is not a parameter one sets in a spec")
    return checked_call(factory, params, f"verifier {name!r}", given={"options": options or VerifierOptions()})
