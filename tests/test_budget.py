"""Token and sample budgets: no request starts that could exceed one, per question or per run, in every
strategy and stopping rule, with what was withheld reported."""

import warnings

import pytest

from manyminds.backends import Scripted
from manyminds.budget import Budget
from manyminds.cache import GenerationCache
from manyminds.errors import ConfigError
from manyminds.session import Session
from manyminds.strategies import make, VerifierResampling
from manyminds.types import Task

Q = Task(question="What is 3 + 4?")


def words(count):
    """Replies of `count` tokens (the scripted backend counts words), answering 7 or 8 by index."""
    return lambda messages, params, index: " ".join(["w"] * (count - 4)) + f" The answer is {7 if index % 3 else 8}."


def recording(count):
    backend = Scripted(words(count))
    return backend


def test_a_token_budget_admits_only_what_fits_at_max_tokens_and_draws_the_rest_in_waves():
    backend = recording(5)  # 5 tokens each, at most 10
    result = make("self-consistency", 10, max_tokens=10, budget=45).solve(Q, backend=backend)
    # wave 1: 4 x 10 fit in 45 (20 spent); wave 2: 2 (30); wave 3: 1 (35); wave 4: 1 (40); then 5 < 10
    assert [r.n for r in backend.requests] == [4, 2, 1, 1]
    assert [r.first_index for r in backend.requests] == [0, 4, 6, 7]
    assert result.usage.samples == 8 and result.usage.completion_tokens == 40 <= 45
    assert result.usage.withheld_samples == 2
    assert result.stop_reason == "the question's budget of 45 tokens is spent"
    plain = make("self-consistency", 10, max_tokens=10).solve(Q, backend=recording(5))
    assert [c.text for c in result.candidates] == [c.text for c in plain.candidates[:8]]  # the same samples


def test_a_sample_budget_and_a_stopping_rule_both_end_the_loop():
    result = make("self-consistency", 20, max_tokens=10, budget={"samples": 5}, stop="esc:window=2").solve(
        Q, backend=Scripted(words(5)))
    assert result.usage.samples == 5 and result.usage.withheld_samples >= 1
    assert "5 samples" in result.stop_reason
    # the rule stops first where it can: the budget withholds nothing
    agreed = make("self-consistency", 20, max_tokens=10, budget={"samples": 5}, stop="esc:window=2").solve(
        Q, backend=Scripted(["The answer is 7."]))
    assert agreed.usage.samples == 2 and agreed.usage.withheld_samples == 0 and "window" in agreed.stop_reason


@pytest.mark.parametrize("name", ["div-se", "idiv-se", "moa", "self-moa", "self-moa-seq", "usc", "self-agreement",
                                  "ranked-vote", "exemplar-resampling", "choice-shuffle", "temperature-mix",
                                  "self-refine-vote"])
def test_every_strategy_stays_within_the_budget_and_says_what_it_withheld(name):
    budget = 40
    result = make(name, 8, max_tokens=10, budget=budget).solve(Q, backend=Scripted(words(6)))
    spent = result.usage.completion_tokens + result.usage.speculative_tokens
    assert spent <= budget
    assert result.usage.withheld_samples > 0 and "budget of 40 tokens" in result.stop_reason
    assert result.strategy_params["budget"] == {"tokens": 40, "samples": None}


def test_a_model_call_that_does_not_fit_is_not_made_and_the_decider_falls_back():
    result = make("usc", 4, max_tokens=10, budget=40).solve(Q, backend=Scripted(words(10)))
    assert result.usage.samples == 4 and result.decision.params.get("fallback") == "majority"
    assert "selection: not asked" in result.trace


def test_a_fanned_out_step_shares_what_is_left_in_whole_samples():
    backend = Scripted(words(10))
    result = make("moa", 6, max_tokens=10, budget=45).solve(Q, backend=backend)
    assert result.usage.completion_tokens <= 45
    assert len([c for c in result.candidates if c.source.layer == 2]) == 1  # 15 left: one sample's worth


def test_a_cascade_counts_both_stages_against_one_budget():
    result = make("cascade", 8, max_tokens=10, budget=60, escalate_on="disagreement").solve(
        Q, backend=Scripted(words(10)))
    assert any(t.startswith("escalated") for t in result.trace)
    assert result.usage.completion_tokens <= 60
    assert result.strategy_params["budget"]["tokens"] == 60


def test_a_runs_budget_is_shared_by_its_questions_and_reservations_are_given_back():
    strategy = make("self-consistency", 10, max_tokens=10)
    with Session(Scripted(words(5)), budget=100, concurrency=1) as session:
        results = session.solve_many(strategy, [Task(question=f"What is {k} + 4?") for k in range(3)])
        ledger = session.ledger
    assert [r.usage.samples for r in results] == [10, 9, 0]  # 50 spent; then 5+2+1+1 more (95); then nothing fits
    assert ledger.tokens == 95 and ledger.reserved_tokens == 0 and ledger.reserved_samples == 0
    assert "run's budget of 100 tokens" in results[2].stop_reason and results[2].answer is None


def test_cached_samples_count_so_a_rerun_decides_the_same(tmp_path):
    strategy = make("self-consistency", 10, max_tokens=10, budget=45)
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        first = strategy.solve(Q, backend=Scripted(words(5)), cache=cache)
        again = strategy.solve(Q, backend=Scripted(words(5)), cache=cache)
    assert again.usage.cached_samples == again.usage.samples == first.usage.samples
    assert again.answer == first.answer and again.usage.withheld_samples == first.usage.withheld_samples


def test_budgets_are_checked_when_made_and_recorded_only_when_set():
    with pytest.raises(ConfigError, match="cannot fit one sample of max_tokens = 512"):
        make("self-consistency", 8, budget=100)
    with pytest.raises(ConfigError, match="budget"):
        make("self-consistency", 8, budget={"tokens": 0})
    assert "budget" not in make("self-consistency", 8).params()
    assert make("self-consistency", 8, max_tokens=10, budget={"samples": 3}).budget == Budget(samples=3)
    with pytest.raises(ConfigError, match="session budget"):
        Session(Scripted(["x"]), budget={"tokens": -1})


def test_verifier_resamplings_sample_cap_is_max_samples_and_its_old_name_still_reads():
    from tests.test_verified_strategies import KnownVerifier

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = VerifierResampling(batch=2, budget=6, verifier=KnownVerifier(set()))
    assert old.max_samples == 6 and old.budget is None
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    assert make("verifier-resampling", 8, verifier=KnownVerifier(set())).max_samples == 8


def test_the_command_lines_budget_option():
    from manyminds.cli import _budget
    from manyminds.errors import ManymindsError

    assert _budget("4000") == {"tokens": 4000}
    assert _budget("tokens=4000,samples=12") == {"tokens": 4000, "samples": 12}
    with pytest.raises(ManymindsError, match="--budget"):
        _budget("coins=3")
