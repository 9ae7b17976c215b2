"""The CLI: output, one-line errors, benchmark, cache stats, and resume after SIGKILL."""

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest
from tests.conftest import count_rows, kill_when_stored

from tests.proxy import FaultProxy

CLI = [sys.executable, "-m", "manyminds.cli"]


def cli(*args, cwd=None, check=True):
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"})
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def test_run_json(tmp_path):
    proc = cli("run", "What is 7 + 5?", "-n", "5", "--backend", "scripted:The answer is 12.|12|13",
               "--cache", str(tmp_path / "c.db"), "--json")
    data = json.loads(proc.stdout)
    assert data["answer"] == "12"
    assert data["tally"] == {"12": 4, "13": 1}
    assert data["confidence"] == 0.8
    assert [c["index"] for c in data["candidates"]] == [0, 1, 2, 3, 4]
    assert data["candidates"][2] == {"index": 2, "text": "13", "answer": "13", "source": "sample", "votes": True}
    assert data["text"] == "The answer is 12." and data["stop_reason"] is None
    assert data["usage"]["samples"] == 5 and data["usage"]["calls"] == 1


def test_run_table(tmp_path):
    proc = cli("run", "What is 7 + 5?", "-n", "3", "--backend", "scripted:The answer is 12.", "--no-cache")
    assert "answer: 12" in proc.stdout and "100%" in proc.stdout and "chosen" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", ""], "question is empty"),
        (["run", "What?", "-n", "0"], "-n"),
        (["run", "What?", "--temperature", "-1"], "temperature"),
        (["run", "What?", "--backend", "nope:x"], "unknown backend spec 'nope:x'"),
        (["run", "What?", "--backend", "openai:gpt-4o-mini"], "OPENAI_API_KEY"),
        (["run", "What?", "--cache", "/nonexistent-dir/c.db"], "does not exist"),
        (["run", "What?", "--strategy", "nope"], "'nope' is not one of 'best-of-n'"),
        (["run", "What?", "--format", "nope"], "'nope' is not one of 'number'"),
        (["run", "What?", "-n", "100000", "--backend", "scripted:1", "--no-cache"], "1024"),
        (["run", "What?", "--backend", "openai:m@localhost:8000/v1"], "needs an http:// or https:// scheme"),
        (["run", "What?", "--bogus"], "No such option: --bogus"),
        (["run"], "Missing argument"),
        (["nonsense"], "No such command 'nonsense'"),
        (["reaggregate", "x.jsonl", "--cap", "-1"], "--cap"),
        (["reaggregate", "missing.jsonl"], "pool file not found"),
        (["reaggregate", "missing.db"], "no such file"),
        (["bench", "arithmetic", "-n", "5000", "--no-cache", "--backend", "scripted:1"], "1024"),
        (["bench", "--no-cache", "--backend", "scripted:1"], "name a data set or pass --data FILE"),
        (["bench", "gsm9k", "--no-cache", "--backend", "scripted:1"], "unknown data set 'gsm9k'"),
        (["bench", "gsm8k", "--split", "train", "--no-cache", "--backend", "scripted:1"], "no split 'train'"),
        (["bench", "humaneval", "--limit", "1", "--no-cache", "--backend", "scripted:1"], "--allow-code-execution"),
        (["bench", "--data", "missing.jsonl", "--no-cache", "--backend", "scripted:1"], "data file not found"),
        (["report", "missing.db"], "no cache file"),
        (["report", "x.db", "--price", "cheap"], "--price 'cheap'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = cli(*args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_cache_that_is_not_sqlite_is_refused_and_kept(tmp_path):
    path = tmp_path / "data.db"
    path.write_text("not a database")
    proc = cli("run", "What?", "--backend", "scripted:1", "--cache", str(path), check=False)
    assert proc.returncode == 2 and "not a SQLite database" in proc.stderr
    assert path.read_text() == "not a database"


def test_bad_input_loses_nothing_cached(tmp_path):
    db = str(tmp_path / "c.db")
    cli("run", "What is 1 + 1?", "-n", "3", "--backend", "scripted:2", "--cache", db)
    cli("run", "What is 1 + 1?", "-n", "0", "--backend", "scripted:2", "--cache", db, check=False)
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 3


def test_bench_arithmetic_and_cache_stats(tmp_path):
    db = str(tmp_path / "c.db")
    proc = cli("bench", "arithmetic", "--limit", "5", "-n", "3", "--backend", "scripted:The answer is 10.", "--cache", db)
    assert "self-consistency (n=3)" in proc.stdout and "single sample" in proc.stdout
    assert "votes for" in proc.stdout
    stats = cli("cache", "stats", db).stdout
    assert "generations" in stats and "scripted:scripted" in stats


def test_bench_on_a_users_file_then_a_report(tmp_path):
    data = tmp_path / "mine.csv"
    data.write_text("q,a\nWhat is 2 + 2?,#### 4\nWhat is 3 + 3?,6\n")
    db = str(tmp_path / "c.db")
    proc = cli("bench", "--data", str(data), "--question-field", "q", "--answer-field", "a", "-n", "3",
               "--backend", "scripted:The answer is 4.", "--cache", db, "--json")
    runs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["label"] for r in runs] == ["single sample", "self-consistency (n=3)"]
    assert all(r["accuracy"] == 0.5 and r["questions"] == 2 for r in runs)
    assert runs[1]["meta"]["dataset"] == "mine.csv" and runs[1]["usage"]["cached_samples"] == 2
    again = [json.loads(line) for line in cli("bench", "--data", str(data), "--question-field", "q", "--answer-field",
                                              "a", "-n", "3", "--backend", "scripted:The answer is 4.", "--cache", db,
                                              "--json").stdout.splitlines()]
    assert [r["resumed"] for r in again] == [True, True] and [r["run"] for r in again] == [r["run"] for r in runs]
    listed = cli("cache", "runs", db).stdout
    assert "self-consistency (n=3)" in listed
    report = cli("report", db, "--out", str(tmp_path / "rep"), "--price", "smollm=1e-6")
    assert "report.md" in report.stdout and (tmp_path / "rep" / "accuracy_vs_samples.png").stat().st_size > 0


def _rows(db) -> int:
    return count_rows(db, "generations")


@pytest.mark.integration
def test_bench_killed_mid_way_resumes_without_regenerating(llama_server, tmp_path):
    db = tmp_path / "c.db"
    args = ["bench", "arithmetic", "--limit", "6", "-n", "4", "--max-tokens", "8", "--concurrency", "2",
            "--cache", str(db)]
    # One proxy for both runs: its URL (port included) is part of the backend's cache identity.
    with FaultProxy(llama_server, delay=0.3) as proxy:
        spec = f"openai:smollm2@{proxy.url}"
        # 6 rows: the single-sample baseline; then self-consistency's first questions
        before = kill_when_stored([*CLI, *args, "--backend", spec], db, "generations", 9)
        assert 9 <= before < 24, "the run must be killed mid-way"
        settle = time.monotonic() + 60  # requests the victim sent before it died still pass the proxy
        time.sleep(0.3)  # connections the victim opened are accepted
        while proxy.log.in_flight and time.monotonic() < settle:
            time.sleep(0.05)
        calls_before = proxy.log.forwarded
        proxy.delay = 0.0
        proc = cli(*args, "--backend", spec)
        second_run_calls = proxy.log.forwarded - calls_before
    assert "resumed" in proc.stdout
    after = _rows(db)
    distinct_questions = sqlite3.connect(db).execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    assert after == distinct_questions * 4
    # The llama.cpp server returns one sample per call: calls made == samples missing.
    assert second_run_calls == after - before


def test_verifying_strategy_needs_and_takes_a_verifier(tmp_path):
    proc = cli("run", "What is 7 + 5?", "-s", "best-of-n", "--backend", "scripted:12", "--no-cache", check=False)
    assert proc.returncode == 2 and "needs a verifier" in proc.stderr
    args = ["bench", "arithmetic", "--limit", "3", "-n", "4", "--backend", "scripted:The answer is 10.|The answer is 9.",
            "--no-cache", "-s", "verifier-resampling", "--verifier", "math"]
    proc = cli(*args, check=False)  # the math verifier reads the gold answer: an oracle
    assert proc.returncode == 2 and "an oracle" in proc.stderr and "--oracle" in proc.stderr
    proc = cli(*args, "--oracle")
    assert "verifier-resampling (n=4)" in proc.stdout and "[oracle]" in proc.stdout


def test_inspecting_commands_change_no_file(tmp_path):
    db = tmp_path / "c.db"
    cli("run", "What is 1 + 1?", "-n", "3", "--backend", "scripted:2", "--cache", str(db))
    for extra in tmp_path.iterdir():
        if extra != db:
            extra.unlink()  # a closed cache leaves no -wal or -shm behind anyway
    before = db.read_bytes()
    os.chmod(db, 0o400)
    try:
        assert "generations" in cli("cache", "stats", str(db)).stdout
        assert "run self-consistency" in cli("cache", "runs", str(db)).stdout
        assert "100.0%" in cli("reaggregate", str(db)).stdout or cli("reaggregate", str(db)).returncode == 0
    finally:
        os.chmod(db, 0o600)
    assert db.read_bytes() == before


def test_inspecting_a_foreign_database_is_refused_untouched(tmp_path):
    db = tmp_path / "app.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    for args in (["cache", "stats", str(db)], ["cache", "runs", str(db)], ["reaggregate", str(db)],
                 ["run", "q", "--backend", "scripted:1", "--cache", str(db)]):
        proc = cli(*args, check=False)
        assert proc.returncode == 2 and "manyminds did not create" in proc.stderr, (args, proc.stderr)
    assert db.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


@pytest.mark.parametrize("fmt", ["number", "choice", "yes-no", "text", "code", "math"])
def test_every_answer_format_runs_from_the_cli(fmt):
    proc = cli("run", "What?", "-n", "2", "--format", fmt, "--backend", "scripted:The answer is 1.", "--no-cache",
               "--json")
    assert json.loads(proc.stdout)["candidates"][0]["text"] == "The answer is 1."
