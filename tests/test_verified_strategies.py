"""Best-of-n, verifier resampling and the verified vote, with verifiers of known behaviour."""

import pytest
from pydantic import ValidationError

from manyminds.answers import false_positives, is_correct
from manyminds.backends import Scripted
from manyminds.strategies import BestOfN, VerifiedVote, VerifierResampling
from manyminds.types import Task, Verdict


class KnownVerifier:
    """Passes the answers it is told to; scores by a table; counts its calls."""

    name = "known"

    def __init__(self, passing, scores=None):
        self.passing = set(passing)
        self.scores = scores or {}
        self.calls = 0

    def params(self):
        return {"passing": sorted(self.passing)}

    async def verify(self, task, candidate):
        self.calls += 1
        ok = candidate.answer in self.passing
        return Verdict(score=self.scores.get(candidate.answer, float(ok)), passed=ok, verifier=self.name)


def numbers(*answers):
    return Scripted([f"The answer is {a}." for a in answers])


TASK = Task(question="What is 7 + 5?", gold="12")


def test_resampling_stops_at_the_first_pass():
    backend = numbers(10, 11, 12, 13, 14, 15)
    verifier = KnownVerifier({"12"})
    result = VerifierResampling(batch=1, max_samples=6, verifier=verifier).solve(TASK, backend=backend)
    assert result.answer == "12" and result.usage.samples == 3 and verifier.calls == 3
    assert [(r.n, r.first_index) for r in backend.requests] == [(1, 0), (1, 1), (1, 2)]
    assert "stopped: a candidate passed after 3 samples" in result.trace


def test_resampling_never_exceeds_its_budget_and_abstains():
    backend = numbers(10, 11)
    result = VerifierResampling(batch=3, max_samples=7, verifier=KnownVerifier(set())).solve(TASK, backend=backend)
    assert result.usage.samples == 7 and sum(r.n for r in backend.requests) == 7
    assert [r.n for r in backend.requests] == [3, 3, 1]
    assert result.answer is None and result.decision.params["abstained"]
    assert any("budget spent" in t for t in result.trace) and any("abstained" in t for t in result.trace)


def test_resampling_without_abstention_answers_its_best():
    scores = {"10": 0.2, "11": 0.4}
    result = VerifierResampling(batch=2, max_samples=4, verifier=KnownVerifier(set(), scores), abstain=False).solve(
        TASK, backend=numbers(10, 11))
    assert result.answer == "11" and result.confidence == 0.4


def test_resampling_counts_false_positives():
    verifier = KnownVerifier({"13", "12"})  # an imperfect verifier: 13 is wrong but passes
    result = VerifierResampling(batch=2, max_samples=6, verifier=verifier).solve(TASK, backend=numbers(13, 11, 12))
    assert result.answer == "13" and is_correct(result) is False
    assert false_positives(result) == 1


def test_resampling_samples_only_the_undecided_questions():
    def reply(messages, params, index):
        return "The answer is 12." if "7 + 5" in messages[-1].content else f"The answer is {index}."

    backend = Scripted(reply)
    tasks = [TASK, Task(question="What is 1 + 2?", gold="3")]
    easy, hard = VerifierResampling(batch=2, max_samples=8, verifier=KnownVerifier({"12", "3"})).solve_many(tasks, backend=backend)
    assert easy.usage.samples == 2 and easy.answer == "12"
    assert hard.usage.samples == 4 and hard.answer == "3"
    assert sum(1 for r in backend.requests if "7 + 5" in r.messages[-1].content) == 1


def test_batch_larger_than_budget_is_rejected():
    with pytest.raises(ValidationError, match="must not exceed max_samples"):
        VerifierResampling(batch=5, max_samples=4, verifier=KnownVerifier(set()))


def test_best_of_n_takes_the_best_score_and_breaks_ties_by_vote():
    scores = {"11": 0.9, "12": 0.9, "13": 0.3}
    result = BestOfN(n=5, verifier=KnownVerifier({"11", "12"}, scores)).solve(TASK, backend=numbers(11, 12, 12, 13, 13))
    assert result.answer == "12" and result.confidence == 0.9
    assert all(c.verdict is not None for c in result.candidates)
    assert result.strategy_params["verifier"]["name"] == "known"


def test_best_of_n_can_abstain():
    result = BestOfN(n=3, verifier=KnownVerifier(set()), abstain=True).solve(TASK, backend=numbers(1, 2, 3))
    assert result.answer is None


def test_verified_vote_weighs_votes_by_score():
    scores = {"12": 0.9, "13": 0.2}
    result = VerifiedVote(n=5, verifier=KnownVerifier({"12"}, scores)).solve(TASK, backend=numbers(12, 13, 13, 13, 12))
    assert result.answer == "12"  # 2 x 0.9 outweighs 3 x 0.2
    assert result.tally == pytest.approx({"12": 1.8, "13": 0.6})


def replies(answers):
    return Scripted(lambda m, p, i: f"The answer is {answers[i]}." if answers[i] else "I do not know.")


def test_verifier_resampling_with_batch_one_is_the_paper_s_sequential_setting():
    from manyminds.strategies import VerifierResampling
    from manyminds.verifiers import MathAnswer

    answers = ["13", "11", "12", "12", "12"]
    backend = replies(answers)
    result = VerifierResampling(batch=1, max_samples=5, verifier=MathAnswer()).solve(
        Task(question="What is 7 + 5?", gold="12"), backend=backend)
    assert [(r.n, r.first_index) for r in backend.requests] == [(1, 0), (1, 1), (1, 2)], "one at a time, stop at the pass"
    assert result.answer == "12" and "a candidate passed after 3 samples" in result.stop_reason
