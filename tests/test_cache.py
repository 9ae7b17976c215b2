"""The generation cache: one row per (request, sample index), resumable, safe to open."""

import asyncio
import os
import sqlite3
import threading

import pytest

from manyminds.backends import Scripted
from manyminds.backends.openai_compat import OpenAICompatible
from manyminds.cache import GenerationCache, request_key
from manyminds.errors import CacheError
from manyminds.types import Message, SamplingParams
import json
from manyminds.types import Generation, Task

MSGS = [Message(role="user", content="What is 7 + 5?")]
PARAMS = SamplingParams(temperature=0.7, max_tokens=32)


def reply(messages, params, index):
    return f"sample {index}: The answer is {index}."


def test_sixteen_after_eight_generates_only_the_missing_eight(tmp_path):
    backend = Scripted(reply)
    with GenerationCache(tmp_path / "c.db") as cache:
        cached = cache.wrap(backend)
        first = asyncio.run(cached.generate(MSGS, PARAMS, 8))
        second = asyncio.run(cached.generate(MSGS, PARAMS, 16))
    assert [(r.n, r.first_index) for r in backend.requests] == [(8, 0), (8, 8)]
    assert [g.index for g in second] == list(range(16))
    assert [g.text for g in second[:8]] == [g.text for g in first]
    assert all(g.cached for g in second[:8]) and not any(g.cached for g in second[8:])


def test_rows_survive_reopening_and_a_rerun_makes_no_call(tmp_path):
    backend = Scripted(reply)
    with GenerationCache(tmp_path / "c.db") as cache:
        asyncio.run(cache.wrap(backend).generate(MSGS, PARAMS, 4))
    with GenerationCache(tmp_path / "c.db") as cache:
        again = asyncio.run(cache.wrap(backend).generate(MSGS, PARAMS, 4))
        assert cache.count() == 4
    assert len(backend.requests) == 1
    assert [g.text for g in again] == [reply(None, None, i) for i in range(4)]


def test_temperature_zero_is_one_row(tmp_path):
    backend = Scripted(reply)
    greedy = SamplingParams(temperature=0)
    with GenerationCache(tmp_path / "c.db") as cache:
        out = asyncio.run(cache.wrap(backend).generate(MSGS, greedy, 5))
        assert cache.count() == 1
    assert [g.index for g in out] == [0, 1, 2, 3, 4]
    assert len({g.text for g in out}) == 1
    assert backend.samples_generated == 1


def test_key_depends_on_everything_but_n():
    identity = {"kind": "scripted", "model": "m"}
    base = request_key(identity, MSGS, PARAMS)
    assert base == request_key(dict(identity), list(MSGS), SamplingParams(temperature=0.7, max_tokens=32))
    assert base != request_key(identity, MSGS, SamplingParams(temperature=0.8, max_tokens=32))
    assert base != request_key({"kind": "scripted", "model": "other"}, MSGS, PARAMS)
    assert base != request_key(identity, [Message(role="user", content="What is 7 + 6?")], PARAMS)


def test_no_secret_is_stored(tmp_path):
    backend = OpenAICompatible(model="m", base_url="http://127.0.0.1:9/v1", api_key="sk-secret-123")
    assert "sk-secret" not in str(backend.cache_identity())

    with GenerationCache(tmp_path / "c.db") as cache:
        key = request_key(backend.cache_identity(), MSGS, PARAMS)
        cache.put(key, {"backend": backend.cache_identity(), "messages": [], "params": {}},
                  asyncio.run(Scripted(reply).generate(MSGS, PARAMS, 2)))
    assert b"sk-secret" not in (tmp_path / "c.db").read_bytes()


def test_concurrent_requests_for_the_same_samples_generate_once(tmp_path):
    backend = Scripted(reply, latency=0.05)
    with GenerationCache(tmp_path / "c.db") as cache:
        cached = cache.wrap(backend)

        async def both():
            return await asyncio.gather(cached.generate(MSGS, PARAMS, 4), cached.generate(MSGS, PARAMS, 4))

        a, b = asyncio.run(both())
    assert backend.samples_generated == 4
    assert [g.text for g in a] == [g.text for g in b]


def test_failed_generation_keeps_what_was_stored(tmp_path):
    def flaky(messages, params, index):
        if index >= 4:
            raise RuntimeError("backend down")
        return reply(messages, params, index)

    with GenerationCache(tmp_path / "c.db") as cache:
        cached = cache.wrap(Scripted(flaky))
        asyncio.run(cached.generate(MSGS, PARAMS, 4))
        with pytest.raises(RuntimeError):
            asyncio.run(cached.generate(MSGS, PARAMS, 8))
        assert cache.count() == 4


def test_wal_mode_and_schema_version(tmp_path):
    GenerationCache(tmp_path / "c.db").close()
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM manyminds_meta WHERE name='schema_version'").fetchone()[0] == "3"


def test_a_schema_2_cache_with_a_stored_run_is_migrated_and_its_run_still_loads(tmp_path):

    import sqlite_utils

    from manyminds.cache.schema import _META, _migrate_v1, _migrate_v2
    from manyminds.types import Decision, Result, Usage

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    _migrate_v1(db)
    _migrate_v2(db)
    db[_META].insert({"name": "schema_version", "value": "2"}, pk="name")
    old = Result(task=Task(question="2+2?", gold="4"), answer="4", confidence=1.0, tally={"4": 1}, candidates=[],
                 usage=Usage(), decision=Decision(answer="4"), strategy="self-consistency")
    db["runs"].insert({"id": 1, "label": "old run", "strategy": "self-consistency", "params": json.dumps({}),
                       "created": 0.0})
    db["results"].insert({"run": 1, "position": 0, "task_id": None, "answer": "4", "result": old.model_dump_json()})
    db.conn.close()
    with GenerationCache(path) as cache:
        (info,) = cache.runs.all()
        assert info["status"] == "finished" and info["results"] == 1 and info["meta"] == {}
        assert cache.runs.load(1)[0].answer == "4"
        assert cache.runs.rows(1)[0]["task"].question == "2+2?"  # read from the result where no task column was
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM manyminds_meta WHERE name='schema_version'").fetchone()[0] == "3"


def test_a_newer_schema_is_refused(tmp_path):
    GenerationCache(tmp_path / "c.db").close()
    conn = sqlite3.connect(tmp_path / "c.db")
    conn.execute("UPDATE manyminds_meta SET value='99' WHERE name='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(CacheError, match="newer"):
        GenerationCache(tmp_path / "c.db")


def test_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(CacheError, match="does not exist"):
        GenerationCache(tmp_path / "nope" / "c.db")
    assert not (tmp_path / "nope").exists()


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("my precious notes\n")
    with pytest.raises(CacheError, match="not a SQLite database"):
        GenerationCache(path)
    assert path.read_text() == "my precious notes\n"


def _foreign_database(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE mine (x)")
    conn.execute("INSERT INTO mine VALUES (42)")
    conn.commit()
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize("read_only", [False, True])
def test_another_applications_database_is_refused_untouched(tmp_path, read_only):
    path = tmp_path / "app.db"
    before = _foreign_database(path)
    with pytest.raises(CacheError, match="manyminds did not create .*mine.*left untouched"):
        GenerationCache(path, read_only=read_only)
    assert path.read_bytes() == before  # not migrated, not switched to WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


def test_an_empty_file_is_not_made_a_cache(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(CacheError, match="empty file"):
        GenerationCache(path)
    assert path.read_bytes() == b""


def test_a_new_cache_is_private_and_created_whole(tmp_path):
    with GenerationCache(tmp_path / "c.db") as cache:
        asyncio.run(cache.wrap(Scripted(reply)).generate(MSGS, PARAMS, 2))
        for p in tmp_path.iterdir():
            assert p.stat().st_mode & 0o077 == 0, p  # the database and its -wal and -shm
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("c.db")) == []


def test_inspecting_opens_read_only_and_works_on_a_file_we_cannot_write(tmp_path):
    path = tmp_path / "c.db"
    with GenerationCache(path) as cache:
        asyncio.run(cache.wrap(Scripted(reply)).generate(MSGS, PARAMS, 3))
    before = path.read_bytes()
    os.chmod(path, 0o400)
    try:
        with GenerationCache(path, read_only=True) as cache:
            assert cache.stats().generations == 3 and cache.runs.all() == []
            with pytest.raises(CacheError, match="read-only"):
                cache.put("k", {"backend": {}}, [])
    finally:
        os.chmod(path, 0o600)
    assert path.read_bytes() == before


def _hold_write_lock(path, seconds):
    """Another connection holding the database's write lock for `seconds`."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(seconds, lambda: (conn.execute("COMMIT"), conn.close()))
    timer.start()
    return timer


def test_a_batch_that_meets_a_locked_database_is_retried_not_dropped(tmp_path):
    path = tmp_path / "c.db"
    cache = GenerationCache(path, busy_timeout=0.2, give_up_after=30)
    lock = _hold_write_lock(path, 1.5)
    try:
        asyncio.run(cache.wrap(Scripted(reply)).generate(MSGS, PARAMS, 64))
        cache.flush()  # waits through the lock, then commits
        assert cache.count() == 64
    finally:
        lock.join()
        cache.close()


def test_samples_a_locked_database_never_took_are_saved_and_read_back(tmp_path):
    path = tmp_path / "c.db"
    GenerationCache(path).close()
    cache = GenerationCache(path, busy_timeout=0.1, give_up_after=0.5)
    lock = _hold_write_lock(path, 60)
    try:
        asyncio.run(cache.wrap(Scripted(reply)).generate(MSGS, PARAMS, 40))
        with pytest.raises(CacheError, match=r"40 samples .* saved to (\S+) and are read back") as caught:
            cache.close()
    finally:
        lock.cancel()
        lock.function()
    spill = [p for p in tmp_path.iterdir() if ".pending-" in p.name]
    assert len(spill) == 1 and str(spill[0]) in str(caught.value)
    assert spill[0].stat().st_mode & 0o077 == 0
    backend = Scripted(reply)
    with GenerationCache(path) as reopened:
        assert reopened.recovered == 40 and reopened.count() == 40
        again = asyncio.run(reopened.wrap(backend).generate(MSGS, PARAMS, 40))
    assert backend.calls == 0 and [g.text for g in again] == [reply(None, None, i) for i in range(40)]
    assert not [p for p in tmp_path.iterdir() if ".pending-" in p.name]


def test_stats(tmp_path):
    with GenerationCache(tmp_path / "c.db") as cache:
        asyncio.run(cache.wrap(Scripted(reply)).generate(MSGS, PARAMS, 3))
        stats = cache.stats()
    assert stats.generations == 3 and stats.requests == 1
    assert stats.models == {"scripted:scripted": 3}


def test_a_version_1_cache_migrates_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    with GenerationCache(path) as cache:
        cache.put("k", {"backend": {"kind": "x", "model": "m"}}, [Generation(text="kept", index=0)])
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE results")
    conn.execute("DROP TABLE runs")
    conn.execute("UPDATE manyminds_meta SET value='1' WHERE name='schema_version'")
    conn.commit()
    conn.close()
    with GenerationCache(path) as cache:
        assert cache.lookup("k", [0])[0].text == "kept" and cache.runs.all() == []


def test_merging_caches_adds_samples_once_and_runs_question_by_question(tmp_path):
    """Two replicas' caches (or a benchmark's shards run apart) merged: every sample once, a run both
    hold by fingerprint completed from the other, any other run copied; the CLI reports counts."""
    import sqlite3

    from typer.testing import CliRunner

    from manyminds.backends.scripted import Scripted
    from manyminds.bench.runner import run
    from manyminds.cli import app
    from manyminds.strategies import make
    from manyminds.types import Task

    tasks = [Task(question=f"What is {k} + 1?", gold=str(k + 1), id=f"q{k}") for k in range(6)]
    method = {"sc": make("self-consistency", 2, seed=1)}

    def reply(messages, params, index):
        return f"The answer is {int(messages[-1].content.split()[2]) + 1}."

    run(tasks[:4], method, backend=Scripted(reply), cache=tmp_path / "a.db", progress=False)
    run(tasks[2:], method, backend=Scripted(reply), cache=tmp_path / "b.db", progress=False)
    run(tasks, {"sc4": make("self-consistency", 4, seed=1)}, backend=Scripted(reply), cache=tmp_path / "b.db",
        progress=False)
    result = CliRunner().invoke(app, ["cache", "merge", str(tmp_path / "a.db"), str(tmp_path / "b.db")])
    assert result.exit_code == 0, result.output
    # b holds 6 questions x 4 samples; a held 4 x 2, all among them: 24 - 8 new
    assert "16 samples" in result.output and "2 runs" in result.output
    with sqlite3.connect(tmp_path / "a.db") as db:
        assert db.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 24
        runs = db.execute("SELECT label, COUNT(x.position) FROM runs r JOIN results x ON x.run = r.id "
                          "GROUP BY r.id ORDER BY r.id").fetchall()
    assert runs == [("sc", 4), ("sc", 4), ("sc4", 6)]  # different question sets: different fingerprints
    again = CliRunner().invoke(app, ["cache", "merge", str(tmp_path / "a.db"), str(tmp_path / "b.db")])
    assert "0 samples" in again.output and "0 runs" in again.output and "0 results" in again.output
    # a rerun of b's first benchmark against the merged cache resumes it: nothing to generate
    backend = Scripted(reply)
    rerun = run(tasks[2:], method, backend=backend, cache=tmp_path / "a.db", progress=False)
    assert backend.calls == 0 and rerun.runs[0].resumed
    missing = CliRunner().invoke(app, ["cache", "merge", str(tmp_path / "a.db"), str(tmp_path / "nope.db")])
    assert missing.exit_code != 0 and "nope.db: no such cache file" in str(missing.exception)


def test_several_processes_share_one_cache_file(tmp_path):
    """Replicas of a server (or any processes) writing one cache at once: WAL and one BEGIN IMMEDIATE
    transaction per write batch keep every sample of both, and neither fails."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from manyminds import Session\n"
        "from manyminds.backends.scripted import Scripted\n"
        "from manyminds.strategies import make\n"
        "who = sys.argv[2]\n"
        "with Session(Scripted(lambda m, p, i: f'The answer is {i}.', latency=0.001), cache=sys.argv[1],\n"
        "             progress=False) as session:\n"
        "    for k in range(20):\n"
        "        session.solve_many(make('self-consistency', 4, seed=1), [f'{who} question {k}.{j}' for j in range(5)])\n"
    )
    path = tmp_path / "shared.db"
    workers = [subprocess.Popen([sys.executable, "-c", script, str(path), who], stderr=subprocess.PIPE, text=True)
               for who in ("replica-a", "replica-b")]
    for worker in workers:
        _, errors = worker.communicate(timeout=240)
        assert worker.returncode == 0, errors
    import sqlite3

    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 2 * 20 * 5 * 4


def test_a_session_waits_for_its_samples_to_be_stored_without_stopping_the_event_loop(tmp_path):
    """`asolve_many` returns once its samples are committed, but waits on a worker thread: other
    coroutines run meanwhile (a flush on the loop would have held every request of a server)."""
    from manyminds.session import Session
    from manyminds.strategies import SelfConsistency
    from tests.conftest import count_rows

    started, released = threading.Event(), threading.Event()
    waited: list[bool] = []
    with Session(Scripted(["The answer is 4."]), cache=tmp_path / "c.db", progress=False) as session:
        store = session.cache.flush

        def flush() -> None:
            started.set()
            waited.append(released.wait(5))  # set by a coroutine: only if the loop runs meanwhile
            store()

        session.cache.flush = flush

        async def main() -> None:
            async def other() -> None:
                while not waited:
                    if started.is_set():
                        released.set()
                    await asyncio.sleep(0.01)

            ticker = asyncio.ensure_future(other())
            await session.asolve(SelfConsistency(n=3), "What is 2 + 2?")
            assert count_rows(tmp_path / "c.db", "generations") == 3, "committed when asolve returned"
            await ticker

        asyncio.run(main())
    assert waited[0] is True
