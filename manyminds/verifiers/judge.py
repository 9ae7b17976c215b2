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
from typing import Any

from manyminds.backends.base import Backend
from manyminds.errors import CapabilityError, ConfigError
from manyminds.text import clip
from manyminds.types import Candidate, Generation, Message, SamplingParams, Task, Verdict
from manyminds.verifiers.base import VerifierOptions, verifier

# -- prompts (P(True) after Kadavath et al. 2022; the grade prompt is the common
#    "rate 1 to 10" judge used as a reward stand-in) ------------------------------
P_TRUE_PROMPT = (
    "Question: {question}\n\nProposed answer: {answer}\n\n"
    "Is the proposed answer correct? Reply with one word: True or False."
)
GRADE_PROMPT = (
    "Question: {question}\n\nAnswer to grade: {answer}\n\n"
    "How good and how correct is this answer? Reply with a line 'Score: N', where N is a whole number "
    "from 1 (wrong or useless) to 10 (correct and complete)."
)

_TRUE_FALSE = re.compile(r"\b(true|false)\b", re.IGNORECASE)
_SCORE = re.compile(r"score\s*[:=]?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def p_true_from_logprobs(generation: Generation) -> float | None:
    """P(True) / (P(True) + P(False)) over the first token's alternatives, or None if unknown."""
    if not generation.logprobs:
        return None
    first = generation.logprobs[0]
    options = dict(first.top or {})
    options.setdefault(first.token, first.logprob)
    p_true = sum(math.exp(lp) for tok, lp in options.items() if tok.strip().lower().startswith("true"))
    p_false = sum(math.exp(lp) for tok, lp in options.items() if tok.strip().lower().startswith("false"))
    if p_true + p_false == 0:
        return None
    return p_true / (p_true + p_false)


def read_true_false(text: str) -> bool | None:
    match = _TRUE_FALSE.search(text)
    return None if match is None else match.group(1).lower() == "true"


class PTrueJudge:
    """Scores a candidate by the judge model's probability that it is correct.

    Args:
        backend: the judge (wrap it with a cache to make judging free on reruns).
        samples: how many judgements to sample when logprobs are unavailable.
        threshold: P(True) at or above which the candidate passes.
    """

    name = "p-true"

    def __init__(self, backend: Backend, *, samples: int = 5, threshold: float = 0.5, max_chars: int = 2000) -> None:
        self.backend = backend
        self.samples = samples
        self.threshold = threshold
        self.max_chars = max_chars

    def params(self) -> dict[str, Any]:
        return {"judge": self.backend.cache_identity(), "samples": self.samples, "threshold": self.threshold}

    def messages(self, task: Task, candidate: Candidate) -> list[Message]:
        answer = clip(candidate.text.strip(), self.max_chars)
        return [Message(role="user", content=P_TRUE_PROMPT.format(question=task.render(), answer=answer))]

    async def verify(self, task: Task, candidate: Candidate) -> Verdict:
        messages = self.messages(task, candidate)
        if self.backend.capabilities.logprobs:
            try:
                (reply,) = await self.backend.generate(
                    messages, SamplingParams(temperature=0, max_tokens=1, logprobs=True, top_logprobs=10), 1
                )
                p = p_true_from_logprobs(reply)
                if p is not None:
                    return Verdict(score=p, passed=p >= self.threshold, verifier=self.name,
                                   details={"method": "logprobs", "first_token": reply.text})
            except CapabilityError:
                pass
        replies = await self.backend.generate(messages, SamplingParams(temperature=1.0, max_tokens=4), self.samples)
        votes = [read_true_false(g.text) for g in replies]
        counted = [v for v in votes if v is not None]
        p = sum(counted) / len(counted) if counted else 0.0
        return Verdict(score=p, passed=bool(counted) and p >= self.threshold, verifier=self.name,
                       details={"method": "sampled", "votes": votes})


class GradeJudge:
    """A judge prompt asking for a 1-10 grade, scaled to [0, 1]: a reward model without one."""

    name = "grade-judge"

    def __init__(self, backend: Backend, *, threshold: float = 0.7, max_chars: int = 2000) -> None:
        self.backend = backend
        self.threshold = threshold
        self.max_chars = max_chars

    def params(self) -> dict[str, Any]:
        return {"judge": self.backend.cache_identity(), "threshold": self.threshold}

    async def verify(self, task: Task, candidate: Candidate) -> Verdict:
        prompt = GRADE_PROMPT.format(question=task.render(), answer=clip(candidate.text.strip(), self.max_chars))
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
def _p_true(options: VerifierOptions) -> PTrueJudge:
    return PTrueJudge(_judge_backend(options, "p-true"))


@verifier("grade")
def _grade(options: VerifierOptions) -> GradeJudge:
    return GradeJudge(_judge_backend(options, "grade"))
