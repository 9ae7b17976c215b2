"""Offline re-aggregation: new answers from stored candidates, without a single generation.

Sources are stored runs (results in a cache database) or pool files. For
each question the candidates are taken in sample order; a stopping rule, if
given, decides how many of them would have been drawn; the aggregator
decides over those. The report compares accuracy and samples spent with
the original answers where there are any.
"""

from __future__ import annotations

from typing import Any

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from manyminds.aggregators import Aggregator, resolve
from manyminds.answers import normalise_gold, same_answer
from manyminds.errors import ConfigError
from manyminds.pools import PoolQuestion, load_pool
from manyminds.stopping import StopRule, parse_rule, replay
from manyminds.types import Result, ballots


class Reaggregation(BaseModel):
    """How one aggregator (and stopping rule) fares on a set of recorded questions."""

    aggregator: str
    stop: str | None
    questions: int
    correct: int
    samples: int
    changed: int
    """Answers that differ from the original ones (0 when there were none)."""
    answers: list[str | None]

    @property
    def accuracy(self) -> float:
        return self.correct / self.questions if self.questions else 0.0

    @property
    def mean_samples(self) -> float:
        return self.samples / self.questions if self.questions else 0.0


def _questions(source: "str | Path | Sequence[Result] | Sequence[PoolQuestion]", run: int | None) -> tuple[list[PoolQuestion], list[str | None] | None]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix in (".jsonl", ".json"):
            return load_pool(path), None
        from manyminds.cache import GenerationCache

        if not path.is_file():
            raise ConfigError(f"no such file: {path}")
        with GenerationCache(path, read_only=True) as cache:
            source = cache.runs.load(run)
    items: list[Any] = list(source)
    if items and isinstance(items[0], Result):
        return [PoolQuestion(r.task, list(r.candidates)) for r in items], [r.answer for r in items]
    return items, None


def reaggregate(
    source: "str | Path | Sequence[Result] | Sequence[PoolQuestion]",
    aggregator: "str | Aggregator" = "majority",
    *,
    stop: "str | StopRule | None" = None,
    cap: int | None = None,
    run: int | None = None,
) -> Reaggregation:
    """Answer every recorded question again with `aggregator` (and `stop`), offline.

    Args:
        source: a cache database (its latest run, or `run`), a pool file, results or pool questions.
        cap: use at most this many samples per question (default: all recorded).
    """
    questions, original = _questions(source, run)
    if not questions:
        raise ConfigError(f"{source if isinstance(source, (str, Path)) else 'the source'} holds no questions to re-aggregate")
    if cap is not None and cap < 1:
        raise ConfigError(f"cap must be at least 1 sample per question, got {cap}")
    chooser = resolve(aggregator)
    rule = parse_rule(stop) if isinstance(stop, str) else stop
    correct = samples = changed = 0
    answers: list[str | None] = []
    for k, q in enumerate(questions):
        pool = sorted(ballots(q.candidates), key=lambda c: c.index)
        limit = min(cap or len(pool), len(pool))
        used = replay(rule, [c.answer for c in pool], limit)[0] if rule is not None else limit
        # A strategy's evidence (a selection, a synthesis, rankings) speaks of all its samples:
        # it goes to the aggregator only when all of them are used; deciders fall back without it.
        shown = pool[:used] + ([c for c in q.candidates if not c.source.votes] if used == len(pool) else [])
        decision = chooser(q.task, shown)
        answers.append(decision.answer)
        samples += used
        gold = normalise_gold(q.task)
        if gold is None:  # a gold that is already a key the extractor cannot read (option indices)
            gold = q.task.gold
        correct += int(same_answer(q.task, decision.answer, gold))
        changed += int(original is not None and original[k] != decision.answer)
    return Reaggregation(
        aggregator=chooser.name, stop=None if rule is None else rule.name, questions=len(questions),
        correct=correct, samples=samples, changed=changed, answers=answers,
    )

