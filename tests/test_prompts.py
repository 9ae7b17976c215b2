"""Prompts: the raw question, named templates a user replaces, and the full text of free-form answers."""

from __future__ import annotations

import pytest

from manyminds.backends import Scripted
from manyminds.strategies import SelfConsistency
from manyminds.types import AnswerFormat, Task


def test_the_raw_prompt_sends_the_question_exactly_as_given():
    backend = Scripted(["Paris is the capital."])
    SelfConsistency(n=1, prompt="raw", system="You are terse.").solve(
        Task(question="Tell me about Paris.", format=AnswerFormat.TEXT), backend=backend)
    assert [(m.role, m.content) for m in backend.requests[0].messages] == [
        ("system", "You are terse."), ("user", "Tell me about Paris.")]


def test_a_free_form_result_carries_the_chosen_response_s_full_text():
    from manyminds.strategies import UniversalSelfConsistency

    essays = ["Paris is the capital of France.\nIt hosts the Louvre.", "Lyon is big.", "Paris, on the Seine.\nMore."]

    def reply(messages, params, index):
        if "most consistent" in messages[-1].content:
            return "The most consistent response is Response 3."
        return essays[index]

    task = Task(question="Tell me about the capital of France.", format=AnswerFormat.TEXT)
    result = UniversalSelfConsistency(n=3, prompt="raw").solve(task, backend=Scripted(reply))
    assert result.text == essays[2], "the whole response, not its normalised first line"
    assert result.decision.chosen == 2


def test_a_synthesis_is_the_text_of_an_moa_answer_and_nothing_is_cut_unless_asked():
    from manyminds.strategies import SelfMoA

    long = "word " * 2000
    backend = Scripted(lambda m, p, i: "A merged essay.\nSecond line." if m[0].role == "system" else long)
    task = Task(question="Write about rivers.", format=AnswerFormat.TEXT)
    result = SelfMoA(n=2, prompt="raw").solve(task, backend=backend)
    synthesis = backend.requests[-1]
    assert long.strip() in synthesis.messages[0].content, "responses are quoted whole by default"
    assert synthesis.messages[1].content == "Write about rivers.", "the raw question, not a chain-of-thought wrapper"
    assert result.text == "A merged essay.\nSecond line."
    cut = SelfMoA(n=2, prompt="raw", max_chars_per_response=100)
    backend2 = Scripted(lambda m, p, i: "Merged." if m[0].role == "system" else long)
    cut.solve(task, backend=backend2)
    assert len(backend2.requests[-1].messages[0].content) < 1000


def test_every_prompt_is_a_named_template_a_user_can_replace():
    from manyminds.strategies import SelfAgreement, by_name, names

    backend = Scripted(lambda m, p, i: "Pick 1." if "PICK" in m[-1].content else "The answer is 12.")
    strategy = SelfAgreement(n=2, prompts={"select": "PICK among {n} for {question}:\n{responses}",
                                           "cot": "Q: {question}\nReason, then 'The answer is X.' ({form})"})
    strategy.solve("What is 7 + 5?", backend=backend)
    assert backend.requests[0].messages[-1].content.startswith("Q: What is 7 + 5?")
    assert backend.requests[-1].messages[-1].content.startswith("PICK among 2 for What is 7 + 5?")
    with pytest.raises(ValueError, match="has no prompt 'choose': its prompts are cot, direct, select"):
        SelfAgreement(prompts={"choose": "x"})
    with pytest.raises(ValueError, match="uses \\['oops'\\], which it is not given"):
        SelfAgreement(prompts={"select": "{oops}"})
    for name in names():  # every prompting strategy names its prompts
        templates = by_name(name).all_templates() if hasattr(by_name(name), "all_templates") else {}
        assert name == "cascade" or templates, name
