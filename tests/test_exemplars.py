"""Few-shot exemplars: the named sets, shown as turns or as one block, matched to a task's subject,
resampled per sample."""

from __future__ import annotations

import re

import pytest

from manyminds.backends import Scripted
from manyminds.errors import ConfigError
from manyminds.exemplars import Exemplars, named
from manyminds.strategies import DivSE, SelfConsistency
from manyminds.strategies.resampled import ExemplarResampling
from manyminds.types import AnswerFormat, Task


def test_the_standard_gsm8k_set_is_eight_training_problems_with_chains_of_thought():
    eight = named("gsm8k-cot-8")
    assert len(eight) == 8 and eight[0].question.startswith("Natalia sold clips")
    assert all(e.answer.splitlines()[-1].startswith("The answer is ") and "<<" not in e.answer for e in eight)
    assert len(named("gsm8k-train")) == 256
    with pytest.raises(ConfigError, match="unknown exemplar set 'nope'"):
        named("nope")


def test_exemplars_are_earlier_turns_asked_as_the_question_is():
    backend = Scripted(["The answer is 5."])
    strategy = SelfConsistency(n=2, exemplars="gsm8k-cot-8", system="Be careful.")
    strategy.solve("What is 2 + 3?", backend=backend)
    messages = backend.requests[0].messages
    assert [m.role for m in messages] == ["system"] + ["user", "assistant"] * 8 + ["user"]
    assert messages[1].content.startswith("Natalia") and "Think step by step" in messages[1].content
    assert messages[2].content.endswith("The answer is 72.")
    assert strategy.params()["exemplars"] == "gsm8k-cot-8"


def test_exemplars_as_one_text_block_and_given_as_pairs():
    pairs = [{"question": "What is 1 + 1?", "answer": "One and one make 2. The answer is 2."}]
    backend = Scripted(["The answer is 5."])
    SelfConsistency(n=1, exemplars={"items": pairs, "style": "text"}).solve("What is 2 + 3?", backend=backend)
    (message,) = backend.requests[0].messages
    assert message.content.startswith("Q: What is 1 + 1?") and message.content.endswith("A:")
    with pytest.raises(ValueError, match="at least one exemplar"):
        Exemplars(items=())


def test_mmlu_5_shows_the_five_dev_questions_of_the_task_s_own_subject_with_their_options():
    from manyminds.datasets import load

    assert len(named("mmlu-5")) == 285 and len({e.subject for e in named("mmlu-5")}) == 57
    anatomy = next(t for t in load("mmlu", seed=3, limit=400) if t.metadata["subject"] == "anatomy")
    backend = Scripted(["The answer is (B)."])
    SelfConsistency(n=1, prompt="direct", exemplars="mmlu-5").solve(anatomy, backend=backend)
    messages = backend.requests[0].messages
    assert [m.role for m in messages] == ["user", "assistant"] * 5 + ["user"]
    dev = [e for e in named("mmlu-5") if e.subject == "anatomy"]
    for shot, (asked, answered) in zip(dev, zip(messages[0:10:2], messages[1:10:2])):
        assert asked.content.startswith(shot.question) and f"(D) {shot.choices[3]}" in asked.content
        assert answered.content == shot.answer and re.fullmatch(r"The answer is [A-D]\.", shot.answer)
    assert messages[-1].content.startswith(anatomy.question) and "(A)" in messages[-1].content
    with pytest.raises(ConfigError, match="holds exemplars by subject, and task 'What is 2 [+] 3[?]' has no subject"):
        SelfConsistency(n=1, exemplars="mmlu-5").solve("What is 2 + 3?", backend=backend)


def test_exemplars_given_with_options_are_rendered_as_the_task_s_options_are():
    task = Task(question="Which is a fruit?", choices=("car", "apple"), format=AnswerFormat.CHOICE)
    shot = {"question": "Which is a colour?", "choices": ["red", "rock"], "answer": "The answer is A."}
    backend = Scripted(["The answer is B."])
    strategy = SelfConsistency(n=1, prompt="direct", exemplars=[shot])
    strategy.solve(task, backend=backend)
    assert "Which is a colour?\n\nOptions:\n(A) red\n(B) rock" in backend.requests[0].messages[0].content
    plain = SelfConsistency(n=1, exemplars=[{"question": "What is 1 + 1?", "answer": "The answer is 2."}])
    assert plain.params()["exemplars"] == {"items": [{"question": "What is 1 + 1?", "answer": "The answer is 2."}]}


def test_a_conversation_s_earlier_turns_follow_the_exemplars_and_synthesis_keeps_them():
    from manyminds.strategies import SelfMoA
    from manyminds.types import Message

    history = (Message(role="user", content="I have 7 apples."), Message(role="assistant", content="Noted."))
    task = Task(question="I buy 5 more. How many now?", history=history)
    backend = Scripted(["The answer is 12."])
    shot = {"question": "What is 1 + 1?", "answer": "The answer is 2."}
    SelfConsistency(n=1, exemplars=[shot], system="Be brief.").solve(task, backend=backend)
    roles = [(m.role, m.content.split("\n")[0]) for m in backend.requests[0].messages]
    assert roles[:5] == [("system", "Be brief."), ("user", "What is 1 + 1?"), ("assistant", "The answer is 2."),
                         ("user", "I have 7 apples."), ("assistant", "Noted.")]
    assert roles[5][0] == "user" and roles[5][1].startswith("I buy 5 more.") and len(roles) == 6
    backend = Scripted(["The answer is 12."])
    SelfMoA(n=2).solve(task, backend=backend)
    synthesis = backend.requests[-1].messages
    assert [m.role for m in synthesis] == ["system", "user", "assistant", "user"]
    assert "Responses:" in synthesis[0].content and synthesis[1].content == "I have 7 apples."
    assert "The conversation so far" in task.render() and "The conversation so far" not in task.last_turn().render()
    with pytest.raises(ValueError, match=r"history\[0\] is a system message"):
        Task(question="Hi", history=(Message(role="system", content="x"),))
    with pytest.raises(ValueError, match=r"history\[1\] \(assistant\) has no text"):
        Task(question="Hi", history=(Message(role="user", content="a"), Message(role="assistant", content=" ")))


def test_div_se_prompts_carry_the_exemplars_too():
    backend = Scripted(["The answer is 12."])
    DivSE(given_approaches=("add",), given_personas=("a teacher",),
          exemplars=[{"question": "What is 1 + 1?", "answer": "The answer is 2."}]).solve("What is 7 + 5?", backend=backend)
    (request,) = backend.requests
    assert [m.role for m in request.messages] == ["user", "assistant", "user"]
    assert "You are a teacher" in request.messages[0].content and "What is 1 + 1?" in request.messages[0].content


def test_exemplar_resampling_shows_each_sample_its_own_reproducible_draw(tmp_path):
    backend = Scripted(["The answer is 5."])
    strategy = ExemplarResampling(n=4, k=3, seed=1)
    first = strategy.solve("What is 2 + 3?", backend=backend, cache=tmp_path / "c.db")
    shown = [tuple(m.content for m in r.messages if m.role == "assistant") for r in backend.requests]
    assert len(shown) == 4 and len(set(shown)) == 4 and all(len(s) == 3 for s in shown)
    again = strategy.solve("What is 2 + 3?", backend=Scripted(["never asked"]), cache=tmp_path / "c.db")
    assert again.usage.cached_samples == 4 and again.answer == first.answer == "5"
    with pytest.raises(ValueError, match="takes no exemplars="):
        ExemplarResampling(exemplars="gsm8k-cot-8")
