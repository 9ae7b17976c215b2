"""Verifiers made of verifiers: all, any, weighted, panels of judges (PoLL), reward-model ensembles.

A panel follows Verga et al., "Replacing Judges with Juries" (2024): several
(smaller, different) judges, combined by vote or by mean score. A reward-model
ensemble follows Coste et al., "Reward Model Ensembles Help Mitigate
Overoptimization" (2024): members' scores combined by their mean, median, worst
case (min), or mean less `penalty` times their variance (uncertainty-weighted),
so a candidate the members disagree on is not trusted. Every member's verdict
is kept in the combined verdict's details.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence
from typing import Any, Literal

from manyminds.errors import ConfigError
from manyminds.types import Candidate, Task, Verdict
from manyminds.verifiers.base import check, is_oracle, reads_others, Verifier

Rule = Literal["all", "any", "vote", "mean", "weighted", "median", "min", "uncertainty"]


class Combined:
    """Verdicts of `verifiers` on one candidate, combined by `rule`.

    all: passes if all pass (score = min); any: if any passes (score = max);
    vote: if more than half pass (score = share passing); mean and weighted:
    the (weighted) mean score; median, min: those of the scores; uncertainty:
    the mean less `penalty` times the scores' variance (at least 0); each of
    the last five passes at `threshold`.
    """

    def __init__(
        self,
        verifiers: Sequence[Verifier],
        rule: Rule = "vote",
        *,
        weights: Sequence[float] | None = None,
        threshold: float = 0.5,
        penalty: float = 1.0,
        name: str | None = None,
    ) -> None:
        if not verifiers:
            raise ConfigError("a combined verifier needs at least one verifier")
        if weights is not None and len(weights) != len(verifiers):
            raise ConfigError(f"{len(weights)} weights for {len(verifiers)} verifiers")
        if rule == "weighted" and (weights is None or sum(weights) <= 0):
            raise ConfigError("rule 'weighted' needs positive weights")
        if penalty < 0:
            raise ConfigError(f"penalty must be >= 0, got {penalty}")
        self.verifiers = list(verifiers)
        self.rule = rule
        self.weights = list(weights) if weights is not None else [1.0] * len(verifiers)
        self.threshold = threshold
        self.penalty = penalty
        self.name = name or f"{rule}({', '.join(v.name for v in verifiers)})"

    def params(self) -> dict[str, Any]:
        record: dict[str, Any] = {"rule": self.rule, "weights": self.weights, "threshold": self.threshold,
                                  "members": [{"name": v.name, **v.params()} for v in self.verifiers]}
        if self.rule == "uncertainty":
            record["penalty"] = self.penalty
        return record

    @property
    def oracle(self) -> bool:
        """An oracle when any member is."""
        return any(is_oracle(v) for v in self.verifiers)

    @property
    def sees_other_samples(self) -> bool:
        """True when a member (a P(True) judge with `show_others`) reads the question's other samples."""
        return any(reads_others(v) for v in self.verifiers)

    async def verify(self, task: Task, candidate: Candidate, others: Sequence[Candidate] = ()) -> Verdict:
        """Every member's verdict; the other samples go to the members that read them."""
        verdicts = await asyncio.gather(*(check(v, task, candidate, others) for v in self.verifiers))
        scores = [v.score for v in verdicts]
        if self.rule == "all":
            score, passed = min(scores), all(v.passed for v in verdicts)
        elif self.rule == "any":
            score, passed = max(scores), any(v.passed for v in verdicts)
        elif self.rule == "vote":
            score = sum(v.passed for v in verdicts) / len(verdicts)
            passed = score > 0.5
        elif self.rule == "median":
            score = statistics.median(scores)
            passed = score >= self.threshold
        elif self.rule == "min":
            score = min(scores)
            passed = score >= self.threshold
        elif self.rule == "uncertainty":
            score = max(0.0, statistics.fmean(scores) - self.penalty * statistics.pvariance(scores))
            passed = score >= self.threshold
        else:
            score = sum(w * s for w, s in zip(self.weights, scores)) / sum(self.weights)
            passed = score >= self.threshold
        return Verdict(score=score, passed=passed, verifier=self.name,
                       details={"members": [v.model_dump() for v in verdicts]})


def all_of(*verifiers: Verifier) -> Combined:
    return Combined(verifiers, "all")


def any_of(*verifiers: Verifier) -> Combined:
    return Combined(verifiers, "any")


def weighted(verifiers: Sequence[Verifier], weights: Sequence[float], threshold: float = 0.5) -> Combined:
    return Combined(verifiers, "weighted", weights=weights, threshold=threshold)


def panel(judges: Sequence[Verifier], combine: Literal["vote", "mean"] = "vote", threshold: float = 0.5) -> Combined:
    """A panel of judges (PoLL): by majority of their pass/fail, or by their mean score."""
    return Combined(judges, combine, threshold=threshold, name=f"panel-{combine}")


def reward_ensemble(models: Sequence[Verifier], combine: Literal["mean", "median", "min", "uncertainty"] = "mean",
                    threshold: float = 0.5, penalty: float = 1.0) -> Combined:
    """Reward models (or any scorers) as one verifier: their mean, median, worst-case or
    uncertainty-penalised score (mean - penalty x variance), passing at `threshold` (Coste et al. 2024)."""
    return Combined(models, combine, threshold=threshold, penalty=penalty, name=f"reward-{combine}")
