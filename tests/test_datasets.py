"""The shipped data sets: every record read, every gold parsed, every licence beside its data."""

import json

import pytest

import manyminds as mm
from manyminds.answers import extract, normalise_gold
from manyminds.datasets import DataError, from_file
from manyminds.datasets.catalog import DATA
from manyminds.errors import ConfigError
from manyminds.types import AnswerFormat

COUNTS = {  # the record counts the sources publish (../shared/data/README.md)
    ("gsm8k", "test"): 1319, ("math500", "test"): 500, ("math", "test"): 5000, ("svamp", "test"): 1000,
    ("aqua", "test"): 254, ("strategyqa", "test"): 2290, ("strategyqa", "dev"): 229,
    ("arc-challenge", "test"): 1172, ("arc-easy", "test"): 2376, ("mmlu", "test"): 14042,
    ("humaneval", "test"): 164, ("mbpp", "test"): 500, ("mbpp", "sanitized"): 427, ("blocksworld", "test"): 500,
    ("truthfulqa", "mc1"): 790, ("alpaca_eval", "test"): 805, ("arithmetic", "single-digit"): 1000,
}


def test_names_cover_every_set_the_issue_lists():
    assert set(mm.datasets.names()) >= {name for name, _ in COUNTS} | {"commonsenseqa"}


@pytest.mark.parametrize("name,split", sorted(COUNTS))
def test_every_record_loads_with_its_gold(name, split):
    tasks = mm.datasets.load(name, split)
    assert len(tasks) == COUNTS[(name, split)]
    assert len({t.id for t in tasks}) == len(tasks), "ids are unique"
    dataset = mm.datasets.get(name)
    for t in tasks:
        assert t.format is dataset.format and t.metadata["dataset"] == name and t.metadata["split"] == split
        if dataset.scorer == "answer":
            assert t.gold is not None and normalise_gold(t) is not None, t.id
        if t.format is AnswerFormat.CHOICE:
            assert t.gold in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(t.choices)]
        if dataset.scorer == "unit-tests":
            assert t.metadata["tests"]
    assert tasks[0].metadata["dataset_version"] == dataset.version(split)


def test_gold_answers_are_parsed_as_the_sources_give_them():
    gsm = mm.datasets.load("gsm8k", limit=1)[0]
    assert gsm.gold == "18" and "#### 18" in gsm.metadata["solution"]
    svamp = mm.datasets.load("svamp", limit=1)[0]
    assert svamp.gold == "51" and svamp.question.endswith("How much do you have to pay to buy each pack?")
    aqua = mm.datasets.load("aqua", limit=1)[0]
    assert aqua.gold == "A" and not aqua.choices[0].startswith("A)")
    strategy = mm.datasets.load("strategyqa", limit=1)[0]
    assert strategy.gold == "yes"
    math = mm.datasets.load("math", limit=1)[0]
    assert math.gold == "2"  # from \boxed{2} in the solution
    plan = mm.datasets.load("blocksworld", limit=1)[0]
    assert plan.gold == "(unstack d c) (put-down d) (pick-up c) (stack c a)"


def test_truthfulqa_options_are_shuffled_so_the_right_one_is_not_always_first():
    tasks = mm.datasets.load("truthfulqa")
    letters = {t.gold for t in tasks}
    assert len(letters) > 5
    again = mm.datasets.load("truthfulqa", limit=3)
    assert [t.choices for t in again] == [t.choices for t in tasks[:3]]  # a fixed shuffle
    raw = json.loads((DATA / "truthfulqa" / "mc_task.json").read_text())[0]
    right = next(o for o, v in raw["mc1_targets"].items() if v == 1)
    assert tasks[0].choices["ABCDEFGHIJKLM".index(tasks[0].gold)] == right


def test_every_reference_blocksworld_plan_is_valid_by_simulation():
    from manyminds.answers.blocksworld import check_plan, parse_plan, parse_problem

    for task in mm.datasets.load("blocksworld"):
        check = check_plan(parse_problem(task.metadata["problem"]), parse_plan(task.metadata["reference_plan"]))
        assert check.valid, (task.id, check.detail)


def test_limit_and_seed_pick_a_reproducible_sample():
    first = mm.datasets.load("gsm8k", limit=5)
    sampled = mm.datasets.load("gsm8k", limit=5, seed=3)
    assert [t.id for t in first] == [f"gsm8k/test/{k}" for k in range(5)]
    assert [t.id for t in sampled] == [t.id for t in mm.datasets.load("gsm8k", limit=5, seed=3)]
    assert [t.id for t in sampled] != [t.id for t in first]


def test_every_shipped_folder_has_its_licence():
    folders = {p.parent for p in DATA.rglob("*") if p.is_file() and p.name not in ("LICENSE", "README.md")}
    tops = {f.relative_to(DATA).parts[0] for f in folders}
    for top in tops:
        licence = DATA / top / "LICENSE"
        assert licence.is_file() and licence.stat().st_size > 100, top


def test_unknown_names_and_splits_say_what_exists():
    with pytest.raises(ConfigError, match="unknown data set 'gsm9k'; known: arithmetic, gsm8k"):
        mm.datasets.load("gsm9k")
    with pytest.raises(ConfigError, match="strategyqa has no split 'train'; its splits: test, dev"):
        mm.datasets.load("strategyqa", "train")
    with pytest.raises(ConfigError, match="limit must be at least 1"):
        mm.datasets.load("gsm8k", limit=0)


def test_a_set_without_a_licence_is_read_from_the_users_copy(tmp_path):
    with pytest.raises(ConfigError, match="commonsenseqa is not shipped.*dev_rand_split.jsonl"):
        mm.datasets.load("commonsenseqa")
    copy = tmp_path / "dev.jsonl"
    copy.write_text(json.dumps({"answerKey": "B", "id": "q1", "question": {"stem": "Where are books?", "choices": [
        {"label": "A", "text": "sea"}, {"label": "B", "text": "library"}]}}) + "\n")
    (task,) = mm.datasets.load("commonsenseqa", path=copy)
    assert task.gold == "B" and task.choices == ("sea", "library") and task.id == "commonsenseqa/dev/q1"
    copy.write_text(json.dumps({"answerKey": "C", "question": {"stem": "?", "choices": [{"label": "A", "text": "x"}]}}))
    with pytest.raises(DataError, match="dev.jsonl:1: answerKey 'C' is not one of the labels"):
        mm.datasets.load("commonsenseqa", path=copy)


def test_a_users_file_with_its_own_fields(tmp_path):
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [
        {"q": "Tom has 3 apples and buys 15. How many?", "sol": "3 + 15 = 18\n#### 18", "key": "a1"},
        {"q": "What is 1,000 + 2,000?", "sol": "3,000", "key": "a2"},
    ]) + "\n")
    tasks = from_file(jsonl, question_field="q", answer_field="sol", id_field="key")
    assert [t.gold for t in tasks] == ["18", "3000"] and [t.id for t in tasks] == ["mine/a1", "mine/a2"]
    csv_file = tmp_path / "quiz.csv"
    csv_file.write_text("question,options,right\nWhich is red?,sky|blood|grass,blood\nPick one,a|b,1\n")
    tasks = from_file(csv_file, answer_field="right", choices_field="options", format="choice")
    assert [t.gold for t in tasks] == ["B", "B"] and tasks[0].choices == ("sky", "blood", "grass")
    yes_no = tmp_path / "yn.json"
    yes_no.write_text(json.dumps([{"question": "Is ice cold?", "answer": True}]))
    assert from_file(yes_no, format="yes-no")[0].gold == "yes"


def test_a_bad_record_in_a_users_file_names_the_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "What?", "answer": "4"}) + "\n" + json.dumps({"question": "Why?"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: no 'answer' field \(the record has question\)"):
        from_file(path)
    path.write_text(json.dumps({"question": "What?", "answer": "many"}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl:1: gold 'many' is not a number answer"):
        from_file(path)
    with pytest.raises(ConfigError, match="unknown format 'numbers'"):
        from_file(path, format="numbers")
    with pytest.raises(DataError, match="data file not found"):
        from_file(tmp_path / "none.jsonl")


def test_plan_answers_are_read_from_worded_or_pddl_plans():
    task = mm.datasets.load("blocksworld", limit=1)[0]
    worded = ("I will do this.\n[PLAN]\nunstack the yellow block from on top of the orange block\n"
              "put down the yellow block\npick up the orange block\nstack the orange block on top of the red block\n"
              "[PLAN END]")
    assert extract(task, worded) == task.gold
    assert extract(task, "no idea") is None


def test_the_wheel_carries_every_data_file_and_licence(tmp_path):
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("manyminds-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"manyminds/datasets/data/{p.relative_to(DATA)}" for p in DATA.rglob("*") if p.is_file()}
    assert shipped and shipped <= names, sorted(shipped - names)[:5]
    assert wheel.stat().st_size < 8_000_000  # ~5.8 MB: the data compress to a quarter
