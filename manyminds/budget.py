"""Budgets: what answering may cost, in completion tokens and in samples, per question and per run.

A request is started only if it cannot exceed what is left: `n` samples of at most `max_tokens`
each are admitted as far as `n x max_tokens` fits (and `n` fits the samples left); the rest of the
request waits for the admitted samples' real cost, and is drawn in further waves while it fits.
So a budget never cuts a sample short (the samples stay the ones a run without a budget would
draw, cache rows included), never changes a sampling parameter, and leaves unspent at most one
sample's `max_tokens`. Every sample used counts, whether fresh or served from the cache, so a
rerun makes the same decisions as the first run.

- `Budget` per question is a strategy's setting (`make(..., budget={"tokens": 4000})`, the CLI's
  `--token-budget`, the server's `max_completion_tokens`), recorded with the run. Samples and
  model calls of every step count (votes, proposals, syntheses, selections, a cascade's stages).
  Verifiers that call a model are not counted: they judge, they do not answer.
- `Ledger` is one budget for a whole run (`Session(budget=...)`), shared by its questions:
  requests reserve their worst case before they start and give back what they did not use. Which
  questions get the last of a run's budget depends on the order they run in (deterministic with
  `concurrency=1`).

What a budget withheld is `Usage.withheld_samples`, and the question's `stop_reason` says which
budget ended it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from manyminds.types import Generation


class Budget(BaseModel):
    """Limits on completion tokens and on samples (model calls' outputs); None: no limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens: int | None = Field(default=None, ge=1, le=10**15, description="completion tokens")
    samples: int | None = Field(default=None, ge=1, le=10**12, description="samples and model calls")

    def tighter(self, other: "Budget | None") -> "Budget":
        """The stricter of the two limits, each."""
        if other is None:
            return self
        return Budget(tokens=_least(self.tokens, other.tokens), samples=_least(self.samples, other.samples))

    def fits(self, tokens: int, samples: int, wanted: int, max_tokens: int) -> int:
        """How many of `wanted` samples of at most `max_tokens` tokens fit beside `tokens` and
        `samples` already spent (or reserved)."""
        k = wanted
        if self.tokens is not None:
            k = min(k, max(0, (self.tokens - tokens) // max(1, max_tokens)))
        if self.samples is not None:
            k = min(k, max(0, self.samples - samples))
        return k

    def describe(self) -> str:
        parts = ([f"{self.tokens:,} tokens"] if self.tokens is not None else []) + (
            [f"{self.samples:,} samples"] if self.samples is not None else [])
        return " and ".join(parts) or "no limit"


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def cost(generations: Iterable[Generation]) -> tuple[int, int]:
    """Completion tokens and samples of these generations."""
    tokens = samples = 0
    for g in generations:
        tokens += g.completion_tokens
        samples += 1
    return tokens, samples


@dataclass
class Ledger:
    """A run's budget across its questions: what is spent, and what running requests reserved."""

    budget: Budget
    tokens: int = 0
    samples: int = 0
    reserved_tokens: int = 0
    reserved_samples: int = 0

    def reserve(self, wanted: int, max_tokens: int) -> int:
        """Reserve the worst case of as many of `wanted` samples as fit; returns how many."""
        k = self.budget.fits(self.tokens + self.reserved_tokens, self.samples + self.reserved_samples,
                             wanted, max_tokens)
        self.reserved_tokens += k * max_tokens
        self.reserved_samples += k
        return k

    def settle(self, reserved: int, max_tokens: int, generations: Iterable[Generation]) -> None:
        """Give back a reservation; count what the samples really cost."""
        self.reserved_tokens -= reserved * max_tokens
        self.reserved_samples -= reserved
        tokens, samples = cost(generations)
        self.tokens += tokens
        self.samples += samples

    @property
    def spent(self) -> bool:
        return self.budget.fits(self.tokens, self.samples, 1, 1) == 0


@dataclass
class Allowance:
    """One question's budget within one step: its own limit, what it spent before, and the run's ledger."""

    budget: Budget | None
    tokens: int = 0
    samples: int = 0
    ledger: Ledger | None = None
    withheld: int = 0
    reasons: list[str] = field(default_factory=list)
    shown: Budget | None = None
    """The question's budget as set (a fanned-out slot's `budget` is its share of it)."""

    @property
    def limited(self) -> bool:
        return self.budget is not None or self.ledger is not None

    def admit(self, wanted: int, max_tokens: int) -> int:
        """How many of `wanted` samples may start now (reserving them on the run's ledger)."""
        k = wanted if self.budget is None else self.budget.fits(self.tokens, self.samples, wanted, max_tokens)
        if k < wanted and self.budget is not None:
            self._why(f"the question's budget of {(self.shown or self.budget).describe()} is spent")
        if self.ledger is not None and k:
            granted = self.ledger.reserve(k, max_tokens)
            if granted < k:
                self._why(f"the run's budget of {self.ledger.budget.describe()} is spent")
            k = granted
        return k

    def charge(self, reserved: int, max_tokens: int, generations: list[Generation]) -> None:
        tokens, samples = cost(generations)
        self.tokens += tokens
        self.samples += samples
        if self.ledger is not None:
            self.ledger.settle(reserved, max_tokens, generations)

    def withhold(self, count: int) -> None:
        self.withheld += count

    def _why(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    def stop_reason(self) -> str | None:
        """Which budget ended sampling, when one withheld anything (the counts are in `Usage`)."""
        if not self.withheld:
            return None
        return "; ".join(self.reasons) or "budget spent"
