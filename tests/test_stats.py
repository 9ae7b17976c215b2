"""pass@k, the single-sample baseline and paired comparisons, against brute force and textbook values."""

from __future__ import annotations

import itertools
from math import comb

import pytest

from manyminds.bench.runner import QuestionRecord, RunReport
from manyminds.bench.scoring import Score
from manyminds.bench.stats import coverage, equal_compute, paired, pass_at_k, single_sample
from manyminds.types import Task


@pytest.mark.parametrize(("n", "c"), [(5, 0), (5, 1), (5, 3), (8, 8), (10, 2)])
def test_pass_at_k_is_the_share_of_k_subsets_with_a_right_sample(n, c):
    outcomes = [True] * c + [False] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(outcomes, k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / comb(n, k))


def _run(label: str, rows: list[tuple[float, list[float]]]) -> RunReport:
    records = [QuestionRecord(position=k, task=Task(question=f"q{k}", id=f"t{k}"),
                              score=Score(value=v, samples=samples)) for k, (v, samples) in enumerate(rows)]
    return RunReport(label=label, strategy="s", records=records, meta={"dataset": "d", "scorer": "answer"})


def test_single_sample_is_the_mean_over_every_stored_sample():
    run = _run("sc", [(1.0, [1, 0, 0, 1]), (0.0, [0, 0, 0, 0]), (1.0, [1, 1, 1, 1])])
    point = single_sample(run)
    assert point["pass"] == pytest.approx((0.5 + 0 + 1) / 3) and point["samples"] == 12
    assert point["low"] <= point["pass"] <= point["high"]
    assert [p["k"] for p in coverage(run)] == [1, 2, 3, 4] and coverage(run)[-1]["pass"] == pytest.approx(2 / 3)


def test_paired_difference_and_mcnemars_exact_p():
    a = _run("a", [(1.0, None)] * 3 + [(0.0, None)] * 12 + [(1.0, None)] * 5)
    b = _run("b", [(0.0, None)] * 3 + [(1.0, None)] * 12 + [(1.0, None)] * 5)
    result = paired(a, b)
    assert result["questions"] == 20 and result["only_a"] == 3 and result["only_b"] == 12
    assert result["difference"] == pytest.approx(9 / 20)
    assert result["mcnemar_p"] == pytest.approx(2 * sum(comb(15, i) for i in range(0, 4)) / 2 ** 15)
    assert result["low"] < result["difference"] < result["high"]


def test_equal_compute_picks_k_at_the_other_methods_tokens():
    from manyminds.types import Result, Usage, Decision

    def with_usage(run: RunReport, samples: int, completion: int) -> RunReport:
        records = []
        for r in run.records:
            usage = Usage(samples=samples, prompt_tokens=10, completion_tokens=completion, calls=1)
            result = Result(task=r.task, answer=None, confidence=0, tally={}, candidates=[], usage=usage,
                            strategy="s", decision=Decision(answer=None, confidence=0, tally={}, aggregator="x"))
            records.append(r.model_copy(update={"result": result}))
        return run.model_copy(update={"records": records})

    voter = with_usage(_run("sc", [(1.0, [1, 0, 1, 1, 0, 1, 1, 1])] * 4), 8, 80)  # 10 tokens a sample
    other = with_usage(_run("one", [(1.0, [1])] * 4), 1, 30)  # 40 tokens a question: k = 3
    rows = equal_compute([other, voter], lambda run, k: {"accuracy": 0.5, "low": 0.4, "high": 0.6, "k": k})
    assert [(r["voting"], r["against"], r["k"]) for r in rows] == [("sc", "one", 3)]
