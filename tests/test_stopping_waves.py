"""Stopping waves sized for the backend: the sequential rule's answer and samples, fewer round trips.

Every case is compared against the rule drawing its own waves one after another
(`speculate=False`, the behaviour before waves followed the backend).
"""

import random

import pytest

from manyminds.backends import Scripted
from manyminds.cache import GenerationCache
from manyminds.stopping import ESC, SPRT, AdaptiveConsistency, MixtureSPRT, next_wave, settle
from manyminds.strategies import SelfConsistency

CAP = 16
QUESTIONS = [f"question {k}" for k in range(40)]


def _answers(seed: int) -> dict[str, list[str]]:
    """Per question, the answer of each sample index: mostly one answer, sometimes split or blank."""
    rng = random.Random(seed)
    table = {}
    for q in QUESTIONS:
        favourite, agreement = rng.randint(1, 3), rng.choice([0.95, 0.8, 0.6, 0.4])
        table[q] = [str(favourite) if rng.random() < agreement else rng.choice(["1", "2", "3", "4", ""])
                    for _ in range(CAP)]
    return table


def _backend(table, batch_width):
    def reply(messages, params, index):
        question = next(q for q in QUESTIONS if messages[-1].content.startswith(q))
        answer = table[question][index]
        return f"The answer is {answer}." if answer else "I am not sure."

    return Scripted(reply, batch_width=batch_width)


RULES = [AdaptiveConsistency(), AdaptiveConsistency(threshold=0.8, wave_size=2), AdaptiveConsistency(min_samples=6),
         ESC(), ESC(window=3), ESC(unreadable_stops=False), AdaptiveConsistency(criterion="beta"),
         AdaptiveConsistency(count_unreadable=False), SPRT(), SPRT(alpha=0.3, p1=0.9), MixtureSPRT(alpha=0.2)]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.name}-{'-'.join(f'{v}' for v in r.model_dump().values())}")
@pytest.mark.parametrize("batch_width", [1, 4, 64])
def test_waves_sized_for_the_backend_keep_the_sequential_answer_and_samples(seed, rule, batch_width):
    table = _answers(seed)
    sequential = _backend(table, batch_width)
    before = SelfConsistency(n=CAP, prompt="direct", stop=rule.model_copy(update={"speculate": False})).solve_many(
        QUESTIONS, backend=sequential)
    sized = _backend(table, batch_width)
    after = SelfConsistency(n=CAP, prompt="direct", stop=rule).solve_many(QUESTIONS, backend=sized)
    for old, new in zip(before, after):
        assert new.answer == old.answer and new.tally == old.tally
        assert [c.text for c in new.candidates] == [c.text for c in old.candidates]
        assert new.usage.samples == old.usage.samples
        assert new.usage.speculative_samples == sized_extra(new)
        assert new.stop_reason.split(" (")[0] == old.stop_reason
    assert sized.calls <= sequential.calls
    if batch_width == 1:  # a sequential backend: never a sample more than before, only fewer calls
        assert sized.samples_generated == sequential.samples_generated
        assert all(r.usage.speculative_samples == 0 for r in after)
    if batch_width >= CAP:  # a batching backend: one call per question
        assert sized.calls == len(QUESTIONS)


def sized_extra(result):
    return result.usage.speculative_samples if "left unused" in (result.stop_reason or "") else 0


def test_adaptive_consistency_on_a_sequential_backend_starts_with_the_fewest_it_can_stop_after():
    backend = Scripted(["The answer is 7."])
    result = SelfConsistency(n=CAP, stop=AdaptiveConsistency()).solve("q", backend=backend)
    assert result.usage.samples == 4 and backend.calls == 1  # 1 - 2**-5 >= 0.95 needs 4 agreeing samples
    old = Scripted(["The answer is 7."])
    SelfConsistency(n=CAP, stop=AdaptiveConsistency(speculate=False)).solve("q", backend=old)
    assert old.calls == 4 and old.samples_generated == 4


def test_samples_drawn_ahead_are_reported_and_cached_for_later_runs(tmp_path):
    backend = Scripted(["The answer is 7."], batch_width=64)
    with GenerationCache(tmp_path / "c.db") as cache:
        early = SelfConsistency(n=CAP, stop=AdaptiveConsistency()).solve("q", backend=backend, cache=cache)
        assert early.usage.samples == 4 and early.usage.speculative_samples == CAP - 4
        assert early.usage.speculative_tokens > 0 and early.usage.calls == 1
        assert "16 drawn in batched waves, 12 left unused" in early.stop_reason
        assert len(early.candidates) == 4
        full = SelfConsistency(n=CAP).solve("q", backend=backend, cache=cache)
    assert backend.calls == 1 and full.usage.cached_samples == CAP  # the plain run pays nothing more


def test_settle_and_next_wave():
    rule = AdaptiveConsistency()
    assert settle(rule, ["a", "a", "a"], CAP) == (3, None)
    assert settle(rule, ["a"] * 10, CAP)[0] == 4
    assert settle(rule, ["a", "b"] * 8, CAP) == (CAP, f"cap of {CAP} samples reached")
    assert next_wave(rule, [], CAP) == 4 and next_wave(rule, [], CAP, batch_width=64) == CAP
    assert next_wave(rule, ["a"] * CAP, CAP) == 0
    assert next_wave(AdaptiveConsistency(speculate=False), [], CAP, batch_width=64) == 1
    esc = ESC(window=4)
    assert next_wave(esc, ["a", "b"], CAP) == 6  # this window is split: the next one could be unanimous
    assert next_wave(esc, ["a", "a"], CAP) == 2
