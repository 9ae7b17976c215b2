"""The benchmark runner: comparisons on the same questions, shared samples, resume, failures; the scorers."""

import asyncio
import sys
import textwrap

import pytest
from tests.conftest import count_rows, kill_when_stored

import manyminds as mm
from manyminds.backends import Scripted
from manyminds.bench import TooManyFailures
from manyminds.bench.scoring import AnswerScorer, PairwiseJudgeScorer, PlanScorer, read_preference
from manyminds.cache import GenerationCache
from manyminds.errors import BackendError
from manyminds.strategies import SelfConsistency
from manyminds.types import AnswerFormat, Candidate, Decision, Result, Task, Usage

GOLD_REPLY = "The answer is 18."


def _result(task: Task, answer: str | None, text: str = "") -> Result:
    candidates = [Candidate(index=0, text=text or f"The answer is {answer}.", answer=answer)]
    return Result(task=task, answer=answer, confidence=1.0, tally={answer: 1} if answer else {},
                  candidates=candidates, usage=Usage(), decision=Decision(answer=answer), strategy="test")


def test_strategies_and_budgets_share_samples_on_the_same_questions(tmp_path):
    backend = Scripted([GOLD_REPLY, "The answer is 3.", GOLD_REPLY])
    report = mm.bench.run("gsm8k", {"sc4": SelfConsistency(n=4), "sc8": SelfConsistency(n=8)},
                          backend=backend, cache=tmp_path / "c.db", limit=6, progress=False)
    small, large = report.runs
    assert small.questions == large.questions == 6
    assert [r.task.id for r in small.results] == [r.task.id for r in large.results]
    assert small.usage.cached_samples == 0 and large.usage.cached_samples == 6 * 4  # n=8 reuses the first 4
    assert backend.samples_generated == 6 * 8
    assert small.meta["dataset"] == "gsm8k" and small.meta["dataset_version"] and small.meta["scorer"] == "answer"
    assert small.meta["backend"] == {"kind": "scripted", "model": "scripted"} and small.meta["code_version"]
    # the first question's gold is 18: two of three replies say so
    assert small.records[0].score.value == 1.0 and "gold '18'" in small.records[0].score.detail
    with GenerationCache(tmp_path / "c.db", read_only=True) as store:
        rows = store.runs.rows(large.run_id)
        assert len(rows) == 6 and len(rows[0]["result"].candidates) == 8
        info = store.runs.info(large.run_id)
        assert info["status"] == "finished" and info["meta"]["limit"] == 6 and info["params"]["n"] == 8


def test_rerunning_the_same_comparison_resumes_it_and_generates_nothing(tmp_path):
    db = tmp_path / "c.db"
    first = mm.bench.run("gsm8k", [SelfConsistency(n=3)], backend=Scripted([GOLD_REPLY]), cache=db, limit=4,
                         progress=False)
    again_backend = Scripted([GOLD_REPLY])
    again = mm.bench.run("gsm8k", [SelfConsistency(n=3)], backend=again_backend, cache=db, limit=4, progress=False)
    assert again.runs[0].resumed and again.runs[0].run_id == first.runs[0].run_id
    assert again_backend.samples_generated == 0
    assert again.runs[0].accuracy == first.runs[0].accuracy
    # what the run cost stays the run's; what this attempt paid is nothing (it was all read back)
    assert again.runs[0].usage == first.runs[0].usage and first.runs[0].usage.calls > 0
    assert again.runs[0].usage_this_attempt.calls == 0 and again.runs[0].usage_this_attempt.samples == 0
    assert first.runs[0].usage_this_attempt == first.runs[0].usage
    other = mm.bench.run("gsm8k", [SelfConsistency(n=3)], backend=Scripted([GOLD_REPLY]), cache=db, limit=4, seed=1,
                         progress=False)
    assert not other.runs[0].resumed  # other questions, another run


def test_a_run_in_which_no_question_succeeds_fails_after_one_chunk(tmp_path):
    from manyminds.bench.runner import NothingSucceeded

    tasks = [Task(question=f"Question {k} POISON", gold="18", id=f"q{k}") for k in range(12)]
    backend = Scripted(_failing_on("POISON"))
    with pytest.raises(NothingSucceeded, match="none of the 4 questions tried succeeded; the first error: "
                                               "BackendError: the server said no") as failed:
        mm.bench.run(tasks, [SelfConsistency(n=2)], backend=backend, cache=tmp_path / "c.db", progress=False, chunk=4)
    assert failed.value.exit_status == 1
    with GenerationCache(tmp_path / "c.db", read_only=True) as store:
        (run,) = store.runs.all()
        assert run["status"] == "failed: no question succeeded" and len(store.runs.rows(run["id"])) == 4


def _failing_on(word: str):
    def reply(messages, params, index):
        if word in messages[-1].content:
            raise BackendError("the server said no (HTTP 400)")
        return GOLD_REPLY
    return reply


def test_a_question_that_fails_is_recorded_with_its_error_and_the_run_goes_on(tmp_path):
    tasks = [Task(question=f"Question {k}: what is 9 + 9?", gold="18", id=f"q{k}") for k in range(5)]
    tasks[2] = Task(question="Question 2 POISON", gold="18", id="q2")
    report = mm.bench.run(tasks, [SelfConsistency(n=2)], backend=Scripted(_failing_on("POISON")),
                          cache=tmp_path / "c.db", progress=False, chunk=5)
    run = report.runs[0]
    assert run.failures == 1 and run.records[2].error.startswith("BackendError: the server said no")
    assert run.records[2].result is None and len(run.scored) == 4 and run.accuracy == 1.0
    with GenerationCache(tmp_path / "c.db", read_only=True) as store:
        assert store.runs.info(run.run_id)["status"] == "finished, 1 failed"
        assert store.runs.rows(run.run_id)[2]["error"].startswith("BackendError")
    # a retry once the question is fixed: the failed question is run again, the others are kept
    fixed = mm.bench.run(tasks, [SelfConsistency(n=2)], backend=Scripted(_failing_on("NOTHING")),
                         cache=tmp_path / "c.db", progress=False)
    assert fixed.runs[0].resumed and fixed.runs[0].failures == 0 and fixed.runs[0].accuracy == 1.0


def test_max_failures_ends_the_run_after_recording_what_was_done(tmp_path):
    tasks = [Task(question=f"POISON {k}", gold="18", id=f"q{k}") for k in range(3)] + \
        [Task(question="fine", gold="18", id="ok")]
    with pytest.raises(TooManyFailures, match="2 questions failed .more than --max-failures 1.*rerun to resume"):
        mm.bench.run(tasks, [SelfConsistency(n=1)], backend=Scripted(_failing_on("POISON")), cache=tmp_path / "c.db",
                     progress=False, chunk=2, max_failures=1)
    with GenerationCache(tmp_path / "c.db", read_only=True) as store:
        (info,) = store.runs.all()
        assert info["status"] == "stopped: too many failures" and info["results"] == 2 and info["failed"] == 2


KILLED_RUN = textwrap.dedent("""
    import sys
    import manyminds as mm
    from manyminds.backends import Scripted
    from manyminds.strategies import SelfConsistency
    backend = Scripted(["The answer is 18."], per_sample_latency=float(sys.argv[2]), model="slow")
    mm.bench.run("gsm8k", [SelfConsistency(n=2)], backend=backend, cache=sys.argv[1], limit=12, chunk=2,
                 concurrency=2, progress=False)
""")


def _stored_results(db) -> int:
    return count_rows(db, "results")


def test_a_run_killed_mid_way_resumes_with_the_same_command(tmp_path):
    db = tmp_path / "c.db"
    done = kill_when_stored([sys.executable, "-c", KILLED_RUN, str(db), "0.2"], db, "results", 4, timeout=60)
    assert 4 <= done < 12, "the run must be killed mid-way"
    backend = Scripted([GOLD_REPLY], model="slow")
    report = mm.bench.run("gsm8k", [SelfConsistency(n=2)], backend=backend, cache=db, limit=12, chunk=2,
                          concurrency=2, progress=False)
    run = report.runs[0]
    assert run.resumed and run.questions == 12 and run.failures == 0
    # recorded questions were not run again; their samples (and any cached since) were not generated again
    assert backend.samples_generated <= (12 - done) * 2
    assert _stored_results(db) == 12


def test_answer_scorer_compares_by_value_letter_and_polarity():
    scorer = AnswerScorer()
    number = Task(question="?", gold="1000")
    assert asyncio.run(scorer.score(_result(number, "1000"))).value == 1.0
    assert asyncio.run(scorer.score(_result(number, "100"))).value == 0.0
    math = Task(question="?", format=AnswerFormat.MATH, gold="\\frac{1}{2}")
    assert asyncio.run(scorer.score(_result(math, "0.5"))).value == 1.0
    choice = Task(question="?", format=AnswerFormat.CHOICE, choices=("x", "y"), gold="B")
    assert asyncio.run(scorer.score(_result(choice, "B"))).value == 1.0
    assert asyncio.run(scorer.score(_result(choice, "A"))).value == 0.0
    polar = Task(question="?", format=AnswerFormat.YES_NO, gold="yes")
    assert asyncio.run(scorer.score(_result(polar, "yes"))).value == 1.0
    assert asyncio.run(scorer.score(_result(polar, "no"))).value == 0.0


def test_plan_scorer_accepts_any_valid_plan_and_says_where_an_invalid_one_fails():
    task = mm.datasets.load("blocksworld", limit=1)[0]  # red on blue, yellow on orange; goal: orange on red
    scorer = PlanScorer()
    longer = "(unstack d c) (put-down d) (unstack a b) (stack a d) (pick-up c) (stack c a)"
    assert longer != task.gold
    right = asyncio.run(scorer.score(_result(task, longer)))
    assert right.value == 1.0 and right.detail == "valid plan of 6 steps"
    wrong = asyncio.run(scorer.score(_result(task, "(pick-up c) (stack c a)")))
    assert wrong.value == 0.0
    assert wrong.detail == "step 1 (pick-up c) cannot run: needs the orange block to be clear"
    short = asyncio.run(scorer.score(_result(task, "(unstack d c) (put-down d)")))
    assert short.detail == "after 2 steps the goal is not reached: needs the orange block on top of the red block"


def test_pairwise_judge_asks_both_orders_so_position_bias_cancels():
    task = Task(question="Write a haiku.", format=AnswerFormat.TEXT, metadata={"reference": "REFERENCE TEXT"})
    ours = _result(task, "a haiku", text="OUR HAIKU")
    always_a = Scripted(["A"])
    assert asyncio.run(PairwiseJudgeScorer(always_a).score(ours)).value == 0.5
    assert len(always_a.requests) == 2
    first_prompts = {r.messages[0].content.index("OUR HAIKU") < r.messages[0].content.index("REFERENCE TEXT")
                     for r in always_a.requests}
    assert first_prompts == {True, False}  # ours shown first once, second once

    def prefers_ours(messages, params, index):
        text = messages[0].content
        return "Response A" if text.index("OUR HAIKU") < text.index("REFERENCE TEXT") else "B"
    assert asyncio.run(PairwiseJudgeScorer(Scripted(prefers_ours)).score(ours)).value == 1.0
    assert read_preference("**B** is better") == "B" and read_preference("A or B") is None


@pytest.mark.integration
def test_code_is_scored_by_its_unit_tests(tmp_path):
    from manyminds.bench.scoring import UnitTestScorer
    from manyminds.verifiers import UnitTests

    task = mm.datasets.load("humaneval", limit=1)[0]
    scorer = UnitTestScorer(UnitTests(allow_code_execution=True))
    good = _result(task, "code", text=f"```python\n{task.metadata['canonical']}\n```")
    bad = _result(task, "code", text="```python\ndef has_close_elements(numbers, threshold):\n    return False\n```")
    assert asyncio.run(scorer.score(good)).value == 1.0
    assert asyncio.run(scorer.score(bad)).value == 0.0


def test_a_verifier_that_reads_the_gold_is_an_oracle_refused_unless_named(tmp_path):
    from manyminds.errors import ConfigError
    from manyminds.strategies import BestOfN
    from manyminds.verifiers.math_answer import MathAnswer

    tasks = [Task(question=f"What is {k} + {k}?", gold=str(2 * k), id=f"q{k}") for k in range(3)]
    strategy = BestOfN(n=2, verifier=MathAnswer())
    with pytest.raises(ConfigError, match="an oracle"):
        mm.bench.run(tasks, [strategy], backend=Scripted([GOLD_REPLY]), progress=False)
    report = mm.bench.run(tasks, {"best-of-n": strategy}, backend=Scripted([GOLD_REPLY]), progress=False,
                          oracle=True, cache=tmp_path / "c.db")
    assert report.runs[0].label == "best-of-n [oracle]" and report.runs[0].meta["oracle"] is True
    from manyminds.bench.report import load_runs, write_report

    written = write_report(load_runs(tmp_path / "c.db"), tmp_path / "r")
    assert "[oracle]" in written["markdown"].read_text()


def test_bench_unit_test_verifiers_see_only_the_visible_tests():
    from manyminds.verifiers.base import VerifierOptions, is_oracle, make_verifier
    from manyminds.verifiers.unit_tests import visible_tests

    options = VerifierOptions(allow_code_execution=True, allow_unisolated_execution=True)
    assert is_oracle(make_verifier("unit-tests", options))
    visible = make_verifier("unit-tests", VerifierOptions(allow_code_execution=True, allow_unisolated_execution=True,
                                                          visible_tests_only=True))
    assert not is_oracle(visible) and visible.tests == "visible"
    mbpp = Task(question="q", format="code", metadata={"tests": "assert f(1) == 2\nassert f(2) == 4\nassert f(3) == 6"})
    assert visible_tests(mbpp).strip() == "assert f(1) == 2"
    humaneval = Task(question="q", format="code", metadata={
        "entry_point": "f", "prompt": 'def f(x):\n    """Doubles.\n    >>> f(2)\n    4\n    """\n',
        "tests": "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(5) == 10\n"})
    assert visible_tests(humaneval) == "def check(candidate):\n    assert (f(2)) == (4)\n"


def test_a_plan_is_never_evaluated_on_the_questions_it_was_tuned_on(tmp_path):
    from manyminds.strategies.discovery import DiversityPlan, discover

    tasks = mm.datasets.load("arithmetic", limit=30)
    plan = discover(tasks, backend=Scripted(["Approaches: a, b\nPersonas: p", GOLD_REPLY]), propose_on=2, held_out=4,
                    approaches=1, personas=1, keep=1)
    assert plan.seen == tuple(t.id for t in tasks[:6])
    plan.save(tmp_path / "plan.json")
    assert DiversityPlan.load(tmp_path / "plan.json").seen == plan.seen
    report = mm.bench.run("arithmetic", [SelfConsistency(n=1)], backend=Scripted([GOLD_REPLY]), limit=10,
                          progress=False, exclude=plan.seen)
    evaluated = [r.task.id for r in report.runs[0].records]
    assert len(evaluated) == 10 and not set(evaluated) & set(plan.seen)
    assert report.runs[0].meta["excluded"] == 6
