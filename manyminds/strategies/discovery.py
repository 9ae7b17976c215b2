"""DIV-SE's discovery step: approaches and personas found once per data set, the best pairs kept.

Naik et al. do not ask for approaches per question: they ask the model for
approaches and personas on a few questions of a data set, try each
(persona, approach) pair on a held-out slice, and keep the combinations
that do best, reusing them for every question. `discover` does that and
returns a `DiversityPlan`, which saves to and loads from JSON; `DivSE(pairs=
plan.pairs)` or `DivSE.from_plan(path)` then spends no call on proposals.
(Per-question proposal, DivSE's default, remains for when no labelled slice
exists.)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any


from manyminds._perf import run_sync
from manyminds.answers import is_correct
from manyminds.backends.base import Backend
from manyminds.errors import ConfigError
from manyminds.strategies.div_se import DEFAULT_APPROACHES, DEFAULT_PERSONAS, DiversityPlan, DivSE, parse_proposal
from manyminds.types import Task


def _most_common(found: list[list[str]], k: int, defaults: tuple[str, ...]) -> list[str]:
    counts = Counter(item for items in found for item in items)
    order = {item: n for n, item in enumerate(dict.fromkeys(i for items in found for i in items))}
    chosen = sorted(counts, key=lambda item: (-counts[item], order[item]))[:k]
    return chosen + [d for d in defaults if d not in chosen][: k - len(chosen)]


async def adiscover(
    tasks: Sequence[Task],
    *,
    backend: Backend,
    propose_on: int = 4,
    held_out: int = 16,
    approaches: int = 4,
    personas: int = 2,
    keep: int = 3,
    cache: Any = None,
    **settings: Any,
) -> DiversityPlan:
    """Propose on the first `propose_on` tasks, try every pair on the next `held_out`, keep the best `keep`.

    The tasks need gold answers (the held-out ones are scored). `settings`
    are DivSE's sampling settings for the trials (temperature, max_tokens, ...).
    """
    tasks = [Task.of(t) for t in tasks]
    if len(tasks) < propose_on + held_out:
        raise ConfigError(f"discovery needs {propose_on + held_out} tasks ({propose_on} to propose on, "
                          f"{held_out} held out), got {len(tasks)}")
    slice_ = tasks[propose_on:propose_on + held_out]
    if any(t.gold is None for t in slice_):
        raise ConfigError("the held-out tasks of a discovery need gold answers")
    asker = DivSE(approaches=approaches, personas=personas, **settings)
    params = asker.sampling_params(temperature=0.0, max_tokens=asker.propose_max_tokens)
    found_a: list[list[str]] = []
    found_p: list[list[str]] = []
    from manyminds.session import Session

    with Session(backend, cache=cache, keep_pools=True) as session:  # one cache for proposals and trials
        for task in tasks[:propose_on]:
            (reply,) = await session.wrapped.generate(asker.proposal_messages(task), params, 1)
            a, p = parse_proposal(reply.text)
            found_a.append(a)
            found_p.append(p)
        candidates = [(persona, approach) for persona in _most_common(found_p, personas, DEFAULT_PERSONAS)
                      for approach in _most_common(found_a, approaches, DEFAULT_APPROACHES)]
        scores = []
        for pair in candidates:
            results = await session.asolve_many(DivSE(pairs=(pair,), **settings), slice_)
            scores.append(sum(bool(is_correct(r)) for r in results) / len(results))
    ranked = sorted(range(len(candidates)), key=lambda k: (-scores[k], k))[:keep]
    return DiversityPlan(pairs=tuple(candidates[k] for k in ranked), accuracy=tuple(scores[k] for k in ranked),
                         tried=len(candidates), held_out=held_out, model=f"{backend.name}:{backend.model}",
                         created=time.strftime("%Y-%m-%d %H:%M:%S"),
                         seen=tuple(t.id for t in tasks[:propose_on + held_out] if t.id))


def discover(tasks: Sequence[Task], *, backend: Backend, **options: Any) -> DiversityPlan:
    """`adiscover`, from synchronous code."""
    return run_sync(adiscover(tasks, backend=backend, **options))
