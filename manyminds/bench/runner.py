"""The benchmark runner: strategies over a data set, scored, recorded question by question, resumable.

`run(data, strategies, backend=..., cache=...)` runs each strategy over the
same questions and returns a typed `BenchReport`. Every run is recorded in
the cache file (strategy and parameters, aggregator, backend and model,
data set, split and version, seed, code version) with every question's
result, score and candidates, as soon as its chunk of questions is done. A
run is identified by a fingerprint of all of that, so the same command
resumes an interrupted run: recorded questions are kept, failed ones are
tried again, the rest are run, and samples already in the cache are never
generated again (self-consistency at n = 40 reuses the 8 samples of n = 8).

A question whose generation fails after the backend's retries is recorded
as failed, with its error, and the run goes on; `max_failures` ends the run
(with `TooManyFailures`) once more than that many questions have failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from manyminds._perf import run_sync
from manyminds.backends.base import Backend
from manyminds.bench.executors import Executor, LocalExecutor, RayExecutor, describe
from manyminds.bench.scoring import Score, Scorer, scorer_for, with_samples
from manyminds.cache import GenerationCache
from manyminds.plugins import plugin_versions
from manyminds.session import Session
from manyminds.errors import ConfigError, RunFailed
from manyminds.strategies.base import Strategy
from manyminds.types import Result, Task, Usage
from manyminds.verifiers.base import is_oracle

if TYPE_CHECKING:
    import numpy as np



class TooManyFailures(RunFailed):
    """More questions failed than `max_failures` allows; what was done is recorded."""


class NothingSucceeded(RunFailed):
    """Every question a run tried failed (a dead backend, a broken scorer): a failed run, never a
    table of 0% (0/0). Raised after the first chunk in which nothing has succeeded yet, so a dead
    backend fails the run in one chunk's time; what was done is recorded."""


class QuestionRecord(BaseModel):
    position: int
    task: Task
    result: Result | None = None
    score: Score | None = None
    error: str | None = None
    """Why the question failed (generation or scoring), when it did."""
    earlier: bool = False
    """Done by an earlier attempt of the run and read back on resuming: its usage was paid then."""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "QuestionRecord":
        """A question as `GenerationCache.run_rows` returns it."""
        return cls(position=row["position"], task=row["task"], result=row["result"],
                   score=Score(**row["score"]) if row["score"] else None, error=row["error"])


def bootstrap_interval(values: "Sequence[float] | np.ndarray", *, level: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval for the mean of `values` (seeded: the same data, the same interval)."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if not data.size:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


class RunReport(BaseModel):
    """One strategy over the questions: its records and what they add up to."""

    label: str
    run_id: int | None = None
    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    """What the run ran on: data set, split, version, backend, model, seed, scorer, code version."""
    records: list[QuestionRecord]
    resumed: bool = False

    @property
    def questions(self) -> int:
        return len(self.records)

    @property
    def scored(self) -> list[QuestionRecord]:
        return [r for r in self.records if r.score is not None]

    @property
    def failures(self) -> int:
        return sum(r.error is not None for r in self.records)

    @property
    def correct(self) -> float:
        return sum((r.score.value for r in self.scored if r.score is not None), 0.0)

    @property
    def accuracy(self) -> float:
        """Mean score over the questions scored (failed questions are reported apart)."""
        scored = self.scored
        return self.correct / len(scored) if scored else 0.0

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        return bootstrap_interval([r.score.value for r in self.scored if r.score is not None], level=level)

    @property
    def usage(self) -> Usage:
        """What every question's result cost, whichever attempt of the run paid for it."""
        total = Usage()
        for r in self.records:
            if r.result is not None:
                total = total + r.result.usage
        return total

    @property
    def usage_this_attempt(self) -> Usage:
        """What this call paid: questions read back from an earlier attempt of a resumed run cost nothing now."""
        total = Usage()
        for r in self.records:
            if r.result is not None and not r.earlier:
                total = total + r.result.usage
        return total

    @property
    def results(self) -> list[Result]:
        return [r.result for r in self.records if r.result is not None]


class BenchReport(BaseModel):
    runs: list[RunReport]

    def run(self, label: str) -> RunReport:
        for r in self.runs:
            if r.label == label:
                return r
        raise KeyError(label)


def _code_version() -> str:
    from manyminds import __version__

    return __version__


def _fingerprint(label: str, strategy: Strategy, tasks: Sequence[Task], meta: dict[str, Any]) -> str:
    """What identifies a run (the backend's identity is in `meta`): the same command, the same run."""
    ids = hashlib.sha256("\n".join(f"{t.id}\t{t.question}" for t in tasks).encode()).hexdigest()
    return hashlib.sha256(json.dumps(
        {"label": label, "strategy": strategy.name, "params": strategy.params(), "tasks": ids, "meta": meta},
        sort_keys=True, default=str).encode()).hexdigest()[:32]


def _tasks(data: str | Sequence[Task | str], split: str | None, limit: int | None,
           seed: int | None, exclude: frozenset[str] = frozenset()) -> tuple[list[Task], dict[str, Any]]:
    if isinstance(data, str):
        from manyminds import datasets
        from manyminds.datasets.catalog import pick

        if exclude:  # questions something was tuned on are never evaluated, whatever limit and seed pick
            tasks = pick([t for t in datasets.load(data, split) if t.id not in exclude], limit=limit, seed=seed)
        else:
            tasks = datasets.load(data, split, limit=limit, seed=seed)
        first = tasks[0].metadata if tasks else {}
        return tasks, {"dataset": data, "split": first.get("split"), "dataset_version": first.get("dataset_version"),
                       "scorer": datasets.get(data).scorer}
    from manyminds.datasets.catalog import pick

    tasks = pick([t for t in (Task.of(t) for t in data) if t.id not in exclude], limit=limit, seed=seed)
    first = tasks[0].metadata if tasks else {}
    return tasks, {"dataset": first.get("dataset", "tasks"), "split": first.get("split"),
                   "dataset_version": first.get("dataset_version"), "scorer": first.get("scorer", "answer")}


async def _score(scorer: Scorer, result: Result) -> Score | BaseException:
    try:
        return await with_samples(scorer, result)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - a scoring crash fails this question only
        return error


async def arun(
    data: str | Sequence[Task | str],
    strategies: Mapping[str, Strategy] | Sequence[Strategy],
    *,
    backend: Backend,
    cache: GenerationCache | str | Path | None = None,
    split: str | None = None,
    limit: int | None = None,
    seed: int | None = None,
    scorer: Scorer | None = None,
    verifier: Any = None,
    judge: Backend | None = None,
    concurrency: int = 16,
    chunk: int | None = None,
    max_failures: int | None = None,
    progress: "bool | Callable[[int], None] | None" = None,
    allow_greedy: bool = False,
    oracle: bool = False,
    exclude: Sequence[str] = (),
    executor: str = "local",
    ray_address: str | None = None,
    workers: int = 2,
    actor_options: dict[str, Any] | None = None,
) -> BenchReport:
    """Run every strategy over the same questions; see the module docstring.

    Args:
        data: a data set name (`manyminds.datasets.names()`) or Tasks.
        strategies: {label: strategy}, or strategies labelled by name and budget.
        cache: the SQLite file recording samples and runs (default: a temporary one, so
            strategies still share samples within this call).
        split: which split of a named data set (`datasets.load`).
        limit: how many questions (after `seed` shuffled them); None: all.
        seed: shuffles the questions (Tasks given too) before `limit` picks.
        scorer: how results are scored (default: the data set's scorer).
        verifier: the UnitTests verifier that scores code; judge: the backend that judges
            pairwise (AlpacaEval).
        chunk: questions solved, scored and recorded together (default: `concurrency`).
        progress: a bar on stderr (True; None: when stderr is a terminal), none (False), or a
            callback called with the number of questions recorded as each chunk is.
        max_failures: end the run once more questions than this have failed.
        allow_greedy: run a voting strategy whose n samples at temperature 0 would be copies
            of one draw (it then draws one); refused otherwise, since a benchmark would report
            n samples of agreement where there was one.
        oracle: run strategies whose verifier reads the gold answer or the scorer's tests
            (`verifiers.base.is_oracle`); refused otherwise. Such runs are labelled
            "[oracle]" and carry `oracle: true` in their record: an upper bound, not accuracy.
        exclude: ids of questions never to evaluate on (those a DIV-SE plan was tuned on,
            `DiversityPlan.seen`); left out before `limit` and `seed` pick.
        executor: "local" (this process) or "ray": chunks sharded over `workers` Ray actors, each
            with its own copy of `backend` (`bench.executors.RayExecutor`); this process stays the
            one writer of the cache and the run records, and the results are the local run's.
        ray_address: the Ray cluster ("local": started here with `workers` CPUs and stopped
            after; "auto": the cluster this machine is in; or its address).
        actor_options: Ray options of each actor, e.g. ``{"num_gpus": 1}`` (a vLLM engine per GPU).
    """
    if executor not in ("local", "ray"):
        raise ConfigError(f"executor must be 'local' or 'ray', got {executor!r}")
    tasks, meta = _tasks(data, split, limit, seed, frozenset(exclude))
    if exclude:
        meta["excluded"] = len(set(exclude))
    if not tasks:
        raise ConfigError("no questions to run")
    if isinstance(strategies, Mapping):
        labelled = dict(strategies)
    else:
        labelled = {}
        for s in strategies:
            labelled[f"{s.name} (n={getattr(s, 'n', '?')})"] = s
    if not labelled:
        raise ConfigError("no strategy to run")

    for label in list(labelled):
        checker = getattr(labelled[label], "verifier", None)
        if is_oracle(checker):
            if not oracle:
                raise ConfigError(
                    f"{label}: its verifier ({getattr(checker, 'name', checker)}) reads the gold answer or the "
                    "scorer's own tests, so what it passes is right by construction: an oracle, not a method. "
                    "Use a verifier that does not (unit tests on the visible tests only), or pass oracle=True "
                    "(--oracle) to run it labelled as an oracle")
            labelled[f"{label} [oracle]"] = labelled.pop(label)
    for label, strategy in labelled.items():
        copies = getattr(strategy, "greedy_copies", None)
        if copies is not None and copies() and not allow_greedy:
            n = getattr(strategy, "n", "?")
            raise ConfigError(f"{label}: {n} samples at temperature 0 are one greedy draw counted "
                              f"{n} times; sample at a temperature above 0, or allow it (allow_greedy=True, "
                              "--allow-greedy), and it draws one sample")
    chosen_scorer = scorer or scorer_for(meta["scorer"], verifier=verifier, judge=judge)
    temporary = None
    if cache is None:  # a temporary file, so strategies still share samples within this call
        temporary = tempfile.TemporaryDirectory(prefix="manyminds-bench-")
        cache = Path(temporary.name) / "bench.db"
    identity = backend.cache_identity() if hasattr(backend, "cache_identity") else {"repr": repr(backend)}
    meta = {**meta, "seed": seed, "limit": limit, "backend": identity, "model": getattr(backend, "model", None),
            "scorer": chosen_scorer.name, "code_version": _code_version(),
            "plugins": plugin_versions(labelled.values())}
    reports: list[RunReport] = []
    try:
        # One session runs every strategy: it owns a cache it opened from a path (closed at the
        # end, every sample stored) and only flushes one given as an object.
        with Session(backend, cache=cache, concurrency=concurrency, progress=False, keep_pools=True) as session, \
                _Progress(progress) as bar:
            pool: Executor = (RayExecutor(backend, session, workers=workers, address=ray_address,
                                          concurrency=concurrency, actor_options=actor_options)
                              if executor == "ray" else LocalExecutor(session))
            try:
                for label, strategy in labelled.items():
                    reports.append(await _run_one(label, strategy, tasks, meta, session, chosen_scorer, bar,
                                                  chunk or concurrency, max_failures, pool))
            finally:
                if isinstance(pool, RayExecutor):
                    pool.close()
    finally:
        if temporary is not None:
            temporary.cleanup()
    return BenchReport(runs=reports)


async def _run_one(label: str, strategy: Strategy, tasks: list[Task], meta: dict[str, Any], session: Session,
                   scorer: Scorer, bar: "_Progress", chunk: int, max_failures: int | None,
                   executor: "Executor") -> RunReport:
    spec = strategy.aggregation()
    run_meta = {**meta, "aggregator": spec.model_dump() if spec is not None else None}
    store = session.cache
    assert store is not None  # arun always gives the session a cache
    if is_oracle(getattr(strategy, "verifier", None)):
        run_meta["oracle"] = True
    fingerprint = _fingerprint(label, strategy, tasks, run_meta)
    run_id, resumed = store.runs.open(fingerprint, label, strategy.name, strategy.params(), run_meta)
    records: dict[int, QuestionRecord] = {}
    for row in store.runs.rows(run_id):
        if row["error"] is None and row["result"] is not None and row["position"] < len(tasks):
            records[row["position"]] = QuestionRecord.from_row(row).model_copy(update={"earlier": True})
    todo = [k for k in range(len(tasks)) if k not in records]
    task_bar = bar.add(label, len(tasks), records.values())
    failures = 0
    await executor.begin(strategy)

    async def solve(positions: list[int]) -> None:
        nonlocal failures
        outcomes = await executor.solve(strategy, [tasks[k] for k in positions])
        scores = await asyncio.gather(*(_score(scorer, o) for o in outcomes if isinstance(o, Result)))
        scored = iter(scores)
        rows = []
        for k, outcome in zip(positions, outcomes):
            if isinstance(outcome, BaseException):
                record = QuestionRecord(position=k, task=tasks[k], error=describe(outcome))
            else:
                score = next(scored)
                if isinstance(score, BaseException):
                    record = QuestionRecord(position=k, task=tasks[k], result=outcome,
                                            error=f"scoring failed: {describe(score)}")
                else:
                    record = QuestionRecord(position=k, task=tasks[k], result=outcome, score=score)
            failures += record.error is not None
            records[k] = record
            rows.append((k, record.task, record.result, record.score.model_dump_json() if record.score else None,
                         record.error))
        store.runs.record_results(run_id, rows)
        bar.advance(task_bar, [records[k] for k in positions])
        if max_failures is not None and failures > max_failures:
            store.runs.finish(run_id, "stopped: too many failures")
            first = next(r.error for r in records.values() if r.error)
            raise TooManyFailures(f"{label}: {failures} questions failed (more than --max-failures {max_failures}); "
                                  f"the first: {first}. Done so far is recorded as run {run_id}; rerun to resume")
        if all(r.error is not None for r in records.values()):
            store.runs.finish(run_id, "failed: no question succeeded")
            first = next(r.error for r in records.values() if r.error)
            raise NothingSucceeded(f"{label}: none of the {len(records)} questions tried succeeded; the first "
                                   f"error: {first}")

    # `executor.width` chunks in flight at once (1 in this process: as before, one after another);
    # each is recorded as it returns, so a run stopped anywhere resumes from what was recorded.
    chunks = [todo[start:start + chunk] for start in range(0, len(todo), chunk)]
    pending: set[asyncio.Task[None]] = set()
    try:
        for positions in chunks:
            if len(pending) >= executor.width:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    finished.result()
            pending.add(asyncio.ensure_future(solve(positions)))
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                finished.result()
    finally:
        for left in pending:
            left.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    store.runs.finish(run_id, "finished" if not failures else f"finished, {failures} failed")
    return RunReport(label=label, run_id=run_id, strategy=strategy.name, params=strategy.params(), meta=run_meta,
                     records=[records[k] for k in range(len(tasks))], resumed=resumed)


def most_split(results: Sequence[Result]) -> Result:
    """The result whose vote was closest (lowest confidence among those that voted), for display."""
    voted = [r for r in results if r.tally] or list(results)
    return min(voted, key=lambda r: (r.confidence, r.task.id or ""))


def run(data: str | Sequence[Task | str], strategies: Mapping[str, Strategy] | Sequence[Strategy],
        **options: Any) -> BenchReport:
    """`arun`, from synchronous code."""
    return run_sync(arun(data, strategies, **options))


class _Progress:
    """A rich progress bar per run with running accuracy, samples and tokens (stderr, when a terminal)."""

    def __init__(self, enabled: "bool | Callable[[int], None] | None") -> None:
        import sys

        self.callback = enabled if callable(enabled) else None
        self.enabled = sys.stderr.isatty() if enabled is None else (enabled is True)
        self._progress: Any = None
        self._totals: dict[int, list[float]] = {}

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                                      console=Console(stderr=True))
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def add(self, label: str, total: int, done: Any) -> int:
        """A bar for one run, advanced by what it already holds; -1 when bars are off."""
        if self._progress is None:
            return -1  # a callback hears of questions finished from now on, not of those resumed
        key = self._progress.add_task(label, total=total, stats="")
        self._totals[key] = [0.0, 0.0, 0.0, 0.0, 0.0]  # correct, scored, failed, samples, tokens
        self.advance(key, list(done))
        return key

    def advance(self, key: int, records: list[QuestionRecord]) -> None:
        if self.callback is not None and records:
            self.callback(len(records))
        if self._progress is None:
            return
        totals = self._totals[key]
        for r in records:
            if r.score is not None:
                totals[0] += r.score.value
                totals[1] += 1
            totals[2] += r.error is not None
            if r.result is not None:
                totals[3] += r.result.usage.samples
                totals[4] += r.result.usage.total_tokens
        accuracy = f"{totals[0] / totals[1]:.1%}" if totals[1] else "-"
        failed = f", {int(totals[2])} failed" if totals[2] else ""
        self._progress.update(key, advance=len(records),
                              stats=f"acc {accuracy}, {int(totals[3])} samples, {int(totals[4])} tokens{failed}")
