"""The statistics a comparison needs to be a result: pass@k, the single-sample baseline, paired tests.

- `pass_at_k`: the unbiased estimator of Chen et al. (2021): with n samples of
  which c are right, the chance that k drawn without replacement hold a right
  one, 1 - C(n - c, k) / C(n, k); averaged over questions. pass@1 is the mean
  accuracy of all stored samples: the honest single-sample baseline, not
  sample 0 alone.
- `paired`: two methods on the same questions: the difference in accuracy
  with a paired bootstrap interval over questions, and McNemar's exact test
  on the questions where exactly one of them is right.
- `equal_compute`: a voting method subsampled to the tokens per question of
  another method, so the two are compared at the same cost.

Per-sample scores come from the runner (`Score.samples`); runs stored before
it kept them are scored offline by their gold answers where they can be.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from manyminds.bench.runner import QuestionRecord, RunReport, bootstrap_interval
from manyminds.bench.scoring import answer_sample_scores


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that k of the n samples (c of them right), drawn without replacement, hold a right one."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def sample_scores(record: QuestionRecord) -> list[float] | None:
    """Each voting sample's score: stored by the runner, or read off the gold answer for older runs."""
    if record.score is not None and record.score.samples is not None:
        return record.score.samples
    result = record.result
    if result is None or result.task.gold is None or result.task.format.value in ("code", "plan"):
        return None

    return answer_sample_scores(result)


def _per_question(run: RunReport) -> list[list[float]]:
    pools = []
    for record in run.records:
        if record.score is None:
            continue
        scores = sample_scores(record)
        if scores:
            pools.append(scores)
    return pools


def coverage(run: RunReport, ks: Sequence[int] | None = None) -> list[dict[str, float | int]] | None:
    """pass@k (right if any of k samples is) for every k up to the fewest samples a question has,
    with a bootstrap interval over questions; None where samples cannot be scored one by one."""
    pools = _per_question(run)
    if not pools:
        return None
    n = min(len(p) for p in pools)
    wanted = sorted({k for k in (ks or range(1, n + 1)) if 1 <= k <= n})
    out = []
    for k in wanted:
        values = [pass_at_k(len(p), int(round(sum(1 for v in p if v > 0.5))), k) for p in pools]
        low, high = bootstrap_interval(values, resamples=1000)
        out.append({"k": k, "pass": float(np.mean(values)), "low": low, "high": high})
    return out


def single_sample(run: RunReport) -> dict[str, float | int] | None:
    """pass@1: the mean accuracy of every stored sample, per question then over questions, with its interval."""
    points = coverage(run, [1])
    if not points:
        return None
    pools = _per_question(run)
    return {**points[0], "questions": len(pools), "samples": sum(len(p) for p in pools)}


def _key(record: QuestionRecord) -> str:
    return record.task.id or f"#{record.position}:{record.task.question}"


def paired(a: RunReport, b: RunReport, *, resamples: int = 5000, seed: int = 0) -> dict[str, Any] | None:
    """`b` against `a` on the questions both scored: the difference in accuracy (b - a), a paired
    bootstrap 95% interval, and McNemar's exact p on the questions exactly one got right."""
    left = {_key(r): r.score.value for r in a.records if r.score is not None}
    right = {_key(r): r.score.value for r in b.records if r.score is not None}
    shared = [k for k in left if k in right]
    if not shared:
        return None
    compared = paired_scores([left[k] for k in shared], [right[k] for k in shared], resamples=resamples, seed=seed)
    return {"a": a.label, "b": b.label, "run_a": a.run_id, "run_b": b.run_id, **compared}


def paired_scores(a: Sequence[float], b: Sequence[float], *, resamples: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Two runs' scores on the same questions, in the same order: accuracies, the difference (b - a)
    with a paired bootstrap 95% interval, and McNemar's exact p (`paired`; the viewer's diff)."""
    from scipy.stats import binomtest

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diffs = y - x
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
    means = diffs[draws].mean(axis=1)
    only_a = int(((x > 0.5) & (y <= 0.5)).sum())
    only_b = int(((y > 0.5) & (x <= 0.5)).sum())
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_b, only_a + only_b, 0.5).pvalue)
    return {"questions": len(diffs), "accuracy_a": float(x.mean()), "accuracy_b": float(y.mean()),
            "difference": float(diffs.mean()), "low": float(np.quantile(means, 0.025)),
            "high": float(np.quantile(means, 0.975)), "only_a": only_a, "only_b": only_b, "mcnemar_p": p}


def comparable(runs: Sequence[RunReport]) -> list[tuple[RunReport, RunReport]]:
    """Every pair of runs on the same data set, split and scorer (so on the same questions)."""
    def where(r: RunReport) -> tuple:
        return (r.meta.get("dataset"), r.meta.get("split"), r.meta.get("dataset_version"), r.meta.get("scorer"))

    return [(a, b) for i, a in enumerate(runs) for b in runs[i + 1:] if where(a) == where(b)]


def tokens_per_sample(run: RunReport) -> tuple[float, float] | None:
    """(prompt tokens per question, completion tokens per sample) of a voting run."""
    usage = run.usage
    scored = len(run.scored) or 1
    if not usage.samples:
        return None
    return usage.prompt_tokens / scored, usage.completion_tokens / usage.samples


def equal_compute(runs: Sequence[RunReport], majority_at: Any) -> list[dict[str, Any]]:
    """Each voting run against each other run on the same questions, at the other's tokens per question:
    the voting run's samples subsampled to k with k samples costing about what the other spent.

    `majority_at(run, k)` gives the voting run's majority accuracy over k of its samples and an interval.
    """
    rows = []
    for a, b in comparable(runs):
        for voter, other in ((a, b), (b, a)):
            shape = tokens_per_sample(voter)
            pools = _per_question(voter)
            if shape is None or not pools or voter.usage.samples / (len(voter.scored) or 1) < 2:
                continue
            prompt, per_sample = shape
            budget = other.usage.total_tokens / (len(other.scored) or 1)
            n = min(len(p) for p in pools)
            k = int(max(1, min(n, round((budget - prompt) / per_sample)))) if per_sample else 1
            point = majority_at(voter, k)
            if point is None:
                continue
            rows.append({"voting": voter.label, "against": other.label, "tokens_per_question": budget, "k": k,
                         "voting_accuracy": point["accuracy"], "low": point["low"], "high": point["high"],
                         "against_accuracy": other.accuracy, "at_k_tokens": prompt + k * per_sample})
    return rows
