"""Majority vote: ties, abstention, confidence, and the plugin registry."""

import pytest

from manyminds.aggregators import Majority, aggregator, available, get_aggregator
from manyminds.errors import ConfigError
from manyminds.types import AnswerFormat, Candidate, Decision, Task
import math
from manyminds.aggregators import ModelConsistency, RPC, WeightedMajority
from manyminds.backends import Scripted
from manyminds.errors import CapabilityError
from manyminds.strategies import SelfConsistency, UniversalSelfConsistency
from manyminds.strategies.ranked import borda, parse_ranking
from manyminds.types import Generation, TokenLogprob, Verdict

TASK = Task(question="q", gold="12")


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
    from manyminds.strategies import SelfAgreement

    task = Task(question="q")
    cands = [Candidate(index=i, text=f"The answer is {a}.", answer=a) for i, a in enumerate(["42", "42", "41"])]
    reply = "The most consistent answer is 42 (Response 3)."
    assert read_selection(reply, task, cands, "answer").answer == "42"
    assert read_selection(reply, task, cands, "number").answer == "41"
    assert read_selection("The most consistent answer is 7 (Response 3).", task, cands, "answer").answer == "41"
    assert SelfAgreement(n=3).aggregation().params["prefer"] == "answer"
    assert "prefer" not in UniversalSelfConsistency(n=3).aggregation().params



def cand(i, answer, logprob=None, text=None, source="sample", score=None):
    lps = None if logprob is None else tuple(TokenLogprob(token="t", logprob=logprob) for _ in range(4))
    return Candidate(
        index=i, text=text or f"path {i}", answer=answer, source=source,
        generation=Generation(text=text or f"path {i}", index=i, logprobs=lps),
        verdict=None if score is None else Verdict(score=score, passed=score >= 0.5, verifier="v"),
    )


def test_weighted_by_verifier_score():
    cands = [cand(0, "12", score=0.9), cand(1, "13", score=0.3), cand(2, "13", score=0.3), cand(3, None, score=1.0)]
    d = WeightedMajority()(TASK, cands)
    assert d.answer == "12" and d.tally == pytest.approx({"12": 0.9, "13": 0.6})
    assert d.confidence == pytest.approx(0.9 / 1.5)


def test_weighted_by_logprob_and_given():
    cands = [cand(0, "12", -0.1), cand(1, "13", -2.0), cand(2, "13", -2.0)]
    assert WeightedMajority(by="logprob")(TASK, cands).answer == "12"  # e^-0.1 > 2 e^-2
    given = WeightedMajority(by="given", weight=lambda c: 5.0 if c.answer == "13" else 1.0)
    assert given(TASK, cands).answer == "13"


def test_weighted_ties_and_abstention():
    tie = [cand(0, "7", score=0.5), cand(1, "9", score=0.5)]
    assert WeightedMajority()(TASK, tie).answer == "7"
    assert WeightedMajority()(TASK, [cand(0, None, score=1.0)]).answer is None


def test_weighted_needs_what_it_weighs():
    with pytest.raises(ConfigError, match="verified"):
        WeightedMajority()(TASK, [cand(0, "1")])
    with pytest.raises(CapabilityError, match="logprobs"):
        WeightedMajority(by="logprob")(TASK, [cand(0, "1")])


def test_rpc_prefers_probable_paths_over_many_improbable_ones():
    cands = [cand(0, "12", -0.1), cand(1, "12", -0.15), cand(2, "13", -2.0), cand(3, "13", -2.1),
             cand(4, "13", -2.2), cand(5, "14", -3.0)]
    assert get_aggregator("majority")(TASK, cands).answer == "13"
    d = RPC()(TASK, cands)
    assert d.answer == "12" and d.aggregator == "rpc" and d.params["pruned"] >= 1


def test_rpc_counts_identical_paths_once():
    cands = [cand(0, "12", -1.0, text="same"), cand(1, "12", -1.0, text="same"), cand(2, "13", -0.9, text="other")]
    d = RPC(prune=False)(TASK, cands)
    assert d.answer == "13" and d.tally["12"] == pytest.approx(math.exp(-1.0))


def test_rpc_without_logprobs_is_a_clear_error_and_all_abstain_is_no_answer():
    with pytest.raises(CapabilityError, match="RPC needs token logprobs"):
        RPC()(TASK, [cand(0, "12")])
    assert RPC()(TASK, [cand(0, None), cand(1, None)]).answer is None


def test_rpc_with_scripted_logprobs_through_self_consistency():
    def reply(messages, params, index):
        confident = index % 3 == 0
        lp = -0.05 if confident else -2.5
        text = "The answer is 12." if confident else "The answer is 13."
        return Generation(text=text, index=index, logprobs=tuple(TokenLogprob(token="x", logprob=lp) for _ in range(5)))

    backend = Scripted(reply)
    result = SelfConsistency(n=9, aggregator="rpc", logprobs=True).solve(TASK, backend=backend)
    assert backend.requests[0].params.logprobs
    assert result.answer == "12" and result.decision.aggregator == "rpc"


@pytest.mark.integration
def test_rpc_and_weighted_with_logprobs_from_the_embedded_model(local_backend, tmp_path):
    task = Task(question="What is 3 + 4?", gold="7")
    for name in ("rpc", "weighted"):
        strategy = SelfConsistency(n=6, prompt="direct", max_tokens=16, seed=4, logprobs=True,
                                   aggregator="majority" if name == "weighted" else name)
        result = strategy.solve(task, backend=local_backend, cache=tmp_path / "c.db")
        assert all(c.generation.logprobs for c in result.candidates)
        d = RPC()(task, result.candidates) if name == "rpc" else WeightedMajority(by="logprob")(task, result.candidates)
        assert d.answer is None or d.answer in result.tally


def test_model_consistency_trusts_confident_models_that_agree_with_others():
    cands = [cand(0, "A", source="m1"), cand(1, "A", source="m1"), cand(2, "A", source="m1"),
             cand(3, "B", source="m2"), cand(4, "C", source="m2"), cand(5, "D", source="m2"),
             cand(6, "A", source="m3"), cand(7, "B", source="m3"), cand(8, "A", source="m3")]
    d = ModelConsistency()(TASK, cands)
    assert d.answer == "A"
    weights = d.params["model_weights"]
    assert weights["m1"] > weights["m3"] > weights["m2"]


def test_model_consistency_groups_moa_proposers_across_layers():
    cands = [cand(0, "B", source="layer-1/proposer-1"), cand(1, "B", source="layer-2/proposer-1"),
             cand(2, "A", source="layer-1/proposer-2"), cand(3, "A", source="layer-2/proposer-2"),
             cand(4, "A", source="layer-1/proposer-3"), cand(5, "C", source="layer-2/proposer-3")]
    assert set(ModelConsistency()(TASK, cands).params["model_weights"]) == {"proposer-1", "proposer-2", "proposer-3"}


def test_borda_and_ranking_parse():
    assert borda([[2, 0, 1], [2, 1, 0]], 3) == [1.0, 1.0, 4.0]
    assert parse_ranking("Ranking: 3 > 1 > 2", 3) == [2, 0, 1]
    assert parse_ranking("Ranking: 3 > 1", 3) is None


# -- confidence-weighted, confidence-filtered, MBR, run-off, selective ------------------------


def lp_cand(i, answer, logprobs, text=None):
    tokens = tuple(TokenLogprob(token="t", logprob=x) for x in logprobs) if logprobs is not None else None
    body = text or f"path {i}: {answer}"
    return Candidate(index=i, text=body, answer=answer, generation=Generation(text=body, index=i, logprobs=tokens))


SPLIT = [lp_cand(0, "7", [-2, -2, -2]), lp_cand(1, "7", [-2, -3, -2]), lp_cand(2, "8", [-0.1, -0.1]),
         lp_cand(3, "8", [-0.2, -0.1]), lp_cand(4, "9", [-1, -1]), lp_cand(5, "7", [-2.5, -2])]


def test_cisc_weights_paths_by_softmax_confidence_and_is_majority_at_high_temperature():
    assert get_aggregator("majority")(TASK, SPLIT).answer == "7"
    assert get_aggregator("cisc")(TASK, SPLIT).answer == "8", "two confident paths outweigh three unsure ones"
    assert get_aggregator("cisc", temperature=1000.0)(TASK, SPLIT).answer == "7"
    plain = [Candidate(index=i, text="t", answer=a) for i, a in enumerate("778")]
    assert get_aggregator("cisc")(TASK, plain).params["note"] == "no logprobs: majority"
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        get_aggregator("cisc", temperature=0.0)


def test_deepconf_keeps_the_paths_whose_weakest_window_is_strongest():
    from manyminds.aggregators.deepconf import lowest_group_confidence

    tokens = [TokenLogprob(token="t", logprob=x) for x in (-0.1, -0.1, -3.0, -0.1, -0.1)]
    assert lowest_group_confidence(tokens, 2) == pytest.approx(-1.55), "the window over the -3.0 dip"
    assert lowest_group_confidence(tokens, 50) == pytest.approx(-3.4 / 5), "a path shorter than the window"
    top = [TokenLogprob(token="t", logprob=-0.5, top={"a": -0.1, "b": -4.0})]
    assert lowest_group_confidence(top, 1) == pytest.approx(2.05), "the paper's -mean(top-k) where given"
    decision = get_aggregator("deepconf", keep=0.5)(TASK, SPLIT)
    assert decision.answer == "8" and decision.params["kept"] == 3 and decision.params["of"] == 6
    assert get_aggregator("deepconf", keep=1.0, weighted=False)(TASK, SPLIT).answer == "7", "all kept: the vote"
    with pytest.raises(ConfigError, match=r"keep is a share of the paths in \(0, 1\]"):
        get_aggregator("deepconf", keep=1.5)


def test_run_off_goes_to_a_second_round_only_without_a_majority():
    decision = get_aggregator("run-off")(TASK, SPLIT)
    assert decision.answer == "8" and set(decision.params["second_round"]) == {"7", "8"}
    clear = SPLIT + [lp_cand(6, "7", [-3, -3]), lp_cand(7, "7", [-3, -3])]
    assert get_aggregator("run-off")(TASK, clear).answer == "7", "5 of 8: a majority, no second round"
    plain = [Candidate(index=i, text="t", answer=a) for i, a in enumerate("7789")]
    assert get_aggregator("run-off")(TASK, plain).params["note"] == "no logprobs: plurality"


def test_selective_answers_only_a_significant_vote():
    unanimous = [Candidate(index=i, text="t", answer="7") for i in range(12)]
    close = [Candidate(index=i, text="t", answer=a) for i, a in enumerate("7777778888")]
    assert get_aggregator("selective")(TASK, unanimous).answer == "7"
    abstained = get_aggregator("selective")(TASK, close)
    assert abstained.answer is None and abstained.params["would_answer"] == "7" and abstained.params["abstained"]
    nine_to_one = [Candidate(index=i, text="t", answer=a) for i, a in enumerate("7777777778")]
    assert get_aggregator("selective")(TASK, nine_to_one).answer is None, "9 to 1 is not significant at 0.05"
    assert get_aggregator("selective", alpha=0.4)(TASK, nine_to_one).answer == "7", "a looser level answers"
    with pytest.raises(ConfigError, match=r"alpha must be in \(0, 0.5\)"):
        get_aggregator("selective", alpha=0.9)


def test_mbr_picks_the_text_closest_to_the_others_and_exact_utility_is_the_vote():
    texts = ["Paris is the capital of France.", "The capital of France is Paris.", "Lyon.",
             "Paris is France's capital city."]
    free = [Candidate(index=i, text=t, answer=t.lower()) for i, t in enumerate(texts)]
    for utility in ("chrf", "rouge-l"):
        decision = get_aggregator("mbr", utility=utility)(Task(question="q", format=AnswerFormat.TEXT), free)
        assert decision.chosen != 2 and decision.answer == texts[decision.chosen].lower()
    votes = [Candidate(index=i, text=f"path {i}", answer=a) for i, a in enumerate("7887")]
    decision = get_aggregator("mbr", utility="exact", over="answer")(TASK, votes)
    assert decision.answer == "7" and decision.chosen == 0, "a 2-2 tie goes to the lowest index, as the vote's"


def test_self_consistency_on_free_text_decided_by_mbr_returns_the_consensus_sample():
    replies = ["Paris is the capital of France.", "Lyon, I think.", "The capital of France is Paris.",
               "Paris is the capital city of France."]
    result = SelfConsistency(n=4, prompt="raw", aggregator="mbr").solve(
        Task(question="What is the capital of France?", format=AnswerFormat.TEXT), backend=Scripted(replies))
    assert result.decision.aggregator == "mbr" and result.text in (replies[0], replies[3])


def test_prompt_weighted_vote_trusts_prompts_that_agree_with_the_others():
    from manyminds.aggregators import get_aggregator
    from manyminds.types import Source

    answers = [("p1", "7"), ("p1", "7"), ("p2", "7"), ("p2", "7")] + [("p3", "9")] * 5
    pool = [Candidate(index=i, text=a, answer=a, source=Source(prompt=p)) for i, (p, a) in enumerate(answers)]
    assert Majority()(TASK, pool).answer == "9"  # one prompt's five samples outvote two prompts
    decision = get_aggregator("prompt-weighted")(TASK, pool)
    # p3 disagrees with the others' plurality (7): (0 + 0.5) / (5 + 1); p1 and p2 with theirs (9): 0.5 / 3
    assert decision.params["prompt_weights"] == {"p1": pytest.approx(1 / 6, abs=1e-4),
                                                 "p2": pytest.approx(1 / 6, abs=1e-4),
                                                 "p3": pytest.approx(1 / 12, abs=1e-4)}
    assert decision.answer == "7"
    one = [c.model_copy(update={"source": Source(prompt="p")}) for c in pool]
    assert get_aggregator("prompt-weighted")(TASK, one).answer == "9"


def test_run_off_vote_asks_a_judge_in_both_orders_only_without_a_majority():
    import re

    from manyminds.strategies import make

    def sample(messages, params, index):  # 4 x "9", 3 x "7", 1 x "5": no majority
        if "Which answer is correct" in messages[-1].content:
            first = re.search(r"Answer 1:\n(.*?)\n", messages[-1].content).group(1)
            return "1" if "7" in first else "2"  # the judge always prefers 7, whichever is shown first
        return f"The answer is {[9, 9, 7, 9, 7, 5, 9, 7][index]}."

    backend = Scripted(sample)
    result = make("run-off-vote", 8).solve(Task(question="What is 3 + 4?"), backend=backend)
    assert result.answer == "7" and result.decision.params["second_round"] == {"9": 0, "7": 2}
    judged = [r for r in backend.requests if "Which answer is correct" in r.messages[-1].content]
    assert len(judged) == 2 and "9" in re.search(r"Answer 1:\n(.*?)\n", judged[0].messages[-1].content).group(1)
    assert SelfConsistency(n=8).solve(Task(question="What is 3 + 4?"), backend=Scripted(sample)).answer == "9"
    clear = Scripted(lambda m, p, i: "The answer is 9." if "Which" not in m[-1].content else "2")
    won = make("run-off-vote", 4).solve(Task(question="q"), backend=clear)
    assert won.answer == "9" and not [r for r in clear.requests if "Which" in r.messages[-1].content]


def test_a_split_judge_falls_to_path_probability_and_then_the_plurality():
    from manyminds.aggregators.runoff import RunOff
    from manyminds.types import Source

    ballots = cands("9", "9", "7", "7", "5")
    split = [Candidate(index=5, text="1", answer=None, source=Source(kind="selection", prompt="run-off/ab")),
             Candidate(index=6, text="1", answer=None, source=Source(kind="selection", prompt="run-off/ba"))]
    decision = RunOff(by="judge")(TASK, ballots + split)
    assert decision.answer == "9" and "plurality" in decision.params["note"]
