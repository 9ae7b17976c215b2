"""The message flow of each ensemble strategy, asserted with scripted backends."""

import re
from typing import TypedDict

import pytest

from manyminds import strategies
from langgraph.graph import END, START, StateGraph

from manyminds.backends import Scripted
from manyminds.strategies import (
    STRATEGIES, Cascade, DivSE, IDivSE, MixtureOfAgents, SelfAgreement, SelfConsistency, SelfMoA, SelfMoASeq, make,
)
from manyminds.strategies.div_se import DEFAULT_APPROACHES, parse_proposal
from manyminds.strategies.idiv_se import split_sections
from manyminds.types import AnswerFormat, Task
from manyminds.aggregators import get_aggregator
from manyminds.strategies import RankedVote, UniversalSelfConsistency
from manyminds.strategies.resampled import ChoiceShuffle, permutation


def last(request):
    return request.messages[-1].content


def system(request):
    return request.messages[0].content if request.messages[0].role == "system" else ""


# -- DIV-SE -------------------------------------------------------------------------


def diverse_reply(messages, params, index):
    text = messages[-1].content
    if "Do not solve it" in text:
        return "Approach 1: count up\nApproach 2: use doubles\nPersona 1: a teacher\nPersona 2: a coach"
    return "The answer is 13." if "use doubles" in text and "coach" in text else "The answer is 12."


def test_div_se_proposes_once_then_one_prompt_per_approach_persona_pair():
    backend = Scripted(diverse_reply)
    result = DivSE(approaches=2, personas=2).solve("What is 7 + 5?", backend=backend)
    proposals = [r for r in backend.requests if "Do not solve it" in last(r)]
    solves = [r for r in backend.requests if "Do not solve it" not in last(r)]
    assert len(proposals) == 1 and proposals[0].params.temperature == 0
    pairs = {(a, p) for r in solves for a in ("count up", "use doubles") for p in ("a teacher", "a coach")
             if f"approach: {a}." in last(r) and f"You are {p}." in last(r)}
    assert len(solves) == 4 and len(pairs) == 4
    assert result.answer == "12" and result.tally == {"12": 3, "13": 1}
    assert result.usage.calls == 5, "the proposal call counts in usage"
    assert [c.source for c in result.candidates] == [
        "proposal", "approach-1/persona-1", "approach-1/persona-2", "approach-2/persona-1", "approach-2/persona-2"]
    assert [c.index for c in result.candidates] == [0, 1, 2, 3, 4], "indices are issued once, in order"
    assert not result.candidates[0].votes and result.candidates[0].source.kind == "proposal"


def test_div_se_with_given_approaches_makes_no_proposal():
    backend = Scripted(["The answer is 12."])
    result = DivSE(given_approaches=("a", "b", "c"), given_personas=("p",)).solve("What is 7 + 5?", backend=backend)
    assert len(backend.requests) == 3 and all("Do not solve" not in last(r) for r in backend.requests)
    assert result.usage.calls == 3


def test_div_se_fills_a_poor_proposal_with_defaults_and_says_so():
    backend = Scripted(lambda m, p, i: "I would just add them." if "Do not solve" in m[-1].content else "12")
    result = DivSE(approaches=3).solve("What is 7 + 5?", backend=backend)
    assert sum(DEFAULT_APPROACHES[0] in last(r) for r in backend.requests) == 1
    assert any("0/3 approaches proposed" in t for t in result.trace)
    assert result.answer == "12"


def test_parse_proposal():
    assert parse_proposal("**Approach 1:** add\n- approach 2) count\nPersona: a cat\nnoise") == (["add", "count"], ["a cat"])


# -- IDIV-SE ------------------------------------------------------------------------


def test_split_sections_handles_missing_and_malformed_parts():
    text = "Approach 1: add\nThe answer is 12.\nApproach 3 - count\nThe answer is 11.\nApproach 3: again"
    parts = split_sections(text, 3)
    assert parts[0].startswith("add") and parts[1] is None and "11" in parts[2]
    assert split_sections("", 2) == [None, None]
    assert split_sections("just 12", 2) == ["just 12", None]


def test_idiv_se_one_call_several_votes():
    def reply(messages, params, index):
        if "Do not solve it" in messages[-1].content:
            return "Approach 1: add\nApproach 2: count\nApproach 3: doubles\nPersona 1: a teacher"
        return "Approach 1:\nThe answer is 12.\nApproach 2:\nThe answer is 12.\nApproach 3:\nno idea"

    backend = Scripted(reply)
    result = IDivSE(approaches=3).solve("What is 7 + 5?", backend=backend)
    (combined,) = [r for r in backend.requests if "Do not solve" not in last(r)]
    assert all(f"Approach {k}: {a}" in last(combined) for k, a in [(1, "add"), (2, "count"), (3, "doubles")])
    assert [c.answer for c in result.candidates if c.source.votes] == ["12", "12", None]
    assert [str(c.source) for c in result.candidates][1:] == [
        "persona-1/approach-1", "persona-1/approach-2", "persona-1/approach-3"]
    assert result.answer == "12" and result.usage.calls == 2


def test_idiv_se_garbage_completion_is_no_crash():
    backend = Scripted(lambda m, p, i: "Approach 1: a\nPersona 1: b" if "Do not solve" in m[-1].content else "")
    result = IDivSE(approaches=2).solve("What is 7 + 5?", backend=backend)
    assert result.answer is None and len([c for c in result.candidates if c.source.votes]) == 2


# -- Self-Agreement -----------------------------------------------------------------

PATHS = ["The answer is 13.", "The answer is 12.", "The answer is 12.", "no idea"]


def test_self_agreement_shows_every_path_and_follows_the_selection():
    def reply(messages, params, index):
        if "most consistent" in messages[-1].content:
            return "Most say twelve. The most consistent answer is 12 (Response 3)."
        return PATHS[index % 4]

    backend = Scripted(reply)
    result = SelfAgreement(n=4).solve("What is 7 + 5?", backend=backend)
    selection = backend.requests[-1]
    for k, text in enumerate(PATHS, 1):
        assert f"Response {k}:\n{text}" in last(selection)
    assert selection.params.temperature == 0
    assert result.answer == "12" and result.decision.aggregator == "selection"
    assert result.confidence == pytest.approx(2 / 3) and result.usage.calls == 2
    assert "selection: chose response 3" in result.trace


def test_self_agreement_falls_back_to_majority_and_records_it():
    backend = Scripted(lambda m, p, i: "I cannot tell." if "most consistent" in m[-1].content else PATHS[i % 4])
    result = SelfAgreement(n=4).solve("What is 7 + 5?", backend=backend)
    assert result.answer == "12" and result.decision.aggregator == "selection"
    assert result.decision.params["fallback"] == "majority"
    assert any("selection not mapped to a response; majority decided" in t for t in result.trace)


def test_self_agreement_on_free_text_maps_back_to_a_candidate():
    answers = ["The answer is Paris.", "The answer is Lyon.", "The answer is paris"]

    def reply(messages, params, index):
        if "most consistent" in messages[-1].content:
            return "The most consistent answer is Paris."
        return answers[index % 3]

    task = Task(question="What is the capital of France?", format=AnswerFormat.TEXT)
    result = SelfAgreement(n=3).solve(task, backend=Scripted(reply))
    assert result.answer == "paris" and result.tally == {"paris": 2, "lyon": 1}


# -- Mixture-of-Agents --------------------------------------------------------------


def test_moa_layers_see_the_previous_layer_and_each_proposer_uses_its_backend():
    def proposer(name):
        def reply(messages, params, index):
            layer = 2 if messages[0].role == "system" else 1
            return f"{name} layer {layer}: The answer is 12."
        return Scripted(reply, model=name)

    proposers = (proposer("alpha"), proposer("beta"), proposer("gamma"))
    aggregator = Scripted(["Synthesis: The answer is 12."], model="judge")
    strategy = MixtureOfAgents(layers=2, proposer_backends=proposers)
    result = strategy.solve("What is 7 + 5?", backend=aggregator)

    for p in proposers:
        first, second = p.requests
        assert first.messages[0].role == "user"
        for name in ("alpha", "beta", "gamma"):  # layer 2 sees every layer-1 response
            assert f"{name} layer 1" in system(second)
    (final,) = aggregator.requests
    assert all(f"{n} layer 2" in system(final) for n in ("alpha", "beta", "gamma"))
    assert "layer 1" not in system(final)
    assert result.answer == "12" and result.decision.aggregator == "synthesis"
    assert result.usage.calls == 7
    assert [c.source for c in result.candidates] == [
        "layer-2/proposer-1", "layer-2/proposer-2", "layer-2/proposer-3", "synthesis"]
    assert result.strategy_params["proposer_backends"][1]["model"] == "beta"


def test_moa_on_one_backend_uses_distinct_samples():
    backend = Scripted(lambda m, p, i: f"proposal {i}: The answer is 12." if m[0].role != "system" else "The answer is 12.")
    MixtureOfAgents(layers=1, proposers=3).solve("What is 7 + 5?", backend=backend)
    assert sorted(r.first_index for r in backend.requests[:3]) == [0, 1, 2]
    assert all(f"proposal {i}" in system(backend.requests[-1]) for i in range(3))


def test_moa_free_text():
    backend = Scripted(lambda m, p, i: "The answer is Paris." if m[0].role == "system" else ["Paris", "Lyon", "Paris"][i])
    task = Task(question="Capital of France?", format=AnswerFormat.TEXT)
    result = MixtureOfAgents(layers=1, proposers=3).solve(task, backend=backend)
    assert result.answer == "paris" and result.confidence == pytest.approx(2 / 3)


# -- Self-MoA and Self-MoA-Seq ------------------------------------------------------


def numbered_samples(messages, params, index):
    if messages[0].role == "system":
        return "Combined: The answer is 12."
    return f"sample {index}: The answer is {12 if index % 3 else 13}."


def test_self_moa_synthesises_all_samples_of_one_model():
    backend = Scripted(numbered_samples)
    result = SelfMoA(n=5).solve("What is 7 + 5?", backend=backend)
    sample_request, synthesis = backend.requests
    assert sample_request.n == 5
    assert all(f"sample {i}:" in system(synthesis) for i in range(5))
    assert result.answer == "12" and result.usage.calls == 2
    assert result.candidates[-1].source == "synthesis"


def test_self_moa_free_text():
    backend = Scripted(lambda m, p, i: "The answer is Paris." if m[0].role == "system" else "Paris, I think")
    result = SelfMoA(n=2).solve(Task(question="Capital of France?", format=AnswerFormat.TEXT), backend=backend)
    assert result.answer == "paris"


@pytest.mark.parametrize(("n", "window", "rounds"), [(8, 3, 3), (6, 3, 2), (1, 3, 1), (5, 1, 5)])
def test_self_moa_seq_rounds_cover_every_sample_once(n, window, rounds):
    backend = Scripted(numbered_samples)
    result = SelfMoASeq(n=n, window=window).solve("What is 7 + 5?", backend=backend)
    syntheses = [r for r in backend.requests if r.messages[0].role == "system"]
    assert len(syntheses) == rounds
    seen = [int(x) for r in syntheses for x in re.findall(r"sample (\d+):", system(r))]
    assert seen == list(range(n)), "every sample once, in order"
    for k, r in enumerate(syntheses):
        assert ("Combined:" in system(r)) == (k > 0), "later rounds carry the running answer"
        assert len(re.findall(r"sample \d+:", system(r))) <= window
    assert result.answer == "12" and result.usage.calls == 2 * rounds, "each round draws its window, then synthesises"
    drawn = [(r.n, r.first_index) for r in backend.requests if r.messages[0].role != "system"]
    assert drawn == [(min(window, n - k), k) for k in range(0, n, window)], "samples drawn on the fly, round by round"


# -- Cascade ------------------------------------------------------------------------


def test_cascade_escalates_only_unsure_questions_and_reuses_cached_samples(tmp_path):
    def reply(messages, params, index):
        return "The answer is 12." if "7 + 5" in messages[-1].content else f"The answer is {index % 2 + 3}."

    backend = Scripted(reply)
    cascade = Cascade(first=SelfConsistency(n=4), then=SelfConsistency(n=10), threshold=0.8)
    sure, unsure = cascade.solve_many(["What is 7 + 5?", "What is 1 + 2?"], backend=backend, cache=tmp_path / "c.db")
    assert any(t.startswith("kept") for t in sure.trace) and sure.usage.samples == 4
    assert any(t.startswith("escalated") for t in unsure.trace)
    assert unsure.usage.samples == 14 and unsure.usage.cached_samples == 4
    assert [(r.n, r.first_index) for r in backend.requests if "1 + 2" in last(r)] == [(4, 0), (6, 4)]
    assert len(unsure.candidates) == 14 and unsure.candidates[0].source.stage == "first"
    assert str(unsure.candidates[-1].source) == "then" and unsure.candidates[-1].source.votes
    assert unsure.strategy == "cascade" and unsure.strategy_params["then"]["n"] == 10


def test_a_window_cascade_escalates_on_any_disagreement_within_its_window():
    def reply(messages, params, index):
        if "7 + 5" in messages[-1].content:  # the first 3 agree, the fourth does not: confidence 0.75
            return "The answer is 12." if index != 3 else "The answer is 13."
        return f"The answer is {index % 2 + 3}."  # 3, 4, 3, 4: disagreement from the start

    window = strategies.make("cascade", 16, escalate_on="disagreement", window=3, threshold=0.99)
    assert (window.first.n, window.then.n, window.window) == (4, 16, 3)
    kept, escalated = window.solve_many(["What is 7 + 5?", "What is 1 + 2?"], backend=Scripted(reply))
    assert "kept: the first 3 answers agree" in kept.trace and kept.usage.samples == 4, \
        "confidence 0.75 < 0.99 would have escalated; the window's agreement keeps it"
    assert "escalated: the first 3 answers disagree" in escalated.trace and escalated.usage.samples == 20
    assert window.params()["escalate_on"] == "disagreement"
    assert "escalate_on" not in Cascade().params(), "the default records as before"


def test_cascade_can_escalate_to_another_strategy():
    backend = Scripted(lambda m, p, i: "The most consistent answer is 3 (Response 1)." if "most consistent" in m[-1].content
                       else f"The answer is {i % 2 + 3}.")
    result = Cascade(first=SelfConsistency(n=2), then=SelfAgreement(n=4)).solve("What is 1 + 2?", backend=backend)
    assert result.answer == "3" and result.decision.aggregator == "selection"
    assert "then: self-agreement" in result.trace


# -- every strategy -----------------------------------------------------------------


def universal(messages, params, index):
    text = messages[-1].content
    if "Do not solve it" in text:
        return "Approach 1: add\nApproach 2: count\nPersona 1: a teacher"
    if "most consistent" in text:
        return "The most consistent answer is 4 (Response 1)."
    return "Approach 1:\nThe answer is 4.\nApproach 2:\nThe answer is 4."


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_embeds_as_a_subgraph(name):
    class App(TypedDict, total=False):
        question: str
        answer: str
        confidence: float

    graph = make(name, 4).graph(Scripted(universal))
    app = StateGraph(App)
    app.add_node("ensemble", graph)
    app.add_edge(START, "ensemble")
    app.add_edge("ensemble", END)
    out = app.compile().invoke({"question": "What is 2 + 2?"})
    assert out["answer"] == "4" and 0 < out["confidence"] <= 1


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_keeps_order_and_counts_usage_in_batches(name):
    backend = Scripted(universal)
    results = make(name, 4).solve_many([f"What is {i} + 2?" for i in range(3)], backend=backend)
    assert [r.task.question for r in results] == [f"What is {i} + 2?" for i in range(3)]
    assert all(r.usage.calls >= 1 and r.candidates and r.strategy == name for r in results)
    assert sum(r.usage.calls for r in results) == backend.calls


TASK = Task(question="q", gold="12")


def test_usc_picks_by_response_number_for_free_text():
    def reply(messages, params, index):
        if "most consistent with the others" in messages[-1].content:
            return "The most consistent response is Response 2."
        return ["Paris, surely", "The answer is Paris.", "Lyon"][index % 3]

    backend = Scripted(reply)
    result = UniversalSelfConsistency(n=3).solve(Task(question="Capital of France?", format=AnswerFormat.TEXT), backend=backend)
    assert result.answer == "paris" and "selection: chose response 2" in result.trace


def test_ranked_vote_uses_every_judge():
    judges = (Scripted(["Ranking: 2 > 1 > 3"]), Scripted(["Ranking: 2 > 3 > 1"]), Scripted(["no idea"]))
    backend = Scripted(["The answer is 11.", "The answer is 12.", "The answer is 13."])
    result = RankedVote(n=3, judges=judges).solve(TASK, backend=backend)
    assert result.answer == "12" and result.decision.aggregator == "borda"
    assert result.tally == {"11": 1.0, "12": 4.0, "13": 1.0}
    assert any("judge 3: ranking unreadable" in t for t in result.trace)


def test_choice_shuffling_maps_each_sample_s_letter_back_to_the_original_option():
    task = Task(question="Which is a fruit?", choices=("car", "apple", "stone", "river"), format=AnswerFormat.CHOICE)

    def by_content(messages, params, index):
        for letter, text in re.findall(r"\(([A-D])\) (\w+)", messages[-1].content):
            if text == "apple":
                return f"The answer is ({letter})."

    result = ChoiceShuffle(n=6).solve(task, backend=Scripted(by_content))
    assert result.answer == "B" and result.tally == {"B": 6.0}
    orders = {tuple(permutation(ChoiceShuffle(), task, i)) for i in range(6)}
    assert len(orders) > 1, "the samples saw different orders"
    biased = ChoiceShuffle(n=8).solve(task, backend=Scripted(["The answer is (A)."]))
    assert len(biased.tally) > 1, "a model that always says (A) no longer votes for one option"


def test_moa_defaults_follow_the_reference_setup_and_the_paper_s_layer_count_maps():
    from manyminds.strategies import MixtureOfAgents, SelfMoA

    moa = MixtureOfAgents()
    assert moa.synthesis_temperature == 0.7 and moa.sampling.max_tokens == 2048
    assert MixtureOfAgents(temperature=0.3).sampling.max_tokens == 2048, "a shorthand keeps the other defaults"
    assert MixtureOfAgents.from_paper(layers=3, proposers=6).layers == 2, "the paper counts the aggregator's layer"
    backend = Scripted(lambda m, p, i: "The answer is 12.")
    SelfMoA(n=2).solve("What is 7 + 5?", backend=backend)
    assert backend.requests[-1].params.temperature == 0.7 and backend.requests[-1].params.max_tokens == 2048


def test_moa_can_decide_by_model_agreement_over_the_last_layer_instead_of_a_synthesis():
    from manyminds.strategies import MixtureOfAgents

    backends = [Scripted(["The answer is 12."]), Scripted(["The answer is 12."]), Scripted(["The answer is 13."])]
    judge = Scripted(["never used"])
    result = MixtureOfAgents(layers=2, proposer_backends=tuple(backends), vote="model-agreement").solve(
        "What is 7 + 5?", backend=judge)
    assert result.answer == "12" and result.decision.aggregator == "model-agreement"
    assert not judge.requests, "no synthesis call"
    assert get_aggregator("model-consistency").name == "model-agreement", "the old name still finds it"


def test_template_variation_rotates_wordings_and_each_wording_is_a_prompt_to_weigh():
    from manyminds.backends import Scripted
    from manyminds.errors import ConfigError
    from manyminds.strategies import make
    from manyminds.types import Task

    backend = Scripted(lambda m, p, i: "The answer is 9." if m[-1].content.startswith("Solve this") else
                       "The answer is 7.")
    result = make("template-variation", 8, aggregator="prompt-weighted").solve(
        Task(question="What is 3 + 4?"), backend=backend)
    assert [str(c.source) for c in result.candidates][:5] == [f"wording-{k}" for k in (1, 2, 3, 4, 1)]
    assert len({r.messages[-1].content for r in backend.requests}) == 4
    assert result.answer == "7" and result.decision.params["prompt_weights"]["wording-2"] < 0.5
    with pytest.raises(ConfigError, match="must use"):
        make("template-variation", 4, wordings=["no field here", "{question}"])
