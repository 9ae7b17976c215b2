"""Control groups that bound one sandboxed run as a whole: its processes and its memory.

Per-process rlimits do not bound a run: six children may each hold the
address-space limit, and files in the sandbox's tmpfs or in a memfd belong
to no process's address space at all. A memory cgroup charges all of it
(anonymous memory, tmpfs and memfd pages alike) to the run; a pids cgroup
counts every process, root-owned ones included (the kernel exempts those
from RLIMIT_NPROC).

Both cgroup versions are handled: v1 (a hierarchy per controller under
`/sys/fs/cgroup/<controller>`) and v2 (one unified tree). A group is created
beside the caller's own where that is writable (as root, or where the tree
was delegated); elsewhere `RunCgroup.bounds` says what is not bounded and
the sandbox falls back on rlimits.

Groups are named `manyminds-sandbox-<pid>-<start time>-<n>`; a caller
killed mid-run cannot remove its group, so every process sweeps the groups
of callers that no longer exist the first time it creates one.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import signal
import time
from pathlib import Path

log = logging.getLogger("manyminds.sandbox")

ROOT = Path("/sys/fs/cgroup")
PREFIX = "manyminds-sandbox-"
_NAME = re.compile(rf"^{PREFIX}(\d+)-(\d+)-\d+$")
_runs = itertools.count()


def process_start(pid: int) -> int | None:
    """The start time of `pid` (clock ticks since boot), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def owner_tag() -> str:
    """`<pid>-<start time>` of this process: enough to tell later whether it is still alive."""
    return f"{os.getpid()}-{process_start(os.getpid()) or 0}"


def owner_gone(name: str) -> bool:
    """True when the `manyminds-sandbox-<pid>-<start>-...` name belongs to a process that has ended."""
    found = _NAME.match(name) or re.match(rf"^{PREFIX}(\d+)-(\d+)-", name)
    if not found:
        return False
    pid, start = int(found.group(1)), int(found.group(2))
    return process_start(pid) != start


def _own_path(controller: str) -> str:
    """This process's cgroup path for `controller` (v1) or in the unified tree ('' for v2)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return path
    return "/"


def _v2_has(directory: Path, controller: str) -> bool:
    try:
        return controller in (directory / "cgroup.controllers").read_text().split()
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def _parents(controller: str) -> tuple[Path, ...]:
    """Directories a run's group for `controller` may be made in, nearest the caller first."""
    candidates: list[Path] = []
    v1 = ROOT / controller
    if (v1 / "cgroup.procs").exists():
        own = v1 / _own_path(controller).lstrip("/")
        candidates += [own, v1] if own != v1 else [v1]
    if (ROOT / "cgroup.controllers").exists():
        own = ROOT / _own_path("").lstrip("/")
        for place in ([own, ROOT] if own != ROOT else [ROOT]):
            if _v2_has(place, controller):
                candidates.append(place)
    return tuple(dict.fromkeys(candidates))


def _kill_members(group: Path) -> None:
    for _ in range(100):
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            return
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.02)


def _remove(group: Path) -> None:
    _kill_members(group)
    for _ in range(50):
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)  # the last member is still leaving
    log.warning("could not remove sandbox cgroup %s", group)


@functools.lru_cache(maxsize=None)
def sweep_stale(parent: Path) -> int:
    """Remove the groups of killed callers under `parent` (once per process and parent)."""
    removed = 0
    try:
        entries = list(parent.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if entry.name.startswith(PREFIX) and entry.is_dir() and owner_gone(entry.name):
            _remove(entry)
            removed += not entry.exists()
    return removed


class RunCgroup:
    """The groups of one run: a pids bound and a memory bound (swap included), where writable.

    `paths` are the group directories the child joins before exec (one per v1 hierarchy,
    one for v2); `bounds` names the controllers that took effect.
    """

    def __init__(self, *, max_processes: int, memory_bytes: int) -> None:
        self.paths: list[Path] = []
        self.bounds: set[str] = set()
        name = f"{PREFIX}{owner_tag()}-{next(_runs)}"
        for controller in ("pids", "memory"):
            if controller in self.bounds:
                continue  # a v2 group made for pids already bounds memory
            for parent in _parents(controller):
                group = self._make(parent / name, controller, max_processes, memory_bytes)
                if group is not None:
                    break

    def _make(self, group: Path, controller: str, max_processes: int, memory_bytes: int) -> Path | None:
        sweep_stale(group.parent)
        fresh = not group.exists()
        try:
            if fresh:
                group.mkdir()
            v2 = (group / "cgroup.controllers").exists()
            if v2 and not _v2_has(group, controller):
                raise OSError(f"the {controller} controller is not enabled for {group.parent}")
            wrote = self._limit(group, controller if not v2 else None, max_processes, memory_bytes, v2)
        except OSError as error:
            log.debug("no %s cgroup at %s: %s", controller, group, error)
            if fresh:
                try:
                    group.rmdir()
                except OSError:
                    pass
            return None
        if group not in self.paths:
            self.paths.append(group)
        self.bounds |= wrote
        return group

    @staticmethod
    def _limit(group: Path, controller: str | None, max_processes: int, memory_bytes: int, v2: bool) -> set[str]:
        """Write the limits one group can hold; the controllers bounded."""
        done: set[str] = set()
        if v2:
            if _v2_has(group, "pids"):
                (group / "pids.max").write_text(str(max_processes))
                done.add("pids")
            if _v2_has(group, "memory"):
                (group / "memory.max").write_text(str(memory_bytes))
                swap = group / "memory.swap.max"
                if swap.exists():
                    swap.write_text("0")
                oom_group = group / "memory.oom.group"
                if oom_group.exists():
                    oom_group.write_text("1")
                done.add("memory")
            return done
        if controller == "pids":
            (group / "pids.max").write_text(str(max_processes))
            return {"pids"}
        (group / "memory.limit_in_bytes").write_text(str(memory_bytes))
        swap = group / "memory.memsw.limit_in_bytes"
        if swap.exists():
            try:
                swap.write_text(str(memory_bytes))
            except OSError:  # swap accounting off: nothing can be swapped out of the bound
                pass
        return {"memory"}

    def enter(self) -> None:
        """Called in the child before exec: join every group (so all it starts is bounded too)."""
        for group in self.paths:
            fd = os.open(group / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    def peak_memory(self) -> int | None:
        """Bytes at the run's peak, where the memory group records it."""
        for group in self.paths:
            for name in ("memory.max_usage_in_bytes", "memory.peak"):
                try:
                    return int((group / name).read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    continue
        return None

    def out_of_memory(self) -> bool:
        """True when the memory bound was hit (the kernel refused or reclaimed past the limit)."""
        for group in self.paths:
            for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
                try:
                    for line in (group / name).read_text().splitlines():
                        field, _, value = line.partition(" ")
                        if field == key and int(value) > 0:
                            return True
                except (OSError, ValueError):
                    continue
            try:
                if int((group / "memory.failcnt").read_text()) > 0:
                    return True
            except (OSError, ValueError):
                pass
        return False

    def kill_and_remove(self) -> None:
        for group in self.paths:
            _remove(group)
        self.paths = []
