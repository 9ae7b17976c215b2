"""Unit tests for code (HumanEval and MBPP style), run in the sandbox.

A task carries its tests in `metadata`: `tests` (test code: HumanEval's
`check` function, or MBPP's asserts), optionally `entry_point` (HumanEval:
the harness calls `check(entry_point)`), `prompt` (the function header a
plain completion continues) and `setup` (MBPP's test_setup_code). The
candidate's code is taken from its fenced blocks or, failing that, its text.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from manyminds.answers import extract_code
from manyminds.errors import ConfigError
from manyminds.types import Candidate, Task, Verdict
from manyminds.verifiers.sandbox import Limits, require_isolation, require_opt_in, run_python
from manyminds.verifiers.base import VerifierOptions, verifier


def program(task: Task, code: str) -> str:
    """The script that passes exactly when `code` passes the task's tests."""
    meta = task.metadata
    if "tests" not in meta:
        raise ConfigError(f"task {task.id or task.question[:40]!r} has no metadata['tests'] to run")
    entry = meta.get("entry_point")
    if entry and f"def {entry}" not in code and meta.get("prompt"):
        code = meta["prompt"] + code  # a completion of the function body
    parts = [meta.get("setup", ""), code, meta["tests"]]
    if entry:
        parts.append(f"check({entry})")
    return "\n\n".join(p for p in parts if p)


class UnitTests:
    """Passes when the candidate's code passes the task's tests in the sandbox.

    Args:
        allow_code_execution: opt in to running model-written code (or set
            MANYMINDS_ALLOW_CODE_EXECUTION=1).
        limits: the sandbox's time, memory and process limits.
        max_parallel: sandboxes running at once.
        allow_unisolated_execution: where bubblewrap cannot isolate the code,
            run it anyway with resource limits only (or set
            MANYMINDS_ALLOW_UNISOLATED_EXECUTION=1); without it such a
            machine refuses, at construction, to run anything.

    A candidate passes only when the harness reports, with the run's secret
    token, that the last test ran: exiting early with status 0 fails.
    """

    name = "unit-tests"

    def __init__(
        self,
        *,
        allow_code_execution: bool = False,
        limits: Limits = Limits(),
        max_parallel: int = 4,
        allow_unisolated_execution: bool = False,
    ):
        require_opt_in(allow_code_execution)
        require_isolation(allow_unisolated_execution)
        self.allow = True
        self.allow_unisolated = allow_unisolated_execution
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="manyminds-sandbox")

    def params(self) -> dict[str, Any]:
        return {"timeout": self.limits.timeout, "memory_mb": self.limits.memory_mb}

    def check(self, task: Task, code: str) -> Verdict:
        """Run the tests against `code` (blocking)."""
        outcome = run_python(program(task, code), self.limits, allow=self.allow, allow_unisolated=self.allow_unisolated)
        if outcome.ok:
            reason = "passed"
        elif outcome.out_of_time:
            reason = "timed out"
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
                     allow_unisolated_execution=options.allow_unisolated_execution)
