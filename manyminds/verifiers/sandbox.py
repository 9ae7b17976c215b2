"""Run untrusted, model-written Python in a contained child process.

Isolation comes from bubblewrap (`bwrap`, Debian's `bubblewrap` package),
with or without root. Each run gets:

- its own user, PID, network, IPC, UTS and mount namespaces, and no further
  user namespaces: it sees no other process (so it can signal or trace
  none), has no network but its own loopback, and borrows no real uid;
- a file system of its own: the system's directories and the interpreter
  read-only, a private, size-limited `/tmp`, `/var/tmp` and `/dev/shm`, a
  fresh `/proc`, and nothing of the caller's working files or home;
- a scrubbed environment (no API keys), resource limits (wall clock, CPU,
  address space, file size, open files, processes), captured output up to
  a cap; at the end the whole namespace is killed, so no process outlives
  its run. Where the pids cgroup is writable (root) it bounds the number of
  processes too, since the kernel exempts root-owned processes from
  RLIMIT_NPROC.

The verdict is not the exit status: a harness runs the program and, only
once the last line has run without an exception, writes a per-run random
token (read from a pipe, never on disk, in argv or in the environment) to
a second pipe. A program that calls `sys.exit(0)`, `os._exit(0)` or exits
from an `atexit` hook cannot produce it. (Code that scrapes the harness's
own memory for the token is outside this model: it is deliberate
tampering, not a wrong answer that happens to exit 0.)

Where bubblewrap cannot run, nothing runs unless the caller opts in to
unisolated execution by name (`allow_unisolated_execution=True` or
MANYMINDS_ALLOW_UNISOLATED_EXECUTION=1); then only the resource limits and
the token apply, every run logs a warning, and results say `isolated=False`.

Code execution itself is opt-in: nothing runs unless `allow_code_execution()`
is true (a flag given by the caller, or MANYMINDS_ALLOW_CODE_EXECUTION=1).
"""

from __future__ import annotations

import functools
import itertools
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

log = logging.getLogger("manyminds.sandbox")

ENV_FLAG = "MANYMINDS_ALLOW_CODE_EXECUTION"
UNISOLATED_ENV_FLAG = "MANYMINDS_ALLOW_UNISOLATED_EXECUTION"
SANDBOX_UID = 65534
"""The uid (and gid) the program sees inside its user namespace; no real uid is borrowed."""

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime")
_PIDS_CGROUPS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))
_runs = itertools.count()

# Runs the program, then proves it reached the end. argv: token fd, report fd,
# program path, process limit.
_HARNESS = r'''
import os, resource, sys, traceback

def _harness():
    token_fd, report_fd, path, nproc = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    token = os.read(token_fd, 64)
    os.close(token_fd)
    if nproc > 0:
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        except (ValueError, OSError):
            pass
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    sys.argv = [path]
    namespace = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
    try:
        exec(compile(source, path, "exec"), namespace)
    except SystemExit as stop:
        sys.stderr.write("manyminds sandbox: the program exited (%r) before its last line ran\n" % (stop.code,))
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(1)
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush(); sys.stderr.flush()
    os.write(report_fd, token)
    os.close(report_fd)

_harness()
'''


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
    """Address-space limit (RLIMIT_AS) of each process."""
    max_processes: int = 16
    """Processes the program may run at once (pids cgroup where writable, else RLIMIT_NPROC)."""
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


def _bwrap_command(bwrap: str, workdir: Path, limits: Limits, python: str, python_dirs: list[str]) -> list[str]:
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
        "--ro-bind", str(workdir), "/sandbox",
        "--proc", "/proc", "--dev", "/dev",
        "--size", size, "--tmpfs", "/tmp",
        "--size", size, "--tmpfs", "/var/tmp",
        "--size", size, "--tmpfs", "/dev/shm",
        "--chdir", "/tmp", "--",
        python,
    ]
    return command


class _PidsCgroup:
    """A pids cgroup that bounds and later kills every process of one run (where writable)."""

    def __init__(self, limit: int) -> None:
        self.path: Path | None = None
        for root in _PIDS_CGROUPS:
            if not (root / "cgroup.procs").exists() or not _has_pids_controller(root):
                continue
            path = root / f"manyminds-sandbox-{os.getpid()}-{next(_runs)}"
            try:
                path.mkdir()
                (path / "pids.max").write_text(str(limit))
            except OSError:
                try:
                    path.rmdir()
                except OSError:
                    pass
                continue
            self.path = path
            return

    def enter(self) -> None:
        """Called in the child before exec: move itself (and so all it starts) into the group."""
        if self.path is not None:
            fd = os.open(self.path / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    def kill_and_remove(self) -> None:
        if self.path is None:
            return
        for _ in range(50):
            try:
                pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            except OSError:
                pids = []
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.02)
        try:
            self.path.rmdir()
        except OSError as error:  # pragma: no cover - a process stuck in the kernel
            log.warning("could not remove sandbox cgroup %s: %s", self.path, error)
        self.path = None


def _has_pids_controller(root: Path) -> bool:
    if root.name == "pids":
        return True
    controllers = root / "cgroup.controllers"
    return controllers.exists() and "pids" in controllers.read_text().split()


# -- running --------------------------------------------------------------------------


def _limit(kind: int, value: int) -> None:
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass


def _child_setup(limits: Limits, cgroup: _PidsCgroup) -> None:
    """Runs in the child between fork and exec: cgroup, then limits inherited by all it starts."""
    try:
        cgroup.enter()
    except OSError:
        os._exit(125)  # refuse to run outside the process bound we set up
    try:  # soft limit: SIGXCPU; one second later the hard limit kills
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    except (ValueError, OSError):
        pass
    _limit(resource.RLIMIT_AS, limits.memory_mb * 1024 * 1024)
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


def run_python(
    code: str, limits: Limits = Limits(), *, allow: bool = False, allow_unisolated: bool = False
) -> SandboxResult:
    """Run `code` as a script in the sandbox and report how it ended (blocking).

    Raises CapabilityError when code execution was not opted in to, or when
    bubblewrap cannot isolate it and unisolated execution was not accepted.
    """
    require_opt_in(allow)
    require_isolation(allow_unisolated)
    bwrap, why = bwrap_status()
    if bwrap is None:
        log.warning("running model-written code WITHOUT ISOLATION (%s): only resource limits apply", why)
    workdir = Path(tempfile.mkdtemp(prefix="manyminds-sandbox-"))
    cgroup = _PidsCgroup(limits.max_processes + 2)  # + bwrap's own two processes
    token = secrets.token_hex(16).encode()
    token_r, token_w = os.pipe()
    report_r, report_w = os.pipe()
    try:
        (workdir / "harness.py").write_text(_HARNESS)
        (workdir / "program.py").write_text(code)
        os.write(token_w, token)
        os.close(token_w)
        token_w = -1
        nproc = 0 if cgroup.path is not None else limits.max_processes
        if bwrap is not None:
            python, dirs = _interpreter()
            command = _bwrap_command(bwrap, workdir, limits, python, dirs)
            command += ["-I", "-B", "/sandbox/harness.py", str(token_r), str(report_w), "/sandbox/program.py",
                        str(nproc)]
            cwd, env = "/", {"PATH": "/usr/bin:/bin"}
        else:
            scratch = workdir / "tmp"
            scratch.mkdir()
            command = [sys.executable, "-I", "-B", str(workdir / "harness.py"), str(token_r), str(report_w),
                       str(workdir / "program.py"), str(nproc)]
            cwd = str(scratch)
            env = {"PATH": "/usr/bin:/bin", "HOME": str(scratch), "TMPDIR": str(scratch), "LANG": "C.UTF-8",
                   "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
        start = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=(token_r, report_w),
            preexec_fn=lambda: _child_setup(limits, cgroup),
        )
        os.close(token_r)
        os.close(report_w)
        token_r = report_w = -1
        out: list[bytes] = []
        err: list[bytes] = []
        report: list[bytes] = []
        readers = [
            threading.Thread(target=_drain, args=(process.stdout, limits.max_output_bytes, out), daemon=True),
            threading.Thread(target=_drain, args=(process.stderr, limits.max_output_bytes, err), daemon=True),
            threading.Thread(target=_drain, args=(os.fdopen(report_r, "rb"), 256, report), daemon=True),
        ]
        report_r = -1  # owned by the reader's file object now
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
            cgroup.kill_and_remove()
            process.wait()
            for r in readers:
                r.join(timeout=5)
        return SandboxResult(
            returncode=None if timed_out else process.returncode,
            stdout=b"".join(out).decode("utf-8", "replace"),
            stderr=b"".join(err).decode("utf-8", "replace"),
            timed_out=timed_out,
            seconds=time.monotonic() - start,
            isolated=bwrap is not None,
            completed=b"".join(report) == token,
        )
    finally:
        for fd in (token_r, token_w, report_r, report_w):
            if fd >= 0:
                os.close(fd)
        cgroup.kill_and_remove()
        shutil.rmtree(workdir, ignore_errors=True)
