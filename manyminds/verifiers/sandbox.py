"""Run untrusted, model-written Python in a contained child process.

Each run gets its own process in a new session, a fresh temporary directory
as its working and home directory, a scrubbed environment (no API keys), and
resource limits: wall-clock timeout, CPU seconds, address space
(RLIMIT_AS), file size, open files and processes (RLIMIT_NPROC). Output is
captured up to a cap and the rest discarded. At the end the whole process
group is killed.

When the parent runs as root (containers, CI), the child also gets a network
namespace of its own (no network at all) and runs as a unique unprivileged
uid: RLIMIT_NPROC then bounds its processes (root ignores that limit), it can
neither signal its parent nor touch files outside its directory, and every
process of that uid is killed at the end, including any that left the
process group. Without root these layers are skipped, and a Python prelude
in the child (as in the established harnesses) disables process creation,
signals and sockets instead: weaker, so say so in your threat model.

Code execution is opt-in: nothing runs unless `allow_code_execution()` is
true (a flag given by the caller, or MANYMINDS_ALLOW_CODE_EXECUTION=1).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from manyminds.errors import CapabilityError

ENV_FLAG = "MANYMINDS_ALLOW_CODE_EXECUTION"
CLONE_NEWNET = 0x40000000
_UID_BASE = 200_000
_uids = itertools.count()
_uid_lock = threading.Lock()

# Defense in depth for the unprivileged fallback: no new processes, signals or sockets.
_PRELUDE = """
import os, socket, subprocess, signal
def _blocked(*a, **k):
    raise PermissionError("blocked by the manyminds sandbox")
for _name in ("fork", "forkpty", "kill", "killpg", "system", "execv", "execve", "execvp", "spawnv", "posix_spawn", "setsid"):
    if hasattr(os, _name):
        setattr(os, _name, _blocked)
subprocess.Popen = _blocked
socket.socket = _blocked
del _blocked, _name
"""


def allow_code_execution(flag: bool = False) -> bool:
    """True when the caller opted in, by flag or by MANYMINDS_ALLOW_CODE_EXECUTION=1."""
    return flag or os.environ.get(ENV_FLAG, "") == "1"


def require_opt_in(flag: bool) -> None:
    if not allow_code_execution(flag):
        raise CapabilityError(
            "running model-written code is disabled: pass allow_code_execution=True "
            f"(CLI: --allow-code-execution) or set {ENV_FLAG}=1, after reading the sandbox's limits"
        )


@dataclass(frozen=True)
class Limits:
    timeout: float = 10.0
    """Wall-clock seconds before the process group is killed."""
    cpu_seconds: int = 10
    memory_mb: int = 512
    """Address-space limit (RLIMIT_AS)."""
    max_processes: int = 16
    """RLIMIT_NPROC for the sandbox uid (root only; see module docstring)."""
    max_output_bytes: int = 64 * 1024
    """stdout and stderr are each kept up to this; the rest is read and dropped."""
    max_file_bytes: int = 16 * 1024 * 1024
    max_open_files: int = 64


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float
    isolated: bool
    """True when the root-only layers (own uid, own network namespace) were applied."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def out_of_time(self) -> bool:
        """Stopped by the wall-clock timeout or the CPU limit (SIGXCPU, then SIGKILL)."""
        return self.timed_out or self.returncode in (-signal.SIGXCPU, -signal.SIGKILL)


def _world_executable(path: Path) -> bool:
    """Whether another user can run `path` (every ancestor traversable, the file executable)."""
    try:
        resolved = path.resolve()
        for parent in resolved.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        return bool(resolved.stat().st_mode & stat.S_IXOTH)
    except OSError:
        return False


def _interpreter(isolated: bool) -> str:
    """A Python the sandbox uid can run: ours if reachable, else the system's."""
    if not isolated or _world_executable(Path(sys.executable)):
        return sys.executable
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3") or ""):
        if candidate and _world_executable(Path(candidate)):
            return candidate
    return ""


def _next_uid() -> int:
    with _uid_lock:
        return _UID_BASE + (os.getpid() % 10_000) * 100 + next(_uids) % 100


def _limit(kind: int, value: int) -> None:
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass


def _child_setup(limits: Limits, uid: int | None) -> None:
    """Runs in the child between fork and exec: namespaces, limits, then the uid drop."""
    if uid is not None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            os._exit(125)  # refuse to run with network access we meant to remove
    try:  # soft limit: SIGXCPU; one second later the hard limit kills
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    except (ValueError, OSError):
        pass
    _limit(resource.RLIMIT_AS, limits.memory_mb * 1024 * 1024)
    _limit(resource.RLIMIT_FSIZE, limits.max_file_bytes)
    _limit(resource.RLIMIT_NOFILE, limits.max_open_files)
    _limit(resource.RLIMIT_CORE, 0)
    if uid is not None:
        _limit(resource.RLIMIT_NPROC, limits.max_processes)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def _kill_uid(uid: int) -> None:
    """SIGKILL every process owned by `uid` (those that escaped the process group too)."""
    for _ in range(5):
        found = False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid == uid:
                    os.kill(int(entry.name), signal.SIGKILL)
                    found = True
            except (OSError, ProcessLookupError):
                continue
        if not found:
            return
        time.sleep(0.02)


def _drain(stream, cap: int, into: list[bytes]) -> None:
    kept = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            return
        if kept < cap:
            into.append(chunk[: cap - kept])
            kept += len(into[-1])


def run_python(code: str, limits: Limits = Limits(), *, allow: bool = False) -> SandboxResult:
    """Run `code` as a script in the sandbox and report how it ended (blocking)."""
    require_opt_in(allow)
    isolated = os.geteuid() == 0
    python = _interpreter(isolated)
    if not python:
        isolated, python = False, sys.executable
    uid = _next_uid() if isolated else None
    workdir = Path(tempfile.mkdtemp(prefix="manyminds-sandbox-"))
    try:
        script = workdir / "candidate.py"
        script.write_text(code if isolated else _PRELUDE + "\n" + code)
        if uid is not None:
            os.chown(workdir, uid, uid)
            os.chown(script, uid, uid)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
        }
        start = time.monotonic()
        process = subprocess.Popen(
            [python, "-I", "-B", str(script)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            preexec_fn=lambda: _child_setup(limits, uid),
        )
        out: list[bytes] = []
        err: list[bytes] = []
        readers = [
            threading.Thread(target=_drain, args=(process.stdout, limits.max_output_bytes, out), daemon=True),
            threading.Thread(target=_drain, args=(process.stderr, limits.max_output_bytes, err), daemon=True),
        ]
        for r in readers:
            r.start()
        timed_out = False
        try:
            process.wait(timeout=limits.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if uid is not None:
                _kill_uid(uid)
            process.wait()
            for r in readers:
                r.join(timeout=5)
        return SandboxResult(
            returncode=None if timed_out else process.returncode,
            stdout=b"".join(out).decode("utf-8", "replace"),
            stderr=b"".join(err).decode("utf-8", "replace"),
            timed_out=timed_out,
            seconds=time.monotonic() - start,
            isolated=isolated,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
