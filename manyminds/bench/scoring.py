"""Scorers: was a result right? By the gold answer, the unit tests, a plan simulation or a judge.

Each data set names its scorer (`Dataset.scorer`); `scorer_for` builds it.
A `Score` has a value in [0, 1] (1 right, 0 wrong; a pairwise judgement
scores 1 for a win, 0.5 for a tie, 0 for a loss) and a line saying why, so a
report can show what failed, not only that it did.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pydantic import BaseModel

from manyminds.answers import extract_code, is_correct, normalise_gold, same_answer
from manyminds.backends.base import Backend
from manyminds.errors import ConfigError
from manyminds.extensions import Scorer as Scorer
from manyminds.text import clip
from manyminds.types import ballots, Candidate, Message, Result, SamplingParams
from manyminds.answers.blocksworld import check_plan, parse_plan, parse_problem


class Score(BaseModel):
    value: float
    """1 right, 0 wrong; pairwise: 1 win, 0.5 tie, 0 loss."""
    detail: str = ""
    samples: list[float] | None = None
    """Each voting sample's own score, in sample-index order, where the scorer can say (answers,
    plans, code): what pass@k, coverage and the single-sample baseline are computed from."""

    @property
    def correct(self) -> bool:
        return self.value > 0.5


def voting_samples(result: Result) -> list[Candidate]:
    """The samples that voted, in sample-index order (what per-sample scores are listed by)."""
    return sorted(ballots(result.candidates), key=lambda c: c.index)


def answer_sample_scores(result: Result) -> list[float]:
    """Each voting sample's answer against the gold key (1 or 0), in sample-index order."""
    gold = normalise_gold(result.task)
    return [float(same_answer(result.task, c.answer, gold)) for c in voting_samples(result)]


async def with_samples(scorer: Scorer, result: Result) -> Score:
    """`scorer.score(result)`, with every voting sample's score where the scorer has `score_samples`."""
    score = await scorer.score(result)
    each = getattr(scorer, "score_samples", None)
    if each is None or score.samples is not None:
        return score
    return score.model_copy(update={"samples": await each(result)})


def chosen_candidate(result: Result) -> Candidate | None:
    """The first candidate that gave the chosen answer: the text a user would be handed."""
    return next((c for c in result.candidates if result.answer is not None and c.answer == result.answer), None)


class AnswerScorer:
    """The answer key against the gold key: numbers and math by value, choices by letter, yes/no by polarity."""

    name = "answer"

    async def score(self, result: Result) -> Score:
        gold = normalise_gold(result.task)
        if gold is None:
            raise ConfigError(f"task {result.task.id!r} has no gold answer to score against")
        right = bool(is_correct(result))
        return Score(value=float(right), detail=f"answer {result.answer!r}, gold {gold!r}")

    async def score_samples(self, result: Result) -> list[float]:
        return answer_sample_scores(result)


class UnitTestScorer:
    """The chosen answer's code run against the task's unit tests, in the sandbox."""

    name = "unit-tests"

    def __init__(self, verifier: Any) -> None:
        self.verifier = verifier

    async def score(self, result: Result) -> Score:
        candidate = chosen_candidate(result)
        if candidate is None:
            return Score(value=0.0, detail="no answer")
        verdict = await self.verifier.verify(result.task, candidate)
        detail = "passed the tests" if verdict.passed else str(verdict.details.get("error") or
                                                               verdict.details.get("stderr") or "failed the tests")
        return Score(value=float(verdict.passed), detail=detail.strip().splitlines()[-1][:300] if detail else "")

    async def score_samples(self, result: Result) -> list[float]:
        """Each sample's code against all the tests (a program written twice is run once)."""
        samples = voting_samples(result)
        distinct = {extract_code(c.text): c for c in samples}
        verdicts = await asyncio.gather(*(self.verifier.verify(result.task, c) for c in distinct.values()))
        passed = {code: v.passed for code, v in zip(distinct, verdicts)}
        return [float(passed[extract_code(c.text)]) for c in samples]


class PlanScorer:
    """A Blocksworld plan simulated against its PDDL problem: any valid plan is right."""

    name = "plan"

    async def score(self, result: Result) -> Score:
        if "problem" not in result.task.metadata:
            raise ConfigError(f"task {result.task.id!r} has no metadata['problem'] (its PDDL) to check plans against")
        if result.answer is None:
            return Score(value=0.0, detail="no plan could be read")
        check = check_plan(parse_problem(result.task.metadata["problem"]), parse_plan(result.answer))
        return Score(value=float(check.valid), detail=check.detail)

    async def score_samples(self, result: Result) -> list[float]:
        problem = parse_problem(result.task.metadata["problem"])
        return [float(c.answer is not None and check_plan(problem, parse_plan(c.answer)).valid)
                for c in voting_samples(result)]


PAIRWISE_PROMPT = (
    "You compare two responses to the same instruction and say which is better: more helpful, "
    "correct and complete, following the instruction. Length alone is not quality.\n\n"
    "# Instruction\n{instruction}\n\n# Response A\n{a}\n\n# Response B\n{b}\n\n"
    "Which response is better? Reply with one letter: A or B."
)


def read_preference(text: str) -> str | None:
    """'A', 'Response B', '**B** is better' -> 'A' or 'B'; None when it says neither (or both)."""
    found = set(re.findall(r"\b(?:response\s+)?([AB])\b", text.strip()[:200]))
    return found.pop() if len(found) == 1 else None


class PairwiseJudgeScorer:
    """AlpacaEval-style: a judge model compares the chosen answer with the reference output,
    asked in both orders so that its preference for a position cancels out.

    A win in both orders scores 1, a win in one 0.5, none 0. Length-controlled win rates
    need AlpacaEval's fitted length model, which is not reproduced here.
    """

    name = "pairwise-judge"

    def __init__(self, judge: Backend, *, max_chars: int = 6000) -> None:
        self.judge = judge
        self.max_chars = max_chars

    async def _prefers_first(self, instruction: str, first: str, second: str) -> bool | None:
        prompt = PAIRWISE_PROMPT.format(instruction=instruction, a=clip(first, self.max_chars),
                                        b=clip(second, self.max_chars))
        (reply,) = await self.judge.generate([Message(role="user", content=prompt)],
                                             SamplingParams(temperature=0.0, max_tokens=8), 1)
        verdict = read_preference(reply.text)
        return None if verdict is None else verdict == "A"

    async def score(self, result: Result) -> Score:
        reference = result.task.metadata.get("reference")
        if reference is None:
            raise ConfigError(f"task {result.task.id!r} has no metadata['reference'] output to compare against")
        candidate = chosen_candidate(result) or (result.candidates[0] if result.candidates else None)
        if candidate is None:
            return Score(value=0.0, detail="no response")
        ours_first, ours_second = await asyncio.gather(
            self._prefers_first(result.task.question, candidate.text, reference),
            self._prefers_first(result.task.question, reference, candidate.text))
        wins = [ours_first is True, ours_second is False]
        unread = [ours_first is None, ours_second is None]
        detail = f"won {sum(wins)} of 2 orders" + (f" ({sum(unread)} replies unreadable)" if any(unread) else "")
        return Score(value=sum(wins) / 2, detail=detail)


def scorer_for(name: str, *, verifier: Any = None, judge: Backend | None = None) -> Scorer:
    """The scorer a data set names; unit tests need a `UnitTests` verifier (which needs the
    opt-in to run code), pairwise judgement a judge backend."""
    if name == "answer":
        return AnswerScorer()
    if name == "plan":
        return PlanScorer()
    if name == "unit-tests":
        if verifier is None:
            raise ConfigError("scoring code runs it: pass --allow-code-execution (and have bubblewrap, or "
                              "--allow-unisolated-code-execution)")
        return UnitTestScorer(verifier)
    if name == "pairwise-judge":
        if judge is None:
            raise ConfigError("pairwise scoring needs a judge backend: pass --judge SPEC")
        return PairwiseJudgeScorer(judge)
    raise ConfigError(f"unknown scorer {name!r}; known: answer, plan, unit-tests, pairwise-judge")
