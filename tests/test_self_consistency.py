"""SelfConsistency over the scripted backend: answers, usage, order, embedding as a subgraph."""

import asyncio
from typing import TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from pydantic import ValidationError

import manyminds as mm
from manyminds.answers import is_correct
from manyminds.backends import Scripted
from manyminds.cache import GenerationCache
from manyminds.strategies import SelfConsistency
from manyminds.types import AnswerFormat, Task


def by_question(messages, params, index):
    """Answers a + b right on even samples and off by one on every third."""
    import re

    a, b = map(int, re.findall(r"\d+", messages[-1].content)[:2])
    return f"The answer is {a + b + (1 if index % 3 == 2 else 0)}."


def test_solve_returns_majority_with_tally_candidates_and_usage():
    backend = Scripted(["The answer is 12.", "12", "The answer is 13.", "no idea"])
    result = SelfConsistency(n=8).solve("What is 7 + 5?", backend=backend)
    assert result.answer == "12"
    assert result.tally == {"12": 4, "13": 2}
    assert result.confidence == pytest.approx(4 / 6)
    assert [c.index for c in result.candidates] == list(range(8))
    assert [c.answer for c in result.candidates][:4] == ["12", "12", "13", None]
    assert result.usage.samples == 8 and result.usage.calls == 1
    assert result.decision.aggregator == "majority"
    assert result.strategy == "self-consistency" and result.strategy_params["n"] == 8


def test_prompt_carries_the_question_and_answer_form():
    backend = Scripted(["The answer is 12."])
    SelfConsistency(n=2, prompt="cot", system="Be brief.").solve("What is 7 + 5?", backend=backend)
    (request,) = backend.requests
    assert request.n == 2
    assert request.messages[0].role == "system" and request.messages[0].content == "Be brief."
    assert "What is 7 + 5?" in request.messages[1].content
    assert "The answer is X." in request.messages[1].content
    choice = Task(question="Pick", format=AnswerFormat.CHOICE, choices=("red", "blue"))
    SelfConsistency(n=1, prompt="direct").solve(choice, backend=backend)
    assert "(A) red\n(B) blue" in backend.requests[-1].messages[-1].content


def test_solve_many_keeps_order_and_counts_per_result():
    tasks = [Task(question=f"What is {a} + {a + 1}?", gold=str(2 * a + 1)) for a in range(30)]
    backend = Scripted(by_question, latency=0.01)
    results = SelfConsistency(n=5).solve_many(tasks, backend=backend, concurrency=4)
    assert [r.task.question for r in results] == [t.question for t in tasks]
    assert all(is_correct(r) for r in results)
    assert all(r.usage.samples == 5 and r.usage.calls == 1 for r in results)
    assert backend.calls == 30


def test_concurrency_bounds_questions_in_flight():
    in_flight = peak = 0

    async def slow(messages, params, index):
        nonlocal in_flight, peak
        if index == 0:
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
        return "The answer is 1."

    SelfConsistency(n=2).solve_many([f"q{i}" for i in range(20)], backend=Scripted(slow), concurrency=3)
    assert 1 < peak <= 3


def test_cache_makes_a_rerun_free(tmp_path):
    backend = Scripted(by_question)
    tasks = [f"What is {a} + 2?" for a in range(5)]
    first = SelfConsistency(n=4).solve_many(tasks, backend=backend, cache=tmp_path / "c.db")
    again = SelfConsistency(n=4).solve_many(tasks, backend=backend, cache=tmp_path / "c.db")
    assert backend.calls == 5
    assert [r.answer for r in again] == [r.answer for r in first]
    assert all(r.usage.calls == 0 and r.usage.cached_samples == 4 for r in again)


def test_cache_instance_is_flushed_not_closed(tmp_path):
    with GenerationCache(tmp_path / "c.db") as cache:
        SelfConsistency(n=3).solve("What is 1 + 1?", backend=Scripted(["2"]), cache=cache)
        assert cache.count() == 3
        SelfConsistency(n=3).solve("What is 1 + 2?", backend=Scripted(["3"]), cache=cache)
        assert cache.count() == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n": 0}, "greater than or equal to 1"), ({"temperature": -1}, "temperature must be >= 0"),
     ({"prompt": "poem"}, "'cot', 'direct' or 'raw'"), ({"bogus": 1}, "Extra inputs")],
)
def test_bad_config_is_rejected(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        SelfConsistency(**kwargs)


def test_strategy_is_frozen():
    s = SelfConsistency(n=4)
    with pytest.raises(ValidationError):
        s.n = 5


def test_unknown_aggregator_fails_when_the_strategy_is_configured():
    with pytest.raises(ValueError, match="unknown aggregator 'nope': available are .*majority"):
        SelfConsistency(aggregator="nope")


def test_graph_takes_a_question_and_returns_answer():
    graph = SelfConsistency(n=3).graph(Scripted(["The answer is 4."]))
    out = graph.invoke({"question": "What is 2 + 2?"})
    assert out["answer"] == "4" and out["confidence"] == 1.0
    assert out["result"].usage.samples == 3


def test_graph_embeds_as_a_node_of_a_user_graph():
    class App(TypedDict, total=False):
        question: str
        answer: str
        confidence: float
        report: str

    def report(state: App) -> dict:
        return {"report": f"{state['question']} -> {state['answer']} ({state['confidence']:.0%})"}

    ensemble = SelfConsistency(n=4).graph(Scripted(["The answer is 4.", "4", "5", "4"]))
    app = StateGraph(App)
    app.add_node("ensemble", ensemble)
    app.add_node("report", report)
    app.add_edge(START, "ensemble")
    app.add_edge("ensemble", "report")
    app.add_edge("report", END)
    out = app.compile().invoke({"question": "What is 2 + 2?"})
    assert out["answer"] == "4"
    assert out["report"] == "What is 2 + 2? -> 4 (75%)"


def test_graph_called_from_a_user_node_with_a_batch():
    ensemble = SelfConsistency(n=2).graph(Scripted(by_question))

    class App(TypedDict, total=False):
        questions: list[str]
        answers: list[str]

    async def solve_all(state: App) -> dict:
        out = await ensemble.ainvoke({"tasks": state["questions"]})
        return {"answers": [r.answer for r in out["results"]]}

    app = StateGraph(App)
    app.add_node("solve_all", solve_all)
    app.add_edge(START, "solve_all")
    app.add_edge("solve_all", END)
    out = asyncio.run(app.compile().ainvoke({"questions": ["What is 1 + 2?", "What is 3 + 4?"]}))
    assert out["answers"] == ["3", "7"]


def test_graph_without_input_is_a_clear_error():
    with pytest.raises(mm.ConfigError, match="needs a 'question'"):
        SelfConsistency(n=1).graph(Scripted(["1"])).invoke({})


def test_copies_of_one_greedy_draw_are_one_draw(caplog, tmp_path):
    """At temperature 0 the n samples would be copies of one draw: counted as one, with a warning,
    and refused by the benchmark runner unless allowed."""
    import logging

    import manyminds as mm
    from manyminds.errors import ConfigError

    backend = Scripted(["The answer is 142."])
    with caplog.at_level(logging.WARNING, logger="manyminds.strategies"):
        result = SelfConsistency(n=4, temperature=0.0).solve("What is 71 + 71?", backend=backend)
    assert result.usage.samples == 1 and result.tally == {"142": 1.0} and result.confidence == 1.0
    assert len(result.candidates) == 1 and backend.samples_generated == 1
    assert "draws one sample" in caplog.text
    tasks = [Task(question="What is 71 + 71?", gold="142")]
    with pytest.raises(ConfigError, match="one greedy draw counted 4 times"):
        mm.bench.run(tasks, [SelfConsistency(n=4, temperature=0.0)], backend=backend, progress=False)
    report = mm.bench.run(tasks, [SelfConsistency(n=4, temperature=0.0)], backend=backend, progress=False,
                          allow_greedy=True)
    assert report.runs[0].usage.samples == 1
    # prompts that differ per sample are distinct draws even when greedy
    from manyminds.strategies.resampled import ChoiceShuffle

    assert not ChoiceShuffle(n=4, temperature=0.0).greedy_copies()
