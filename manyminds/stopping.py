"""Early stopping for voting: sample in waves and stop once the vote is settled.

- ESC (Li et al., "Escape Sky-high Cost: Early-stopping Self-Consistency for
  Multi-step Reasoning", ICLR 2024): sample in windows (default 5) and stop
  when a window is unanimous.
- Adaptive-Consistency (Aggarwal et al., "Let's Sample Step by Step:
  Adaptive-Consistency for Efficient Reasoning and Coding with LLMs", 2023):
  after each wave, stop when the Beta posterior says the leading answer
  beats the runner-up with probability at least `threshold` (their default
  0.95; the cap of 40 samples is the strategy's n).

A rule sees the answers drawn so far (None for a sample without an answer)
and says why to stop, or None to go on. A wave maps to one backend request
with native n. `replay` runs a rule over recorded answers, for pools.

Waves sized for the backend (`next_wave`): the rule's answer and the number
of samples it uses are always those of drawing its own waves one after
another (`settle` replays that schedule over whatever was drawn). What
changes is how many samples each request asks for:

- never fewer than the rule needs before it could possibly stop
  (`fewest_to_stop`: Adaptive-Consistency at 0.95 cannot stop before 4
  unanimous samples), so a sequential backend makes fewer calls for exactly
  the same samples;
- on a backend whose `batch_width` says samples are cheap in one call
  (vLLM, a GPU server), up to that many more, drawn ahead: a round trip per
  wave is what costs there. Samples drawn ahead and not used are kept in
  the cache and reported as `Usage.speculative_samples`, never voted.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from math import comb, lgamma, log
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from manyminds.errors import ConfigError, one_line
from manyminds.extensions import StopRule as StopRule
from manyminds.plugins import checked_call, parse_spec, Registry


def _fewest(rule: StopRule, answers: Sequence[str | None]) -> int:
    """The fewest further samples after which `rule` could stop (its own wave if it cannot say)."""
    fewest = getattr(rule, "fewest_to_stop", None)
    return max(1, fewest(answers)) if fewest is not None else max(1, rule.wave(len(answers)))


def settle(rule: StopRule, answers: Sequence[str | None], cap: int) -> tuple[int, str | None]:
    """Replay the rule's own waves over `answers` (drawn in any number of requests).

    Returns (samples the sequential rule uses, why it stopped), or (its position so far,
    None) when more must be drawn before it can decide.
    """
    drawn = 0
    while drawn < cap:
        following = min(cap, drawn + max(1, rule.wave(drawn)))
        if following > len(answers):
            return drawn, None
        drawn = following
        reason = rule.check(answers[:drawn])
        if reason is not None:
            return drawn, reason
    return cap, f"cap of {cap} samples reached"


def next_wave(rule: StopRule, answers: Sequence[str | None], cap: int, batch_width: int = 1) -> int:
    """How many samples the next request asks for, after `answers` (see the module docstring)."""
    left = cap - len(answers)
    if left <= 0:
        return 0
    if not getattr(rule, "speculate", True):
        return min(left, max(1, rule.wave(len(answers))))
    # The sequential rule checks only at the ends of its own waves: draw at least to the first
    # of those at which it could stop, which it would reach whatever the samples say.
    checkpoint, _ = settle(rule, answers, cap)
    earliest = len(answers) + _fewest(rule, answers)
    while checkpoint < min(earliest, cap):
        checkpoint = min(cap, checkpoint + max(1, rule.wave(checkpoint)))
    return min(left, max(checkpoint - len(answers), 1, batch_width))


def beta_leader_probability(leader: int, runner_up: int) -> float:
    """P(p_leader > p_runner_up) under a uniform prior: 1 - I_0.5(leader + 1, runner_up + 1).

    For integer counts the regularised incomplete beta is a binomial sum, so
    this is exact and needs no special functions.
    """
    n = leader + runner_up + 1
    return sum(comb(n, j) for j in range(leader + 1)) / 2**n


REGISTRY: "Registry[type]" = Registry("stopping rule", "manyminds.stopping")
"""Stopping rules by name (the CLI's --stop NAME[:ARG]): built-ins below, plugins by entry point.

A rule class names its one command-line argument in `argument` ("window"),
so `NAME:VALUE` sets it."""


def stopping_rule(name: str, *aliases: str):
    """Register a stopping rule class under `name` (and `aliases`)."""

    def register(cls: type) -> type:
        for key in (name, *aliases):
            REGISTRY.register(key, cls)
        return cls

    return register


def _top_counts(answers: Sequence[str | None], count_unreadable: bool, k: int = 2) -> list[tuple[str | None, int]]:
    """The k largest answer counts (ties: first seen first); None is a class when `count_unreadable`."""
    return Counter(a for a in answers if count_unreadable or a is not None).most_common(k)


def _leader_runner_up(answers: Sequence[str | None], count_unreadable: bool) -> tuple[int, int]:
    top = _top_counts(answers, count_unreadable)
    return (top[0][1] if top else 0), (top[1][1] if len(top) > 1 else 0)


def dirichlet_leader_probability(counts: Sequence[int], grid: int = 2000) -> float:
    """P(the first class has the largest share) under a Dirichlet(counts + 1) posterior.

    Shares of a Dirichlet are normalised independent Gamma(count + 1) variables, so the
    probability is the integral over x of the first one's density at x times the others'
    CDFs at x: one dimension, integrated on a grid (exact to about 1e-4, deterministic),
    where the official code integrates the simplex by Monte Carlo.
    """
    return _dirichlet(tuple(counts), grid)


@functools.lru_cache(maxsize=65536)
def _dirichlet(counts: tuple[int, ...], grid: int) -> float:
    # the same counts recur across questions and replays: each is integrated once
    import numpy as np
    from scipy.special import gammainc, gammaln

    alphas = np.asarray(counts, dtype=float) + 1.0
    top = alphas.max()
    x = np.linspace(1e-9, top + 12.0 * np.sqrt(top) + 12.0, grid)
    density = np.exp((alphas[0] - 1.0) * np.log(x) - x - gammaln(alphas[0]))
    others = np.prod([gammainc(a, x) for a in alphas[1:]], axis=0) if len(alphas) > 1 else 1.0
    return float(np.clip(np.trapezoid(density * others, x), 0.0, 1.0))


@stopping_rule("esc")
class ESC(BaseModel):
    """Stop when the latest window of samples is unanimous (Li et al., 2024).

    As the official scripts (Yiwei98/ESC, `early_stop_*.py`): windows of
    `window` samples; the first unanimous one stops sampling and its answer
    is the decision (the `esc` aggregator; a vote over every drawn sample can
    differ); with no unanimous window by the cap, the vote over all samples
    decides. A window of unreadable answers is unanimous too: the official
    GSM8K and Last Letters scripts read a failure as one placeholder answer
    (-1000, ""), which stops like any other (`unreadable_stops=False` keeps
    sampling instead).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str] = "esc"
    argument: ClassVar[str] = "window"

    window: int = Field(default=5, ge=1)
    unreadable_stops: bool = Field(default=True, description="a window with no readable answer is unanimous")
    speculate: bool = Field(default=True, description="size waves for the backend (see next_wave)")

    def wave(self, drawn: int) -> int:
        return self.window

    def _unanimous(self, window: Sequence[str | None]) -> bool:
        return all(a == window[0] for a in window) and (window[0] is not None or self.unreadable_stops)

    def fewest_to_stop(self, answers: Sequence[str | None]) -> int:
        """Samples to the next window that could still be unanimous."""
        drawn = len(answers)
        boundary = (drawn // self.window + 1) * self.window
        started = answers[boundary - self.window:drawn]
        if started and not self._unanimous(started):
            boundary += self.window  # this window is already split
        return boundary - drawn

    def check(self, answers: Sequence[str | None]) -> str | None:
        if len(answers) < self.window or len(answers) % self.window:
            return None
        last = answers[-self.window:]
        if self._unanimous(last):
            what = "unanimous" if last[0] is not None else "unanimous (no readable answer)"
            return f"window of {self.window} {what} after {len(answers)} samples"
        return None

    def decider(self) -> dict[str, Any]:
        """The aggregator that decides as the official scripts do: the unanimous window's answer."""
        return {"name": "esc", "window": self.window, "unreadable_stops": self.unreadable_stops}


@stopping_rule("adaptive", "adaptive-consistency")
class AdaptiveConsistency(BaseModel):
    """Stop when the posterior says the leading answer is the most likely one (Aggarwal et al., 2023).

    `criterion="beta"` (the default, as the official code and README run
    it, at 0.95): P(leader beats runner-up) under Beta(leader + 1, runner-up
    + 1). `criterion="dirichlet"` (the paper's text): P(the leader has the
    largest share) under a Dirichlet posterior over the `top_k` most frequent
    answers; with fewer than three distinct answers it is the Beta rule, as
    in the official code. Unreadable answers are one more answer
    (`count_unreadable`, as the official code counts whatever the parser
    returned); the decision is the vote over the readable ones. The official
    code integrates the Dirichlet by Monte Carlo; here it is a deterministic
    one-dimensional integral, so a replay gives the same stops every time.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str] = "adaptive-consistency"
    argument: ClassVar[str] = "threshold"

    threshold: float = Field(default=0.95, gt=0.5, lt=1)
    criterion: Literal["dirichlet", "beta"] = Field(default="beta")
    top_k: int = Field(default=5, ge=2, description="answers the Dirichlet criterion looks at")
    count_unreadable: bool = Field(default=True, description="an unreadable answer is one more answer")
    wave_size: int = Field(default=1, ge=1, description="samples per wave (one backend request)")
    min_samples: int = Field(default=1, ge=1)
    speculate: bool = Field(default=True, description="size waves for the backend (see next_wave)")

    def wave(self, drawn: int) -> int:
        return self.wave_size

    def probability(self, answers: Sequence[str | None]) -> float:
        """The criterion's posterior probability that the current leader is the most likely answer."""
        top = _top_counts(answers, self.count_unreadable, self.top_k)
        if not top:
            return 0.0
        if self.criterion == "beta" or len(top) < 3:
            return beta_leader_probability(top[0][1], top[1][1] if len(top) > 1 else 0)
        return dirichlet_leader_probability([c for _, c in top])

    def fewest_to_stop(self, answers: Sequence[str | None], limit: int = 4096) -> int:
        """Further samples before the rule could stop: all of them going to the leader."""
        extra = max(0, self.min_samples - len(answers))
        top = _top_counts(answers, self.count_unreadable, self.top_k)
        leader = top[0][0] if top else "__leader__"
        while extra < limit and self.probability(list(answers) + [leader] * extra) < self.threshold:
            extra += 1
        return max(extra, self.min_samples - len(answers))

    def check(self, answers: Sequence[str | None]) -> str | None:
        if len(answers) < self.min_samples or not answers:
            return None
        p = self.probability(answers)
        if p >= self.threshold:
            return (f"P(leader is the most likely answer) = {p:.3f} >= {self.threshold} after {len(answers)} samples, "
                    f"{self.criterion} criterion")
        return None


class _Sequential(BaseModel):
    name: ClassVar[str] = "sequential"
    """What the sequential tests share: one sample per wave, leader against runner-up.

    The leader is whichever answer leads when the test is looked at, so the test is two-sided:
    each direction (A over B, B over A) is tested at alpha / 2, and stopping on a tie (the
    error) happens with probability at most alpha (Wald's bound for the SPRT, Ville's for the
    mixture). Testing the leader at alpha, as first built, stopped on 14.9% of exact ties at
    alpha = 0.1.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(default=0.1, gt=0, lt=0.5, description="the test's error rate")
    min_samples: int = Field(default=2, ge=1)
    count_unreadable: bool = Field(default=False, description="an unreadable answer is one more answer")
    wave_size: int = Field(default=1, ge=1)
    speculate: bool = Field(default=True, description="size waves for the backend (see next_wave)")

    def wave(self, drawn: int) -> int:
        return self.wave_size

    def log_ratio(self, leader: int, runner_up: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def fewest_to_stop(self, answers: Sequence[str | None], limit: int = 4096) -> int:
        a, b = _leader_runner_up(answers, self.count_unreadable)
        bound = self.bound()
        extra = max(0, self.min_samples - len(answers))
        while extra < limit and self.log_ratio(a + extra, b) < bound:
            extra += 1
        return extra

    def check(self, answers: Sequence[str | None]) -> str | None:
        if len(answers) < self.min_samples:
            return None
        a, b = _leader_runner_up(answers, self.count_unreadable)
        if a == 0:
            return None
        ratio = self.log_ratio(a, b)
        if ratio >= self.bound():
            return (f"{self.name}: log likelihood ratio {ratio:.2f} >= log(2/{self.alpha:g}), "
                    f"{a} against {b}, after {len(answers)} samples")
        return None

    def bound(self) -> float:
        """log(2 / alpha): each of the two directions at alpha / 2."""
        return log(2 / self.alpha)


@stopping_rule("sprt")
class SPRT(_Sequential):
    """Wald's sequential probability ratio test on the leader's share of the top two answers.

    Among samples giving the leader or the runner-up, H0: the leader's share
    is 1/2 (they are tied), H1: it is `p1`. Each sample for the leader adds
    log(2 p1) to the log likelihood ratio, each for the runner-up log(2 (1 - p1));
    sampling stops (H0 rejected) once it reaches log(2 / alpha), the leader
    being chosen after the fact (see `_Sequential`). A tie rarely stops it;
    the cap does.
    """

    name: ClassVar[str] = "sprt"
    argument: ClassVar[str] = "alpha"

    p1: float = Field(default=0.75, gt=0.5, lt=1, description="the leader's share under the alternative")

    def log_ratio(self, leader: int, runner_up: int) -> float:
        return leader * log(2 * self.p1) + runner_up * log(2 * (1 - self.p1))


@stopping_rule("msprt", "mixture-sprt")
class MixtureSPRT(_Sequential):
    """The mixture SPRT: the likelihood ratio averaged over a uniform prior on the leader's share.

    LR = 2^(a+b) B(a + 1, b + 1) for a samples on the leader and b on the
    runner-up; stopping at LR >= 2 / alpha (each direction at alpha / 2) bounds
    the error at alpha however long one samples (Ville's inequality), with no
    alternative to choose.
    """

    name: ClassVar[str] = "msprt"
    argument: ClassVar[str] = "alpha"

    def log_ratio(self, leader: int, runner_up: int) -> float:
        return (leader + runner_up) * log(2) + lgamma(leader + 1) + lgamma(runner_up + 1) - lgamma(leader + runner_up + 2)


def parse_rule(spec: str) -> StopRule:
    """A rule from the one spec grammar (`plugins.parse_spec`): `esc`, `esc:window=5`, `sprt:alpha=0.05,p1=0.7`,
    or `NAME:VALUE` for the rule's own `argument` (`esc:5`, `adaptive:0.95`); the CLI's --stop."""
    name = spec.partition(":")[0].strip()
    try:
        cls = REGISTRY.get(name)
    except ConfigError:
        raise ConfigError(f"unknown stopping rule {spec!r}: use one of {', '.join(REGISTRY.names())}, "
                          "optionally NAME:KEY=VALUE,... or NAME:VALUE (esc:5, adaptive:0.95)") from None
    _, params = parse_spec(spec, "stopping rule", getattr(cls, "argument", None))

    try:
        return checked_call(cls, params, f"stopping rule {name!r}")
    except ValidationError as error:
        raise ConfigError(f"bad stopping rule {spec!r}: {one_line(error)}") from error


def replay(rule: StopRule, answers: Sequence[str | None], cap: int) -> tuple[int, str]:
    """How many of the recorded `answers` the rule would have drawn (at most `cap`), and why it stopped."""
    used, reason = settle(rule, answers, min(cap, len(answers)))
    return used, reason or f"cap of {min(cap, len(answers))} samples reached"

