"""Samples are independent across questions: sample i of one question is not drawn like sample i of another.

Sample seeds used to ignore the request, so sample i of every question was drawn with the same seed,
and in `make demo` how sample i fared was correlated across all 40 questions (chi-square 61 against a
limit of 24 at p = 0.001). Seeds now derive from (base seed, request, index).
"""

from __future__ import annotations

import pytest

from manyminds.backends.base import request_fingerprint, sample_seed
from manyminds.cache.keys import request_key
from manyminds.types import Message, SamplingParams

PARAMS = SamplingParams(temperature=0.7, max_tokens=16)


def test_two_prompts_get_different_seeds_at_the_same_index():
    a = request_fingerprint([Message(role="user", content="What is 2 + 2?")], PARAMS)
    b = request_fingerprint([Message(role="user", content="What is 3 + 3?")], PARAMS)
    assert a != b
    assert all(sample_seed(None, i, a) != sample_seed(None, i, b) for i in range(8))
    # the same request keeps its seeds, whichever way its messages are given, and n is no part of it
    assert request_fingerprint([{"role": "user", "content": "What is 2 + 2?"}], PARAMS) == a
    assert sample_seed(5, 3, a) == sample_seed(5, 3, a) != sample_seed(6, 3, a)
    # the base seed is not part of the fingerprint (it is mixed in by sample_seed)
    assert request_fingerprint([Message(role="user", content="What is 2 + 2?")], PARAMS.model_copy(
        update={"seed": 9})) == a


def test_the_seeding_scheme_is_part_of_the_cache_key():
    msgs = [Message(role="user", content="hi")]
    seeded = PARAMS.model_copy(update={"seed": 1})
    assert request_key({"kind": "openai", "model": "m"}, msgs, seeded) != request_key(
        {"kind": "openai", "model": "m", "seeding": None}, msgs, seeded)
    # an unseeded request to a backend that does not seed keeps its old key: nothing is paid twice
    assert request_key({"kind": "openai", "model": "m"}, msgs, PARAMS) != request_key(
        {"kind": "openai", "model": "m", "seeding": "request"}, msgs, PARAMS)
    from manyminds.backends.local import Local

    assert Local().cache_identity()["seeding"] == "request"


@pytest.mark.integration
def test_correctness_does_not_depend_on_the_sample_index(local_backend):
    """The demo's setting (40 arithmetic questions, 8 direct samples): index x correct is independent."""
    from scipy.stats import chi2_contingency

    import manyminds as mm
    from manyminds.answers import normalise_gold, same_answer
    from manyminds.strategies import SelfConsistency

    report = mm.bench.run("arithmetic", [SelfConsistency(n=8, prompt="direct", max_tokens=48)],
                          backend=local_backend, limit=40, progress=False)
    table = [[0, 0] for _ in range(8)]
    for result in report.runs[0].results:
        gold = normalise_gold(result.task)
        for candidate in result.candidates:
            table[candidate.index][int(same_answer(result.task, candidate.answer, gold))] += 1
    assert all(sum(row) == 40 for row in table)
    chi2, p, dof, _ = chi2_contingency(table)
    assert p > 0.001, (chi2, p, table)
