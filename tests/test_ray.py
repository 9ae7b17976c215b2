"""Benchmark runs on a Ray pool (`bench.run(..., executor="ray")`, `manyminds bench --ray`): Ray on
this machine with two actors, a Scripted backend with a fixed latency. The same results as one
process; an actor killed mid-run loses nothing and records nothing twice; the driver stays the one
writer of the cache, so a rerun generates nothing and later strategies reuse earlier samples."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from manyminds.backends.scripted import Scripted  # noqa: E402
from manyminds.bench.runner import run  # noqa: E402
from manyminds.errors import ConfigError  # noqa: E402
from manyminds.strategies import make  # noqa: E402
from manyminds.types import Task  # noqa: E402

QUESTIONS = [Task(question=f"What is {k} + 2?", gold=str(k + 2), id=f"q{k}") for k in range(24)]


class Replies:
    """Answers that depend only on the request, so any process draws the same sample; each process
    that answers writes its pid into `folder` (the test kills one of them)."""

    def __init__(self, folder: str | None = None) -> None:
        self.folder = folder

    def __call__(self, messages, params, index):
        if self.folder is not None:
            Path(self.folder, str(os.getpid())).touch()
        k = int(messages[-1].content.split("What is ")[1].split(" ")[0])
        return f"The answer is {k + 2 if (k + index) % 3 else k + 3}."


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def answers(report):
    return [[(r.position, r.result.answer, r.result.tally, r.score.value) for r in run_.records]
            for run_ in report.runs]


def test_a_ray_run_gives_the_local_run_s_results_and_stores_every_sample(cluster, tmp_path):
    methods = {"sc2": make("self-consistency", 2, seed=3), "sc4": make("self-consistency", 4, seed=3)}
    local = run(QUESTIONS, methods, backend=Scripted(Replies(), latency=0.05), cache=tmp_path / "local.db",
                progress=False, concurrency=4)
    pooled = run(QUESTIONS, methods, backend=Scripted(Replies(), latency=0.05), cache=tmp_path / "ray.db",
                 progress=False, concurrency=4, executor="ray", workers=2)
    assert answers(pooled) == answers(local)
    # the second strategy reused the first's samples: its actors had the driver's cache
    assert [r.result.usage.cached_samples for r in pooled.runs[1].records] == [2] * len(QUESTIONS)
    with sqlite3.connect(tmp_path / "ray.db") as db:  # the driver stored every sample the actors drew
        assert db.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 4 * len(QUESTIONS)
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 2 * len(QUESTIONS)

    # a rerun against the same cache resumes every question: nothing is generated
    folder = tmp_path / "pids"
    folder.mkdir()
    again = run(QUESTIONS, methods, backend=Scripted(Replies(str(folder)), latency=0.05), cache=tmp_path / "ray.db",
                progress=False, concurrency=4, executor="ray", workers=2)
    assert answers(again) == answers(local) and not list(folder.iterdir())
    assert all(r.resumed for r in again.runs)


def test_an_actor_killed_mid_run_loses_nothing_and_records_nothing_twice(cluster, tmp_path):
    folder = tmp_path / "pids"
    folder.mkdir()
    method = {"sc3": make("self-consistency", 3, seed=5)}
    done = []
    killed: list[int] = []

    def progress(k: int) -> None:
        done.append(k)

    def killer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            pids = [int(p.name) for p in folder.iterdir() if int(p.name) != os.getpid()]
            if done and pids:  # a chunk is recorded and actors are mid-chunk: kill one
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    pooled = run(QUESTIONS, method, backend=Scripted(Replies(str(folder)), latency=0.2), cache=tmp_path / "ray.db",
                 progress=progress, concurrency=2, executor="ray", workers=2)
    thread.join(5)
    assert killed, "no actor was killed: the test did not test"
    assert len(list(folder.iterdir())) >= 3  # Ray restarted the killed actor and its chunk ran there
    local = run(QUESTIONS, method, backend=Scripted(Replies(), latency=0.0), cache=tmp_path / "local.db",
                progress=False, concurrency=2)
    assert answers(pooled) == answers(local)
    assert all(r.error is None for r in pooled.runs[0].records)
    with sqlite3.connect(tmp_path / "ray.db") as db:
        positions = [row[0] for row in db.execute("SELECT position FROM results ORDER BY position")]
    assert positions == list(range(len(QUESTIONS)))  # each question recorded once
    assert sum(done) == len(QUESTIONS)


def test_an_unknown_executor_is_refused():
    with pytest.raises(ConfigError, match="executor must be 'local' or 'ray'"):
        run(QUESTIONS[:1], {"sc": make("self-consistency", 1)}, backend=Scripted(Replies()), executor="dask",
            progress=False)


@pytest.mark.integration
def test_the_embedded_model_on_two_actors_gives_the_local_results(cluster, tmp_path):
    """Each actor loads the embedded model itself (the backend travels as its settings); seeded
    samples are the same samples in any process, so the answers and votes are the local run's."""
    from manyminds.backends.local import Local

    tasks = [Task(question=f"What is {a} + {b}?", gold=str(a + b), id=f"e{a}{b}") for a, b in ((2, 3), (4, 4), (1, 6), (5, 2))]
    method = {"sc3": make("self-consistency", 3, seed=7, max_tokens=24, prompt="direct")}
    local = run(tasks, method, backend=Local(n_threads=1), cache=tmp_path / "local.db", progress=False, concurrency=2)
    pooled = run(tasks, method, backend=Local(n_threads=1), cache=tmp_path / "ray.db", progress=False, concurrency=2,
                 executor="ray", workers=2)
    assert answers(pooled) == answers(local)
    texts = [[c.text for c in r.result.candidates] for r in pooled.runs[0].records]
    assert texts == [[c.text for c in r.result.candidates] for r in local.runs[0].records]
