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
| exemplar-resampling | ExemplarResampling | each sample its own draw of few-shot exemplars |
| choice-shuffle | ChoiceShuffle | each sample sees the options permuted (Medprompt) |
| self-refine-vote | SelfRefineVote | one-file example: each draft refined once, then a vote |
| temperature-mix | TemperatureMix | one-file example: the budget spread over temperatures |
| template-variation | TemplateVariation | each sample asked in one of several wordings (self-ensembled ICL) |
| run-off-vote | RunOffVote | plurality, then a judge between the top two (both orders) |
| deepconf-online | DeepConfOnline | Fu et al. 2025: paths stopped while decoding once their confidence drops |
"""

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from manyminds.errors import ConfigError, one_line
from manyminds.types import MAX_SAMPLES
from manyminds.strategies.base import REGISTRY, SampledStrategy, Strategy
from manyminds.strategies.cascade import Cascade
from manyminds.strategies.deepconf import DeepConfOnline
from manyminds.strategies.div_se import DivSE
from manyminds.strategies.idiv_se import IDivSE
from manyminds.strategies.moa import MixtureOfAgents
from manyminds.strategies.self_agreement import SelfAgreement
from manyminds.strategies.self_consistency import SelfConsistency
from manyminds.strategies.self_moa import SelfMoA, SelfMoASeq
from manyminds.strategies.ranked import RankedVote
from manyminds.strategies.refine_vote import SelfRefineVote
from manyminds.strategies.resampled import ChoiceShuffle, ExemplarResampling, TemplateVariation
from manyminds.strategies.run_off import RunOffVote
from manyminds.strategies.temperature_mix import TemperatureMix
from manyminds.strategies.usc import UniversalSelfConsistency
from manyminds.strategies.verified import BestOfN, VerifiedVote, VerifierResampling
from manyminds.aggregators.base import parse_spec
from manyminds.verifiers.base import make_verifier, REGISTRY as VERIFIERS, VerifierOptions

if TYPE_CHECKING:
    from manyminds.verifiers.base import Verifier, VerifierOptions

__all__ = [
    "REGISTRY",
    "STRATEGIES",
    "VERIFYING",
    "BestOfN",
    "Cascade",
    "ChoiceShuffle",
    "DeepConfOnline",
    "RunOffVote",
    "TemplateVariation",
    "ExemplarResampling",
    "SelfRefineVote",
    "TemperatureMix",
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
    "default_budget",
    "make",
    "names",
]


def names() -> list[str]:
    """Every registered strategy: this package's modules, plugins, and classes defined in this process."""
    return REGISTRY.names()


def by_name(name: str) -> type[Strategy]:
    """The strategy class registered under `name` (the CLI's --strategy)."""
    return REGISTRY.get(name)


def default_budget(cls: type[Strategy]) -> int:
    """The samples a strategy spends when no budget is given (its own `n` or `max_samples` default)."""
    for field_name in ("n", "max_samples"):
        field = cls.model_fields.get(field_name)
        if field is not None and isinstance(field.default, int):
            return field.default
    return 8


def make(name: str, n: int | None = None, *, verifier: "str | Verifier | None" = None,
         verifier_options: "VerifierOptions | None" = None, **settings: Any) -> Strategy:
    """Strategy `name` at a budget of about `n` samples (default: the strategy's own), with `settings`.

    The one way every door builds a strategy from what a user typed: the Python API, `manyminds
    run` and `bench`, and the server. Only what the user set is passed, so a method's defaults are
    the method's wherever it is called from. Given as text, `aggregator` is a spec
    (`weighted:by=logprob`), `stop` a rule (`esc:window=5`) and `verifier` a registered name built
    with `verifier_options` (the backend judges use, whether code may run). A setting the strategy
    does not have, a verifier it does not take or lacks, is an error naming it, never dropped: a user
    who asks for `prompt="direct"` on a strategy without that setting must hear so.
    """
    cls = by_name(name)
    n = default_budget(cls) if n is None else n
    if not 1 <= n <= MAX_SAMPLES:
        raise ConfigError(
            f"a budget of n = {n} samples is out of range: give 1 to {MAX_SAMPLES} per question "
            "(manyminds.types.MAX_SAMPLES)"
        )
    accepted = cls.settings()
    unknown = sorted(k for k in settings if k not in accepted)
    if unknown:
        raise ConfigError(
            f"strategy {name} has no setting {', '.join(map(repr, unknown))}: "
            f"its settings are {', '.join(sorted(accepted))}"
        )
    if isinstance(settings.get("aggregator"), str):
        settings["aggregator"] = parse_spec(settings["aggregator"])
    if cls.needs_verifier:
        if verifier is None:
            raise ConfigError(f"strategy {name} needs a verifier: one of {', '.join(VERIFIERS.names())}")
        if isinstance(verifier, str):
            verifier = make_verifier(verifier, verifier_options or VerifierOptions())
        settings["verifier"] = verifier
    elif verifier is not None:
        raise ConfigError(f"strategy {name} takes no verifier (those that do: "
                          f"{', '.join(k for k, v in REGISTRY.all().items() if v.needs_verifier)})")
    try:
        return cls.for_budget(n, **settings)
    except ValidationError as error:
        raise ConfigError(f"strategy {name}: {one_line(error, name)}") from error


def __getattr__(attr: str) -> Any:
    # STRATEGIES (no verifier needed) and VERIFYING, computed on use so plugins appear in them
    if attr == "STRATEGIES":
        return {k: v for k, v in REGISTRY.all().items() if not v.needs_verifier}
    if attr == "VERIFYING":
        return {k: v for k, v in REGISTRY.all().items() if v.needs_verifier}
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
