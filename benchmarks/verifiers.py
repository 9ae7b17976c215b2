"""Verifier benchmarks.

1. Sandbox throughput: HumanEval canonical solutions checked in the sandbox
   against the same scripts run as plain subprocesses (no limits, no uid, no
   namespace): checks per second and the sandbox's overhead ratio.
2. Best-of-n and verifier resampling on a HumanEval slice with scripted
   candidates of known correctness. Each sample is the canonical solution
   with probability P_CORRECT, else a mutant of it (an operator or constant
   changed, and wrong by the full tests). The verifier is imperfect on
   purpose: it runs only the first assert of each problem's tests, so some
   mutants pass it (false positives). Reported against the number of
   samples: accuracy by the full tests, and the false-positive rate (answers
   that passed the verifier but are wrong).

    .venv/bin/python benchmarks/verifiers.py
"""

from __future__ import annotations

import ast
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, record

os.environ.setdefault("MANYMINDS_ALLOW_CODE_EXECUTION", "1")

from manyminds.answers import code_key  # noqa: E402
from manyminds.backends import Scripted  # noqa: E402
from manyminds.datasets.code import humaneval_tasks  # noqa: E402
from manyminds.strategies import BestOfN, VerifierResampling  # noqa: E402
from manyminds.types import Task  # noqa: E402
from manyminds.verifiers import Limits, UnitTests  # noqa: E402
from manyminds.verifiers.unit_tests import one_script  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "humaneval" / "HumanEval.jsonl.gz"
TASKS = 20
P_CORRECT = 0.3
SAMPLES = (1, 2, 4, 8, 16)
LIMITS = Limits(timeout=10, memory_mb=512)


# -- 1. throughput ---------------------------------------------------------------------


def throughput(tasks: list[Task]) -> dict:
    scripts = [one_script(t, t.metadata["canonical"]) for t in tasks]
    verifier = UnitTests(allow_code_execution=True, limits=LIMITS)
    start = time.perf_counter()
    sandboxed = [verifier.check(t, t.metadata["canonical"]).passed for t in tasks]
    sandbox_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        plain = []
        for k, script in enumerate(scripts):
            path = Path(folder) / f"s{k}.py"
            path.write_text(script)
            plain.append(subprocess.run([sys.executable, str(path)], capture_output=True, timeout=30).returncode == 0)
        plain_s = time.perf_counter() - start
    assert sandboxed == plain, "sandboxed and plain runs must agree"
    return {
        "checks": len(tasks),
        "sandbox_checks_per_s": round(len(tasks) / sandbox_s, 2),
        "plain_checks_per_s": round(len(tasks) / plain_s, 2),
        "overhead_ratio": round(sandbox_s / plain_s, 3),
        "all_canonical_pass": all(sandboxed),
    }


# -- 2. candidates of known correctness ---------------------------------------------------

_SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
          ast.NotEq: ast.Eq, ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add}


def mutants(code: str, limit: int = 8) -> list[str]:
    """Single-point mutations of `code`: one operator swapped, or one integer constant moved by 1."""
    tree = ast.parse(code)
    sites = [n for n in ast.walk(tree) if isinstance(n, (ast.Compare, ast.BinOp))
             or (isinstance(n, ast.Constant) and type(n.value) is int)]
    out = []
    for k in range(len(sites)):
        copy = ast.parse(code)
        node = [n for n in ast.walk(copy) if isinstance(n, (ast.Compare, ast.BinOp))
                or (isinstance(n, ast.Constant) and type(n.value) is int)][k]
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _SWAPS:
            node.ops[0] = _SWAPS[type(node.ops[0])]()
        elif isinstance(node, ast.BinOp) and type(node.op) in _SWAPS:
            node.op = _SWAPS[type(node.op)]()
        elif isinstance(node, ast.Constant):
            node.value += 1
        else:
            continue
        out.append(ast.unparse(copy))
    random.Random(0).shuffle(out)
    return out[:limit]


def weak_tests(tests: str) -> str:
    """The problem's `check` reduced to its first assert: an imperfect verifier."""
    tree = ast.parse(tests)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            first = next(i for i, stmt in enumerate(node.body) if isinstance(stmt, ast.Assert))
            node.body = node.body[: first + 1]
    return ast.unparse(tree)


class Memo:
    """Verdicts of identical code are identical: check each program once."""

    def __init__(self, verifier):
        self.verifier, self.name, self.seen = verifier, verifier.name, {}

    def params(self):
        return self.verifier.params()

    async def verify(self, task, candidate):
        key = (task.id, candidate.text)
        if key not in self.seen:
            self.seen[key] = await self.verifier.verify(task, candidate)
        return self.seen[key]


def known_pools(tasks: list[Task], checker: UnitTests) -> tuple[dict, dict]:
    """Per task: the correct code and its wrong mutants; and code key -> correct by the full tests."""
    pools, truth = {}, {}
    for t in tasks:
        canonical = t.metadata["canonical"]
        wrong = [m for m in mutants(canonical) if not checker.check(t, m).passed]
        pools[t.id] = (canonical, wrong)
        truth[(t.id, code_key(canonical))] = True
        for m in wrong:
            truth[(t.id, code_key(m))] = False
    return pools, truth


def curves(tasks: list[Task], pools: dict, truth: dict) -> list[dict]:
    weak = [t.model_copy(update={"metadata": {**t.metadata, "tests": weak_tests(t.metadata["tests"])}}) for t in tasks]
    by_question = {t.question: t.id for t in tasks}

    def reply(messages, params, index):
        task_id = next(i for q, i in by_question.items() if q in messages[-1].content)
        canonical, wrong = pools[task_id]
        rng = random.Random(f"{task_id}:{index}")
        code = canonical if (rng.random() < P_CORRECT or not wrong) else rng.choice(wrong)
        return f"```python\n{code}\n```"

    verifier = Memo(UnitTests(allow_code_execution=True, limits=LIMITS))
    rows = []
    for n in SAMPLES:
        for label, strategy in (
            ("best-of-n", BestOfN(n=n, verifier=verifier)),
            ("resampling", VerifierResampling(batch=1, max_samples=n, verifier=verifier, abstain=True)),
        ):
            backend = Scripted(reply)
            results = strategy.solve_many(weak, backend=backend, progress=False)
            correct = sum(truth.get((r.task.id, r.answer), False) for r in results)
            answered = [r for r in results if r.answer is not None]
            # A false positive: the answer passed the verifier and is wrong by the full tests.
            false_pos = sum(
                1 for r in answered
                if not truth.get((r.task.id, r.answer), False)
                and any(c.answer == r.answer and c.verdict and c.verdict.passed for c in r.candidates)
            )
            rows.append({
                "strategy": label, "n": n, "accuracy": round(correct / len(results), 3),
                "answered": len(answered), "false_positive_answers": false_pos,
                "false_positive_rate": round(false_pos / len(answered), 3) if answered else 0.0,
                "mean_samples": round(sum(r.usage.samples for r in results) / len(results), 2),
            })
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    tasks = humaneval_tasks(DATA, limit=TASKS)
    speed = throughput(tasks)
    print("sandbox:", speed)
    checker = UnitTests(allow_code_execution=True, limits=LIMITS)
    pools, truth = known_pools(tasks, checker)
    mutant_count = sum(len(w) for _, w in pools.values())
    weak_fp = sum(
        1 for t in tasks for m in pools[t.id][1]
        if checker.check(t.model_copy(update={"metadata": {**t.metadata, "tests": weak_tests(t.metadata["tests"])}}), m).passed
    )
    print(f"{mutant_count} wrong mutants; {weak_fp} pass the weak verifier ({weak_fp / max(1, mutant_count):.0%})")
    rows = curves(tasks, pools, truth)
    lines = ["| strategy | n | accuracy | answered | passed-but-wrong among answered | mean samples |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['strategy']} | {r['n']} | {r['accuracy']:.0%} | {r['answered']} | {r['false_positive_rate']:.0%} | {r['mean_samples']} |"
              for r in rows]
    (RESULTS / "verifiers.md").write_text(
        f"# Verifiers on HumanEval[:{TASKS}], scripted candidates (P(correct) = {P_CORRECT}), weak verifier\n\n"
        f"Sandbox: {speed['sandbox_checks_per_s']} checks/s against {speed['plain_checks_per_s']} unsandboxed "
        f"(overhead x{speed['overhead_ratio']}).\n\nWrong mutants passing the weak verifier: {weak_fp}/{mutant_count}.\n\n"
        + "\n".join(lines) + "\n")
    print("\n".join(lines))
    print("written", record("verifiers", {"sandbox": speed, "tasks": TASKS, "p_correct": P_CORRECT,
                                          "mutants": mutant_count, "mutants_passing_weak_verifier": weak_fp,
                                          "rows": rows}))


if __name__ == "__main__":
    main()
