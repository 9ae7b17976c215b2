"""Bad input, unusable files and failed work: one line on stderr and a non-zero exit, never a traceback,
and nothing created or lost on the way.

Each case is something a careless or unlucky user did (issue: "failures that never look like
results"): values that are not answers, files that are not what they claim, a cache that is
locked, not theirs or a dangling link, a port in use.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import sqlite3
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "manyminds.cli"]
POOL_LINE = '{"samples": [{"text": "The answer is 1."}, {"text": "The answer is 2."}]}'


def cli(*args, env=None, prefix=(), cwd=None):
    return subprocess.run([*prefix, *CLI, *args], capture_output=True, timeout=300, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def one_line(proc, status: int, message: str) -> str:
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == status, (proc.returncode, err[-2000:], proc.stdout[-500:])
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-2000:]
    assert message in err, err
    return err


def _write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


@pytest.fixture
def files(tmp_path):
    made = {
        "deep": _write(tmp_path / "deep.jsonl", "[" * 50_000 + "]" * 50_000 + "\n"),
        "list question": _write(tmp_path / "lq.jsonl", '{"question": ["a", "b"], "answer": "2"}\n'),
        "object answer": _write(tmp_path / "oa.jsonl", '{"question": "1+1?", "answer": {"value": 2}}\n'),
        "list answer": _write(tmp_path / "la.jsonl", '{"question": "1+1?", "answer": [1, 2]}\n'),
        "number question": _write(tmp_path / "nq.jsonl", '{"question": 17, "answer": "17"}\n'),
        "surplus": _write(tmp_path / "rows.csv", "question,answer\n1+1?,2,3\n"),
        "not gzip": _write(tmp_path / "fake.jsonl.gz", '{"question": "1+1?", "answer": 2}\n'),
        "not utf-8": _write(tmp_path / "latin.jsonl", b'{"question": "caf\xe9?", "answer": 2}\n'),
        "pool": _write(tmp_path / "pool.jsonl", POOL_LINE + "\n"),
        "inf pool": _write(tmp_path / "inf.jsonl", '{"gold": 1, "answers": [1e400, 2]}\n'),
        "nan pool": _write(tmp_path / "nan.jsonl", '{"samples": [{"text": "1", "answer": "1", "logprobs": [NaN]}]}\n'),
    }
    good = tmp_path / "good.jsonl.gz"
    with gzip.open(good, "wt") as handle:
        handle.write('{"question": "1+1?", "answer": 2}\n')
    made["good gz"] = str(good)
    return made


BENCH = ["bench", "--no-cache", "--backend", "scripted:2", "--no-baseline", "-n", "1", "--data"]


@pytest.mark.parametrize(("case", "message"), [
    ("deep", "nested too deeply"), ("list question", "must be text or a number"),
    ("object answer", "must be text or a number"), ("list answer", "must be text or a number"),
    ("surplus", "more value(s) than the header"), ("not gzip", "not a readable gzip file"),
    ("not utf-8", "not UTF-8"),
])
def test_a_bad_data_file_is_one_line(files, case, message):
    one_line(cli(*BENCH, files[case]), 2, message)


def test_good_data_files_still_run(files):
    for case in ("good gz", "number question"):
        proc = cli(*BENCH, files[case], "--json")
        assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["run", "What?", "--temperature", "nan", "--backend", "scripted:1", "--no-cache"], "finite number"),
    (["run", "What?", "--temperature", "inf", "--backend", "scripted:1", "--no-cache"], "finite number"),
    (["reaggregate", "{pool}", "-a", "esc:window=-1"], "window must be at least 1"),
    (["reaggregate", "{pool}", "-a", "weighted:by=nothing"], "'verifier', 'logprob' or 'given'"),
    (["reaggregate", "{pool}", "-a", "majority:bogus=1"], "takes no bogus"),
    (["reaggregate", "{inf pool}"], "finite"),
    (["reaggregate", "{nan pool}"], "finite"),
    (["reaggregate", "{deep}"], "nested too deeply"),
])
def test_a_bad_value_is_one_line(files, args, message):
    filled = [files[a[1:-1]] if a.startswith("{") else a for a in args]
    one_line(cli(*filled), 2, message)


@pytest.fixture(scope="module")
def bench_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("bench") / "runs.db"
    proc = cli("bench", "arithmetic", "--limit", "3", "-n", "2", "--backend", "scripted:The answer is 2.",
               "--cache", str(db))
    assert proc.returncode == 0, proc.stderr
    return db


@pytest.mark.parametrize(("price", "message"), [("m=-1", "finite number >= 0"), ("nan", "finite number >= 0"),
                                                ("inf", "finite number >= 0")])
def test_a_bad_price_is_one_line(bench_db, tmp_path, price, message):
    one_line(cli("report", str(bench_db), "--out", str(tmp_path / "r"), "--price", price), 2, message)


def test_report_out_must_be_a_folder_it_can_make(bench_db, tmp_path):
    (tmp_path / "a-file").write_text("x")
    one_line(cli("report", str(bench_db), "--out", str(tmp_path / "a-file")), 2, "is a file")
    one_line(cli("report", str(bench_db), "--out", str(tmp_path / "a-file" / "inside")), 2, "cannot create")
    assert (tmp_path / "a-file").read_text() == "x"


def test_discover_checks_its_out_path_before_generating(tmp_path):
    err = one_line(cli("discover", "arithmetic", "--out", str(tmp_path / "nope" / "plan.json"), "--backend",
                       "scripted:1", "--no-cache"), 2, "does not exist")
    assert "nothing was generated" in err


def test_serve_refuses_an_unknown_backend_and_a_busy_port():
    one_line(cli("serve", "--backend", "nosuch:x", "--no-cache"), 2, "nosuch")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        one_line(cli("serve", "--backend", "scripted:1", "--no-cache", "--port", str(port)), 2, "pass another --port")


def test_a_dangling_cache_link_creates_nothing(tmp_path):
    link = tmp_path / "cache.db"
    link.symlink_to(tmp_path / "missing" / "target.db")
    one_line(cli("run", "What?", "--backend", "scripted:1", "--cache", str(link)), 2, "symbolic link")
    link.unlink()
    link.symlink_to(tmp_path / "target.db")
    one_line(cli("run", "What?", "--backend", "scripted:1", "--cache", str(link)), 2, "symbolic link")
    assert not (tmp_path / "target.db").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["run", "What?", "-a", "nosuch"], "nosuch"),
    (["run", "What?", "-a", "weighted:by=nothing"], "'verifier', 'logprob' or 'given'"),
    (["bench", "arithmetic", "--limit", "1", "-a", "esc:window=0"], "window must be at least 1"),
    ([b"run", b"caf\xff?"], "not UTF-8"),
])
def test_refused_input_creates_no_cache_file(tmp_path, args, message):
    db = tmp_path / "new.db"
    one_line(cli(*args, "--backend", "scripted:1", "--cache", str(db)), 2, message)
    assert not db.exists()


def test_a_locked_cache_is_one_line_and_keeps_what_it_holds(bench_db, tmp_path):
    db = tmp_path / "locked.db"
    shutil.copy(bench_db, db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        err = one_line(cli("bench", "arithmetic", "--limit", "2", "-n", "3", "--backend", "scripted:2",
                           "--cache", str(db)), 2, "is locked by another process")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "--cache" in err
    assert cli("cache", "runs", str(db)).returncode == 0


def test_inspecting_a_cache_leaves_no_files_beside_it(bench_db, tmp_path):
    db = tmp_path / "inspect.db"
    shutil.copy(bench_db, db)
    before = sorted(p.name for p in tmp_path.iterdir())
    for args in (["cache", "stats", str(db)], ["cache", "runs", str(db)], ["reaggregate", str(db)]):
        assert cli(*args).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _unprivileged() -> list[str] | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    probe = subprocess.run(["unshare", "--user", "--map-user=1000", "--map-group=1000", "true"], capture_output=True)
    return ["unshare", "--user", "--map-user=1000", "--map-group=1000"] if probe.returncode == 0 else None


def test_another_users_cache(bench_db, tmp_path):
    """0600: one line naming the cache; 0644 in a folder the user cannot write: inspected, nothing left beside."""
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("needs root and unshare to act as another user")
    folder = tmp_path / "theirs"
    folder.mkdir()
    db = folder / "c.db"
    shutil.copy(bench_db, db)
    os.chmod(tmp_path, 0o755)
    os.chmod(folder, 0o755)
    os.chmod(db, 0o600)
    for path in (folder, db):  # an owner that is not mapped into the user's namespace: someone else
        os.chown(path, 54321, 54321)
    env = {"PYTHONPATH": os.getcwd()}
    for args in (["cache", "stats", str(db)], ["cache", "runs", str(db)], ["reaggregate", str(db)],
                 ["run", "What?", "--backend", "scripted:1", "--cache", str(db)]):
        one_line(cli(*args, prefix=prefix, env=env), 2, "cannot use the cache")
    os.chmod(db, 0o644)
    for args in (["cache", "stats", str(db)], ["cache", "runs", str(db)], ["reaggregate", str(db)]):
        proc = cli(*args, prefix=prefix, env=env)
        assert proc.returncode == 0, proc.stderr.decode()[-1500:]
    assert sorted(p.name for p in folder.iterdir()) == ["c.db"]
