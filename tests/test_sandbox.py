"""The sandbox against hostile programs, as root and as an unprivileged user.

Every attack runs through `tests/sandbox_helper.py` in a process of its own,
started either as root or inside a user namespace where it is uid 1000 (not
root: the path an ordinary user takes), so that the caller the attacks aim
at is a process the test watches. Limits and early exits are checked in
process as well.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from manyminds.errors import CapabilityError
from manyminds.types import Task
from manyminds.verifiers import Limits, UnitTests, run_python
from manyminds.verifiers import sandbox
from manyminds.verifiers.cgroups import RunCgroup

HELPER = Path(__file__).with_name("sandbox_helper.py")
LIMITS = Limits(timeout=4, cpu_seconds=4, memory_mb=256, max_processes=8)
SECRET = "sk-sandbox-test-" + secrets.token_hex(8)
ROOT = os.geteuid() == 0

needs_isolation = pytest.mark.skipif(not sandbox.isolation_available(), reason=sandbox.bwrap_status()[1])


def sandboxed(code: str, limits: Limits = LIMITS):
    return run_python(code, limits, allow=True)


def _unshare_works() -> bool:
    if not ROOT or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-user=1000", "--map-group=1000", "true"], capture_output=True)
    return probe.returncode == 0


MODES = [
    pytest.param("root", marks=pytest.mark.skipif(not ROOT, reason="needs root")),
    pytest.param("user", marks=pytest.mark.skipif(
        ROOT and not _unshare_works(), reason="cannot become an unprivileged user here (unshare --map-user)")),
]


def attack(mode: str, code: str, *, task: dict | None = None) -> dict:
    """Run `code` in the sandbox from a helper process of the given mode; its outcome.

    With `task`, `code` is a candidate solution judged by the unit-test verifier instead.
    """
    prefix = ["unshare", "--user", "--map-user=1000", "--map-group=1000"] if mode == "user" and ROOT else []
    env = {**os.environ, "OPENAI_API_KEY": SECRET}
    args = [*prefix, sys.executable, str(HELPER)] + (["unit-tests"] if task else [])
    stdin = json.dumps({"code": code, "task": task}) if task else code
    done = subprocess.run(args, input=stdin, capture_output=True, text=True,
                          env=env, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, f"the caller did not survive: rc={done.returncode} {done.stderr[-800:]}"
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["isolated"], "the attack ran without isolation"
    assert (outcome["euid"] == 0) is (mode == "root")
    return outcome


# -- the verdict cannot be forged by exiting early -------------------------------------------


EARLY_EXITS = {
    "sys.exit(0) inside the function": "import sys\ndef f():\n    sys.exit(0)\nf()\nassert False",
    "os._exit(0)": "import os\nos._exit(0)\nassert False",
    "atexit hook that exits 0 after a failed assert": (
        "import atexit, os\natexit.register(lambda: os._exit(0))\nassert 1 == 2"),
    "SystemExit raised at top level": "raise SystemExit(0)",
    "a thread that exits 0 while the tests run": (
        "import os, threading, time\nthreading.Thread(target=lambda: os._exit(0)).start()\ntime.sleep(2)\n"
        "assert False"),
    "stdout forging a success line": "print('PASSED')\nimport os\nos._exit(0)",
}


@needs_isolation
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(EARLY_EXITS))
def test_an_early_exit_is_not_a_pass(mode, name):
    outcome = attack(mode, EARLY_EXITS[name])
    assert not outcome["ok"] and not outcome["completed"], outcome


@needs_isolation
def test_a_program_that_runs_to_its_end_passes():
    result = sandboxed("x = 1 + 1\nassert x == 2\nprint('done')")
    assert result.ok and result.completed and result.stdout.strip() == "done"


@needs_isolation
def test_unit_tests_are_not_fooled_by_exits():
    task = Task(question="add", format="code", metadata={
        "entry_point": "add", "tests": "def check(f):\n    assert f(1, 2) == 3\n    assert f(2, 2) == 4"})
    verifier = UnitTests(allow_code_execution=True, limits=LIMITS)
    wrong = {
        "sys.exit": "import sys\ndef add(a, b):\n    sys.exit(0)",
        "os._exit": "import os\ndef add(a, b):\n    os._exit(0)",
        "atexit": "import atexit, os\natexit.register(lambda: os._exit(0))\ndef add(a, b):\n    return 0",
    }
    for name, code in wrong.items():
        verdict = verifier.check(task, code)
        assert not verdict.passed, (name, verdict.details)
    assert verifier.check(task, "def add(a, b):\n    return a + b").passed


# -- files, sockets, processes and secrets of the caller ---------------------------------------


@pytest.fixture
def decoy(tmp_path):
    os.chmod(tmp_path, 0o777)
    path = tmp_path / "decoy.txt"
    path.write_text("precious")
    os.chmod(path, 0o666)
    return path


@needs_isolation
@pytest.mark.parametrize("mode", MODES)
def test_files_of_the_caller_are_neither_seen_nor_deleted(mode, decoy):
    outcome = attack(mode, f"import os\nprint(os.path.exists({str(decoy)!r}), os.path.exists('{{cwd}}'))\n"
                           f"os.remove({str(decoy)!r})\nprint('deleted')")
    assert decoy.read_text() == "precious" and "deleted" not in outcome["stdout"]
    assert outcome["stdout"].split()[:2] == ["False", "False"]


@needs_isolation
@pytest.mark.parametrize("mode", MODES)
def test_temporary_files_do_not_survive_the_run(mode):
    name = "manyminds-probe-" + secrets.token_hex(6)
    code = "\n".join(f"open('{d}/{name}', 'w').write('x')" for d in ("/tmp", "/var/tmp", "/dev/shm"))
    outcome = attack(mode, code + "\nprint('written')")
    assert "written" in outcome["stdout"], outcome  # it may write its own scratch space...
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not Path(d, name).exists()  # ...which vanishes with it


@needs_isolation
@pytest.mark.parametrize("mode", MODES)
def test_shared_memory_is_size_limited(mode):
    outcome = attack(mode, "open('/dev/shm/big', 'wb').write(b'x' * 64 * 1024 * 1024)\nprint('filled')")
    assert "filled" not in outcome["stdout"] and not outcome["ok"]


@needs_isolation
@pytest.mark.parametrize("mode", MODES)
def test_the_cache_database_cannot_be_read(mode, tmp_path):
    from manyminds.cache import GenerationCache

    path = tmp_path / "cache.db"
    GenerationCache(path).close()
    os.chmod(tmp_path, 0o755)
    assert path.stat().st_mode & 0o777 == 0o600
    outcome = attack(mode, f"print(len(open({str(path)!r}, 'rb').read()))")
    assert not outcome["ok"] and "No such file" in outcome["stderr"]


@pytest.fixture
def unix_listener():
    path = f"/tmp/manyminds-sock-{secrets.token_hex(4)}"
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    abstract = socket.socket(socket.AF_UNIX)
    abstract_name = f"manyminds-abstract-{secrets.token_hex(4)}"
    abstract.bind("\0" + abstract_name)
    abstract.listen()
    yield path, abstract_name
    server.close()
    abstract.close()
    os.unlink(path)


@needs_isolation
@pytest.mark.parametrize("mode", MODES)
def test_unix_sockets_of_other_processes_are_unreachable(mode, unix_listener):
    path, abstract = unix_listener
    code = ("import socket\nfor address in ({path!r}, '\\0' + {abstract!r}):\n"
            "    s = socket.socket(socket.AF_UNIX)\n"
            "    try:\n        s.connect(address)\n        print('REACHED', address)\n"
            "    except OSError as e:\n        print('BLOCKED', e)\n").format(path=path, abstract=abstract)
    outcome = attack(mode, code)
    assert "REACHED" not in outcome["stdout"] and outcome["stdout"].count("BLOCKED") == 2, outcome


@pytest.fixture
def tcp_listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted = []

    def accept():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not stop.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    stop = threading.Event()
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


@needs_isolation
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("module", ["socket", "_socket"])
def test_no_network_even_through_raw_sockets(mode, module, tcp_listener):
    port, accepted = tcp_listener
    outcome = attack(mode, f"import {module}\ns = {module}.socket({module}.AF_INET, {module}.SOCK_STREAM)\n"
                           f"s.settimeout(2)\ns.connect(('127.0.0.1', {port}))\nprint('connected')")
    assert "connected" not in outcome["stdout"] and not accepted


@needs_isolation
@pytest.mark.parametrize("mode", MODES)
def test_it_cannot_read_the_callers_environment(mode):
    outcome = attack(mode, "import os\nprint(sorted(os.environ))\n"
                           "print(open('/proc/{caller}/environ').read())\n")
    assert SECRET not in outcome["stdout"] + outcome["stderr"]
    assert "OPENAI_API_KEY" not in outcome["stdout"]


@needs_isolation
@pytest.mark.parametrize("mode", MODES)
def test_it_cannot_kill_its_caller(mode):
    code = ("import ctypes, os, signal\nlibc = ctypes.CDLL(None)\nprint(libc.kill({caller}, 9))\n"
            "os.kill(-1, signal.SIGKILL)\n")
    attack(mode, code)  # attack() asserts the caller survived


@pytest.fixture
def other_uid_targets(tmp_path):
    """A process and a 0600 file of an unused uid, where the sandbox used to pick its uid."""
    uid = 200_000 + (os.getpid() % 10_000) * 100
    secret = tmp_path / "other-uid.txt"
    secret.write_text("not yours")
    os.chown(secret, uid, uid)
    os.chmod(secret, 0o600)
    os.chmod(tmp_path, 0o755)
    sleeper = subprocess.Popen(["sleep", "60"], user=uid, group=uid)
    yield secret, sleeper
    sleeper.kill()
    sleeper.wait()


@needs_isolation
@pytest.mark.skipif(not ROOT, reason="making another uid's process needs root")
@pytest.mark.parametrize("mode", MODES)
def test_processes_and_files_of_other_uids_are_untouched(mode, other_uid_targets):
    secret, sleeper = other_uid_targets
    outcome = attack(mode, f"import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
                           f"print(open({str(secret)!r}).read())")
    assert "not yours" not in outcome["stdout"]
    time.sleep(0.2)
    assert sleeper.poll() is None, "a process of another uid was killed"


@needs_isolation
@pytest.mark.parametrize("mode", MODES)
def test_no_process_outlives_its_run(mode):
    marker = "manyminds-leftover-" + secrets.token_hex(4)
    code = ("import os, sys\n"
            f"os.posix_spawn(sys.executable, [sys.executable, '-c', 'import time; time.sleep(30)  # {marker}'],"
            " {}, setsid=True)\n"
            f"if os.fork() == 0:\n    os.setsid()\n    os.execv(sys.executable, [sys.executable, '-c', "
            f"'import time; time.sleep(30)  # {marker}'])\nprint('spawned')")
    outcome = attack(mode, code)
    assert "spawned" in outcome["stdout"], outcome
    procs = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert marker not in procs


@needs_isolation
def test_the_sandbox_borrows_no_real_uid():
    result = sandboxed("import os\nprint(os.getuid(), open('/proc/self/uid_map').read().split())")
    inside, mapping = result.stdout.split(" ", 1)
    assert int(inside) == sandbox.SANDBOX_UID
    assert mapping.strip().startswith(f"['{sandbox.SANDBOX_UID}', '{os.geteuid()}'"), mapping


# -- limits -----------------------------------------------------------------------------------


@needs_isolation
def test_infinite_loop_is_killed_at_the_timeout():
    result = sandboxed("while True:\n    pass", Limits(timeout=2, cpu_seconds=30))
    assert result.timed_out and not result.ok


@needs_isolation
def test_busy_loop_hits_the_cpu_limit():
    result = sandboxed("while True:\n    pass", Limits(timeout=30, cpu_seconds=1))
    assert result.out_of_time and not result.timed_out and not result.ok


@needs_isolation
def test_fork_bomb_is_bounded():
    probe = RunCgroup(max_processes=1, memory_bytes=64 * 1024 ** 2)
    probe.kill_and_remove()
    if "pids" not in probe.bounds and ROOT:
        pytest.skip("no writable pids cgroup: the kernel exempts root-owned processes from RLIMIT_NPROC")
    code = ("import os, sys\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError:\n"
            "        break\n    if pid == 0:\n        import time; time.sleep(5); os._exit(0)\n    n += 1\n"
            "print('forked', n)")
    result = sandboxed(code, Limits(timeout=10, cpu_seconds=10, memory_mb=256, max_processes=8))
    forked = int(result.stdout.split()[-1])
    assert forked < 8, result.stdout


@needs_isolation
def test_memory_bomb_is_contained():
    result = sandboxed("x = bytearray(4 * 1024 ** 3)\nprint('allocated')")
    assert not result.ok and "allocated" not in result.stdout and "MemoryError" in result.stderr


MEMORY_ATTACKS = {
    "files in the root tmpfs": (
        "import os\nchunk = b'x' * (1024 * 1024)\nfor d in ('/', '/etc', '/var'):\n    held = 0\n    try:\n"
        "        for k in range(10):\n            with open(os.path.join(d, f'fill{k}'), 'wb') as f:\n"
        "                for i in range(15):\n                    f.write(chunk)\n                    held += 1\n"
        "        print('wrote', d, held)\n    except OSError as e:\n        print('refused', d, e.errno, held)\n"),
    "a memfd of 750 MiB": (
        "import os\nfd = os.memfd_create('x')\nchunk = b'x' * (1024 * 1024)\n"
        "for i in range(750):\n    os.write(fd, chunk)\nprint('held', i + 1)\n"),
    "many memfds of 16 MiB": (
        "import os\nfds = []\nchunk = b'x' * (1024 * 1024)\n"
        "for k in range(40):\n    fd = os.memfd_create('x')\n    fds.append(fd)\n"
        "    for i in range(16):\n        os.write(fd, chunk)\nprint('held', len(fds) * 16)\n"),
    "six children of 200 MB each": (
        "import os, time\npids = []\nfor k in range(6):\n    pid = os.fork()\n    if pid == 0:\n"
        "        block = bytearray(200 * 1024 * 1024)\n        for i in range(0, len(block), 4096):\n"
        "            block[i] = 1\n        time.sleep(3)\n        os._exit(0)\n    pids.append(pid)\n"
        "ok = sum(os.waitpid(p, 0)[1] == 0 for p in pids)\nprint('held', ok * 200)\n"),
}


@needs_isolation
@pytest.mark.parametrize("name", list(MEMORY_ATTACKS))
def test_memory_is_bounded_for_the_whole_run(name):
    """256 MiB for the run: processes, tmpfs and memfd files together (a memory cgroup where one can
    be made; the root file system is read-only everywhere)."""
    probe = RunCgroup(max_processes=4, memory_bytes=64 * 1024 ** 2)
    probe.kill_and_remove()
    result = sandboxed(MEMORY_ATTACKS[name], Limits(timeout=20, cpu_seconds=20, memory_mb=256, max_processes=8))
    assert "wrote" not in result.stdout, result
    if name == "files in the root tmpfs":
        assert result.stdout.count("refused") == 3, result
        return
    if "memory" not in probe.bounds:
        pytest.skip("no writable memory cgroup here: memory is bounded per process only")
    assert result.memory_bounded, result
    held = int(result.stdout.split()[-1]) if "held" in result.stdout else 0
    assert held <= 256, result


@needs_isolation
def test_multiprocessing_pool_works_in_the_sandbox():
    code = ("from multiprocessing import Pool\n\ndef square(x):\n    return x * x\n\n"
            "with Pool(2) as pool:\n    print(sum(pool.map(square, range(10))))\n")
    result = sandboxed(code, Limits(timeout=20, cpu_seconds=20, memory_mb=512, max_processes=8))
    assert result.ok and result.stdout.strip() == "285", result


@needs_isolation
def test_a_killed_caller_leaves_nothing_behind(tmp_path):
    """No folder on the caller's disk, and its cgroups are swept by the next run."""
    from manyminds.verifiers import cgroups

    before = set(Path(tempfile.gettempdir()).glob("manyminds-sandbox-*"))
    caller = subprocess.Popen([sys.executable, str(HELPER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[1])
    caller.stdin.write("import time\nprint('started', flush=True)\ntime.sleep(30)")
    caller.stdin.close()
    deadline = time.monotonic() + 30
    groups: list[Path] = []
    while time.monotonic() < deadline and not groups:
        groups = [g for parent in {p for c in ("pids", "memory") for p in cgroups._parents(c)}
                  for g in parent.glob(f"manyminds-sandbox-{caller.pid}-*")]
        time.sleep(0.05)
    caller.kill()
    caller.wait()
    assert set(Path(tempfile.gettempdir()).glob("manyminds-sandbox-*")) <= before
    if not groups:
        return  # no writable cgroup here: nothing to leave behind
    for parent in {g.parent for g in groups}:
        cgroups.sweep_stale.cache_clear()
        cgroups.sweep_stale(parent)
    assert not any(g.exists() for g in groups), groups


@needs_isolation
def test_huge_output_is_capped():
    result = sandboxed("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)")
    assert len(result.stdout) <= LIMITS.max_output_bytes


# -- opt-ins ------------------------------------------------------------------------------------


def test_code_execution_is_off_unless_opted_in(monkeypatch):
    monkeypatch.delenv("MANYMINDS_ALLOW_CODE_EXECUTION", raising=False)
    with pytest.raises(CapabilityError, match="disabled"):
        run_python("print(1)")
    with pytest.raises(CapabilityError, match="MANYMINDS_ALLOW_CODE_EXECUTION"):
        UnitTests()


@pytest.fixture
def no_isolation(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_status", lambda: (None, "bubblewrap is not installed (test)"))
    monkeypatch.delenv(sandbox.UNISOLATED_ENV_FLAG, raising=False)


def test_without_isolation_nothing_runs_unless_accepted_by_name(no_isolation):
    with pytest.raises(CapabilityError, match="allow_unisolated_execution"):
        run_python("print(1)", LIMITS, allow=True)
    with pytest.raises(CapabilityError, match="MANYMINDS_ALLOW_UNISOLATED_EXECUTION"):
        UnitTests(allow_code_execution=True)


def test_unisolated_execution_warns_and_still_checks_the_token(no_isolation, caplog):
    with caplog.at_level(logging.WARNING, logger="manyminds.sandbox"):
        result = run_python("print(1)", LIMITS, allow=True, allow_unisolated=True)
    assert result.ok and not result.isolated and "WITHOUT ISOLATION" in caplog.text
    early = run_python("import os\nos._exit(0)", LIMITS, allow=True, allow_unisolated=True)
    assert not early.ok and early.returncode == 0
    verifier = UnitTests(allow_code_execution=True, allow_unisolated_execution=True, limits=LIMITS)
    assert verifier.allow_unisolated


def test_isolation_is_there_where_make_can_install_it():
    if ROOT:  # the Makefile installs bubblewrap as root
        assert sandbox.isolation_available(), sandbox.bwrap_status()[1]
    else:
        pytest.skip("without root the Makefile cannot install bubblewrap")
