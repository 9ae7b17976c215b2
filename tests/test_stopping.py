"""Stopping rules (ESC, Adaptive-Consistency, SPRT, the mixture SPRT): their decisions, their
specs, and waves sized for the backend that keep the sequential rule's answer and samples."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from manyminds.backends import Scripted
from manyminds.cache import GenerationCache
from manyminds.errors import ConfigError
from manyminds.reaggregate import reaggregate
from manyminds.stopping import (
    ESC,
    SPRT,
    AdaptiveConsistency,
    MixtureSPRT,
    beta_leader_probability,
    dirichlet_leader_probability,
    next_wave,
    parse_rule,
    replay,
    settle,
)
from manyminds.strategies import SelfConsistency
from manyminds.types import Task

TASK = Task(question="q", gold="12")


def test_esc_stops_at_five_when_the_first_five_agree():
    assert replay(ESC(), ["7"] * 5 + ["8"] * 35, 40) == (5, "window of 5 unanimous after 5 samples")
    assert replay(ESC(), ["7", "8"] * 20, 40)[0] == 40
    assert replay(ESC(), [None] * 5 + ["7"] * 5 + ["8"] * 30, 40)[0] == 5, "as the official scripts: unreadable is one answer"
    assert replay(ESC(unreadable_stops=False), [None] * 5 + ["7"] * 5 + ["8"] * 30, 40)[0] == 10


def test_adaptive_consistency_never_exceeds_its_cap():
    for cap in (1, 7, 40):
        assert replay(AdaptiveConsistency(), ["1", "2"] * 30, cap)[0] == cap
    assert replay(AdaptiveConsistency(), ["5"] * 40, 40)[0] == 4  # P = 31/32 >= 0.95 after four agree


def test_beta_posterior_matches_closed_form():
    assert beta_leader_probability(0, 0) == 0.5
    assert beta_leader_probability(3, 0) == pytest.approx(15 / 16)


def test_stopping_in_waves_with_self_consistency():
    def reply(messages, params, index):
        return "The answer is 12." if "7 + 5" in messages[-1].content else f"The answer is {index % 2}."

    backend = Scripted(reply)
    easy, hard = SelfConsistency(n=40, stop=ESC()).solve_many(["What is 7 + 5?", "What is 1 + 2?"], backend=backend)
    assert easy.usage.samples == 5 and easy.stop_reason.startswith("window of 5 unanimous")
    assert hard.usage.samples == 40 and hard.stop_reason == "cap of 40 samples reached"
    easy_calls = [(r.n, r.first_index) for r in backend.requests if "7 + 5" in r.messages[-1].content]
    assert easy_calls == [(5, 0)], "a wave is one backend request with native n"
    ac = SelfConsistency(n=12, stop=AdaptiveConsistency(wave_size=2)).solve("What is 7 + 5?", backend=Scripted(reply))
    assert ac.usage.samples == 4 and ac.strategy_params["stop"]["rule"] == "adaptive-consistency"


def test_parse_rule():
    assert parse_rule("esc:3") == ESC(window=3)
    assert parse_rule("adaptive:0.9") == AdaptiveConsistency(threshold=0.9)
    with pytest.raises(ConfigError, match="unknown stopping rule"):
        parse_rule("sometimes")


def test_other_one_prompt_strategies_take_a_stopping_rule():
    from manyminds.strategies import SelfAgreement, SelfMoA

    def reply(messages, params, index):
        text = messages[-1].content
        if "most consistent" in text:
            return "The most consistent answer is 12 (Response 1)."
        if messages[0].role == "system":
            return "The answer is 12."
        return "The answer is 12."

    for strategy in (SelfAgreement(n=20, stop=ESC(window=3)), SelfMoA(n=20, stop=AdaptiveConsistency())):
        backend = Scripted(reply)
        result = strategy.solve(TASK, backend=backend)
        assert result.answer == "12" and result.stop_reason is not None
        assert sum(r.n for r in backend.requests if r.messages[0].role != "system" and "most consistent" not in r.messages[-1].content) < 20


def replies(answers):
    return Scripted(lambda m, p, i: f"The answer is {answers[i]}." if answers[i] else "I do not know.")


def test_esc_answers_with_the_unanimous_window_where_a_vote_over_all_samples_differs():
    order = ["7", "7", "8", "7", "7", "8", "9", "9", "9"]  # windows of 3: split, split, unanimous 9
    result = SelfConsistency(n=9, stop=ESC(window=3)).solve("q", backend=replies(order))
    assert result.answer == "9" and result.decision.aggregator == "esc"
    assert result.tally == {"7": 4.0, "8": 2.0, "9": 3.0}, "the vote would have said 7"
    assert SelfConsistency(n=9, stop=ESC(window=3), aggregator="majority").solve(
        "q", backend=replies(order)).answer == "7", "an aggregator chosen by the user is honoured"
    assert reaggregate([result], "esc:window=3").answers == ["9"]


def test_esc_without_a_unanimous_window_falls_back_to_the_vote_over_all():
    order = ["7", "8", "7", "8", "7", "9"]
    result = SelfConsistency(n=6, stop=ESC(window=3)).solve("q", backend=replies(order))
    assert result.answer == "7" and "no unanimous window" in result.decision.params["note"]


def test_a_window_of_unreadable_answers_stops_esc_as_the_official_scripts_count_it():
    order = [None, None, None, "7", "7", "7"]
    official = SelfConsistency(n=6, stop=ESC(window=3)).solve("q", backend=replies(order))
    assert official.usage.samples == 3 and official.answer is None and "no readable answer" in official.stop_reason
    patient = SelfConsistency(n=6, stop=ESC(window=3, unreadable_stops=False)).solve("q", backend=replies(order))
    assert patient.usage.samples == 6 and patient.answer == "7"


def test_the_dirichlet_probability_matches_a_monte_carlo_estimate():
    rng = np.random.default_rng(0)
    for counts in ([5, 1, 1], [6, 3, 2, 1], [3, 3, 1], [9, 2, 2, 2, 1]):
        gammas = rng.gamma(np.asarray(counts)[:, None] + 1.0, size=(len(counts), 400_000))
        estimate = float((gammas[0] > gammas[1:].max(axis=0)).mean())
        assert dirichlet_leader_probability(counts) == pytest.approx(estimate, abs=0.004), counts


def test_adaptive_consistency_defaults_to_beta_as_the_official_code_runs_it():
    rule = AdaptiveConsistency()
    assert rule.criterion == "beta" and rule.threshold == 0.95
    many = ["a"] * 6 + ["b", "c", "d", "e", "f", "g"]
    assert rule.probability(many) == beta_leader_probability(6, 1)


def test_adaptive_consistency_dirichlet_looks_at_the_top_answers_and_is_beta_with_two():
    rule = AdaptiveConsistency(criterion="dirichlet")
    assert rule.top_k == 5
    two = ["a"] * 5 + ["b"]
    assert rule.probability(two) == beta_leader_probability(5, 1), "fewer than three answers: the Beta rule"
    many = ["a"] * 6 + ["b", "c", "d", "e", "f", "g"]
    assert rule.probability(many) == pytest.approx(dirichlet_leader_probability([6, 1, 1, 1, 1]))
    assert rule.probability(many) < AdaptiveConsistency(criterion="beta").probability(many)


def test_unreadable_answers_count_as_one_more_answer_unless_told_not_to():
    answers = ["7", None, None, None, "7", "7"]
    assert AdaptiveConsistency(criterion="beta").probability(answers) == beta_leader_probability(3, 3)
    assert AdaptiveConsistency(criterion="beta", count_unreadable=False).probability(answers) == beta_leader_probability(3, 0)


def test_sprt_stops_when_the_log_likelihood_ratio_crosses_log_two_over_alpha():
    rule = SPRT(alpha=0.1, p1=0.75)
    per_vote = math.log(1.5)
    needed = math.ceil(math.log(20) / per_vote)
    assert replay(rule, ["7"] * 40, 40)[0] == needed
    assert replay(rule, ["7", "8"] * 20, 40)[0] == 40, "a tie never stops it"
    assert "log likelihood ratio" in replay(rule, ["7"] * 40, 40)[1]


def test_the_mixture_sprt_ratio_is_the_beta_integral_and_needs_no_alternative():
    rule = MixtureSPRT(alpha=0.05)
    a, b = 9, 2
    expected = (a + b) * math.log(2) + math.log(math.factorial(a) * math.factorial(b) / math.factorial(a + b + 1))
    assert rule.log_ratio(a, b) == pytest.approx(expected)
    used, _ = replay(rule, ["7"] * 40, 40)
    assert 2 ** used / (used + 1) >= 40 > 2 ** (used - 1) / used


@pytest.mark.parametrize("alpha", [0.1, 0.05])
@pytest.mark.parametrize("rule", [SPRT, MixtureSPRT])
def test_sequential_rules_stop_on_exact_ties_at_most_alpha_of_the_time(rule, alpha):
    """4,000 questions whose two answers are exactly tied, 40 samples at most: the leader is picked
    after the fact, so a rule that tested it at alpha stopped on 14.9% of ties at alpha = 0.1."""
    rng = np.random.default_rng(20)
    tested = rule(alpha=alpha)
    draws = rng.integers(0, 2, size=(4000, 40))
    stopped = sum(replay(tested, ["A" if d else "B" for d in row], 40)[0] < 40 for row in draws)
    assert stopped / 4000 <= alpha, (rule.__name__, alpha, stopped / 4000)


def test_sequential_rules_are_found_by_name():
    from manyminds.stopping import parse_rule

    assert parse_rule("sprt:0.2") == SPRT(alpha=0.2)
    assert parse_rule("msprt") == MixtureSPRT()
    assert SelfConsistency(stop="sprt:0.3").stop == SPRT(alpha=0.3)


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
