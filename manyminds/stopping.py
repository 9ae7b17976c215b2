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

from collections import Counter
from collections.abc import Sequence
from math import comb
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from manyminds.errors import ConfigError
from manyminds.plugins import Registry


@runtime_checkable
class StopRule(Protocol):
    name: str

    def wave(self, drawn: int) -> int:
        """How many samples to draw next, given `drawn` so far."""
        ...

    def check(self, answers: Sequence[str | None]) -> str | None:
        """Why to stop now, or None to sample another wave."""
        ...


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


def stopping_rule(name: str, *aliases: str):  # type: ignore[no-untyped-def]
    """Register a stopping rule class under `name` (and `aliases`)."""

    def register(cls: type) -> type:
        for key in (name, *aliases):
            REGISTRY.register(key, cls)
        return cls

    return register


@stopping_rule("esc")
class ESC(BaseModel):
    """Stop when the latest window of samples is unanimous (Li et al., 2024)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str] = "esc"
    argument: ClassVar[str] = "window"

    window: int = Field(default=5, ge=1)
    speculate: bool = Field(default=True, description="size waves for the backend (see next_wave)")

    def wave(self, drawn: int) -> int:
        return self.window

    def fewest_to_stop(self, answers: Sequence[str | None]) -> int:
        """Samples to the next window that could still be unanimous."""
        drawn = len(answers)
        boundary = (drawn // self.window + 1) * self.window
        started = answers[boundary - self.window:drawn]
        if started and (started[0] is None or any(a != started[0] for a in started)):
            boundary += self.window  # this window is already split
        return boundary - drawn

    def check(self, answers: Sequence[str | None]) -> str | None:
        if len(answers) < self.window or len(answers) % self.window:
            return None
        last = answers[-self.window:]
        if last[0] is not None and all(a == last[0] for a in last):
            return f"window of {self.window} unanimous after {len(answers)} samples"
        return None


@stopping_rule("adaptive", "adaptive-consistency")
class AdaptiveConsistency(BaseModel):
    """Stop when P(leader beats runner-up) >= threshold under a Beta posterior (Aggarwal et al., 2023)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str] = "adaptive-consistency"
    argument: ClassVar[str] = "threshold"

    threshold: float = Field(default=0.95, gt=0.5, lt=1)
    wave_size: int = Field(default=1, ge=1, description="samples per wave (one backend request)")
    min_samples: int = Field(default=1, ge=1)
    speculate: bool = Field(default=True, description="size waves for the backend (see next_wave)")

    def wave(self, drawn: int) -> int:
        return self.wave_size

    def fewest_to_stop(self, answers: Sequence[str | None], limit: int = 4096) -> int:
        """Further samples before the rule could stop: all of them going to the leader."""
        counts = Counter(a for a in answers if a is not None).most_common(2)
        leader = counts[0][1] if counts else 0
        runner_up = counts[1][1] if len(counts) > 1 else 0
        extra = max(0, self.min_samples - len(answers))
        while extra < limit and beta_leader_probability(leader + extra, runner_up) < self.threshold:
            extra += 1
        return max(extra, self.min_samples - len(answers))

    def check(self, answers: Sequence[str | None]) -> str | None:
        if len(answers) < self.min_samples:
            return None
        counts = Counter(a for a in answers if a is not None).most_common(2)
        if not counts:
            return None
        leader = counts[0][1]
        runner_up = counts[1][1] if len(counts) > 1 else 0
        p = beta_leader_probability(leader, runner_up)
        if p >= self.threshold:
            return f"P(leader beats runner-up) = {p:.3f} >= {self.threshold} after {len(answers)} samples"
        return None


def parse_rule(spec: str) -> StopRule:
    """`esc`, `esc:5`, `adaptive`, `adaptive:0.95`, or any registered rule (the CLI's --stop)."""
    name, _, arg = spec.partition(":")
    try:
        cls = REGISTRY.get(name)
    except ConfigError:
        raise ConfigError(f"unknown stopping rule {spec!r}: use one of {', '.join(REGISTRY.names())}, "
                          "optionally NAME:VALUE (esc:5, adaptive:0.95)") from None
    try:
        return cls(**({cls.argument: arg} if arg else {}))  # type: ignore[attr-defined,no-any-return]
    except ValidationError as error:
        raise ConfigError(f"bad stopping rule {spec!r}: {error.errors()[0]['msg']}") from error


def replay(rule: StopRule, answers: Sequence[str | None], cap: int) -> tuple[int, str]:
    """How many of the recorded `answers` the rule would have drawn (at most `cap`), and why it stopped."""
    used, reason = settle(rule, answers, min(cap, len(answers)))
    return used, reason or f"cap of {min(cap, len(answers))} samples reached"

