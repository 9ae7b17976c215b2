"""Verifiers: the sandbox against hostile code, code benchmarks, math, judges, panels, reward."""

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from manyminds.backends import Scripted
from manyminds.datasets.code import humaneval_tasks, mbpp_tasks
from manyminds.types import Candidate, Generation, Task, TokenLogprob
from manyminds.verifiers import (
    GradeJudge, Limits, MathAnswer, PTrueJudge, RewardEndpoint, UnitTests, all_of, any_of, panel, weighted,
)
from tests.conftest import TEST_DATA
import math
from manyminds.errors import ConfigError

LIMITS = Limits(timeout=3, cpu_seconds=3, memory_mb=256, max_processes=8)


def run(coro):
    return asyncio.run(coro)


def cand(text, answer=None, index=0):
    return Candidate(index=index, text=text, answer=answer)


# The sandbox's own tests (hostile programs, both modes) are in test_sandbox.py.


# -- code benchmarks ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def unit_tests():
    return UnitTests(allow_code_execution=True, limits=Limits(timeout=10, memory_mb=512))


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail(unit_tests):
    tasks = humaneval_tasks(TEST_DATA / "humaneval" / "HumanEval-head.jsonl", limit=4)
    for task in tasks:
        good = run(unit_tests.verify(task, cand(f"```python\n{task.metadata['canonical']}\n```")))
        assert good.passed, (task.id, good.details)
        body_only = task.metadata["canonical"][len(task.metadata["prompt"]):]
        assert run(unit_tests.verify(task, cand(body_only))).passed, "a body completion continues the prompt"
        wrong = run(unit_tests.verify(task, cand(f"def {task.metadata['entry_point']}(*args):\n    return None")))
        assert not wrong.passed


def test_mbpp_canonical_solutions_pass_and_wrong_ones_fail(unit_tests):
    tasks = mbpp_tasks(TEST_DATA / "mbpp" / "mbpp-head.jsonl", limit=4)
    for task, other in zip(tasks, tasks[1:] + tasks[:1]):
        assert run(unit_tests.verify(task, cand(task.metadata["canonical"]))).passed, task.id
        assert not run(unit_tests.verify(task, cand(other.metadata["canonical"]))).passed


# -- math ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gold", "text", "ok"),
    [("0.5", "The answer is $\\frac{1}{2}$", True), ("\\frac{1}{2}", "\\boxed{\\dfrac12}", True),
     ("3", "x = 3", True), ("12", "The answer is 13.", False)],
)
def test_math_answer(gold, text, ok):
    assert run(MathAnswer().verify(Task(question="q", gold=gold), cand(text))).passed is ok


# -- judges ----------------------------------------------------------------------------------


def logprob_judge(p_true):

    def reply(messages, params, index):
        top = {"True": math.log(p_true), "False": math.log(1 - p_true)}
        first = max(top, key=top.get)
        return Generation(text=first, index=index, logprobs=(TokenLogprob(token=first, logprob=top[first], top=top),))

    return Scripted(reply)


def test_p_true_reads_logprobs():
    verdict = run(PTrueJudge(logprob_judge(0.8)).verify(Task(question="7+5?"), cand("12")))
    assert verdict.score == pytest.approx(0.8) and verdict.passed and verdict.details["method"] == "logprobs"


def test_p_true_samples_when_there_are_no_logprobs():
    judge = Scripted(["True", "False", "True", "true.", "no idea"], logprobs=False)
    verdict = run(PTrueJudge(judge, samples=5).verify(Task(question="7+5?"), cand("12")))
    assert verdict.score == pytest.approx(3 / 4) and verdict.details["method"] == "sampled"
    assert judge.requests[0].n == 5 and "Proposed answer: 12" in judge.requests[0].messages[0].content


def test_grade_judge_scales_one_to_ten():
    assert run(GradeJudge(Scripted(["Score: 10"])).verify(Task(question="q"), cand("a"))).score == 1.0
    low = run(GradeJudge(Scripted(["Score: 1"])).verify(Task(question="q"), cand("a")))
    assert low.score == 0.0 and not low.passed
    assert not run(GradeJudge(Scripted(["great"])).verify(Task(question="q"), cand("a"))).passed


def test_panel_by_vote_and_by_mean_keeps_each_verdict():
    judges = [PTrueJudge(logprob_judge(p)) for p in (0.9, 0.6, 0.2)]
    voted = run(panel(judges, "vote").verify(Task(question="q"), cand("a")))
    assert voted.passed and voted.score == pytest.approx(2 / 3) and len(voted.details["members"]) == 3
    mean = run(panel(judges, "mean", threshold=0.6).verify(Task(question="q"), cand("a")))
    assert mean.score == pytest.approx((0.9 + 0.6 + 0.2) / 3) and not mean.passed


def test_composites():
    yes, no = PTrueJudge(logprob_judge(0.9)), PTrueJudge(logprob_judge(0.1))
    task, c = Task(question="q"), cand("a")
    assert not run(all_of(yes, no).verify(task, c)).passed
    assert run(any_of(yes, no).verify(task, c)).passed
    w = run(weighted([yes, no], [3, 1]).verify(task, c))
    assert w.score == pytest.approx(0.7) and w.passed


def test_reward_ensembles_by_median_worst_case_and_uncertainty():
    from manyminds.verifiers import reward_ensemble

    models = [PTrueJudge(logprob_judge(p)) for p in (0.9, 0.8, 0.2)]
    task, c = Task(question="q"), cand("a")
    assert run(reward_ensemble(models, "median").verify(task, c)).score == pytest.approx(0.8)
    assert not run(reward_ensemble(models, "min").verify(task, c)).passed
    mean = (0.9 + 0.8 + 0.2) / 3
    variance = sum((s - mean) ** 2 for s in (0.9, 0.8, 0.2)) / 3
    penalised = run(reward_ensemble(models, "uncertainty", penalty=2.0).verify(task, c))
    assert penalised.score == pytest.approx(mean - 2 * variance) and penalised.verifier == "reward-uncertainty"
    agreeing = [PTrueJudge(logprob_judge(0.7)) for _ in range(3)]
    assert run(reward_ensemble(agreeing, "uncertainty").verify(task, c)).score == pytest.approx(0.7), \
        "members that agree lose nothing"
    assert reward_ensemble(models, "uncertainty", penalty=2.0).params()["penalty"] == 2.0
    with pytest.raises(ConfigError, match="penalty must be >= 0"):
        reward_ensemble(models, "uncertainty", penalty=-1.0)


@pytest.mark.integration
def test_p_true_with_the_embedded_model(local_backend):
    verdict = run(PTrueJudge(local_backend, samples=3).verify(Task(question="What is 2 + 2?"), cand("4")))
    assert 0 <= verdict.score <= 1 and verdict.details["method"] == "logprobs"  # the embedded model has logprobs


# -- reward model endpoint ---------------------------------------------------------------------


@pytest.fixture
def score_server():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            score = 2.0 if "12" in body["text_2"] else -2.0
            reply = json.dumps({"data": [{"index": 0, "score": score}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


def test_reward_endpoint(score_server):
    url, seen = score_server
    rm = RewardEndpoint("rm", url, scale="sigmoid")
    good = run(rm.verify(Task(question="What is 7 + 5?"), cand("The answer is 12.")))
    bad = run(rm.verify(Task(question="What is 7 + 5?"), cand("The answer is 13.")))
    assert good.passed and good.score == pytest.approx(0.8808, abs=1e-3) and not bad.passed
    assert seen[0] == {"model": "rm", "text_1": "What is 7 + 5?", "text_2": "The answer is 12."}


def judged_reply(messages, params, index):
    """Samples 12, 13, 12; a P(True) judge says (A) to 12 only, a grade judge gives 9."""
    text = messages[-1].content
    if "Proposed answer" in text:
        return "A" if "The answer is 12." in text.split("Proposed answer:")[1] else "B"
    if "Score: N" in text:
        return "Score: 9"
    return ["The answer is 12.", "The answer is 13.", "The answer is 12."][index % 3]


def test_p_true_can_show_the_other_samples_and_ask_in_the_papers_a_b_form():
    from manyminds.strategies import VerifiedVote
    from manyminds.verifiers import PTrueJudge

    backend = Scripted(judged_reply)
    judge = PTrueJudge(backend, form="ab", show_others=2, samples=3)
    result = VerifiedVote(n=3, verifier=judge).solve("What is 7 + 5?", backend=backend)
    asked = [r for r in backend.requests if "Proposed answer" in r.messages[-1].content]
    assert asked and all("(A) True" in r.messages[-1].content for r in asked)
    assert all("other answers to the question" in r.messages[-1].content for r in asked)
    assert {c.answer: c.verdict.score for c in result.candidates} == {"12": 1.0, "13": 0.0}
    with pytest.raises(ConfigError, match="form must be"):
        PTrueJudge(backend, form="yes-no")


def test_a_panel_passes_the_other_samples_to_the_judges_that_read_them():
    from manyminds.strategies import VerifiedVote
    from manyminds.verifiers import GradeJudge, PTrueJudge, panel

    backend = Scripted(judged_reply)
    jury = panel([PTrueJudge(backend, form="ab", show_others=2, samples=1), GradeJudge(backend)], combine="mean")
    assert jury.sees_other_samples
    VerifiedVote(n=3, verifier=jury).solve("What is 7 + 5?", backend=backend)
    p_true = [r for r in backend.requests if "Proposed answer" in r.messages[-1].content]
    assert len(p_true) >= 3 and all("other answers to the question" in r.messages[-1].content for r in p_true)
    graded = [r for r in backend.requests if "Score: N" in r.messages[-1].content]
    assert len(graded) == 3 and not any("other answers" in r.messages[-1].content for r in graded)
    assert not panel([GradeJudge(backend)]).sees_other_samples


def test_judges_see_the_reference_answer_only_when_asked():
    from manyminds.types import Candidate
    from manyminds.verifiers import GradeJudge, PTrueJudge

    task = Task(question="What is 7 + 5?", gold="12")
    candidate = Candidate(index=0, text="The answer is 12.", answer="12")
    assert "Reference answer" not in PTrueJudge(Scripted(["True"])).messages(task, candidate)[0].content
    assert "Reference answer: 12" in PTrueJudge(Scripted(["True"]), reference=True).messages(task, candidate)[0].content
    backend = Scripted(["Score: 9"])
    import asyncio

    asyncio.run(GradeJudge(backend, reference=True).verify(task, candidate))
    assert "Reference answer: 12" in backend.requests[0].messages[0].content


def test_pairwise_agreement_is_mbr_with_a_judged_utility_and_judges_each_pair_once_per_order():
    import re

    from manyminds.aggregators import get_aggregator
    from manyminds.strategies import BestOfN
    from manyminds.verifiers.agreement import PairwiseAgreement

    replies = ["It is seven, 7.", "Seven: 7", "I think 9.", "7 it is."]  # no two alike as text

    def judge(messages, params, index):
        first, second = re.findall(r"Reply \d:\n(.*?)(?:\n\n|$)", messages[-1].content, re.S)
        same = re.findall(r"\d", first)[-1] == re.findall(r"\d", second)[-1]
        return "True" if same else "False"

    judge_backend = Scripted(judge)
    verifier = PairwiseAgreement(judge_backend)
    result = BestOfN(n=4, verifier=verifier, prompt="raw").solve(
        Task(question="What is 3 + 4?", format="text"), backend=Scripted(replies))
    assert result.decision.chosen == 0 and result.text == "It is seven, 7."  # agrees with 2 of 3
    scores = {c.index: c.verdict.score for c in result.candidates}
    assert scores == {0: pytest.approx(2 / 3), 1: pytest.approx(2 / 3), 2: 0.0, 3: pytest.approx(2 / 3)}
    assert len(judge_backend.requests) == 6 * 2  # 6 pairs, both orders, shared by the pair's two candidates
    again = get_aggregator("mbr", utility="judge")(result.task, result.candidates)
    assert again.chosen == 0 and again.confidence == pytest.approx(2 / 3)
    plain = [c.model_copy(update={"verdict": None}) for c in result.candidates]
    assert "no judged pairs" in get_aggregator("mbr", utility="judge")(result.task, plain).params["note"]
