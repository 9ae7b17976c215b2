"""Math answers checked against the reference with math-verify (`answers.equivalence`).

Equivalent forms pass: `0.5` and `\\frac{1}{2}`, `\\boxed{\\dfrac12}`.
"""

from __future__ import annotations

from typing import Any

from manyminds.answers.equivalence import math_equivalent
from manyminds.types import Candidate, Task, Verdict
from manyminds.verifiers.base import VerifierOptions, verifier


class MathAnswer:
    """Passes when the candidate's final answer equals the task's gold answer (math-verify)."""

    name = "math-answer"
    oracle = True
    """It compares with the gold answer: in a benchmark, an oracle (`verifiers.base.is_oracle`)."""

    def __init__(self, timeout: int = 5) -> None:
        self.timeout = timeout

    def params(self) -> dict[str, Any]:
        return {"timeout": self.timeout}

    async def verify(self, task: Task, candidate: Candidate) -> Verdict:
        if task.gold is None:
            return Verdict(score=0.0, passed=False, verifier=self.name, details={"result": "no gold answer"})
        ok = await math_equivalent(task.gold, candidate.text, self.timeout)
        return Verdict(score=float(ok), passed=ok, verifier=self.name, details={"gold": task.gold})


@verifier("math")
def _math(options: VerifierOptions, timeout: int = 5) -> MathAnswer:
    return MathAnswer(timeout=timeout)
