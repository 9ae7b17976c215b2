"""Strategies: ways of combining many samples into one answer, each a LangGraph graph.

| name | class | paper |
|---|---|---|
| self-consistency | SelfConsistency | Wang et al. 2023 |
| div-se | DivSE | Naik et al. 2023 |
| idiv-se | IDivSE | Naik et al. 2023 |
| self-agreement | SelfAgreement | Lin et al. 2023 |
| moa | MixtureOfAgents | Wang et al. 2024 |
| self-moa | SelfMoA | Li et al. 2025 |
| self-moa-seq | SelfMoASeq | Li et al. 2025 |
| cascade | Cascade | escalation when samples disagree |
| usc | UniversalSelfConsistency | Chen et al. 2023 |
| ranked-vote | RankedVote | judge rankings, Borda count |
| best-of-n | BestOfN | verifier picks the best of n |
| verifier-resampling | VerifierResampling | sample until a verifier passes (Stroebl et al. 2024) |
| verified-vote | VerifiedVote | votes weighted by verifier scores |
"""

from manyminds.errors import ConfigError
from manyminds.types import MAX_SAMPLES
from manyminds.strategies.base import SampledStrategy, Strategy
from manyminds.strategies.cascade import Cascade
from manyminds.strategies.div_se import DivSE
from manyminds.strategies.idiv_se import IDivSE
from manyminds.strategies.moa import MixtureOfAgents
from manyminds.strategies.self_agreement import SelfAgreement
from manyminds.strategies.self_consistency import SelfConsistency
from manyminds.strategies.self_moa import SelfMoA, SelfMoASeq
from manyminds.strategies.ranked import RankedVote
from manyminds.strategies.usc import UniversalSelfConsistency
from manyminds.strategies.verified import BestOfN, VerifiedVote, VerifierResampling

__all__ = [
    "STRATEGIES",
    "BestOfN",
    "Cascade",
    "VerifiedVote",
    "VerifierResampling",
    "DivSE",
    "IDivSE",
    "MixtureOfAgents",
    "RankedVote",
    "UniversalSelfConsistency",
    "SampledStrategy",
    "SelfAgreement",
    "SelfConsistency",
    "SelfMoA",
    "SelfMoASeq",
    "Strategy",
    "by_name",
    "make",
]

# Strategies that need no verifier; the CLI's --strategy chooses among these.
STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (SelfConsistency, DivSE, IDivSE, SelfAgreement, MixtureOfAgents, SelfMoA, SelfMoASeq, Cascade,
                UniversalSelfConsistency, RankedVote)
}
VERIFYING: dict[str, type[Strategy]] = {cls.name: cls for cls in (BestOfN, VerifierResampling, VerifiedVote)}


def make(name: str, n: int, **settings: object) -> Strategy:
    """Strategy `name` at a budget of about `n` samples, with the settings it has fields for."""
    cls = by_name(name)
    if not 1 <= n <= MAX_SAMPLES:
        raise ConfigError(
            f"a budget of n = {n} samples is out of range: give 1 to {MAX_SAMPLES} per question "
            "(manyminds.types.MAX_SAMPLES)"
        )
    known = {k: v for k, v in settings.items() if k in cls.model_fields or cls is Cascade}
    return cls.for_budget(n, **known)  # type: ignore[attr-defined]


def by_name(name: str) -> type[Strategy]:
    """The strategy class registered under `name` (the CLI's --strategy)."""
    known = {**STRATEGIES, **VERIFYING}
    if name not in known:
        raise ConfigError(f"unknown strategy {name!r}: available are {', '.join(known)}")
    return known[name]
