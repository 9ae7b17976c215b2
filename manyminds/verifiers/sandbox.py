"""Run untrusted, model-written Python in a contained child process.

Isolation comes from bubblewrap (`bwrap`, Debian's `bubblewrap` package),
with or without root. Each run gets:

- its own user, PID, network, IPC, UTS and mount namespaces, and no further
  user namespaces: it sees no other process (so it can signal or trace
  none), has no network but its own loopback, and borrows no real uid;
- a file system of its own: the system's directories and the interpreter
  read-only, a private, size-limited `/tmp`, `/var/tmp` and `/dev/shm`, a
  fresh `/proc`, a read-only root, and nothing of the caller's working files
  or home (the program's source comes in through a memfd; nothing is
  written to the caller's disk);
- a scrubbed environment (no API keys), resource limits (wall clock, CPU,
  address space, file size, open files), captured output up to a cap; at
  the end the whole namespace is killed, so no process outlives its run.
- control groups (`cgroups.py`) where writable (root, or a delegated tree):
  a memory bound on the whole run, its tmpfs and memfd files included, and
  a bound on its processes (the kernel exempts root-owned processes from
  RLIMIT_NPROC). Elsewhere the bounds are per process and a warning says so.

The verdict is not the exit status. `run_python` runs one program and a
harness writes a per-run random token (read from a pipe, never on disk, in
argv or in the environment) to a second pipe only once the last line has
run, so `sys.exit(0)`, `os._exit(0)` or an `atexit` hook cannot produce it.
For unit tests that is not enough: code in the same interpreter as the
token can patch `os._exit`, walk frames to the token, or return an object
whose `__eq__` is always true. So `run_tests` runs the candidate and the
tests in two sandboxes joined by two pipes: the tests call the candidate's
functions through stubs, values cross as plain data (`plain.py`), and only
the tests' process, which runs no candidate code, holds the token
(`harness.py`).

Where bubblewrap cannot run, nothing runs unless the caller opts in to
unisolated execution by name (`allow_unisolated_execution=True` or
MANYMINDS_ALLOW_UNISOLATED_EXECUTION=1); then only the resource limits and
the token apply, every run logs a warning, and results say `isolated=False`.

Code execution itself is opt-in: nothing runs unless `allow_code_execution()`
is true (a flag given by the caller, or MANYMINDS_ALLOW_CODE_EXECUTION=1).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from manyminds.errors import CapabilityError
from manyminds.verifiers.cgroups import PREFIX, RunCgroup, owner_gone, owner_tag

log = logging.getLogger("manyminds.sandbox")

ENV_FLAG = "MANYMINDS_ALLOW_CODE_EXECUTION"
UNISOLATED_ENV_FLAG = "MANYMINDS_ALLOW_UNISOLATED_EXECUTION"
SANDBOX_UID = 65534
"""The uid (and gid) the program sees inside its user namespace; no real uid is borrowed."""

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime")
MIB = 1024 * 1024


@functools.lru_cache(maxsize=None)
def _harness_source() -> str:
    """plain.py and harness.py as one script (their package imports dropped: the names are defined above)."""
    here = Path(__file__).parent
    lines = []
    for name in ("plain.py", "harness.py"):
        for line in (here / name).read_text(encoding="utf-8").splitlines():
            if line.startswith(("from __future__ import", "from manyminds")):
                continue
            lines.append(line)
    return "\n".join(lines) + "\n"


def allow_code_execution(flag: bool = False) -> bool:
    """True when the caller opted in, by flag or by MANYMINDS_ALLOW_CODE_EXECUTION=1."""
    return flag or os.environ.get(ENV_FLAG, "") == "1"


def allow_unisolated_execution(flag: bool = False) -> bool:
    """True when the caller accepted running code without namespace isolation."""
    return flag or os.environ.get(UNISOLATED_ENV_FLAG, "") == "1"


def require_opt_in(flag: bool) -> None:
    if not allow_code_execution(flag):
        raise CapabilityError(
            "running model-written code is disabled: pass allow_code_execution=True "
            f"(CLI: --allow-code-execution) or set {ENV_FLAG}=1, after reading the sandbox's limits"
        )


def require_isolation(allow_unisolated: bool) -> None:
    """Refuse, unless unisolated execution was accepted by name, where bwrap cannot isolate code."""
    bwrap, why = bwrap_status()
    if bwrap is None and not allow_unisolated_execution(allow_unisolated):
        raise CapabilityError(
            f"cannot isolate model-written code: {why}. Install bubblewrap, or accept running it "
            f"without isolation by passing allow_unisolated_execution=True (CLI: "
            f"--allow-unisolated-code-execution) or setting {UNISOLATED_ENV_FLAG}=1"
        )


@dataclass(frozen=True)
class Limits:
    timeout: float = 10.0
    """Wall-clock seconds before the whole sandbox is killed."""
    cpu_seconds: int = 10
    memory_mb: int = 512
    """Memory of the whole run (every process, and files in its tmpfs or in memfds) where a memory
    cgroup can be made (root, or a delegated tree); also each process's address-space limit."""
    max_processes: int = 16
    """Processes the program may run at once (a pids cgroup where writable, else RLIMIT_NPROC)."""
    max_output_bytes: int = 64 * 1024
    """stdout and stderr are each kept up to this; the rest is read and dropped."""
    max_file_bytes: int = 16 * 1024 * 1024
    max_open_files: int = 64
    tmp_bytes: int = 32 * 1024 * 1024
    """Size of each private tmpfs (/tmp, /var/tmp, /dev/shm); they vanish with the run."""
    read_only_paths: tuple[str, ...] = ()
    """Further host paths the program may read (e.g. a site-packages with numpy)."""


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float
    isolated: bool
    """True when the program ran in bubblewrap's namespaces; False only after an explicit opt-in."""
    completed: bool = False
    """The harness saw the program's last line run and reported it with the run's token."""
    memory_bounded: bool = False
    """A memory cgroup bounded the whole run (processes, tmpfs and memfd files), not only each process."""
    out_of_memory: bool = False
    """The run reached its memory bound."""
    tests_stdout: str = ""
    """`run_tests` only: what the tests' own process printed (no candidate code runs there, so the
    candidate cannot write it; execution-based voting reads the outputs it probed from here)."""

    @property
    def ok(self) -> bool:
        return self.completed and self.returncode == 0 and not self.timed_out

    @property
    def out_of_time(self) -> bool:
        """Stopped by the wall-clock timeout or the CPU limit (SIGXCPU, then SIGKILL)."""
        return self.timed_out or self.returncode in (-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGXCPU,
                                                      128 + signal.SIGKILL)


# -- isolation ------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def bwrap_status() -> tuple[str | None, str]:
    """(path to a working bwrap, or None; why not). Probed once per process."""
    path = shutil.which("bwrap") or ("/usr/bin/bwrap" if os.path.exists("/usr/bin/bwrap") else None)
    if path is None:
        return None, "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    probe = [path, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
             *_system_binds(), "--proc", "/proc", "--dev", "/dev", "--", "/bin/true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"bwrap could not start: {error}"
    if done.returncode != 0:
        reason = " ".join(done.stderr.split())[:200] or f"exit status {done.returncode}"
        return None, f"bwrap cannot create namespaces here ({reason}); unprivileged user namespaces may be disabled"
    return path, ""


def isolation_available() -> bool:
    return bwrap_status()[0] is not None


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in _SYSTEM_ETC:
        path = f"/etc/{name}"
        if os.path.lexists(path):
            args += ["--ro-bind-try", path, path]
    return args


def _interpreter() -> tuple[str, list[str]]:
    """The base interpreter (not the caller's virtualenv) and the directories it needs."""
    python = str(Path(sys.executable).resolve())
    needed = []
    for path in {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}:
        if not any(path == d or path.startswith(d + "/") for d in _SYSTEM_DIRS):
            needed.append(path)
    if not any(python.startswith(p + "/") for p in [*needed, *_SYSTEM_DIRS]):
        needed.append(str(Path(python).parent))
    return python, sorted(needed)


def _bwrap_command(bwrap: str, limits: Limits, python: str, python_dirs: list[str]) -> list[str]:
    size = str(limits.tmp_bytes)
    command = [
        bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
        "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
        "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8",
        "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "PYTHONHASHSEED", "0",
        *_system_binds(),
    ]
    for path in [*python_dirs, *limits.read_only_paths]:
        command += ["--ro-bind", path, path]
    command += [
        "--proc", "/proc", "--dev", "/dev",
        "--size", size, "--tmpfs", "/tmp",
        "--size", size, "--tmpfs", "/var/tmp",
        "--size", size, "--tmpfs", "/dev/shm",
        "--remount-ro", "/",  # bwrap's own root is a tmpfs of no set size: nothing may be written there
        "--chdir", "/tmp", "--",
        python,
    ]
    return command


# -- running --------------------------------------------------------------------------


def _limit(kind: int, value: int) -> None:
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass


def _child_setup(limits: Limits, cgroup: RunCgroup) -> None:
    """Runs in the child between fork and exec: cgroups, then limits inherited by all it starts."""
    try:
        cgroup.enter()
    except OSError:
        os._exit(125)  # refuse to run outside the bounds we set up
    try:  # soft limit: SIGXCPU; one second later the hard limit kills
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    except (ValueError, OSError):
        pass
    _limit(resource.RLIMIT_AS, limits.memory_mb * MIB)
    _limit(resource.RLIMIT_FSIZE, limits.max_file_bytes)
    _limit(resource.RLIMIT_NOFILE, limits.max_open_files)
    _limit(resource.RLIMIT_CORE, 0)


def _drain(stream, cap: int, into: list[bytes]) -> None:
    kept = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            return
        if kept < cap:
            into.append(chunk[: cap - kept])
            kept += len(into[-1])


def _memfd(name: str, text: str) -> int:
    """An in-memory file holding `text`, positioned at its start (nothing on disk to leave behind)."""
    fd = os.memfd_create(name)
    data = text.encode("utf-8")
    while data:
        data = data[os.write(fd, data):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@functools.lru_cache(maxsize=None)
def _sweep_scratch() -> None:
    """Remove unisolated runs' scratch folders whose caller was killed before it could."""
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        if owner_gone(path.name):
            shutil.rmtree(path, ignore_errors=True)


class _Sandboxed:
    """One harness call running in a sandbox of its own: namespaces, cgroups, rlimits, drained output.

    `call` is the harness function's call with `{nproc}` left for the process bound that
    applies when no pids cgroup does; `fds` are inherited under the same numbers.
    """

    def __init__(self, call: str, fds: tuple[int, ...], limits: Limits, bwrap: str | None) -> None:
        self.limits = limits
        self.cgroup = RunCgroup(max_processes=limits.max_processes + 2,  # + bwrap's own two processes
                                memory_bytes=limits.memory_mb * MIB)
        self.scratch: Path | None = None
        self.out_of_memory = False
        nproc = 0 if "pids" in self.cgroup.bounds else limits.max_processes
        script = _harness_source() + call.format(nproc=nproc) + "\n"
        if bwrap is not None:
            python, dirs = _interpreter()
            command = [*_bwrap_command(bwrap, limits, python, dirs), "-I", "-B", "-c", script]
            cwd, env = "/", {"PATH": "/usr/bin:/bin"}
        else:
            _sweep_scratch()
            self.scratch = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{owner_tag()}-"))
            command = [sys.executable, "-I", "-B", "-c", script]
            cwd = str(self.scratch)
            env = {"PATH": "/usr/bin:/bin", "HOME": cwd, "TMPDIR": cwd, "LANG": "C.UTF-8",
                   "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        try:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, close_fds=True, pass_fds=fds,
                preexec_fn=lambda: _child_setup(limits, self.cgroup),
            )
        except BaseException:
            self.cleanup()
            raise
        self.readers = [
            threading.Thread(target=_drain, args=(self.process.stdout, limits.max_output_bytes, self.out),
                             daemon=True),
            threading.Thread(target=_drain, args=(self.process.stderr, limits.max_output_bytes, self.err),
                             daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.out_of_memory = self.cgroup.out_of_memory()
        self.cgroup.kill_and_remove()
        self.process.wait()
        for reader in self.readers:
            reader.join(timeout=5)

    @property
    def stdout(self) -> str:
        return b"".join(self.out).decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return b"".join(self.err).decode("utf-8", "replace")

    def cleanup(self) -> None:
        self.cgroup.kill_and_remove()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def _prepare(allow: bool, allow_unisolated: bool) -> str | None:
    require_opt_in(allow)
    require_isolation(allow_unisolated)
    bwrap, why = bwrap_status()
    if bwrap is None:
        log.warning("running model-written code WITHOUT ISOLATION (%s): only resource limits apply", why)
    return bwrap


def _warn_unbounded(run: _Sandboxed) -> None:
    missing = {"memory", "pids"} - run.cgroup.bounds
    if missing:
        _warn_once(f"no writable {' or '.join(sorted(missing))} cgroup here (not root, nothing delegated): "
                   "the sandbox bounds memory and processes per process only (rlimits, tmpfs sizes)")


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    log.warning(message)


def _close(*fds: int) -> None:
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


def run_python(
    code: str, limits: Limits = Limits(), *, allow: bool = False, allow_unisolated: bool = False
) -> SandboxResult:
    """Run `code` as a script in the sandbox and report how it ended (blocking).

    Raises CapabilityError when code execution was not opted in to, or when
    bubblewrap cannot isolate it and unisolated execution was not accepted.
    """
    bwrap = _prepare(allow, allow_unisolated)
    token = secrets.token_hex(16).encode()
    token_r, token_w = os.pipe()
    report_r, report_w = os.pipe()
    source = _memfd("program", code)
    os.write(token_w, token)
    _close(token_w)
    run: _Sandboxed | None = None
    try:
        start = time.monotonic()
        run = _Sandboxed(f"run_program({token_r}, {report_w}, {source}, {{nproc}})",
                         (token_r, report_w, source), limits, bwrap)
        _warn_unbounded(run)
        _close(token_r, report_w, source)
        token_r = report_w = source = -1
        report: list[bytes] = []
        reader = threading.Thread(target=_drain, args=(os.fdopen(report_r, "rb"), 256, report), daemon=True)
        report_r = -1  # owned by the reader's file object now
        reader.start()
        timed_out = _wait(run, limits.timeout)
        run.kill()
        reader.join(timeout=5)
        return SandboxResult(
            returncode=None if timed_out else run.process.returncode, stdout=run.stdout, stderr=run.stderr,
            timed_out=timed_out, seconds=time.monotonic() - start, isolated=bwrap is not None,
            completed=b"".join(report) == token, memory_bounded="memory" in run.cgroup.bounds,
            out_of_memory=run.out_of_memory,
        )
    finally:
        _close(token_r, report_r, report_w, source)
        if run is not None:
            run.cleanup()


def _wait(run: _Sandboxed, timeout: float) -> bool:
    """Wait for the run to end; True when it was still going at the timeout."""
    try:
        run.process.wait(timeout=max(timeout, 0.0))
        return False
    except subprocess.TimeoutExpired:
        return True


@dataclass(frozen=True)
class TestProgram:
    """What the tests' process runs: setup, the task's own header, the tests, and an entry point."""

    tests: str
    setup: str = ""
    prelude: str = ""
    """Trusted code of the task (HumanEval's prompt: helpers such as `poly` that tests call)."""
    entry: str | None = None
    """HumanEval: the tests define `check`, called with the candidate's `entry` function."""


def run_tests(
    candidate: str, tests: TestProgram, limits: Limits = Limits(), *, allow: bool = False,
    allow_unisolated: bool = False,
) -> SandboxResult:
    """Run `candidate` and `tests` in two sandboxes that share only two pipes (blocking).

    The tests call the candidate's functions through stubs; arguments and results cross
    as plain data (`plain.py`). The verdict (`completed`) is the tests' process reporting
    the run's token after their last line: the candidate's process never holds it, and
    nothing it returns is more than builtin data. `stdout` is the candidate's; `stderr`
    the tests' (a failed assertion's traceback), then the candidate's.
    """
    bwrap = _prepare(allow, allow_unisolated)
    token = secrets.token_hex(16).encode()
    token_r, token_w = os.pipe()
    report_r, report_w = os.pipe()
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    source = _memfd("candidate", candidate)
    spec = _memfd("tests", json.dumps({"tests": tests.tests, "setup": tests.setup, "prelude": tests.prelude,
                                       "entry": tests.entry}))
    os.write(token_w, token)
    _close(token_w)
    runs: list[_Sandboxed] = []
    try:
        start = time.monotonic()
        runs.append(_Sandboxed(f"serve_candidate({source}, {requests_r}, {replies_w}, {{nproc}})",
                               (source, requests_r, replies_w), limits, bwrap))
        runs.append(_Sandboxed(f"run_tests({token_r}, {report_w}, {spec}, {requests_w}, {replies_r}, {{nproc}})",
                               (token_r, report_w, spec, requests_w, replies_r), limits, bwrap))
        _warn_unbounded(runs[0])
        # Only the two sandboxes hold the pipes now: one ending is the other's EOF.
        _close(source, requests_r, replies_w, token_r, report_w, spec, requests_w, replies_r)
        source = requests_r = replies_w = token_r = report_w = spec = requests_w = replies_r = -1
        report: list[bytes] = []
        reader = threading.Thread(target=_drain, args=(os.fdopen(report_r, "rb"), 256, report), daemon=True)
        report_r = -1
        reader.start()
        candidate_run, tests_run = runs
        timed_out = _wait(tests_run, limits.timeout)
        for run in runs:
            run.kill()
        reader.join(timeout=5)
        stderr = tests_run.stderr
        if candidate_run.stderr.strip():
            stderr += "\n--- the candidate's stderr ---\n" + candidate_run.stderr
        return SandboxResult(
            returncode=None if timed_out else tests_run.process.returncode, stdout=candidate_run.stdout,
            stderr=stderr, timed_out=timed_out, seconds=time.monotonic() - start, isolated=bwrap is not None,
            completed=b"".join(report) == token,
            memory_bounded=all("memory" in run.cgroup.bounds for run in runs),
            out_of_memory=any(run.out_of_memory for run in runs), tests_stdout=tests_run.stdout,
        )
    finally:
        _close(token_r, report_r, report_w, source, spec, requests_r, requests_w, replies_r, replies_w)
        for run in runs:
            run.cleanup()
