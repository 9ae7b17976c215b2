"""Verifier resampling on MBPP: the ceiling that a verifier's false positives impose (Stroebl et al. 2024).

Resampling until a candidate passes a verifier is only as good as the
verifier. Here the verifier runs an MBPP problem's first test (what a user
would show the model), while correctness is judged by all three: a program
that passes the first and fails another is a false positive, and more
samples cannot fix it. Compared: one sample; resampling against the first
test at growing budgets; and resampling against all the tests (an oracle,
the ceiling a perfect verifier would give). Runs model-written code in the
sandbox.

    .venv/bin/python benchmarks/papers/verifier_resampling.py [--backend SPEC] [--limit 10] [-n 8]
"""

from __future__ import annotations

from typing import Any

from _paper import compare, options, summary

from manyminds.strategies import make
from manyminds.types import Candidate, Task, Verdict
from manyminds.verifiers import UnitTests


class FirstTest:
    """The unit-test verifier shown only a task's first assert: an imperfect, cheap verifier."""

    name = "first-test"

    def __init__(self, tests: UnitTests) -> None:
        self.tests = tests

    def params(self) -> dict[str, Any]:
        return {"of": self.tests.name}

    async def verify(self, task: Task, candidate: Candidate) -> Verdict:
        first = task.metadata["tests"].splitlines()[0]
        shown = task.model_copy(update={"metadata": {**task.metadata, "tests": first}})
        verdict = await self.tests.verify(shown, candidate)
        return verdict.model_copy(update={"verifier": self.name})


if __name__ == "__main__":
    args = options(__doc__, n=8, max_tokens=256).parse_args()
    tests = UnitTests(allow_code_execution=True)
    settings = dict(temperature=0.8, max_tokens=args.max_tokens, seed=args.seed, prompt="direct")
    methods = {"single sample": make("self-consistency", 1, **settings)}
    for budget in sorted({max(2, args.n // 2), args.n}):
        methods[f"resampling, first test (budget {budget})"] = make(
            "verifier-resampling", budget, verifier=FirstTest(tests), abstain=False, **settings)
    methods[f"resampling, all tests: oracle (budget {args.n})"] = make(
        "verifier-resampling", args.n, verifier=tests, abstain=False, **settings)
    rows = compare("verifier_resampling", "mbpp", methods, args, verifier=tests)
    summary("verifier_resampling", "Verifier resampling on MBPP: false positives cap what more samples buy",
            rows, args, notes="Accuracy is all three tests passing. The gap between the first-test rows and the "
                              "oracle is what the verifier's false positives cost.")
