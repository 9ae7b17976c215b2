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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from math import comb
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from manyminds.errors import ConfigError


@runtime_checkable
class StopRule(Protocol):
    name: str

    def wave(self, drawn: int) -> int:
        """How many samples to draw next, given `drawn` so far."""
        ...

    def check(self, answers: Sequence[str | None]) -> str | None:
        """Why to stop now, or None to sample another wave."""
        ...


def beta_leader_probability(leader: int, runner_up: int) -> float:
    """P(p_leader > p_runner_up) under a uniform prior: 1 - I_0.5(leader + 1, runner_up + 1).

    For integer counts the regularised incomplete beta is a binomial sum, so
    this is exact and needs no special functions.
    """
    n = leader + runner_up + 1
    return sum(comb(n, j) for j in range(leader + 1)) / 2**n


class ESC(BaseModel):
    """Stop when the latest window of samples is unanimous (Li et al., 2024)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str] = "esc"

    window: int = Field(default=5, ge=1)

    def wave(self, drawn: int) -> int:
        return self.window

    def check(self, answers: Sequence[str | None]) -> str | None:
        if len(answers) < self.window or len(answers) % self.window:
            return None
        last = answers[-self.window:]
        if last[0] is not None and all(a == last[0] for a in last):
            return f"window of {self.window} unanimous after {len(answers)} samples"
        return None


class AdaptiveConsistency(BaseModel):
    """Stop when P(leader beats runner-up) >= threshold under a Beta posterior (Aggarwal et al., 2023)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str] = "adaptive-consistency"

    threshold: float = Field(default=0.95, gt=0.5, lt=1)
    wave_size: int = Field(default=1, ge=1, description="samples per wave (one backend request)")
    min_samples: int = Field(default=1, ge=1)

    def wave(self, drawn: int) -> int:
        return self.wave_size

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
    """`esc`, `esc:5`, `adaptive`, `adaptive:0.95` (the CLI's --stop)."""
    name, _, arg = spec.partition(":")
    try:
        if name == "esc":
            return ESC(window=int(arg)) if arg else ESC()
        if name in ("adaptive", "adaptive-consistency"):
            return AdaptiveConsistency(threshold=float(arg)) if arg else AdaptiveConsistency()
    except ValueError as error:
        raise ConfigError(f"bad stopping rule {spec!r}: {error}") from error
    raise ConfigError(f"unknown stopping rule {spec!r}: use esc, esc:WINDOW, adaptive or adaptive:THRESHOLD")


def replay(rule: StopRule, answers: Sequence[str | None], cap: int) -> tuple[int, str]:
    """How many of the recorded `answers` the rule would have drawn (at most `cap`), and why it stopped."""
    drawn = 0
    limit = min(cap, len(answers))
    while drawn < limit:
        drawn = min(limit, drawn + rule.wave(drawn))
        reason = rule.check(answers[:drawn])
        if reason is not None:
            return drawn, reason
    return drawn, f"cap of {limit} samples reached"

