"""A third-party plugin, installed as a distribution (a dist-info with entry points on the path),
runs through every door: Python, `manyminds run`, `manyminds bench` and the server.

The plugin is a strategy that samples, then asks the model which of the two leading answers is
right (recording the reply as a new evidence kind, `verification`), and the aggregator that
reads that evidence. It imports only manyminds' public modules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

PLUGIN = textwrap.dedent('''
    """Sample, then ask the model which of the two leading answers is right."""
    from collections import Counter
    from typing import ClassVar

    from manyminds.aggregators.base import Decider, aggregator
    from manyminds.aggregators.selection import endorsed
    from manyminds.extensions import View, evidence_kind
    from manyminds.strategies.base import ModelDecides, OnePromptStrategy

    VERIFICATION = evidence_kind("verification", "the model's check of the two leading answers")


    class VerifyTopTwo(OnePromptStrategy, ModelDecides):
        name: ClassVar[str] = "verify-top-two"
        decider: ClassVar[str] = "verified-top"
        templates: ClassVar[dict[str, str]] = {
            "verify": "{question}\\nIs the answer {a} or {b}? Reply: The answer is X."}

        def build(self, backend):
            def verify(v: View):
                top = [a for a, _ in Counter(c.answer for c in v.ballots if c.answer).most_common(2)]
                if len(top) < 2:
                    return None
                return self.chat(self.template("verify").format(question=v.task.render(), a=top[0], b=top[1]))

            p = self.draw(self.pipeline(backend))
            p.ask(VERIFICATION, verify, self.sampling_params(temperature=0.0), read_answer=True)
            return p.aggregate(self.aggregation())


    @aggregator("verified-top")
    class VerifiedTop(Decider):
        """The answer the verification names, if it is one of the ballots' answers."""

        name = "verified-top"

        def __call__(self, task, candidates):
            vote = self.vote(task, candidates)
            checks = [c for c in candidates if c.source.kind == VERIFICATION and c.answer in vote.tally]
            if not checks:
                return self.fell_back(vote, "no verification")
            return endorsed(vote, checks[-1].answer, self.name, self.params())
''')

ENTRY_POINTS = textwrap.dedent('''
    [manyminds.strategies]
    verify-top-two = mm_verify_top_two

    [manyminds.aggregators]
    verified-top = mm_verify_top_two
''')

# sample 0 says 13, samples 1-4 say 12 and 13 in turn; the greedy verification (index 0) says 13
REPLIES = "The answer is 13.|The answer is 12.|The answer is 13.|The answer is 12.|The answer is 12."
QUESTION = "What is 7 + 5?"


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "mm_verify_top_two").mkdir(parents=True)
    (site / "mm_verify_top_two" / "__init__.py").write_text(PLUGIN)
    info = site / "mm_verify_top_two-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mm-verify-top-two\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (info / "top_level.txt").write_text("mm_verify_top_two\n")
    (info / "RECORD").write_text("")
    return site


def _env(site: Path) -> dict[str, str]:
    root = Path(__file__).resolve().parent.parent
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(root)]), "COLUMNS": "200"}


def _run(site: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=300, env=_env(site))
    assert proc.returncode == 0, proc.stderr
    return proc


def _decided_by_verification(result: dict) -> None:
    assert result["answer"] == "13", "the verification's answer, not the 3-2 vote for 12"
    assert result["aggregator"] == "verified-top"
    assert "verification" in [c["source"] for c in result["candidates"]]


def test_the_plugin_is_found_with_its_version(plugin_path):
    rows = [json.loads(line) for line in _run(plugin_path, sys.executable, "-m", "manyminds.cli", "plugins",
                                              "--json").stdout.splitlines()]
    mine = {(r["kind"], r["name"]): r for r in rows if r["distribution"] == "mm-verify-top-two"}
    assert set(mine) == {("strategy", "verify-top-two"), ("aggregator", "verified-top")}
    assert {r["version"] for r in mine.values()} == {"0.3.0"}


def test_python(plugin_path):
    script = textwrap.dedent(f'''
        import json
        from manyminds import strategies
        from manyminds.backends import from_spec
        from manyminds.types import Task
        result = strategies.make("verify-top-two", 5).solve(Task(question={QUESTION!r}),
                                                            backend=from_spec({("scripted:" + REPLIES)!r}))
        print(json.dumps({{"answer": result.answer, "aggregator": result.decision.aggregator,
                          "candidates": [{{"source": str(c.source)}} for c in result.candidates],
                          "stored": result.model_dump(mode="json")["candidates"][-1]["source"]}}))
    ''')
    out = json.loads(_run(plugin_path, sys.executable, "-c", script).stdout)
    _decided_by_verification(out)
    assert out["stored"] == {"kind": "verification", "prompt": "", "layer": None, "stage": None}, \
        "stored as an object: read back without the plugin, it is still evidence, never a ballot"


def test_cli_run_and_bench(plugin_path, tmp_path):
    cli = [sys.executable, "-m", "manyminds.cli"]
    run = json.loads(_run(plugin_path, *cli, "run", QUESTION, "-s", "verify-top-two", "-n", "5",
                          "--backend", f"scripted:{REPLIES}", "--no-cache", "--json").stdout)
    _decided_by_verification(run)
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": QUESTION, "answer": "13"}) + "\n")
    db = tmp_path / "bench.db"
    (line,) = _run(plugin_path, *cli, "bench", "--data", str(data), "-s", "verify-top-two", "-n", "5",
                   "--no-baseline", "--backend", f"scripted:{REPLIES}", "--cache", str(db), "--json"
                   ).stdout.splitlines()
    record = json.loads(line)
    assert record["accuracy"] == 1.0 and record["meta"]["aggregator"] == {"name": "verified-top",
                                                                          "fallback": "majority"}
    assert record["meta"]["plugins"] == {"manyminds": record["meta"]["code_version"], "mm-verify-top-two": "0.3.0"}


def test_server(plugin_path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "manyminds.cli", "serve", "--backend", f"scripted:{REPLIES}",
                               "--no-cache", "--port", str(port)], env=_env(plugin_path),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).json()
                break
            except httpx.TransportError:
                if server.poll() is not None:
                    raise RuntimeError(server.stderr.read() if server.stderr else "the server exited")
                if time.monotonic() > deadline:  # a bound on the wait, so a broken start ends the test
                    raise RuntimeError("the server did not start")
                time.sleep(0.1)
        assert "verify-top-two-8" in [m["id"] for m in models["data"]]
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60, json={
            "model": "verify-top-two-5", "messages": [{"role": "user", "content": QUESTION}],
            "manyminds": {"format": "number"}}).json()
        _decided_by_verification(reply["manyminds"])
    finally:
        server.terminate()
        server.wait(30)
