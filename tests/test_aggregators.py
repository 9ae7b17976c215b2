"""Majority vote: ties, abstention, confidence, and the plugin registry."""

import pytest

from manyminds.aggregators import Majority, aggregator, available, get_aggregator
from manyminds.errors import ConfigError
from manyminds.types import Candidate, Decision, Task

TASK = Task(question="q")


def cands(*answers):
    return [Candidate(index=i, text=str(a), answer=a) for i, a in enumerate(answers)]


def test_majority_wins_and_confidence_is_its_share():
    d = Majority()(TASK, cands("12", "12", "13", None))
    assert d.answer == "12"
    assert d.confidence == pytest.approx(2 / 3)
    assert d.tally == {"12": 2, "13": 1}
    assert d.aggregator == "majority"


def test_tie_goes_to_the_answer_seen_at_the_lowest_sample_index():
    candidates = cands("7", "9", "9", "7")
    assert Majority()(TASK, candidates).answer == "7"
    # Arrival order does not matter: only sample indices do.
    assert Majority()(TASK, list(reversed(candidates))).answer == "7"


def test_all_abstain_gives_no_answer():
    d = Majority()(TASK, cands(None, None))
    assert d.answer is None and d.confidence == 0 and d.tally == {}
    assert Majority()(TASK, []).answer is None


def test_registry_has_builtins_from_entry_points():
    assert "majority" in available()
    assert isinstance(get_aggregator("majority"), Majority)


def test_unknown_aggregator_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown aggregator 'nope'"):
        get_aggregator("nope")


def test_user_aggregator_registers_by_decorator():
    @aggregator("always-first")
    class First:
        def params(self):
            return {}

        def __call__(self, task, candidates):
            return Decision(answer=candidates[0].answer, confidence=1.0, aggregator=self.name)

    assert get_aggregator("always-first")(TASK, cands("x", "y")).answer == "x"


def test_self_agreement_prefers_the_answer_the_model_states_usc_the_response_number():
    from manyminds.aggregators.selection import read_selection
    from manyminds.strategies import SelfAgreement, UniversalSelfConsistency

    task = Task(question="q")
    cands = [Candidate(index=i, text=f"The answer is {a}.", answer=a) for i, a in enumerate(["42", "42", "41"])]
    reply = "The most consistent answer is 42 (Response 3)."
    assert read_selection(reply, task, cands, "answer").answer == "42"
    assert read_selection(reply, task, cands, "number").answer == "41"
    assert read_selection("The most consistent answer is 7 (Response 3).", task, cands, "answer").answer == "41"
    assert SelfAgreement(n=3).aggregation().params["prefer"] == "answer"
    assert "prefer" not in UniversalSelfConsistency(n=3).aggregation().params
