"""A program's behaviour on a set of inputs, observed in the sandbox: what execution-based voting groups by.

The inputs are the calls of the task's visible tests (`unit_tests.visible_tests`: the asserts a
model may be shown; for `assert f(x) == y` the call `f(x)`, with `y` kept as the expected value)
and any expressions the task lists in `metadata["probe_inputs"]` (inputs a model proposed, as
CodeT does, or a user's own). The candidate's code runs in one sandbox and the probe in another,
as the unit-test verifier runs tests: each call crosses the pipe, its result comes back as plain
data, and the probe, which runs no candidate code, prints each result's canonical form. So a
program cannot claim another program's behaviour; it can only show its own.
"""

from __future__ import annotations

import ast
import json
import secrets
from dataclasses import dataclass

from manyminds.types import Task
from manyminds.verifiers.sandbox import Limits, SandboxResult, TestProgram, run_tests
from manyminds.verifiers.unit_tests import program, visible_tests


@dataclass(frozen=True)
class Call:
    """One input: an expression that calls the candidate's code, and what a visible test expects of it."""

    expression: str
    expected: str | None = None
    """The expression the visible test compares it with (`==`); None for a bare `assert f(x)` (truthy
    expected) and for a probe input without an expected value."""
    truthy: bool = False


@dataclass(frozen=True)
class Behaviour:
    """What one program did on the calls, in order: each output's canonical form (or the name of the
    exception it raised), and whether it met each visible expectation (None where none is known)."""

    outputs: tuple[str, ...] | None
    """None when the program did not run to the end of the probe (it did not load, hung, was killed)."""
    passed: tuple[bool | None, ...] = ()
    why: str = ""

    @property
    def passes_visible(self) -> bool:
        """Every known expectation met (vacuously true when none is known)."""
        return self.outputs is not None and all(p is not False for p in self.passed)


def calls(task: Task) -> list[Call]:
    """The calls to probe a program with: each visible assert's call, then `metadata["probe_inputs"]`."""
    found: list[Call] = []
    if "tests" in task.metadata or task.metadata.get("visible_tests"):
        try:
            tree = ast.parse(visible_tests(task))
        except SyntaxError:
            tree = ast.Module(body=[], type_ignores=[])
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assert):
                continue
            test = node.test
            if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
                found.append(Call(ast.unparse(test.left), ast.unparse(test.comparators[0])))
            else:
                found.append(Call(ast.unparse(test), truthy=True))
    for expression in task.metadata.get("probe_inputs") or []:
        try:
            ast.parse(str(expression), mode="eval")
        except SyntaxError:
            continue
        found.append(Call(str(expression)))
    return found


# Runs in the tests' sandbox (no candidate code there): each call made through the stubs, its
# value (fresh builtins) written in a canonical form: sets and dicts sorted, floats to 10 digits,
# so two processes' hash seeds or a last-bit float difference do not split a group.
_PROBE = '''
import json as _json

def _canonical(value):
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        return "float:" + format(value, ".10g")
    if isinstance(value, (set, frozenset)):
        return [type(value).__name__, sorted(_json.dumps(_canonical(v)) for v in value)]
    if isinstance(value, dict):
        return ["dict", sorted([_json.dumps(_canonical(k)), _json.dumps(_canonical(v))] for k, v in value.items())]
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [_canonical(v) for v in value]]
    return type(value).__name__ + ":" + repr(value)

def _probe(scope):
    rows = []
    for expression, expected, truthy in _CALLS:
        try:
            value = eval(expression, scope)
        except Exception as error:
            rows.append(["raise:" + type(error).__name__, False if (expected is not None or truthy) else None])
            continue
        if truthy:
            met = bool(value)
        elif expected is None:
            met = None
        else:
            try:
                met = bool(value == eval(expected, scope))
            except Exception:
                met = None
        rows.append([_json.dumps(_canonical(value)), met])
    print(_MARK + _json.dumps(rows))
'''


def probe_program(task: Task, probes: list[Call], mark: str) -> TestProgram:
    """The tests' side of the run: the probe, called with the candidate's entry point bound as `candidate`
    (HumanEval's tests call it so) or at top level (MBPP's call the function by name)."""
    header = f"_CALLS = {[(c.expression, c.expected, c.truthy) for c in probes]!r}\n_MARK = {mark!r}\n"
    entry = task.metadata.get("entry_point") or None
    if entry:
        body = header + _PROBE + "\ndef check(candidate):\n    _probe({**globals(), 'candidate': candidate})\n"
    else:
        body = header + _PROBE + "\n_probe(globals())\n"
    _, tests = program(task.model_copy(update={"metadata": {**task.metadata, "tests": ""}}), "")
    return TestProgram(tests=body, setup=tests.setup, prelude=tests.prelude, entry=tests.entry)


def behaviour(task: Task, code: str, probes: list[Call], limits: Limits = Limits(), *, allow: bool = False,
              allow_unisolated: bool = False) -> Behaviour:
    """Run `code` on `probes` in the sandbox (blocking) and read back what it did."""
    if not probes:
        return Behaviour(outputs=(), passed=())
    candidate, _ = program(task.model_copy(update={"metadata": {**task.metadata, "tests": ""}}), code)
    mark = "manyminds-probe-" + secrets.token_hex(8) + ":"
    outcome = run_tests(candidate, probe_program(task, probes, mark), limits, allow=allow,
                        allow_unisolated=allow_unisolated)
    return read(outcome, mark, len(probes))


def read(outcome: SandboxResult, mark: str, expected_rows: int) -> Behaviour:
    """The probe's printed rows, if the run reached its end (the token says so) and printed them once."""
    if not outcome.ok:
        why = "timed out" if outcome.out_of_time else "out of memory" if outcome.out_of_memory else "did not finish"
        last = outcome.stderr.strip().splitlines()[-1:] if outcome.stderr.strip() else []
        return Behaviour(outputs=None, why=f"{why}{': ' + last[0][:200] if last else ''}")
    lines = [line[len(mark):] for line in outcome.tests_stdout.splitlines() if line.startswith(mark)]
    if len(lines) != 1:
        return Behaviour(outputs=None, why="the probe printed no outputs")
    rows = json.loads(lines[0])
    if len(rows) != expected_rows:
        return Behaviour(outputs=None, why="the probe printed the wrong number of outputs")
    return Behaviour(outputs=tuple(str(r[0]) for r in rows), passed=tuple(r[1] for r in rows))
