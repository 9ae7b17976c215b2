"""Aggregators beyond majority, stopping rules, re-aggregation and pools."""

import json
import random
import math
import sqlite3
import subprocess
import sys

import pytest

from manyminds.aggregators import ModelConsistency, RPC, WeightedMajority, get_aggregator
from manyminds.backends import Scripted
from manyminds.cache import GenerationCache
from manyminds.errors import CapabilityError, ConfigError
from manyminds.pools import load_pool, write_pool
from manyminds.reaggregate import reaggregate
from manyminds.stopping import ESC, AdaptiveConsistency, beta_leader_probability, parse_rule, replay
from manyminds.strategies import RankedVote, SelfConsistency, UniversalSelfConsistency
from manyminds.strategies.ranked import borda, parse_ranking
from manyminds.types import AnswerFormat, Candidate, Generation, Task, TokenLogprob, Verdict

TASK = Task(question="q", gold="12")


def cand(i, answer, logprob=None, text=None, source="sample", score=None):
    lps = None if logprob is None else tuple(TokenLogprob(token="t", logprob=logprob) for _ in range(4))
    return Candidate(
        index=i, text=text or f"path {i}", answer=answer, source=source,
        generation=Generation(text=text or f"path {i}", index=i, logprobs=lps),
        verdict=None if score is None else Verdict(score=score, passed=score >= 0.5, verifier="v"),
    )


# -- weighted ---------------------------------------------------------------------------


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


# -- RPC ------------------------------------------------------------------------------


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


# -- model-level consistency ---------------------------------------------------------------


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


# -- stopping rules ---------------------------------------------------------------------------


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


# -- re-aggregation and pools -----------------------------------------------------------------


def test_reaggregate_a_stored_run_makes_no_generation(tmp_path):
    backend = Scripted(["The answer is 12.", "The answer is 12.", "The answer is 13."])
    tasks = [Task(question=f"What is {i} + 12?", gold="12") for i in range(3)]
    with GenerationCache(tmp_path / "c.db") as cache:
        results = SelfConsistency(n=6).solve_many(tasks, backend=backend, cache=cache)
        cache.runs.record("sc", results)
    calls = backend.calls
    report = reaggregate(tmp_path / "c.db", "majority", stop="esc:2")
    assert backend.calls == calls
    assert report.questions == 3 and report.accuracy == 1.0 and report.mean_samples == 2  # the first two agree
    assert reaggregate(results, "majority", cap=3).mean_samples == 3


def _write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _consol_pool(path, questions=200, samples=40, seed=0):
    """A pool in the ConSol format (extracted option indices as floats, token counts), drawn so that
    each question's samples mostly agree on one option, as recorded pools do."""
    rng = random.Random(seed)
    rows = []
    for q in range(questions):
        gold = rng.randint(1, 5)
        favourite = gold if rng.random() < 0.75 else rng.randint(1, 5)
        answers = [f"{favourite if rng.random() < 0.7 else rng.randint(1, 5)}.0" for _ in range(samples)]
        rows.append({"id": q, "gold": str(gold), "answers": answers, "tokens": [str(rng.randint(50, 300))] * samples})
    return _write_lines(path, rows)


def test_pool_round_trip_and_published_formats(tmp_path):
    results = SelfConsistency(n=3).solve_many([TASK], backend=Scripted(["The answer is 12."]))
    assert write_pool(tmp_path / "p.jsonl", results) == 1
    (q,) = load_pool(tmp_path / "p.jsonl")
    assert [c.answer for c in q.candidates] == ["12", "12", "12"] and q.task.gold == "12"
    esc = load_pool(_write_lines(tmp_path / "esc.jsonl", [
        {"question": "Take the last letters of 'Ada Lovelace'.", "answer": "ae",
         "generated_answer": ["The last letters are a and e. The answer is ae.", "The answer is ee."]}]))
    assert [c.answer for c in esc[0].candidates] == ["ae", "ee"] and esc[0].task.gold == "ae"
    medqa = load_pool(_consol_pool(tmp_path / "consol.jsonl", questions=3))
    assert medqa[0].candidates[0].answer in {"1", "2", "3", "4", "5"} and medqa[0].task.gold in {"1", "2", "3", "4", "5"}
    assert medqa[0].candidates[0].generation.completion_tokens >= 50


def test_a_consol_pool_of_numbers_keeps_their_value(tmp_path):
    path = _write_lines(tmp_path / "gsm.jsonl", [
        {"id": 1, "gold": "106.12", "answers": ["106.12", "106", 106.12, "106.120", None], "tokens": [1, 2, 3, 4, 5]},
        {"id": 2, "gold": "-10", "answers": ["-10.0", "10", "-10"]},
    ])
    first, second = load_pool(path)
    assert [c.answer for c in first.candidates] == ["106.12", "106", "106.12", "106.12", None]
    assert reaggregate([first, second], "majority").correct == 2  # -10 is not read as 10


def test_reaggregate_cli_on_a_pool(tmp_path):
    path = _consol_pool(tmp_path / "consol.jsonl")
    proc = subprocess.run(
        [sys.executable, "-m", "manyminds.cli", "reaggregate", str(path), "--stop", "esc", "--json"],
        capture_output=True, text=True, timeout=300, check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    full, esc = rows
    assert full["questions"] == 200 and full["mean_samples"] == 40
    assert esc["mean_samples"] < 20 and abs(esc["accuracy"] - full["accuracy"]) < 0.05


BAD_POOL_LINES = {
    "a number": ("42", "must be a JSON object, got int"),
    "a list": ("[1, 2, 3]", "must be a JSON object, got list"),
    "samples that are not a list": ('{"samples": 5}', "'samples' must be a list"),
    "a sample whose text is a number": ('{"samples": [{"text": 7}]}', "'text' must be a string"),
    "an ESC line without a question": ('{"answer": "ae", "generated_answer": ["x"]}', "ESC pool record .*question"),
    "an ESC line whose samples are not texts": (
        '{"question": "q", "answer": "ae", "generated_answer": [1]}', "ESC pool record"),
    "a ConSol line whose answers are not a list": ('{"gold": "1", "answers": 3}', "ConSol pool record"),
    "a ConSol line with too few token counts": ('{"gold": "1", "answers": ["1", "2"], "tokens": [1]}', "'tokens' has 1"),
    "an unknown record": ('{"whatever": 1}', "unknown pool format"),
    "not JSON": ("{nope", "not JSON"),
}


@pytest.mark.parametrize("name", list(BAD_POOL_LINES))
def test_bad_pool_lines_are_one_clear_error_naming_the_line(tmp_path, name):
    line, message = BAD_POOL_LINES[name]
    path = tmp_path / "bad.jsonl"
    path.write_text('{"samples": [{"text": "The answer is 1."}]}\n' + line + "\n")
    with pytest.raises(ConfigError, match=message) as caught:
        load_pool(path)
    assert f"{path}:2" in str(caught.value)
    before = path.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "manyminds.cli", "reaggregate", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1
    assert "Traceback" not in proc.stderr and path.read_bytes() == before


def test_reaggregating_an_empty_pool_is_an_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="holds no questions"):
        reaggregate(tmp_path / "empty.jsonl")


def test_a_version_1_cache_migrates_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    with GenerationCache(path) as cache:
        cache.put("k", {"backend": {"kind": "x", "model": "m"}}, [Generation(text="kept", index=0)])
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE results")
    conn.execute("DROP TABLE runs")
    conn.execute("UPDATE manyminds_meta SET value='1' WHERE name='schema_version'")
    conn.commit()
    conn.close()
    with GenerationCache(path) as cache:
        assert cache.lookup("k", [0])[0].text == "kept" and cache.runs.all() == []


# -- selection and ranking strategies ---------------------------------------------------------


def test_usc_picks_by_response_number_for_free_text():
    def reply(messages, params, index):
        if "most consistent with the others" in messages[-1].content:
            return "The most consistent response is Response 2."
        return ["Paris, surely", "The answer is Paris.", "Lyon"][index % 3]

    backend = Scripted(reply)
    result = UniversalSelfConsistency(n=3).solve(Task(question="Capital of France?", format=AnswerFormat.TEXT), backend=backend)
    assert result.answer == "paris" and "selection: chose response 2" in result.trace


def test_borda_and_ranking_parse():
    assert borda([[2, 0, 1], [2, 1, 0]], 3) == [1.0, 1.0, 4.0]
    assert parse_ranking("Ranking: 3 > 1 > 2", 3) == [2, 0, 1]
    assert parse_ranking("Ranking: 3 > 1", 3) is None


def test_ranked_vote_uses_every_judge():
    judges = (Scripted(["Ranking: 2 > 1 > 3"]), Scripted(["Ranking: 2 > 3 > 1"]), Scripted(["no idea"]))
    backend = Scripted(["The answer is 11.", "The answer is 12.", "The answer is 13."])
    result = RankedVote(n=3, judges=judges).solve(TASK, backend=backend)
    assert result.answer == "12" and result.decision.aggregator == "borda"
    assert result.tally == {"11": 1.0, "12": 4.0, "13": 1.0}
    assert any("judge 3: ranking unreadable" in t for t in result.trace)


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
