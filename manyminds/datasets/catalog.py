"""The shipped data sets: each one a reader from its files to `Task`s, with its format and scorer.

Every set reads its public file as published (byte for byte; see
`data/README.md` for sources and hashes) and turns each record into a Task:
the question as the model should see it, the answer format that reads a
completion, the gold answer as a key of that format, a stable id
(`<set>/<split>/<record id>`), and what the scorer needs in `metadata`.
Gold answers are parsed here once, so a record whose gold cannot be read is
an error naming the file and record, not a silent zero.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manyminds.datasets.reading import DataError, files_version, read_json, read_json_lines
from manyminds.errors import ConfigError
from manyminds.types import OPTION_LETTERS, AnswerFormat, Task
from manyminds.answers import boxed_contents, plan_key

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Dataset:
    """One data set: where its splits live, how its records become Tasks, how answers are scored."""

    name: str
    description: str
    format: AnswerFormat
    scorer: str
    """`answer` (gold key, by value for numbers and math), `unit-tests` (sandboxed), `plan`
    (Blocksworld simulation) or `pairwise-judge` (AlpacaEval, against reference outputs)."""
    licence: str
    splits: dict[str, tuple[str, ...]]
    """Split name -> its files under data/ (the first split is the default)."""
    read: Callable[[list[Path], str], Iterator[Task]] = field(repr=False)
    shipped: bool = True
    """False where the licence did not come with the copy: the user passes `path=`."""

    @property
    def default_split(self) -> str:
        return next(iter(self.splits))

    def files(self, split: str) -> list[Path]:
        if split not in self.splits:
            raise ConfigError(f"{self.name} has no split {split!r}; its splits: {', '.join(self.splits)}")
        return [DATA / f for f in self.splits[split]]

    def version(self, split: str | None = None, path: Path | None = None) -> str:
        """A hash of the split's bytes: a run records exactly which data it ran on."""
        files = [path] if path is not None else self.files(split or self.default_split)
        return files_version(tuple(str(f) for f in files)) if files else f"generated-{self.name}"





# -- reading files ---------------------------------------------------------------


def _field(record: dict[str, Any], key: str, where: str) -> Any:
    if key not in record:
        raise DataError(f"{where}: the record has no {key!r} field (it has {', '.join(map(str, record)) or 'none'})")
    return record[key]


def _number_gold(value: Any, where: str) -> str:
    text = str(value).replace(",", "").strip()
    try:
        number = float(text)
    except ValueError:
        raise DataError(f"{where}: gold answer {value!r} is not a number") from None
    return str(int(number)) if number.is_integer() else repr(number)


def _letter(position: int, count: int, where: str) -> str:
    if not 0 <= position < count:
        raise DataError(f"{where}: gold option {position} is outside the {count} options")
    return OPTION_LETTERS[position]


# -- the sets --------------------------------------------------------------------


def _gsm8k(files: list[Path], split: str) -> Iterator[Task]:
    (path,) = files
    for number, row in read_json_lines(path):
        where = f"{path.name}:{number}"
        answer = str(_field(row, "answer", where))
        if "####" not in answer:
            raise DataError(f"{where}: the answer has no '#### N' line")
        yield Task(question=_field(row, "question", where), format=AnswerFormat.NUMBER,
                   gold=_number_gold(answer.rsplit("####", 1)[1], where), id=f"gsm8k/{split}/{number - 1}",
                   metadata={"solution": answer})


def _math500(files: list[Path], split: str) -> Iterator[Task]:
    (path,) = files
    for number, row in read_json_lines(path):
        where = f"{path.name}:{number}"
        yield Task(question=_field(row, "problem", where), format=AnswerFormat.MATH,
                   gold=str(_field(row, "answer", where)), id=f"math500/{split}/{row.get('unique_id', number - 1)}",
                   metadata={"subject": row.get("subject"), "level": row.get("level")})


def _math(files: list[Path], split: str) -> Iterator[Task]:
    (path,) = files
    for number, row in read_json_lines(path):
        where = f"{path.name}:{number}"
        boxed = boxed_contents(str(_field(row, "solution", where)))
        if not boxed:
            raise DataError(f"{where}: the solution has no \\boxed{{...}} answer")
        yield Task(question=_field(row, "problem", where), format=AnswerFormat.MATH, gold=boxed[-1],
                   id=f"math/{split}/{number - 1}", metadata={"subject": row.get("type"), "level": row.get("level")})


def _svamp(files: list[Path], split: str) -> Iterator[Task]:
    (path,) = files
    for k, row in enumerate(read_json(path)):
        where = f"{path.name} record {k}"
        body, question = str(_field(row, "Body", where)).strip(), str(_field(row, "Question", where)).strip()
        body = body if body.endswith((".", "?", "!")) else body + "."
        yield Task(question=f"{body} {question}", format=AnswerFormat.NUMBER,
                   gold=_number_gold(_field(row, "Answer", where), where), id=f"svamp/{split}/{row.get('ID', k)}",
                   metadata={"type": row.get("Type"), "equation": row.get("Equation")})


def _aqua(files: list[Path], split: str) -> Iterator[Task]:
    (path,) = files
    for number, row in read_json_lines(path):
        where = f"{path.name}:{number}"
        options = [str(o) for o in _field(row, "options", where)]
        texts = tuple(o.split(")", 1)[1].strip() if ")" in o[:3] else o for o in options)
        gold = str(_field(row, "correct", where)).strip().upper()
        if gold not in OPTION_LETTERS[: len(texts)]:
            raise DataError(f"{where}: gold {gold!r} is not one of the {len(texts)} options' letters")
        yield Task(question=_field(row, "question", where), format=AnswerFormat.CHOICE, choices=texts, gold=gold,
                   id=f"aqua/{split}/{number - 1}", metadata={"rationale": row.get("rationale")})


def _strategyqa(files: list[Path], split: str) -> Iterator[Task]:
    (path,) = files
    data = read_json(path)
    if split == "test":  # BIG-bench's copy: every question of StrategyQA with a yes/no target
        for k, row in enumerate(_field(data, "examples", path.name)):
            where = f"{path.name} example {k}"
            scores = _field(row, "target_scores", where)
            gold = "yes" if scores.get("Yes") == 1 else "no" if scores.get("No") == 1 else None
            if gold is None:
                raise DataError(f"{where}: target_scores {scores!r} mark neither Yes nor No")
            yield Task(question=_field(row, "input", where), format=AnswerFormat.YES_NO, gold=gold,
                       id=f"strategyqa/{split}/{k}", metadata={"explanation": row.get("target")})
    else:  # the authors' dev split, with facts and decompositions
        for k, row in enumerate(data):
            where = f"{path.name} record {k}"
            answer = _field(row, "answer", where)
            if not isinstance(answer, bool):
                raise DataError(f"{where}: answer {answer!r} is not true or false")
            yield Task(question=_field(row, "question", where), format=AnswerFormat.YES_NO,
                       gold="yes" if answer else "no", id=f"strategyqa/{split}/{row.get('qid', k)}",
                       metadata={"facts": row.get("facts"), "decomposition": row.get("decomposition")})


def _lettered(name: str) -> Callable[[list[Path], str], Iterator[Task]]:
    """ARC and CommonsenseQA: {question: {stem, choices: [{label, text}]}, answerKey}."""

    def read(files: list[Path], split: str) -> Iterator[Task]:
        for path in files:
            for number, row in read_json_lines(path):
                where = f"{path.name}:{number}"
                question = _field(row, "question", where)
                choices = _field(question, "choices", where)
                labels = [str(c["label"]) for c in choices]
                key = str(_field(row, "answerKey", where))
                if key not in labels:
                    raise DataError(f"{where}: answerKey {key!r} is not one of the labels {labels}")
                yield Task(question=_field(question, "stem", where), format=AnswerFormat.CHOICE,
                           choices=tuple(str(c["text"]) for c in choices),
                           gold=_letter(labels.index(key), len(labels), where),
                           id=f"{name}/{split}/{row.get('id', number - 1)}")

    return read


def _mmlu(files: list[Path], split: str) -> Iterator[Task]:
    (folder,) = files
    if not folder.is_dir():
        raise DataError(f"data folder not found: {folder}")
    for path in sorted(folder.glob("*.csv")):
        subject = path.stem.removesuffix(f"_{split}")
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        if rows and rows[0][:1] == ["question"]:
            rows = rows[1:]
        for k, row in enumerate(rows):
            where = f"{path.name} row {k + 1}"
            if len(row) != 6:
                raise DataError(f"{where}: expected question, 4 choices and an answer, got {len(row)} fields")
            answer = row[5].strip()
            position = int(answer) if answer.isdigit() else OPTION_LETTERS.find(answer.upper())
            yield Task(question=row[0], format=AnswerFormat.CHOICE, choices=tuple(row[1:5]),
                       gold=_letter(position, 4, where), id=f"mmlu/{split}/{subject}/{k}",
                       metadata={"subject": subject.replace("_", " ")})


def _humaneval(files: list[Path], split: str) -> Iterator[Task]:
    from manyminds.datasets.code import humaneval_tasks

    yield from humaneval_tasks(files[0])


def _mbpp(files: list[Path], split: str) -> Iterator[Task]:
    from manyminds.datasets.code import mbpp_tasks

    if split == "sanitized":
        for k, row in enumerate(read_json(files[0])):
            tests = "\n".join(row["test_list"])
            yield Task(question=f"{row['prompt']}\nYour code should pass these tests:\n{tests}",
                       format=AnswerFormat.CODE, id=f"mbpp/sanitized/{row['task_id']}",
                       metadata={"tests": "\n".join(row.get("test_imports", []) + [tests]), "canonical": row["code"]})
        return
    yield from mbpp_tasks(files[0], split="test")


def _blocksworld(files: list[Path], split: str) -> Iterator[Task]:
    path, problems = files
    for k, row in enumerate(_field(read_json(path), "instances", path.name)):
        where = f"{path.name} instance {k}"
        instance = _field(row, "instance_id", where)
        problem = problems / f"instance-{instance}.pddl"
        if not problem.is_file():
            raise DataError(f"{where}: no PDDL problem {problem.name}")
        truth = str(_field(row, "ground_truth_plan", where))
        yield Task(question=_field(row, "query", where), format=AnswerFormat.PLAN, gold=plan_key(truth),
                   id=f"blocksworld/{split}/{instance}",
                   metadata={"problem": problem.read_text(), "reference_plan": truth})


def _shuffled_options(question: str, options: list[str]) -> list[int]:
    """TruthfulQA lists the right option first; each question gets a fixed shuffle of its own."""
    order = list(range(len(options)))
    random.Random(hashlib.sha256(question.encode()).digest()).shuffle(order)
    return order


def _truthfulqa(files: list[Path], split: str) -> Iterator[Task]:
    (path,) = files
    for k, row in enumerate(read_json(path)):
        where = f"{path.name} record {k}"
        targets = _field(row, "mc1_targets", where)
        options = list(targets)
        right = [o for o in options if targets[o] == 1]
        if len(right) != 1:
            raise DataError(f"{where}: mc1_targets must mark exactly one option right, not {len(right)}")
        order = _shuffled_options(row["question"], options)
        choices = tuple(options[i] for i in order)
        yield Task(question=_field(row, "question", where), format=AnswerFormat.CHOICE, choices=choices,
                   gold=_letter(choices.index(right[0]), len(choices), where), id=f"truthfulqa/{split}/{k}")


def _alpaca_eval(files: list[Path], split: str) -> Iterator[Task]:
    (path,) = files
    for k, row in enumerate(read_json(path)):
        where = f"{path.name} record {k}"
        yield Task(question=_field(row, "instruction", where), format=AnswerFormat.TEXT,
                   id=f"alpaca_eval/{split}/{k}",
                   metadata={"reference": _field(row, "output", where), "reference_model": row.get("generator"),
                             "source": row.get("dataset")})


def _arithmetic(files: list[Path], split: str) -> Iterator[Task]:
    from manyminds.datasets.arithmetic import arithmetic_tasks

    yield from arithmetic_tasks(split, ARITHMETIC_POOL, 0)


ARITHMETIC_POOL = 1000
"""Questions generated per arithmetic level (generator seed 0); `load`'s limit and seed pick from them."""

DATASETS: dict[str, Dataset] = {d.name: d for d in [
    Dataset("arithmetic", "generated arithmetic in four levels (splits: single-digit, two-digit, word-1, "
            "word-2); SmolLM2-135M is informative on single-digit", AnswerFormat.NUMBER, "answer", "generated",
            {level: () for level in ("single-digit", "two-digit", "word-1", "word-2")}, _arithmetic),
    Dataset("gsm8k", "grade-school maths word problems (Cobbe et al. 2021)", AnswerFormat.NUMBER, "answer",
            "MIT", {"test": ("gsm8k/test.jsonl",)}, _gsm8k),
    Dataset("math500", "MATH-500, the PRM800K subset of MATH", AnswerFormat.MATH, "answer", "MIT",
            {"test": ("math500/test.jsonl",)}, _math500),
    Dataset("math", "MATH competition problems (Hendrycks et al. 2021)", AnswerFormat.MATH, "answer", "MIT",
            {"test": ("math/test.jsonl",)}, _math),
    Dataset("svamp", "SVAMP arithmetic word problems with varied structure", AnswerFormat.NUMBER, "answer", "MIT",
            {"test": ("svamp/SVAMP.json",)}, _svamp),
    Dataset("aqua", "AQuA-RAT algebra word problems, five options", AnswerFormat.CHOICE, "answer", "Apache-2.0",
            {"test": ("aqua/test.json",)}, _aqua),
    Dataset("strategyqa", "StrategyQA yes/no questions needing implicit reasoning (test: BIG-bench's "
            "2,290; dev: the authors' 229 with facts)", AnswerFormat.YES_NO, "answer", "MIT",
            {"test": ("strategyqa/bigbench_task.json",), "dev": ("strategyqa/segal_dev.json",)}, _strategyqa),
    Dataset("arc-challenge", "ARC Challenge science questions", AnswerFormat.CHOICE, "answer", "CC-BY-SA-4.0",
            {"test": ("arc/ARC-Challenge-Test.jsonl",)}, _lettered("arc-challenge")),
    Dataset("arc-easy", "ARC Easy science questions", AnswerFormat.CHOICE, "answer", "CC-BY-SA-4.0",
            {"test": ("arc/ARC-Easy-Test.jsonl",)}, _lettered("arc-easy")),
    Dataset("commonsenseqa", "CommonsenseQA dev (not shipped: pass path= to its dev_rand_split.jsonl)",
            AnswerFormat.CHOICE, "answer", "not shipped", {"dev": ("commonsenseqa/dev_rand_split.jsonl",)},
            _lettered("commonsenseqa"), shipped=False),
    Dataset("mmlu", "MMLU, 57 subjects, four options", AnswerFormat.CHOICE, "answer", "MIT",
            {"test": ("mmlu/test",)}, _mmlu),
    Dataset("humaneval", "HumanEval Python functions, checked by their unit tests", AnswerFormat.CODE,
            "unit-tests", "MIT", {"test": ("humaneval/HumanEval.jsonl.gz",)}, _humaneval),
    Dataset("mbpp", "MBPP Python problems (test: task ids 11-510; sanitized: the hand-checked 427)",
            AnswerFormat.CODE, "unit-tests", "CC-BY-4.0",
            {"test": ("mbpp/mbpp.jsonl",), "sanitized": ("mbpp/sanitized-mbpp.json",)}, _mbpp),
    Dataset("blocksworld", "PlanBench Blocksworld plan generation, checked by simulation", AnswerFormat.PLAN,
            "plan", "MIT", {"test": ("blocksworld/task_1_plan_generation.json", "blocksworld/pddl/generated_basic")},
            _blocksworld),
    Dataset("truthfulqa", "TruthfulQA multiple choice (mc1), options in a fixed shuffle", AnswerFormat.CHOICE,
            "answer", "Apache-2.0", {"mc1": ("truthfulqa/mc_task.json",)}, _truthfulqa),
    Dataset("alpaca_eval", "AlpacaEval instructions, judged pairwise against GPT-4-1106's outputs",
            AnswerFormat.TEXT, "pairwise-judge", "Apache-2.0",
            {"test": ("alpaca_eval/reference_gpt4_1106_preview_outputs.json",)}, _alpaca_eval),
]}


def names() -> list[str]:
    """The data sets `load` knows, shipped or not."""
    return list(DATASETS)


def get(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None


def pick(tasks: list[Task], *, limit: int | None = None, seed: int | None = None) -> list[Task]:
    """At most `limit` of `tasks`: the first ones, or with `seed` a seeded sample, so a small
    run is not only a file's first, often easiest, records."""
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, not {limit}")
    if seed is not None:
        tasks = list(tasks)
        random.Random(seed).shuffle(tasks)
    return tasks[:limit] if limit is not None else tasks


def load(
    name: str, split: str | None = None, *, limit: int | None = None, seed: int | None = None,
    path: str | Path | None = None,
) -> list[Task]:
    """The Tasks of a data set's split.

    Args:
        name: one of `names()`.
        split: default: the set's first split (`test` for most).
        limit, seed: which tasks (`pick`): the first `limit`, or a seeded sample of them.
        path: read this file instead of the shipped one (needed for sets not shipped).
    """
    dataset = get(name)
    split = split or dataset.default_split
    files = dataset.files(split)
    if path is not None:
        files = [Path(path).expanduser(), *files[1:]]
    elif not dataset.shipped:
        raise ConfigError(f"{name} is not shipped (no licence came with the copy): pass path= to your copy "
                          f"of {Path(dataset.splits[split][0]).name}")
    tasks = pick(list(dataset.read(files, split)), limit=limit, seed=seed)
    version = dataset.version(split, files[0] if path is not None else None)
    return [t.model_copy(update={"metadata": {**t.metadata, "dataset": name, "split": split,
                                              "dataset_version": version}}) for t in tasks]
