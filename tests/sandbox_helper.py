"""Runs one program in the sandbox and prints the outcome as JSON (used by test_sandbox.py).

The tests start this helper as a separate process, as root or inside a user
namespace where it is not root, so that "the caller" the attacks aim at
(its pid, its environment) is this process, which the test can watch.
Placeholders in the program: {caller} (this process's pid), {cwd}.

`sandbox_helper.py unit-tests` reads a JSON object instead, {"code": ..., "task":
{"entry_point": ..., "tests": ..., "prompt": ...}}, and prints the unit-test
verifier's verdict on the code.
"""

from __future__ import annotations

import json
import os
import sys

from manyminds.verifiers.sandbox import Limits, run_python


def unit_tests() -> None:
    from manyminds.types import Task
    from manyminds.verifiers import UnitTests

    job = json.loads(sys.stdin.read())
    task = Task(question="q", format="code", metadata=job["task"])
    limits = Limits(timeout=8, cpu_seconds=6, memory_mb=256, max_processes=8)
    verdict = UnitTests(allow_code_execution=True, limits=limits).check(task, job["code"])
    print(json.dumps({"ok": verdict.passed, "completed": verdict.details["completed"],
                      "returncode": verdict.details["returncode"], "isolated": verdict.details["isolated"],
                      "stdout": "", "stderr": verdict.details["stderr"], "euid": os.geteuid(),
                      "result": verdict.details["result"]}))


def main() -> None:
    if sys.argv[1:] == ["unit-tests"]:
        return unit_tests()
    code = sys.stdin.read().replace("{caller}", str(os.getpid())).replace("{cwd}", os.getcwd())
    limits = Limits(timeout=6, cpu_seconds=6, memory_mb=256, max_processes=8)
    result = run_python(code, limits, allow=True)
    print(json.dumps({
        "ok": result.ok, "completed": result.completed, "returncode": result.returncode,
        "timed_out": result.timed_out, "isolated": result.isolated,
        "stdout": result.stdout, "stderr": result.stderr[-2000:], "euid": os.geteuid(),
    }))


if __name__ == "__main__":
    main()
