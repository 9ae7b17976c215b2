"""The strategy builder: one way to assemble a method, deciders as aggregators, one registry, no silent settings."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

import manyminds.aggregators as aggregators_package
from manyminds.agents.builder import Pipeline
from manyminds.extensions import Request, Settled, View
from manyminds.agents.nodes import RunContext
from manyminds.aggregators import AggregatorSpec, available
from manyminds.backends import Scripted
from manyminds.errors import ConfigError
from manyminds.reaggregate import reaggregate
from manyminds.stopping import ESC
from manyminds.strategies import (
    REGISTRY, MixtureOfAgents, RankedVote, SelfAgreement, SelfConsistency, SelfMoA, SelfMoASeq, VerifiedVote, by_name,
    make, names,
)
from manyminds.strategies.refine_vote import SelfRefineVote
from manyminds.strategies.temperature_mix import TemperatureMix
from manyminds.types import Candidate, Source, Task
from manyminds.verifiers import MathAnswer

QUESTION = Task(question="What is 7 + 5?", gold="12")


def last(request) -> str:
    return request.messages[-1].content


# -- the two example methods, one file each ------------------------------------------------


def test_self_refine_then_vote_refines_every_draft_and_the_refinements_vote():
    backend = Scripted(lambda m, p, i: "Fixed: the answer is 12." if "draft solution" in m[-1].content
                       else f"Draft: the answer is {10 + i}.")
    result = SelfRefineVote(n=3).solve(QUESTION, backend=backend)
    refines = [r for r in backend.requests if "draft solution" in last(r)]
    assert len(refines) == 3
    assert sorted(next(i for i in range(3) if f"the answer is {10 + i}" in last(r)) for r in refines) == [0, 1, 2], \
        "each draft is refined once"
    assert result.answer == "12" and result.tally == {"12": 3.0}, "only the refinements vote"
    assert [str(c.source) for c in result.candidates] == ["refine-1", "refine-2", "refine-3"]
    assert [c.index for c in result.candidates] == [3, 4, 5], "indices are never reused after a replacement"
    assert result.usage.calls == 4 and result.usage.samples == 6, "the drafts still count"


def test_temperature_mix_shares_the_budget_over_its_temperatures_and_refuses_a_single_temperature():
    backend = Scripted(lambda m, p, i: f"The answer is {int(p.temperature * 10)}.")
    result = TemperatureMix(n=7, temperatures=(0.3, 0.7, 1.0)).solve(QUESTION, backend=backend)
    assert [(r.n, r.params.temperature) for r in backend.requests] == [(3, 0.3), (2, 0.7), (2, 1.0)]
    assert result.tally == {"3": 3.0, "7": 2.0, "10": 2.0} and result.answer == "3"
    with pytest.raises(ValueError, match="takes no temperature="):
        TemperatureMix(temperature=0.5)
    with pytest.raises(ConfigError, match="temperature-mix: .*takes no temperature="):
        make("temperature-mix", 6, temperature=0.5)


def test_the_examples_are_each_one_file_under_40_lines():
    import manyminds.strategies.refine_vote as a
    import manyminds.strategies.temperature_mix as b

    for module in (a, b):
        with open(module.__file__) as f:
            assert len(f.read().splitlines()) < 40
    assert {"self-refine-vote", "temperature-mix"} <= set(names()), "found without editing any other file"


# -- every built-in strategy is assembled by the builder --------------------------------------


def test_every_registered_strategy_is_assembled_by_the_builder(monkeypatch):
    compiled: list[str] = []
    original = Pipeline.compile

    def spy(self):
        compiled.append(self.strategy.name)
        return original(self)

    monkeypatch.setattr(Pipeline, "compile", spy)
    for name in names():
        settings = {"verifier": MathAnswer()} if by_name(name).needs_verifier else {}
        make(name, 4, **settings).build(Scripted(["The answer is 12."]))
    assert set(names()) <= set(compiled)


# -- every decision is an aggregator, and can be replayed offline -------------------------------


def _paths(messages, params, index):
    text = messages[-1].content + (messages[0].content if messages[0].role == "system" else "")
    if "most consistent" in text:
        return "The most consistent answer is 12 (Response 2)."
    if "Rank the responses" in text:
        return "Ranking: 2 > 3 > 1 > 4"
    if "Responses:" in text:
        return "Combining them, the answer is 12."
    return ["The answer is 13.", "The answer is 12.", "The answer is 12.", "no idea"][index % 4]


@pytest.mark.parametrize("strategy", [SelfAgreement(n=4), RankedVote(n=4), SelfMoA(n=4), MixtureOfAgents(layers=2, proposers=4)])
def test_a_model_decided_answer_is_an_aggregator_s_and_reaggregates_offline(strategy):
    result = strategy.solve(QUESTION, backend=Scripted(_paths))
    assert result.decision.aggregator == strategy.aggregation().name
    assert any(not c.votes and c.source.kind != "sample" for c in result.candidates), "the model's reply is evidence"
    replayed = reaggregate([result], strategy.aggregation().name)
    assert replayed.answers == [result.answer] and replayed.changed == 0
    majority = reaggregate([result], "majority")
    assert majority.answers[0] in result.tally, "voting aggregators count the ballots only"


def test_strategies_that_do_not_vote_take_no_aggregator_but_a_fallback():
    with pytest.raises(ValueError, match="aggregator"):
        VerifiedVote(verifier=MathAnswer(), aggregator="rpc")
    with pytest.raises(ValueError, match="aggregator"):
        SelfMoA(aggregator="rpc")
    assert SelfMoA(fallback="rpc").aggregation().model_dump() == {"name": "synthesis", "fallback": "rpc"}


def test_an_aggregator_spec_has_parameters_and_records_itself_compactly():
    spec = AggregatorSpec.model_validate({"name": "weighted", "by": "logprob"})
    assert spec.params == {"by": "logprob"} and spec.model_dump() == {"name": "weighted", "by": "logprob"}
    assert AggregatorSpec.model_validate("majority").model_dump() == "majority"
    assert SelfConsistency(aggregator={"name": "weighted", "by": "logprob"}).params()["aggregator"] == {
        "name": "weighted", "by": "logprob"}


# -- a new aggregator is one file with one decorator -------------------------------------------

MIN_ENTROPY = '''
from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import decide, tally


@aggregator("min-entropy")
class MinEntropy:
    """The least-voted answer (a deliberately odd rule, so a test can tell it decided)."""

    def params(self):
        return {}

    def __call__(self, task, candidates):
        counts = tally(candidates)
        low = min(counts.values()) if counts else 0
        return decide({k: v for k, v in counts.items() if v == low}, self.name, self.params())
'''


def test_a_new_aggregator_is_one_file_found_by_the_api_run_and_reaggregate(tmp_path, monkeypatch):
    folder = tmp_path / "extra"
    folder.mkdir()
    (folder / "min_entropy.py").write_text(MIN_ENTROPY)
    # the file sits in the aggregators package (its search path extended, the source tree untouched)
    monkeypatch.setattr(aggregators_package, "__path__", [*aggregators_package.__path__, str(folder)])
    assert "min-entropy" in available()
    result = SelfConsistency(n=5, aggregator="min-entropy").solve(
        QUESTION, backend=Scripted(["The answer is 12.", "The answer is 12.", "The answer is 13."]))
    assert result.answer == "13" and result.decision.aggregator == "min-entropy"
    assert reaggregate([result], "min-entropy").answers == ["13"]

    db = tmp_path / "c.db"
    boot = ("import sys, manyminds.aggregators as a; a.__path__.append(sys.argv.pop(1)); "
            "from manyminds.cli import main; sys.argv[0] = 'manyminds'; main()")
    run = subprocess.run([sys.executable, "-c", boot, str(folder), "run", "What is 7 + 5?", "-n", "3",
                          "--backend", "scripted:The answer is 12.|12|13", "--aggregator", "min-entropy",
                          "--cache", str(db), "--json"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["answer"] == "13"
    again = subprocess.run([sys.executable, "-c", boot, str(folder), "reaggregate", str(db), "-a", "min-entropy",
                            "-a", "majority", "--json"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    rows = [json.loads(line) for line in again.stdout.splitlines()]
    assert [r["aggregator"] for r in rows] == ["min-entropy", "majority"]


# -- no silent settings ---------------------------------------------------------------------


def test_a_setting_a_strategy_does_not_have_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="strategy div-se has no setting 'prompt'"):
        make("div-se", 4, prompt="direct")
    with pytest.raises(ConfigError, match="strategy moa has no setting 'aggregator'"):
        make("moa", 4, aggregator="rpc")
    with pytest.raises(ValueError, match="self-moa-seq .* takes no stopping rule"):
        SelfMoASeq(stop=ESC())
    assert make("cascade", 8, prompt="direct").first.prompt == "direct", "a cascade passes settings to its stages"


def test_the_cli_says_when_a_setting_does_not_apply():
    proc = subprocess.run([sys.executable, "-m", "manyminds.cli", "run", "What is 7 + 5?", "-s", "div-se",
                           "--prompt", "direct", "--backend", "scripted:12", "--no-cache"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "div-se has no setting 'prompt'" in proc.stderr


def test_cli_choices_come_from_the_registries():
    from manyminds.cli import StrategyName, _verifier_names

    assert sorted(s.value for s in StrategyName) == names() == sorted(REGISTRY.all())
    assert {"math", "p-true", "grade", "unit-tests"} <= set(_verifier_names()), "--verifier's help lists them"


# -- the builder's own guarantees ---------------------------------------------------------------


class _Probe(SelfConsistency):
    """A pipeline written in a test: waves of 2 until a verified sample passes."""

    def build(self, backend):
        def wave(v: View) -> list[Request]:
            return [Request("probe", self.messages(v.task), 2, first_index=v.drawn)] if v.drawn < 6 else []

        def until(v: View) -> Settled | None:
            return Settled(f"passed after {v.drawn}") if v.passed else None

        p = self.pipeline(backend).repeat(lambda p: p.sample(wave, self.sampling_params()).verify(MathAnswer()),
                                          until=until, name="tries")
        return p.aggregate("majority")


def test_a_stopping_condition_sees_verdicts_and_a_plan_with_nothing_left_settles_the_task():
    right = Task(question="What is 7 + 5?", gold="12")
    never = Task(question="What is 1 + 1?", gold="2")
    backend = Scripted(lambda m, p, i: "The answer is 12." if i >= 2 and "7 + 5" in m[-1].content else "The answer is 9.")
    found, exhausted = _Probe(n=1).solve_many([right, never], backend=backend)
    assert found.stop_reason == "passed after 4" and found.usage.samples == 4
    assert exhausted.stop_reason == "nothing left to sample" and exhausted.usage.samples == 6
    assert all(c.verdict is not None for c in found.candidates), "every ballot verified once"


@pytest.mark.parametrize("strategy", [SelfConsistency(n=4), SelfConsistency(n=12, stop=ESC(window=2)),
                                      MixtureOfAgents(layers=2, proposers=2), SelfMoASeq(n=4, window=2),
                                      SelfAgreement(n=3)])
def test_progress_advances_once_per_finished_question_for_every_strategy(strategy):
    ticks: list[int] = []
    backend = Scripted(lambda m, p, i: "The answer is 12." if i % 3 else "The answer is 11.")
    graph = strategy.build(backend)
    tasks = [Task(question=f"What is {k} + 5?") for k in range(5)]
    out = asyncio.run(graph.ainvoke({"tasks": tasks}, context=RunContext(concurrency=2, progress=ticks.append)))
    assert len(out["results"]) == 5 and sum(ticks) == 5


def test_a_graph_embedded_without_our_context_runs_with_the_defaults():
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class App(TypedDict, total=False):
        question: str
        answer: str | None

    app = StateGraph(App)
    app.add_node("ensemble", SelfConsistency(n=3).graph(Scripted(["The answer is 4."])))
    app.add_edge(START, "ensemble")
    app.add_edge("ensemble", END)
    assert app.compile().invoke({"question": "What is 2 + 2?"})["answer"] == "4"


# -- sources are values ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["sample", "synthesis", "layer-2/proposer-3", "first/approach-1/persona-2",
                                  "then/layer-1/synthesis", "ranking/judge-2"])
def test_a_source_reads_back_from_its_short_form(text):
    source = Source.parse(text)
    assert str(source) == text and source == text and Source.parse(str(source)) == source


def test_a_stored_candidate_with_a_string_source_still_loads():
    stored = {"index": 0, "text": "x", "answer": "1", "source": "layer-2/proposer-3"}
    c = Candidate.model_validate(stored)
    assert c.source.layer == 2 and c.source.agent == "proposer-3" and c.votes
    assert json.loads(c.model_dump_json())["source"] == "layer-2/proposer-3"
    evidence = Candidate.model_validate({**stored, "source": "synthesis"})
    assert not evidence.votes


def test_the_builder_refuses_an_endless_loop():
    p = SelfConsistency().pipeline(Scripted(["1"]))
    with pytest.raises(ConfigError, match="times=, until= or both"):
        p.repeat(lambda p: p.sample(lambda v: [], SelfConsistency().sampling_params()))


# -- a session owns what it opened -----------------------------------------------------------


def test_a_session_closes_what_it_opened_and_only_that(tmp_path):
    from manyminds.cache import GenerationCache
    from manyminds.session import Session
    from manyminds.types import AnswerFormat
    from manyminds.answers import equivalence as math_answer

    math_answer.shutdown_pool()
    path = tmp_path / "owned.db"
    with Session("scripted:The answer is \\sqrt{4}.|The answer is 2.", cache=path, concurrency=2) as session:
        task = Task(question="Root of four?", format=AnswerFormat.MATH)
        result = session.solve(SelfConsistency(n=4), task)
        assert result.confidence == 1.0, "sqrt(4) and 2 merged by math-verify's workers"
        assert math_answer.pool_running()
        owned = session.cache
    assert owned.closed and not math_answer.pool_running(), "the cache it opened and the pool it started are closed"
    with pytest.raises(ConfigError, match="closed"):
        session.solve(SelfConsistency(n=1), "x")

    with GenerationCache(tmp_path / "mine.db") as mine:
        backend = Scripted(["The answer is 3."])
        with Session(backend, cache=mine) as session:
            session.solve(SelfConsistency(n=2), "What is 1 + 2?")
        assert not mine.closed and mine.count() == 2, "a cache passed in is flushed, not closed"
        assert SelfConsistency(n=2).solve("What is 1 + 2?", backend=backend, cache=mine).usage.cached_samples == 2
    with GenerationCache(path, read_only=True) as reread:
        assert reread.count() == 4, "every sample the session paid for was stored"


def test_evidence_kinds_are_declared_and_a_plugin_kind_is_stored_as_an_object():
    from manyminds.types import EVIDENCE_KINDS, evidence_kind

    strategy = SelfConsistency(n=2)
    p = strategy.pipeline(Scripted(["The answer is 1."]))
    with pytest.raises(ConfigError, match="evidence kind 'critique' is not declared: declare it with "
                                          r"manyminds.extensions.evidence_kind\('critique'"):
        p.ask("critique", lambda v: None, strategy.sampling_params())
    try:
        assert evidence_kind("critique", "a model's critique") == "critique"
        assert evidence_kind("critique", "a model's critique") == "critique", "the same declaration is a no-op"
        with pytest.raises(ValueError, match="declared already"):
            evidence_kind("critique", "something else")
        for bad in ("sample", "layer-2", "Two Words", ""):
            with pytest.raises(ValueError, match="lower-case word"):
                evidence_kind(bad, "x")
        source = Source(kind="critique", prompt="judge-1", stage="review")
        candidate = Candidate(index=0, text="t", answer="1", source=source)
        stored = json.loads(candidate.model_dump_json())["source"]
        assert stored == {"kind": "critique", "prompt": "judge-1", "layer": None, "stage": "review"}
        assert Candidate.model_validate_json(candidate.model_dump_json()).source == source
        assert not candidate.votes, "evidence never votes"
        assert json.loads(Candidate(index=0, text="t", answer=None, source=Source.parse("then/layer-1/synthesis")
                                    ).model_dump_json())["source"] == "then/layer-1/synthesis", "built-ins stay short"
    finally:
        EVIDENCE_KINDS.pop("critique", None)
