"""Re-aggregation without generating: stored runs and sample pools (native, ESC, ConSol formats)."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from manyminds.backends import Scripted
from manyminds.cache import GenerationCache
from manyminds.errors import ConfigError
from manyminds.pools import load_pool, write_pool
from manyminds.reaggregate import reaggregate
from manyminds.strategies import SelfConsistency
from manyminds.types import Task

TASK = Task(question="q", gold="12")


def test_reaggregate_a_stored_run_makes_no_generation(tmp_path):
    backend = Scripted(["The answer is 12.", "The answer is 12.", "The answer is 13."])
    tasks = [Task(question=f"What is {i} + 12?", gold="12") for i in range(3)]
    with GenerationCache(tmp_path / "c.db") as cache:
        results = SelfConsistency(n=6).solve_many(tasks, backend=backend, cache=cache)
        cache.runs.record("sc", results)
    calls = backend.calls
    report = reaggregate(tmp_path / "c.db", "majority", stop="esc:2")
    assert backend.calls == calls
    assert report.questions == 3 and report.accuracy == 1.0 and report.mean_samples == 2  # the first two agree
    assert reaggregate(results, "majority", cap=3).mean_samples == 3


def _write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _consol_pool(path, questions=200, samples=40, seed=0):
    """A pool in the ConSol format (extracted option indices as floats, token counts), drawn so that
    each question's samples mostly agree on one option, as recorded pools do."""
    rng = random.Random(seed)
    rows = []
    for q in range(questions):
        gold = rng.randint(1, 5)
        favourite = gold if rng.random() < 0.75 else rng.randint(1, 5)
        answers = [f"{favourite if rng.random() < 0.7 else rng.randint(1, 5)}.0" for _ in range(samples)]
        rows.append({"id": q, "gold": str(gold), "answers": answers, "tokens": [str(rng.randint(50, 300))] * samples})
    return _write_lines(path, rows)


def test_pool_round_trip_and_published_formats(tmp_path):
    results = SelfConsistency(n=3).solve_many([TASK], backend=Scripted(["The answer is 12."]))
    assert write_pool(tmp_path / "p.jsonl", results) == 1
    (q,) = load_pool(tmp_path / "p.jsonl")
    assert [c.answer for c in q.candidates] == ["12", "12", "12"] and q.task.gold == "12"
    esc = load_pool(_write_lines(tmp_path / "esc.jsonl", [
        {"question": "Take the last letters of 'Ada Lovelace'.", "answer": "ae",
         "generated_answer": ["The last letters are a and e. The answer is ae.", "The answer is ee."]}]))
    assert [c.answer for c in esc[0].candidates] == ["ae", "ee"] and esc[0].task.gold == "ae"
    medqa = load_pool(_consol_pool(tmp_path / "consol.jsonl", questions=3))
    assert medqa[0].candidates[0].answer in {"1", "2", "3", "4", "5"} and medqa[0].task.gold in {"1", "2", "3", "4", "5"}
    assert medqa[0].candidates[0].generation.completion_tokens >= 50


def test_a_consol_pool_of_numbers_keeps_their_value(tmp_path):
    path = _write_lines(tmp_path / "gsm.jsonl", [
        {"id": 1, "gold": "106.12", "answers": ["106.12", "106", 106.12, "106.120", None], "tokens": [1, 2, 3, 4, 5]},
        {"id": 2, "gold": "-10", "answers": ["-10.0", "10", "-10"]},
    ])
    first, second = load_pool(path)
    assert [c.answer for c in first.candidates] == ["106.12", "106", "106.12", "106.12", None]
    assert reaggregate([first, second], "majority").correct == 2  # -10 is not read as 10


def test_reaggregate_cli_on_a_pool(tmp_path):
    path = _consol_pool(tmp_path / "consol.jsonl")
    proc = subprocess.run(
        [sys.executable, "-m", "manyminds.cli", "reaggregate", str(path), "--stop", "esc", "--json"],
        capture_output=True, text=True, timeout=300, check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    full, esc = rows
    assert full["questions"] == 200 and full["mean_samples"] == 40
    assert esc["mean_samples"] < 20 and abs(esc["accuracy"] - full["accuracy"]) < 0.05


BAD_POOL_LINES = {
    "a number": ("42", "must be a JSON object, got int"),
    "a list": ("[1, 2, 3]", "must be a JSON object, got list"),
    "samples that are not a list": ('{"samples": 5}', "'samples' must be a list"),
    "a sample whose text is a number": ('{"samples": [{"text": 7}]}', "'text' must be a string"),
    "an ESC line without a question": ('{"answer": "ae", "generated_answer": ["x"]}', "ESC pool record .*question"),
    "an ESC line whose samples are not texts": (
        '{"question": "q", "answer": "ae", "generated_answer": [1]}', "ESC pool record"),
    "a ConSol line whose answers are not a list": ('{"gold": "1", "answers": 3}', "ConSol pool record"),
    "a ConSol line with too few token counts": ('{"gold": "1", "answers": ["1", "2"], "tokens": [1]}', "'tokens' has 1"),
    "an unknown record": ('{"whatever": 1}', "unknown pool format"),
    "not JSON": ("{nope", "not JSON"),
}


@pytest.mark.parametrize("name", list(BAD_POOL_LINES))
def test_bad_pool_lines_are_one_clear_error_naming_the_line(tmp_path, name):
    line, message = BAD_POOL_LINES[name]
    path = tmp_path / "bad.jsonl"
    path.write_text('{"samples": [{"text": "The answer is 1."}]}\n' + line + "\n")
    with pytest.raises(ConfigError, match=message) as caught:
        load_pool(path)
    assert f"{path}:2" in str(caught.value)
    before = path.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "manyminds.cli", "reaggregate", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1
    assert "Traceback" not in proc.stderr and path.read_bytes() == before


def test_reaggregating_an_empty_pool_is_an_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="holds no questions"):
        reaggregate(tmp_path / "empty.jsonl")
