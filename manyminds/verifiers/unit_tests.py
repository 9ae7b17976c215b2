"""Unit tests for code (HumanEval and MBPP style), run in the sandbox.

A task carries its tests in `metadata`: `tests` (test code: HumanEval's
`check` function, or MBPP's asserts), optionally `entry_point` (HumanEval:
the harness calls `check(entry_point)`), `prompt` (the function header a
plain completion continues) and `setup` (MBPP's test_setup_code). The
candidate's code is taken from its fenced blocks or, failing that, its text.
"""

from __future__ import annotations

import ast
import asyncio
import doctest
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from manyminds.answers import extract_code
from manyminds.errors import ConfigError
from manyminds.types import Candidate, Task, Verdict
from manyminds.verifiers.sandbox import Limits, TestProgram, require_isolation, require_opt_in, run_tests
from manyminds.verifiers.base import VerifierOptions, verifier


def program(task: Task, code: str) -> tuple[str, TestProgram]:
    """The candidate's script and the tests that call into it (run in two sandboxes).

    The task's setup runs on both sides; its prompt (HumanEval's header, with helpers
    such as `poly` that the tests call) runs with the tests as trusted code, and with
    the candidate's code when that is a completion of the function's body.
    """
    meta = task.metadata
    if "tests" not in meta:
        raise ConfigError(f"task {task.id or task.question[:40]!r} has no metadata['tests'] to run")
    entry = meta.get("entry_point")
    if entry and f"def {entry}" not in code and meta.get("prompt"):
        code = meta["prompt"] + code  # a completion of the function body
    setup = meta.get("setup", "")
    candidate = "\n\n".join(p for p in (setup, code) if p)
    return candidate, TestProgram(tests=meta["tests"], setup=setup, prelude=meta.get("prompt", "") if entry else "",
                                  entry=entry or None)


def visible_tests(task: Task) -> str:
    """The tests a model may be shown: `metadata["visible_tests"]` when the task has them, else the
    examples of HumanEval's docstring (`>>> f(x)` then its value) as asserts, else the first assert
    of the tests (MBPP's first test; HumanEval's first check). The rest stay hidden, for scoring."""
    meta = task.metadata
    if meta.get("visible_tests"):
        return meta["visible_tests"]
    entry, prompt = meta.get("entry_point"), meta.get("prompt") or ""
    if entry and ">>>" in prompt:
        asserts = []
        try:
            functions = [n for n in ast.parse(prompt).body if isinstance(n, ast.FunctionDef) and n.name == entry]
            docstring = ast.get_docstring(functions[0]) or "" if functions else ""
            examples = doctest.DocTestParser().get_examples(docstring)
        except (SyntaxError, ValueError):
            examples = []
        for example in examples:
            line = f"assert ({example.source.strip()}) == ({example.want.strip()})"
            if example.want.strip() and entry in example.source and _compiles(line):
                asserts.append("    " + line)
        if asserts:
            return "def check(candidate):\n" + "\n".join(asserts) + "\n"
    return _first_assert(meta["tests"])


def _compiles(code: str) -> bool:
    try:
        compile(code, "<visible>", "exec")
        return True
    except SyntaxError:
        return False


def _first_assert(tests: str) -> str:
    """`tests` with every assert after the first removed (inside `check` for HumanEval)."""
    tree = ast.parse(tests)
    holder = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    body = holder.body if holder is not None else tree.body
    seen = False
    kept = []
    for node in body:
        if isinstance(node, ast.Assert):
            if seen:
                continue
            seen = True
        kept.append(node)
    body[:] = kept or [ast.Pass()]
    return ast.unparse(tree) + "\n"


def one_script(task: Task, code: str) -> str:
    """Code and tests as one script, as HumanEval's own harness runs them (for comparison only:
    a verdict from it can be forged by the code it runs)."""
    candidate, tests = program(task, code)
    parts = [candidate, tests.tests, f"check({tests.entry})" if tests.entry else ""]
    return "\n\n".join(p for p in parts if p)


class UnitTests:
    """Passes when the candidate's code passes the task's tests in the sandbox.

    Args:
        allow_code_execution: opt in to running model-written code (or set
            MANYMINDS_ALLOW_CODE_EXECUTION=1).
        limits: the sandbox's time, memory and process limits.
        max_parallel: sandboxes running at once.
        tests: "all" runs the task's tests, the ones a benchmark scores with (so in a
            benchmark it is an oracle); "visible" only those a model may be shown
            (`visible_tests`), keeping the others hidden.
        allow_unisolated_execution: where bubblewrap cannot isolate the code,
            run it anyway with resource limits only (or set
            MANYMINDS_ALLOW_UNISOLATED_EXECUTION=1); without it such a
            machine refuses, at construction, to run anything.

    The tests run in a sandbox of their own and call the candidate's functions,
    which run in another, over a pipe; values cross as plain data. A candidate
    passes only when the tests' process reports, with the run's secret token,
    that the last test ran: nothing the candidate's interpreter can reach
    (an early exit, a patched `os._exit`, a frame walk to the token, an
    object whose `__eq__` is always true) decides the verdict.
    """

    name = "unit-tests"

    def __init__(
        self,
        *,
        allow_code_execution: bool = False,
        limits: Limits = Limits(),
        max_parallel: int = 4,
        allow_unisolated_execution: bool = False,
        tests: Literal["all", "visible"] = "all",
    ):
        if tests not in ("all", "visible"):
            raise ConfigError(f"unit tests: tests must be 'all' or 'visible', got {tests!r}")
        self.tests = tests
        self.oracle = tests == "all"
        """Running every test of the task, the scorer's own: an oracle in a benchmark."""
        require_opt_in(allow_code_execution)
        require_isolation(allow_unisolated_execution)
        self.allow = True
        self.allow_unisolated = allow_unisolated_execution
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="manyminds-sandbox")

    def params(self) -> dict[str, Any]:
        return {"timeout": self.limits.timeout, "memory_mb": self.limits.memory_mb, "tests": self.tests}

    def check(self, task: Task, code: str) -> Verdict:
        """Run the tests against `code` (blocking)."""
        if self.tests == "visible":
            task = task.model_copy(update={"metadata": {**task.metadata, "tests": visible_tests(task)}})
        candidate, tests = program(task, code)
        outcome = run_tests(candidate, tests, self.limits, allow=self.allow, allow_unisolated=self.allow_unisolated)
        if outcome.ok:
            reason = "passed"
        elif outcome.out_of_time:
            reason = "timed out"
        elif outcome.out_of_memory:
            reason = "out of memory"
        elif outcome.returncode == 0:
            reason = "exited before the tests finished"
        else:
            reason = "failed"
        return Verdict(
            score=1.0 if outcome.ok else 0.0,
            passed=outcome.ok,
            verifier=self.name,
            details={
                "result": reason,
                "returncode": outcome.returncode,
                "stderr": outcome.stderr[-2000:],
                "seconds": round(outcome.seconds, 3),
                "isolated": outcome.isolated,
                "completed": outcome.completed,
            },
        )

    async def verify(self, task: Task, candidate: Candidate) -> Verdict:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.check, task, extract_code(candidate.text))




@verifier("unit-tests")
def _unit_tests(options: VerifierOptions) -> UnitTests:
    return UnitTests(allow_code_execution=options.allow_code_execution,
                     allow_unisolated_execution=options.allow_unisolated_execution,
                     tests="visible" if options.visible_tests_only else "all")
