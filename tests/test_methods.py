"""Methods as their papers specify them: stopping rules, few-shot prompts, prompt variety, free-form answers."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from manyminds.backends import Scripted
from manyminds.errors import ConfigError
from manyminds.exemplars import Exemplars, named
from manyminds.reaggregate import reaggregate
from manyminds.stopping import (
    ESC, SPRT, AdaptiveConsistency, MixtureSPRT, beta_leader_probability, dirichlet_leader_probability, replay,
)
from manyminds.strategies import DivSE, SelfConsistency
from manyminds.strategies.resampled import ChoiceShuffle, ExemplarResampling, permutation
from manyminds.types import AnswerFormat, Task


def replies(answers):
    return Scripted(lambda m, p, i: f"The answer is {answers[i]}." if answers[i] else "I do not know.")


# -- ESC as the official scripts decide ----------------------------------------------------------


def test_esc_answers_with_the_unanimous_window_where_a_vote_over_all_samples_differs():
    order = ["7", "7", "8", "7", "7", "8", "9", "9", "9"]  # windows of 3: split, split, unanimous 9
    result = SelfConsistency(n=9, stop=ESC(window=3)).solve("q", backend=replies(order))
    assert result.answer == "9" and result.decision.aggregator == "esc"
    assert result.tally == {"7": 4.0, "8": 2.0, "9": 3.0}, "the vote would have said 7"
    assert SelfConsistency(n=9, stop=ESC(window=3), aggregator="majority").solve(
        "q", backend=replies(order)).answer == "7", "an aggregator chosen by the user is honoured"
    assert reaggregate([result], "esc:window=3").answers == ["9"]


def test_esc_without_a_unanimous_window_falls_back_to_the_vote_over_all():
    order = ["7", "8", "7", "8", "7", "9"]
    result = SelfConsistency(n=6, stop=ESC(window=3)).solve("q", backend=replies(order))
    assert result.answer == "7" and "no unanimous window" in result.decision.params["note"]


def test_a_window_of_unreadable_answers_stops_esc_as_the_official_scripts_count_it():
    order = [None, None, None, "7", "7", "7"]
    official = SelfConsistency(n=6, stop=ESC(window=3)).solve("q", backend=replies(order))
    assert official.usage.samples == 3 and official.answer is None and "no readable answer" in official.stop_reason
    patient = SelfConsistency(n=6, stop=ESC(window=3, unreadable_stops=False)).solve("q", backend=replies(order))
    assert patient.usage.samples == 6 and patient.answer == "7"


# -- Adaptive-Consistency's Dirichlet criterion -----------------------------------------------------


def test_the_dirichlet_probability_matches_a_monte_carlo_estimate():
    rng = np.random.default_rng(0)
    for counts in ([5, 1, 1], [6, 3, 2, 1], [3, 3, 1], [9, 2, 2, 2, 1]):
        gammas = rng.gamma(np.asarray(counts)[:, None] + 1.0, size=(len(counts), 400_000))
        estimate = float((gammas[0] > gammas[1:].max(axis=0)).mean())
        assert dirichlet_leader_probability(counts) == pytest.approx(estimate, abs=0.004), counts


def test_adaptive_consistency_defaults_to_beta_as_the_official_code_runs_it():
    rule = AdaptiveConsistency()
    assert rule.criterion == "beta" and rule.threshold == 0.95
    many = ["a"] * 6 + ["b", "c", "d", "e", "f", "g"]
    assert rule.probability(many) == beta_leader_probability(6, 1)


def test_adaptive_consistency_dirichlet_looks_at_the_top_answers_and_is_beta_with_two():
    rule = AdaptiveConsistency(criterion="dirichlet")
    assert rule.top_k == 5
    two = ["a"] * 5 + ["b"]
    assert rule.probability(two) == beta_leader_probability(5, 1), "fewer than three answers: the Beta rule"
    many = ["a"] * 6 + ["b", "c", "d", "e", "f", "g"]
    assert rule.probability(many) == pytest.approx(dirichlet_leader_probability([6, 1, 1, 1, 1]))
    assert rule.probability(many) < AdaptiveConsistency(criterion="beta").probability(many)


def test_unreadable_answers_count_as_one_more_answer_unless_told_not_to():
    answers = ["7", None, None, None, "7", "7"]
    assert AdaptiveConsistency(criterion="beta").probability(answers) == beta_leader_probability(3, 3)
    assert AdaptiveConsistency(criterion="beta", count_unreadable=False).probability(answers) == beta_leader_probability(3, 0)


# -- sequential tests ------------------------------------------------------------------------------


def test_sprt_stops_when_the_log_likelihood_ratio_crosses_log_two_over_alpha():
    rule = SPRT(alpha=0.1, p1=0.75)
    per_vote = math.log(1.5)
    needed = math.ceil(math.log(20) / per_vote)
    assert replay(rule, ["7"] * 40, 40)[0] == needed
    assert replay(rule, ["7", "8"] * 20, 40)[0] == 40, "a tie never stops it"
    assert "log likelihood ratio" in replay(rule, ["7"] * 40, 40)[1]


def test_the_mixture_sprt_ratio_is_the_beta_integral_and_needs_no_alternative():
    rule = MixtureSPRT(alpha=0.05)
    a, b = 9, 2
    expected = (a + b) * math.log(2) + math.log(math.factorial(a) * math.factorial(b) / math.factorial(a + b + 1))
    assert rule.log_ratio(a, b) == pytest.approx(expected)
    used, _ = replay(rule, ["7"] * 40, 40)
    assert 2 ** used / (used + 1) >= 40 > 2 ** (used - 1) / used


@pytest.mark.parametrize("alpha", [0.1, 0.05])
@pytest.mark.parametrize("rule", [SPRT, MixtureSPRT])
def test_sequential_rules_stop_on_exact_ties_at_most_alpha_of_the_time(rule, alpha):
    """4,000 questions whose two answers are exactly tied, 40 samples at most: the leader is picked
    after the fact, so a rule that tested it at alpha stopped on 14.9% of ties at alpha = 0.1."""
    rng = np.random.default_rng(20)
    tested = rule(alpha=alpha)
    draws = rng.integers(0, 2, size=(4000, 40))
    stopped = sum(replay(tested, ["A" if d else "B" for d in row], 40)[0] < 40 for row in draws)
    assert stopped / 4000 <= alpha, (rule.__name__, alpha, stopped / 4000)


def test_sequential_rules_are_found_by_name():
    from manyminds.stopping import parse_rule

    assert parse_rule("sprt:0.2") == SPRT(alpha=0.2)
    assert parse_rule("msprt") == MixtureSPRT()
    assert SelfConsistency(stop="sprt:0.3").stop == SPRT(alpha=0.3)


# -- few-shot exemplars ----------------------------------------------------------------------------


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


# -- prompts and free-form answers ------------------------------------------------------------------


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


def test_moa_defaults_follow_the_reference_setup_and_the_paper_s_layer_count_maps():
    from manyminds.strategies import MixtureOfAgents, SelfMoA

    moa = MixtureOfAgents()
    assert moa.synthesis_temperature == 0.7 and moa.sampling.max_tokens == 2048
    assert MixtureOfAgents(temperature=0.3).sampling.max_tokens == 2048, "a shorthand keeps the other defaults"
    assert MixtureOfAgents.from_paper(layers=3, proposers=6).layers == 2, "the paper counts the aggregator's layer"
    backend = Scripted(lambda m, p, i: "The answer is 12.")
    SelfMoA(n=2).solve("What is 7 + 5?", backend=backend)
    assert backend.requests[-1].params.temperature == 0.7 and backend.requests[-1].params.max_tokens == 2048


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


# -- DIV-SE's reusable plan -----------------------------------------------------------------------


def test_discovery_keeps_the_pairs_that_do_best_on_a_held_out_slice_and_the_plan_is_reused(tmp_path):
    from manyminds.strategies.discovery import DiversityPlan, discover

    def reply(messages, params, index):
        text = messages[-1].content
        if "Do not solve it" in text:
            return "Approach 1: count up\nApproach 2: guess\nPersona 1: a teacher\nPersona 2: a coach"
        gold = re.search(r"What is (\d+) \+ (\d+)", text)
        right = int(gold.group(1)) + int(gold.group(2))
        return f"The answer is {right if 'count up' in text else right + 1}."

    tasks = [Task(question=f"What is {k} + {k + 2}?", gold=str(2 * k + 2)) for k in range(10)]
    plan = discover(tasks, backend=Scripted(reply), propose_on=2, held_out=6, approaches=2, personas=2, keep=2)
    assert plan.tried == 4 and plan.pairs == (("a teacher", "count up"), ("a coach", "count up"))
    assert plan.accuracy == (1.0, 1.0)
    path = plan.save(tmp_path / "plan.json")
    backend = Scripted(reply)
    result = DivSE.from_plan(path).solve(tasks[9], backend=backend)
    assert result.answer == "20" and all("Do not solve" not in r.messages[-1].content for r in backend.requests)
    assert [str(c.source) for c in result.candidates] == ["pair-1", "pair-2"]
    assert DiversityPlan.load(path) == plan
    with pytest.raises(ConfigError, match="no DIV-SE plan"):
        DiversityPlan.load(tmp_path / "missing.json")


def test_div_se_takes_explicit_pairs_instead_of_a_cross_product():
    backend = Scripted(["The answer is 12."])
    pairs = (("a teacher", "count up"), ("a coach", "use doubles"), ("a teacher", "use doubles"))
    DivSE(pairs=pairs).solve("What is 7 + 5?", backend=backend)
    shown = {(p, a) for r in backend.requests for p, a in pairs
             if f"You are {p}." in r.messages[-1].content and f"approach: {a}." in r.messages[-1].content}
    assert len(backend.requests) == 3 and shown == set(pairs)
    with pytest.raises(ValueError, match="not both"):
        DivSE(pairs=pairs, given_personas=("x",))


def test_idiv_se_groups_explicit_pairs_by_persona_one_combined_prompt_each():
    from manyminds.strategies import IDivSE

    def reply(messages, params, index):
        text = messages[-1].content
        if "You are a teacher." in text:
            return "Approach 1: 7, 8, ... 12. The answer is 12.\nApproach 2: 6 + 6 = 12. The answer is 12."
        return "Approach 1: 7 + 5 = 13. The answer is 13."

    backend = Scripted(reply)
    pairs = (("a teacher", "count up"), ("a coach", "use doubles"), ("a teacher", "use doubles"))
    result = IDivSE(pairs=pairs).solve("What is 7 + 5?", backend=backend)
    prompts = [r.messages[-1].content for r in backend.requests]
    assert len(prompts) == 2 and not any("Do not solve" in text for text in prompts)
    teacher = next(text for text in prompts if "You are a teacher." in text)
    assert "Approach 1: count up\nApproach 2: use doubles" in teacher and "2 times" in teacher
    assert "Approach 1: use doubles" in next(text for text in prompts if "You are a coach." in text)
    assert [(str(c.source), c.answer) for c in result.candidates] == [
        ("persona-1/approach-1", "12"), ("persona-1/approach-2", "12"), ("persona-2/approach-1", "13")]
    assert result.answer == "12"
    with pytest.raises(ValueError, match="not both"):
        IDivSE(pairs=pairs, given_approaches=("x",))


# -- judges and multi-model votes ----------------------------------------------------------------


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


def test_moa_can_decide_by_model_agreement_over_the_last_layer_instead_of_a_synthesis():
    from manyminds.aggregators import get_aggregator
    from manyminds.strategies import MixtureOfAgents

    backends = [Scripted(["The answer is 12."]), Scripted(["The answer is 12."]), Scripted(["The answer is 13."])]
    judge = Scripted(["never used"])
    result = MixtureOfAgents(layers=2, proposer_backends=tuple(backends), vote="model-agreement").solve(
        "What is 7 + 5?", backend=judge)
    assert result.answer == "12" and result.decision.aggregator == "model-agreement"
    assert not judge.requests, "no synthesis call"
    assert get_aggregator("model-consistency").name == "model-agreement", "the old name still finds it"


def test_verifier_resampling_with_batch_one_is_the_paper_s_sequential_setting():
    from manyminds.strategies import VerifierResampling
    from manyminds.verifiers import MathAnswer

    answers = ["13", "11", "12", "12", "12"]
    backend = replies(answers)
    result = VerifierResampling(batch=1, budget=5, verifier=MathAnswer()).solve(
        Task(question="What is 7 + 5?", gold="12"), backend=backend)
    assert [(r.n, r.first_index) for r in backend.requests] == [(1, 0), (1, 1), (1, 2)], "one at a time, stop at the pass"
    assert result.answer == "12" and "a candidate passed after 3 samples" in result.stop_reason


def test_the_cli_discovers_a_plan_and_runs_div_se_on_it(tmp_path):
    import json
    import subprocess
    import sys

    plan = tmp_path / "plan.json"
    cli = [sys.executable, "-m", "manyminds.cli"]
    made = subprocess.run([*cli, "discover", "arithmetic", "--out", str(plan), "--propose-on", "1", "--held-out", "3",
                           "--approaches", "2", "--personas", "1", "--keep", "1", "--backend",
                           "scripted:Approach 1: add|The answer is 3.", "--no-cache"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert len(json.loads(plan.read_text())["pairs"]) == 1
    run = subprocess.run([*cli, "run", "What is 1 + 2?", "-s", "div-se", "-n", "2", "--plan", str(plan),
                          "--backend", "scripted:The answer is 3.", "--no-cache", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert [c["source"] for c in json.loads(run.stdout)["candidates"]] == ["pair-1"]
