"""Verifier resampling's false-positive curve on HumanEval: visible tests resample, hidden tests score.

Stroebl et al. ("Inference Scaling fLaws", 2024) resample one candidate at a
time until it passes the verifier (`VerifierResampling(batch=1)`, the paper's
sequential setting). With an imperfect verifier the passed-but-wrong rate
grows with the budget and accuracy stops rising. Here the verifier sees only
each problem's first assert (what a user would show the model); a candidate
is scored by all of HumanEval's asserts, which the verifier never sees. The
oracle row resamples against the full tests: the ceiling of a perfect one.

One run draws `-n` samples per problem; resampling with budget k stops at
the first of the first k samples that passes, so every budget's outcome is
read from the same samples (and `VerifierResampling(batch=1)` itself is run
at the full budget to check it picks the same candidates). Runs model-written
code in the sandbox.

    .venv/bin/python benchmarks/papers/false_positives.py [--backend SPEC] [--limit 30] [-n 16]
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from _paper import options

from manyminds.backends import from_spec
from manyminds.datasets import load
from manyminds.strategies import SelfConsistency, VerifierResampling
from manyminds.types import Candidate, Task, Verdict
from manyminds.verifiers import UnitTests


def visible_tests(tests: str, keep: int = 1) -> str:
    """HumanEval's test code with only the first `keep` asserts of `check` left."""
    kept, seen, out = 0, False, []
    for line in tests.splitlines():
        if re.match(r"\s*def check\(", line):
            seen = True
        if seen and re.match(r"\s+assert\b", line):
            if kept >= keep:
                continue
            kept += 1
        out.append(line)
    return "\n".join(out)


class VisibleTests:
    """The unit-test verifier shown only a problem's first assert: imperfect, as tests shown to a model are."""

    name = "visible-tests"

    def __init__(self, tests: UnitTests, keep: int = 1) -> None:
        self.tests = tests
        self.keep = keep

    def params(self) -> dict[str, Any]:
        return {"of": self.tests.name, "asserts": self.keep}

    async def verify(self, task: Task, candidate: Candidate) -> Verdict:
        shown = task.model_copy(update={"metadata": {**task.metadata, "tests": visible_tests(task.metadata["tests"], self.keep)}})
        verdict = await self.tests.verify(shown, candidate)
        return verdict.model_copy(update={"verifier": self.name})


def curve(passes: list[list[bool]], right: list[list[bool]], budget: int) -> dict[str, float]:
    """Accuracy, passed-but-wrong rate and abstention at `budget`: each problem stops at its first pass."""
    correct = wrong = abstained = spent = 0
    for p, r in zip(passes, right):
        first = next((k for k in range(min(budget, len(p))) if p[k]), None)
        if first is None:
            abstained += 1
            spent += min(budget, len(p))
        else:
            correct += r[first]
            wrong += not r[first]
            spent += first + 1
    n = len(passes)
    return {"budget": budget, "accuracy": correct / n, "passed_but_wrong": wrong / n, "abstained": abstained / n,
            "samples": spent / n}


async def verdicts(tasks: list[Task], results, verifier) -> list[list[bool]]:
    async def one(task, result):
        return [(await verifier.verify(task, c)).passed for c in sorted(result.candidates, key=lambda c: c.index)]

    return list(await asyncio.gather(*(one(t, r) for t, r in zip(tasks, results))))


def plot(visible: list[dict], oracle: list[dict], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.8))
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    budgets = [r["budget"] for r in visible]
    left.plot(budgets, [100 * r["accuracy"] for r in visible], marker="o", label="resampling on visible tests")
    left.plot(budgets, [100 * r["accuracy"] for r in oracle], marker="o", linestyle="--", label="oracle (all tests)")
    left.set_xlabel("budget (samples per problem)")
    left.set_ylabel("accuracy on all tests %")
    left.legend(fontsize=8)
    right.plot(budgets, [100 * r["passed_but_wrong"] for r in visible], marker="o", color="tab:red")
    right.set_xlabel("budget (samples per problem)")
    right.set_ylabel("passed visible, failed hidden %")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets)
        ax.set_xticklabels([str(b) for b in budgets])
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = options(__doc__, limit=30, n=16, max_tokens=384)
    args = parser.parse_args()
    backend = from_spec(args.backend)
    tasks = load("humaneval", limit=args.limit, seed=args.seed)
    tests = UnitTests(allow_code_execution=True)
    visible = VisibleTests(tests)
    drawn = SelfConsistency(n=args.n, prompt="direct", temperature=0.8, max_tokens=args.max_tokens, seed=args.seed)
    results = drawn.solve_many(tasks, backend=backend, cache=args.cache, progress=True)
    shown = asyncio.run(verdicts(tasks, results, visible))
    hidden = asyncio.run(verdicts(tasks, results, tests))
    budgets = [b for b in (1, 2, 4, 8, 16, 32, 64) if b <= args.n]
    visible_curve = [curve(shown, hidden, b) for b in budgets]
    oracle_curve = [curve(hidden, hidden, b) for b in budgets]
    # the strategy itself, at the full budget, on the same (cached) samples: the same candidates win
    strategy = VerifierResampling(batch=1, max_samples=args.n, verifier=visible, abstain=True, prompt="direct",
                                  temperature=0.8, max_tokens=args.max_tokens, seed=args.seed)
    resampled = strategy.solve_many(tasks, backend=backend, cache=args.cache, progress=False)
    agree = sum(1 for r, p in zip(resampled, shown)
                if r.usage.samples == next((k + 1 for k, ok in enumerate(p) if ok), len(p)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"Verifier resampling on HumanEval ({len(tasks)} problems, {args.backend})"
    plot(visible_curve, oracle_curve, out / "false_positives.png", title)
    lines = [f"# {title}", "",
             f"`benchmarks/papers/false_positives.py --backend {args.backend} --limit {args.limit} -n {args.n}`. "
             "The verifier runs each problem's first assert; accuracy is all of HumanEval's asserts passing. "
             "Resampling stops at a problem's first sample that passes the verifier (batch = 1, the paper's "
             "sequential setting) and abstains when none passes within the budget.", "",
             f"`VerifierResampling(batch=1, max_samples={args.n})` run on the same samples stopped where the curve "
             f"says for {agree} of {len(tasks)} problems.", "",
             "| budget | accuracy | passed visible, failed hidden | abstained | samples/problem | oracle accuracy |",
             "|---:|---:|---:|---:|---:|---:|"]
    for v, o in zip(visible_curve, oracle_curve):
        lines.append(f"| {v['budget']} | {100 * v['accuracy']:.1f}% | {100 * v['passed_but_wrong']:.1f}% | "
                     f"{100 * v['abstained']:.1f}% | {v['samples']:.2f} | {100 * o['accuracy']:.1f}% |")
    lines += ["", "![curves](false_positives.png)"]
    (out / "false_positives.md").write_text("\n".join(lines) + "\n")
    (out / "false_positives.json").write_text(json.dumps(
        {"problems": len(tasks), "samples": args.n, "visible": visible_curve, "oracle": oracle_curve,
         "strategy_agrees": agree}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
