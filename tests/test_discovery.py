"""DIV-SE's discovery step and the plans it saves: pairs chosen on held-out questions, reused by
DIV-SE and IDIV-SE, from Python and the CLI."""

from __future__ import annotations

import re

import pytest

from manyminds.backends import Scripted
from manyminds.errors import ConfigError
from manyminds.strategies import DivSE
from manyminds.types import Task


def test_discovery_keeps_the_pairs_that_do_best_on_a_held_out_slice_and_the_plan_is_reused(tmp_path):
    from manyminds.strategies.discovery import DiversityPlan, discover

    def reply(messages, params, index):
        text = messages[-1].content
        if "Do not solve it" in text:
            return "Approach 1: count up\nApproach 2: guess\nPersona 1: a teacher\nPersona 2: a coach"
        gold = re.search(r"What is (\d+) \+ (\d+)", text)
        right = int(gold.group(1)) + int(gold.group(2))
        return f"The answer is {right if 'count up' in text else right + 1}."

    tasks = [Task(question=f"What is {k} + {k + 2}?", gold=str(2 * k + 2)) for k in range(10)]
    plan = discover(tasks, backend=Scripted(reply), propose_on=2, held_out=6, approaches=2, personas=2, keep=2)
    assert plan.tried == 4 and plan.pairs == (("a teacher", "count up"), ("a coach", "count up"))
    assert plan.accuracy == (1.0, 1.0)
    path = plan.save(tmp_path / "plan.json")
    backend = Scripted(reply)
    result = DivSE.from_plan(path).solve(tasks[9], backend=backend)
    assert result.answer == "20" and all("Do not solve" not in r.messages[-1].content for r in backend.requests)
    assert [str(c.source) for c in result.candidates] == ["pair-1", "pair-2"]
    assert DiversityPlan.load(path) == plan
    with pytest.raises(ConfigError, match="no DIV-SE plan"):
        DiversityPlan.load(tmp_path / "missing.json")


def test_div_se_takes_explicit_pairs_instead_of_a_cross_product():
    backend = Scripted(["The answer is 12."])
    pairs = (("a teacher", "count up"), ("a coach", "use doubles"), ("a teacher", "use doubles"))
    DivSE(pairs=pairs).solve("What is 7 + 5?", backend=backend)
    shown = {(p, a) for r in backend.requests for p, a in pairs
             if f"You are {p}." in r.messages[-1].content and f"approach: {a}." in r.messages[-1].content}
    assert len(backend.requests) == 3 and shown == set(pairs)
    with pytest.raises(ValueError, match="not both"):
        DivSE(pairs=pairs, given_personas=("x",))


def test_idiv_se_groups_explicit_pairs_by_persona_one_combined_prompt_each():
    from manyminds.strategies import IDivSE

    def reply(messages, params, index):
        text = messages[-1].content
        if "You are a teacher." in text:
            return "Approach 1: 7, 8, ... 12. The answer is 12.\nApproach 2: 6 + 6 = 12. The answer is 12."
        return "Approach 1: 7 + 5 = 13. The answer is 13."

    backend = Scripted(reply)
    pairs = (("a teacher", "count up"), ("a coach", "use doubles"), ("a teacher", "use doubles"))
    result = IDivSE(pairs=pairs).solve("What is 7 + 5?", backend=backend)
    prompts = [r.messages[-1].content for r in backend.requests]
    assert len(prompts) == 2 and not any("Do not solve" in text for text in prompts)
    teacher = next(text for text in prompts if "You are a teacher." in text)
    assert "Approach 1: count up\nApproach 2: use doubles" in teacher and "2 times" in teacher
    assert "Approach 1: use doubles" in next(text for text in prompts if "You are a coach." in text)
    assert [(str(c.source), c.answer) for c in result.candidates] == [
        ("persona-1/approach-1", "12"), ("persona-1/approach-2", "12"), ("persona-2/approach-1", "13")]
    assert result.answer == "12"
    with pytest.raises(ValueError, match="not both"):
        IDivSE(pairs=pairs, given_approaches=("x",))


def test_the_cli_discovers_a_plan_and_runs_div_se_on_it(tmp_path):
    import json
    import subprocess
    import sys

    plan = tmp_path / "plan.json"
    cli = [sys.executable, "-m", "manyminds.cli"]
    made = subprocess.run([*cli, "discover", "arithmetic", "--out", str(plan), "--propose-on", "1", "--held-out", "3",
                           "--approaches", "2", "--personas", "1", "--keep", "1", "--backend",
                           "scripted:Approach 1: add|The answer is 3.", "--no-cache"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert len(json.loads(plan.read_text())["pairs"]) == 1
    run = subprocess.run([*cli, "run", "What is 1 + 2?", "-s", "div-se", "-n", "2", "--plan", str(plan),
                          "--backend", "scripted:The answer is 3.", "--no-cache", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert [c["source"] for c in json.loads(run.stdout)["candidates"]] == ["pair-1"]
