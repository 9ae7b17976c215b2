"""Execution-based voting for code: programs grouped by what they do on the visible inputs, in the sandbox."""

import pytest

from manyminds.aggregators import get_aggregator, Majority
from manyminds.aggregators.execution import ExecutionVote
from manyminds.answers import extract
from manyminds.backends import Scripted
from manyminds.errors import CapabilityError
from manyminds.strategies import make
from manyminds.types import AnswerFormat, Candidate, Task
from manyminds.verifiers.probe import calls

ADD = Task(question="Write add(a, b).", format=AnswerFormat.CODE, id="add",
           metadata={"tests": "assert add(1, 2) == 3\nassert add(2, 2) == 4\nassert add(0, 5) == 5",
                     "probe_inputs": ["add(2, 2)", "add(-1, 7)"]})

CORRECT = ["def add(a, b):\n    return a + b", "def add(x, y):\n    return sum([x, y])",
           "def add(a, b):\n    total = b\n    total += a\n    return total"]
WRONG = "def add(a, b):\n    return a - b"  # written the same way twice: text majority's winner


def candidates(task, programs):
    return [Candidate(index=i, text=f"```python\n{p}\n```", answer=extract(task, f"```python\n{p}\n```"))
            for i, p in enumerate(programs)]


@pytest.fixture(scope="module")
def vote():
    return ExecutionVote(allow_code_execution=True, timeout=2)


def test_programs_that_behave_alike_vote_together_where_text_majority_picks_the_repeated_wrong_one(vote):
    pool = candidates(ADD, [WRONG, CORRECT[0], WRONG, CORRECT[1], CORRECT[2]])
    assert Majority()(ADD, pool).answer == pool[0].answer  # the wrong program, written twice
    decision = vote(ADD, pool)
    assert decision.chosen == 1 and decision.answer == pool[1].answer
    assert decision.params["groups"] == [3, 2] and decision.params["meets_visible"] == [True, False]
    assert decision.confidence == pytest.approx(3 / 5)


def test_the_visible_examples_rank_a_smaller_group_first_unless_told_not_to(vote):
    pool = candidates(ADD, [WRONG, WRONG, "def add(a, b):\n    return b - a", CORRECT[0],
                            "def add(a, b):\n  return a+b  # same"])
    pool[1] = pool[1].model_copy(update={"text": pool[1].text + "\n"})
    assert vote(ADD, pool).chosen == 3  # {3, 4} meets add(1, 2) == 3; the larger {0, 1} does not
    by_size = ExecutionVote(allow_code_execution=True, use_expected=False)(ADD, pool)
    assert by_size.chosen == 0 and by_size.params["groups"][0] == 2


def test_probe_inputs_split_programs_the_visible_test_cannot(vote):
    lucky = "def add(a, b):\n    return a * b + 1"  # add(1, 2) == 3 too
    task = ADD.model_copy(update={"metadata": {**ADD.metadata, "probe_inputs": []}})
    pool = candidates(task, [lucky, lucky + "\n\n# again", CORRECT[0]])
    assert vote(task, pool).params["groups"] == [3]  # one input: all alike
    split = vote(ADD, candidates(ADD, [lucky, lucky + "\n\n# again", CORRECT[0]]))
    assert sorted(split.params["groups"]) == [1, 2]


def test_programs_that_hang_crash_or_return_what_cannot_cross_do_not_vote(vote):
    pool = candidates(ADD, ["def add(a, b):\n    while True:\n        pass",
                            "def add(a, b):\n    raise SystemExit(0)",
                            "class Yes:\n    def __eq__(self, other):\n        return True\n"
                            "def add(a, b):\n    return Yes()",
                            CORRECT[1]])
    decision = vote(ADD, pool)
    assert decision.chosen == 3 and decision.params["failed"] == 3 and decision.params["groups"] == [1]


def test_humaneval_style_tasks_probe_the_entry_point_through_candidate():
    task = Task(question="q", format=AnswerFormat.CODE, id="HumanEval/0", metadata={
        "prompt": "def double(x):\n    \"\"\"Twice x.\n    >>> double(2)\n    4\n    \"\"\"\n",
        "entry_point": "double",
        "tests": "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(5) == 10\n"})
    assert [c.expression for c in calls(task)] == ["double(2)"]
    bodies = ["    return x * 2\n", "    return x + x\n", "    return x ** 2\n"]  # completions of the body
    pool = [Candidate(index=i, text=b, answer=extract(task, b)) for i, b in enumerate(bodies)]
    decision = ExecutionVote(allow_code_execution=True)(task, pool)
    # x ** 2 also gives 4 on the one visible input: all three agree, and the earliest answers
    assert decision.params["groups"] == [3] and decision.chosen == 0


def test_without_inputs_or_outside_code_it_is_the_text_majority_and_says_so(vote):
    free = Task(question="q", format=AnswerFormat.CODE)
    pool = candidates(free, [WRONG, WRONG, CORRECT[0]])
    decision = vote(free, pool)
    assert decision.answer == pool[0].answer and "no inputs" in decision.params["note"]
    number = Task(question="q")
    assert "not a code task" in vote(number, [Candidate(index=0, text="4", answer="4")]).params["note"]


def test_running_code_needs_the_opt_in(monkeypatch):
    monkeypatch.delenv("MANYMINDS_ALLOW_CODE_EXECUTION", raising=False)
    with pytest.raises(CapabilityError):
        get_aggregator("execution")


def test_a_strategy_votes_by_execution_from_its_spec_and_records_how():
    replies = [f"```python\n{p}\n```" for p in [WRONG, CORRECT[0], WRONG, CORRECT[1], CORRECT[2]]]
    strategy = make("self-consistency", 5, aggregator="execution:allow_code_execution=true,timeout=5")
    result = strategy.solve(ADD, backend=Scripted(replies))
    assert result.decision.aggregator == "execution" and result.decision.chosen == 1
    assert "return a + b" in result.text
    assert result.decision.params["timeout"] == 5 and "allow_code_execution" not in result.decision.params


def test_the_command_lines_code_flag_reaches_the_aggregator(monkeypatch):
    from manyminds.cli import _aggregator_spec

    monkeypatch.delenv("MANYMINDS_ALLOW_CODE_EXECUTION", raising=False)
    with pytest.raises(CapabilityError):
        _aggregator_spec("execution")
    spec = _aggregator_spec("execution:timeout=3", allow_code=True)
    assert spec.params == {"timeout": 3, "allow_code_execution": True}
    assert _aggregator_spec("majority", allow_code=True).params == {}  # only to those that take it
