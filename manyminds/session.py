"""A session: the one front door. What one run owns (backend, cache, compiled graphs, worker
pools, concurrency, progress), and the only thing that runs strategies: the Python API
(`Strategy.solve*` are one-call sessions), `manyminds run`, `bench`, `discover` and the server.

    with mm.Session("local", cache="runs.db", concurrency=8) as session:
        results = session.solve_many(SelfConsistency(n=8), questions)

A session closes what it opened, in order: the cache it opened from a path
(flushed, so every sample paid for is stored), the backend it built from a
spec (its model unloaded), and math-verify's worker processes if they were
started during the session. A backend or cache passed in as an object is
the caller's: it is flushed, never closed. Compiled graphs are memoised on
the backend, so they go with it. Run options reach the graph as a typed
`RunContext`, never as strings in LangGraph's `configurable`.

`Strategy.solve_many(..., backend=, cache=)` is a one-call session that
keeps worker pools running for the next call.
"""

from __future__ import annotations

import asyncio

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from manyminds._perf import run_sync
from manyminds.answers import equivalence
from manyminds.backends.base import Backend
from manyminds.budget import Budget, Ledger
from manyminds.cache import GenerationCache, open_cache
from manyminds.errors import ConfigError, one_line
from manyminds.types import Result, Task

if TYPE_CHECKING:
    from pathlib import Path

    from langgraph.graph.state import CompiledStateGraph

    from manyminds.strategies.base import Strategy


MAX_UPSTREAMS = 32
"""Other models of the session's endpoint kept at once (`upstream`); the least recently used goes first."""


def _budget(value: "Budget | dict[str, int] | int") -> Budget:
    if isinstance(value, Budget):
        return value
    try:
        return Budget.model_validate({"tokens": value} if isinstance(value, int) else value)
    except ValidationError as error:
        raise ConfigError(f"session budget: {one_line(error)}") from None


class Session:
    """A backend, a cache and run options, used by any number of strategies, closed together."""

    def __init__(
        self,
        backend: "Backend | str" = "local",
        *,
        cache: "GenerationCache | str | Path | None" = None,
        concurrency: int = 16,
        progress: bool | None = None,
        keep_pools: bool = False,
        budget: "Budget | dict[str, int] | int | None" = None,
        runner: str = "langgraph",
    ) -> None:
        from manyminds.agents.nodes import RUNNERS

        if runner not in RUNNERS:
            raise ConfigError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        self.ledger = None if budget is None else Ledger(_budget(budget))
        """The session's budget across all its questions (`manyminds.budget`): what it allows,
        what is spent (`ledger.tokens`, `ledger.samples`). None: no limit but each strategy's own."""
        if isinstance(backend, str):
            from manyminds.backends import from_spec

            self.backend, self._owns_backend = from_spec(backend), True
        else:
            self.backend, self._owns_backend = backend, False
        try:
            self.cache, self._owns_cache = open_cache(cache)
        except BaseException:
            self._close_backend()
            raise
        self.concurrency = concurrency
        self.runner = runner
        """How its runs are executed: "langgraph" (each strategy's compiled graph) or "direct" (the
        same steps without LangGraph's scheduler, the same Results: what `manyminds serve` uses, since
        the scheduler's ~2 ms a run is most of a one-question request's cost)."""
        self.progress = progress
        self._keep_pools = keep_pools

        self._pools_before = equivalence.pool_running()
        self._upstreams: dict[str, tuple[Backend, Backend]] = {}
        self.closed = False

    @property
    def wrapped(self) -> Backend:
        """The backend as strategies see it: behind the cache, when there is one."""
        return self.cache.wrap(self.backend) if self.cache is not None else self.backend

    def upstream(self, model: str | None, *, cached: bool = True) -> Backend:
        """The session's backend, or another model of the same endpoint (`with_model`), behind
        the session's cache unless `cached=False` (fresh samples, stored nowhere): what the
        server's `STRATEGY:MODEL` names pick. Memoised per model."""
        if model is None or model == self.backend.model:
            return self.wrapped if cached else self.backend
        if model not in self._upstreams:
            with_model = getattr(self.backend, "with_model", None)
            if with_model is None:
                raise ConfigError(f"the backend serves {self.backend.model!r} only; it cannot switch to {model!r}")
            other = with_model(model)  # held with its cached view, so graphs compiled over either are reused
            self._upstreams[model] = (other, self.cache.wrap(other) if self.cache is not None else other)
            while len(self._upstreams) > MAX_UPSTREAMS:  # least recently used first: none is kept for good
                self._upstreams.pop(next(iter(self._upstreams)))
        plain, wrapped = self._upstreams.pop(model)
        self._upstreams[model] = (plain, wrapped)  # now the most recently used
        return wrapped if cached else plain

    def graph(self, strategy: "Strategy") -> "CompiledStateGraph":
        """The strategy's compiled graph over this session's (cached) backend, to embed in a
        LangGraph app as a subgraph (sync or async: `agents.builder.embeddable`), run with this
        session's concurrency; the cache is this session's, closed when it closes."""
        from manyminds.agents.builder import embeddable
        from manyminds.agents.nodes import RunContext

        self._check_open()
        return embeddable(strategy.compiled(self.wrapped), RunContext(self.concurrency, ledger=self.ledger))

    async def asolve_many(self, strategy: "Strategy", tasks: Sequence[Task | str], *,
                          progress: "bool | Callable[[int], None] | None" = None,
                          backend: Backend | None = None, limit: "Budget | None" = None,
                          flush: bool = True) -> list[Result]:
        """Results for `tasks`, in their order; at most `concurrency` questions in flight.

        `progress`: a bar on stderr (True), none (False), the session's default (None), or a
        callback `advance(k)` called as questions finish. `backend`: another backend to run on,
        one of `upstream(...)`'s. `limit`: a budget per question imposed from outside the method
        (the server's cap), applied with the strategy's own and not recorded as its setting.
        Cancelling the awaiting task cancels the ensemble, its backend calls included; samples
        already generated stay in the cache. `flush`: return once the run's samples are committed
        to the cache file (waited for on a worker thread, so the event loop goes on serving other
        work meanwhile); False leaves them to the cache's writer, which commits within its flush
        interval (they are served to lookups at once, and `close` commits the rest): what a server
        answering a request at a time wants, so that no request waits on the disk.
        """
        from manyminds.agents.nodes import RunContext, run_batch

        self._check_open()
        batch = [Task.of(t) for t in tasks]
        if not batch:
            return []
        graph = strategy.compiled(backend if backend is not None else self.wrapped)
        try:
            if callable(progress):
                return await run_batch(graph, batch, RunContext(self.concurrency, progress, ledger=self.ledger,
                                                                question_budget=limit, runner=self.runner))
            wanted = self.progress if progress is None else progress
            with progress_bar(len(batch), strategy.name, wanted) as advance:
                return await run_batch(graph, batch, RunContext(self.concurrency, advance, ledger=self.ledger,
                                                                question_budget=limit, runner=self.runner))
        finally:
            if flush and self.cache is not None and not self.cache.closed:
                await asyncio.get_running_loop().run_in_executor(None, self.cache.flush)

    def solve_many(self, strategy: "Strategy", tasks: Sequence[Task | str], *,
                   progress: "bool | Callable[[int], None] | None" = None) -> list[Result]:
        return run_sync(self.asolve_many(strategy, tasks, progress=progress))

    async def asolve(self, strategy: "Strategy", task: Task | str, *, backend: Backend | None = None,
                     limit: "Budget | None" = None, flush: bool = True) -> Result:
        (result,) = await self.asolve_many(strategy, [task], progress=False, backend=backend, limit=limit,
                                           flush=flush)
        return result

    def solve(self, strategy: "Strategy", task: Task | str) -> Result:
        return run_sync(self.asolve(strategy, task))

    def _check_open(self) -> None:
        if self.closed:
            raise ConfigError("this session is closed")

    def close(self) -> None:
        """Store every sample, then release what this session opened (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.cache is not None:
                self.cache.close() if self._owns_cache else self.cache.flush()
        finally:
            self._close_backend()
            if not self._keep_pools and not self._pools_before:
                equivalence.shutdown_pool()

    def _close_backend(self) -> None:
        close = getattr(self.backend, "close", None)
        if self._owns_backend and callable(close):
            close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "Session":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class progress_bar:
    """A rich progress bar, or nothing when not wanted; yields an `advance(k)` callback."""

    def __init__(self, total: int, label: str, enabled: bool | None) -> None:
        self.total = total
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Any = None

    def __enter__(self) -> Callable[[int], None] | None:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.start()
        task_id = self._progress.add_task(self.label, total=self.total)
        return lambda k: self._progress.advance(task_id, k)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
