"""The unit-test verdict against candidates that try to forge it, as root and as an unprivileged user.

Each attack is a wrong solution plus a trick that, with code and tests in one
interpreter, used to turn it into a pass: a patched `os._exit`, the verdict's
token read through frames, a returned object whose `__eq__` is always true.
The tests now run in a sandbox of their own and see only plain data, so every
attack must fail, while the same function written correctly still passes.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.test_sandbox import MODES, attack, needs_isolation

TASK = {"entry_point": "add", "prompt": "def add(a, b):\n    \"\"\"a + b\"\"\"\n",
        "tests": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 5) == 7\n"}
MBPP_TASK = {"tests": "assert add(1, 2) == 3\nassert add(2, 5) == 7"}

WRONG = "def add(a, b):\n    return 0\n"
FRAME_WALK = '''
import inspect, os, sys
def _steal():
    found = []
    for frame in list(sys._current_frames().values()) + [f.frame for f in inspect.stack()]:
        while frame is not None:
            for value in list(frame.f_locals.values()):
                if isinstance(value, bytes) and len(value) == 32:
                    found.append(value)
            frame = frame.f_back
    for token in set(found):
        for fd in range(3, 64):
            try:
                os.write(fd, token)
            except OSError:
                pass
    sys.stdout.flush()
    os._exit(0)
_steal()
'''
ATTACKS = {
    "os._exit patched to do nothing": "import os\nos._exit = lambda *a: None\n" + WRONG,
    "sys.exit patched and the failure swallowed": (
        "import sys, os\nsys.exit = lambda *a: None\nos._exit = lambda *a: None\n"
        "sys.excepthook = lambda *a: None\n" + WRONG),
    "the token read through frames and written to every fd": FRAME_WALK + WRONG,
    "the token read inside the call": (
        "def add(a, b):\n" + "".join("    " + line + "\n" for line in FRAME_WALK.strip().splitlines()) +
        "    return 0\n"),
    "an object whose __eq__ is always true": (
        "class Anything:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
        "def add(a, b):\n    return Anything()\n"),
    "an int subclass equal to everything": (
        "class Liar(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
        "def add(a, b):\n    return Liar(0)\n"),
    "AssertionError and builtins patched": (
        "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\n"
        "builtins.__dict__['__debug__'] = False\n" + WRONG),
    "SystemExit(0) from the function": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "os._exit(0) from the function": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "every process killed from the candidate": (
        "import os, signal\ndef add(a, b):\n    os.kill(-1, signal.SIGKILL)\n    return 0\n"),
    "a forged reply written to the pipe at load time": (
        "import os, struct, json\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        body = json.dumps({'value': 3, 'after': {}}).encode()\n"
        "        os.write(fd, struct.pack('>I', len(body)) + body)\n"
        "    except OSError:\n"
        "        pass\n" + WRONG),
    "a reply too large for the tests": (
        "import os, struct\nfor fd in range(3, 64):\n    try:\n"
        "        os.write(fd, struct.pack('>I', 2 ** 31))\n    except OSError:\n        pass\n" + WRONG),
}


@needs_isolation
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_wrong_solution_cannot_forge_a_pass(mode, name):
    outcome = attack(mode, ATTACKS[name], task=TASK)
    assert not outcome["ok"] and not outcome["completed"], (name, outcome)


@needs_isolation
@pytest.mark.parametrize("mode", MODES)
def test_the_same_function_written_right_passes(mode):
    for task in (TASK, MBPP_TASK):
        outcome = attack(mode, "import os\ndef add(a, b):\n    return a + b\n", task=task)
        assert outcome["ok"] and outcome["completed"], outcome


@needs_isolation
@pytest.mark.parametrize("name", ["os._exit patched to do nothing", "an object whose __eq__ is always true"])
def test_mbpp_style_asserts_are_not_forged_either(name):
    outcome = attack("root" if sys.platform and __import__("os").geteuid() == 0 else "user", ATTACKS[name],
                     task=MBPP_TASK)
    assert not outcome["ok"], outcome


@needs_isolation
def test_what_crosses_keeps_the_semantics_tests_rely_on():
    """Exceptions keep their builtin type, arguments mutated in place are seen mutated, floats and
    containers arrive as themselves, and a generator stays an iterator (not a list)."""
    tests = "\n".join([
        "def check(f):",
        "    try:",
        "        f('raise')",
        "    except ValueError as e:",
        "        assert 'bad' in str(e)",
        "    else:",
        "        assert False",
        "    xs = [3, 1, 2]",
        "    assert f('sort', xs) is None and xs == [1, 2, 3]",
        "    assert f('nan') != f('nan') and f('inf') == float('inf')",
        "    assert f('mixed') == {(1, 2): {1.5, -0.0}, 'b': b'\\x00', 'n': None, 'big': 2 ** 200}",
        "    g = f('gen')",
        "    assert g != [0, 1, 2] and list(g) == [0, 1, 2]",
        "    assert type(f('tuple')) is tuple and f('tuple') == (1, [2])",
    ])
    code = "\n".join([
        "def f(kind, arg=None):",
        "    if kind == 'raise': raise ValueError('bad input')",
        "    if kind == 'sort': arg.sort(); return None",
        "    if kind == 'nan': return float('nan')",
        "    if kind == 'inf': return float('inf')",
        "    if kind == 'mixed': return {(1, 2): {1.5, -0.0}, 'b': b'\\x00', 'n': None, 'big': 2 ** 200}",
        "    if kind == 'gen': return (i for i in range(3))",
        "    if kind == 'tuple': return (1, [2])",
    ])
    outcome = attack("root" if __import__("os").geteuid() == 0 else "user", code,
                     task={"entry_point": "f", "tests": tests})
    assert outcome["ok"], outcome


def test_bench_humaneval_scores_the_os_exit_hack_zero(tmp_path):
    """End to end: a "model" that answers only the hack scored 100% on `bench humaneval` before."""
    from manyminds.verifiers.sandbox import isolation_available

    if not isolation_available():
        pytest.skip("needs bubblewrap")
    hack = ("```python\nimport os\nos._exit = lambda *a: None\n"
            "def has_close_elements(numbers, threshold):\n    return False\n```")
    done = subprocess.run(
        [sys.executable, "-m", "manyminds.cli", "bench", "humaneval", "--limit", "1", "--no-cache", "--no-baseline",
         "-n", "1", "--backend", f"scripted:{hack}", "--allow-code-execution", "--json"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"accuracy": 0.0' in done.stdout, done.stdout[-2000:]
