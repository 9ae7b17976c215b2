"""Where a benchmark's questions are solved: in this process, or sharded over a pool of Ray actors.

`bench.arun` hands an executor chunks of questions and records what comes back; the executor only
solves. The driver (this process) stays the single writer of the SQLite cache and the run records,
so resuming, `report` and `reaggregate` work the same however a run was executed.

With Ray, each actor owns a backend rebuilt from the driver's (a backend pickles as its
configuration: the embedded model is loaded again in the actor, an OpenAI-compatible endpoint gets
its own connections) and a Session over a copy of the driver's cache taken when each strategy's run
begins, so samples the driver already has are not generated again. The samples an actor generates
come back with its chunk's results and the driver stores them. An actor that dies is restarted by
Ray and its chunk retried there (`max_restarts`, `max_task_retries`): seeds make a retried sample
the same sample, and a chunk's results are recorded only when it returns, so nothing is lost or
recorded twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from manyminds.cache.store import GenerationCache
from manyminds.errors import BackendError, ConfigError
from manyminds.types import Generation, Result, Task

if TYPE_CHECKING:
    from manyminds.session import Session
    from manyminds.strategies.base import Strategy

log = logging.getLogger("manyminds.bench")


async def solve_chunk(strategy: "Strategy", tasks: list[Task], session: "Session") -> list[Result | BaseException]:
    """The chunk's results; where the batch fails, each question alone (concurrently), so one bad
    question fails only itself. A ConfigError is the user's to fix and ends the run.

    A backend that stayed unreachable for a whole retry deadline (a retryable error, given up on)
    failed the chunk, not one of its questions: asking each question again would wait that long
    once more per question (a dead endpoint used to take a chunk's size times the deadline to fail).
    Its questions are recorded as failed with that error and are tried again on resuming.
    """
    try:
        results: list[Result | BaseException] = list(await session.asolve_many(strategy, tasks, progress=False))
        return results
    except ConfigError:
        raise
    except BackendError as batch_error:
        if batch_error.retryable:
            log.info("the backend failed a batch of %d questions after its retries (%s)", len(tasks), batch_error)
            return [batch_error] * len(tasks)
        log.info("a batch of %d questions failed (%s); running them one by one", len(tasks), batch_error)
    except Exception as batch_error:  # noqa: BLE001 - isolated below, question by question
        log.info("a batch of %d questions failed (%s); running them one by one", len(tasks), batch_error)
    gate = asyncio.Semaphore(session.concurrency)

    async def alone(task: Task) -> Result | BaseException:
        async with gate:
            try:
                return await session.asolve(strategy, task)
            except ConfigError:
                raise
            except Exception as error:  # noqa: BLE001 - recorded as this question's failure
                return error

    return list(await asyncio.gather(*(alone(task) for task in tasks)))


def describe(error: BaseException) -> str:
    """How a question's failure is recorded: "Kind: message" (a Ray actor's arrives described)."""
    return str(error) if isinstance(error, RemoteFailure) else f"{type(error).__name__}: {error}"


class Executor(Protocol):
    """Solves chunks of questions for `bench.arun`; `width` chunks may be in flight at once."""

    width: int

    async def begin(self, strategy: "Strategy") -> None:
        """A strategy's run starts (the Ray pool refreshes its actors' copy of the cache)."""

    async def solve(self, strategy: "Strategy", tasks: list[Task]) -> list[Any]:
        """One Result or exception per task, in order; a ConfigError ends the run."""


class LocalExecutor:
    """The session in this process: one chunk at a time, questions concurrent within it."""

    width = 1

    def __init__(self, session: "Session") -> None:
        self.session = session

    async def begin(self, strategy: "Strategy") -> None:
        return None

    async def solve(self, strategy: "Strategy", tasks: list[Task]) -> list[Any]:
        return await solve_chunk(strategy, tasks, self.session)


class RemoteFailure(Exception):
    """A question that failed in an actor, carried back as its description ("Kind: message"):
    exceptions of every library do not all survive pickling, their descriptions do."""


RAY_HINT = "Ray runs are an optional extra: pip install 'manyminds[ray]' (or pip install ray)"


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--ray needs Ray, which is not installed. {RAY_HINT}") from None
    return ray


def connect(address: str | None, *, workers: int) -> bool:
    """Join or start a Ray cluster: "local" starts one on this machine with `workers` CPUs (one per
    actor), "auto" joins the one this machine belongs to, anything else is a cluster's address
    (ray://HOST:10001 or HOST:6379). Returns whether this call started Ray (and so stops it)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False,
                               "configure_logging": False}
    if address in (None, "", "local"):
        ray.init(num_cpus=workers, **options)
    else:
        ray.init(address=address, **options)
    return True


class RayExecutor:
    """A pool of Ray actors, each with the backend and a Session; each solves one chunk at a time
    (its questions `concurrency` at once, as one process would) and holds the next one waiting, so
    a chunk's trip to and from the driver overlaps the actor's work on another.

    Args:
        backend: the driver's backend; each actor gets its own, rebuilt from its configuration.
        session: the driver's session, whose cache the actors copy and the driver writes.
        workers: actors in the pool.
        address: the Ray cluster ("local", "auto", or an address); None: "local".
        concurrency: questions in flight within an actor.
        actor_options: Ray options of each actor (e.g. ``{"num_gpus": 1}`` for a vLLM engine each).
    """

    def __init__(self, backend: Any, session: "Session", *, workers: int = 2, address: str | None = None,
                 concurrency: int = 16, actor_options: dict[str, Any] | None = None) -> None:
        if workers < 1:
            raise ConfigError(f"a Ray pool needs at least 1 worker, got {workers}")
        ray = require_ray()
        self.session = session
        self.width = 2 * workers  # each actor: one chunk solving, one waiting in its queue
        self._started = connect(address, workers=workers)
        options = {"num_cpus": 1, "max_restarts": 3, "max_task_retries": 3, **(actor_options or {})}
        actor = ray.remote(**options)(_Worker)
        try:
            self.actors = [actor.remote(backend, concurrency) for _ in range(workers)]
        except Exception as error:
            self.close()
            raise ConfigError(f"the backend cannot be sent to Ray workers ({error}); give one built from a "
                              "spec (local, openai:MODEL@URL, vllm:...)") from error
        self._free: asyncio.Queue[Any] | None = None
        self._snapshot: Any = None
        self._snapshot_dir = tempfile.TemporaryDirectory(prefix="manyminds-ray-")

    async def begin(self, strategy: "Strategy") -> None:
        """Copy the driver's cache (everything stored so far, earlier strategies' samples included)
        into Ray's object store; each actor loads it before its next chunk."""
        ray = require_ray()
        self._free = asyncio.Queue()
        for actor in self.actors * 2:
            self._free.put_nowait(actor)
        cache = self.session.cache
        if cache is None:
            self._snapshot = None
            return
        cache.flush()
        copy = Path(self._snapshot_dir.name) / "snapshot.db"
        copy.unlink(missing_ok=True)
        source = sqlite3.connect(f"file:{cache.path}?mode=ro", uri=True)
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        self._snapshot = ray.put(copy.read_bytes())

    async def solve(self, strategy: "Strategy", tasks: list[Task]) -> list[Any]:
        assert self._free is not None, "begin() first"
        actor = await self._free.get()
        try:
            outcomes, stored = await actor.solve.remote([self._snapshot], strategy, tasks)
        finally:
            self._free.put_nowait(actor)
        cache = self.session.cache
        if cache is not None:
            for key, request, generations in stored:
                cache.put(key, request, generations)
        return outcomes

    async def pids(self) -> list[int]:
        """The actors' process ids (a test kills one)."""
        return list(await asyncio.gather(*(actor.pid.remote() for actor in self.actors)))

    def close(self) -> None:
        ray = require_ray()
        for actor in getattr(self, "actors", []):
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
        if getattr(self, "_snapshot_dir", None) is not None:
            self._snapshot_dir.cleanup()
        if self._started and ray.is_initialized():
            ray.shutdown()


class _RecordingCache(GenerationCache):
    """An actor's cache: a copy of the driver's, remembering what it stores so the driver can too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored: list[tuple[str, dict[str, Any], list[Generation]]] = []

    def put(self, key: str, request: dict[str, Any], generations: Any) -> None:
        generations = list(generations)
        super().put(key, request, generations)
        self.stored.append((key, request, generations))

    def take(self) -> list[tuple[str, dict[str, Any], list[Generation]]]:
        taken, self.stored = self.stored, []
        return taken


class _Worker:
    """A Ray actor: the backend, and a Session over the latest copy of the driver's cache."""

    def __init__(self, backend: Any, concurrency: int) -> None:
        self.backend = backend
        self.concurrency = concurrency
        self.session: Any = None
        self.cache: _RecordingCache | None = None
        self.loaded: str | None = "nothing yet"
        self.gate: asyncio.Lock | None = None
        self.folder = tempfile.TemporaryDirectory(prefix="manyminds-worker-")

    def pid(self) -> int:
        return os.getpid()

    def _load(self, snapshot: Any) -> None:
        import ray

        from manyminds.session import Session

        if self.session is not None:
            self.session.close()
        if snapshot is None:
            self.cache = None
        else:
            path = Path(self.folder.name) / f"cache-{len(os.listdir(self.folder.name))}.db"
            path.write_bytes(ray.get(snapshot))
            self.cache = _RecordingCache(path)
        self.session = Session(self.backend, cache=self.cache, concurrency=self.concurrency, progress=False)

    async def solve(self, snapshot: list[Any], strategy: "Strategy", tasks: Sequence[Task]) -> tuple[list[Any], list[Any]]:
        self.gate = self.gate or asyncio.Lock()
        async with self.gate:  # one chunk at a time: the next waits here, already delivered
            key = snapshot[0].hex() if snapshot[0] is not None else None
            if self.session is None or key != self.loaded:
                self._load(snapshot[0])
                self.loaded = key
            outcomes = await solve_chunk(strategy, list(tasks), self.session)
            stored = self.cache.take() if self.cache is not None else []
        return [o if isinstance(o, Result) else RemoteFailure(describe(o)) for o in outcomes], stored
