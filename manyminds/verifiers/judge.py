"""LLM judges: P(True) and a 1-10 grade.

P(True) follows Kadavath et al., "Language Models (Mostly) Know What They
Know" (2022): show the question and a proposed answer, ask whether it is
true, and read the probability of "True" from the first token's logprobs.
A backend without logprobs is asked k times instead, and the share of
"True" replies is the score.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal

from manyminds.backends.base import Backend
from manyminds.errors import CapabilityError, ConfigError
from manyminds.text import clip
from manyminds.types import Candidate, Generation, Message, SamplingParams, Task, Verdict
from manyminds.verifiers.base import VerifierOptions, verifier

# -- prompts (P(True) after Kadavath et al. 2022; the grade prompt is the common
#    "rate 1 to 10" judge used as a reward stand-in) ------------------------------
P_TRUE_PROMPT = (
    "Question: {question}\n\n{context}Proposed answer: {answer}\n\n"
    "Is the proposed answer correct? Reply with one word: True or False."
)
# Kadavath et al.'s own form: the options are (A) True and (B) False, and P(True) is the
# probability of "A" as the reply's first token.
P_TRUE_AB_PROMPT = (
    "Question: {question}\n\n{context}Proposed answer: {answer}\n\n"
    "Is the proposed answer:\n (A) True\n (B) False\nReply with the letter only. The proposed answer is: ("
)
OTHERS_BLOCK = "Here are some other answers to the question, for reference:\n{others}\n\n"
REFERENCE_BLOCK = "Reference answer: {reference}\n\n"
GRADE_PROMPT = (
    "Question: {question}\n\n{context}Answer to grade: {answer}\n\n"
    "How good and how correct is this answer? Reply with a line 'Score: N', where N is a whole number "
    "from 1 (wrong or useless) to 10 (correct and complete)."
)

_TRUE_FALSE = re.compile(r"\b(true|false)\b", re.IGNORECASE)
_A_B = re.compile(r"^\W*\(?\s*([ab])\b", re.IGNORECASE)
_SCORE = re.compile(r"score\s*[:=]?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def _option_token(token: str, form: str) -> bool | None:
    word = token.strip().lower().lstrip("( ")
    if form == "ab":
        return True if word.startswith("a") and len(word) <= 2 else False if word.startswith("b") and len(word) <= 2 else None
    return True if word.startswith("true") else False if word.startswith("false") else None


def p_true_from_logprobs(generation: Generation, form: str = "true-false") -> float | None:
    """P(True) / (P(True) + P(False)) over the first token's alternatives, or None if unknown.

    With `form="ab"`, the options are the letters: "A" is True, "B" is False.
    """
    if not generation.logprobs:
        return None
    first = generation.logprobs[0]
    options = dict(first.top or {})
    options.setdefault(first.token, first.logprob)
    p_true = sum(math.exp(lp) for tok, lp in options.items() if _option_token(tok, form) is True)
    p_false = sum(math.exp(lp) for tok, lp in options.items() if _option_token(tok, form) is False)
    if p_true + p_false == 0:
        return None
    return p_true / (p_true + p_false)


def read_true_false(text: str, form: str = "true-false") -> bool | None:
    if form == "ab":
        match = _A_B.search(text)
        return None if match is None else match.group(1).lower() == "a"
    match = _TRUE_FALSE.search(text)
    return None if match is None else match.group(1).lower() == "true"


class PTrueJudge:
    """Scores a candidate by the judge model's probability that it is correct (Kadavath et al., 2022).

    Args:
        backend: the judge (wrap it with a cache to make judging free on reruns).
        samples: how many judgements to sample when logprobs are unavailable.
        threshold: P(True) at or above which the candidate passes.
        form: "true-false" (reply True or False) or "ab", the paper's "(A) True / (B) False"
            question, P(True) read as the probability of "A".
        show_others: show the judge up to this many of the question's other samples before the
            proposed answer: the variant the paper finds improves P(True).
        reference: show the task's gold answer when it has one (reference-guided grading);
            off by default, since a verifier that sees the gold is an oracle.
        prompt: replaces the question template (fields: question, context, answer).
    """

    name = "p-true"

    def __init__(self, backend: Backend, *, samples: int = 5, threshold: float = 0.5, max_chars: int | None = 2000,
                 form: str = "true-false", show_others: int = 0, reference: bool = False,
                 prompt: str | None = None) -> None:
        if form not in ("true-false", "ab"):
            raise ConfigError(f"P(True) form must be 'true-false' or 'ab', got {form!r}")
        if show_others < 0:
            raise ConfigError(f"show_others must be >= 0, got {show_others}")
        self.backend = backend
        self.samples = samples
        self.threshold = threshold
        self.max_chars = max_chars
        self.form = form
        self.show_others = show_others
        self.reference = reference
        self.prompt = prompt or (P_TRUE_AB_PROMPT if form == "ab" else P_TRUE_PROMPT)

    @property
    def oracle(self) -> bool:
        """Shown the gold answer (`reference=True`): an oracle."""
        return self.reference

    @property
    def sees_other_samples(self) -> bool:
        return self.show_others > 0

    def params(self) -> dict[str, Any]:
        return {"judge": self.backend.cache_identity(), "samples": self.samples, "threshold": self.threshold,
                "form": self.form, "show_others": self.show_others, "reference": self.reference}

    def _shown(self, text: str) -> str:
        text = text.strip()
        return clip(text, self.max_chars) if self.max_chars else text

    def messages(self, task: Task, candidate: Candidate, others: "Sequence[Candidate]" = ()) -> list[Message]:
        context = ""
        if self.reference and task.gold is not None:
            context += REFERENCE_BLOCK.format(reference=task.gold)
        shown = [c for c in others if c.index != candidate.index][: self.show_others]
        if shown:
            context += OTHERS_BLOCK.format(others="\n".join(f"- {self._shown(c.text)}" for c in shown))
        content = self.prompt.format(question=task.render(), context=context, answer=self._shown(candidate.text))
        return [Message(role="user", content=content)]

    async def verify(self, task: Task, candidate: Candidate, others: "Sequence[Candidate]" = ()) -> Verdict:
        messages = self.messages(task, candidate, others)
        if self.backend.capabilities.logprobs:
            try:
                (reply,) = await self.backend.generate(
                    messages, SamplingParams(temperature=0, max_tokens=1, logprobs=True, top_logprobs=10), 1
                )
                p = p_true_from_logprobs(reply, self.form)
                if p is not None:
                    return Verdict(score=p, passed=p >= self.threshold, verifier=self.name,
                                   details={"method": "logprobs", "first_token": reply.text})
            except CapabilityError:
                pass
        replies = await self.backend.generate(messages, SamplingParams(temperature=1.0, max_tokens=4), self.samples)
        votes = [read_true_false(g.text, self.form) for g in replies]
        counted = [v for v in votes if v is not None]
        p = sum(counted) / len(counted) if counted else 0.0
        return Verdict(score=p, passed=bool(counted) and p >= self.threshold, verifier=self.name,
                       details={"method": "sampled", "votes": votes})


class GradeJudge:
    """A judge prompt asking for a 1-10 grade, scaled to [0, 1]: a reward model without one."""

    name = "grade-judge"

    def __init__(self, backend: Backend, *, threshold: float = 0.7, max_chars: int | None = 2000,
                 reference: bool = False, prompt: str | None = None) -> None:
        self.backend = backend
        self.threshold = threshold
        self.max_chars = max_chars
        self.reference = reference
        self.prompt = prompt or GRADE_PROMPT

    @property
    def oracle(self) -> bool:
        """Shown the gold answer (`reference=True`): an oracle."""
        return self.reference

    def params(self) -> dict[str, Any]:
        return {"judge": self.backend.cache_identity(), "threshold": self.threshold, "reference": self.reference}

    async def verify(self, task: Task, candidate: Candidate) -> Verdict:
        text = candidate.text.strip()
        answer = clip(text, self.max_chars) if self.max_chars else text
        context = REFERENCE_BLOCK.format(reference=task.gold) if self.reference and task.gold is not None else ""
        prompt = self.prompt.format(question=task.render(), answer=answer, context=context)
        (reply,) = await self.backend.generate([Message(role="user", content=prompt)],
                                               SamplingParams(temperature=0, max_tokens=32), 1)
        match = _SCORE.search(reply.text)
        if match is None:
            return Verdict(score=0.0, passed=False, verifier=self.name,
                           details={"result": "no grade in the reply", "reply": reply.text[:200]})
        grade = min(10.0, max(1.0, float(match.group(1))))
        score = (grade - 1) / 9
        return Verdict(score=score, passed=score >= self.threshold, verifier=self.name, details={"grade": grade})




def _judge_backend(options: VerifierOptions, name: str) -> Backend:
    if options.backend is None:
        raise ConfigError(f"the {name} verifier is a judge: it needs a backend")
    return options.backend


@verifier("p-true")
def _p_true(options: VerifierOptions, samples: int = 5, threshold: float = 0.5,
            form: Literal["true-false", "ab"] = "true-false", show_others: int = 0,
            reference: bool = False) -> PTrueJudge:
    return PTrueJudge(_judge_backend(options, "p-true"), samples=samples, threshold=threshold, form=form,
                      show_others=show_others, reference=reference)


@verifier("grade")
def _grade(options: VerifierOptions, threshold: float = 0.7, reference: bool = False) -> GradeJudge:
    return GradeJudge(_judge_backend(options, "grade"), threshold=threshold, reference=reference)
